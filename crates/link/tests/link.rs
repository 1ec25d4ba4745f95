//! Two links on loopback with ephemeral ports. Timeouts are failure bounds only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use failoverd_link::{
    Channel, ControlTap, Fingerprint, Identity, LinkConfig, LinkError, LinkEvent, LinkEvents,
    LinkSender, Pins, TapEvent, spawn, tls,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: a failing test should fail, not hang; a passing one never waits this long.
const BOUND: Duration = Duration::from_secs(20);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// An address nobody listens on; acceptors never dial it.
fn unused_peer() -> SocketAddr {
    "127.0.0.1:9".parse().expect("address")
}

/// Identities sorted by fingerprint: `ids[0]` dials whoever it pins if that sorts after it.
fn identities(n: usize) -> Vec<Identity> {
    let mut ids: Vec<Identity> = (0..n).map(|_| Identity::generate()).collect();
    ids.sort_by_key(|id| id.fingerprint());
    ids
}

/// A frame of an unassigned kind: the link checks only the header.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u32;
    let mut out = vec![b'F', b'O', failoverd_wire::VERSION, kind];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[derive(Debug)]
struct Node {
    tx: LinkSender,
    rx: LinkEvents,
}

fn start(id: &Identity, pin: Fingerprint, peer: SocketAddr) -> Node {
    start_on(any_port(), id, pin, peer).expect("spawn")
}

fn start_on(
    listen: SocketAddr,
    id: &Identity,
    pin: impl Into<Pins>,
    peer: SocketAddr,
) -> Result<Node, LinkError> {
    let mut config = LinkConfig::new(listen, peer, id.clone(), pin);
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    let (tx, rx) = spawn(config)?;
    Ok(Node { tx, rx })
}

/// A connected pair: (dialer, acceptor).
async fn connected_pair() -> (Node, Node, [Identity; 2]) {
    let ids = identities(2);
    let mut acceptor = start(&ids[1], ids[0].fingerprint(), unused_peer());
    let mut dialer = start(&ids[0], ids[1].fingerprint(), acceptor.tx.local_addr());
    expect_up(&mut dialer.rx).await;
    expect_up(&mut acceptor.rx).await;
    let [a, b]: [Identity; 2] = ids.try_into().expect("two");
    (dialer, acceptor, [a, b])
}

async fn next(rx: &mut LinkEvents) -> LinkEvent {
    tokio::time::timeout(BOUND, rx.recv())
        .await
        .expect("no event within the bound")
        .expect("link stopped")
}

async fn expect_up(rx: &mut LinkEvents) -> SocketAddr {
    match next(rx).await {
        LinkEvent::Up { remote, .. } => remote,
        other => panic!("expected Up, got {other:?}"),
    }
}

async fn expect_down(rx: &mut LinkEvents) -> String {
    loop {
        match next(rx).await {
            LinkEvent::Down { reason } => return reason,
            LinkEvent::Frame { .. } => {}
            other => panic!("expected Down, got {other:?}"),
        }
    }
}

