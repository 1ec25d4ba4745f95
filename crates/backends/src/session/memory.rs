//! The memory backend: a userspace session table, failoverd's embedded default.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use failoverd_wire::{NodeId, SessionKey, SessionOp, SessionRecord};
use tokio::sync::Notify;

use super::{ApplyError, ApplyReport, BackendError, LocalError, SessionBackend};

/// Default bound of [`MemoryBackend`]'s change queue, in events.
///
/// Large enough to absorb a burst of a million local changes while the daemon is busy (a queued
/// event costs 160 bytes, allocated only while queued), small enough that a stalled
/// consumer ends in an overrun and a resync instead of unbounded memory, as a netlink socket does.
pub const DEFAULT_QUEUE_LIMIT: usize = 1 << 20;

/// A session table in userspace memory: the embedded default backend, used by the demo, the
/// simulation and unprivileged runs.
///
/// It behaves as the [`SessionBackend`] contract says and as the kernel table does where the
/// contract leaves room: an optional size limit refuses new entries like `nf_conntrack_max`, and
/// the change queue is bounded and overflows like a netlink socket (events dropped and counted,
/// then [`BackendError::Overrun`] once).
///
/// Local activity is simulated by calling [`create_local`](Self::create_local),
/// [`update_local`](Self::update_local) and [`delete_local`](Self::delete_local).
///
/// It does not age entries: an entry's timeout is data that is stored, replicated and reported,
/// never counted down, and an entry stays until something deletes it.
///
/// # Performance
///
/// Records are stored densely, once, with a hash index from key to position: about 270 bytes
/// per session at a million, growth slack included. `apply` is O(ops) and allocates nothing per op beyond the table's own growth:
/// records are plain data, copied in place. A dump is one copy of the records. Measure with
/// `cargo test -p failoverd-backends --release --lib -- --ignored --nocapture apply_rate`.
pub struct MemoryBackend {
    local: NodeId,
    table: Table,
    capacity_limit: Option<usize>,
    /// Injected refusals: how many more ops `apply` refuses, and with what.
    refusals: Option<(usize, ApplyError)>,
    changes: VecDeque<SessionOp>,
    queue_limit: usize,
    /// `Some(dropped)` while an overrun is waiting to be reported: events dropped since.
    overrun: Option<u64>,
    /// Signalled when changes become pending; shared with the futures `changed` returns.
    notify: Arc<Notify>,
    stats: MemoryStats,
}

/// Counters of a [`MemoryBackend`], since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Peer ops that changed the table (upserts stored, removes that deleted their entry).
    pub applied: u64,
    /// Entries deleted by peer removes (a subset of `applied`).
    pub removed: u64,
    /// Peer removes of keys not in the table.
    pub not_found: u64,
    /// Peer removes skipped because another node owns the entry.
    pub skipped_not_owner: u64,
    /// Ops refused: new entries because the table was full, by `apply` or by a local create,
    /// and ops refused by injection ([`MemoryBackend::refuse_next_ops`]).
    pub refused: u64,
    /// Entries deleted by sweeps.
    pub swept: u64,
    /// Entries that changed owner by adoption.
    pub adopted: u64,
    /// Change events produced by local activity.
    pub events_emitted: u64,
    /// Of `events_emitted`, those never delivered: dropped by a full queue or discarded by an
    /// overrun.
    pub events_lost: u64,
    /// Overruns reported by `poll_changes`.
    pub overruns: u64,
}

impl MemoryBackend {
    /// An empty table for node `local`, without a size limit, with a change queue of
    /// [`DEFAULT_QUEUE_LIMIT`] events.
    pub fn new(local: NodeId) -> Self {
        Self {
            local,
            table: Table::default(),
            capacity_limit: None,
            refusals: None,
            changes: VecDeque::new(),
            queue_limit: DEFAULT_QUEUE_LIMIT,
            overrun: None,
            notify: Arc::new(Notify::new()),
            stats: MemoryStats::default(),
        }
    }

