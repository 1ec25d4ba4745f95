//! Traffic through the lab, made in-process: servers in the server namespace, clients in the
//! client namespace (sockets created there by a thread, see `netns`). Every loop here ends when
//! its owner is dropped, and in any case after [`MAX_LIFETIME`].

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conntrack::{Flow, by_flow};
use crate::lab::{Firewall, Lab, Ns};

/// No traffic thread lives longer than this, whatever happens to its owner.
pub const MAX_LIFETIME: Duration = Duration::from_secs(20 * 60);

/// How often a blocked thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Raises the soft limit on open files to the hard limit (tests open thousands of sockets).
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit owned by this frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Threads that stop together: a shared flag, joined on drop.
#[derive(Default)]
struct Threads {
    stop: Arc<AtomicBool>,
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Threads {
    fn spawn(&self, name: &str, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || f(stop))
            .expect("spawn a thread");
        self.handles.lock().unwrap().push(handle);
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Threads may add threads while stopping: take until none is left (bounded: every
        // thread ends within POLL of the flag).
        for _ in 0..1000 {
            let handles: Vec<_> = std::mem::take(&mut *self.handles.lock().unwrap());
            if handles.is_empty() {
                return;
            }
            for handle in handles {
                let _ = handle.join();
            }
        }
    }
}

fn running(stop: &AtomicBool, started: Instant) -> bool {
    !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME
}

// ---------------------------------------------------------------------------------------------
// servers

/// A TCP echo server in the server namespace; it records the peer address of every connection
/// (with SNAT: the shared address).
pub struct TcpEchoServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    threads: Threads,
}

