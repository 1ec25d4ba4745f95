//! The config-sync codec: round trips, the view, newer minors' bytes skipped, and (in
//! `limits`) every limit and code refused, each beside the same message one under it.

use std::borrow::Cow;

use proptest::prelude::*;

use super::*;
use crate::message::tests::appended;
use crate::message::{Message, MessageKind};

mod elements;
mod layout;
mod limits;
mod strategy;

use strategy::message;

fn emitted(message: &ConfigSyncMessage) -> Vec<u8> {
    let mut buf = Vec::new();
    message.emit(&mut buf);
    buf
}

/// The config-sync view a frame parses to.
fn view(frame: &[u8]) -> ConfigSyncView<'_> {
    match Message::parse(frame) {
        Ok(Message::ConfigSync(view)) => view,
        other => panic!("not config sync: {other:?}"),
    }
}

fn id(kind: UnitKind, name: &str) -> UnitId {
    UnitId::new(kind, name).unwrap()
}

#[test]
fn the_view_borrows_a_chunks_data_and_owns_the_rest() {
    let data: Vec<u8> = (0..=255).collect();
    let frame = emitted(&ConfigSyncMessage::Chunk(Chunk {
        transfer: 11,
        unit: 2,
        offset: 4096,
        data: data.clone(),
    }));
    let parsed = view(&frame);
    assert_eq!(parsed.kind(), ConfigSyncKind::Chunk);
    let chunk = parsed.chunk().unwrap();
    assert_eq!((chunk.transfer, chunk.unit, chunk.offset), (11, 2, 4096));
    assert_eq!(chunk.data, &data[..]);
    assert!(
        frame.as_ptr_range().contains(&chunk.data.as_ptr()),
        "the data is the frame's, not a copy"
    );
    assert_eq!(parsed.message(), ConfigSyncMessage::Chunk(chunk.to_chunk()));

    let request = ConfigSyncMessage::ReadbackRequest {
        request: 4,
        units: vec![id(UnitKind::Nftables, "inet filter")],
    };
    let frame = emitted(&request);
    assert_eq!(view(&frame).chunk(), None, "not a chunk");
    assert_eq!(view(&frame).kind(), ConfigSyncKind::ReadbackRequest);
    assert_eq!(view(&frame).message(), request);
}

/// A sub-kind a later minor adds is skipped and counted like an unknown message kind; a
/// known one (the control) is not.
#[test]
fn an_unknown_sub_kind_reads_as_an_unknown_message() {
    let body = [&layout::head(7)[..], &[1, 2, 3, 4]].concat();
    let frame = appended(vec![b'F', b'O', 1, 8, 0, 0, 0, 0], &body);
    assert!(matches!(Message::parse(&frame), Ok(Message::Unknown(8))));
    assert_eq!(
        ConfigSyncMessage::parse(&body),
        Err(WireError::Malformed("config-sync kind"))
    );
    assert_eq!(MessageKind::ConfigSync.code(), 8);
    let known = appended(vec![b'F', b'O', 1, 8, 0, 0, 0, 0], &layout::request(&[]));
    assert!(matches!(Message::parse(&known), Ok(Message::ConfigSync(_))));
    let empty = appended(vec![b'F', b'O', 1, 8, 0, 0, 0, 0], &[]);
    assert_eq!(Message::parse(&empty).unwrap_err(), WireError::Truncated);
}

