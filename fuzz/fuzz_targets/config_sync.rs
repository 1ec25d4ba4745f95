//! `ConfigSyncView::new_checked` on arbitrary bodies (no frame header to get past), then
//! parse → emit → parse: every accepted message re-emits to a frame that parses to an equal
//! message, a chunk's borrowed data is the owned message's, and `ConfigSyncMessage::parse`
//! agrees with the view.
#![no_main]

use failoverd_wire::{ConfigSyncMessage, ConfigSyncView, HEADER_LEN, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(view) = ConfigSyncView::new_checked(data) else {
        assert!(ConfigSyncMessage::parse(data).is_err());
        return;
    };
    let message = view.message();
    assert_eq!(ConfigSyncMessage::parse(data).as_ref(), Ok(&message));
    assert_eq!(view.kind(), message.kind());
    match (&message, view.chunk()) {
        (ConfigSyncMessage::Chunk(owned), Some(borrowed)) => {
            assert_eq!(*owned, borrowed.to_chunk())
        }
        (ConfigSyncMessage::Chunk(_), None) | (_, Some(_)) => {
            panic!("chunk() disagrees with {message:?}")
        }
        (_, None) => {}
    }
    let mut buf = Vec::new();
    message.emit(&mut buf);
    let Ok(Message::ConfigSync(again)) = Message::parse(&buf) else {
        panic!("{message:?} re-encoded as {buf:?}")
    };
    assert_eq!(again.message(), message);
    assert_eq!(again.body_len(), buf.len() - HEADER_LEN);
});
