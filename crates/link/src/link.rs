//! The link: two pinned TLS 1.3 connections (control, data) to the one peer, run in tokio tasks.
//!
//! Tasks: one accept loop (both nodes listen), a pairing loop that joins an accepted control and
//! data connection into a link, and a dial loop. The node whose key sorts first dials; the
//! acceptor refuses a dial from a key that sorts after its own (before the link starts), which
//! tells the dialler to wait for the peer instead. A node whose key sorts after every pin only
//! probes, at the longest backoff and only while no link is up: with the wrong pin on both
//! sides nobody would dial, and the probe makes both nodes log the refused key. Connections
//! from any address but the peer's are closed before TLS. Each link runs a reader and a batching writer task for the data connection and a
//! thread of its own for the control connection ([`control`]), under one supervisor that tears
//! everything down when any of them ends and then reports `Down`.
//!
//! Ordering guarantees seen through [`LinkEvents::recv`]: `Up` precedes every frame of its link,
//! frames of one channel arrive in order, `Down` follows every frame of its link and precedes the
//! next `Up`. Control frames and state events overtake queued data frames.
//!
//! Why one file of about 1,400 lines: accept, pairing, dialling and the running connection
//! share the connection's private state and its error paths; the control path's own task
//! (`control.rs`) and the admission limits (`limit.rs`) are apart.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use failoverd_wire::{Channel, HEADER_LEN, frame_len};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tracing::{debug, info, warn};

use crate::tls::{PinMismatch, peer_key, peer_refused_our_key, pin_mismatch};
use crate::{Fingerprint, Identity, LinkError, Pins, tls};
use limit::{LogKey, LogLimiter, TokenBucket};

mod control;
mod limit;

/// Default shortest wait between two dial attempts.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Default longest wait between two dial attempts.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Time allowed for TCP connect, TLS handshake and channel preamble together.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Outbound control frames that may wait to be written (hellos are tiny and rare).
pub const CONTROL_QUEUE_FRAMES: usize = 1024;
/// Outbound data frames that may wait to be written: the backpressure bound (256 frames of
/// 64 KiB = 16 MiB).
pub const DATA_QUEUE_FRAMES: usize = 256;

/// Received data frames the daemon has not taken yet; small, so TCP pushes back on the sender
/// instead of memory filling up here.
const DATA_EVENTS: usize = 64;
/// Received control frames and state events not taken yet.
const CONTROL_EVENTS: usize = 1024;
/// Bytes gathered from the queue into one write: many frames per syscall and TLS record run.
const WRITE_BATCH: usize = 256 * 1024;
const READ_BUFFER: usize = 64 * 1024;
/// Data bytes a reader or writer handles before it lets other tasks run.
const YIELD_EVERY: usize = 64 * 1024;
/// Handshakes in progress at once. When all are taken, a new connection from the peer's address
/// replaces the oldest: idle connections cannot keep the peer's fresh dial out. (The peer needs
/// two per attempt.)
const MAX_PENDING_HANDSHAKES: usize = 16;
/// Connections from the peer's address that may start a handshake at once, then
/// [`HANDSHAKES_PER_SECOND`]: the peer dials two per attempt, at most every
/// `reconnect_min` at first and ever more slowly.
const HANDSHAKE_BURST: u32 = 16;
/// See [`HANDSHAKE_BURST`].
const HANDSHAKES_PER_SECOND: u32 = 16;
/// At most one log line per source and kind of refusal (or local condition) in this interval,
/// and one summary line
/// per interval of what was suppressed.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Sources remembered for log coalescing; beyond, lines are suppressed (and summarized).
const LOG_KEYS: usize = 1024;
/// How long a refused handshake's connection stays half open so that the dialler reads the
/// alert before the connection closes (it closes its side at once when it has).
const ALERT_LINGER: Duration = Duration::from_millis(250);
/// What an acceptor answers to the preamble instead of its echo when the dialler's key sorts
/// after its own: "I dial you".
const DIAL_REFUSED: u8 = b'R';

/// Where the link listens, whom it talks to, and how it proves who it is.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Address to accept the peer's connections on (both nodes listen).
    pub listen: SocketAddr,
    /// The peer's listen address: dialled, and the only source address accepted (connections
    /// from any other are closed before TLS).
    pub peer: SocketAddr,
    /// This node's key and certificate.
    pub identity: Identity,
    /// The only keys accepted from the peer.
    pub pins: Pins,
    /// Shortest wait before redialling.
    pub reconnect_min: Duration,
    /// Longest wait before redialling (the backoff doubles up to this).
    pub reconnect_max: Duration,
    /// Sees the control connection come up, every control frame as soon as it is read (before
    /// it queues for [`LinkEvents`]), and the connection end.
    pub control_tap: Option<ControlTap>,
    /// Real-time (SCHED_FIFO) priority of the control connection's thread, 1..=99; `None`:
    /// normal priority. Refused without CAP_SYS_NICE (a warning is logged).
    pub control_priority: Option<u8>,
}

/// What the control connection's thread tells a [`ControlTap`].
#[derive(Debug, Clone, Copy)]
pub enum TapEvent<'a> {
    /// A link is up: its frames follow. Told before or after [`LinkEvent::Up`], whichever
    /// the daemon's loop takes first.
    Up,
    /// One frame from the pinned peer, length-checked, content not.
    Frame(&'a [u8]),
    /// The link's control connection ended: no more frames of this link.
    Down,
    /// Every frame that had reached the control connection when
    /// [`LinkSender::drain`] was called has been handed to the tap: the socket was found empty
    /// after the call. Nothing confirms a drain while frames wait for room in the daemon's
    /// event queue (none is read then).
    Drained,
}

