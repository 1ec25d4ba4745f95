//! The heartbeat path's task on loopback, through a relay the test controls: the peer's hellos
//! arrive; a datagram from another key, and the peer's own datagrams held back and released
//! after it stopped, are dropped and counted. Timeouts are failure bounds only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use failoverd_link::heartbeat::HeartbeatSeal;
use failoverd_link::{
    HeartbeatConfig, HeartbeatEvents, HeartbeatSender, Identity, spawn_heartbeat,
};
use tokio::net::UdpSocket;

const BOUND: Duration = Duration::from_secs(20);
const MAX_AGE: Duration = Duration::from_millis(100);
/// A hello frame as far as the path checks it (header only).
const HELLO: &[u8] = &[b'F', b'O', 1, 1, 0, 0, 0, 8];

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

fn path(
    identity: &Identity,
    pin: &Identity,
    peer: SocketAddr,
) -> (HeartbeatSender, HeartbeatEvents) {
    spawn_heartbeat(HeartbeatConfig {
        listen: loopback(),
        peer,
        identity: identity.clone(),
        pins: pin.fingerprint().into(),
        max_age: MAX_AGE,
    })
    .expect("spawn")
}

/// Forwards what arrives on `relay` to `to` while `forward` holds, and holds back (returns)
/// what arrives while it does not: an on-path attacker that records and delays.
fn relay(relay: UdpSocket, to: SocketAddr, forward: Arc<Mutex<bool>>) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let held = Arc::new(Mutex::new(Vec::new()));
    let hold = held.clone();
    tokio::spawn(async move {
        let mut buf = vec![0; 4096];
        while let Ok(len) = relay.recv(&mut buf).await {
            if *forward.lock().unwrap() {
                let _ = relay.send_to(&buf[..len], to).await;
            } else {
                hold.lock().unwrap().push(buf[..len].to_vec());
            }
        }
    });
    held
}

/// Sends a hello every 10 ms until the sender's path stops.
fn beat(sender: HeartbeatSender) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            sender.send(HELLO.to_vec());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

#[tokio::test]
async fn hellos_cross_and_forged_or_replayed_datagrams_are_dropped() {
    let (a_id, b_id) = (Identity::generate(), Identity::generate());
    let (a_key, b_key) = (a_id.fingerprint(), b_id.fingerprint());
    let to_b = UdpSocket::bind(loopback()).await.unwrap();
    let to_a = UdpSocket::bind(loopback()).await.unwrap();
    let (a, mut a_events) = path(&a_id, &b_id, to_b.local_addr().unwrap());
    let (b, mut b_events) = path(&b_id, &a_id, to_a.local_addr().unwrap());
    let forward = Arc::new(Mutex::new(true));
    let a_to_b = relay(to_b, b.local_addr(), forward.clone());
    relay(to_a, a.local_addr(), forward.clone());
    let beats = [beat(a.clone()), beat(b.clone())];

    // Both hear the other once each has heard a challenge.
    let heard = tokio::time::timeout(BOUND, b_events.recv()).await;
    assert_eq!(
        heard.expect("B hears A"),
        Some((a_key, HELLO.to_vec())),
        "B hears A, signed by A's key"
    );
    let heard = tokio::time::timeout(BOUND, a_events.recv()).await;
    assert_eq!(heard.expect("A hears B"), Some((b_key, HELLO.to_vec())));

    // Another host with its own key, sent straight to B.
    let mallory =
        HeartbeatSeal::new(&Identity::generate(), b_id.fingerprint(), MAX_AGE, 7).expect("a seal");
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    socket
        .send_to(&mallory.seal(1, HELLO), b.local_addr())
        .await
        .unwrap();

    // The relay holds A's next datagrams back, then A stops; the held datagrams (newer than any
    // B counted) are released once older than MAX_AGE.
    *forward.lock().unwrap() = false;
    tokio::time::sleep(Duration::from_millis(50)).await;
    for beat in &beats {
        beat.abort();
    }
    drop(a_events);
    tokio::time::sleep(3 * MAX_AGE).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(5), b_events.recv()).await {}
    let recorded = a_to_b.lock().unwrap().clone();
    assert!(!recorded.is_empty());
    // And one of them twice: a duplicate.
    let recorded = [recorded.clone(), recorded[..1].to_vec()].concat();
    let before = b.stats();
    for datagram in &recorded {
        socket.send_to(datagram, b.local_addr()).await.unwrap();
    }
    let replayed = tokio::time::timeout(3 * MAX_AGE, b_events.recv()).await;
    assert!(replayed.is_err(), "a held-back heartbeat was counted");
    let after = b.stats();
    let dropped = |stats: &failoverd_link::HeartbeatStats, reason: &str| {
        stats
            .dropped
            .iter()
            .find(|(name, _)| *name == reason)
            .map_or(0, |(_, count)| *count)
    };
    assert_eq!(
        dropped(&after, "stale") + dropped(&after, "replayed")
            - dropped(&before, "stale")
            - dropped(&before, "replayed"),
        recorded.len() as u64
    );
    assert_eq!(dropped(&after, "wrong_key"), 1);
    assert_eq!(after.accepted, before.accepted);
}
