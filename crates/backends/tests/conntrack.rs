//! The conntrack backend against the kernel: the conformance suite, and the kernel behaviour the
//! backend relies on.
//!
//! Every test runs in a network namespace of its own (the test thread unshares it before opening
//! any socket), so tests are isolated and run in parallel. They need root; without it they are
//! skipped with a message, except under `CI=true`, where they fail.
//!
//! Local activity comes from [`Client`], a ctnetlink client written independently of the
//! backend's encoder, on a socket of its own, so the kernel reports its changes as foreign.
//!
//! Benchmark: `cargo test -p failoverd-backends --release --test conntrack -- --ignored
//! --nocapture bench_rates`.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use failoverd_backends::session::conformance::Harness;
use failoverd_backends::{
    ApplyError, ApplyReport, BackendError, ConntrackBackend, ConntrackConfig, LocalError,
    OwnerMark, SessionBackend, sample_record,
};
use failoverd_core::ReplicationFilter;
use failoverd_wire::{
    HelperName, NodeId, SeqAdj, SessionKey, SessionOp, SessionRecord, TcpState, Tuple,
};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

const LOCAL: NodeId = NodeId(0x10ca1);
const PEER: NodeId = NodeId(0x9ee4);

/// `IP_CT_TCP_FLAG_BE_LIBERAL`, which the backend adds to every TCP entry it writes.
const BE_LIBERAL: u8 = 0x08;

// ---------------------------------------------------------------------------------------------
// Privileges and namespaces

/// Whether the test can run: true as root. Otherwise the test is skipped with a message, unless
/// `CI=true`, where a skip would hide that nothing ran: then it fails.
#[allow(unsafe_code)] // geteuid: libc has no safe wrapper.
fn privileged() -> bool {
    // SAFETY: plain system call.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the conntrack tests need root (CAP_NET_ADMIN), and CI=true forbids skipping");
    }
    eprintln!("skipped: the conntrack tests need root (CAP_NET_ADMIN)");
    false
}

/// Returns early from a test that cannot run (see [`privileged`]).
macro_rules! require_root {
    () => {
        if !privileged() {
            return;
        }
    };
}

/// Moves the calling thread into a new, empty network namespace. Threads it starts later (the
/// backend's event reader) and processes it spawns (`nft`, `conntrack`, `ip`) inherit it.
#[allow(unsafe_code)] // unshare: libc has no safe wrapper.
fn enter_fresh_netns() {
    // Read in the initial namespace, before the first unshare (see `conntrack_max`).
    conntrack_max();
    // SAFETY: plain system call; affects the calling thread only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        panic!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    }
}

/// `net.netfilter.nf_conntrack_max`: host-wide, and never changed by these tests (a lowered
/// limit would drop new connections everywhere on the host while they run). A table is made
/// full by filling its own namespace up to it instead: the limit is global, the count per
/// namespace.
fn conntrack_max() -> u64 {
    static MAX: OnceLock<u64> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
            .expect("read nf_conntrack_max")
            .trim()
            .parse()
            .expect("nf_conntrack_max is a number")
    })
}

/// Runs `program` with `args` in the calling thread's namespace, feeding it `input`.
fn run(program: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------
// An independent ctnetlink client: local activity, setup and verification

mod nl {
    pub(crate) const CT_NEW: u16 = 1 << 8;
    pub(crate) const CT_GET: u16 = (1 << 8) | 1;
    pub(crate) const CT_DELETE: u16 = (1 << 8) | 2;
    pub(crate) const F_REQUEST: u16 = 1;
    pub(crate) const F_ACK: u16 = 4;
    pub(crate) const F_EXCL: u16 = 0x200;
    pub(crate) const F_CREATE: u16 = 0x400;
    pub(crate) const NESTED: u16 = 0x8000;
    pub(crate) const ERROR: u16 = 2;
}

/// Builds one netlink message with nested attributes.
struct Msg {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, family: u8) -> Self {
        let mut buf = vec![0; 20];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | nl::F_REQUEST | nl::F_ACK).to_ne_bytes());
        buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        buf[16] = family;
        Self {
            buf,
            open: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
        self
    }

    fn nest(&mut self, kind: u16) -> &mut Self {
        self.open.push(self.buf.len());
        self.attr(kind | nl::NESTED, &[])
    }

    fn end(&mut self) -> &mut Self {
        let at = self.open.pop().unwrap();
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }

    fn tuple(&mut self, kind: u16, t: &Tuple, proto: u8) -> &mut Self {
        self.nest(kind).nest(1);
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.attr(1, &s.octets()).attr(2, &d.octets()),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.attr(3, &s.octets()).attr(4, &d.octets()),
            _ => panic!("mixed families"),
        };
        self.end().nest(2).attr(1, &[proto]);
        match proto {
            1 | 58 => {
                let base = if proto == 1 { 4 } else { 7 };
                self.attr(base, &t.src_port.to_be_bytes())
                    .attr(base + 1, &[(t.dst_port >> 8) as u8])
                    .attr(base + 2, &[t.dst_port as u8]);
            }
            6 | 17 => {
                self.attr(2, &t.src_port.to_be_bytes())
                    .attr(3, &t.dst_port.to_be_bytes());
            }
            _ => {}
        }
        self.end().end()
    }

    /// Status (CONFIRMED added, NAT bits left to the kernel), timeout, mark, TCP info, labels.
    fn fields(&mut self, r: &SessionRecord, with_labels: bool) -> &mut Self {
        let status = (r.status | 1 << 3) & !(0x1f0 | 1 | 1 << 9);
        self.attr(3, &status.to_be_bytes())
            .attr(7, &r.timeout_secs.to_be_bytes())
            .attr(8, &r.mark.to_be_bytes());
        if r.key.l4proto == 6 {
            self.nest(4)
                .nest(1)
                .attr(1, &[r.tcp.state.0])
                .attr(2, &[r.tcp.wscale_orig])
                .attr(3, &[r.tcp.wscale_reply])
                .attr(4, &[r.tcp.flags_orig, 0xff])
                .attr(5, &[r.tcp.flags_reply, 0xff])
                .end()
                .end();
        }
        if with_labels && r.labels != [0; 16] {
            self.attr(22, &r.labels).attr(23, &[0xff; 16]);
        }
        self
    }

    fn zone(&mut self, zone: u16) -> &mut Self {
        if zone != 0 {
            self.attr(18, &zone.to_be_bytes());
        }
        self
    }
}

fn family(key: &SessionKey) -> u8 {
    if key.is_ipv6() { 10 } else { 2 }
}

/// A ctnetlink client of its own, for local activity and for checking the kernel's table.
struct Client {
    socket: Socket,
    seq: u32,
}

