//! The Linux kernel's connection-tracking table as a [`SessionBackend`], over ctnetlink.
//!
//! # Sockets
//!
//! - a **command** socket writes and deletes in batches: up to 128 ops per `send`,
//!   every request acknowledged and its answer matched to its op by sequence number;
//! - a **dump** socket reads the whole table (both families) for [`dump`](SessionBackend::dump);
//! - an **event** socket, subscribed to the NEW, UPDATE and DESTROY groups with a large receive
//!   buffer, is read by a dedicated thread that queues the local changes for
//!   [`poll_changes`](SessionBackend::poll_changes). That thread also owns a socket of its own to
//!   look up entries that an event reported partially (below).
//!
//! # Ownership and no echo
//!
//! The backend keeps the entries other nodes own in a map, and every entry not in it is local.
//! What must outlive the daemon is also in the kernel entry: the owner stamp, two mark bits
//! ([`OwnerMark`]) that say "this node's" or "the peer's", written with every copy for the peer
//! and onto local entries of a standby (the active node's entries stay unstamped: the peer
//! adopts them if it stops; see [`set_active`](ConntrackBackend::set_active)). Dumps and events
//! report the mark without the stamp. ctnetlink stamps an event with the port id of the socket whose
//! request caused it (0 for the kernel's own changes), so events carrying the command socket's
//! port id are our own writes: they are dropped (no echo), in the kernel by a socket filter on the
//! event socket, so a bulk sync's writes cost the reader nothing. Any other event is local activity: a
//! NEW or UPDATE makes the entry local, a DESTROY is reported with the owner the entry had.
//! At [`open`](ConntrackBackend::open) with a peer, entries stamped "this node's" are local and
//! every other entry already in the table is taken as the peer's: the peer adopted them when
//! this node stopped, its bulk sync re-sends them and the sweep removes the stale ones.
//!
//! # What the kernel does to written entries
//!
//! - **NAT**: an entry is created with the inverted original tuple as its reply tuple and the NAT
//!   as ranges (`CTA_NAT_SRC`/`CTA_NAT_DST`), as conntrackd does: the kernel then computes the
//!   NATed reply tuple and sets the NAT status bits and bindings that make it translate packets.
//!   A NATed reply tuple given as is would be stored without them, and packets would leave
//!   untranslated. An existing entry's tuples and NAT cannot change (the kernel refuses NAT
//!   attributes on an update), so an upsert over an existing entry keeps its reply tuple.
//! - **Status**: CONFIRMED is always sent and EXPECTED/DYING never (the kernel refuses a status
//!   that differs from the entry's in those bits); the NAT, SEQ_ADJUST, TEMPLATE, UNTRACKED and
//!   offload bits are not sent (the kernel ignores them and derives them). SEEN_REPLY and
//!   ASSURED can only be set: an update whose record lacks one the entry has is refused (EBUSY).
//! - **TCP**: every written TCP entry gets `IP_CT_TCP_FLAG_BE_LIBERAL` in both directions, so
//!   window tracking cannot invalidate a connection taken over mid-stream. Dumps report the flags
//!   as the kernel holds them, that flag included.
//! - **Timeouts**: entries owned by another node see no packets here, so they are written with at
//!   least [`ConntrackConfig::peer_entry_timeout_secs`] and re-armed by
//!   [`refresh_peer_entries`](ConntrackBackend::refresh_peer_entries); `dump` reports the timeout
//!   their owner reported, and [`adopt`](SessionBackend::adopt) to the local node writes it back.
//!   The kernel caps a timeout at `INT_MAX` jiffies.
//! - **Labels** are sent only when set: where no ruleset uses `ct label` the kernel refuses any
//!   (ENOSPC on an update) and drops them silently on a create, so a create is followed by a
//!   separate labels update whose refusal is reported. Zero labels are never written, so a copy
//!   keeps labels its record no longer has.
//! - **Helper**: sent when set; the kernel refuses a helper it does not have (EOPNOTSUPP), and
//!   an update cannot give an existing entry a helper.
//! - **Full table**: at `nf_conntrack_max` a create fails with ENOMEM ([`ApplyError::TableFull`]),
//!   after the kernel tried to make room by dropping an entry that is not ASSURED (that drop is a
//!   local delete: its DESTROY event has port id 0). Replacing an entry needs no room.
//! - **Events** report only what changed: an UPDATE caused by a packet carries TCP info only if
//!   the TCP state changed, labels only if they changed, sequence adjustment only if it changed.
//!   An event of a TCP entry without TCP info, or of an entry whose status says it has sequence
//!   adjustment without it, is completed by looking the entry up. Labels cannot be detected as
//!   missing: such an event is reported with zero labels, which are never written, so the peer's
//!   copy keeps its labels.
//! - `nf_conntrack_events` = 2 gives an entry events only if a listener existed when it was
//!   created: entries made while failoverd was down never report updates or their end. Set it
//!   to 1 at boot; `open` only turns 0 into 1.
//!
//! # Not carried
//!
//! - **Expectations** (`IPCTNL_MSG_EXP_*`, the pinholes ALGs such as FTP or SIP open for related
//!   connections): a separate table with its own messages and lifetimes; a related connection
//!   opened after a takeover is picked up by the helper on the new node only if the control
//!   connection's helper is there.
//! - **Flowtable-offloaded flows** (`IPS_OFFLOAD`): the table holds them, but their state lives in
//!   the flowtable: the kernel reports them without timeout and TCP info, and they are replicated
//!   with what it reports, as plain entries.
//! - **Counters and timestamps** (`CTA_COUNTERS_*`, `CTA_TIMESTAMP`): accounting that is
//!   per-node by nature, and would make every packet a replicated change.
//! - **Secmark** (`CTA_SECMARK`/`CTA_SECCTX`): a security label only the node's LSM policy
//!   gives meaning to; ctnetlink cannot set it.
//! - **Synproxy** state (`CTA_SYNPROXY`): per-node sequence numbers and timestamps of a SYN
//!   cookie exchange, meaningless on the other node.
//! - Direction-specific zones (`CTA_TUPLE_ZONE`): read as the entry's zone, written as a zone of
//!   both directions.