/// What a later minor may append: fields at the end of an entry and of a body.
#[test]
fn bytes_a_newer_minor_appends_to_entries_and_bodies_are_ignored() {
    let hash = [0x42; 32];
    let extra = [0xee; 5];
    let units = [
        layout::unit(1, 2, hash, "inet filter", &extra),
        layout::unit(2, 1, [0; 32], "/etc/hosts", &[]),
    ];
    let backends = [layout::entry(&[
        &[1, 0],
        &layout::text("nftables v1.0.9"),
        &extra,
    ])];
    let offer = [&layout::offer("0.1.0", &backends, &units)[..], &extra].concat();
    let want = ConfigSyncMessage::Offer(ConfigOffer {
        versions: ConfigVersions {
            failoverd: "0.1.0".into(),
            schema: 1,
            backends: vec![(UnitKind::Nftables, "nftables v1.0.9".into())],
        },
        source: true,
        auto: true,
        revision: 2,
        units: vec![
            (
                id(UnitKind::Nftables, "inet filter"),
                UnitState::Present(UnitHash(hash)),
            ),
            (id(UnitKind::Files, "/etc/hosts"), UnitState::Absent),
        ],
    });
    assert_eq!(ConfigSyncMessage::parse(&offer), Ok(want.clone()));
    // Control: without the extra bytes it is the same message, and the encoder's bytes.
    let plain = [
        layout::unit(1, 2, hash, "inet filter", &[]),
        layout::unit(2, 1, [0; 32], "/etc/hosts", &[]),
    ];
    let backends = [layout::entry(&[&[1, 0], &layout::text("nftables v1.0.9")])];
    assert_eq!(
        emitted(&want)[HEADER_LEN..],
        layout::offer("0.1.0", &backends, &plain)[..]
    );

    let id_entry = |name: &str, extra: &[u8]| layout::entry(&[&[2, 0], &layout::text(name), extra]);
    let request = [&layout::request(&[id_entry("/etc/a", &extra)])[..], &extra].concat();
    assert_eq!(
        ConfigSyncMessage::parse(&request),
        Ok(ConfigSyncMessage::ReadbackRequest {
            request: 4,
            units: vec![id(UnitKind::Files, "/etc/a")]
        })
    );

    let mut unit = layout::transfer_unit(1, 2, 10, "ip nat");
    unit.extend_from_slice(&extra);
    let len = unit.len() as u16 - 2;
    unit[..2].copy_from_slice(&len.to_be_bytes());
    let transfer = [&layout::transfer(1, &[unit])[..], &extra].concat();
    let Ok(ConfigSyncMessage::Transfer(header)) = ConfigSyncMessage::parse(&transfer) else {
        panic!("not a transfer")
    };
    assert_eq!(header.units[0].id, id(UnitKind::Nftables, "ip nat"));
    assert_eq!(header.units[0].len, 10);

    let chunk = [&layout::chunk(1, 0, 3, b"abc")[..], &extra].concat();
    let Ok(ConfigSyncMessage::Chunk(chunk)) = ConfigSyncMessage::parse(&chunk) else {
        panic!("not a chunk")
    };
    assert_eq!(chunk.data, b"abc", "the data ends at its length");

    let result = [&layout::result(2, Some(1), "no such table")[..], &extra].concat();
    let Ok(ConfigSyncMessage::Result(result)) = ConfigSyncMessage::parse(&result) else {
        panic!("not a result")
    };
    assert_eq!(result.failed_unit, Some(1));
    assert_eq!(result.reason, "no such table");
}