    /// Refuses new entries once the table holds `entries` (see
    /// [`set_capacity_limit`](Self::set_capacity_limit)).
    pub fn with_capacity_limit(mut self, entries: usize) -> Self {
        self.capacity_limit = Some(entries);
        self
    }

    /// Bounds the change queue at `events`; events beyond it are lost and reported as an
    /// overrun.
    pub fn with_queue_limit(mut self, events: usize) -> Self {
        self.queue_limit = events;
        self
    }

    /// Sets (`Some`) or lifts (`None`) the size limit. As with `nf_conntrack_max`, a full table
    /// refuses new entries but still replaces and deletes existing ones, and a limit lowered below
    /// the current size evicts nothing.
    pub fn set_capacity_limit(&mut self, entries: Option<usize>) {
        self.capacity_limit = entries;
    }

    /// The size limit, if any.
    pub fn capacity_limit(&self) -> Option<usize> {
        self.capacity_limit
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.records.is_empty()
    }

    /// The entry with this key.
    pub fn get(&self, key: &SessionKey) -> Option<&SessionRecord> {
        self.table.get(key)
    }

    /// Every entry, in unspecified order.
    pub fn iter(&self) -> impl Iterator<Item = &SessionRecord> {
        self.table.records.iter()
    }

    /// Change events waiting to be polled (a gauge of how far the consumer lags).
    pub fn pending_changes(&self) -> usize {
        self.changes.len()
    }

    /// The counters.
    pub fn stats(&self) -> &MemoryStats {
        &self.stats
    }

    /// Local activity created a connection: stores `record` owned by the local node (whatever
    /// owner it carries) and reports it as an `Upsert`.
    pub fn create_local(&mut self, mut record: SessionRecord) -> Result<(), LocalError> {
        record.owner = self.local;
        match self.table.insert(&record, self.capacity_limit, false) {
            InsertOutcome::Created => {
                self.emit(SessionOp::Upsert(record));
                Ok(())
            }
            InsertOutcome::Exists => Err(LocalError::Exists),
            InsertOutcome::Refused => {
                self.stats.refused += 1;
                Err(LocalError::TableFull)
            }
        }
    }

    /// Local activity updated a connection: replaces the entry with `record`, owned by the local
    /// node (an entry the peer owned becomes ours: our traffic touches it), and reports it as an
    /// `Upsert`.
    pub fn update_local(&mut self, mut record: SessionRecord) -> Result<(), LocalError> {
        record.owner = self.local;
        let slot = self
            .table
            .get_mut(&record.key)
            .ok_or(LocalError::NotFound)?;
        slot.clone_from(&record);
        self.emit(SessionOp::Upsert(record));
        Ok(())
    }

    /// Local activity ended a connection: deletes the entry, reports `Remove { key, owner }`
    /// with the entry's owner, and returns the entry as it was.
    pub fn delete_local(&mut self, key: &SessionKey) -> Result<SessionRecord, LocalError> {
        let record = self.table.remove(key).ok_or(LocalError::NotFound)?;
        self.emit(SessionOp::Remove {
            key: *key,
            owner: record.owner,
        });
        Ok(record)
    }

    /// Fault injection: refuses the next `ops` ops handed to [`apply`](SessionBackend::apply),
    /// whatever they are, with `error`, and changes nothing for them: as a kernel table does
    /// under memory pressure (ENOMEM), with a busy helper (EBUSY) or full label storage
    /// (ENOSPC). Zero lifts a refusal still in force.
    pub fn refuse_next_ops(&mut self, ops: usize, error: ApplyError) {
        self.refusals = (ops > 0).then_some((ops, error));
    }

    /// Fault injection: loses every queued event, as an overflowing netlink socket does, so the
    /// next `poll_changes` reports an overrun.
    pub fn inject_overrun(&mut self) {
        let was_idle = !self.has_pending();
        self.overrun.get_or_insert(0);
        if was_idle {
            self.notify.notify_one();
        }
    }

