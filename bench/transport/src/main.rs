//! Failover-link transport measurement on loopback, pinned mutual TLS 1.3 on both candidates:
//!
//! - `tcp`: the `failoverd-link` crate itself (TLS over two TCP connections, control and data);
//! - `quic`: quinn 0.11, heartbeats as QUIC datagrams, data on one unidirectional stream.
//!
//! For each: heartbeat round-trip times while idle, then while a bulk transfer of 64 KiB
//! session-batch frames saturates the data path, and the bulk throughput meanwhile.
//!
//! `cargo run --release -- [tcp|quic|all] [seconds]` (default `all 5`). Bounded: a fixed number of
//! idle pings and a fixed load duration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use failoverd_link::{Channel, Identity, LinkConfig, LinkEvent, tls};

/// Frames of session batches as the daemon sends them: header, batch header, one section.
const FRAME_LEN: usize = 64 * 1024;
const RECORD_LEN: usize = 156;
const RECORDS_PER_FRAME: usize = (FRAME_LEN - 8 - 20 - 8) / RECORD_LEN;
const IDLE_PINGS: usize = 2000;
/// Interval between heartbeats under load.
const PING_EVERY: Duration = Duration::from_millis(1);
/// A heartbeat not answered in this long counts as lost (QUIC datagrams may be dropped).
const PING_TIMEOUT: Duration = Duration::from_secs(1);

fn frame(kind: u8, payload_len: usize) -> Vec<u8> {
    let len = (8 + payload_len) as u32;
    let mut out = vec![b'F', b'O', 1, kind];
    out.extend_from_slice(&len.to_be_bytes());
    out.resize(8 + payload_len, 0xa5);
    out
}

fn bulk_frame() -> Vec<u8> {
    frame(3, 20 + 8 + RECORDS_PER_FRAME * RECORD_LEN)
}

/// A hello-sized heartbeat (44-byte body).
fn ping_frame() -> Vec<u8> {
    frame(1, 44)
}

struct Report {
    idle: Vec<Duration>,
    loaded: Vec<Duration>,
    lost: usize,
    bytes: u64,
    elapsed: Duration,
}

fn summary(name: &str, mut rtts: Vec<Duration>) -> String {
    rtts.sort();
    if rtts.is_empty() {
        return format!("{name}: no samples");
    }
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
    format!(
        "{name}: n={} p50={:?} p99={:?} max={:?}",
        rtts.len(),
        at(0.5),
        at(0.99),
        rtts[rtts.len() - 1]
    )
}

fn print(transport: &str, report: Report) {
    let secs = report.elapsed.as_secs_f64();
    let frames = report.bytes as f64 / bulk_frame().len() as f64;
    println!("== {transport}");
    println!("  {}", summary("heartbeat RTT idle", report.idle));
    println!(
        "  {}",
        summary("heartbeat RTT under bulk load", report.loaded)
    );
    println!("  heartbeats lost under load: {}", report.lost);
    println!(
        "  bulk: {:.0} MB/s, {:.2} M records/s ({} KiB frames, {RECORDS_PER_FRAME} records of {RECORD_LEN} B each, {secs:.1} s)",
        report.bytes as f64 / secs / 1e6,
        frames * RECORDS_PER_FRAME as f64 / secs / 1e6,
        FRAME_LEN / 1024,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "all".to_string());
    let secs: u64 = args.next().map_or(5, |s| s.parse().expect("seconds"));
    let load = Duration::from_secs(secs);
    // The daemon's runtime on the target machine: one worker per core (2).
    let workers = std::env::var("WORKERS").map_or(2, |w| w.parse().expect("WORKERS"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if which == "tcp" || which == "all" {
            print(
                "TLS 1.3 over two TCP connections (failoverd-link)",
                tcp(load).await,
            );
        }
        if which == "quic" || which == "all" {
            print(
                "QUIC (quinn 0.11), datagram heartbeats, one data stream",
                quic(load).await,
            );
        }
    });
}