/// A function the control connection's thread calls as the connection comes up, with every
/// frame it reads, and as it ends: a daemon whose event loop is busy still learns at once that
/// the link is up and that its peer's hellos arrive. It runs on that thread, so it must be
/// quick and must not block.
#[derive(Clone)]
pub struct ControlTap(Arc<TapFn>);

type TapFn = dyn Fn(TapEvent<'_>) + Send + Sync;

impl ControlTap {
    /// A tap calling `f`.
    pub fn new(f: impl Fn(TapEvent<'_>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl fmt::Debug for ControlTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControlTap")
    }
}

impl LinkConfig {
    /// A configuration with the default reconnect backoff.
    pub fn new(
        listen: SocketAddr,
        peer: SocketAddr,
        identity: Identity,
        pins: impl Into<Pins>,
    ) -> Self {
        LinkConfig {
            listen,
            peer,
            identity,
            pins: pins.into(),
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            control_tap: None,
            control_priority: None,
        }
    }
}

/// The first byte the dialler sends inside TLS, naming the connection's channel.
fn tag(channel: Channel) -> u8 {
    match channel {
        Channel::Control => b'C',
        Channel::Data => b'D',
    }
}

fn channel_of_tag(byte: u8) -> Option<Channel> {
    Channel::ALL.into_iter().find(|&c| tag(c) == byte)
}

/// What the link reports to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Both connections to the authenticated peer are established.
    Up {
        /// The key the peer presented (one of the pins).
        peer: Fingerprint,
        /// The peer's address (of the control connection).
        remote: SocketAddr,
    },
    /// One whole frame from the peer; its length was checked with
    /// [`failoverd_wire::frame_len`], its content was not.
    Frame {
        /// The connection it came on.
        channel: Channel,
        /// The frame, header included.
        bytes: Vec<u8>,
    },
    /// The link is gone; reported exactly once per `Up`.
    Down {
        /// Why, for the log and the event history.
        reason: String,
    },
    /// A connection was refused before TLS (not the peer's address, over the rate limit) or
    /// failed authentication or the handshake, and was dropped; an established link is not
    /// affected. Reported with the log line, so at most once per source and kind per 10 s (the counters
    /// in [`LinkStats`] count every one).
    Rejected {
        /// Who connected (or whom we dialled).
        remote: SocketAddr,
        /// Why; a wrong key names both the presented and the pinned fingerprint.
        reason: String,
    },
}

/// Counters of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Frames received and delivered.
    pub frames_in: u64,
    /// Bytes of those frames.
    pub bytes_in: u64,
    /// Frames written to the connection.
    pub frames_out: u64,
    /// Bytes of those frames.
    pub bytes_out: u64,
}

/// Counters of the link since [`spawn`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Control channel.
    pub control: ChannelStats,
    /// Data channel.
    pub data: ChannelStats,
    /// Connections that failed the handshake or authentication, in either direction.
    pub rejected_handshakes: u64,
    /// Connections closed before TLS because they came from another address than the peer's.
    pub refused_source: u64,
    /// Connections from the peer's address closed before TLS because they came faster than
    /// the handshake rate limit.
    pub refused_rate: u64,
    /// Handshakes in progress dropped to make room for a newer connection.
    pub evicted_handshakes: u64,
    /// Log lines about refused or rejected connections (and other repeated conditions) left
    /// out by the coalescing: one line per source and kind per 10 s, plus a summary.
    pub log_lines_suppressed: u64,
    /// Frames that failed [`failoverd_wire::frame_len`] (each closed its link).
    pub malformed_frames: u64,
    /// Links established after the first.
    pub reconnects: u64,
    /// Dial attempts that failed (peer unreachable, handshake failed).
    pub dial_failures: u64,
}

/// Sends frames to the peer and controls the connection. Cheap to clone.
#[derive(Clone)]
pub struct LinkSender {
    shared: Arc<Shared>,
}

impl LinkSender {
    /// Queues one frame without waiting.
    ///
    /// `frame` must be exactly one wire frame (its header's length equal to `frame.len()`),
    /// else [`LinkError::InvalidFrame`]. Fails with [`LinkError::NotConnected`] when no link is
    /// up and with [`LinkError::Full`] when the channel's queue is full; a control frame is never
    /// refused because of queued data.
    pub fn send(&self, channel: Channel, frame: Vec<u8>) -> Result<(), LinkError> {
        check_frame(&frame)?;
        let slot = self.shared.slot();
        let slot = slot.as_ref().ok_or(LinkError::NotConnected)?;
        slot.queue(channel)
            .try_send(frame)
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => LinkError::Full(channel),
                mpsc::error::TrySendError::Closed(_) => LinkError::NotConnected,
            })?;
        slot.queued(channel);
        Ok(())
    }

    /// Asks the control connection's thread to read what its socket holds and confirm with
    /// [`TapEvent::Drained`] (a reader of hellos that runs apart from the judge of the peer's
    /// silence must not let hellos wait unread behind a verdict). Fails with
    /// [`LinkError::NotConnected`] when no link is up.
    pub fn drain(&self) -> Result<(), LinkError> {
        let slot = self.shared.slot();
        let slot = slot.as_ref().ok_or(LinkError::NotConnected)?;
        slot.control_wake.drain();
        Ok(())
    }

    /// Queues one frame, waiting while the channel's queue is full (backpressure for bulk
    /// syncs). Fails like [`LinkSender::send`] except that it never returns `Full`; a link that
    /// goes down while waiting gives [`LinkError::NotConnected`].
    pub async fn send_async(&self, channel: Channel, frame: Vec<u8>) -> Result<(), LinkError> {
        check_frame(&frame)?;
        let (queue, wake) = {
            let slot = self.shared.slot();
            let slot = slot.as_ref().ok_or(LinkError::NotConnected)?;
            (slot.queue(channel).clone(), slot.control_wake.clone())
        };
        queue
            .send(frame)
            .await
            .map_err(|_| LinkError::NotConnected)?;
        if channel == Channel::Control {
            wake.wake();
        }
        Ok(())
    }

    /// Drops the current link, if any (e.g. after the core declared the peer dead). Frames
    /// still queued are discarded. A `Down` follows; the dialling node then reconnects.
    pub fn close(&self) {
        if let Some(slot) = self.shared.slot().take() {
            // The supervisor may already be gone; then there is nothing left to close.
            let _ = slot.cancel.send("closed locally".to_string());
        }
    }

    /// A snapshot of the link's counters.
    pub fn stats(&self) -> LinkStats {
        self.shared.counters.snapshot()
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }
}