mod command;
mod events;
mod owner;
mod socket;
mod sysctl;
mod wire;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use failoverd_core::ReplicationFilter;
use failoverd_wire::{NodeId, SessionKey, SessionOp, SessionRecord};

use self::command::Command;
use self::events::{PeerEntry, Reader, ReaderSetup, Shared};
use self::owner::Stamp;
pub use self::owner::{OwnerMark, OwnerMarkError};
use self::socket::{CONNTRACK_GROUPS, NlSocket};
use self::sysctl::EntryCount;
use self::wire::{MSG_NEW, NLMSG_DONE, NLMSG_ERROR, TCP_FLAG_BE_LIBERAL, Write, Writer, status};
use super::{ApplyError, ApplyReport, BackendError, SessionBackend};

/// Ops per command batch (one `send`; a create with labels takes two requests). Large enough to
/// amortise the system calls, small enough that a batch's answers fit the socket's buffer.
const BATCH_OPS: usize = 128;

/// Receive buffer of the dump socket: the kernel fills dump parts up to the reader's buffer
/// size, at most 32 KiB.
const DUMP_BUFFER: usize = 64 * 1024;

/// How a [`ConntrackBackend`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Receive buffer of the event socket (`SO_RCVBUFFORCE`, or `SO_RCVBUF` capped at
    /// `net.core.rmem_max` when that is refused). Events beyond it are lost (ENOBUFS) and
    /// reported as an overrun. Default 64 MiB.
    pub event_buffer_bytes: usize,
    /// The least timeout written for entries another node owns: they see no packets here, and
    /// would otherwise expire on their own clock. Default 3600 s.
    pub peer_entry_timeout_secs: u32,
    /// The mark bits that record each entry's owner in the kernel, so that a restarted daemon
    /// knows its own entries from its copies of the peer's. Default bits 30 and 31.
    pub owner_mark: OwnerMark,
    /// Which sessions are replicated: applies to local change events and to dumps (so to
    /// bulk syncs); the core applies the same filter to the peer's ops.
    pub filter: ReplicationFilter,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        Self {
            event_buffer_bytes: failoverd_core::defaults::EVENT_BUFFER_BYTES,
            peer_entry_timeout_secs: failoverd_core::defaults::PEER_ENTRY_TIMEOUT_SECS,
            owner_mark: OwnerMark::DEFAULT,
            filter: ReplicationFilter::default(),
        }
    }
}

/// Counters of a [`ConntrackBackend`], since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackStats {
    /// Local changes the kernel reported (events of other sockets and of the kernel that pass
    /// the filter), including those an overrun discarded.
    pub events_in: u64,
    /// Events caused by our own writes that reached the reader and were dropped there (no
    /// echo). The event socket's filter drops them in the kernel, so this stays 0 unless a
    /// message ever slips past it.
    pub events_own: u64,
    /// Local changes not replicated because of the filter.
    pub events_filtered: u64,
    /// Sends of write batches on the command socket.
    pub batches: u64,
    /// Entries written or deleted (apply, sweep, adopt, refresh).
    pub ops_out: u64,
    /// Ops the kernel refused: failed ops of `apply` and failed writes of sweep, adopt and
    /// refresh.
    pub apply_errors: u64,
    /// Times change events were lost (ENOBUFS, a full queue, an unreadable event); each is
    /// reported once by `poll_changes`.
    pub overruns: u64,
    /// Dumps served.
    pub dumps: u64,
    /// Peer-owned entries whose timeout `refresh_peer_entries` re-armed.
    pub refreshed: u64,
    /// Updates the kernel refused (EBUSY) because the entry has SEEN_REPLY or ASSURED and the
    /// record not, written again keeping those bits.
    pub status_kept: u64,
    /// Entries other nodes own, now (the rest of the table is the local node's).
    pub peer_entries: u64,
}

