//! The event reader: a thread that blocks on the event socket, turns the kernel's conntrack events
//! into change ops, and queues them for `poll_changes`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use failoverd_wire::{NodeId, SessionKey, SessionOp, SessionRecord};
use tokio::sync::Notify;

use super::ReplicationFilter;
use super::owner::{OwnerMark, Stamp};
use super::socket::{self, Datagrams, NlSocket};
use super::wire::{self, Entry, MSG_DELETE, MSG_NEW, NLMSG_ERROR, ParseError, Writer};

/// Bound of the change queue, in events: an overflow is an overrun, as ENOBUFS is.
const QUEUE_LIMIT: usize = 1 << 20;

/// Receive slot of the event socket: an event is well under 1 KiB.
const EVENT_SLOT: usize = 4096;

/// An entry another node owns, as far as this backend knows. The kernel stores no owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PeerEntry {
    pub owner: NodeId,
    /// The timeout its owner last reported: what `dump` reports, while the kernel holds a longer
    /// one (see `ConntrackConfig::peer_entry_timeout_secs`).
    pub timeout_secs: u32,
}

type Owners = HashMap<SessionKey, PeerEntry, foldhash::fast::RandomState>;

/// What the reader and the backend share.
pub(super) struct Shared {
    pub state: Mutex<State>,
    /// Signalled when changes become pending; shared with the futures `changed` returns.
    pub notify: Notify,
    pub counters: Counters,
}

pub(super) struct State {
    pub changes: VecDeque<SessionOp>,
    /// Events were lost since the last `poll_changes`.
    pub overrun: bool,
    /// The reader stopped on an error; `poll_changes` reports it.
    pub failed: Option<(io::ErrorKind, String)>,
    /// Entries not owned by the local node; every other entry is.
    pub owners: Owners,
    /// The stamp local entries get: [`Stamp::Local`] on a standby, [`Stamp::None`] on the
    /// active node, whose sessions a takeover moves (see `ConntrackBackend::set_active`).
    pub local_stamp: Stamp,
    /// Local entries whose kernel stamp is not `local_stamp` (made by packets, or taken over
    /// from the peer by local activity): `poll_changes` stamps them before handing on their
    /// changes. Each has its change queued (or an overrun pending), so `has_pending` covers it.
    pub unstamped: Vec<SessionKey>,
}

