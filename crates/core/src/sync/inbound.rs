//! Receiving the peer's sessions: batches accepted strictly in order, applied in bounded slices,
//! acknowledged once applied; a bulk sync ends with a sweep of what it did not mention.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use failoverd_wire::{
    Ack, BatchFlags, BatchView, NodeId, SectionKind, SessionKey, SessionOp, StreamPosition,
    WireError,
};

use super::hold::RemoveHold;
use crate::filter::ReplicationFilter;
use crate::stats::Stats;
use crate::time::Instant;

/// Batches held ahead of a gap, at most: bounds what a peer can make us buffer.
const MAX_REORDERED: u64 = 1024;

/// A batch received and not yet applied.
#[derive(Debug)]
struct Received {
    seq: u64,
    ops: Vec<SessionOp>,
    bulk_end: bool,
    /// Its body's length, counted against [`Inbound::max_buffered`] while it is held.
    bytes: usize,
}

/// Work for the backend, in the order it must happen.
#[derive(Debug)]
pub(crate) enum InboundWork {
    /// Apply these ops; on completion everything up to `last_seq` is applied.
    Apply {
        ops: Vec<SessionOp>,
        last_seq: u64,
        bulk_end: bool,
    },
    /// Delete the peer's entries the bulk did not mention, then `last_seq` is applied.
    Sweep {
        keep: HashSet<SessionKey>,
        last_seq: u64,
    },
}

/// What receiving a batch did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Receipt {
    /// Accepted in order.
    Accepted,
    /// Already received: the ack was lost, send it again.
    Duplicate,
    /// A gap before it: dropped, the sender resends.
    OutOfOrder,
    /// Belongs to an epoch that is not current.
    StaleEpoch,
    /// In order, but the batches held already fill the buffer: the peer sent past its
    /// window. Dropped; the stream cannot go on without it, so the link is reset.
    Overflow,
}

/// The peer's side of the replication stream, as we receive it.
#[derive(Debug)]
pub(crate) struct Inbound {
    peer: NodeId,
    epoch: Option<u32>,
    received: u64,
    /// What we acknowledge as applied: never past a batch with an op the backend refused.
    applied: u64,
    /// How far the stream before this one was applied (a link loss ends a stream, and its
    /// last acknowledgements may be lost with it). Its epoch names it: epochs start at random
    /// on every start of a node.
    previous_applied: Option<StreamPosition>,
    /// The last batch handed to the backend and done, refused ops or not.
    done: u64,
    /// Ops the backend refused and no later op of the same session replaced, by session: tried
    /// again when [`retry_due`](Self::retry_due) says so. Later batches are applied meanwhile
    /// (deletes among them may make room), but not acknowledged.
    refused: HashMap<SessionKey, SessionOp>,
    retry_due: bool,
    queue: VecDeque<Received>,
    /// Batches that arrived ahead of a gap, by sequence number.
    reordered: BTreeMap<u64, Received>,
    /// Keys the current bulk mentioned: what survives its sweep.
    keep: Option<HashSet<SessionKey>>,
    /// The keys a bulk that a link loss interrupted had mentioned, and whose it was: a bulk
    /// that resumes it ([`BatchFlags::RESUMED`]) starts from them.
    interrupted: Option<(NodeId, HashSet<SessionKey>)>,
    /// A resumed bulk of this epoch began while no interrupted one was held: the sender must
    /// send it whole (a resync).
    resume_refused: Option<u32>,
    bulk_records: u64,
    complete: bool,
    ack_due: bool,
    /// Changes whenever the stream restarts, so results of older work are recognised.
    generation: u64,
    hold: RemoveHold,
    /// This node is active: the peer's deletes apply at once (see [`RemoveHold::split`]).
    active: bool,
    /// Ops outside it are refused: the peer's key does not make it trusted with everything.
    filter: ReplicationFilter,
    /// Bytes of the batches in `queue` and `reordered`, and the bound on them.
    buffered: usize,
    max_buffered: usize,
}