impl fmt::Debug for LinkSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSender")
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

fn check_frame(frame: &[u8]) -> Result<(), LinkError> {
    let declared = frame_len(frame).map_err(LinkError::InvalidFrame)?;
    if declared != frame.len() {
        return Err(LinkError::InvalidFrame(
            failoverd_wire::WireError::LengthMismatch {
                declared: declared as u32,
                actual: frame.len(),
            },
        ));
    }
    Ok(())
}

/// The events of the link, control first.
///
/// A separate type rather than a bare channel receiver so that control frames and state events
/// overtake data frames already queued here: a backlog of session batches waiting to be applied
/// must not delay a hello, on the receiving side either. Dropping it stops the link: the
/// listener closes and the connections drop.
pub struct LinkEvents {
    control: mpsc::Receiver<Ordered>,
    data: mpsc::Receiver<(u64, Vec<u8>)>,
    data_open: bool,
    /// The link whose `Up` was delivered and whose `Down` was not.
    current: Option<u64>,
    /// A `Down` taken from the control queue, held until its link's data frames are delivered.
    pending_down: Option<(u64, String)>,
    /// A data frame taken from the queue but not deliverable yet (its link's `Up` is still
    /// queued behind other control events).
    stashed: Option<(u64, Vec<u8>)>,
}

impl LinkEvents {
    /// The next event; `None` once the link has stopped for good (its tasks ended).
    ///
    /// Cancel-safe: usable in `tokio::select!` without losing events.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        loop {
            if let Some(event) = self.next_ready() {
                return Some(event);
            }
            tokio::select! {
                biased;
                event = self.control.recv() => match event? {
                    Ordered::Up { link, peer, remote } => {
                        self.current = Some(link);
                        return Some(LinkEvent::Up { peer, remote });
                    }
                    Ordered::Frame(bytes) => {
                        return Some(LinkEvent::Frame { channel: Channel::Control, bytes });
                    }
                    Ordered::Down { link, reason } => self.pending_down = Some((link, reason)),
                    Ordered::Rejected { remote, reason } => {
                        return Some(LinkEvent::Rejected { remote, reason });
                    }
                },
                frame = self.data.recv(), if self.data_open && self.stashed.is_none() => {
                    match frame {
                        Some(frame) => self.stashed = Some(frame),
                        None => self.data_open = false,
                    }
                }
            }
        }
    }

    /// An event that can be delivered without waiting, respecting the ordering guarantees.
    fn next_ready(&mut self) -> Option<LinkEvent> {
        if let Some((ending, _)) = self.pending_down {
            // The supervisor sends Down only after the link's readers stopped, so every data
            // frame of that link is already queued: deliver them, then the Down.
            if self.stashed.is_none() {
                self.stashed = self.data.try_recv().ok();
            }
            if let Some((link, _)) = self.stashed
                && link <= ending
            {
                return self.take_stashed();
            }
            let (_, reason) = self.pending_down.take()?;
            self.current = None;
            return Some(LinkEvent::Down { reason });
        }
        match self.stashed {
            Some((link, _)) if Some(link) == self.current => self.take_stashed(),
            _ => None,
        }
    }

    fn take_stashed(&mut self) -> Option<LinkEvent> {
        let (_, bytes) = self.stashed.take()?;
        Some(LinkEvent::Frame {
            channel: Channel::Data,
            bytes,
        })
    }
}

impl fmt::Debug for LinkEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkEvents")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

/// Events on the ordered (control) queue; data frames travel on their own queue.
enum Ordered {
    Up {
        link: u64,
        peer: Fingerprint,
        remote: SocketAddr,
    },
    Frame(Vec<u8>),
    Down {
        link: u64,
        reason: String,
    },
    Rejected {
        remote: SocketAddr,
        reason: String,
    },
}