impl State {
    pub(super) fn has_pending(&self) -> bool {
        !self.changes.is_empty() || self.overrun || self.failed.is_some()
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub events_in: AtomicU64,
    pub events_own: AtomicU64,
    pub events_filtered: AtomicU64,
    pub overruns: AtomicU64,
}

impl Shared {
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                changes: VecDeque::new(),
                overrun: false,
                failed: None,
                owners: Owners::default(),
                local_stamp: Stamp::Local,
                unstamped: Vec::new(),
            }),
            notify: Notify::new(),
            counters: Counters::default(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep going with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running reader; dropping it stops and joins the thread.
pub(super) struct Reader {
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

/// What the reader needs to turn events into ops.
pub(super) struct ReaderSetup {
    pub events: NlSocket,
    /// For lookups of entries an event reported partially.
    pub lookup: NlSocket,
    /// Events stamped with this port id were caused by the backend's own writes.
    pub own_port: u32,
    pub local: NodeId,
    pub owner_mark: OwnerMark,
    pub filter: ReplicationFilter,
    pub shared: Arc<Shared>,
}

impl Reader {
    pub(super) fn spawn(setup: ReaderSetup) -> io::Result<Self> {
        let stop = socket::eventfd()?;
        let stop_fd = stop.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("conntrack-events".into())
            .spawn(move || EventLoop::new(setup).run(stop_fd))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        socket::signal(&self.stop);
        if let Some(thread) = self.thread.take() {
            // The reader only panics on a bug; it has nothing to hand back.
            let _ = thread.join();
        }
    }
}

/// One event, parsed outside the lock.
enum Event {
    Changed(SessionRecord, Stamp),
    Destroyed(SessionKey),
}

struct EventLoop {
    setup: ReaderSetup,
    datagrams: Datagrams,
    lookup: Lookup,
    batch: Vec<Event>,
}

impl EventLoop {
    fn new(setup: ReaderSetup) -> Self {
        Self {
            setup,
            datagrams: Datagrams::new(EVENT_SLOT),
            lookup: Lookup::default(),
            batch: Vec::new(),
        }
    }

    fn run(mut self, stop: std::os::fd::RawFd) {
        let events = self.setup.events.fd();
        loop {
            match socket::wait_readable([events, stop]) {
                Ok([_, true]) => return,
                Ok(_) => {}
                Err(error) => return self.fail(error),
            }
            // Drain what is there, then wait again.
            loop {
                match self.datagrams.recv(events, libc::MSG_DONTWAIT) {
                    Ok(received) => self.handle(received),
                    Err(error) => match error.raw_os_error() {
                        Some(libc::EAGAIN) => break,
                        Some(libc::EINTR) => {}
                        // The socket's buffer overflowed and the kernel dropped events.
                        Some(libc::ENOBUFS) => self.publish(true),
                        _ => return self.fail(error),
                    },
                }
            }
        }
    }

    fn handle(&mut self, received: usize) {
        let mut own = 0;
        let mut lost = false;
        let Self {
            setup,
            datagrams,
            lookup,
            batch,
        } = self;
        batch.clear();
        for i in 0..received {
            for message in wire::messages(datagrams.get(i)) {
                let parsed = match message {
                    Ok(message) if message.port_id == setup.own_port => {
                        own += 1;
                        continue;
                    }
                    Ok(message) => parse(setup, lookup, message.message_type, message.payload),
                    Err(error) => Err(error),
                };
                match parsed {
                    Ok(Some(event)) => batch.push(event),
                    Ok(None) => {}
                    // A change we cannot read is a change lost: resynchronise.
                    Err(_) => lost = true,
                }
            }
        }
        setup
            .shared
            .counters
            .events_own
            .fetch_add(own, Ordering::Relaxed);
        self.publish(lost);
    }

    /// Applies the parsed batch to the shared state: ownership first (local activity makes an
    /// entry local), then the queue, unless an overrun is pending.
    fn publish(&mut self, lost: bool) {
        let (mut reported, mut filtered, mut overruns) = (0, 0, 0);
        let shared = Arc::clone(&self.setup.shared);
        let mut state = shared.lock();
        let was_pending = state.has_pending();
        for event in self.batch.drain(..) {
            let op = match event {
                Event::Changed(record, stamp) => {
                    state.owners.remove(&record.key);
                    let replicated = self.setup.filter.matches(&record.key);
                    if replicated
                        && stamp != state.local_stamp
                        && self.setup.owner_mark != OwnerMark::OFF
                    {
                        state.unstamped.push(record.key);
                    }
                    SessionOp::Upsert(record)
                }
                Event::Destroyed(key) => {
                    let owner = state
                        .owners
                        .remove(&key)
                        .map_or(self.setup.local, |entry| entry.owner);
                    SessionOp::Remove { key, owner }
                }
            };
            if !self.setup.filter.matches(op.key()) {
                filtered += 1;
                continue;
            }
            reported += 1;
            if !state.overrun {
                state.changes.push_back(op);
            }
        }
        if (lost || state.changes.len() > QUEUE_LIMIT) && !state.overrun {
            // Queued events predate the loss: the resync dump covers them.
            state.overrun = true;
            state.changes.clear();
            overruns += 1;
        }
        let now_pending = state.has_pending();
        drop(state);
        // Counted after the state changed, so whoever sees a count sees its events.
        let counters = &shared.counters;
        counters.events_in.fetch_add(reported, Ordering::Relaxed);
        counters
            .events_filtered
            .fetch_add(filtered, Ordering::Relaxed);
        counters.overruns.fetch_add(overruns, Ordering::Relaxed);
        if now_pending && !was_pending {
            shared.notify.notify_one();
        }
    }

    /// The event socket failed for good: report it to `poll_changes` and stop.
    fn fail(&self, error: io::Error) {
        let mut state = self.setup.shared.lock();
        state.failed = Some((error.kind(), format!("conntrack event socket: {error}")));
        drop(state);
        self.setup.shared.notify.notify_one();
    }
}

/// Parses one event message; `None` for messages that are not conntrack events.
fn parse(
    setup: &ReaderSetup,
    lookup: &mut Lookup,
    message_type: u16,
    payload: &[u8],
) -> Result<Option<Event>, ParseError> {
    match message_type {
        MSG_NEW => {
            let entry = wire::parse_entry(payload, setup.local, setup.owner_mark)?;
            if !entry.is_partial() {
                return Ok(Some(Event::Changed(entry.record, entry.stamp)));
            }
            // The event left out state (it reports only what changed): read the whole entry.
            // Gone meanwhile: its DESTROY event follows.
            let key = entry.record.key;
            Ok(lookup
                .get(&setup.lookup, &key, setup.local, setup.owner_mark)?
                .map(|entry| Event::Changed(entry.record, entry.stamp)))
        }
        MSG_DELETE => Ok(Some(Event::Destroyed(wire::parse_key(payload)?))),
        _ => Ok(None),
    }
}

/// Reads single entries on the reader's own socket.
#[derive(Default)]
struct Lookup {
    writer: Writer,
    buf: Vec<u8>,
    seq: u32,
}

impl Lookup {
    /// The entry with this key, `None` if there is none. An I/O error counts as a lost event.
    fn get(
        &mut self,
        socket: &NlSocket,
        key: &SessionKey,
        local: NodeId,
        owner_mark: OwnerMark,
    ) -> Result<Option<Entry>, ParseError> {
        const LOST: ParseError = ParseError("lookup of a partial event failed");
        self.seq = self.seq.wrapping_add(1);
        self.writer.clear();
        self.writer.get(self.seq, key);
        socket.send(self.writer.bytes()).map_err(|_| LOST)?;
        // Sized for the kernel's reply buffer (`NLMSG_DEFAULT_SIZE`).
        self.buf.resize(16 * 1024, 0);
        let mut found = None;
        loop {
            let len = socket::recv_into(socket.fd(), &mut self.buf).map_err(|_| LOST)?;
            for message in wire::messages(&self.buf[..len]) {
                let message = message?;
                if message.seq != self.seq {
                    continue;
                }
                if message.message_type == NLMSG_ERROR {
                    return match wire::error_code(message.payload)? {
                        0 => Ok(found),
                        code if -code == libc::ENOENT => Ok(None),
                        _ => Err(LOST),
                    };
                }
                if message.message_type == MSG_NEW {
                    found = Some(wire::parse_entry(message.payload, local, owner_mark)?);
                }
            }
        }
    }
}