    fn has_pending(&self) -> bool {
        !self.changes.is_empty() || self.overrun.is_some()
    }

    /// Queues a change event, or loses it when the queue is full. Once an overrun is pending,
    /// every event is lost: the queue is discarded when the overrun is reported anyway.
    fn emit(&mut self, op: SessionOp) {
        self.stats.events_emitted += 1;
        let was_idle = !self.has_pending();
        if self.overrun.is_some() || self.changes.len() >= self.queue_limit {
            *self.overrun.get_or_insert(0) += 1;
            self.stats.events_lost += 1;
        } else {
            self.changes.push_back(op);
        }
        // Notify only on idle -> pending: `changed` checks for pending changes itself, so one
        // wake-up per burst is enough and a million-event burst costs one notification.
        if was_idle {
            self.notify.notify_one();
        }
    }
}

impl SessionBackend for MemoryBackend {
    fn local_node(&self) -> NodeId {
        self.local
    }

    fn dump(&mut self) -> Result<Vec<SessionRecord>, BackendError> {
        Ok(self.table.records.clone())
    }

    fn apply(&mut self, ops: &[SessionOp]) -> ApplyReport {
        let mut report = ApplyReport::default();
        let mut removed = 0;
        for (index, op) in ops.iter().enumerate() {
            if let Some((left, error)) = &mut self.refusals {
                report.failed.push((index, error.clone()));
                *left -= 1;
                if *left == 0 {
                    self.refusals = None;
                }
                continue;
            }
            match op {
                SessionOp::Upsert(record) => {
                    match self.table.insert(record, self.capacity_limit, true) {
                        InsertOutcome::Created | InsertOutcome::Exists => report.applied += 1,
                        InsertOutcome::Refused => {
                            report.failed.push((index, ApplyError::TableFull))
                        }
                    }
                }
                SessionOp::Remove { key, owner } => match self.table.remove_owned(key, *owner) {
                    RemoveOutcome::Deleted => {
                        report.applied += 1;
                        removed += 1;
                    }
                    RemoveOutcome::NotOwner => report.skipped_not_owner += 1,
                    RemoveOutcome::NotFound => report.not_found += 1,
                },
                SessionOp::RemoveAny { key } => match self.table.remove(key) {
                    Some(_) => {
                        report.applied += 1;
                        removed += 1;
                    }
                    None => report.not_found += 1,
                },
            }
        }
        self.stats.applied += report.applied as u64;
        self.stats.removed += removed;
        self.stats.not_found += report.not_found as u64;
        self.stats.skipped_not_owner += report.skipped_not_owner as u64;
        self.stats.refused += report.failed.len() as u64;
        report
    }

    fn poll_changes(
        &mut self,
        out: &mut Vec<SessionOp>,
        max: usize,
    ) -> Result<usize, BackendError> {
        if let Some(dropped) = self.overrun.take() {
            let discarded = self.changes.len() as u64;
            self.changes.clear();
            self.stats.events_lost += discarded;
            self.stats.overruns += 1;
            return Err(BackendError::Overrun {
                lost: Some(dropped + discarded),
            });
        }
        let n = max.min(self.changes.len());
        out.extend(self.changes.drain(..n));
        Ok(n)
    }