/// Starts the link: binds the listener (a bind error is returned here), then runs in tasks of
/// the current tokio runtime until the returned [`LinkEvents`] is dropped.
pub fn spawn(config: LinkConfig) -> Result<(LinkSender, LinkEvents), LinkError> {
    let own = config.identity.fingerprint();
    if config.pins.accepts(&own) {
        return Err(LinkError::Config(format!(
            "the peer's pinned fingerprint {own} is this node's own key: each node needs its own key (`failoverctl keygen`)"
        )));
    }
    if config.reconnect_min.is_zero() || config.reconnect_min > config.reconnect_max {
        return Err(LinkError::Config(format!(
            "reconnect backoff must satisfy 0 < min <= max (min {:?}, max {:?})",
            config.reconnect_min, config.reconnect_max
        )));
    }
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| LinkError::NoRuntime)?;
    let server = TlsAcceptor::from(Arc::new(tls::server_config(&config.identity, config.pins)?));
    let client = TlsConnector::from(Arc::new(tls::client_config(&config.identity, config.pins)?));

    let bind_error = |source| LinkError::Bind {
        addr: config.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(config.listen).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let listener = {
        let _entered = runtime.enter();
        TcpListener::from_std(listener).map_err(bind_error)?
    };
    let local_addr = listener.local_addr().map_err(bind_error)?;

    let (control_tx, control_rx) = mpsc::channel(CONTROL_EVENTS);
    let (data_tx, data_rx) = mpsc::channel(DATA_EVENTS);
    let shared = Arc::new(Shared {
        slot: Mutex::new(None),
        counters: Counters::default(),
        local_addr,
    });
    let now = Instant::now();
    let ctx = Arc::new(Ctx {
        eager: config.pins.iter().any(|pin| own < pin),
        peer: config.peer,
        source: (!config.listen.ip().is_unspecified()).then_some(config.listen.ip()),
        own,
        reconnect: (config.reconnect_min, config.reconnect_max),
        shared: shared.clone(),
        events: control_tx,
        data_events: data_tx,
        next_link: AtomicU64::new(0),
        log: Mutex::new(LogLimiter::new(LOG_INTERVAL, LOG_KEYS, now)),
        handshakes: Mutex::new(TokenBucket::new(
            HANDSHAKES_PER_SECOND,
            HANDSHAKE_BURST,
            now,
        )),
        tap: config.control_tap.clone(),
        control_priority: config.control_priority,
    });
    info!(
        listen = %local_addr, peer = %config.peer, own = %own, pins = %config.pins,
        role = if ctx.eager { "dialer" } else { "acceptor" },
        "failover link starting"
    );
    if ctx.source.is_none() {
        warn!(
            listen = %config.listen,
            "failover link: link.listen is a wildcard address: connections are accepted only \
             from the peer's address {}, which holds only while the peer dials from it (set \
             link.listen to this node's failover-link address on both nodes)",
            config.peer.ip()
        );
    }
    let (halves_tx, halves_rx) = mpsc::channel(4);
    runtime.spawn(accept_loop(ctx.clone(), listener, server, halves_tx));
    runtime.spawn(pair_loop(ctx.clone(), halves_rx));
    runtime.spawn(dial_loop(ctx, client));
    let events = LinkEvents {
        control: control_rx,
        data: data_rx,
        data_open: true,
        current: None,
        pending_down: None,
        stashed: None,
    };
    Ok((LinkSender { shared }, events))
}

/// What the sender side and the tasks share.
struct Shared {
    slot: Mutex<Option<Slot>>,
    counters: Counters,
    local_addr: SocketAddr,
}

impl Shared {
    fn slot(&self) -> MutexGuard<'_, Option<Slot>> {
        lock(&self.slot)
    }
}

/// The outbound side of the current link.
struct Slot {
    link: u64,
    control: mpsc::Sender<Vec<u8>>,
    /// Wakes the control connection's thread: a frame is queued.
    control_wake: Arc<control::Wake>,
    data: mpsc::Sender<Vec<u8>>,
    cancel: oneshot::Sender<String>,
}

impl Slot {
    fn queue(&self, channel: Channel) -> &mpsc::Sender<Vec<u8>> {
        match channel {
            Channel::Control => &self.control,
            Channel::Data => &self.data,
        }
    }

    /// A frame was queued on `channel`: the control thread must look (tokio tasks are woken
    /// by the queue itself).
    fn queued(&self, channel: Channel) {
        if channel == Channel::Control {
            self.control_wake.wake();
        }
    }
}

#[derive(Default)]
struct Counters {
    frames_in: [AtomicU64; 2],
    bytes_in: [AtomicU64; 2],
    frames_out: [AtomicU64; 2],
    bytes_out: [AtomicU64; 2],
    rejected: AtomicU64,
    refused_source: AtomicU64,
    refused_rate: AtomicU64,
    evicted: AtomicU64,
    suppressed: AtomicU64,
    malformed: AtomicU64,
    links: AtomicU64,
    dial_failures: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> LinkStats {
        let channel = |c: Channel| ChannelStats {
            frames_in: self.frames_in[c.index()].load(Ordering::Relaxed),
            bytes_in: self.bytes_in[c.index()].load(Ordering::Relaxed),
            frames_out: self.frames_out[c.index()].load(Ordering::Relaxed),
            bytes_out: self.bytes_out[c.index()].load(Ordering::Relaxed),
        };
        LinkStats {
            control: channel(Channel::Control),
            data: channel(Channel::Data),
            rejected_handshakes: self.rejected.load(Ordering::Relaxed),
            refused_source: self.refused_source.load(Ordering::Relaxed),
            refused_rate: self.refused_rate.load(Ordering::Relaxed),
            evicted_handshakes: self.evicted.load(Ordering::Relaxed),
            log_lines_suppressed: self.suppressed.load(Ordering::Relaxed),
            malformed_frames: self.malformed.load(Ordering::Relaxed),
            reconnects: self.links.load(Ordering::Relaxed).saturating_sub(1),
            dial_failures: self.dial_failures.load(Ordering::Relaxed),
        }
    }
}

/// What every task of one link instance needs.
struct Ctx {
    /// This node's key sorts before a pin: it may be the dialler, so it dials at the backoff
    /// (otherwise it only probes, see the module's doc).
    eager: bool,
    peer: SocketAddr,
    /// The address dials leave from (`listen`'s, unless that is a wildcard): the peer accepts
    /// connections only from our address.
    source: Option<IpAddr>,
    own: Fingerprint,
    reconnect: (Duration, Duration),
    shared: Arc<Shared>,
    events: mpsc::Sender<Ordered>,
    data_events: mpsc::Sender<(u64, Vec<u8>)>,
    next_link: AtomicU64,
    log: Mutex<LogLimiter>,
    /// Connections from the peer's address that may start a handshake.
    handshakes: Mutex<TokenBucket>,
    tap: Option<ControlTap>,
    control_priority: Option<u8>,
}