impl Inbound {
    pub(crate) fn new(
        remove_hold: Duration,
        filter: ReplicationFilter,
        max_buffered: usize,
    ) -> Self {
        Self {
            peer: NodeId(0),
            epoch: None,
            received: 0,
            applied: 0,
            previous_applied: None,
            done: 0,
            refused: HashMap::new(),
            retry_due: false,
            queue: VecDeque::new(),
            reordered: BTreeMap::new(),
            keep: None,
            interrupted: None,
            resume_refused: None,
            bulk_records: 0,
            complete: false,
            ack_due: false,
            generation: 0,
            hold: RemoveHold::new(remove_hold),
            active: false,
            filter,
            buffered: 0,
            max_buffered,
        }
    }

    /// The link is lost: forgets the stream, but keeps what a bulk in progress mentioned, so
    /// that one resuming it can end with a sweep.
    pub(crate) fn suspend(&mut self, stats: &mut Stats) {
        if let Some(keep) = self.keep.take()
            && !self.complete
        {
            self.interrupted = Some((self.peer, keep));
        }
        stats.removes_discarded += self.hold.drop_suspects() as u64;
        self.reset(NodeId(0), stats);
    }

    /// The epoch of a resumed bulk this node could not accept (it held no interrupted one).
    pub(crate) fn take_resume_refused(&mut self) -> Option<u32> {
        self.resume_refused.take()
    }

    /// Forgets the stream (link lost, or a new one begins). Applied entries stay in the table;
    /// held deletes are dropped (a new bulk sync's sweep covers what they would have deleted).
    pub(crate) fn reset(&mut self, peer: NodeId, stats: &mut Stats) {
        if peer != NodeId(0) && self.interrupted.as_ref().is_some_and(|(of, _)| *of != peer) {
            self.interrupted = None;
        }
        stats.removes_discarded += self.hold.clear() as u64;
        self.previous_applied = self.applied_position();
        self.peer = peer;
        self.epoch = None;
        self.received = 0;
        self.applied = 0;
        self.done = 0;
        self.refused.clear();
        self.retry_due = false;
        self.queue.clear();
        self.reordered.clear();
        self.buffered = 0;
        self.keep = None;
        self.bulk_records = 0;
        self.complete = false;
        self.ack_due = false;
        self.generation += 1;
    }

    /// How far this node applied the peer's latest stream, the current one or the one the
    /// link loss ended: told in our hellos, so the peer knows which of its unacknowledged
    /// changes we had (see `ApartLog`).
    pub(crate) fn applied_position(&self) -> Option<StreamPosition> {
        match self.epoch {
            Some(epoch) if self.applied > 0 => Some(StreamPosition {
                epoch,
                seq: self.applied,
            }),
            _ => self.previous_applied,
        }
    }

    /// This node became active or standby.
    pub(crate) fn set_active(&mut self, active: bool) {
        self.active = active;
    }

    /// Makes the held deletes suspect, and those arriving within one hold from `now` (this
    /// node takes over from a peer that did not hand over on purpose).
    pub(crate) fn discard_held(&mut self, now: Instant) {
        self.hold.discard(now);
    }

    /// The window after a takeover ended: the suspect deletes are applied if the peer still
    /// forwards or was outranked (healthy), dropped otherwise (see [`RemoveHold::settle`]).
    pub(crate) fn settle_suspects(&mut self, now: Instant, peer_healthy: bool, stats: &mut Stats) {
        let (ops, dropped) = self.hold.settle(now, peer_healthy);
        stats.removes_discarded += dropped as u64;
        self.queue_released(ops);
    }

    /// This node changed `key` itself (see [`RemoveHold::cancel_suspect`]).
    pub(crate) fn cancel_suspect(&mut self, key: &SessionKey) {
        self.hold.cancel_suspect(key);
    }

    /// Queues every held delete for the backend, due or not.
    pub(crate) fn release_all_held(&mut self) {
        let ops = self.hold.release_all();
        self.queue_released(ops);
    }

    /// Queues the held deletes due at `now` for the backend.
    pub(crate) fn release_held(&mut self, now: Instant) {
        let ops = self.hold.release(now);
        self.queue_released(ops);
    }

    /// Every held delete, taken out of the hold (the peer says goodbye: see
    /// [`Inbound::apply_after_reset`]).
    pub(crate) fn take_held(&mut self) -> Vec<SessionOp> {
        self.hold.release_all()
    }

    /// Queues the deletes of a peer that left on purpose (they ended real sessions) after the
    /// stream was forgotten: they apply although the link is gone.
    pub(crate) fn apply_after_reset(&mut self, ops: Vec<SessionOp>) {
        self.queue_released(ops);
    }

