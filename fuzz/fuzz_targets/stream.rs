//! Splits arbitrary bytes into frames the way the link's stream reader does: read a header,
//! `frame_len` decides the allocation before any body byte is read, then parse the frame.
#![no_main]

use failoverd_wire::{HEADER_LEN, MAX_FRAME_LEN, Message, frame_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Some((header, _)) = rest.split_first_chunk::<HEADER_LEN>() {
        let Ok(len) = frame_len(header) else { return }; // the reader closes the link
        assert!(
            (HEADER_LEN..=MAX_FRAME_LEN).contains(&len),
            "frame_len allowed {len} bytes"
        );
        let Some(bytes) = rest.get(..len) else { return }; // stream ends inside a frame
        let mut frame = vec![0; len];
        frame.copy_from_slice(bytes);
        if let Ok(Message::SessionBatch(batch)) = Message::parse(&frame) {
            batch.sections().flat_map(|s| s.ops()).for_each(drop);
        }
        rest = &rest[len..];
    }
});