/// The kernel's conntrack table of this network namespace: see the [module docs](self).
///
/// Needs CAP_NET_ADMIN. The sockets belong to the network namespace of the thread that opens
/// the backend, and so do `count` and the sysctls it reads.
pub struct ConntrackBackend {
    local: NodeId,
    config: ConntrackConfig,
    command: Command,
    dumper: Dumper,
    shared: Arc<Shared>,
    /// Stopped and joined on drop.
    _reader: Reader,
    entry_count: EntryCount,
    events_sysctl_changed: Option<(u64, u64)>,
    counters: Counters,
    plan: Vec<Planned>,
    batch_keys: HashSet<SessionKey, foldhash::fast::RandomState>,
}

#[derive(Default)]
struct Counters {
    ops_out: u64,
    apply_errors: u64,
    dumps: u64,
    refreshed: u64,
    status_kept: u64,
}

/// One op of a batch and what is sent for it.
#[derive(Clone, Copy)]
struct Planned {
    index: usize,
    action: Action,
    /// Index of its (first) request in the batch.
    request: usize,
}

#[derive(Clone, Copy)]
enum Action {
    /// Create, for an entry the backend does not know to be there (EEXIST: retried as an
    /// update); followed by a labels request when `labels`.
    Create {
        labels: bool,
    },
    /// Update, for an entry the backend wrote for another node (ENOENT: retried as a create):
    /// a bulk sync re-sends entries that are mostly there already. `status_kept` is OR-ed into
    /// the record's status (EBUSY: retried keeping the bits the kernel never clears).
    Update {
        labels: bool,
        status_kept: u32,
    },
    Delete,
    /// A remove naming another owner than the entry's: looked up, to tell `skipped_not_owner`
    /// from `not_found`.
    Probe,
    Invalid(&'static str),
}

/// What a batch's answers settled, beyond the report.
#[derive(Default)]
struct Settled {
    /// Upserts stored, by op index.
    stored: Vec<usize>,
    /// Keys deleted or found missing.
    gone: Vec<SessionKey>,
    /// Upserts to send again the other way (create/update).
    retries: Vec<Planned>,
}

impl Settled {
    fn store(&mut self, report: &mut ApplyReport, index: usize) {
        report.applied += 1;
        self.stored.push(index);
    }
}

impl ConntrackBackend {
    /// Opens the sockets, starts the event reader, and, when `peer` is given, records every entry
    /// already in the table as the peer's, except those whose owner stamp says they are the
    /// local node's. Turns `net.netfilter.nf_conntrack_events` on if it is
    /// 0 (see [`events_sysctl_changed`](Self::events_sysctl_changed)).
    pub fn open(
        config: ConntrackConfig,
        local: NodeId,
        peer: Option<NodeId>,
    ) -> Result<Self, BackendError> {
        let events_sysctl_changed = sysctl::enable_events()?;
        let entry_count = EntryCount::open()?;
        let command = Command::open()?;
        let mut dumper = Dumper::open()?;
        let events = NlSocket::open()?;
        events.set_receive_buffer(config.event_buffer_bytes)?;
        events.drop_port(command.port_id())?;
        events.subscribe(&CONNTRACK_GROUPS)?;
        let shared = Arc::new(Shared::new());
        if let Some(peer) = peer.filter(|&peer| peer != local) {
            // Between the subscription and the reader's start, events wait in the socket: a
            // change made during this dump is read after it, and makes its entry local.
            let records = dumper.dump(&config.filter, local, config.owner_mark)?;
            let mut state = shared.lock();
            // Unstamped entries were made while no failoverd ran here: the peer, which adopted
            // this node's sessions when it stopped, re-sends what is live.
            let theirs = records.into_iter().filter(|(_, s)| *s != Stamp::Local);
            for (record, _) in theirs {
                let entry = PeerEntry {
                    owner: peer,
                    timeout_secs: record.timeout_secs,
                };
                state.owners.insert(record.key, entry);
            }
        }
        let reader = Reader::spawn(ReaderSetup {
            events,
            lookup: NlSocket::open()?,
            own_port: command.port_id(),
            local,
            owner_mark: config.owner_mark,
            filter: config.filter.clone(),
            shared: Arc::clone(&shared),
        })?;
        Ok(Self {
            local,
            config,
            command,
            dumper,
            shared,
            _reader: reader,
            entry_count,
            events_sysctl_changed,
            counters: Counters::default(),
            plan: Vec::with_capacity(BATCH_OPS),
            batch_keys: HashSet::default(),
        })
    }