impl Ctx {
    /// Creates the outbound queues of a new link and makes them the current ones; fails only
    /// when the control thread's wake-up cannot be created (out of file descriptors).
    fn install(&self) -> std::io::Result<Installed> {
        let control_wake = Arc::new(control::Wake::new()?);
        let link = self.next_link.fetch_add(1, Ordering::Relaxed);
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE_FRAMES);
        let (data, data_rx) = mpsc::channel(DATA_QUEUE_FRAMES);
        let (cancel, cancel_rx) = oneshot::channel();
        let old = self.shared.slot().replace(Slot {
            link,
            control,
            control_wake: control_wake.clone(),
            data,
            cancel,
        });
        // Callers end the previous link first; should one remain, end it rather than leak it.
        if let Some(old) = old {
            let _ = old.cancel.send("replaced".to_string());
        }
        Ok(Installed {
            link,
            queues: [control_rx, data_rx],
            control_wake,
            cancel: cancel_rx,
        })
    }

    /// A link authenticated but not started: its connections are dropped.
    fn cannot_install(&self, err: &std::io::Error) {
        if let Some(suppressed) = self.allow_log(LogKey::Local("install failed"), "install failed")
        {
            warn!(suppressed, "failover link: cannot start a link: {err}");
        }
    }

    /// Whether a line about `key` may be logged now (see [`LogLimiter::allow`]); a suppressed
    /// one is counted.
    fn allow_log(&self, key: LogKey, kind: &'static str) -> Option<u64> {
        let allowed = lock(&self.log).allow(key, kind, Instant::now());
        if allowed.is_none() {
            self.shared
                .counters
                .suppressed
                .fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Logs what the coalescing left out in the last interval, if anything.
    fn log_summary(&self) {
        let Some(suppressed) = lock(&self.log).summary(Instant::now()) else {
            return;
        };
        let total: u64 = suppressed.values().sum();
        let kinds = suppressed
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        warn!(
            suppressed = total,
            "failover link: {total} log lines suppressed in the last {LOG_INTERVAL:?} ({kinds}); \
             counters: failoverctl status"
        );
    }

    /// Whether a connection from `remote` may start a handshake: it comes from the peer's
    /// address and within the rate limit. A refused one is counted and logged (coalesced).
    fn admit(&self, remote: SocketAddr) -> bool {
        let counters = &self.shared.counters;
        let expected = self.peer.ip().to_canonical();
        let (counter, kind, reason) = if remote.ip().to_canonical() != expected {
            (
                &counters.refused_source,
                "not the peer's address",
                format!("not the peer's address {expected}"),
            )
        } else if !lock(&self.handshakes).take(Instant::now()) {
            (
                &counters.refused_rate,
                "over the rate limit",
                format!(
                    "more than {HANDSHAKE_BURST} connections at once or {HANDSHAKES_PER_SECOND}/s from the peer's address"
                ),
            )
        } else {
            return true;
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.refused(remote, kind, format!("closed before TLS: {reason}"));
        false
    }

    /// Ends the current link, if any.
    fn cancel_current(&self, reason: String) {
        if let Some(slot) = self.shared.slot().take() {
            let _ = slot.cancel.send(reason);
        }
    }

    fn reject(&self, remote: SocketAddr, kind: &'static str, reason: String) {
        self.shared
            .counters
            .rejected
            .fetch_add(1, Ordering::Relaxed);
        self.refused(remote, kind, reason);
    }

    /// Logs a refused connection, at most one line per source, kind and [`LOG_INTERVAL`], and
    /// reports the lines it logs to the daemon (its event history) as [`LinkEvent::Rejected`].
    fn refused(&self, remote: SocketAddr, kind: &'static str, reason: String) {
        let Some(suppressed) = self.allow_log(LogKey::Source(remote.ip().to_canonical()), kind)
        else {
            return;
        };
        warn!(%remote, suppressed, "failover link: rejected connection: {reason}");
        // Never wait here: a flood of rejections must not stall the accept loop; when the
        // daemon is behind, the counters still tell.
        let _ = self.events.try_send(Ordered::Rejected { remote, reason });
    }
}

struct Installed {
    link: u64,
    queues: [mpsc::Receiver<Vec<u8>>; 2],
    control_wake: Arc<control::Wake>,
    cancel: oneshot::Receiver<String>,
}

type Stream = TlsStream<TcpStream>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves only plain data behind: keep going.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Runs one established link until a connection fails, it is cancelled, or the link stops.
async fn run_link(
    ctx: Arc<Ctx>,
    installed: Installed,
    (control, data): (Stream, Stream),
    peer: Fingerprint,
    remote: SocketAddr,
) {
    let Installed {
        link,
        queues: [control_queue, data_queue],
        control_wake,
        cancel,
    } = installed;
    ctx.shared.counters.links.fetch_add(1, Ordering::Relaxed);
    info!(%remote, %peer, "failover link up");
    if ctx
        .events
        .send(Ordered::Up { link, peer, remote })
        .await
        .is_err()
    {
        return;
    }
    let mut control = match control::ControlThread::start(
        ctx.clone(),
        control,
        control_queue,
        control_wake,
        remote,
    ) {
        Ok(control) => control,
        Err(err) => {
            let reason = format!("cannot serve the control connection: {err}");
            ctx.shared.slot().take_if(|slot| slot.link == link);
            info!(%remote, "failover link down: {reason}");
            let _ = ctx.events.send(Ordered::Down { link, reason }).await;
            return;
        }
    };
    let (data_read, data_write) = tokio::io::split(data);
    let mut tasks = JoinSet::new();
    tasks.spawn(read_frames(ctx.clone(), link, data_read, remote));
    tasks.spawn(write_frames(ctx.clone(), data_queue, data_write));
    let reason = tokio::select! {
        Some(done) = tasks.join_next() => {
            done.unwrap_or_else(|err| format!("link task failed: {err}"))
        }
        reason = &mut control.done => {
            control.finished = true;
            reason.unwrap_or_else(|_| "control thread failed".to_string())
        }
        reason = cancel => reason.unwrap_or_else(|_| "closed locally".to_string()),
        () = ctx.events.closed() => "link stopped".to_string(),
    };
    // Stop the others before reporting Down, so no frame of this link follows it.
    control.stop().await;
    tasks.shutdown().await;
    {
        let mut slot = ctx.shared.slot();
        if slot.as_ref().is_some_and(|s| s.link == link) {
            *slot = None;
        }
    }
    info!(%remote, "failover link down: {reason}");
    let _ = ctx.events.send(Ordered::Down { link, reason }).await;
}

/// Reads data frames until the connection ends; returns why it ended.
async fn read_frames<R: AsyncRead + Unpin>(
    ctx: Arc<Ctx>,
    link: u64,
    reader: R,
    remote: SocketAddr,
) -> String {
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let counters = &ctx.shared.counters;
    let index = Channel::Data.index();
    let mut since_yield = 0;
    loop {
        let mut header = [0; HEADER_LEN];
        if let Err(err) = reader.read_exact(&mut header).await {
            return if err.kind() == std::io::ErrorKind::UnexpectedEof {
                "peer closed the data connection".to_string()
            } else {
                format!("data connection failed: {err}")
            };
        }
        // Checked before allocating: a frame is never larger than MAX_FRAME_LEN.
        let len = match frame_len(&header) {
            Ok(len) => len,
            Err(err) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                let reason = format!("malformed frame on the data connection: {err}");
                warn!(%remote, "failover link: {reason}; closing the link");
                return reason;
            }
        };
        let mut frame = vec![0; len];
        frame[..HEADER_LEN].copy_from_slice(&header);
        if let Err(err) = reader.read_exact(&mut frame[HEADER_LEN..]).await {
            return format!("data connection ended inside a frame: {err}");
        }
        counters.frames_in[index].fetch_add(1, Ordering::Relaxed);
        counters.bytes_in[index].fetch_add(len as u64, Ordering::Relaxed);
        if ctx.data_events.send((link, frame)).await.is_err() {
            return "link stopped".to_string();
        }
        since_yield += len;
        if since_yield >= YIELD_EVERY {
            // As in the writer: decrypting keeps the reader ready; let other tasks run.
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// Writes queued data frames, many per write; returns why it stopped.
async fn write_frames<W: AsyncWrite + Unpin>(
    ctx: Arc<Ctx>,
    mut queue: mpsc::Receiver<Vec<u8>>,
    mut writer: W,
) -> String {
    let counters = &ctx.shared.counters;
    let index = Channel::Data.index();
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(frame) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&frame);
        let mut frames = 1;
        while batch.len() < WRITE_BATCH {
            match queue.try_recv() {
                Ok(frame) => {
                    batch.extend_from_slice(&frame);
                    frames += 1;
                }
                Err(_) => break,
            }
        }
        let written = async {
            writer.write_all(&batch).await?;
            writer.flush().await
        };
        if let Err(err) = written.await {
            return format!("data connection failed: {err}");
        }
        counters.frames_out[index].fetch_add(frames, Ordering::Relaxed);
        counters.bytes_out[index].fetch_add(batch.len() as u64, Ordering::Relaxed);
        // Encrypting a batch is ~100 us of CPU and the queue and socket stay ready under
        // load, so without this the task would run many batches per poll and keep other
        // tasks off the (two) cores for milliseconds.
        tokio::task::yield_now().await;
    }
    "link closed".to_string()
}

/// One authenticated connection of the pinned peer, not yet paired with its sibling.
struct Half {
    channel: Channel,
    /// Chosen by the dialler per attempt, so halves of different attempts are never paired.
    attempt: u64,
    stream: Stream,
    /// The key it presented.
    key: Fingerprint,
    remote: SocketAddr,
}

/// Why an incoming or outgoing connection did not become part of a link.
struct Refusal {
    /// What kind of refusal, for the log summary.
    kind: &'static str,
    reason: String,
    class: RefusalClass,
}

/// How a [`Refusal`] is counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefusalClass {
    /// Authentication or protocol: a rejected handshake, logged as a warning.
    Rejected,
    /// The peer is unreachable: a dial failure, logged at debug level.
    Unreachable,
    /// The two ends both dialled; the one whose key sorts first dials (not a failure).
    WrongDirection,
}

impl Refusal {
    fn new(kind: &'static str, reason: String) -> Self {
        Refusal {
            kind,
            reason,
            class: RefusalClass::Rejected,
        }
    }

    /// Classifies an I/O error of the TLS handshake or the preamble.
    fn from_io(ctx: &Ctx, remote: SocketAddr, err: &std::io::Error) -> Self {
        if let Some(PinMismatch {
            presented,
            expected,
        }) = pin_mismatch(err)
        {
            return Refusal::new(
                "wrong key",
                format!("peer {remote} presented key {presented} but {expected} is pinned"),
            );
        }
        if peer_refused_our_key(err) {
            return Refusal::new(
                "key refused by peer",
                format!(
                    "peer {remote} refused our key {}: is it pinned in the peer's configuration?",
                    ctx.own
                ),
            );
        }
        if err.kind() == std::io::ErrorKind::InvalidData {
            return Refusal::new(
                "tls error",
                format!("TLS handshake with {remote} failed: {err}"),
            );
        }
        Refusal::new(
            "io error",
            format!("connection with {remote} failed during the handshake: {err}"),
        )
    }
}

async fn accept_loop(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    halves: mpsc::Sender<Half>,
) {
    // Handshakes in progress, oldest first.
    let mut pending: VecDeque<AbortHandle> = VecDeque::new();
    let mut summary = tokio::time::interval(LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = summary.tick() => {
                ctx.log_summary();
                continue;
            }
            () = ctx.events.closed() => return,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // E.g. out of file descriptors: wait a little rather than spin.
                if let Some(suppressed) =
                    ctx.allow_log(LogKey::Local("accept failed"), "accept failed")
                {
                    warn!(suppressed, "failover link: accept failed: {err}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !ctx.admit(remote) {
            // Dropping the socket closes it: no TLS, no slot, no task.
            continue;
        }
        pending.retain(|handshake| !handshake.is_finished());
        if pending.len() >= MAX_PENDING_HANDSHAKES
            && let Some(oldest) = pending.pop_front()
        {
            oldest.abort();
            ctx.shared.counters.evicted.fetch_add(1, Ordering::Relaxed);
            ctx.refused(
                remote,
                "handshake evicted",
                format!(
                    "{MAX_PENDING_HANDSHAKES} handshakes in progress: the oldest was dropped for this one"
                ),
            );
        }
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        let halves = halves.clone();
        let handshake = tokio::spawn(async move {
            let accepted = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                accept_half(&ctx, &acceptor, tcp, remote),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Refusal::new(
                    "handshake timeout",
                    format!(
                        "no TLS handshake and preamble from {remote} within {HANDSHAKE_TIMEOUT:?}"
                    ),
                ))
            });
            match accepted {
                Ok(half) => {
                    // The pairing loop only stops when the link stops.
                    let _ = halves.send(half).await;
                }
                Err(refusal) if refusal.class == RefusalClass::WrongDirection => {
                    debug!("failover link: {}", refusal.reason);
                }
                Err(refusal) => ctx.reject(remote, refusal.kind, refusal.reason),
            }
        });
        pending.push_back(handshake.abort_handle());
    }
}

