//! `SessionKey::parse` and `SessionRecord::parse` on arbitrary bytes; what parses emits, into a
//! buffer pre-filled with 0xa5 (so an unwritten field shows), exactly the bytes it came from.
#![no_main]

use failoverd_wire::{KEY_LEN, RECORD_LEN, SessionKey, SessionRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((key, _)) = SessionKey::parse(data) {
        let mut buf = [0xa5; RECORD_LEN];
        key.emit(&mut buf);
        assert_eq!(buf[..KEY_LEN], data[..KEY_LEN]);
    }
    let Ok(record) = SessionRecord::parse(data) else {
        return;
    };
    let mut buf = [0xa5; RECORD_LEN];
    record.emit(&mut buf);
    assert_eq!(buf[..], data[..RECORD_LEN]);
});