    /// The counters.
    pub fn stats(&self) -> ConntrackStats {
        let events = &self.shared.counters;
        ConntrackStats {
            events_in: events.events_in.load(Ordering::Relaxed),
            events_own: events.events_own.load(Ordering::Relaxed),
            events_filtered: events.events_filtered.load(Ordering::Relaxed),
            batches: self.command.batches,
            ops_out: self.counters.ops_out,
            apply_errors: self.counters.apply_errors,
            overruns: events.overruns.load(Ordering::Relaxed),
            dumps: self.counters.dumps,
            refreshed: self.counters.refreshed,
            status_kept: self.counters.status_kept,
            peer_entries: self.shared.lock().owners.len() as u64,
        }
    }

    /// The configuration the backend was opened with.
    pub fn config(&self) -> &ConntrackConfig {
        &self.config
    }

    /// `Some((before, after))` when `open` changed `net.netfilter.nf_conntrack_events`, for the
    /// daemon to log.
    pub fn events_sysctl_changed(&self) -> Option<(u64, u64)> {
        self.events_sysctl_changed
    }

    /// Tells the backend whether this node is active. The active node's entries are the active
    /// role's: if it stops, the peer takes over and adopts them, so they carry no owner stamp
    /// and a restart leaves them to the peer's bulk sync (the entries the peer ended meanwhile
    /// are swept, not brought back). A standby's own entries (its SSH, BGP, monitoring) stay
    /// its own when it stops: they are stamped local, and a restart keeps them. A change
    /// restamps the local entries (a dump).
    pub fn set_active(&mut self, active: bool) -> Result<(), BackendError> {
        let stamp = if active { Stamp::None } else { Stamp::Local };
        let changed = std::mem::replace(&mut self.shared.lock().local_stamp, stamp) != stamp;
        if changed && self.config.owner_mark != OwnerMark::OFF {
            self.table()?;
        }
        Ok(())
    }

    /// Re-arms the timeout of every peer-owned entry to at least
    /// [`peer_entry_timeout_secs`](ConntrackConfig::peer_entry_timeout_secs) (called by the daemon
    /// every `peer_entry_timeout_secs / 3`), and returns how many. Entries that are gone are
    /// forgotten.
    pub fn refresh_peer_entries(&mut self) -> Result<usize, BackendError> {
        let least = self.config.peer_entry_timeout_secs;
        let entries: Vec<(SessionKey, u32)> = {
            let state = self.shared.lock();
            let owners = state.owners.iter();
            owners
                .map(|(key, entry)| (*key, entry.timeout_secs.max(least)))
                .collect()
        };
        let mut refreshed = 0;
        let mut gone = Vec::new();
        self.batched(
            &entries,
            |w, seq, (key, timeout)| w.timeout(seq, key, *timeout),
            |(key, _), errno| match errno {
                0 => refreshed += 1,
                libc::ENOENT => gone.push(*key),
                _ => {}
            },
        )?;
        self.forget(&gone);
        self.counters.refreshed += refreshed as u64;
        Ok(refreshed)
    }

    /// The conntrack sysctls that matter for a pair, read from `/proc/sys/net/netfilter` of this
    /// network namespace: `None` where a file is missing (`nf_conntrack_helper` is gone from
    /// recent kernels).
    pub fn kernel_settings() -> Vec<(&'static str, Option<u64>)> {
        sysctl::SETTINGS
            .iter()
            .map(|&name| (name, sysctl::read(name)))
            .collect()
    }

    /// Runs `encode` for every item in batches, and hands each item's errno (0 for success) to
    /// `done`. Counts writes and failures other than ENOENT; fails only on socket errors.
    fn batched<T>(
        &mut self,
        items: &[T],
        mut encode: impl FnMut(&mut Writer, u32, &T),
        mut done: impl FnMut(&T, i32),
    ) -> Result<(), BackendError> {
        for chunk in items.chunks(BATCH_OPS) {
            self.command.begin();
            for item in chunk {
                self.command.push(|w, seq| encode(w, seq, item));
            }
            self.command.execute()?;
            for (request, item) in chunk.iter().enumerate() {
                // Every request is answered when `execute` succeeds.
                let errno = self.command.answer(request).errno.unwrap_or(libc::EIO);
                match errno {
                    0 => self.counters.ops_out += 1,
                    libc::ENOENT => {}
                    _ => self.counters.apply_errors += 1,
                }
                done(item, errno);
            }
        }
        Ok(())
    }

    fn forget(&self, keys: &[SessionKey]) {
        if !keys.is_empty() {
            let mut state = self.shared.lock();
            for key in keys {
                state.owners.remove(key);
            }
        }
    }