/// TLS handshake (the verifier checks the pin), then the preamble: the dialler sends its
/// channel tag and attempt id, we echo the tag. The echo tells the dialler that we accepted its
/// key: in TLS 1.3 the client finishes its handshake before the server has checked its
/// certificate. A dialler whose key sorts after ours gets [`DIAL_REFUSED`] instead: we dial it.
async fn accept_half(
    ctx: &Ctx,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
) -> Result<Half, Refusal> {
    let _ = tcp.set_nodelay(true);
    let mut stream = match acceptor.accept(tcp).into_fallible().await {
        Ok(stream) => stream,
        Err((err, mut tcp)) => {
            // Let our alert (e.g. "bad certificate") reach the dialler: closing with its bytes
            // unread would reset the connection, and it would log "connection reset", not why.
            let _ = tcp.shutdown().await;
            let mut sink = [0; 1024];
            let drained = async { while matches!(tcp.read(&mut sink).await, Ok(1..)) {} };
            let _ = tokio::time::timeout(ALERT_LINGER, drained).await;
            return Err(Refusal::from_io(ctx, remote, &err));
        }
    };
    let key = peer_key(stream.get_ref().1).ok_or_else(|| {
        Refusal::new(
            "tls error",
            format!("peer {remote} presented no certificate"),
        )
    })?;
    let mut preamble = [0; 9];
    stream
        .read_exact(&mut preamble)
        .await
        .map_err(|err| Refusal::from_io(ctx, remote, &err))?;
    let channel = channel_of_tag(preamble[0]).ok_or_else(|| {
        Refusal::new(
            "bad preamble",
            format!(
                "peer {remote} sent unknown channel tag {:#04x}",
                preamble[0]
            ),
        )
    })?;
    let dials = key < ctx.own;
    let answer = if dials { tag(channel) } else { DIAL_REFUSED };
    let mut attempt = [0; 8];
    attempt.copy_from_slice(&preamble[1..]);
    stream
        .write_all(&[answer])
        .await
        .map_err(|err| Refusal::from_io(ctx, remote, &err))?;
    stream
        .flush()
        .await
        .map_err(|err| Refusal::from_io(ctx, remote, &err))?;
    if !dials {
        let _ = stream.shutdown().await;
        return Err(Refusal {
            kind: "peer should accept",
            reason: format!(
                "peer {remote} (key {key}) dialled, but this node dials it (its key {} sorts first)",
                ctx.own
            ),
            class: RefusalClass::WrongDirection,
        });
    }
    Ok(Half {
        channel,
        attempt: u64::from_be_bytes(attempt),
        stream: TlsStream::Server(stream),
        key,
        remote,
    })
}