impl Client {
    fn open() -> Self {
        let mut socket = Socket::new(NETLINK_NETFILTER).expect("netlink socket");
        socket.bind_auto().expect("bind");
        socket.set_rx_buf_sz(1 << 20).expect("receive buffer");
        Self { socket, seq: 0 }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Creates `r` as local traffic would: source NAT from its reply tuple, as the NAT hooks do.
    fn create_msg(&mut self, r: &SessionRecord) -> Vec<u8> {
        let k = &r.key;
        let seq = self.next_seq();
        let mut m = Msg::new(nl::CT_NEW, nl::F_CREATE | nl::F_EXCL, seq, family(k));
        let snat = r.reply.dst != k.orig.src;
        let reply = if snat {
            let icmp = matches!(k.l4proto, 1 | 58);
            Tuple {
                src: k.orig.dst,
                dst: k.orig.src,
                src_port: if icmp {
                    k.orig.src_port
                } else {
                    k.orig.dst_port
                },
                dst_port: if icmp {
                    r.reply.dst_port
                } else {
                    k.orig.src_port
                },
            }
        } else {
            r.reply
        };
        m.tuple(1, &k.orig, k.l4proto)
            .tuple(2, &reply, k.l4proto)
            .zone(k.zone);
        if snat {
            let port = if matches!(k.l4proto, 1 | 58) {
                r.reply.src_port
            } else {
                r.reply.dst_port
            };
            m.nest(6);
            match r.reply.dst {
                IpAddr::V4(a) => m.attr(1, &a.octets()).attr(2, &a.octets()),
                IpAddr::V6(a) => m.attr(4, &a.octets()).attr(5, &a.octets()),
            };
            m.nest(3)
                .attr(1, &port.to_be_bytes())
                .attr(2, &port.to_be_bytes())
                .end()
                .end();
        }
        m.fields(r, false);
        m.finish()
    }

    fn update_msg(&mut self, r: &SessionRecord) -> Vec<u8> {
        let seq = self.next_seq();
        let mut m = Msg::new(nl::CT_NEW, 0, seq, family(&r.key));
        m.tuple(1, &r.key.orig, r.key.l4proto)
            .zone(r.key.zone)
            .fields(r, true);
        m.finish()
    }

    fn key_msg(&mut self, kind: u16, key: &SessionKey) -> Vec<u8> {
        let seq = self.next_seq();
        let mut m = Msg::new(kind, 0, seq, family(key));
        m.tuple(1, &key.orig, key.l4proto).zone(key.zone);
        m.finish()
    }

    fn create(&mut self, r: &SessionRecord) -> Result<(), i32> {
        let msg = self.create_msg(r);
        self.request(&msg).map(drop)
    }

    fn update(&mut self, r: &SessionRecord) -> Result<(), i32> {
        let msg = self.update_msg(r);
        self.request(&msg).map(drop)
    }

    fn delete(&mut self, key: &SessionKey) -> Result<(), i32> {
        let msg = self.key_msg(nl::CT_DELETE, key);
        self.request(&msg).map(drop)
    }

    /// Whether the kernel has an entry with this key.
    fn exists(&mut self, key: &SessionKey) -> bool {
        let msg = self.key_msg(nl::CT_GET, key);
        match self.request(&msg) {
            Ok(found) => found,
            Err(errno) if errno == libc::ENOENT => false,
            Err(errno) => panic!("lookup: errno {errno}"),
        }
    }

    /// Creates all of `records`, many per send, as fast as the kernel takes them.
    fn create_many(&mut self, records: &[SessionRecord]) {
        // Kept well under what the socket's buffer holds of answers.
        for chunk in records.chunks(64) {
            let first = self.seq + 1;
            let mut batch = Vec::new();
            for r in chunk {
                batch.extend(self.create_msg(r));
            }
            self.socket.send(&batch, 0).unwrap();
            self.answers(first, chunk.len());
        }
    }

    /// Deletes every entry with this mark (a kernel-side flush: the fastest way to make events).
    fn flush_mark(&mut self, mark: u32) {
        let seq = self.next_seq();
        let mut m = Msg::new(nl::CT_DELETE, 0, seq, 0);
        m.attr(8, &mark.to_be_bytes());
        self.request(&m.finish()).expect("flush by mark");
    }

    /// Sends one request; `Ok(true)` if an entry came back, `Err(errno)` on a refusal.
    fn request(&mut self, msg: &[u8]) -> Result<bool, i32> {
        self.socket.send(msg, 0).unwrap();
        let answer = self.answers(self.seq, 1)[0];
        match answer.0 {
            0 => Ok(answer.1),
            errno => Err(errno),
        }
    }

    /// The answers (errno, entry found) to the `n` requests from sequence number `first` on.
    fn answers(&mut self, first: u32, n: usize) -> Vec<(i32, bool)> {
        let mut answers = vec![(0, false); n];
        let mut pending = n;
        let mut buf = vec![0; 64 * 1024];
        while pending > 0 {
            let len = self.socket.recv(&mut &mut buf[..], 0).unwrap();
            let mut at = 0;
            while at + 16 <= len {
                let word = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().unwrap());
                let (mlen, seq) = (word(at) as usize, word(at + 8));
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                if let Some(answer) = answers.get_mut(seq.wrapping_sub(first) as usize) {
                    if kind == nl::ERROR {
                        answer.0 = -(word(at + 16) as i32);
                        pending -= 1;
                    } else if kind == nl::CT_NEW {
                        answer.1 = true;
                    }
                }
                at += mlen.next_multiple_of(4).max(16);
            }
        }
        answers
    }
}