    fn changed(&self) -> impl Future<Output = ()> + Send + 'static {
        // Pending changes are checked when `changed` is called; any change after that notifies
        // (a permit is kept if the future has not been polled yet), so none is missed.
        let pending = self.has_pending();
        let notify = Arc::clone(&self.notify);
        async move {
            if !pending {
                notify.notified().await;
            }
        }
    }

    fn sweep(&mut self, owner: NodeId, keep: &HashSet<SessionKey>) -> Result<usize, BackendError> {
        let swept = self
            .table
            .retain(|record| record.owner != owner || keep.contains(&record.key));
        self.stats.swept += swept as u64;
        Ok(swept)
    }

    fn adopt(&mut self, from: NodeId, to: NodeId) -> Result<usize, BackendError> {
        if from == to {
            return Ok(0);
        }
        let mut adopted = 0;
        for record in self.table.records.iter_mut().filter(|r| r.owner == from) {
            record.owner = to;
            adopted += 1;
        }
        self.stats.adopted += adopted as u64;
        Ok(adopted)
    }

    fn count(&self) -> Result<usize, BackendError> {
        Ok(self.table.len())
    }
}

// Hand-written so that a stray `{:?}` prints a summary, not a million entries.
impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("local", &self.local)
            .field("entries", &self.table.len())
            .field("capacity_limit", &self.capacity_limit)
            .field("pending_changes", &self.changes.len())
            .field("queue_limit", &self.queue_limit)
            .field("overrun_pending", &self.overrun.is_some())
            .field("stats", &self.stats)
            .finish()
    }
}

/// The table: records stored densely (a dump is one copy, iteration is linear) and a hash index
/// from key to position. Buckets of the index are small (key and `u32`), so growing it moves
/// little memory, and a record is stored once.
#[derive(Default)]
struct Table {
    /// Invariant: `index` maps the key of every record, and only those, to its position.
    index: HashMap<SessionKey, u32, foldhash::fast::RandomState>,
    records: Vec<SessionRecord>,
}

/// What [`Table::insert`] did.
enum InsertOutcome {
    Created,
    /// The key was in the table: its entry was replaced if asked to, else left.
    Exists,
    /// The table was full.
    Refused,
}

/// What [`Table::remove_owned`] did.
enum RemoveOutcome {
    Deleted,
    NotOwner,
    NotFound,
}

/// Positions are `u32` to keep index buckets small; a table refuses new entries beyond this.
const MAX_ENTRIES: usize = u32::MAX as usize;

impl Table {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn get(&self, key: &SessionKey) -> Option<&SessionRecord> {
        let position = *self.index.get(key)?;
        Some(&self.records[position as usize])
    }

    fn get_mut(&mut self, key: &SessionKey) -> Option<&mut SessionRecord> {
        let position = *self.index.get(key)?;
        Some(&mut self.records[position as usize])
    }

    /// Creates an entry for `record` unless the table holds `limit` entries; if its key is
    /// already there, replaces that entry when `replace` is set.
    fn insert(
        &mut self,
        record: &SessionRecord,
        limit: Option<usize>,
        replace: bool,
    ) -> InsertOutcome {
        let full = self.records.len() >= limit.unwrap_or(MAX_ENTRIES).min(MAX_ENTRIES);
        match self.index.entry(record.key) {
            Entry::Occupied(slot) => {
                if replace {
                    self.records[*slot.get() as usize].clone_from(record);
                }
                InsertOutcome::Exists
            }
            Entry::Vacant(_) if full => InsertOutcome::Refused,
            Entry::Vacant(slot) => {
                // Fits: `full` bounds the length by `MAX_ENTRIES`.
                slot.insert(self.records.len() as u32);
                self.records.push(record.clone());
                InsertOutcome::Created
            }
        }
    }

    /// Deletes the entry with this key if `owner` owns it.
    fn remove_owned(&mut self, key: &SessionKey, owner: NodeId) -> RemoveOutcome {
        match self.index.entry(*key) {
            Entry::Vacant(_) => RemoveOutcome::NotFound,
            Entry::Occupied(slot) if self.records[*slot.get() as usize].owner != owner => {
                RemoveOutcome::NotOwner
            }
            Entry::Occupied(slot) => {
                let position = slot.remove();
                self.take(position as usize);
                RemoveOutcome::Deleted
            }
        }
    }

    fn remove(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        let position = self.index.remove(key)?;
        Some(self.take(position as usize))
    }