impl TcpEchoServer {
    /// Listens on `addr` in the server namespace and echoes each connection on a thread of its
    /// own.
    pub fn start(lab: &Lab, addr: SocketAddr) -> TcpEchoServer {
        let listener = lab.run_in(Ns::Server, || TcpListener::bind(addr)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let threads = Threads::default();
        let (recorded, handles) = (peers.clone(), threads.handles.clone());
        threads.spawn("tcp echo accept", move |stop| {
            let started = Instant::now();
            while running(&stop, started) {
                match listener.accept() {
                    Ok((conn, peer)) => {
                        recorded.lock().unwrap().push(peer);
                        let stop = stop.clone();
                        let handle = std::thread::spawn(move || echo(conn, &stop, started));
                        handles.lock().unwrap().push(handle);
                    }
                    Err(e) if is_timeout(&e) => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        TcpEchoServer {
            addr,
            peers,
            threads,
        }
    }

    /// The peer address of every connection accepted so far.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

fn echo(mut conn: TcpStream, stop: &AtomicBool, started: Instant) {
    conn.set_nonblocking(false).unwrap();
    conn.set_nodelay(true).unwrap();
    conn.set_read_timeout(Some(POLL)).unwrap();
    let mut buf = [0u8; 4096];
    while running(stop, started) {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

impl Drop for TcpEchoServer {
    fn drop(&mut self) {
        self.threads.stop();
    }
}

/// UDP servers in the server namespace, one socket per address; those in `reply` answer every
/// datagram with its copy, the others only count it. Records every peer address.
pub struct UdpServer {
    received: Arc<AtomicU64>,
    peers: Arc<Mutex<BTreeSet<SocketAddr>>>,
    threads: Threads,
}

impl UdpServer {
    /// Binds a socket on each of `addrs` in the server namespace, read by a thread each; those
    /// also in `reply` echo what they receive.
    pub fn start(lab: &Lab, addrs: &[SocketAddr], reply: &[SocketAddr]) -> UdpServer {
        let received = Arc::new(AtomicU64::new(0));
        let peers = Arc::new(Mutex::new(BTreeSet::new()));
        let threads = Threads::default();
        for &addr in addrs {
            let socket = lab.run_in(Ns::Server, || UdpSocket::bind(addr)).unwrap();
            socket.set_read_timeout(Some(POLL)).unwrap();
            let answer = reply.contains(&addr);
            let (received, peers) = (received.clone(), peers.clone());
            threads.spawn("udp server", move |stop| {
                let started = Instant::now();
                let mut buf = [0u8; 2048];
                while running(&stop, started) {
                    match socket.recv_from(&mut buf) {
                        Ok((n, peer)) => {
                            received.fetch_add(1, Ordering::Relaxed);
                            peers.lock().unwrap().insert(peer);
                            if answer {
                                let _ = socket.send_to(&buf[..n], peer);
                            }
                        }
                        Err(e) if is_timeout(&e) => {}
                        // An ICMP error for an earlier reply (the client closed its socket).
                        Err(_) => {}
                    }
                }
            });
        }
        UdpServer {
            received,
            peers,
            threads,
        }
    }

    /// Datagrams received so far, on all its sockets.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Every peer address seen so far, on all its sockets (with SNAT: the shared address).
    pub fn peers(&self) -> BTreeSet<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.threads.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// probes: numbered messages echoed back

#[derive(Default)]
struct Record {
    sent: u64,
    echoes: Vec<(u64, Instant)>,
    failure: Option<String>,
}

/// A stream of numbered messages from the client to an echo server, over TCP (one connection)
/// or UDP (one socket, so one flow); records when each echo came back.
pub struct Probe {
    /// The client's end (before NAT).
    pub local: SocketAddr,
    /// The server.
    pub remote: SocketAddr,
    record: Arc<Mutex<Record>>,
    threads: Threads,
    tcp: Option<TcpStream>,
}

impl Probe {
    /// A TCP connection from the client to `to` (a [`TcpEchoServer`]); a message every
    /// `interval`.
    pub fn tcp(lab: &Lab, to: SocketAddr, interval: Duration) -> Probe {
        let stream = lab
            .run_in(Ns::Client, || {
                TcpStream::connect_timeout(&to, Duration::from_secs(3))
            })
            .unwrap_or_else(|e| panic!("connect to {to} from the client: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(POLL)).unwrap();
        let local = stream.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let threads = Threads::default();

        let (mut writer, rec) = (stream.try_clone().unwrap(), record.clone());
        threads.spawn("tcp probe writer", move |stop| {
            let started = Instant::now();
            let mut seq = 0u64;
            // Deadline-paced: message n is due at start + n x interval, so that sleep overshoot
            // does not add up (at 1 ms it would: each sleep oversleeps by ~0.05-0.1 ms). A
            // writer that fell more than an interval behind (descheduled, or blocked on a full
            // send buffer) starts again from now instead of sending a burst.
            let mut due = Instant::now();
            while running(&stop, started) {
                if let Err(e) = writer.write_all(&seq.to_be_bytes()) {
                    rec.lock()
                        .unwrap()
                        .failure
                        .get_or_insert(format!("write: {e}"));
                    return;
                }
                seq += 1;
                rec.lock().unwrap().sent = seq;
                due += interval;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                } else if now - due > interval {
                    due = now;
                }
            }
        });
        let (mut reader, rec) = (stream.try_clone().unwrap(), record.clone());
        threads.spawn("tcp probe reader", move |stop| {
            let started = Instant::now();
            let mut pending = Vec::new();
            let mut buf = [0u8; 4096];
            while running(&stop, started) {
                match reader.read(&mut buf) {
                    Ok(0) => {
                        rec.lock()
                            .unwrap()
                            .failure
                            .get_or_insert("closed by the peer".into());
                        return;
                    }
                    Ok(n) => {
                        let now = Instant::now();
                        pending.extend_from_slice(&buf[..n]);
                        let mut rec = rec.lock().unwrap();
                        for chunk in pending.chunks_exact(8) {
                            let seq = u64::from_be_bytes(chunk.try_into().unwrap());
                            rec.echoes.push((seq, now));
                        }
                        let whole = pending.len() / 8 * 8;
                        pending.drain(..whole);
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => {
                        rec.lock()
                            .unwrap()
                            .failure
                            .get_or_insert(format!("read: {e}"));
                        return;
                    }
                }
            }
        });
        Probe {
            local,
            remote: to,
            record,
            threads,
            tcp: Some(stream),
        }
    }

    /// A UDP request/response flow from the client to `to` (a replying [`UdpServer`]),
    /// from the client port `sport`; a request every `interval`.
    pub fn udp(lab: &Lab, sport: u16, to: SocketAddr, interval: Duration) -> Probe {
        let bind = SocketAddr::new(crate::lab::client(to.is_ipv6()), sport);
        let socket = lab
            .run_in(Ns::Client, || {
                let socket = UdpSocket::bind(bind)?;
                socket.connect(to)?;
                Ok::<_, io::Error>(socket)
            })
            .unwrap_or_else(|e| panic!("UDP socket {bind} -> {to} in the client: {e}"));
        let local = socket.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let threads = Threads::default();
        let rec = record.clone();
        threads.spawn("udp probe", move |stop| {
            let started = Instant::now();
            let mut seq = 0u64;
            let mut buf = [0u8; 64];
            while running(&stop, started) {
                // A refused send (ICMP unreachable reported on the connected socket) is
                // just a lost request.
                let _ = socket.send(&seq.to_be_bytes());
                seq += 1;
                rec.lock().unwrap().sent = seq;
                let next = Instant::now() + interval;
                while running(&stop, started) {
                    let left = next.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    socket.set_read_timeout(Some(left.min(POLL))).unwrap();
                    match socket.recv(&mut buf) {
                        Ok(8) => {
                            let seq = u64::from_be_bytes(buf[..8].try_into().unwrap());
                            rec.lock().unwrap().echoes.push((seq, Instant::now()));
                        }
                        Ok(_) => {}
                        Err(e) if is_timeout(&e) => {}
                        Err(_) => {} // ICMP errors: the next request tries again
                    }
                }
            }
        });
        Probe {
            local,
            remote: to,
            record,
            threads,
            tcp: None,
        }
    }

    /// The conntrack flow this probe makes (original direction, before NAT).
    pub fn flow(&self) -> Flow {
        if self.tcp.is_some() {
            Flow::tcp(self.local, self.remote)
        } else {
            Flow::udp(self.local, self.remote)
        }
    }

    /// How many messages have been sent; the next one gets this number.
    pub fn sent(&self) -> u64 {
        self.record.lock().unwrap().sent
    }

    /// How many echoes have come back so far.
    pub fn echoes(&self) -> usize {
        self.record.lock().unwrap().echoes.len()
    }

    /// Why the probe stopped (a reset, the peer closing), if it did.
    pub fn failure(&self) -> Option<String> {
        self.record.lock().unwrap().failure.clone()
    }

    /// Waits, at most `within`, for the echo of a message numbered `seq` or later; returns when
    /// it arrived, or why it did not (the probe failed, or the time is up).
    pub fn wait_echo_from(&self, seq: u64, within: Duration) -> Result<Instant, String> {
        let started = Instant::now();
        loop {
            {
                let rec = self.record.lock().unwrap();
                if let Some(&(_, at)) = rec.echoes.iter().find(|(s, _)| *s >= seq) {
                    return Ok(at);
                }
                if let Some(failure) = &rec.failure {
                    return Err(format!("the probe failed: {failure}"));
                }
            }
            if started.elapsed() >= within {
                return Err(format!(
                    "no echo of message {seq} or later within {within:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The number of echoes received within `[from, to]`.
    pub fn echoes_between(&self, from: Instant, to: Instant) -> usize {
        let rec = self.record.lock().unwrap();
        rec.echoes
            .iter()
            .filter(|(_, at)| *at >= from && *at <= to)
            .count()
    }

    /// When the last echo arrived.
    pub fn last_echo(&self) -> Option<Instant> {
        self.record.lock().unwrap().echoes.last().map(|&(_, at)| at)
    }

    /// The first echo received after `at` (any message number).
    pub fn first_echo_after(&self, at: Instant) -> Option<Instant> {
        let rec = self.record.lock().unwrap();
        rec.echoes.iter().map(|&(_, t)| t).find(|&t| t > at)
    }

    /// The longest gap between consecutive echoes within `[from, to]` (the edges count: from
    /// `from` to the first echo, from the last to `to`), and where it starts.
    pub fn longest_gap_at(&self, from: Instant, to: Instant) -> (Duration, Instant) {
        let rec = self.record.lock().unwrap();
        let mut last = from;
        let mut longest = (Duration::ZERO, from);
        for &(_, at) in rec.echoes.iter().filter(|(_, at)| *at >= from && *at <= to) {
            if at - last > longest.0 {
                longest = (at - last, last);
            }
            last = at;
        }
        if to.saturating_duration_since(last) > longest.0 {
            longest = (to.saturating_duration_since(last), last);
        }
        longest
    }

    /// Whether the stream survived past `from`: it has not failed, and for `hold` after its
    /// first echo later than `from` it kept delivering, with no gap above `max_gap`. Waits (at
    /// most `within` in all) for those echoes. Returns when the stream resumed after `from`.
    pub fn wait_survives(
        &self,
        from: Instant,
        hold: Duration,
        max_gap: Duration,
        within: Duration,
    ) -> Result<Instant, String> {
        let started = Instant::now();
        let resumed = loop {
            if let Some(failure) = self.failure() {
                return Err(format!("the stream failed: {failure}"));
            }
            if let Some(at) = self.first_echo_after(from) {
                break at;
            }
            if started.elapsed() >= within {
                return Err(format!("no echo within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let until = resumed + hold;
        while Instant::now() < until {
            if let Some(failure) = self.failure() {
                return Err(format!("the stream failed after resuming: {failure}"));
            }
            if started.elapsed() >= within + hold {
                break;
            }
            std::thread::sleep(
                Duration::from_millis(10).min(until.saturating_duration_since(Instant::now())),
            );
        }
        if let Some(failure) = self.failure() {
            return Err(format!("the stream failed after resuming: {failure}"));
        }
        let (gap, at) = self.longest_gap_at(resumed, until);
        if gap > max_gap {
            return Err(format!(
                "after resuming, a gap of {gap:?} starting {:?} later",
                at - resumed
            ));
        }
        Ok(resumed)
    }

    /// The longest time without an echo within `[from, to]`.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let rec = self.record.lock().unwrap();
        let mut last = from;
        let mut longest = Duration::ZERO;
        for &(_, at) in rec.echoes.iter().filter(|(_, at)| *at >= from && *at <= to) {
            longest = longest.max(at - last);
            last = at;
        }
        longest.max(to.saturating_duration_since(last))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(stream) = &self.tcp {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.threads.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// many flows

/// One UDP datagram per flow, sent from the client namespace: each makes one conntrack entry on
/// the active firewall. Flows already in `fw`'s table are left alone; the missing ones are sent
/// (again) in up to 5 rounds, paced so that the veth backlogs do not overflow. Panics if some
/// are still missing.
pub fn create_udp_flows(lab: &Lab, fw: Firewall, flows: &[Flow]) {
    let wanted: BTreeSet<Flow> = flows.iter().copied().collect();
    assert!(wanted.iter().all(|f| f.proto == "udp"), "UDP flows only");
    let mut missing: Vec<Flow> = wanted.iter().copied().collect();
    for round in 0..5 {
        lab.run_in(Ns::Client, || {
            for (i, flow) in missing.iter().enumerate() {
                let src = SocketAddr::new(flow.orig.src, flow.orig.sport);
                let dst = SocketAddr::new(flow.orig.dst, flow.orig.dport);
                let socket = UdpSocket::bind(src).unwrap_or_else(|e| panic!("bind {src}: {e}"));
                let _ = socket.send_to(b"flow", dst);
                if i % 100 == 99 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let present = by_flow(&lab.conntrack(fw), |f| wanted.contains(f));
        missing.retain(|f| !present.contains_key(f));
        if missing.is_empty() {
            return;
        }
        eprintln!(
            "round {round}: {} of {} UDP flows not on {fw:?} yet",
            missing.len(),
            wanted.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} UDP flows never appeared on {fw:?}, e.g. {}",
        missing.len(),
        missing[0]
    );
}

/// `count` TCP connections from the client to a listener at `to`, all kept open (both ends)
/// until dropped.
pub struct TcpConnections {
    clients: Vec<TcpStream>,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
    threads: Threads,
}

impl TcpConnections {
    /// Binds the listener at `to` in the server namespace, connects from the client (panics if
    /// a connection takes over 3 s) and waits, at most 5 s, until all are accepted.
    pub fn open(lab: &Lab, to: SocketAddr, count: usize) -> TcpConnections {
        raise_fd_limit();
        let listener = lab.run_in(Ns::Server, || TcpListener::bind(to)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(Mutex::new(Vec::with_capacity(count)));
        let threads = Threads::default();
        let keep = accepted.clone();
        threads.spawn("tcp accept", move |stop| {
            let started = Instant::now();
            while running(&stop, started) {
                match listener.accept() {
                    Ok((conn, _)) => keep.lock().unwrap().push(conn),
                    Err(e) if is_timeout(&e) => std::thread::sleep(Duration::from_millis(2)),
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        let clients = lab.run_in(Ns::Client, || {
            (0..count)
                .map(|i| {
                    TcpStream::connect_timeout(&to, Duration::from_secs(3))
                        .unwrap_or_else(|e| panic!("connection {i} to {to}: {e}"))
                })
                .collect::<Vec<_>>()
        });
        // Every connection accepted (bounded wait), so the server side holds them all.
        let started = Instant::now();
        while accepted.lock().unwrap().len() < count && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        TcpConnections {
            clients,
            accepted,
            threads,
        }
    }

    /// The conntrack flows of these connections.
    pub fn flows(&self) -> Vec<Flow> {
        self.clients
            .iter()
            .map(|c| Flow::tcp(c.local_addr().unwrap(), c.peer_addr().unwrap()))
            .collect()
    }

    /// How many connections the server side has accepted (and holds open).
    pub fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

impl Drop for TcpConnections {
    fn drop(&mut self) {
        self.threads.stop();
    }
}