fn identities() -> (Identity, Identity) {
    let a = Identity::generate();
    let b = Identity::generate();
    if a.fingerprint() < b.fingerprint() {
        (a, b)
    } else {
        (b, a)
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

async fn tcp(load: Duration) -> Report {
    let (dialer_id, acceptor_id) = identities();
    let (b_tx, mut b_rx) = failoverd_link::spawn(LinkConfig::new(
        loopback(),
        "127.0.0.1:9".parse().expect("addr"),
        acceptor_id.clone(),
        dialer_id.fingerprint(),
    ))
    .expect("acceptor");
    let (a_tx, mut a_rx) = failoverd_link::spawn(LinkConfig::new(
        loopback(),
        b_tx.local_addr(),
        dialer_id,
        acceptor_id.fingerprint(),
    ))
    .expect("dialer");
    let received = Arc::new(AtomicU64::new(0));
    // The acceptor echoes heartbeats and counts data.
    let counter = received.clone();
    tokio::spawn(async move {
        while let Some(event) = b_rx.recv().await {
            match event {
                LinkEvent::Frame {
                    channel: Channel::Control,
                    bytes,
                } => {
                    let _ = b_tx.send(Channel::Control, bytes);
                }
                LinkEvent::Frame { bytes, .. } => {
                    counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    loop {
        if let Some(LinkEvent::Up { .. }) = a_rx.recv().await {
            break;
        }
    }
    let mut idle = Vec::with_capacity(IDLE_PINGS);
    for _ in 0..IDLE_PINGS {
        idle.extend(tcp_ping(&a_tx, &mut a_rx).await);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let bulk = {
        let (tx, stop) = (a_tx.clone(), stop.clone());
        tokio::spawn(async move {
            let frame = bulk_frame();
            while !stop.load(Ordering::Relaxed) {
                tx.send_async(Channel::Data, frame.clone())
                    .await
                    .expect("data");
            }
        })
    };
    // Let the transfer reach steady state before sampling.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (start, bytes_at_start) = (Instant::now(), received.load(Ordering::Relaxed));
    let mut loaded = Vec::new();
    let mut lost = 0;
    let mut tick = tokio::time::interval(PING_EVERY);
    while start.elapsed() < load {
        tick.tick().await;
        match tcp_ping(&a_tx, &mut a_rx).await {
            Some(rtt) => loaded.push(rtt),
            None => lost += 1,
        }
    }
    let (elapsed, bytes) = (
        start.elapsed(),
        received.load(Ordering::Relaxed) - bytes_at_start,
    );
    stop.store(true, Ordering::Relaxed);
    let _ = bulk.await;
    Report {
        idle,
        loaded,
        lost,
        bytes,
        elapsed,
    }
}

/// One heartbeat over the link's control channel, echoed by the peer.
async fn tcp_ping(
    tx: &failoverd_link::LinkSender,
    rx: &mut failoverd_link::LinkEvents,
) -> Option<Duration> {
    let start = Instant::now();
    tx.send(Channel::Control, ping_frame()).expect("ping");
    match tokio::time::timeout(PING_TIMEOUT, rx.recv()).await {
        Ok(Some(LinkEvent::Frame { .. })) => Some(start.elapsed()),
        Ok(Some(other)) => panic!("unexpected {other:?}"),
        Ok(None) | Err(_) => None,
    }
}

async fn quic(load: Duration) -> Report {
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

    let (client_id, server_id) = identities();
    let server_tls = tls::server_config(&server_id, client_id.fingerprint()).expect("server tls");
    let client_tls = tls::client_config(&client_id, server_id.fingerprint()).expect("client tls");
    let server_config = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server_tls).expect("quic server"),
    ));
    let server = quinn::Endpoint::server(server_config, loopback()).expect("server endpoint");
    let server_addr = server.local_addr().expect("addr");
    let mut client = quinn::Endpoint::client(loopback()).expect("client endpoint");
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client_tls).expect("quic client"),
    )));

    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        let conn = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("server handshake");
        let echo = conn.clone();
        tokio::spawn(async move {
            while let Ok(datagram) = echo.read_datagram().await {
                let _ = echo.send_datagram(datagram);
            }
        });
        let mut stream = conn.accept_uni().await.expect("data stream");
        // Deliver whole frames, as the link does.
        loop {
            let mut header = [0; 8];
            if stream.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            let mut frame = vec![0; len];
            frame[..8].copy_from_slice(&header);
            if stream.read_exact(&mut frame[8..]).await.is_err() {
                return;
            }
            counter.fetch_add(frame.len() as u64, Ordering::Relaxed);
        }
    });
    let conn = client
        .connect(server_addr, "peer")
        .expect("connect")
        .await
        .expect("client handshake");
    let ping = |conn: &quinn::Connection| {
        let start = Instant::now();
        conn.send_datagram(ping_frame().into()).expect("datagram");
        let conn = conn.clone();
        async move {
            match tokio::time::timeout(PING_TIMEOUT, conn.read_datagram()).await {
                Ok(Ok(_)) => Some(start.elapsed()),
                _ => None,
            }
        }
    };
    let mut idle = Vec::with_capacity(IDLE_PINGS);
    for _ in 0..IDLE_PINGS {
        idle.extend(ping(&conn).await);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let bulk = {
        let (conn, stop) = (conn.clone(), stop.clone());
        tokio::spawn(async move {
            let mut stream = conn.open_uni().await.expect("open stream");
            let frame = bulk_frame();
            while !stop.load(Ordering::Relaxed) {
                // A fresh buffer per frame, like the link's Vec<u8> per frame.
                stream.write_all(&frame.clone()).await.expect("write");
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (start, bytes_at_start) = (Instant::now(), received.load(Ordering::Relaxed));
    let mut loaded = Vec::new();
    let mut lost = 0;
    let mut tick = tokio::time::interval(PING_EVERY);
    while start.elapsed() < load {
        tick.tick().await;
        match ping(&conn).await {
            Some(rtt) => loaded.push(rtt),
            None => lost += 1,
        }
    }
    let (elapsed, bytes) = (
        start.elapsed(),
        received.load(Ordering::Relaxed) - bytes_at_start,
    );
    stop.store(true, Ordering::Relaxed);
    let _ = bulk.await;
    conn.close(0u32.into(), b"done");
    Report {
        idle,
        loaded,
        lost,
        bytes,
        elapsed,
    }
}