    /// Plans the batch that starts at `ops[start]`: up to [`BATCH_OPS`] ops with distinct keys,
    /// so that an op retried after the batch cannot overtake a later op on the same key.
    fn plan_batch(&mut self, ops: &[SessionOp], start: usize) -> usize {
        self.plan.clear();
        self.batch_keys.clear();
        let shared = Arc::clone(&self.shared);
        let state = shared.lock();
        for (index, op) in ops.iter().enumerate().skip(start) {
            if self.plan.len() == BATCH_OPS || !self.batch_keys.insert(*op.key()) {
                break;
            }
            let action = match op {
                SessionOp::Upsert(record) => {
                    let labels = record.labels != [0; 16];
                    match wire::check_writable(record) {
                        Err(why) => Action::Invalid(why),
                        Ok(()) if state.owners.contains_key(&record.key) => Action::Update {
                            labels,
                            status_kept: 0,
                        },
                        Ok(()) => Action::Create { labels },
                    }
                }
                SessionOp::Remove { key, owner } => {
                    let current = state.owners.get(key).map_or(self.local, |e| e.owner);
                    if current == *owner {
                        Action::Delete
                    } else {
                        Action::Probe
                    }
                }
                SessionOp::RemoveAny { .. } => Action::Delete,
            };
            self.plan.push(Planned {
                index,
                action,
                request: 0,
            });
        }
        self.plan.len()
    }

    /// Sends the planned batch, retries the upserts that found the entry (not) there the other
    /// way, accounts for every op in `report`, and records the new owners.
    fn run_batch(&mut self, ops: &[SessionOp], report: &mut ApplyReport) {
        let mut plan = std::mem::take(&mut self.plan);
        let mut settled = Settled::default();
        let sent = self.send(ops, &mut plan);
        self.settle(ops, &plan, &sent, true, report, &mut settled);
        // At most two more passes: create -> update (EEXIST) -> update keeping the status bits
        // the kernel never clears (EBUSY); each retry leads to a kind that is not retried so.
        for _ in 0..2 {
            if settled.retries.is_empty() {
                break;
            }
            let mut retries = std::mem::take(&mut settled.retries);
            let sent = self.send(ops, &mut retries);
            self.settle(ops, &retries, &sent, false, report, &mut settled);
        }
        self.plan = plan;
        let mut state = self.shared.lock();
        for index in settled.stored {
            if let SessionOp::Upsert(record) = &ops[index] {
                if record.owner == self.local {
                    state.owners.remove(&record.key);
                } else {
                    let entry = PeerEntry {
                        owner: record.owner,
                        timeout_secs: record.timeout_secs,
                    };
                    state.owners.insert(record.key, entry);
                }
            }
        }
        for key in settled.gone {
            state.owners.remove(&key);
        }
    }

    /// Writes the requests of `plan` into one batch and sends it.
    fn send(&mut self, ops: &[SessionOp], plan: &mut [Planned]) -> io::Result<()> {
        let (local, least) = (self.local, self.config.peer_entry_timeout_secs);
        let stamps = (self.config.owner_mark, self.shared.lock().local_stamp);
        self.command.begin();
        for planned in plan {
            let op = &ops[planned.index];
            planned.request = match (planned.action, op) {
                (Action::Create { labels }, SessionOp::Upsert(record)) => {
                    let write = write_of(record, local, least, stamps);
                    let request = self.command.push(|w, seq| w.create(seq, &write));
                    if labels {
                        self.command
                            .push(|w, seq| w.labels(seq, &record.key, &record.labels));
                    }
                    request
                }
                (Action::Update { status_kept, .. }, SessionOp::Upsert(record)) => {
                    let write = Write {
                        status_kept,
                        ..write_of(record, local, least, stamps)
                    };
                    self.command.push(|w, seq| w.update(seq, &write))
                }
                (Action::Delete, _) => self.command.push(|w, seq| w.delete(seq, op.key())),
                (Action::Probe, _) => self.command.push(|w, seq| w.get(seq, op.key())),
                _ => 0,
            };
        }
        self.command.execute()
    }

