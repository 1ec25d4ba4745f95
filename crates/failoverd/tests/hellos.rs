//! The hello path (`hellos.rs`) over a real link on loopback: the hello thread judges the
//! peer's silence, the link's control thread reads the peer's hellos. Timeouts are failure
//! bounds only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use failoverd::clock::Clock;
use failoverd::hellos::{HelloPath, PeerDead};
use failoverd_core::Liveness;
use failoverd_link::{Channel, ControlTap, Identity, LinkConfig, LinkEvent, LinkEvents, spawn};
use failoverd_wire::{BackupType, Hello, HelloFlags, Role, SyncState};
use tokio::sync::mpsc;

const HELLO: Duration = Duration::from_millis(20);
/// Long beside the hello interval: the peer's hellos come from a thread of normal priority on
/// a machine shared with builds.
const DEAD: Duration = Duration::from_millis(150);
/// How long the reading thread is held: several dead intervals.
const HOLD: Duration = Duration::from_millis(600);
const BOUND: Duration = Duration::from_secs(20);

fn hello() -> Hello {
    Hello {
        pair_id: 1,
        node_id: 7,
        priority: 100,
        backup_type: BackupType::SYMMETRIC,
        state: SyncState::Synchronization,
        role: Role::Active,
        flags: HelloFlags(0),
        epoch: 1,
        hello_interval_ms: HELLO.as_millis() as u32,
        dead_interval_ms: DEAD.as_millis() as u32,
        tx_stamp: 1,
        echo_stamp: 0,
        resync_epoch: 0,
        protocol_minor: 0,
        applied: None,
    }
}

fn hello_frame() -> Vec<u8> {
    let mut frame = Vec::new();
    hello().emit(&mut frame);
    frame
}

async fn expect_up(events: &mut LinkEvents) {
    loop {
        match tokio::time::timeout(BOUND, events.recv()).await {
            Ok(Some(LinkEvent::Up { .. })) => return,
            Ok(Some(_)) => {}
            other => panic!("no link up: {other:?}"),
        }
    }
}

/// Verdicts received within `within`.
fn verdicts(dead: &mut mpsc::UnboundedReceiver<PeerDead>, within: Duration) -> Vec<PeerDead> {
    thread::sleep(within);
    std::iter::from_fn(|| dead.try_recv().ok()).collect()
}

/// Issue 10, finding 1: the hello thread judges, the control thread reads the socket. When the
/// reader does not run (held here in its tap; on a loaded machine, off the CPU) the peer's
/// hellos wait unread in the socket, and a verdict then would declare a live peer dead. The
/// hello thread must wait until the reader has drained its socket. Controls: once the peer is
/// really silent it is declared dead, while the reader is held only after it is let go.
#[test]
fn the_hello_thread_judges_only_after_the_reader_drained_the_socket() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut ids: Vec<Identity> = (0..2).map(|_| Identity::generate()).collect();
    ids.sort_by_key(|id| id.fingerprint());
    // Ours (B, the acceptor): its control thread waits in the tap while `held`.
    let path = HelloPath::spawn("B", Clock::start()).expect("hello thread");
    let held = Arc::new(AtomicBool::new(false));
    let tap = {
        let (path, held) = (path.clone(), held.clone());
        ControlTap::new(move |event| {
            while held.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(1));
            }
            path.handle_tap(event);
        })
    };
    let unused = "127.0.0.1:9".parse().expect("address");
    let listen = "127.0.0.1:0".parse().expect("address");
    let mut config = LinkConfig::new(listen, unused, ids[1].clone(), ids[0].fingerprint());
    config.control_tap = Some(tap);
    let (b_tx, mut b_rx) = runtime.block_on(async { spawn(config) }).expect("spawn B");
    let (dead_tx, mut dead) = mpsc::unbounded_channel();
    let mut liveness = Liveness::new(HELLO, DEAD, path.clock().now());
    liveness.set_hello(hello(), false);
    path.install(liveness, b_tx.clone(), dead_tx);
    // The peer (A, the dialer): a plain link sending hellos every interval while `speaking`.
    let config = LinkConfig::new(
        listen,
        b_tx.local_addr(),
        ids[0].clone(),
        ids[1].fingerprint(),
    );
    let (a_tx, mut a_rx) = runtime.block_on(async { spawn(config) }).expect("spawn A");
    runtime.block_on(async {
        expect_up(&mut a_rx).await;
        expect_up(&mut b_rx).await;
    });
    // Drain what the links hand the daemon, as a driver would.
    runtime.spawn(async move { while a_rx.recv().await.is_some() {} });
    runtime.spawn(async move { while b_rx.recv().await.is_some() {} });
    let speaking = Arc::new(AtomicBool::new(true));
    let speaker = {
        let speaking = speaking.clone();
        thread::spawn(move || {
            while speaking.load(Ordering::Acquire) {
                let _ = a_tx.send(Channel::Control, hello_frame());
                thread::sleep(HELLO);
            }
            a_tx
        })
    };
    let heard = || path.read(Liveness::hellos_received).expect("installed");
    let started = Instant::now();
    while heard() == 0 {
        assert!(started.elapsed() < BOUND, "no hello heard");
        thread::sleep(Duration::from_millis(1));
    }
    assert!(verdicts(&mut dead, 3 * DEAD).is_empty(), "a live peer");

    // The reader is held for several dead intervals while the peer keeps speaking.
    held.store(true, Ordering::Release);
    let found = verdicts(&mut dead, HOLD);
    held.store(false, Ordering::Release);
    let found: Vec<_> = found
        .into_iter()
        .chain(verdicts(&mut dead, 2 * DEAD))
        .collect();
    assert!(
        found.is_empty(),
        "the peer spoke all along, its hellos waited in the socket: {found:?}"
    );
    let before = heard();
    thread::sleep(3 * HELLO);
    assert!(heard() > before, "hellos heard again");

    // Control: the peer falls silent while the reader is held: no verdict until it is let go.
    held.store(true, Ordering::Release);
    speaking.store(false, Ordering::Release);
    let _a_tx = speaker.join().expect("speaker");
    let found = verdicts(&mut dead, HOLD);
    assert!(found.is_empty(), "judged with the reader held: {found:?}");
    held.store(false, Ordering::Release);
    let let_go = Instant::now();
    let verdict = loop {
        if let Ok(verdict) = dead.try_recv() {
            break verdict;
        }
        assert!(
            let_go.elapsed() < BOUND,
            "a silent peer never declared dead"
        );
        thread::sleep(Duration::from_millis(1));
    };
    eprintln!(
        "declared dead {:?} after the reader was let go, silent {:?}",
        let_go.elapsed(),
        verdict.silent
    );
    assert!(verdict.silent >= DEAD);
    path.stop();
}