/// Remaining kernel timeout of the entry whose original source is `src`, from `conntrack -L`.
fn kernel_timeout(src: IpAddr) -> u32 {
    let listing = run("conntrack", &["-L"], "");
    let needle = format!("src={src} ");
    let line = listing
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no entry from {src} in {listing}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The harness

/// A backend in a fresh namespace, with a [`Client`] for local activity.
struct ConntrackHarness {
    backend: ConntrackBackend,
    client: Client,
    /// Foreign events (`events_in + events_filtered`) the harness's own activity caused.
    expected_events: u64,
}

const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

impl ConntrackHarness {
    fn new() -> Self {
        Self::with_config(ConntrackConfig::default(), None)
    }

    fn with_config(config: ConntrackConfig, peer: Option<NodeId>) -> Self {
        enter_fresh_netns();
        let backend = ConntrackBackend::open(config, LOCAL, peer).expect("open the backend");
        Self {
            backend,
            client: Client::open(),
            expected_events: 0,
        }
    }

    fn observed_events(&self) -> u64 {
        let stats = self.backend.stats();
        stats.events_in + stats.events_filtered
    }

    /// Waits until the backend has seen `n` more foreign events than before `op`.
    fn expect_events(&mut self, n: u64) {
        self.expected_events += n;
        self.settle();
    }

    /// Polls every pending change, normalized.
    fn poll_all(&mut self) -> Vec<SessionOp> {
        self.settle();
        let mut out = Vec::new();
        while self.backend.poll_changes(&mut out, 1024).expect("poll") > 0 {}
        out.into_iter().map(|op| self.normalize_op(op)).collect()
    }

    /// Finds the backend's event socket (the conntrack socket of this namespace subscribed to
    /// groups) among the process's descriptors.
    fn event_socket_fd(&self) -> i32 {
        let table = std::fs::read_to_string("/proc/thread-self/net/netlink").unwrap();
        let inode = table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f[1] == "12" && f[3] != "00000000")
            .map(|f| f[9].to_string())
            .expect("the event socket");
        let wanted = format!("socket:[{inode}]");
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == wanted))
            .and_then(|e| e.file_name().to_str()?.parse().ok())
            .expect("the event socket's descriptor")
    }

    /// Fills this namespace with loopback entries, which the backend filters out, until only
    /// `room` more fit under the host's `nf_conntrack_max`, which stays as it is (the limit is
    /// host-wide, the count per namespace). The fillers are ASSURED, so the full table refuses
    /// new entries rather than early-dropping them; their change events are consumed. Returns
    /// the last filler's key (deleting it makes room for one entry).
    fn fill(&mut self, room: u64) -> SessionKey {
        let limit = conntrack_max();
        let present = self.backend.count().expect("count") as u64;
        assert!(
            present + room < limit,
            "{present} entries, room {room}, limit {limit}"
        );
        let fillers: Vec<_> = (0..(limit - room - present) as u32)
            .map(loopback_filler)
            .collect();
        let (last, fillers) = fillers.split_last().expect("room for one filler");
        self.client.create_many(fillers);
        // Every filler's event has been read (or lost) before the last slot is taken: the
        // sentinel needs one.
        self.sync_with_sentinel();
        self.client.create(last).expect("the last filler");
        self.expect_events(1);
        assert_eq!(self.backend.count().expect("count") as u64, limit - room);
        // A burst this size may overflow the event socket: the overrun is the fillers'.
        let mut events = Vec::new();
        loop {
            match self.backend.poll_changes(&mut events, 1024) {
                Ok(0) => break,
                Ok(_) => events.clear(),
                Err(BackendError::Overrun { .. }) => {}
                Err(error) => panic!("poll_changes: {error}"),
            }
        }
        last.key
    }

    /// Creates and deletes a loopback entry (filtered by every backend) and waits until the
    /// backend reports both: every earlier event has then been read, or lost.
    fn sync_with_sentinel(&mut self) {
        let mut sentinel = sample_record(1, LOCAL);
        sentinel.key.orig.src = "127.0.0.2".parse().unwrap();
        sentinel.key.orig.dst = "127.0.0.3".parse().unwrap();
        sentinel.reply = Tuple {
            src: sentinel.key.orig.dst,
            dst: sentinel.key.orig.src,
            src_port: sentinel.key.orig.dst_port,
            dst_port: sentinel.key.orig.src_port,
        };
        for _ in 0..50 {
            let before = self.backend.stats().events_filtered;
            self.client.create(&sentinel).expect("sentinel create");
            self.client.delete(&sentinel.key).expect("sentinel delete");
            let deadline = Instant::now() + Duration::from_millis(200);
            while Instant::now() < deadline {
                if self.backend.stats().events_filtered >= before + 2 {
                    self.expected_events = self.observed_events();
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        panic!("the sentinel's events never arrived");
    }
}

fn local_error(errno: i32) -> LocalError {
    match errno {
        libc::EEXIST => LocalError::Exists,
        libc::ENOENT => LocalError::NotFound,
        libc::ENOMEM => LocalError::TableFull,
        other => panic!("local command refused: errno {other}"),
    }
}

impl Harness for ConntrackHarness {
    type Backend = ConntrackBackend;

    fn backend(&mut self) -> &mut ConntrackBackend {
        &mut self.backend
    }

    fn local_create(&mut self, record: SessionRecord) -> Result<(), LocalError> {
        self.client.create(&record).map_err(local_error)?;
        self.expect_events(1);
        Ok(())
    }

    fn local_update(&mut self, record: SessionRecord) -> Result<(), LocalError> {
        self.client.update(&record).map_err(local_error)?;
        self.expect_events(1);
        Ok(())
    }

    fn local_delete(&mut self, key: &SessionKey) -> Result<(), LocalError> {
        self.client.delete(key).map_err(local_error)?;
        self.expect_events(1);
        Ok(())
    }

    fn set_capacity(&mut self, entries: usize) {
        self.fill(entries as u64);
    }

    const CHEAP_CAPACITY: bool = false;

    /// A real ENOBUFS: shrinks the event socket's buffer to the minimum, makes the kernel emit
    /// bursts of events until the backend sees the overflow, then restores the buffer.
    fn force_overrun(&mut self) {
        const FLOOD_MARK: u32 = 0x0f10_0d00;
        let fd = self.event_socket_fd();
        set_receive_buffer(fd, 0, libc::SO_RCVBUF);
        let before = self.backend.stats().overruns;
        let fillers: Vec<_> = (0..512)
            .map(|i| {
                let mut r = sample_record(i * 6 + 2, LOCAL); // UDP over IPv4
                r.key.zone = 0xfffe;
                r.mark = FLOOD_MARK;
                r
            })
            .collect();
        for _ in 0..20 {
            self.client.create_many(&fillers);
            self.client.flush_mark(FLOOD_MARK);
            if self.backend.stats().overruns > before {
                break;
            }
        }
        set_receive_buffer(fd, 64 << 20, libc::SO_RCVBUFFORCE);
        assert!(self.backend.stats().overruns > before, "no ENOBUFS");
        self.sync_with_sentinel();
    }

    /// Fills this namespace up to the unchanged `nf_conntrack_max`.
    fn fill_to_limit(&mut self) -> SessionKey {
        let last = self.fill(0);
        let limit = conntrack_max();
        assert_eq!(
            self.client.create(&loopback_filler(limit as u32)),
            Err(libc::ENOMEM),
            "the namespace is full at nf_conntrack_max = {limit}"
        );
        last
    }

    fn normalize(&self, mut record: SessionRecord) -> SessionRecord {
        // The kernel counts local entries' timeouts down; peer-owned ones are reported as their
        // owner sent them.
        if record.owner == LOCAL {
            record.timeout_secs = 0;
        }
        record.tcp.flags_orig &= !BE_LIBERAL;
        record.tcp.flags_reply &= !BE_LIBERAL;
        record
    }

    fn settle(&mut self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while self.observed_events() < self.expected_events {
            assert!(
                Instant::now() < deadline,
                "{} of {} events arrived",
                self.observed_events(),
                self.expected_events
            );
            std::thread::yield_now();
        }
    }
}

/// The `i`-th loopback UDP entry (127.1.0.0 on, to 127.254.0.1): filtered by every backend.
fn loopback_filler(i: u32) -> SessionRecord {
    let mut record = sample_record(2, LOCAL); // UDP over IPv4, ASSURED
    record.key.orig.src = IpAddr::from(std::net::Ipv4Addr::from(0x7f01_0000 + i));
    record.key.orig.dst = "127.254.0.1".parse().unwrap();
    record.reply = Tuple {
        src: record.key.orig.dst,
        dst: record.key.orig.src,
        src_port: record.key.orig.dst_port,
        dst_port: record.key.orig.src_port,
    };
    record
}

#[allow(unsafe_code)] // setsockopt on a raw descriptor: libc has no safe wrapper.
fn set_receive_buffer(fd: i32, bytes: libc::c_int, option: libc::c_int) {
    // SAFETY: `bytes` outlives the call and its size is passed along.
    let res = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(res, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

failoverd_backends::session_backend_conformance!({
    if !privileged() {
        return;
    }
    ConntrackHarness::new
});

// ---------------------------------------------------------------------------------------------
// Kernel behaviour and backend specifics

fn upsert(records: &[SessionRecord]) -> Vec<SessionOp> {
    records.iter().cloned().map(SessionOp::Upsert).collect()
}

fn applied(n: usize) -> ApplyReport {
    ApplyReport {
        applied: n,
        ..ApplyReport::default()
    }
}

/// ctnetlink stamps an event with the port id of the socket whose request caused it: the
/// backend's own writes come back stamped with its command socket's id and are dropped; another
/// socket's are local activity.
#[test]
fn events_carry_the_port_id_of_the_writer() {
    require_root!();
    let mut h = ConntrackHarness::new();
    // A listener of our own sees the raw stamps.
    let mut listener = Socket::new(NETLINK_NETFILTER).unwrap();
    listener.bind_auto().unwrap();
    for group in [1, 2, 3] {
        listener.add_membership(group).unwrap();
    }
    let ours = sample_record(0, PEER);
    assert_eq!(
        h.backend.apply(&upsert(std::slice::from_ref(&ours))),
        applied(1)
    );
    let theirs = sample_record(1, LOCAL);
    h.local_create(theirs.clone()).unwrap();

    let mut stamps = Vec::new();
    let mut buf = vec![0; 8192];
    while stamps.len() < 2 {
        let len = listener.recv(&mut &mut buf[..], 0).unwrap();
        assert!(len >= 16);
        stamps.push(u32::from_ne_bytes(buf[12..16].try_into().unwrap()));
    }
    let client_port = {
        let mut addr = netlink_sys::SocketAddr::new(0, 0);
        h.client.socket.get_address(&mut addr).unwrap();
        addr.port_number()
    };
    assert_ne!(stamps[0], 0, "our write is stamped with our command socket");
    assert_ne!(stamps[0], client_port);
    assert_eq!(stamps[1], client_port);
    let debug = format!("{:?}", h.backend);
    assert!(
        debug.contains(&format!("command_port: {}", stamps[0])),
        "{debug}"
    );

    assert_eq!(
        h.poll_all(),
        [SessionOp::Upsert(theirs)].map(|op| h.normalize_op(op))
    );
    let stats = h.backend.stats();
    // Our own write's event never reached the reader: the socket filter dropped it.
    assert_eq!((stats.events_own, stats.events_in), (0, 1));
}

/// The kernel's own changes (here: an expiry) are stamped 0, and reported as local deletes with
/// the owner the entry had.
#[test]
fn an_expiry_is_a_local_delete_with_the_entrys_owner() {
    require_root!();
    let mut h = ConntrackHarness::with_config(
        ConntrackConfig {
            peer_entry_timeout_secs: 1,
            ..ConntrackConfig::default()
        },
        None,
    );
    let mut short = sample_record(2, PEER); // UDP
    short.timeout_secs = 1;
    assert_eq!(h.backend.apply(&upsert(&[short.clone()])), applied(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.is_empty() {
        assert!(Instant::now() < deadline, "the entry never expired");
        std::thread::sleep(Duration::from_millis(100));
        // The kernel reaps an expired entry when its garbage collector comes by (up to a minute
        // on an idle table) or when a dump or lookup meets it: this dump does.
        h.backend.dump().unwrap();
        h.backend.poll_changes(&mut out, 10).unwrap();
    }
    assert_eq!(
        out,
        [SessionOp::Remove {
            key: short.key,
            owner: PEER
        }]
    );
}

/// With a small event buffer, a burst of kernel events overflows it: ENOBUFS surfaces as one
/// overrun, the events queued before it are discarded, and later events flow again.
#[test]
fn enobufs_is_reported_once_as_an_overrun() {
    require_root!();
    let mut h = ConntrackHarness::with_config(
        ConntrackConfig {
            event_buffer_bytes: 4096,
            ..ConntrackConfig::default()
        },
        None,
    );
    let burst: Vec<_> = (0..4000).map(|i| sample_record(i, LOCAL)).collect();
    h.client.create_many(&burst);
    h.sync_with_sentinel();
    let mut out = Vec::new();
    assert!(matches!(
        h.backend.poll_changes(&mut out, usize::MAX),
        Err(BackendError::Overrun { lost: None })
    ));
    assert!(out.is_empty());
    assert_eq!(h.backend.poll_changes(&mut out, usize::MAX).unwrap(), 0);
    assert_eq!(h.backend.stats().overruns, 1);
    let after = sample_record(5000, LOCAL);
    h.local_create(after.clone()).unwrap();
    let polled: Vec<_> = h
        .poll_all()
        .into_iter()
        .map(|op| h.normalize_op(op))
        .collect();
    assert_eq!(
        polled,
        [SessionOp::Upsert(after)].map(|op| h.normalize_op(op))
    );
    assert_eq!(h.backend.dump().unwrap().len(), 4001);
}

/// The filter decides what is replicated, in events and in dumps; loopback never is.
#[test]
fn the_filter_applies_to_events_and_dumps() {
    require_root!();
    let filter = ReplicationFilter {
        zones: vec![0],
        protocols: vec![6, 17],
        include: vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:1::/48".parse().unwrap(),
        ],
        exclude: vec!["10.0.0.4/32".parse().unwrap()],
    };
    let mut h = ConntrackHarness::with_config(
        ConntrackConfig {
            filter: filter.clone(),
            ..ConntrackConfig::default()
        },
        None,
    );
    // 0: TCP v4, 1: TCP v6, 2: UDP v4, 3: UDP v6, 4: ICMP v4 (protocol), and 6 (TCP v4 from
    // 10.0.0.6) is excluded when its source is moved to the excluded address.
    let mut records: Vec<_> = (0..6).map(|i| sample_record(i, LOCAL)).collect();
    let mut excluded = sample_record(6, LOCAL);
    excluded.key.orig.src = "10.0.0.4".parse().unwrap();
    let mut zoned = sample_record(8, LOCAL);
    zoned.key.zone = 7;
    let mut loopback = sample_record(12, LOCAL);
    loopback.key.orig.dst = "127.0.0.1".parse().unwrap();
    loopback.reply.src = "127.0.0.1".parse().unwrap();
    records.extend([excluded, zoned, loopback]);
    for record in &records {
        h.local_create(record.clone()).unwrap();
    }
    let wanted: Vec<_> = records.iter().filter(|r| filter.matches(&r.key)).collect();
    assert_eq!(wanted.len(), 4, "TCP and UDP of both families");
    let polled = h.poll_all();
    assert_eq!(polled.len(), 4);
    for (op, record) in polled.iter().zip(&wanted) {
        assert_eq!(op.key(), &record.key);
    }
    assert_eq!(h.backend.stats().events_filtered, 5);
    let mut dumped: Vec<_> = h
        .backend
        .dump()
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    dumped.sort();
    let mut want: Vec<_> = wanted.iter().map(|r| r.key).collect();
    want.sort();
    assert_eq!(dumped, want);
    assert_eq!(h.backend.count().unwrap(), 9);

    let default = ReplicationFilter::default();
    assert!(default.matches(&sample_record(0, LOCAL).key));
    assert!(!default.matches(&records[8].key));
    let mut v6_loopback = sample_record(1, LOCAL).key;
    v6_loopback.orig.src = "::1".parse().unwrap();
    assert!(!default.matches(&v6_loopback));
}

/// Source NAT, destination NAT and both, IPv4 and IPv6, TCP, UDP, ICMP and a protocol without
/// ports: the reply tuple round-trips, and the kernel sets the NAT bits that make it translate.
#[test]
fn nat_tuples_round_trip_with_their_nat_bits() {
    require_root!();
    const IPS_SRC_NAT: u32 = 1 << 4;
    const IPS_DST_NAT: u32 = 1 << 5;
    const IPS_SRC_NAT_DONE: u32 = 1 << 7;
    const IPS_DST_NAT_DONE: u32 = 1 << 8;
    let mut h = ConntrackHarness::new();
    let mut records = Vec::new();
    for i in 0..6 {
        // Source NAT (the samples).
        let snat = sample_record(i, PEER);
        // Destination NAT: replies come from the real server instead of the NAT address.
        let mut dnat = sample_record(100 + i, PEER);
        dnat.reply.dst = dnat.key.orig.src;
        dnat.reply.src = if dnat.key.is_ipv6() {
            "2001:db8:9::80".parse().unwrap()
        } else {
            "192.0.2.80".parse().unwrap()
        };
        if matches!(dnat.key.l4proto, 6 | 17) {
            dnat.reply.src_port = 8080;
            dnat.reply.dst_port = dnat.key.orig.src_port;
        } else {
            dnat.reply.src_port = dnat.key.orig.src_port;
        }
        dnat.status = (dnat.status & !IPS_SRC_NAT) | IPS_DST_NAT;
        // Both.
        let mut both = sample_record(200 + i, PEER);
        both.reply.src = dnat.reply.src;
        if matches!(both.key.l4proto, 6 | 17) {
            both.reply.src_port = 8443;
        }
        both.status |= IPS_DST_NAT;
        // Neither: no NAT binding, no NAT bits.
        let mut plain = sample_record(300 + i, PEER);
        plain.reply = Tuple {
            src: plain.key.orig.dst,
            dst: plain.key.orig.src,
            src_port: if matches!(plain.key.l4proto, 6 | 17) {
                plain.key.orig.dst_port
            } else {
                plain.key.orig.src_port
            },
            dst_port: if matches!(plain.key.l4proto, 6 | 17) {
                plain.key.orig.src_port
            } else {
                plain.reply.dst_port
            },
        };
        plain.status &= !(IPS_SRC_NAT | IPS_DST_NAT | IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE);
        records.extend([snat, dnat, both, plain]);
    }
    // GRE (47: keys where ports are), source-NATed without a key change, and a protocol
    // without ports (253, reserved for experiments).
    let mut gre = sample_record(400, PEER);
    gre.key.l4proto = 47;
    (gre.key.orig.src_port, gre.key.orig.dst_port) = (0x1234, 0x5678);
    (gre.reply.src_port, gre.reply.dst_port) = (0x5678, 0x1234);
    let mut generic = sample_record(406, PEER);
    generic.key.l4proto = 253;
    generic.key.orig.src_port = 0;
    generic.key.orig.dst_port = 0;
    generic.reply.src_port = 0;
    generic.reply.dst_port = 0;
    gre.tcp = Default::default();
    generic.tcp = Default::default();
    records.extend([gre, generic]);

    assert_eq!(h.backend.apply(&upsert(&records)), applied(records.len()));
    let mut dumped = h.backend.dump().unwrap();
    dumped.sort_by_key(|r| r.key);
    let mut want: Vec<_> = records.iter().map(|r| h.normalize(r.clone())).collect();
    want.sort_by_key(|r| r.key);
    let dumped: Vec<_> = dumped.into_iter().map(|r| h.normalize(r)).collect();
    assert_eq!(dumped, want);
    // Verified independently of the backend's parser too.
    let listing = run("conntrack", &["-L", "-o", "extended"], "");
    assert!(listing.contains("src=192.0.2.80"), "{listing}");
    assert!(listing.contains("src=2001:db8:9::80"), "{listing}");
}

/// Labels are refused where no ruleset uses `ct label`, and carried where one does.
#[test]
fn labels_need_a_ruleset_that_uses_them() {
    require_root!();
    let mut h = ConntrackHarness::new();
    let mut labelled = sample_record(0, PEER);
    labelled.labels = [0; 16];
    labelled.labels[0] = 0b101;
    labelled.labels[15] = 0x80;
    let report = h.backend.apply(&upsert(&[labelled.clone()]));
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let ApplyError::Refused(why) = &report.failed[0].1 else {
        panic!("{report:?}");
    };
    assert!(why.contains("ENOSPC"), "{why}");
    h.backend
        .apply(&[SessionOp::RemoveAny { key: labelled.key }]);

    run(
        "nft",
        &["-f", "-"],
        "table inet labels {\n chain pre {\n type filter hook prerouting priority 0\n ct label set 127\n }\n}\n",
    );
    let mut other = sample_record(2, PEER);
    other.labels[3] = 0x11;
    assert_eq!(
        h.backend.apply(&upsert(&[labelled.clone(), other.clone()])),
        applied(2)
    );
    let mut dumped = h.backend.dump().unwrap();
    dumped.sort_by_key(|r| r.key);
    assert_eq!(
        dumped.iter().map(|r| r.labels).collect::<Vec<_>>(),
        [labelled.labels, other.labels]
    );
    // A local update with new labels is reported with them.
    let mut relabelled = labelled.clone();
    relabelled.labels[1] = 0x42;
    h.local_update(relabelled.clone()).unwrap();
    let polled = h.poll_all();
    let SessionOp::Upsert(reported) = &polled[0] else {
        panic!("{polled:?}");
    };
    assert_eq!(reported.labels, relabelled.labels);
}

/// Helper, sequence adjustment and zone round-trip. The kernel sets IPS_HELPER on an entry
/// created with a helper, and IPS_SEQ_ADJUST on one with a sequence adjustment.
#[test]
fn helper_sequence_adjustment_and_zone_round_trip() {
    require_root!();
    const IPS_SEQ_ADJUST: u32 = 1 << 6;
    const IPS_HELPER: u32 = 1 << 13;
    let mut h = ConntrackHarness::new();
    let mut ftp = sample_record(0, PEER); // TCP over IPv4
    ftp.key.orig.dst_port = 21;
    ftp.reply.src_port = 21;
    ftp.key.zone = 5;
    ftp.helper = HelperName::new("ftp").unwrap();
    ftp.seq_adj[0] = SeqAdj {
        correction_pos: 0x1234_5678,
        offset_before: -4,
        offset_after: 12,
    };
    ftp.status |= IPS_SEQ_ADJUST | IPS_HELPER;
    let mut v6 = sample_record(1, PEER); // TCP over IPv6
    v6.key.zone = 5;
    v6.seq_adj[1] = SeqAdj {
        correction_pos: 7,
        offset_before: 0,
        offset_after: -1,
    };
    v6.status |= IPS_SEQ_ADJUST;
    let records = [ftp.clone(), v6.clone()];
    assert_eq!(h.backend.apply(&upsert(&records)), applied(2));
    let mut dumped = h.backend.dump().unwrap();
    dumped.sort_by_key(|r| r.key);
    let mut want = records.to_vec();
    want.sort_by_key(|r| r.key);
    let normalize =
        |r: Vec<SessionRecord>| -> Vec<_> { r.into_iter().map(|r| h.normalize(r)).collect() };
    assert_eq!(normalize(dumped), normalize(want));
    // A local update of the entry is reported whole.
    let mut touched = ftp.clone();
    touched.mark = 99;
    h.local_update(touched.clone()).unwrap();
    let polled = h.poll_all();
    touched.owner = LOCAL;
    assert_eq!(polled, [SessionOp::Upsert(h.normalize(touched))]);
}

/// Every TCP entry the backend writes is liberal in both directions; dumps report the flags as
/// the kernel holds them.
#[test]
fn written_tcp_entries_are_liberal() {
    require_root!();
    let mut h = ConntrackHarness::new();
    let mut tcp = sample_record(0, PEER);
    tcp.tcp.flags_orig = 0x01;
    tcp.tcp.flags_reply = 0x03;
    tcp.tcp.state = TcpState::ESTABLISHED;
    let mut ours = sample_record(6, LOCAL);
    ours.tcp.flags_orig = 0;
    ours.tcp.flags_reply = 0;
    assert_eq!(h.backend.apply(&upsert(&[tcp, ours])), applied(2));
    let dumped = h.backend.dump().unwrap();
    let flags: HashSet<_> = dumped
        .iter()
        .map(|r| (r.tcp.flags_orig, r.tcp.flags_reply))
        .collect();
    assert_eq!(flags, HashSet::from([(0x09, 0x0b), (0x08, 0x08)]));
}

/// Peer-owned entries are written with at least the peer timeout and re-armed by a refresh, but
/// dumped with their owner's timeout; adopting them writes that timeout back.
#[test]
fn peer_timeouts_are_inflated_and_restored_by_adoption() {
    require_root!();
    let mut h = ConntrackHarness::with_config(
        ConntrackConfig {
            peer_entry_timeout_secs: 5000,
            ..ConntrackConfig::default()
        },
        None,
    );
    let mut theirs = sample_record(2, PEER); // UDP, 120 s
    theirs.timeout_secs = 120;
    let mut long = sample_record(8, PEER); // UDP, longer than the least peer timeout
    long.timeout_secs = 9000;
    assert_eq!(
        h.backend.apply(&upsert(&[theirs.clone(), long.clone()])),
        applied(2)
    );
    let src = theirs.key.orig.src;
    assert!(kernel_timeout(src) > 4990, "written with the peer timeout");
    assert!(kernel_timeout(long.key.orig.src) > 8990);
    let reported: Vec<_> = {
        let mut d = h.backend.dump().unwrap();
        d.sort_by_key(|r| r.key);
        d.iter().map(|r| (r.owner, r.timeout_secs)).collect()
    };
    assert_eq!(reported, [(PEER, 120), (PEER, 9000)]);
    assert_eq!(h.backend.refresh_peer_entries().unwrap(), 2);
    assert_eq!(h.backend.stats().refreshed, 2);
    assert!(kernel_timeout(src) > 4990);

    assert_eq!(h.backend.adopt(PEER, LOCAL).unwrap(), 2);
    let timeout = kernel_timeout(src);
    assert!(
        (110..=120).contains(&timeout),
        "restored to the owner's: {timeout}"
    );
    assert_eq!(h.backend.refresh_peer_entries().unwrap(), 0);
    let dumped = h.backend.dump().unwrap();
    assert!(dumped.iter().all(|r| r.owner == LOCAL));
    assert_eq!(h.poll_all(), [], "adoption is not echoed");
}

/// After a restart with a peer, entries already in the table are the peer's; without a peer
/// they are local.
#[test]
fn open_takes_existing_entries_as_the_peers() {
    require_root!();
    enter_fresh_netns();
    let mut client = Client::open();
    let existing: Vec<_> = (0..3).map(|i| sample_record(i, LOCAL)).collect();
    for record in &existing {
        client.create(record).unwrap();
    }
    let mut backend =
        ConntrackBackend::open(ConntrackConfig::default(), LOCAL, Some(PEER)).unwrap();
    assert!(backend.dump().unwrap().iter().all(|r| r.owner == PEER));
    let report = backend.apply(&[
        SessionOp::Remove {
            key: existing[0].key,
            owner: LOCAL,
        },
        SessionOp::Remove {
            key: existing[1].key,
            owner: PEER,
        },
    ]);
    assert_eq!(
        report,
        ApplyReport {
            applied: 1,
            skipped_not_owner: 1,
            ..ApplyReport::default()
        }
    );
    assert!(client.exists(&existing[0].key));
    assert!(!client.exists(&existing[1].key));
    drop(backend);

    let mut backend = ConntrackBackend::open(ConntrackConfig::default(), LOCAL, None).unwrap();
    assert!(backend.dump().unwrap().iter().all(|r| r.owner == LOCAL));
}

/// A packet that only changes an entry's mark makes an UPDATE event without TCP info: the
/// backend completes it with a lookup, so the peer never receives a TCP entry without state.
#[test]
fn partial_events_of_real_traffic_are_completed() {
    require_root!();
    let mut h = ConntrackHarness::new();
    run("ip", &["link", "set", "lo", "up"], "");
    run("ip", &["addr", "add", "10.77.0.1/32", "dev", "lo"], "");
    // Marks established packets that carry data: a change of mark alone.
    run(
        "nft",
        &["-f", "-"],
        "table ip t {\n chain out {\n type filter hook output priority 0\n \
         ct state established meta l4proto tcp meta length > 200 ct mark set 0x42\n }\n}\n",
    );
    let listener = std::net::TcpListener::bind("10.77.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    use std::io::{Read, Write};
    client.write_all(&[7; 1000]).unwrap();
    let mut buf = [0; 1000];
    server.read_exact(&mut buf).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut changes = Vec::new();
    loop {
        h.backend.poll_changes(&mut changes, 100).unwrap();
        let marked = changes
            .iter()
            .any(|op| matches!(op, SessionOp::Upsert(r) if r.mark == 0x42 && r.key.l4proto == 6));
        if marked {
            break;
        }
        assert!(Instant::now() < deadline, "no marked update in {changes:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    for op in &changes {
        if let SessionOp::Upsert(record) = op {
            assert_ne!(record.tcp.state, TcpState::NONE, "{record:?}");
            assert_eq!(record.owner, LOCAL);
        }
    }
    let last = changes
        .iter()
        .rev()
        .find_map(|op| match op {
            SessionOp::Upsert(r) if r.mark == 0x42 => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(last.tcp.state, TcpState::ESTABLISHED);
}

#[test]
fn kernel_settings_read_the_namespaces_sysctls() {
    require_root!();
    let _h = ConntrackHarness::new();
    let settings = ConntrackBackend::kernel_settings();
    let names: Vec<_> = settings.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "nf_conntrack_max",
            "nf_conntrack_tcp_loose",
            "nf_conntrack_tcp_be_liberal",
            "nf_conntrack_events",
            "nf_conntrack_helper",
            "nf_conntrack_udp_timeout",
            "nf_conntrack_udp_timeout_stream",
            "nf_conntrack_tcp_timeout_established",
        ]
    );
    assert_eq!(settings[0].1, Some(conntrack_max()));
    assert!(settings[3].1.is_some_and(|events| events > 0));
}

/// Events turned off in the namespace are turned on by `open`, which says so.
#[test]
fn open_turns_events_on() {
    require_root!();
    enter_fresh_netns();
    std::fs::write("/proc/sys/net/netfilter/nf_conntrack_events", "0").unwrap();
    let backend = ConntrackBackend::open(ConntrackConfig::default(), LOCAL, None).unwrap();
    assert_eq!(backend.events_sysctl_changed(), Some((0, 1)));
    let again = ConntrackBackend::open(ConntrackConfig::default(), LOCAL, None).unwrap();
    assert_eq!(again.events_sysctl_changed(), None);
}

/// Dropping the backend stops its event reader: the drop joins the thread, promptly.
#[test]
fn dropping_the_backend_stops_its_reader() {
    require_root!();
    enter_fresh_netns();
    for _ in 0..20 {
        let backend = ConntrackBackend::open(ConntrackConfig::default(), LOCAL, None).unwrap();
        let start = Instant::now();
        drop(backend);
        assert!(start.elapsed() < Duration::from_millis(500));
    }
}

impl ConntrackHarness {
    fn normalize_op(&self, op: SessionOp) -> SessionOp {
        match op {
            SessionOp::Upsert(r) => SessionOp::Upsert(self.normalize(r)),
            other => other,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmark

/// Insert, dump and event rates for 100 000 entries:
/// `cargo test -p failoverd-backends --release --test conntrack -- --ignored --nocapture bench_rates`
#[test]
#[ignore = "benchmark; run in release mode"]
fn bench_rates() {
    require_root!();
    const N: u32 = 100_000;
    /// Ops per `apply`, as the daemon slices a bulk sync.
    const SLICE: usize = 400;
    let mut h = ConntrackHarness::new();
    let rate = |d: Duration| f64::from(N) / d.as_secs_f64() / 1000.0;
    let timed = |label: &str, h: &mut ConntrackHarness, ops: &[SessionOp]| {
        let start = Instant::now();
        for slice in ops.chunks(SLICE) {
            let report = h.backend.apply(slice);
            assert_eq!(report.applied, slice.len(), "{report:?}");
        }
        let elapsed = start.elapsed();
        println!(
            "{label} {N}: {elapsed:.2?} = {:.0} k entries/s",
            rate(elapsed)
        );
    };
    // Source-NATed samples: the kernel sets up a NAT binding for each.
    let records: Vec<_> = (0..N).map(|i| sample_record(i, PEER)).collect();
    timed("apply: create (NAT)", &mut h, &upsert(&records));
    let start = Instant::now();
    assert_eq!(h.backend.dump().unwrap().len(), N as usize);
    let elapsed = start.elapsed();
    println!("dump {N}: {elapsed:.2?} = {:.0} k entries/s", rate(elapsed));
    timed("apply: replace", &mut h, &upsert(&records));
    let removes: Vec<_> = records
        .iter()
        .map(|r| SessionOp::Remove {
            key: r.key,
            owner: PEER,
        })
        .collect();
    timed("apply: remove", &mut h, &removes);
    // The same without NAT: what the kernel's NAT setup costs.
    let plain: Vec<_> = records
        .iter()
        .map(|r| {
            let mut plain = r.clone();
            let ports = matches!(r.key.l4proto, 6 | 17);
            plain.reply = Tuple {
                src: r.key.orig.dst,
                dst: r.key.orig.src,
                src_port: if ports {
                    r.key.orig.dst_port
                } else {
                    r.key.orig.src_port
                },
                dst_port: if ports {
                    r.key.orig.src_port
                } else {
                    r.reply.dst_port
                },
            };
            plain.status &= !0x1b0; // no NAT bits
            plain
        })
        .collect();
    timed("apply: create (no NAT)", &mut h, &upsert(&plain));
    timed("apply: remove", &mut h, &removes);
    assert_eq!(h.poll_all(), [], "own writes are not echoed");

    // Events: another socket creates entries as fast as the kernel takes them.
    let local: Vec<_> = (0..N).map(|i| sample_record(i, LOCAL)).collect();
    let start = Instant::now();
    h.client.create_many(&local);
    let written = start.elapsed();
    let mut received = 0;
    let mut out = Vec::new();
    while received < N as usize {
        out.clear();
        received += h.backend.poll_changes(&mut out, 4096).expect("no overrun");
        assert!(start.elapsed() < Duration::from_secs(60));
    }
    let elapsed = start.elapsed();
    println!(
        "events {N}: written in {written:.2?}, all received after {elapsed:.2?} = {:.0} k events/s, {} overruns",
        rate(elapsed),
        h.backend.stats().overruns
    );
    // The owner stamp: a role change restamps every local entry (a dump, then masked writes).
    for active in [true, false] {
        let start = Instant::now();
        h.backend.set_active(active).unwrap();
        let elapsed = start.elapsed();
        println!(
            "restamp {N} local entries (active: {active}): {elapsed:.2?} = {:.0} k entries/s",
            rate(elapsed)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Ownership in the kernel: the owner stamp

const OWN_BIT: u32 = 1 << 30;
const PEER_BIT: u32 = 1 << 31;

/// Polls until `n` local changes came (the event reader runs on its own thread).
fn poll_changes(backend: &mut ConntrackBackend, n: usize) -> Vec<SessionOp> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} changes", out.len());
        backend.poll_changes(&mut out, 1024).expect("poll");
        std::thread::sleep(Duration::from_millis(2));
    }
    out
}

/// The kernel's marks, stamp included, as a backend without stamps reads them.
fn kernel_marks() -> std::collections::HashMap<SessionKey, u32> {
    let raw = ConntrackConfig {
        owner_mark: OwnerMark::OFF,
        ..ConntrackConfig::default()
    };
    let mut backend = ConntrackBackend::open(raw, LOCAL, None).unwrap();
    let dumped = backend.dump().unwrap();
    dumped.into_iter().map(|r| (r.key, r.mark)).collect()
}

/// Owners after a (re)start with a peer.
fn owners_at_open(config: ConntrackConfig) -> std::collections::HashMap<SessionKey, NodeId> {
    let mut backend = ConntrackBackend::open(config, LOCAL, Some(PEER)).unwrap();
    let dumped = backend.dump().unwrap();
    dumped.into_iter().map(|r| (r.key, r.owner)).collect()
}

/// Ownership lives in the kernel entry: a restarted backend takes the entries it stamped as its
/// own (made by local traffic) for its own, the copies it wrote for the peer (stamped in the
/// create itself) for the peer's, and unstamped entries (made while no failoverd ran) for the
/// peer's, as before. The sweep of the peer's entries that ends the peer's bulk sync then
/// leaves the local ones alone, and the stamp never shows in the replicated mark. Control: with
/// the stamp off, the same restart takes the local entries for the peer's.
#[test]
fn a_restarted_backend_keeps_the_entries_it_stamped_as_its_own() {
    require_root!();
    enter_fresh_netns();
    let mut client = Client::open();
    let mut backend =
        ConntrackBackend::open(ConntrackConfig::default(), LOCAL, Some(PEER)).unwrap();
    let ours: Vec<_> = (0..3).map(|i| sample_record(i, LOCAL)).collect();
    for record in &ours {
        client.create(record).unwrap();
    }
    let changes = poll_changes(&mut backend, ours.len());
    assert!(
        changes
            .iter()
            .all(|op| matches!(op, SessionOp::Upsert(r) if r.owner == LOCAL && r.mark < 3)),
        "local changes are replicated without the stamp: {changes:?}"
    );
    let theirs: Vec<_> = (3..5).map(|i| sample_record(i, PEER)).collect();
    assert_eq!(backend.apply(&upsert(&theirs)), applied(2));
    let dumped = backend.dump().unwrap();
    assert!(dumped.iter().all(|r| r.mark < 5), "{dumped:?}");
    drop(backend);

    let marks = kernel_marks();
    for record in &ours {
        assert_eq!(marks[&record.key], record.mark | OWN_BIT);
    }
    for record in &theirs {
        assert_eq!(marks[&record.key], record.mark | PEER_BIT);
    }
    // Made while no failoverd ran.
    let stray = sample_record(5, LOCAL);
    client.create(&stray).unwrap();

    let owners = owners_at_open(ConntrackConfig::default());
    for record in &ours {
        assert_eq!(owners[&record.key], LOCAL, "{record:?}");
    }
    for record in theirs.iter().chain([&stray]) {
        assert_eq!(owners[&record.key], PEER, "{record:?}");
    }
    let mut backend =
        ConntrackBackend::open(ConntrackConfig::default(), LOCAL, Some(PEER)).unwrap();
    assert_eq!(backend.sweep(PEER, &HashSet::new()).unwrap(), 3);
    for record in &ours {
        assert!(client.exists(&record.key), "swept: {record:?}");
    }
    drop(backend);

    let unstamped = ConntrackConfig {
        owner_mark: OwnerMark::OFF,
        ..ConntrackConfig::default()
    };
    let owners = owners_at_open(unstamped);
    assert!(ours.iter().all(|r| owners[&r.key] == PEER));
}

/// A local change is stamped by the time `poll_changes` hands it on, so every session the peer
/// holds as this node's is one a restart finds as this node's. Entries are made while the polls
/// run, so events keep arriving during each poll's own stamping: stamps used to wait for the
/// next poll, which never came once traffic stopped (an end-to-end asymmetric restart lost 2-4
/// of the standby's 100 own flows that way, swept as the peer's). Each poll's changes are
/// checked in the kernel before the next poll.
#[test]
fn a_change_is_stamped_before_it_is_handed_on() {
    require_root!();
    enter_fresh_netns();
    let mut backend =
        ConntrackBackend::open(ConntrackConfig::default(), LOCAL, Some(PEER)).unwrap();
    let records: Vec<_> = (0..2_000).map(|i| sample_record(i, LOCAL)).collect();
    let mut client = Client::open();
    let maker = std::thread::spawn({
        let records = records.clone();
        move || {
            // Paced, so that events come during most polls, not all before the first.
            for chunk in records.chunks(4) {
                client.create_many(chunk);
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    });
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let (mut handed, mut polls) = (0, 0);
    let mut unstamped: Vec<SessionKey> = Vec::new();
    while handed < records.len() {
        assert!(
            Instant::now() < deadline,
            "{handed} of {} changes",
            records.len()
        );
        let mut out = Vec::new();
        backend.poll_changes(&mut out, 1024).expect("poll");
        if out.is_empty() {
            continue;
        }
        polls += 1;
        handed += out.len();
        let marks = kernel_marks();
        let bare = out.iter().map(SessionOp::key);
        // Entries handed on were in the kernel before this dump began: a dump sees them all.
        unstamped.extend(
            bare.filter(|key| marks.get(*key).is_none_or(|m| m & OWN_BIT == 0))
                .copied(),
        );
    }
    maker.join().unwrap();
    assert!(
        unstamped.is_empty(),
        "{} of {handed} changes handed on unstamped in {polls} polls, e.g. {:?}",
        unstamped.len(),
        unstamped.first()
    );
}

/// The stamp follows the owner. Local activity on a copy of the peer's makes it, and its
/// stamp, local. On the active node local entries are the active role's (the peer adopts them if
/// this node stops): unstamped, adopted copies and new entries alike, so a restart leaves them
/// to the peer; back on standby they are stamped local again. Handing the local entries to the
/// peer stamps them as the peer's. The ruleset's own mark bits are kept throughout.
#[test]
fn the_stamp_follows_the_owner_and_the_active_role() {
    require_root!();
    enter_fresh_netns();
    let mut client = Client::open();
    let mut backend =
        ConntrackBackend::open(ConntrackConfig::default(), LOCAL, Some(PEER)).unwrap();
    let theirs: Vec<_> = (1..4).map(|i| sample_record(i, PEER)).collect();
    assert_eq!(backend.apply(&upsert(&theirs)), applied(3));
    let marks = kernel_marks();
    assert!(theirs.iter().all(|r| marks[&r.key] == r.mark | PEER_BIT));

    // Local traffic on a copy (here: the mark, as a ruleset would set it) makes it local.
    let mut touched = theirs[0].clone();
    touched.mark = 0x2a;
    client.update(&touched).unwrap();
    let changes = poll_changes(&mut backend, 1);
    assert!(matches!(&changes[..], [SessionOp::Upsert(r)] if r.owner == LOCAL && r.mark == 0x2a));
    assert_eq!(kernel_marks()[&touched.key], 0x2a | OWN_BIT);
    let owners = owners_at_open(ConntrackConfig::default());
    assert_eq!(owners[&touched.key], LOCAL);
    assert_eq!(owners[&theirs[1].key], PEER);

    // A takeover: everything is the active role's, new local entries too.
    assert_eq!(backend.adopt(PEER, LOCAL).unwrap(), 2);
    backend.set_active(true).unwrap();
    let fresh = sample_record(7, LOCAL);
    client.create(&fresh).unwrap();
    poll_changes(&mut backend, 1);
    let marks = kernel_marks();
    assert_eq!(marks[&touched.key], 0x2a);
    assert!(theirs[1..].iter().all(|r| marks[&r.key] == r.mark));
    assert_eq!(marks[&fresh.key], fresh.mark);
    assert!(
        owners_at_open(ConntrackConfig::default())
            .values()
            .all(|&o| o == PEER)
    );

    // Standby again: local entries are stamped local again, new ones too.
    backend.set_active(false).unwrap();
    let later = sample_record(8, LOCAL);
    client.create(&later).unwrap();
    poll_changes(&mut backend, 1);
    let marks = kernel_marks();
    assert_eq!(marks[&touched.key], 0x2a | OWN_BIT);
    assert_eq!(marks[&fresh.key], fresh.mark | OWN_BIT);
    assert_eq!(marks[&later.key], later.mark | OWN_BIT);
    assert!(
        owners_at_open(ConntrackConfig::default())
            .values()
            .all(|&o| o == LOCAL)
    );

    // Handed over: the peer's.
    assert_eq!(backend.adopt(LOCAL, PEER).unwrap(), 5);
    let marks = kernel_marks();
    assert_eq!(marks[&touched.key], 0x2a | PEER_BIT);
    assert_eq!(marks[&later.key], later.mark | PEER_BIT);
    assert!(
        owners_at_open(ConntrackConfig::default())
            .values()
            .all(|&o| o == PEER)
    );
}

/// The kernel never clears SEEN_REPLY or ASSURED (an update without them is refused: EBUSY).
/// A copy that saw its reply here while the owner's record did not (an answer through this
/// node after its daemon died, a claimed copy older than its reply) is updated all the same,
/// keeping those bits; refused, the op would be retried forever and the node never ready.
#[test]
fn an_update_keeps_the_status_bits_the_kernel_never_clears() {
    require_root!();
    const SEEN_REPLY_ASSURED: u32 = 0b110;
    let mut h = ConntrackHarness::new();
    let mut answered = sample_record(2, PEER);
    answered.status |= SEEN_REPLY_ASSURED;
    assert_eq!(h.backend.apply(&upsert(&[answered.clone()])), applied(1));
    let mut older = answered.clone();
    older.status &= !SEEN_REPLY_ASSURED;
    older.mark = 7;
    assert_eq!(h.backend.apply(&upsert(&[older])), applied(1));
    assert_eq!(h.backend.stats().status_kept, 1);
    let dumped = h.backend.dump().unwrap();
    assert_eq!(dumped.len(), 1);
    assert_eq!(dumped[0].mark, 7, "the rest of the record is written");
    assert_eq!(dumped[0].status & SEEN_REPLY_ASSURED, SEEN_REPLY_ASSURED);
}

/// Issue 11, item 8: a full table is made by filling the test's own namespace, never by
/// lowering the host-wide `nf_conntrack_max` (which dropped new connections on the whole host
/// while the tests ran). A thread that stays in the initial namespace watches the limit while
/// a table is filled to three free slots and a fourth entry is refused: it never changes.
#[test]
fn a_full_table_leaves_the_host_limit_alone() {
    require_root!();
    let limit = conntrack_max();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now =
                    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap();
                seen.insert(now.trim().parse::<u64>().unwrap());
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        }
    });
    let started = Instant::now();
    let mut h = ConntrackHarness::new();
    h.set_capacity(3);
    let filled = started.elapsed();
    let peer = NodeId(2);
    let records: Vec<_> = (0..4).map(|i| sample_record(i, peer)).collect();
    let report = h.backend().apply(&upsert(&records));
    assert_eq!(report.applied, 3);
    assert_eq!(report.failed, [(3, ApplyError::TableFull)]);
    drop(h);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [limit],
        "the host's nf_conntrack_max stayed {limit}"
    );
    eprintln!("filled a namespace to {limit} - 3 entries in {filled:?}");
}