    /// Accounts for the answers to `plan`. On the first pass an upsert that found the entry
    /// there (create: EEXIST) or not (update: ENOENT) is queued for a retry the other way.
    fn settle(
        &mut self,
        ops: &[SessionOp],
        plan: &[Planned],
        sent: &io::Result<()>,
        first_pass: bool,
        report: &mut ApplyReport,
        settled: &mut Settled,
    ) {
        for planned in plan {
            let op = &ops[planned.index];
            let answer = self.command.answer(planned.request);
            let mut fail = |error: ApplyError| report.failed.push((planned.index, error));
            let retry = |action| Planned { action, ..*planned };
            match (planned.action, answer.errno) {
                (Action::Invalid(why), _) => fail(ApplyError::Refused(why.into())),
                (Action::Create { labels }, Some(0)) => {
                    self.counters.ops_out += 1;
                    let labelled = labels.then(|| self.command.answer(planned.request + 1));
                    match labelled.map(|answer| answer.errno) {
                        Some(Some(0)) | None => settled.store(report, planned.index),
                        Some(errno) => fail(refused_or_lost(errno, "setting labels", sent)),
                    }
                }
                (Action::Update { .. }, Some(0)) => {
                    self.counters.ops_out += 1;
                    settled.store(report, planned.index);
                }
                (Action::Create { labels }, Some(libc::EEXIST)) if first_pass => {
                    settled.retries.push(retry(Action::Update {
                        labels,
                        status_kept: 0,
                    }));
                }
                (Action::Update { labels, .. }, Some(libc::ENOENT)) if first_pass => {
                    settled.retries.push(retry(Action::Create { labels }));
                }
                // The entry saw a reply (or became assured) that the record has not: traffic
                // reached this node while the record's writer did not know (an answer through
                // this node after its daemon died, a copy claimed before its reply). The kernel
                // never clears those bits; keeping them loses nothing of the record.
                (
                    Action::Update {
                        labels,
                        status_kept: 0,
                    },
                    Some(libc::EBUSY),
                ) => {
                    self.counters.status_kept += 1;
                    settled.retries.push(retry(Action::Update {
                        labels,
                        status_kept: status::SET_ONLY,
                    }));
                }
                // There for one request and not for the other: the original tuple is free but
                // the reply tuple is another entry's (or the entry expired in between).
                (Action::Create { .. }, Some(libc::EEXIST))
                | (Action::Update { .. }, Some(libc::ENOENT)) => fail(ApplyError::Refused(
                    "errno 17 (EEXIST) on create, errno 2 (ENOENT) on update: the reply tuple \
                     belongs to another entry"
                        .into(),
                )),
                (Action::Create { .. }, Some(libc::ENOMEM)) => fail(ApplyError::TableFull),
                (Action::Create { .. }, errno) => fail(refused_or_lost(errno, "create", sent)),
                (Action::Update { .. }, errno) => fail(refused_or_lost(errno, "update", sent)),
                (Action::Delete, Some(0)) => {
                    self.counters.ops_out += 1;
                    report.applied += 1;
                    settled.gone.push(*op.key());
                }
                (Action::Delete | Action::Probe, Some(libc::ENOENT)) => {
                    report.not_found += 1;
                    settled.gone.push(*op.key());
                }
                (Action::Delete, errno) => fail(refused_or_lost(errno, "delete", sent)),
                (Action::Probe, Some(0)) if answer.found => report.skipped_not_owner += 1,
                (Action::Probe, errno) => fail(refused_or_lost(errno, "lookup", sent)),
            }
        }
    }

    /// The table as the kernel has it (filtered), owners and reported timeouts filled in. Local
    /// entries the kernel does not hold as stamped local (their events were lost) are stamped.
    fn table(&mut self) -> Result<Vec<SessionRecord>, BackendError> {
        let dumped = self
            .dumper
            .dump(&self.config.filter, self.local, self.config.owner_mark)?;
        let mut unstamped = Vec::new();
        let state = self.shared.lock();
        let records = dumped
            .into_iter()
            .map(|(mut record, stamp)| {
                if let Some(entry) = state.owners.get(&record.key) {
                    record.owner = entry.owner;
                    record.timeout_secs = entry.timeout_secs;
                } else if stamp != state.local_stamp {
                    unstamped.push(record.key);
                }
                record
            })
            .collect();
        drop(state);
        self.stamp_local(&unstamped)?;
        Ok(records)
    }

    /// Stamps these entries as local entries are stamped now, but those that became another
    /// node's meanwhile (a write for the peer since the event that reported them).
    fn stamp_local(&mut self, keys: &[SessionKey]) -> Result<(), BackendError> {
        let owner_mark = self.config.owner_mark;
        if keys.is_empty() || owner_mark == OwnerMark::OFF {
            return Ok(());
        }
        let (keys, local_stamp): (Vec<SessionKey>, Stamp) = {
            let state = self.shared.lock();
            let local = keys.iter().filter(|key| !state.owners.contains_key(*key));
            (local.copied().collect(), state.local_stamp)
        };
        let stamp = (owner_mark.bits(local_stamp), owner_mark.mask());
        self.batched(
            &keys,
            |w, seq, key| w.stamp(seq, key, stamp, None),
            |_, _| {},
        )
    }
}

/// How a record is written: entries of other nodes with at least the peer timeout, TCP entries
/// liberal, the owner stamped in the mark (in the same request, so no entry exists unstamped);
/// the local node's with `local_stamp`.
fn write_of(
    record: &SessionRecord,
    local: NodeId,
    least_peer_timeout: u32,
    (owner_mark, local_stamp): (OwnerMark, Stamp),
) -> Write<'_> {
    let (timeout_secs, stamp) = if record.owner == local {
        (record.timeout_secs, local_stamp)
    } else {
        (record.timeout_secs.max(least_peer_timeout), Stamp::Peer)
    };
    Write {
        record,
        timeout_secs,
        mark: (record.mark & !owner_mark.mask()) | owner_mark.bits(stamp),
        tcp_flags: TCP_FLAG_BE_LIBERAL,
        status_kept: 0,
    }
}