/// Joins a control and a data half of the same attempt into a link. A new complete pair
/// replaces the current link (the peer restarted).
async fn pair_loop(ctx: Arc<Ctx>, mut halves: mpsc::Receiver<Half>) {
    let mut waiting: [Option<Half>; 2] = [None, None];
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let half = tokio::select! {
            half = halves.recv() => match half {
                Some(half) => half,
                None => return,
            },
            () = ctx.events.closed() => return,
        };
        let sibling = waiting[half.channel.other().index()].take();
        match sibling {
            Some(sibling) if sibling.attempt == half.attempt => {
                if let Some(previous) = current.take() {
                    ctx.cancel_current(format!(
                        "replaced by a new connection from {}",
                        half.remote
                    ));
                    // Its Down must be queued before the new link's Up.
                    let _ = previous.await;
                }
                let (control, data) = match half.channel {
                    Channel::Control => (half, sibling),
                    Channel::Data => (sibling, half),
                };
                match ctx.install() {
                    Ok(installed) => {
                        current = Some(tokio::spawn(run_link(
                            ctx.clone(),
                            installed,
                            (control.stream, data.stream),
                            control.key,
                            control.remote,
                        )));
                    }
                    Err(err) => ctx.cannot_install(&err),
                }
            }
            // A sibling from another attempt is stale: that attempt failed half-way.
            _ => {
                let slot = half.channel.index();
                waiting[slot] = Some(half);
            }
        }
    }
}

