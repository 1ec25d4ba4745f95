//! `HeartbeatView::new_checked` on arbitrary bytes, then check → emit → check: every accepted
//! datagram re-emits (with its own signature bytes) to the same bytes.
#![no_main]

use failoverd_wire::heartbeat::{Heartbeat, HeartbeatView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(view) = HeartbeatView::new_checked(data) else {
        return;
    };
    let signature = view.signature().to_vec();
    let again = Heartbeat {
        challenge: view.challenge(),
        echo: view.echo(),
        hello: view.hello(),
        key: view.key(),
    }
    .emit(signature.len(), |_| signature.clone());
    // Reserved bytes are not kept, and an echo with a zero salt reads as none.
    let check = HeartbeatView::new_checked(&again[..]).expect("re-emitted datagram is valid");
    assert_eq!(check.challenge(), view.challenge());
    assert_eq!(check.echo(), view.echo());
    assert_eq!(check.hello(), view.hello());
    assert_eq!(check.key(), view.key());
    assert_eq!(check.signature(), view.signature());
});