/// A refusal, or (`errno` `None`) the socket error that left the request unanswered.
fn refused_or_lost(errno: Option<i32>, what: &str, sent: &io::Result<()>) -> ApplyError {
    match errno {
        Some(errno) => refused(errno, what),
        None => ApplyError::Refused(match sent {
            Err(error) => format!("{what}: no answer from the kernel: {error}"),
            Ok(()) => format!("{what}: no answer from the kernel"),
        }),
    }
}

fn refused(errno: i32, what: &str) -> ApplyError {
    let hint = match errno {
        libc::ENOSPC => ": connection labels are not enabled here (no ruleset uses `ct label`)",
        libc::EOPNOTSUPP => ": helper not available, or a change the kernel cannot make",
        libc::EBUSY => {
            ": the entry has status bits (SEEN_REPLY, ASSURED) or a helper the record lacks"
        }
        libc::EINVAL => ": an attribute was rejected",
        _ => "",
    };
    ApplyError::Refused(format!(
        "errno {errno} ({}) on {what}{hint}",
        errno_name(errno)
    ))
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ETIME => "ETIME",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOBUFS => "ENOBUFS",
        _ => "unknown",
    }
}

impl SessionBackend for ConntrackBackend {
    fn local_node(&self) -> NodeId {
        self.local
    }

    fn dump(&mut self) -> Result<Vec<SessionRecord>, BackendError> {
        let records = self.table()?;
        self.counters.dumps += 1;
        Ok(records)
    }

    fn apply(&mut self, ops: &[SessionOp]) -> ApplyReport {
        let mut report = ApplyReport::default();
        let mut next = 0;
        while next < ops.len() {
            next += self.plan_batch(ops, next);
            self.run_batch(ops, &mut report);
        }
        // Retried ops are settled after their batch: restore batch order.
        report.failed.sort_by_key(|(index, _)| *index);
        self.counters.apply_errors += report.failed.len() as u64;
        report
    }

    fn poll_changes(
        &mut self,
        out: &mut Vec<SessionOp>,
        max: usize,
    ) -> Result<usize, BackendError> {
        // The changes and the stamps they need are taken together, and stamped before the
        // changes are handed on: a change the peer holds is then one a restart finds stamped.
        // An event that arrives meanwhile is left whole (change and stamp) for the next poll,
        // which its change wakes. Stamped on the next poll instead, the last changes of a burst
        // stayed unstamped until some later event (a restart then swept them as the peer's).
        let (changes, unstamped) = {
            let mut state = self.shared.lock();
            if let Some((kind, message)) = &state.failed {
                return Err(BackendError::Io(io::Error::new(*kind, message.clone())));
            }
            if state.overrun {
                state.overrun = false;
                state.changes.clear();
                // The resync's dump stamps what is left unstamped.
                state.unstamped.clear();
                return Err(BackendError::Overrun { lost: None });
            }
            let n = max.min(state.changes.len());
            let changes: Vec<SessionOp> = state.changes.drain(..n).collect();
            (changes, std::mem::take(&mut state.unstamped))
        };
        if let Err(err) = self.stamp_local(&unstamped) {
            // A socket error leaves the changes queued, in order, with their stamps.
            let mut state = self.shared.lock();
            for op in changes.into_iter().rev() {
                state.changes.push_front(op);
            }
            state.unstamped.extend(unstamped);
            return Err(err);
        }
        let n = changes.len();
        out.extend(changes);
        Ok(n)
    }

