//! `Message::parse` on arbitrary bytes, then parse → encode → parse: every decoded message
//! re-encodes to a frame that parses to an equal value.
#![no_main]

use failoverd_wire::{BatchView, BatchWriter, DigestView, Message, SessionOp, SettingsView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let mut buf = Vec::new();
    match message {
        Message::Hello(hello) => hello.emit(&mut buf),
        Message::Ack(ack) => ack.emit(&mut buf),
        Message::Goodbye(goodbye) => goodbye.emit(&mut buf),
        Message::SessionBatch(batch) => {
            let mut writer = BatchWriter::new();
            decoded_ops(&batch).iter().for_each(|op| writer.push(op));
            writer.finish(batch.epoch(), batch.seq(), batch.flags(), &mut buf);
        }
        Message::Settings(settings) => {
            let entries: Vec<_> = settings.entries().collect();
            SettingsView::emit(entries.into_iter(), &mut buf);
        }
        Message::Digest(digest) => DigestView::emit(digest.round(), &digest.buckets(), &mut buf),
        Message::VrrpReport(report) => report.report().emit(&mut buf),
        Message::ConfigSync(config) => config.message().emit(&mut buf),
        Message::Unknown(_) => return, // no encoder: the receiver counts and skips it
    }
    let again = Message::parse(&buf).expect("re-encoded frame parses");
    match (message, again) {
        (Message::Hello(a), Message::Hello(b)) => assert_eq!(a, b),
        (Message::Ack(a), Message::Ack(b)) => assert_eq!(a, b),
        (Message::Goodbye(a), Message::Goodbye(b)) => assert_eq!(a, b),
        (Message::Settings(a), Message::Settings(b)) => {
            assert!(a.entries().eq(b.entries()));
        }
        (Message::Digest(a), Message::Digest(b)) => {
            assert_eq!((a.round(), a.buckets()), (b.round(), b.buckets()));
        }
        (Message::VrrpReport(a), Message::VrrpReport(b)) => assert_eq!(a.report(), b.report()),
        (Message::ConfigSync(a), Message::ConfigSync(b)) => assert_eq!(a.message(), b.message()),
        (Message::SessionBatch(a), Message::SessionBatch(b)) => {
            assert_eq!(
                (a.epoch(), a.seq(), a.flags()),
                (b.epoch(), b.seq(), b.flags())
            );
            // The writer groups ops by kind (upsert, remove, remove-any), keeping their order.
            let mut want = decoded_ops(&a);
            want.sort_by_key(|op| match op {
                SessionOp::Upsert(_) => 0,
                SessionOp::Remove { .. } => 1,
                SessionOp::RemoveAny { .. } => 2,
            });
            assert_eq!(decoded_ops(&b), want);
        }
        (a, b) => panic!("{a:?} re-encoded as {b:?}"),
    }
});

/// The ops of every section, decoded; unknown sections and bad records are skipped, as the
/// receiver skips them.
fn decoded_ops(batch: &BatchView<'_>) -> Vec<SessionOp> {
    batch
        .sections()
        .flat_map(|s| s.ops())
        .filter_map(Result::ok)
        .collect()
}