/// Each truncation of a valid body is an error (control: the whole body parses).
#[test]
fn every_truncation_is_an_error() {
    let message = ConfigSyncMessage::Result(SyncResult {
        transfer: 1,
        outcome: SyncOutcome::Failed,
        failed_unit: Some(0),
        reason: "Error: No such file or directory".into(),
        readback: vec![(id(UnitKind::Nftables, "inet filter"), UnitState::Unreadable)],
    });
    let frame = emitted(&message);
    let body = &frame[HEADER_LEN..];
    assert_eq!(ConfigSyncMessage::parse(body), Ok(message));
    for cut in 0..body.len() {
        assert!(
            ConfigSyncMessage::parse(&body[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

/// A kernel's multi-line message or an overlong one is sent as one line within the limit;
/// valid texts are sent as they are.
#[test]
fn texts_travel_as_config_text_makes_them() {
    assert!(matches!(config_text("nftables v1.0.9"), Cow::Borrowed(_)));
    assert_eq!(
        config_text("Error: Could not process rule\nadd rule\n^^^\t\u{85}"),
        "Error: Could not process rule add rule ^^^  "
    );
    // 'é' is 2 bytes: the cut may not split it.
    let long = "é".repeat(MAX_CONFIG_TEXT);
    let cut = config_text(&long);
    assert_eq!(cut.len(), MAX_CONFIG_TEXT);
    assert!(config_text(&"x".repeat(MAX_CONFIG_TEXT + 1)).len() == MAX_CONFIG_TEXT);
    let sent = SyncResult {
        transfer: 1,
        outcome: SyncOutcome::Failed,
        failed_unit: None,
        reason: format!("line one\nline two{long}"),
        readback: vec![],
    };
    let frame = emitted(&ConfigSyncMessage::Result(sent.clone()));
    let ConfigSyncMessage::Result(got) = view(&frame).message() else {
        panic!("not a result")
    };
    assert_eq!(got.reason, config_text(&sent.reason));
    assert!(got.reason.starts_with("line one line two"));
}

#[test]
#[should_panic(expected = "config-sync unit name")]
fn emitting_a_name_that_cannot_travel_is_a_bug() {
    emitted(&ConfigSyncMessage::ReadbackRequest {
        request: 1,
        units: vec![UnitId {
            kind: UnitKind::Files,
            name: "/etc/a\nb".into(),
        }],
    });
}

#[test]
fn unit_id_new_accepts_what_can_travel() {
    assert!(UnitId::new(UnitKind::Files, "/etc/nftables.d").is_ok());
    assert!(UnitId::new(UnitKind::Files, &"n".repeat(MAX_UNIT_NAME)).is_ok());
    assert!(UnitId::new(UnitKind::Files, &"n".repeat(MAX_UNIT_NAME + 1)).is_err());
    assert!(UnitId::new(UnitKind::Files, "").is_err());
    assert!(UnitId::new(UnitKind::Files, "/etc/\u{7f}").is_err());
}

/// The most a message can hold (every list full, every string at its limit) is one frame.
#[test]
fn the_largest_messages_fit_a_frame() {
    let name = "n".repeat(MAX_UNIT_NAME);
    let text = "t".repeat(MAX_CONFIG_TEXT);
    let units: Vec<_> = (0..MAX_CONFIG_UNITS)
        .map(|_| (id(UnitKind::Files, &name), UnitState::Unreadable))
        .collect();
    let offer = ConfigSyncMessage::Offer(ConfigOffer {
        versions: ConfigVersions {
            failoverd: text.clone(),
            schema: u16::MAX,
            backends: vec![(UnitKind::Nftables, text.clone()); MAX_CONFIG_UNITS],
        },
        source: true,
        auto: false,
        revision: u64::MAX,
        units: units.clone(),
    });
    let chunk = ConfigSyncMessage::Chunk(Chunk {
        transfer: 1,
        unit: MAX_CONFIG_UNITS as u16 - 1,
        offset: MAX_UNIT_LEN - MAX_CHUNK_LEN as u32,
        data: vec![0x5a; MAX_CHUNK_LEN],
    });
    for message in [offer, chunk] {
        let frame = emitted(&message);
        assert!(frame.len() <= MAX_FRAME_LEN);
        assert_eq!(view(&frame).message(), message);
    }
}

proptest! {
    #[test]
    fn messages_round_trip(message in message()) {
        let frame = emitted(&message);
        prop_assert_eq!(&view(&frame).message(), &message);
        prop_assert_eq!(view(&frame).kind(), message.kind());
        prop_assert_eq!(ConfigSyncMessage::parse(&frame[HEADER_LEN..]), Ok(message.clone()));
        // Emitting after other bytes (a buffer of 0xa5) writes the same frame: no field is
        // left as the buffer held it.
        let mut dirty = vec![0xa5; 19];
        message.emit(&mut dirty);
        prop_assert_eq!(&dirty[19..], &frame[..]);
    }

    /// A newer minor appends to the body: ignored.
    #[test]
    fn appended_bytes_are_ignored(message in message(), extra in proptest::collection::vec(any::<u8>(), 0..32)) {
        let longer = appended(emitted(&message), &extra);
        prop_assert_eq!(view(&longer).message(), message);
    }

    /// Arbitrary config-sync bodies, and valid ones with a byte changed: an error, an
    /// unknown message or a message whose accessors work.
    #[test]
    fn parse_never_panics(
        kind in 0u8..8,
        rest in proptest::collection::vec(any::<u8>(), 0..300),
        message in message(),
        flip in any::<(prop::sample::Index, u8)>(),
    ) {
        let mut valid = emitted(&message);
        let at = HEADER_LEN + flip.0.index(valid.len() - HEADER_LEN);
        valid[at] ^= flip.1 | 1;
        let random = appended(vec![b'F', b'O', 1, 8, 0, 0, 0, 0], &[&[kind][..], &rest].concat());
        for frame in [valid, random] {
            if let Ok(Message::ConfigSync(parsed)) = Message::parse(&frame) {
                let _ = (parsed.kind(), parsed.chunk(), parsed.body_len());
                let again = emitted(&parsed.message());
                prop_assert_eq!(view(&again).message(), parsed.message());
            }
        }
    }
}