    fn changed(&self) -> impl Future<Output = ()> + Send + 'static {
        // As `MemoryBackend`: pending changes are checked now; any later one notifies (a permit
        // is kept if the future has not been polled yet).
        let pending = self.shared.lock().has_pending();
        let shared = Arc::clone(&self.shared);
        async move {
            if !pending {
                shared.notify.notified().await;
            }
        }
    }

    fn sweep(&mut self, owner: NodeId, keep: &HashSet<SessionKey>) -> Result<usize, BackendError> {
        let stale: Vec<SessionKey> = if owner == self.local {
            // Local entries are the ones not in the map: only a dump finds them.
            let table = self.table()?;
            let local = table.into_iter().filter(|r| r.owner == owner);
            local
                .map(|r| r.key)
                .filter(|key| !keep.contains(key))
                .collect()
        } else {
            let state = self.shared.lock();
            let owned = state.owners.iter().filter(|(_, e)| e.owner == owner);
            owned
                .map(|(key, _)| *key)
                .filter(|key| !keep.contains(key))
                .collect()
        };
        let mut swept = 0;
        self.batched(
            &stale,
            |w, seq, key| w.delete(seq, key),
            |_, errno| swept += usize::from(errno == 0),
        )?;
        self.forget(&stale);
        Ok(swept)
    }

    fn adopt(&mut self, from: NodeId, to: NodeId) -> Result<usize, BackendError> {
        if from == to {
            return Ok(0);
        }
        if from == self.local {
            // Local entries are the ones not in the map: only a dump finds them. Their kernel
            // timeouts are left; `refresh_peer_entries` re-arms them.
            let table = self.table()?;
            let mut state = self.shared.lock();
            let mut adopted = Vec::new();
            for record in table.into_iter().filter(|r| r.owner == from) {
                let entry = PeerEntry {
                    owner: to,
                    timeout_secs: record.timeout_secs,
                };
                state.owners.insert(record.key, entry);
                adopted.push(record.key);
            }
            drop(state);
            let owner_mark = self.config.owner_mark;
            let stamp = (owner_mark.bits(Stamp::Peer), owner_mark.mask());
            if owner_mark != OwnerMark::OFF {
                self.batched(
                    &adopted,
                    |w, seq, key| w.stamp(seq, key, stamp, None),
                    |_, _| {},
                )?;
            }
            return Ok(adopted.len());
        }
        let mut state = self.shared.lock();
        let owned = state.owners.iter_mut().filter(|(_, e)| e.owner == from);
        if to != self.local {
            let mut adopted = 0;
            for (_, entry) in owned {
                entry.owner = to;
                adopted += 1;
            }
            return Ok(adopted);
        }
        // Ours now: they leave the map, and get back the timeout their owner reported instead
        // of the long one they were written with. A node adopts when it becomes active: they
        // are the active role's (see `set_active`), unstamped.
        let entries: Vec<(SessionKey, u32)> = owned.map(|(k, e)| (*k, e.timeout_secs)).collect();
        for (key, _) in &entries {
            state.owners.remove(key);
        }
        drop(state);
        let mut adopted = 0;
        let owner_mark = self.config.owner_mark;
        let stamp = (owner_mark.bits(Stamp::None), owner_mark.mask());
        self.batched(
            &entries,
            |w, seq, (key, timeout)| w.stamp(seq, key, stamp, Some(*timeout)),
            |_, errno| adopted += usize::from(errno != libc::ENOENT),
        )?;
        Ok(adopted)
    }

    fn count(&self) -> Result<usize, BackendError> {
        Ok(self.entry_count.read()?)
    }
}

// Hand-written so that a stray `{:?}` prints a summary, not the ownership map.
impl fmt::Debug for ConntrackBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConntrackBackend")
            .field("local", &self.local)
            .field("command_port", &self.command.port_id())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The dump socket.
struct Dumper {
    socket: NlSocket,
    writer: Writer,
    buf: Vec<u8>,
    seq: u32,
}

impl Dumper {
    fn open() -> io::Result<Self> {
        Ok(Self {
            socket: NlSocket::open()?,
            writer: Writer::default(),
            buf: vec![0; DUMP_BUFFER],
            seq: 0,
        })
    }

    /// Every entry of both families that passes `filter`, owned by `local`, with its owner
    /// stamp. A malformed entry fails the dump, after the rest of it is read (the socket takes
    /// no new dump before).
    fn dump(
        &mut self,
        filter: &ReplicationFilter,
        local: NodeId,
        owner_mark: OwnerMark,
    ) -> io::Result<Vec<(SessionRecord, Stamp)>> {
        self.seq = self.seq.wrapping_add(1);
        self.writer.clear();
        self.writer.dump(self.seq);
        self.socket.send(self.writer.bytes())?;
        let mut records = Vec::new();
        let mut malformed: Option<wire::ParseError> = None;
        loop {
            let len = socket::recv_into(self.socket.fd(), &mut self.buf)?;
            for message in wire::messages(&self.buf[..len]) {
                let message = message?;
                if message.seq != self.seq {
                    continue;
                }
                match message.message_type {
                    NLMSG_DONE | NLMSG_ERROR => {
                        return match (wire::error_code(message.payload)?, malformed) {
                            (0, None) => Ok(records),
                            (0, Some(error)) => Err(error.into()),
                            (code, _) => Err(io::Error::from_raw_os_error(-code)),
                        };
                    }
                    MSG_NEW => match wire::parse_entry(message.payload, local, owner_mark) {
                        Ok(entry) if filter.matches(&entry.record.key) => {
                            records.push((entry.record, entry.stamp))
                        }
                        Ok(_) => {}
                        Err(error) => malformed = Some(error),
                    },
                    _ => {}
                }
            }
        }
    }
}