async fn expect_frame(rx: &mut LinkEvents) -> (Channel, Vec<u8>) {
    match next(rx).await {
        LinkEvent::Frame { channel, bytes } => (channel, bytes),
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// Sends a control and a data frame and checks both arrive.
async fn ping(from: &LinkSender, to: &mut LinkEvents, n: u8) {
    from.send(Channel::Control, frame(1, &[n]))
        .expect("send control");
    from.send(Channel::Data, frame(2, &[n; 100]))
        .expect("send data");
    let mut got = Vec::new();
    while got.len() < 2 {
        match next(to).await {
            LinkEvent::Frame { channel, bytes } => got.push((channel, bytes)),
            LinkEvent::Rejected { .. } => {}
            other => panic!("expected frames, got {other:?}"),
        }
    }
    got.sort_by_key(|(c, _)| *c == Channel::Data);
    assert_eq!(got[0], (Channel::Control, frame(1, &[n])));
    assert_eq!(got[1], (Channel::Data, frame(2, &[n; 100])));
}

#[tokio::test]
async fn frames_flow_in_order_on_both_channels() {
    let (mut dialer, mut acceptor, _ids) = connected_pair().await;
    for (from, to) in [
        (&dialer.tx, &mut acceptor.rx),
        (&acceptor.tx, &mut dialer.rx),
    ] {
        for i in 0..200u32 {
            from.send(Channel::Control, frame(1, &i.to_be_bytes()))
                .expect("control");
            from.send_async(Channel::Data, frame(2, &[i as u8; 1000]))
                .await
                .expect("data");
        }
        let (mut control, mut data) = (0u32, 0u32);
        while control < 200 || data < 200 {
            match expect_frame(to).await {
                (Channel::Control, bytes) => {
                    assert_eq!(bytes, frame(1, &control.to_be_bytes()));
                    control += 1;
                }
                (Channel::Data, bytes) => {
                    assert_eq!(bytes, frame(2, &[data as u8; 1000]));
                    data += 1;
                }
            }
        }
    }
    let stats = dialer.tx.stats();
    assert_eq!(stats.control.frames_out, 200);
    assert_eq!(stats.data.frames_out, 200);
    assert_eq!(stats.control.frames_in, 200);
    assert_eq!(stats.data.bytes_in, 200 * 1008);
    assert_eq!(stats.rejected_handshakes, 0);

    // Malformed frames are refused locally, never sent.
    assert!(matches!(
        dialer.tx.send(Channel::Data, vec![1, 2, 3]),
        Err(LinkError::InvalidFrame(_))
    ));
    let mut short = frame(2, &[0; 10]);
    short.pop();
    assert!(matches!(
        dialer.tx.send(Channel::Data, short),
        Err(LinkError::InvalidFrame(_))
    ));
}

#[tokio::test]
async fn wrong_pin_on_either_side_is_rejected_naming_both_keys() {
    let [x, y, z]: [Identity; 3] = identities(3).try_into().expect("three");

    // The dialler (x) pins z, but y answers.
    let mut acceptor = start(&y, x.fingerprint(), unused_peer());
    let mut dialer = start(&x, z.fingerprint(), acceptor.tx.local_addr());
    match next(&mut dialer.rx).await {
        LinkEvent::Rejected { remote, reason } => {
            assert_eq!(remote, acceptor.tx.local_addr());
            let expected = format!(
                "peer {remote} presented key {} but {} is pinned",
                y.fingerprint(),
                z.fingerprint()
            );
            assert_eq!(reason, expected);
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    match next(&mut acceptor.rx).await {
        LinkEvent::Rejected { .. } => {}
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(dialer.tx.stats().rejected_handshakes >= 1);
    drop(dialer);

    // The acceptor (z) pins x, but y dials.
    let mut acceptor2 = start(&z, x.fingerprint(), unused_peer());
    let mut dialer2 = start(&y, z.fingerprint(), acceptor2.tx.local_addr());
    match next(&mut acceptor2.rx).await {
        LinkEvent::Rejected { reason, .. } => {
            assert!(reason.contains(&y.fingerprint().to_string()), "{reason}");
            assert!(reason.contains(&x.fingerprint().to_string()), "{reason}");
            assert!(reason.contains("but"), "{reason}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    match next(&mut dialer2.rx).await {
        LinkEvent::Rejected { reason, .. } => {
            assert!(reason.contains("refused our key"), "{reason}");
            assert!(reason.contains(&y.fingerprint().to_string()), "{reason}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    drop(dialer2);

    // Positive control: the same acceptors with the right dialler reach Up.
    let mut good = start(&x, y.fingerprint(), acceptor.tx.local_addr());
    expect_up(&mut good.rx).await;
    loop {
        match next(&mut acceptor.rx).await {
            LinkEvent::Up { .. } => break,
            LinkEvent::Rejected { .. } => {}
            other => panic!("expected Up, got {other:?}"),
        }
    }
    ping(&good.tx, &mut acceptor.rx, 7).await;
    let mut good2 = start(&x, z.fingerprint(), acceptor2.tx.local_addr());
    expect_up(&mut good2.rx).await;
}

#[tokio::test]
async fn garbage_and_silent_clients_do_not_disturb_the_link() {
    let (dialer, mut acceptor, _ids) = connected_pair().await;
    let addr = acceptor.tx.local_addr();

    // Random bytes, then a connection that never says anything.
    let mut garbage = TcpStream::connect(addr).await.expect("connect");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.write_all(&noise).await.expect("write");
    let _silent = TcpStream::connect(addr).await.expect("connect");

    let started = Instant::now();
    let mut rejected = 0;
    let mut n = 0u8;
    // Two kinds of refusal (garbage, silence): a line and an event each.
    while rejected < 2 {
        n = n.wrapping_add(1);
        dialer
            .tx
            .send(Channel::Control, frame(1, &[n]))
            .expect("link still up");
        // Every frame arrives; rejections may come in between.
        loop {
            match next(&mut acceptor.rx).await {
                LinkEvent::Rejected { remote, reason } => {
                    assert_ne!(remote.port(), 0);
                    assert!(!reason.is_empty());
                    rejected += 1;
                }
                LinkEvent::Frame { channel, bytes } => {
                    assert_eq!((channel, bytes), (Channel::Control, frame(1, &[n])));
                    break;
                }
                other => panic!("link disturbed: {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The silent one can only have been rejected by the handshake timeout.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(acceptor.tx.stats().rejected_handshakes, 2);
    ping(&dialer.tx, &mut acceptor.rx, 200).await;
}

/// The first `Rejected` of `rx` (frames and other events are skipped).
async fn expect_rejected(rx: &mut LinkEvents, within: Duration) -> (SocketAddr, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(LinkEvent::Rejected { remote, reason })) => return (remote, reason),
            Ok(Some(_)) => {}
            Ok(None) => panic!("link stopped"),
            Err(_) => panic!("no rejection within {within:?}"),
        }
    }
}

/// Issue 11: when both nodes think they accept (the node whose key sorts last pins a key that
/// sorts before its own, the peer's real key sorts after it), nobody dialled and neither node
/// said anything. The node that only accepts now probes its peer, and both nodes log the
/// refused key.
#[tokio::test]
async fn a_wrong_pin_on_a_node_that_accepts_is_logged_on_both_nodes() {
    let [x, y, z]: [Identity; 3] = identities(3).try_into().expect("three");
    // B (z) pins A (y) correctly; A pins x, but its peer is z. Both keys sort after the key
    // the other side pins... for A: y > x, for B: z > y: both accept.
    let mut b = start(&z, y.fingerprint(), unused_peer());
    let mut a = start(&y, x.fingerprint(), b.tx.local_addr());
    let within = Duration::from_secs(10);
    let (_, reason) = expect_rejected(&mut a.rx, within).await;
    assert_eq!(
        reason,
        format!(
            "peer {} presented key {} but {} is pinned",
            b.tx.local_addr(),
            z.fingerprint(),
            x.fingerprint()
        )
    );
    let (_, reason) = expect_rejected(&mut b.rx, within).await;
    assert!(
        reason.contains(&format!("refused our key {}", z.fingerprint())),
        "{reason}"
    );
}

/// A free port on `ip`.
fn port_on(ip: [u8; 4]) -> SocketAddr {
    std::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), 0))
        .expect("bind")
        .local_addr()
        .expect("address")
}

/// [`start_on`], retrying while the previous listener on `listen` is still closing.
async fn restart_on(
    listen: SocketAddr,
    id: &Identity,
    pin: impl Into<Pins> + Copy,
    peer: SocketAddr,
) -> Node {
    let deadline = Instant::now() + BOUND;
    loop {
        match start_on(listen, id, pin, peer) {
            Ok(node) => return node,
            Err(LinkError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => panic!("{err}"),
        }
    }
}

/// Issue 11: two pins let the peer's key be rotated. The node pinning both sits between them
/// in key order, so it must accept the one and dial the other; a third key is refused, and
/// both nodes log it. The nodes use distinct loopback addresses: each dials from its own
/// `listen` address, the only one its peer accepts.
#[tokio::test]
async fn either_of_two_pins_connects_and_a_third_key_is_refused_on_both_nodes() {
    let [w, x, y, z]: [Identity; 4] = identities(4).try_into().expect("four");
    let here = port_on([127, 0, 0, 2]);
    let there = port_on([127, 0, 0, 3]);
    let pins = Pins::new(&[w.fingerprint(), y.fingerprint()]).expect("two pins");
    let mut node = start_on(here, &x, pins, there).expect("spawn");

    // The old key sorts first: it dials.
    let mut peer = restart_on(there, &w, x.fingerprint(), here).await;
    match next(&mut peer.rx).await {
        LinkEvent::Up { peer: key, remote } => {
            assert_eq!((key, remote), (x.fingerprint(), here));
        }
        other => panic!("expected Up, got {other:?}"),
    }
    match next(&mut node.rx).await {
        LinkEvent::Up { peer: key, remote } => {
            assert_eq!(key, w.fingerprint());
            assert_eq!(
                remote.ip(),
                there.ip(),
                "the dialler's source is its listen address"
            );
        }
        other => panic!("expected Up, got {other:?}"),
    }
    ping(&peer.tx, &mut node.rx, 1).await;
    drop(peer);
    expect_down(&mut node.rx).await;

    // The new key sorts last: it is dialled.
    let mut peer = restart_on(there, &y, x.fingerprint(), here).await;
    expect_up(&mut peer.rx).await;
    loop {
        match next(&mut node.rx).await {
            LinkEvent::Up { peer: key, .. } => {
                assert_eq!(key, y.fingerprint());
                break;
            }
            LinkEvent::Rejected { .. } => {}
            other => panic!("expected Up, got {other:?}"),
        }
    }
    ping(&peer.tx, &mut node.rx, 2).await;
    drop(peer);
    expect_down(&mut node.rx).await;

    // Negative control: a third key gets nowhere, and both nodes say why.
    let mut stranger = restart_on(there, &z, x.fingerprint(), here).await;
    let within = Duration::from_secs(10);
    let (_, reason) = expect_rejected(&mut node.rx, within).await;
    assert!(reason.contains(&z.fingerprint().to_string()), "{reason}");
    assert!(reason.contains(&format!("{pins} is pinned")), "{reason}");
    let (_, reason) = expect_rejected(&mut stranger.rx, within).await;
    assert!(reason.contains("refused our key"), "{reason}");
    assert_eq!(stranger.tx.stats().reconnects, 0);
    assert!(matches!(
        stranger.tx.send(Channel::Control, frame(1, &[])),
        Err(LinkError::NotConnected)
    ));
}

/// Issue 11: a connection from another address than the peer's is closed before TLS, counted,
/// and the log names both addresses.
#[tokio::test]
async fn a_connection_from_another_address_is_closed_before_tls() {
    let ids = identities(2);
    let peer: SocketAddr = "127.0.0.3:9".parse().expect("address");
    let mut node =
        start_on(port_on([127, 0, 0, 2]), &ids[1], ids[0].fingerprint(), peer).expect("spawn");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.4:0".parse().expect("address"))
        .expect("bind");
    let mut stranger = socket.connect(node.tx.local_addr()).await.expect("connect");
    let (remote, reason) = expect_rejected(&mut node.rx, BOUND).await;
    assert_eq!(remote.ip(), stranger.local_addr().expect("address").ip());
    assert_eq!(
        reason,
        "closed before TLS: not the peer's address 127.0.0.3",
    );
    // Closed without a byte: no handshake was started.
    let mut buf = [0; 16];
    let read = tokio::time::timeout(BOUND, stranger.read(&mut buf))
        .await
        .expect("closed within the bound");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let stats = node.tx.stats();
    assert_eq!((stats.refused_source, stats.rejected_handshakes), (1, 0));

    // Control: from the peer's address the same connection gets a TLS handshake (which fails
    // on the garbage, counted as a rejected handshake).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.3:0".parse().expect("address"))
        .expect("bind");
    let mut from_peer = socket.connect(node.tx.local_addr()).await.expect("connect");
    from_peer
        .write_all(&[0x16, 3, 1, 0, 4, 0, 0, 0, 0])
        .await
        .expect("write");
    let deadline = Instant::now() + BOUND;
    while node.tx.stats().rejected_handshakes == 0 {
        assert!(Instant::now() < deadline, "no handshake attempted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.tx.stats().refused_source, 1);
}

/// Issue 11: idle connections from the peer's own address (which passes the source filter)
/// held every handshake slot for the 2 s handshake timeout, so the peer's dial was refused.
/// Now the oldest handshake in progress makes room for the newest, and the link comes up
/// within the timeout while the idle connections are still open.
#[tokio::test]
async fn idle_connections_from_the_peer_address_cannot_keep_the_peer_out() {
    let ids = identities(2);
    let mut acceptor = start(&ids[1], ids[0].fingerprint(), unused_peer());
    let addr = acceptor.tx.local_addr();
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let _dialer = start(&ids[0], ids[1].fingerprint(), addr);
    loop {
        match next(&mut acceptor.rx).await {
            LinkEvent::Up { .. } => break,
            LinkEvent::Rejected { .. } => {}
            other => panic!("expected Up, got {other:?}"),
        }
    }
    let took = started.elapsed();
    eprintln!("link up {took:?} after the dialler started, behind 80 idle connections");
    assert!(
        took < Duration::from_millis(1500),
        "the link came up after {took:?}, behind the idle connections"
    );
    let stats = acceptor.tx.stats();
    assert!(stats.evicted_handshakes >= 2, "{stats:?}");
    assert!(stats.refused_rate > 0, "{stats:?}");
    drop(idle);
}

/// Connects to `addr` as `id` pinning `pin`, sends the channel preamble, and waits for the echo.
async fn raw_half(
    addr: SocketAddr,
    id: &Identity,
    pin: Fingerprint,
    tag: u8,
    attempt: u64,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = Arc::new(tls::client_config(id, pin).expect("client config"));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake");
    let mut preamble = vec![tag];
    preamble.extend_from_slice(&attempt.to_be_bytes());
    stream.write_all(&preamble).await.expect("preamble");
    stream.flush().await.expect("flush");
    let mut echo = [0];
    stream.read_exact(&mut echo).await.expect("echo");
    assert_eq!(echo[0], tag);
    stream
}

#[tokio::test]
async fn malformed_frames_close_the_link_and_nothing_after_is_delivered() {
    let ids = identities(2);
    let mut acceptor = start(&ids[1], ids[0].fingerprint(), unused_peer());
    let addr = acceptor.tx.local_addr();
    let oversized = {
        let mut header = frame(2, &[]);
        header[4..8].copy_from_slice(&((2u32 << 20) + 8).to_be_bytes());
        header
    };
    let bad_magic = b"GARBAGE!".to_vec();
    for (attempt, bad) in [(1u64, oversized), (2, bad_magic)] {
        let mut control = raw_half(addr, &ids[0], ids[1].fingerprint(), b'C', attempt).await;
        let mut data = raw_half(addr, &ids[0], ids[1].fingerprint(), b'D', attempt).await;
        expect_up(&mut acceptor.rx).await;
        let mut bytes = frame(2, b"before");
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&frame(2, b"after"));
        data.write_all(&bytes).await.expect("write");
        data.flush().await.expect("flush");
        assert_eq!(
            expect_frame(&mut acceptor.rx).await,
            (Channel::Data, frame(2, b"before"))
        );
        match next(&mut acceptor.rx).await {
            LinkEvent::Down { reason } => assert!(reason.contains("malformed"), "{reason}"),
            other => panic!("expected Down, got {other:?}"),
        }
        // Both connections were closed.
        let mut buf = [0; 16];
        let read = tokio::time::timeout(BOUND, control.read(&mut buf))
            .await
            .expect("control closed within the bound");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert_eq!(acceptor.tx.stats().malformed_frames, 2);
    assert!(matches!(
        acceptor.tx.send(Channel::Control, frame(1, &[])),
        Err(LinkError::NotConnected)
    ));
}

#[tokio::test]
async fn a_new_pair_from_the_peer_replaces_the_current_link() {
    let ids = identities(2);
    let mut acceptor = start(&ids[1], ids[0].fingerprint(), unused_peer());
    let addr = acceptor.tx.local_addr();
    let pin = ids[1].fingerprint();
    let _first = (
        raw_half(addr, &ids[0], pin, b'C', 1).await,
        raw_half(addr, &ids[0], pin, b'D', 1).await,
    );
    expect_up(&mut acceptor.rx).await;
    // The peer restarted without its old connections closing (e.g. power loss): a half alone
    // changes nothing, a complete pair replaces the link.
    let control = raw_half(addr, &ids[0], pin, b'C', 2).await;
    acceptor
        .tx
        .send(Channel::Control, frame(1, b"old"))
        .expect("old link still up");
    let mut data = raw_half(addr, &ids[0], pin, b'D', 2).await;
    let reason = expect_down(&mut acceptor.rx).await;
    assert!(reason.contains("replaced"), "{reason}");
    expect_up(&mut acceptor.rx).await;
    data.write_all(&frame(2, b"new")).await.expect("write");
    data.flush().await.expect("flush");
    assert_eq!(
        expect_frame(&mut acceptor.rx).await,
        (Channel::Data, frame(2, b"new"))
    );
    drop(control);
    expect_down(&mut acceptor.rx).await;
    assert_eq!(acceptor.tx.stats().reconnects, 1);
}

#[tokio::test]
async fn reconnects_after_restart_and_close() {
    let (dialer, mut acceptor, [a, b]) = connected_pair().await;
    let addr = acceptor.tx.local_addr();
    ping(&dialer.tx, &mut acceptor.rx, 1).await;

    // The dialling peer restarts.
    drop(dialer);
    expect_down(&mut acceptor.rx).await;
    let mut dialer = start(&a, b.fingerprint(), addr);
    expect_up(&mut dialer.rx).await;
    expect_up(&mut acceptor.rx).await;
    ping(&dialer.tx, &mut acceptor.rx, 2).await;

    // The accepting peer restarts on the same port; the dialler keeps trying.
    drop(acceptor);
    expect_down(&mut dialer.rx).await;
    let deadline = Instant::now() + BOUND;
    let mut acceptor = loop {
        match start_on(addr, &b, a.fingerprint(), unused_peer()) {
            Ok(node) => break node,
            // The old listener closes as its task notices the drop.
            Err(LinkError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => panic!("{err}"),
        }
    };
    expect_up(&mut acceptor.rx).await;
    expect_up(&mut dialer.rx).await;
    ping(&acceptor.tx, &mut dialer.rx, 3).await;
    assert_eq!(dialer.tx.stats().reconnects, 1);

    // close() on either side: both see Down once, then the dialler reconnects.
    for closer in 0..2 {
        if closer == 0 {
            acceptor.tx.close();
        } else {
            dialer.tx.close();
        }
        expect_down(&mut acceptor.rx).await;
        expect_down(&mut dialer.rx).await;
        expect_up(&mut dialer.rx).await;
        expect_up(&mut acceptor.rx).await;
        ping(&dialer.tx, &mut acceptor.rx, 4 + closer).await;
    }
}

#[tokio::test]
async fn spawn_reports_configuration_errors() {
    let ids = identities(2);
    let node = start(&ids[1], ids[0].fingerprint(), unused_peer());
    let taken = node.tx.local_addr();
    let err = start_on(taken, &ids[1], ids[0].fingerprint(), unused_peer()).expect_err("bound");
    assert!(matches!(err, LinkError::Bind { .. }), "{err}");
    let err =
        start_on(any_port(), &ids[0], ids[0].fingerprint(), unused_peer()).expect_err("own key");
    assert!(matches!(err, LinkError::Config(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_overtakes_a_bulk_transfer() {
    const FRAME: usize = 64 * 1024;
    const FRAMES: usize = 3200; // 200 MiB
    let (dialer, mut acceptor, _ids) = connected_pair().await;
    let tx = dialer.tx.clone();
    let sent_at = tokio::spawn(async move {
        let bulk = frame(2, &[0xa5; FRAME - 8]);
        let mut sent_at = None;
        for i in 0..FRAMES {
            tx.send_async(Channel::Data, bulk.clone())
                .await
                .expect("data");
            if i == 2 * failoverd_link::DATA_QUEUE_FRAMES {
                // The data queue is (about) full and the connection busy: now a heartbeat.
                sent_at = Some(Instant::now());
                tx.send(Channel::Control, frame(1, b"hello"))
                    .expect("control is never blocked by data");
            }
        }
        sent_at.expect("sent")
    });
    let mut data_frames = 0;
    let (arrived, frames_before) = loop {
        match expect_frame(&mut acceptor.rx).await {
            (Channel::Data, bytes) => {
                assert_eq!(bytes.len(), FRAME);
                data_frames += 1;
            }
            (Channel::Control, bytes) => {
                assert_eq!(bytes, frame(1, b"hello"));
                break (Instant::now(), data_frames);
            }
        }
    };
    while data_frames < FRAMES {
        assert_eq!(expect_frame(&mut acceptor.rx).await.0, Channel::Data);
        data_frames += 1;
    }
    let done = Instant::now();
    let sent_at = sent_at.await.expect("sender");
    let latency = arrived.duration_since(sent_at);
    eprintln!(
        "control frame: {latency:?} after send, after {frames_before} of {FRAMES} data frames; bulk finished {:?} later",
        done.duration_since(arrived)
    );
    assert!(frames_before < FRAMES, "the heartbeat waited for the bulk");
    // On one shared connection it would follow every data frame queued before it.
    assert!(
        frames_before <= 2 * failoverd_link::DATA_QUEUE_FRAMES,
        "the heartbeat queued behind {frames_before} data frames"
    );
}

/// Issue 10, finding 1: a node whose runtime is busy (a long driver turn, bulk TLS work, or
/// its threads off the CPU on a loaded machine) must still send and receive control frames
/// on time. Node A's whole runtime is blocked for 400 ms while each side sends a control frame
/// every 10 ms from a plain thread (as the hello thread does): each side's tap must see the
/// other's frames without a gap anywhere near that long.
#[test]
fn control_frames_flow_while_the_runtime_is_blocked() {
    const BLOCK: Duration = Duration::from_millis(400);
    const EVERY: Duration = Duration::from_millis(10);
    let ids = identities(2);
    let heard: [Arc<Mutex<Vec<Instant>>>; 2] = Default::default();
    let tap = |heard: &Arc<Mutex<Vec<Instant>>>| {
        let heard = heard.clone();
        ControlTap::new(move |event| {
            if let TapEvent::Frame(_) = event {
                heard.lock().unwrap().push(Instant::now());
            }
        })
    };
    let config = |id: &Identity, pin: Fingerprint, peer, tap| {
        let mut config = LinkConfig::new(any_port(), peer, id.clone(), pin);
        config.control_tap = Some(tap);
        config
    };
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    // B, the acceptor, on a runtime of its own that keeps running.
    let b_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (b_tx, mut b_rx) = b_runtime
        .block_on(async {
            spawn(config(
                &ids[1],
                ids[0].fingerprint(),
                unused_peer(),
                tap(&heard[1]),
            ))
        })
        .expect("spawn b");
    let b_addr = b_tx.local_addr();
    // A, the dialer, on a runtime that its thread blocks once the link is up.
    let (a_up, a_ready) = std::sync::mpsc::channel();
    let (a_release, a_released) = std::sync::mpsc::channel::<()>();
    let a_id = ids[0].clone();
    let a_pin = ids[1].fingerprint();
    let a_heard = tap(&heard[0]);
    let a_thread = std::thread::spawn(move || {
        let a_runtime = runtime();
        a_runtime.block_on(async move {
            let (a_tx, mut a_rx) = spawn(config(&a_id, a_pin, b_addr, a_heard)).expect("spawn a");
            expect_up(&mut a_rx).await;
            a_up.send(a_tx).unwrap();
            std::thread::sleep(BLOCK);
            let _ = a_released.recv();
            drop(a_rx);
        });
    });
    let a_tx = a_ready.recv_timeout(BOUND).expect("A up");
    b_runtime.block_on(async { expect_up(&mut b_rx).await });
    let started = Instant::now();
    while started.elapsed() < BLOCK {
        a_tx.send(Channel::Control, frame(1, b"a"))
            .expect("a sends");
        b_tx.send(Channel::Control, frame(1, b"b"))
            .expect("b sends");
        std::thread::sleep(EVERY);
    }
    let ended = Instant::now();
    a_release.send(()).unwrap();
    a_thread.join().unwrap();
    let mut late: Vec<String> = Vec::new();
    for (name, heard) in ["A", "B"].into_iter().zip(&heard) {
        let heard: Vec<Instant> = heard
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|&t| t >= started)
            .collect();
        let mut gaps: Vec<Duration> = heard.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.push(heard.first().map_or(BLOCK, |&t| t - started));
        gaps.push(
            heard
                .last()
                .map_or(BLOCK, |&t| ended.saturating_duration_since(t)),
        );
        let longest = gaps.into_iter().max().expect("some");
        eprintln!(
            "{name} heard {} frames, longest gap {longest:?}",
            heard.len()
        );
        if longest >= BLOCK / 2 {
            late.push(format!(
                "{name}'s tap went {longest:?} without a control frame"
            ));
        }
    }
    assert!(late.is_empty(), "while A's runtime was blocked: {late:?}");
}

/// A drain confirms that every control frame that had reached the socket when it was asked
/// for was handed to the tap (the hello path judges the peer's silence only after one): B's
/// control thread is held in its tap on the first frame while 999 more reach its socket
/// (40 KB: more than one read takes, less than the socket's buffer), a drain is asked, the
/// thread is let go; `Drained` must come after all 1,000 frames, and a drain asked when
/// nothing waits is confirmed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_confirmed_only_after_the_frames_waiting_in_the_socket() {
    #[derive(Debug, PartialEq)]
    enum Seen {
        Frame,
        Drained,
    }
    const FRAMES: usize = 1000;
    let ids = identities(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    // Closed: B's control thread waits in its tap.
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tap = {
        let (seen, open) = (seen.clone(), open.clone());
        ControlTap::new(move |event| {
            let what = match event {
                TapEvent::Frame(_) => Seen::Frame,
                TapEvent::Drained => Seen::Drained,
                TapEvent::Up | TapEvent::Down => return,
            };
            while !open.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            seen.lock().unwrap().push(what);
        })
    };
    let mut config = LinkConfig::new(
        any_port(),
        unused_peer(),
        ids[1].clone(),
        ids[0].fingerprint(),
    );
    config.control_tap = Some(tap);
    let (b_tx, mut b_rx) = spawn(config).expect("spawn b");
    let mut a = start(&ids[0], ids[1].fingerprint(), b_tx.local_addr());
    expect_up(&mut a.rx).await;
    expect_up(&mut b_rx).await;
    for n in 0..FRAMES {
        a.tx.send(Channel::Control, frame(1, &[n as u8; 32]))
            .expect("send");
    }
    // Loopback carries them in well under a millisecond; B's thread waits in the tap.
    tokio::time::sleep(Duration::from_millis(200)).await;
    b_tx.drain().expect("link up");
    open.store(true, std::sync::atomic::Ordering::Release);
    let confirmed = |seen: &Arc<Mutex<Vec<Seen>>>, drains: usize| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| **s == Seen::Drained)
            .count()
            >= drains
    };
    let started = Instant::now();
    while !confirmed(&seen, 1) {
        assert!(started.elapsed() < BOUND, "no drain confirmed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    {
        let seen = seen.lock().unwrap();
        let frames_before = seen.iter().take_while(|s| **s == Seen::Frame).count();
        assert_eq!(frames_before, FRAMES, "frames tapped before the drain");
    }
    b_tx.drain().expect("link up");
    while !confirmed(&seen, 2) {
        assert!(started.elapsed() < BOUND, "an idle drain not confirmed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(b_rx);
}