    /// Released deletes go behind every batch received before them: a batch still waiting
    /// may hold an earlier upsert of the same session, which must not overtake its delete.
    fn queue_released(&mut self, ops: Vec<SessionOp>) {
        if !ops.is_empty() {
            self.queue.push_back(Received {
                seq: self.received,
                ops,
                bulk_end: false,
                bytes: 0,
            });
        }
    }

    /// Whether a delete of `key` from the peer is held or queued, not yet applied.
    pub(crate) fn has_pending_remove(&self, key: &SessionKey) -> bool {
        self.hold.is_held(key)
            || self.queue.iter().any(|received| {
                received
                    .ops
                    .iter()
                    .any(|op| !matches!(op, SessionOp::Upsert(_)) && op.key() == key)
            })
    }

    /// When the next held delete is due.
    pub(crate) fn next_held_due(&self) -> Option<Instant> {
        self.hold.next_due()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The peer's bulk sync is applied and swept: we hold its sessions.
    pub(crate) fn complete(&self) -> bool {
        self.complete
    }

    pub(crate) fn epoch(&self) -> Option<u32> {
        self.epoch
    }

    #[cfg(test)]
    pub(crate) fn queued_batches(&self) -> usize {
        self.queue.len()
    }

    /// Bytes of the peer's batches held, waiting for a gap to fill or for the backend.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Takes in one batch. Errors (a record that does not parse) reject the whole batch.
    /// `may_resume`: this node changed nothing while apart, so what it held of an interrupted
    /// bulk is still the peer's state (else a resumed bulk is refused, and sent whole).
    /// `deleted_here`: whether this node deleted a session while apart (see
    /// [`RemoveHold::split`]).
    pub(crate) fn handle_batch(
        &mut self,
        now: Instant,
        batch: BatchView<'_>,
        may_resume: bool,
        deleted_here: &dyn Fn(&SessionKey) -> bool,
        stats: &mut Stats,
    ) -> Result<Receipt, WireError> {
        let flags = batch.flags();
        let seq = batch.seq();
        if flags.has(BatchFlags::BULK_BEGIN) && seq == 1 && self.epoch != Some(batch.epoch()) {
            let peer = self.peer;
            let interrupted = self.interrupted.take();
            self.reset(peer, stats);
            let keep = if flags.has(BatchFlags::RESUMED) {
                match interrupted {
                    Some((of, keep)) if of == peer && may_resume => keep,
                    _ => {
                        self.resume_refused = Some(batch.epoch());
                        stats.stale_epoch_batches += 1;
                        return Ok(Receipt::StaleEpoch);
                    }
                }
            } else {
                HashSet::new()
            };
            self.epoch = Some(batch.epoch());
            self.keep = Some(keep);
        }
        if self.epoch != Some(batch.epoch()) {
            stats.stale_epoch_batches += 1;
            return Ok(Receipt::StaleEpoch);
        }
        if seq <= self.received || self.reordered.contains_key(&seq) {
            stats.duplicate_batches += 1;
            self.ack_due = true;
            return Ok(Receipt::Duplicate);
        }
        if seq > self.received + MAX_REORDERED {
            stats.out_of_order_batches += 1;
            self.ack_due = true;
            return Ok(Receipt::OutOfOrder);
        }
        let bytes = batch.body_len();
        if !self.make_room(seq, bytes, stats) {
            self.ack_due = true;
            if seq == self.received + 1 {
                return Ok(Receipt::Overflow);
            }
            stats.out_of_order_batches += 1;
            return Ok(Receipt::OutOfOrder);
        }
        let ops = self.parse_ops(&batch, stats)?;
        self.buffered += bytes;
        let received = Received {
            seq,
            ops,
            bulk_end: flags.has(BatchFlags::BULK_END),
            bytes,
        };
        self.ack_due = true;
        if seq != self.received + 1 {
            // Held until the gap before it is filled: resending is then only for what was lost.
            stats.out_of_order_batches += 1;
            self.reordered.insert(seq, received);
            return Ok(Receipt::OutOfOrder);
        }
        self.accept(now, received, deleted_here, stats);
        while let Some(next) = self.reordered.remove(&(self.received + 1)) {
            self.accept(now, next, deleted_here, stats);
        }
        Ok(Receipt::Accepted)
    }

    /// Whether a batch of `bytes` with sequence number `seq` fits the buffer, after dropping
    /// held batches later than it (they are resent once the gap before them is filled, so
    /// nothing is lost). Counts what does not fit.
    fn make_room(&mut self, seq: u64, bytes: usize, stats: &mut Stats) -> bool {
        while self.buffered + bytes > self.max_buffered {
            match self.reordered.last_entry() {
                Some(last) if *last.key() > seq => {
                    self.buffered -= last.remove().bytes;
                    stats.peer_buffer_drops += 1;
                }
                _ => {
                    stats.peer_buffer_drops += 1;
                    return false;
                }
            }
        }
        true
    }

    fn parse_ops(
        &self,
        batch: &BatchView<'_>,
        stats: &mut Stats,
    ) -> Result<Vec<SessionOp>, WireError> {
        let mut ops = Vec::new();
        for section in batch.sections() {
            if let SectionKind::Unknown(_) = section.kind {
                stats.unknown_sections += 1;
            }
            for op in section.ops() {
                let op = op?;
                // The peer replicates what it owns, and a delete that ends a session everywhere
                // (it is active); a record of a third node's is not its to give.
                let from_owner = match &op {
                    SessionOp::Upsert(record) => record.owner == self.peer,
                    SessionOp::Remove { owner, .. } => *owner == self.peer,
                    SessionOp::RemoveAny { .. } => true,
                };
                if !from_owner {
                    stats.foreign_records += 1;
                } else if !self.filter.matches(op.key()) {
                    stats.peer_ops_filtered += 1;
                } else {
                    ops.push(op);
                }
            }
        }
        Ok(ops)
    }

    /// Takes the next batch in sequence.
    fn accept(
        &mut self,
        now: Instant,
        mut received: Received,
        deleted_here: &dyn Fn(&SessionKey) -> bool,
        stats: &mut Stats,
    ) {
        if let Some(keep) = &mut self.keep {
            for op in &received.ops {
                match op {
                    SessionOp::Upsert(record) => keep.insert(record.key),
                    SessionOp::Remove { key, .. } | SessionOp::RemoveAny { key } => {
                        keep.remove(key)
                    }
                };
            }
            self.bulk_records += received.ops.len() as u64;
        }
        stats.batches_received += 1;
        stats.records_received += received.ops.len() as u64;
        let split = self
            .hold
            .split(now, received.ops, self.active, deleted_here);
        received.ops = split.now;
        stats.removes_held += split.held as u64;

        self.received = received.seq;
        self.queue.push_back(received);
    }

    /// The next slice of backend work: consecutive batches merged up to `max_ops`, never past
    /// the end of a bulk (its sweep must come before anything later).
    pub(crate) fn next_work(&mut self, max_ops: usize) -> Option<InboundWork> {
        if std::mem::take(&mut self.retry_due) && !self.refused.is_empty() {
            // In key order, not the map's: which of them fit a table with little room left
            // must not depend on a random hash seed (a simulated schedule replays exactly).
            let mut refused: Vec<_> = self.refused.drain().collect();
            refused.sort_unstable_by_key(|(key, _)| *key);
            return Some(InboundWork::Apply {
                ops: refused.into_iter().map(|(_, op)| op).collect(),
                last_seq: self.done,
                bulk_end: false,
            });
        }
        let first = self.queue.pop_front()?;
        self.buffered -= first.bytes;
        let mut ops = first.ops;
        let mut last_seq = first.seq;
        let mut bulk_end = first.bulk_end;
        while !bulk_end
            && let Some(next) = self.queue.front()
            && ops.len() + next.ops.len() <= max_ops
        {
            // Invariant: `front()` just returned Some.
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            self.buffered -= next.bytes;
            ops.extend(next.ops);
            last_seq = next.seq;
            bulk_end = next.bulk_end;
        }
        Some(InboundWork::Apply {
            ops,
            last_seq,
            bulk_end,
        })
    }

    /// The backend did `ops`, refusing those at the indices in `refused`: a refused op waits
    /// for a retry unless a later op of the same session replaces it, and one that applies
    /// replaces an earlier refusal. Returns whether refused ops wait.
    pub(crate) fn record_refusals(&mut self, ops: Vec<SessionOp>, refused: &[usize]) -> bool {
        if refused.is_empty() && self.refused.is_empty() {
            return false;
        }
        let mut refused = refused.iter().copied().peekable();
        for (index, op) in ops.into_iter().enumerate() {
            if refused.next_if_eq(&index).is_some() {
                self.refused.insert(*op.key(), op);
            } else {
                self.refused.remove(op.key());
            }
        }
        !self.refused.is_empty()
    }

    /// The refused ops may be tried again: they are the next work.
    pub(crate) fn retry_refused(&mut self) {
        self.retry_due = true;
    }

    /// Ops the backend refused are not applied yet.
    pub(crate) fn has_refused(&self) -> bool {
        !self.refused.is_empty()
    }

    /// Acknowledges everything done, unless refused ops wait.
    fn advance_applied(&mut self, last_seq: u64) {
        self.done = self.done.max(last_seq);
        if self.refused.is_empty() && self.applied < self.done {
            self.applied = self.done;
            self.ack_due = true;
        }
    }

    /// The apply of batches up to `last_seq` finished (its refusals recorded with
    /// [`record_refusals`](Self::record_refusals)). Returns the sweep that ends a bulk.
    pub(crate) fn applied(&mut self, last_seq: u64, bulk_end: bool) -> Option<InboundWork> {
        if bulk_end && let Some(keep) = self.keep.take() {
            return Some(InboundWork::Sweep { keep, last_seq });
        }
        self.advance_applied(last_seq);
        self.ack_due = true;
        None
    }

    /// The sweep that ends the bulk finished: we hold the peer's sessions (once refused ops,
    /// if any, are applied: see [`has_refused`](Self::has_refused)).
    pub(crate) fn swept(&mut self, last_seq: u64) {
        self.advance_applied(last_seq);
        self.complete = true;
        self.ack_due = true;
    }

    pub(crate) fn bulk_records(&self) -> u64 {
        self.bulk_records
    }

    /// The acknowledgement to send, if one is due.
    pub(crate) fn take_ack(&mut self) -> Option<Ack> {
        if !std::mem::take(&mut self.ack_due) {
            return None;
        }
        Some(Ack {
            epoch: self.epoch?,
            received: self.received,
            applied: self.applied,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::test_record as record;
    use failoverd_wire::{BatchWriter, Message, SessionRecord};

    fn frame(epoch: u32, seq: u64, flags: u8, records: &[SessionRecord]) -> Vec<u8> {
        let mut writer = BatchWriter::new();
        for r in records {
            writer.push_upsert(r);
        }
        let mut buf = Vec::new();
        writer.finish(epoch, seq, BatchFlags(flags), &mut buf);
        buf
    }

    fn receive(inbound: &mut Inbound, bytes: &[u8], stats: &mut Stats) -> Receipt {
        let Message::SessionBatch(batch) = Message::parse(bytes).unwrap() else {
            panic!()
        };
        inbound
            .handle_batch(Instant::ZERO, batch, true, &|_| false, stats)
            .unwrap()
    }

    #[test]
    fn batches_are_taken_in_order_and_acked_only_when_applied() {
        let peer = NodeId(2);
        let mut stats = Stats::default();
        let mut inbound = Inbound::new(Duration::ZERO, ReplicationFilter::default(), 32 << 20);
        inbound.reset(peer, &mut stats);
        let b1 = frame(9, 1, BatchFlags::BULK_BEGIN, &[record(1, peer)]);
        let b2 = frame(9, 2, 0, &[record(2, peer)]);
        let b3 = frame(
            9,
            3,
            BatchFlags::BULK_END,
            &[record(3, peer), record(4, NodeId(7))],
        );
        assert_eq!(
            receive(&mut inbound, &b2, &mut stats),
            Receipt::StaleEpoch,
            "no epoch before its first batch"
        );
        assert_eq!(receive(&mut inbound, &b1, &mut stats), Receipt::Accepted);
        assert_eq!(receive(&mut inbound, &b3, &mut stats), Receipt::OutOfOrder);
        assert_eq!(
            inbound.take_ack().map(|a| a.received),
            Some(1),
            "held, not received"
        );
        // Filling the gap takes the held batch too.
        assert_eq!(receive(&mut inbound, &b2, &mut stats), Receipt::Accepted);
        assert_eq!(receive(&mut inbound, &b2, &mut stats), Receipt::Duplicate);
        assert_eq!(receive(&mut inbound, &b3, &mut stats), Receipt::Duplicate);
        assert_eq!(stats.foreign_records, 1);
        assert_eq!(
            inbound.take_ack(),
            Some(Ack {
                epoch: 9,
                received: 3,
                applied: 0
            })
        );
        let Some(InboundWork::Apply {
            ops,
            last_seq,
            bulk_end,
        }) = inbound.next_work(100)
        else {
            panic!()
        };
        assert_eq!(
            (ops.len(), last_seq, bulk_end),
            (3, 3, true),
            "merged up to the bulk end"
        );
        let Some(InboundWork::Sweep { keep, last_seq }) = inbound.applied(3, true) else {
            panic!()
        };
        assert_eq!(keep.len(), 3);
        assert!(!inbound.complete());
        assert_eq!(
            inbound.take_ack(),
            None,
            "nothing new is applied before the sweep"
        );
        inbound.swept(last_seq);
        assert!(inbound.complete());
        assert_eq!(
            inbound.take_ack(),
            Some(Ack {
                epoch: 9,
                received: 3,
                applied: 3
            })
        );
    }

    #[test]
    fn refused_ops_hold_back_the_ack_until_retried_or_replaced() {
        let peer = NodeId(2);
        let mut stats = Stats::default();
        let mut inbound = Inbound::new(Duration::ZERO, ReplicationFilter::default(), 32 << 20);
        inbound.reset(peer, &mut stats);
        let (r1, r2) = (record(1, peer), record(2, peer));
        let bulk = BatchFlags::BULK_BEGIN | BatchFlags::BULK_END;
        receive(&mut inbound, &frame(9, 1, bulk, &[]), &mut stats);
        receive(
            &mut inbound,
            &frame(9, 2, 0, &[r1.clone(), r2.clone()]),
            &mut stats,
        );
        receive(
            &mut inbound,
            &frame(9, 3, 0, std::slice::from_ref(&r2)),
            &mut stats,
        );
        let apply = |inbound: &mut Inbound, refused: &[usize]| {
            let Some(InboundWork::Apply {
                ops,
                last_seq,
                bulk_end,
            }) = inbound.next_work(1)
            else {
                panic!("no apply work");
            };
            let keys: Vec<_> = ops.iter().map(|op| *op.key()).collect();
            inbound.record_refusals(ops, refused);
            if let Some(InboundWork::Sweep { last_seq, .. }) = inbound.applied(last_seq, bulk_end) {
                inbound.swept(last_seq);
            }
            keys
        };
        apply(&mut inbound, &[]);
        assert_eq!(inbound.take_ack().map(|a| a.applied), Some(1));
        // Both ops of batch 2 refused: nothing past batch 1 is acknowledged as applied.
        apply(&mut inbound, &[0, 1]);
        assert!(inbound.has_refused());
        assert_eq!(inbound.take_ack().map(|a| a.applied), Some(1));
        // Batch 3 replaces r2's refused upsert; r1's still waits.
        apply(&mut inbound, &[]);
        assert_eq!(inbound.take_ack().map(|a| a.applied), Some(1));
        assert!(inbound.next_work(100).is_none(), "the retry is not due yet");
        inbound.retry_refused();
        assert_eq!(
            apply(&mut inbound, &[]),
            [r1.key],
            "only what was not replaced"
        );
        assert!(!inbound.has_refused());
        assert_eq!(inbound.take_ack().map(|a| a.applied), Some(3));
    }

    #[test]
    fn a_new_bulk_restarts_the_stream() {
        let peer = NodeId(2);
        let mut stats = Stats::default();
        let mut inbound = Inbound::new(Duration::ZERO, ReplicationFilter::default(), 32 << 20);
        inbound.reset(peer, &mut stats);
        receive(
            &mut inbound,
            &frame(1, 1, BatchFlags::BULK_BEGIN | BatchFlags::BULK_END, &[]),
            &mut stats,
        );
        let generation = inbound.generation();
        assert_eq!(
            receive(
                &mut inbound,
                &frame(2, 1, BatchFlags::BULK_BEGIN, &[record(1, peer)]),
                &mut stats
            ),
            Receipt::Accepted
        );
        assert_ne!(inbound.generation(), generation);
        assert_eq!(inbound.epoch(), Some(2));
        assert_eq!(
            inbound.queued_batches(),
            1,
            "the old epoch's unapplied batch is dropped"
        );
    }
}