/// Connect, run the link until it ends, back off, repeat; not while a link the peer dialled is
/// up. A node that only probes (see the module's doc) waits the longest backoff every time.
async fn dial_loop(ctx: Arc<Ctx>, connector: TlsConnector) {
    let (max, min) = (ctx.reconnect.1, ctx.reconnect.0);
    let min = if ctx.eager { min } else { max };
    let mut backoff = min;
    loop {
        if ctx.shared.slot().is_none() {
            dial_once(&ctx, &connector, &mut backoff).await;
        }
        // Jitter in [backoff/2, backoff], never under min: two restarted pairs do not dial in
        // lockstep.
        let half = backoff / 2;
        let jitter = half.mul_f64((random_u64() >> 11) as f64 / (1u64 << 53) as f64);
        let delay = (half + jitter).max(min);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.events.closed() => return,
        }
        backoff = (backoff * 2).min(max);
    }
}

/// One dial attempt, and the link it makes until that ends (then the backoff starts over).
async fn dial_once(ctx: &Arc<Ctx>, connector: &TlsConnector, backoff: &mut Duration) {
    let attempt = random_u64();
    let dialled = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        tokio::try_join!(
            dial_half(ctx, connector, Channel::Control, attempt),
            dial_half(ctx, connector, Channel::Data, attempt),
        )
    });
    let result = tokio::select! {
        result = dialled => result,
        () = ctx.events.closed() => return,
    };
    match result {
        Ok(Ok(((control, key), (data, _)))) => match ctx.install() {
            Ok(installed) => {
                run_link(ctx.clone(), installed, (control, data), key, ctx.peer).await;
                *backoff = ctx.reconnect.0;
            }
            Err(err) => ctx.cannot_install(&err),
        },
        Ok(Err(refusal)) => match refusal.class {
            RefusalClass::WrongDirection => debug!("failover link: {}", refusal.reason),
            class => {
                ctx.shared
                    .counters
                    .dial_failures
                    .fetch_add(1, Ordering::Relaxed);
                if class == RefusalClass::Rejected {
                    ctx.reject(ctx.peer, refusal.kind, refusal.reason);
                } else if let Some(suppressed) =
                    ctx.allow_log(LogKey::Local(refusal.kind), refusal.kind)
                {
                    debug!(suppressed, "failover link: {}", refusal.reason);
                }
            }
        },
        Err(_) => {
            ctx.shared
                .counters
                .dial_failures
                .fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = ctx.allow_log(LogKey::Local("dial timeout"), "dial timeout") {
                warn!(
                    suppressed,
                    "failover link: no handshake with {} within {HANDSHAKE_TIMEOUT:?}", ctx.peer
                );
            }
        }
    }
}

/// Connects from [`Ctx::source`] (the peer accepts only our address).
async fn connect(ctx: &Ctx) -> std::io::Result<TcpStream> {
    let remote = ctx.peer;
    let socket = match remote {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(source) = ctx.source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.connect(remote).await
}

async fn dial_half(
    ctx: &Ctx,
    connector: &TlsConnector,
    channel: Channel,
    attempt: u64,
) -> Result<(Stream, Fingerprint), Refusal> {
    let remote = ctx.peer;
    let tcp = connect(ctx).await.map_err(|err| Refusal {
        kind: "connect failed",
        reason: format!("cannot connect to peer {remote}: {err}"),
        class: RefusalClass::Unreachable,
    })?;
    let _ = tcp.set_nodelay(true);
    // The name is not checked (the key is pinned); an IP address also keeps SNI out of the
    // ClientHello.
    let name = rustls::pki_types::ServerName::IpAddress(remote.ip().into());
    let mut stream = connector
        .connect(name, tcp)
        .await
        .map_err(|err| Refusal::from_io(ctx, remote, &err))?;
    let key = peer_key(stream.get_ref().1).ok_or_else(|| {
        Refusal::new(
            "tls error",
            format!("peer {remote} presented no certificate"),
        )
    })?;
    let mut preamble = [0; 9];
    preamble[0] = tag(channel);
    preamble[1..].copy_from_slice(&attempt.to_be_bytes());
    stream
        .write_all(&preamble)
        .await
        .map_err(|err| Refusal::from_io(ctx, remote, &err))?;
    stream
        .flush()
        .await
        .map_err(|err| Refusal::from_io(ctx, remote, &err))?;
    let mut echo = [0; 1];
    stream
        .read_exact(&mut echo)
        .await
        .map_err(|err| Refusal::from_io(ctx, remote, &err))?;
    if echo[0] == DIAL_REFUSED {
        return Err(Refusal {
            kind: "peer dials",
            reason: format!(
                "peer {remote} (key {key}) dials this node: its key sorts before ours ({})",
                ctx.own
            ),
            class: RefusalClass::WrongDirection,
        });
    }
    if echo[0] != tag(channel) {
        return Err(Refusal::new(
            "bad preamble",
            format!(
                "peer {remote} answered the {channel} preamble with {:#04x}",
                echo[0]
            ),
        ));
    }
    Ok((TlsStream::Client(stream), key))
}

fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0; 8];
    // Only jitter and attempt ids depend on this; the clock is an acceptable fallback.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return u64::from(nanos);
    }
    u64::from_be_bytes(bytes)
}