    /// Keeps the records for which `keep` holds, and returns how many it deleted.
    fn retain(&mut self, mut keep: impl FnMut(&SessionRecord) -> bool) -> usize {
        let mut deleted = 0;
        let mut position = 0;
        while let Some(record) = self.records.get(position) {
            if keep(record) {
                position += 1;
            } else {
                self.index.remove(&record.key);
                // The last record moves here: look at this position again.
                self.take(position);
                deleted += 1;
            }
        }
        deleted
    }

    /// Removes the record at `position`, whose key is already out of the index, by moving the
    /// last record into its place.
    fn take(&mut self, position: usize) -> SessionRecord {
        let record = self.records.swap_remove(position);
        if let Some(moved) = self.records.get(position) {
            // Invariant of `index`: the moved record is indexed.
            *self
                .index
                .get_mut(&moved.key)
                .expect("every record is indexed") = position as u32;
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::Instant;

    use failoverd_wire::{HelperName, SeqAdj};

    use super::*;
    use crate::session::conformance::Harness;

    const LOCAL: NodeId = NodeId(0xa);
    const PEER: NodeId = NodeId(0xb);

    /// Drives the conformance suite against a fresh [`MemoryBackend`].
    struct MemoryHarness(MemoryBackend);

    fn harness() -> MemoryHarness {
        MemoryHarness(MemoryBackend::new(LOCAL))
    }

    impl Harness for MemoryHarness {
        type Backend = MemoryBackend;

        fn backend(&mut self) -> &mut MemoryBackend {
            &mut self.0
        }

        fn local_create(&mut self, record: SessionRecord) -> Result<(), LocalError> {
            self.0.create_local(record)
        }

        fn local_update(&mut self, record: SessionRecord) -> Result<(), LocalError> {
            self.0.update_local(record)
        }

        fn local_delete(&mut self, key: &SessionKey) -> Result<(), LocalError> {
            self.0.delete_local(key).map(drop)
        }

        fn set_capacity(&mut self, entries: usize) {
            self.0.set_capacity_limit(Some(entries));
        }

        fn force_overrun(&mut self) {
            self.0.inject_overrun();
        }

        fn fill_to_limit(&mut self) -> SessionKey {
            const LIMIT: usize = 1000;
            self.0.set_capacity_limit(Some(LIMIT));
            let local = self.0.local_node();
            let first = 1_000_000;
            let mut next = first;
            while self
                .0
                .create_local(crate::session::sample_record(next, local))
                .is_ok()
            {
                next += 1;
            }
            assert_eq!(self.0.len(), LIMIT);
            let mut events = Vec::new();
            while self
                .0
                .poll_changes(&mut events, usize::MAX)
                .expect("no overrun")
                > 0
            {}
            crate::session::sample_record(first, local).key
        }

        // The memory table stores every field, so the records exercise the ones a kernel may
        // refuse without a matching ruleset or helper module.
        fn sample_record(&self, i: u32, owner: NodeId) -> SessionRecord {
            let mut record = crate::session::sample_record(i, owner);
            record.labels = [i as u8; 16];
            record.helper = HelperName::new("ftp").unwrap();
            record.seq_adj = [
                SeqAdj {
                    correction_pos: i,
                    offset_before: 3,
                    offset_after: -2,
                },
                SeqAdj::default(),
            ];
            record
        }
    }

    crate::session_backend_conformance!(harness);

    fn record(i: u32) -> SessionRecord {
        crate::session::sample_record(i, PEER)
    }

    #[test]
    fn injected_refusals_refuse_the_next_ops_whatever_they_are_then_stop() {
        let mut backend = MemoryBackend::new(LOCAL);
        backend.apply(&[SessionOp::Upsert(record(0))]);
        let busy = ApplyError::Refused("EBUSY (injected)".into());
        backend.refuse_next_ops(2, busy.clone());
        let ops = [
            SessionOp::RemoveAny { key: record(0).key },
            SessionOp::Upsert(record(1)),
            SessionOp::Upsert(record(2)),
        ];
        let report = backend.apply(&ops);
        assert_eq!(report.failed, vec![(0, busy.clone()), (1, busy)]);
        assert_eq!(report.applied, 1);
        let mut keys: Vec<_> = backend.iter().map(|r| r.key).collect();
        keys.sort();
        let mut want = vec![record(0).key, record(2).key];
        want.sort();
        assert_eq!(keys, want, "refused ops changed nothing");
        assert_eq!(backend.apply(&ops).failed, [], "the refusals stopped");
        assert_eq!(backend.len(), 2);
        backend.refuse_next_ops(usize::MAX, ApplyError::TableFull);
        assert_eq!(backend.apply(&ops[..1]).failed.len(), 1);
        backend.refuse_next_ops(0, ApplyError::TableFull);
        assert_eq!(backend.apply(&ops[..1]).failed, [], "lifted");
        assert_eq!(backend.stats().refused, 3);
    }

    #[test]
    fn stats_count_every_outcome() {
        let mut backend = MemoryBackend::new(LOCAL).with_capacity_limit(2);
        let report = backend.apply(&[
            SessionOp::Upsert(record(0)),
            SessionOp::Upsert(record(1)),
            SessionOp::Upsert(record(2)),
            SessionOp::Remove {
                key: record(0).key,
                owner: LOCAL,
            },
            SessionOp::Remove {
                key: record(1).key,
                owner: PEER,
            },
            SessionOp::Remove {
                key: record(1).key,
                owner: PEER,
            },
        ]);
        assert_eq!(report.failed, vec![(2, ApplyError::TableFull)]);
        backend.create_local(record(3)).unwrap();
        assert_eq!(backend.create_local(record(4)), Err(LocalError::TableFull));
        backend.update_local(record(0)).unwrap();
        backend.delete_local(&record(3).key).unwrap();
        backend.adopt(LOCAL, PEER).unwrap();
        backend.sweep(PEER, &HashSet::new()).unwrap();
        assert_eq!(
            *backend.stats(),
            MemoryStats {
                applied: 3,
                removed: 1,
                not_found: 1,
                skipped_not_owner: 1,
                refused: 2,
                swept: 1,
                adopted: 1,
                events_emitted: 3,
                events_lost: 0,
                overruns: 0,
            }
        );
        assert!(backend.is_empty());
    }

    #[test]
    fn a_full_queue_loses_events_and_reports_them() {
        let mut backend = MemoryBackend::new(LOCAL).with_queue_limit(2);
        for i in 0..3 {
            backend.create_local(record(i)).unwrap();
        }
        assert_eq!(backend.pending_changes(), 2);
        let mut out = Vec::new();
        // The two queued events predate the loss, so they are discarded with it.
        assert!(matches!(
            backend.poll_changes(&mut out, 10),
            Err(BackendError::Overrun { lost: Some(3) })
        ));
        assert!(out.is_empty());
        backend.create_local(record(3)).unwrap();
        assert_eq!(backend.poll_changes(&mut out, 10).unwrap(), 1);
        assert_eq!(backend.stats().events_emitted, 4);
        assert_eq!(backend.stats().events_lost, 3);
        assert_eq!(backend.stats().overruns, 1);
        assert_eq!(backend.len(), 4);
    }

    #[test]
    fn lowering_the_limit_evicts_nothing() {
        let mut backend = MemoryBackend::new(LOCAL);
        for i in 0..3 {
            backend.create_local(record(i)).unwrap();
        }
        backend.set_capacity_limit(Some(1));
        assert_eq!(backend.len(), 3);
        assert_eq!(backend.create_local(record(9)), Err(LocalError::TableFull));
        backend.update_local(record(0)).unwrap();
        backend.set_capacity_limit(None);
        backend.create_local(record(9)).unwrap();
        assert_eq!(backend.capacity_limit(), None);
        assert_eq!(backend.iter().count(), 4);
    }

    #[test]
    fn delete_local_returns_the_entry_as_it_was() {
        let mut backend = MemoryBackend::new(LOCAL);
        backend.apply(&[SessionOp::Upsert(record(5))]);
        assert_eq!(backend.delete_local(&record(5).key), Ok(record(5)));
        assert_eq!(backend.get(&record(5).key), None);
    }

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn changed_wakes_its_waiter_on_a_local_change() {
        let mut backend = MemoryBackend::new(LOCAL);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        let mut changed = pin!(backend.changed());
        assert_eq!(changed.as_mut().poll(&mut cx), Poll::Pending);
        backend.create_local(record(0)).unwrap();
        assert!(flag.0.load(Ordering::SeqCst));
        assert_eq!(changed.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn changed_resolves_in_a_select_loop_owning_the_backend() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut backend = MemoryBackend::new(LOCAL);
        let mut polled = Vec::new();
        runtime.block_on(async {
            let mut next = 0;
            while polled.len() < 3 {
                tokio::select! {
                    biased;
                    _ = backend.changed() => {
                        backend.poll_changes(&mut polled, 1).unwrap();
                    }
                    _ = std::future::ready(()), if next < 3 => {
                        backend.create_local(record(next)).unwrap();
                        next += 1;
                    }
                }
            }
        });
        let keys: Vec<_> = polled.iter().map(|op| *op.key()).collect();
        assert_eq!(keys, [0, 1, 2].map(|i| record(i).key));
    }

    /// On-CPU time of this thread: the machine is shared, so wall time alone says little.
    fn cpu_time() -> std::time::Duration {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        std::time::Duration::from_nanos(stat.split(' ').next().unwrap().parse().unwrap())
    }

    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    fn timed(label: &str, ops: usize, run: impl FnOnce()) {
        let (wall, cpu) = (Instant::now(), cpu_time());
        run();
        let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
        println!(
            "{label}: {ops} ops: wall {wall:.2?} ({:.2} M ops/s), on-CPU {cpu:.2?} ({:.2} M ops/s)",
            ops as f64 / wall.as_secs_f64() / 1e6,
            ops as f64 / cpu.as_secs_f64() / 1e6,
        );
    }

    /// Throughput figure for docs/BENCHMARKS.md:
    /// `cargo test -p failoverd-backends --release --lib -- --ignored --nocapture apply_rate`
    #[test]
    #[ignore = "benchmark; run in release mode"]
    fn apply_rate() {
        const BATCH: usize = 400;
        for sessions in [1_000_000, 100_000] {
            let ops: Vec<_> = (0..sessions)
                .map(|i| SessionOp::Upsert(crate::session::sample_record(i, PEER)))
                .collect();
            let removes: Vec<_> = ops
                .iter()
                .map(|op| SessionOp::Remove {
                    key: *op.key(),
                    owner: PEER,
                })
                .collect();
            let mut backend = MemoryBackend::new(LOCAL);
            let apply = |backend: &mut MemoryBackend, ops: &[SessionOp], passes| {
                for _ in 0..passes {
                    for batch in ops.chunks(BATCH) {
                        assert_eq!(backend.apply(batch).applied, batch.len());
                    }
                }
            };
            let passes = 1_000_000 / sessions as usize;
            println!("{sessions} sessions, batches of {BATCH}:");
            let resident = resident_bytes();
            timed("  insert into an empty table", ops.len(), || {
                apply(&mut backend, &ops, 1)
            });
            println!(
                "  resident memory: {} bytes per session",
                (resident_bytes() - resident) / u64::from(sessions)
            );
            timed("  replace", ops.len() * passes, || {
                apply(&mut backend, &ops, passes)
            });
            timed("  remove", ops.len(), || apply(&mut backend, &removes, 1));
            assert!(backend.is_empty());
        }
    }
}
