//! Sending our sessions: bulk sync on entering Synchronization, then incremental changes,
//! coalesced per session, in numbered batches that the peer acknowledges once applied.
//!
//! Why one file of about 1,000 lines: a third of it is its unit tests, which drive the
//! sender's private bulk and apart-log state directly.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use failoverd_wire::{
    Ack, BatchFlags, BatchWriter, NodeId, RECORD_LEN, SessionKey, SessionOp, SessionRecord,
    StreamPosition,
};

use super::apart::{ApartChange, ApartLog};
use crate::stats::Stats;
use crate::time::Instant;

/// Records of the dump examined per batch at most. A dump is handed over whole (a million
/// records); examining it at once took 235 ms of one driver turn (debug build, issue 10), so
/// it is examined as it is fed, this many records per batch, and a batch that found nothing
/// of ours goes out empty rather than looking further: every call stays bounded, and the
/// driver runs its other inputs between them.
pub(crate) const DUMP_SCAN: usize = 4096;

/// Where our bulk sync stands.
#[derive(Debug)]
enum Bulk {
    /// Not synchronizing.
    Idle,
    /// Waiting for the backend's dump. Keys changed since the request are newer than the dump.
    /// `resume_after`: the bulk resumes one a link loss interrupted, whose records up to this
    /// key the peer applied.
    AwaitingDump {
        touched: HashSet<SessionKey>,
        resume_after: Option<SessionKey>,
    },
    /// Sending the dump, then the tombstones of what was deleted while apart. `records` is
    /// the whole dump in key order, examined from `next` on as it is fed (only ours are sent).
    Feeding {
        records: Vec<SessionRecord>,
        next: usize,
        tombstones: Vec<SessionKey>,
        touched: HashSet<SessionKey>,
        /// Leaves out what the peer holds of an interrupted bulk: ours up to this key, unless
        /// changed while apart.
        resume_after: Option<SessionKey>,
    },
    /// Everything sent; waiting for the peer to apply the batch that ends the bulk.
    Sent { end_seq: u64 },
    /// The peer holds our sessions.
    Complete,
}

/// A batch the peer has not yet applied.
#[derive(Debug)]
struct InFlight {
    seq: u64,
    frame: Vec<u8>,
    keys: Vec<SessionKey>,
    /// Per stream record (not bulk), when its oldest change reached us: the lag samples.
    changed_at: Vec<Instant>,
    /// The stream records (not bulk) and what each did: if the link is lost before the peer
    /// applies them, they are changes made apart from it.
    stream: Vec<(SessionKey, ApartChange)>,
    /// Bulk-sync records in the batch.
    bulk_records: u64,
    /// The last (greatest) key of the bulk's records in the batch: the dump is sent in key
    /// order, so once the batch is applied the peer holds every record up to it.
    bulk_last_key: Option<SessionKey>,
}

/// What an acknowledgement changed.
#[derive(Debug, Default)]
pub(crate) struct AckOutcome {
    /// The peer received or applied more batches: retransmission can wait again.
    pub(crate) progress: bool,
    /// The bulk sync of this epoch is now applied by the peer: (epoch, records).
    pub(crate) bulk_applied: Option<(u32, u64)>,
}

/// Our side of the replication stream.
#[derive(Debug)]
pub(crate) struct Outbound {
    local: NodeId,
    epoch: u32,
    next_seq: u64,
    pending: HashMap<SessionKey, (SessionOp, Instant)>,
    pending_order: VecDeque<SessionKey>,
    bulk: Bulk,
    bulk_records: u64,
    in_flight: VecDeque<InFlight>,
    in_flight_keys: HashMap<SessionKey, u32>,
    received: u64,
    /// Changes were lost (backend overrun) or sent when the link died: what the peer holds is
    /// unknown until the next bulk sync completes.
    unsure: HashSet<SessionKey>,
    changes_lost: bool,
    /// A change was made while the stream was stopped (the peer away). Which sessions changed
    /// is not kept: the next epoch's bulk sync resends the whole table, so a queue would only
    /// grow with the table while nothing reads it.
    changed_while_stopped: bool,
    /// What changed while the stream was stopped (the peer away), to merge at the next start.
    apart: ApartLog,
    /// What changed while apart, being merged with the peer: sent with our bulk sync (whoever
    /// owns the entries by then, and deletes as tombstones), and winning over the peer's
    /// state of the same sessions (see [`crate::Node`]). Kept until the peer has applied our
    /// bulk and we have applied its own.
    merging: ApartLog,
    /// Of `merging`, the sessions the peer has applied: if the link fails before the merge is
    /// over, these are merged all the same (the peer's later changes of them are newer).
    merge_delivered: HashSet<SessionKey>,
    merge_received: bool,
    /// Of the current epoch's bulk, the peer applied every record up to this key.
    bulk_applied_to: Option<SessionKey>,
    /// The last bulk was interrupted after the peer applied its records up to this key: the
    /// next one may resume after it (see [`BatchFlags::RESUMED`]).
    resume_after: Option<SessionKey>,
    /// Changes collected from the apart log at the last stop (it overflowed): a resumed bulk
    /// would miss them.
    apart_collected_since_stop: u64,
    /// How long the peer holds our deletes before applying them (its `remove_hold`).
    peer_hold: Duration,
    /// Deletes the peer acknowledged within the last `peer_hold`, oldest first: acknowledged
    /// on arrival, a standby may still hold them, and drops them if it takes over. Not applied
    /// when the link is lost, they are changes made apart (their tombstones win the merge).
    held_by_peer: VecDeque<(Instant, SessionKey)>,
    /// The keys of `held_by_peer`, with when the latest of each was acknowledged.
    held_keys: HashMap<SessionKey, Instant>,
    writer: BatchWriter,
}

impl Outbound {
    pub(crate) fn new(local: NodeId, apart_limit: usize, peer_hold: Duration) -> Self {
        Self {
            local,
            epoch: 0,
            next_seq: 1,
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            bulk: Bulk::Idle,
            bulk_records: 0,
            in_flight: VecDeque::new(),
            in_flight_keys: HashMap::new(),
            received: 0,
            unsure: HashSet::new(),
            changes_lost: false,
            changed_while_stopped: false,
            apart: ApartLog::new(apart_limit),
            merging: ApartLog::new(apart_limit),
            merge_delivered: HashSet::new(),
            merge_received: false,
            bulk_applied_to: None,
            resume_after: None,
            apart_collected_since_stop: 0,
            peer_hold,
            held_by_peer: VecDeque::new(),
            held_keys: HashMap::new(),
            writer: BatchWriter::new(),
        }
    }

    /// Starts a new epoch: everything is resent by a bulk sync, so queued changes are dropped.
    /// What changed while apart joins what is being merged. With `may_resume` (the peer reads
    /// [`BatchFlags::RESUMED`]), a bulk a link loss interrupted resumes where the peer had
    /// applied it, provided every change since is known (none was collected from the apart
    /// log).
    ///
    /// `peer_applied`, from the peer's hello, says how far it applied our earlier stream: the
    /// changes of the batches it applied but could not acknowledge before the link was lost
    /// were not made apart from it.
    pub(crate) fn start(
        &mut self,
        epoch: u32,
        may_resume: bool,
        peer_applied: Option<StreamPosition>,
        stats: &mut Stats,
    ) {
        if let Some(applied) = peer_applied {
            stats.apart_changes_applied_by_peer += self.apart.forget_applied_by_peer(applied)
                + self.merging.forget_applied_by_peer(applied);
        }
        let apart = std::mem::replace(&mut self.apart, ApartLog::new(self.merging.limit()));
        let collected = self.merging.absorb(apart) + self.apart_collected_since_stop;
        stats.apart_changes_collected += collected;
        let resume_after = self
            .resume_after
            .take()
            .filter(|_| may_resume && collected == 0);
        self.apart_collected_since_stop = 0;
        self.bulk_applied_to = None;
        self.merge_received = false;
        self.epoch = epoch;
        self.next_seq = 1;
        self.pending.clear();
        self.pending_order.clear();
        self.in_flight.clear();
        self.in_flight_keys.clear();
        self.received = 0;
        self.unsure.clear();
        self.changes_lost = false;
        self.changed_while_stopped = false;
        self.bulk_records = 0;
        self.bulk = Bulk::AwaitingDump {
            touched: HashSet::new(),
            resume_after,
        };
    }

    /// This node's role changed: what it owns changed with it, so a bulk the peer holds part
    /// of no longer describes it and the next one is whole.
    pub(crate) fn forget_resume(&mut self) {
        self.resume_after = None;
    }

    /// Ends the epoch (link lost). Nothing queues until the next epoch, whose bulk sync resends
    /// everything: the queued changes are dropped, and remembered only as "something changed".
    pub(crate) fn stop(&mut self, now: Instant) {
        self.merging.remove_all(self.merge_delivered.drain());
        // What the peer may not have applied is a change made apart from it: sent again with
        // the next bulk, whole or resumed.
        let mut collected = 0;
        self.forget_released(now);
        self.held_keys.clear();
        for (_, key) in std::mem::take(&mut self.held_by_peer) {
            collected += self.note_apart(key, ApartChange::Deleted, None);
        }
        let mut unapplied = !self.pending_order.is_empty();
        let in_flight = std::mem::take(&mut self.in_flight);
        for batch in in_flight {
            unapplied |= !batch.stream.is_empty();
            let position = StreamPosition {
                epoch: self.epoch,
                seq: batch.seq,
            };
            for &(key, change) in &batch.stream {
                // A delete the peer applied may still be held there, and dropped if it takes
                // over: it stays a change made apart whatever the peer says it applied.
                let unacknowledged = Some(position).filter(|_| change == ApartChange::Changed);
                collected += self.note_apart(key, change, unacknowledged);
            }
            self.unsure.extend(batch.keys);
        }
        let pending: Vec<_> = self.pending_order.drain(..).collect();
        for key in pending {
            if let Some((op, _)) = self.pending.remove(&key) {
                collected += self.note_apart(key, ApartChange::of(&op), None);
            }
        }
        self.apart_collected_since_stop += collected;
        self.in_flight_keys.clear();
        self.changed_while_stopped |= unapplied;
        self.pending = HashMap::new();
        self.pending_order = VecDeque::new();
        self.resume_after = match self.bulk {
            Bulk::Feeding { .. } | Bulk::Sent { .. } => self.bulk_applied_to,
            _ => None,
        };
        if !matches!(self.bulk, Bulk::Complete) {
            self.changes_lost = true;
        }
        self.bulk = Bulk::Idle;
    }

    /// The current epoch.
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch
    }

    pub(crate) fn wants_dump(&self) -> bool {
        matches!(self.bulk, Bulk::AwaitingDump { .. })
    }

    pub(crate) fn bulk_complete(&self) -> bool {
        matches!(self.bulk, Bulk::Complete)
    }

    /// Whether `key` changed here while apart and the merge with the peer is not over: our
    /// state of it wins over what the peer sends.
    pub(crate) fn changed_apart(&self, key: &SessionKey) -> bool {
        self.merging.contains(key)
    }

    /// Whether this node deleted `key` while apart (its tombstone not yet merged, or being
    /// merged).
    pub(crate) fn deleted_apart(&self, key: &SessionKey) -> bool {
        [&self.merging, &self.apart]
            .iter()
            .any(|log| log.get(key) == Some(ApartChange::Deleted))
    }

    /// Records a change the peer does not have, or, when `unacknowledged` (the batch that
    /// carried it), may not have: it is merged when the two meet again.
    fn note_apart(
        &mut self,
        key: SessionKey,
        change: ApartChange,
        unacknowledged: Option<StreamPosition>,
    ) -> u64 {
        match unacknowledged {
            Some(batch) => self.apart.note_unacknowledged(key, change, batch),
            None => self.apart.note(key, change),
        }
    }

    /// Whether this node changed sessions while apart that the merge has not yet taken to the
    /// peer.
    pub(crate) fn has_apart_changes(&self) -> bool {
        !self.merging.is_empty() || !self.apart.is_empty()
    }

    /// The sessions created or updated here while apart, being merged.
    pub(crate) fn changed_apart_keys(&self) -> impl Iterator<Item = SessionKey> + '_ {
        self.merging.changed()
    }

    /// The peer's bulk sync of this synchronization is applied here.
    pub(crate) fn peer_bulk_applied(&mut self) {
        self.merge_received = true;
        self.end_merge_if_done();
    }

    /// The merge is over once each side has applied the other's bulk sync.
    fn end_merge_if_done(&mut self) {
        if self.merge_received && matches!(self.bulk, Bulk::Complete) {
            self.merging.clear();
            self.merge_delivered.clear();
        }
    }

    /// Records a change of the local table: see [`crate::Node::handle_local_changes`] for
    /// which changes are replicated.
    pub(crate) fn record_change(
        &mut self,
        op: SessionOp,
        active: bool,
        now: Instant,
        stats: &mut Stats,
    ) {
        let op = match op {
            SessionOp::Upsert(record) if record.owner == self.local => SessionOp::Upsert(record),
            // The session ended in our traffic: every copy goes, whoever owned it.
            SessionOp::Remove { key, .. } | SessionOp::RemoveAny { key } if active => {
                SessionOp::RemoveAny { key }
            }
            SessionOp::Remove { key, owner } if owner == self.local => {
                SessionOp::Remove { key, owner }
            }
            // A copy of a peer-owned entry changed or expired here, on the standby: not news.
            _ => return,
        };
        if matches!(self.bulk, Bulk::Idle) {
            self.changed_while_stopped = true;
            stats.apart_changes_collected += self.note_apart(*op.key(), ApartChange::of(&op), None);
            return;
        }
        let key = *op.key();
        if let Bulk::AwaitingDump { touched, .. } | Bulk::Feeding { touched, .. } = &mut self.bulk {
            touched.insert(key);
        }
        match self.pending.get_mut(&key) {
            Some(slot) => {
                slot.0 = op;
                stats.coalesced += 1;
            }
            None => {
                self.pending.insert(key, (op, now));
                self.pending_order.push_back(key);
            }
        }
    }

    /// Backend events were lost: nothing can be claimed replicated until a bulk sync.
    pub(crate) fn changes_lost(&mut self) {
        self.changes_lost = true;
    }

    pub(crate) fn handle_dump(&mut self, records: Vec<SessionRecord>, stats: &mut Stats) {
        if let Bulk::AwaitingDump {
            touched,
            resume_after,
        } = &mut self.bulk
        {
            let touched = std::mem::take(touched);
            let resume_after = *resume_after;
            // In key order, so that the peer's acknowledgements say how far it holds the bulk.
            // The one pass over the whole dump in a turn (about 100 ms for a million records in
            // a release build); which records are ours is examined as they are fed.
            let mut records = records;
            records.sort_unstable_by_key(|r| r.key);
            let local = self.local;
            let merging = &self.merging;
            // Ours: labelled so, or created or updated while apart (relabelled when fed).
            let ours = |key: &SessionKey| {
                records.binary_search_by_key(key, |r| r.key).is_ok_and(|i| {
                    records[i].owner == local || merging.get(key) == Some(ApartChange::Changed)
                })
            };
            // A session changed while apart (or whose change the peer may not have applied)
            // that is no longer ours was deleted.
            let mut tombstones: Vec<_> = merging.keys().filter(|key| !ours(key)).collect();
            tombstones.retain(|key| !touched.contains(key));
            tombstones.sort_unstable();
            if resume_after.is_some() {
                stats.bulk_resumes += 1;
            }
            self.bulk = Bulk::Feeding {
                records,
                next: 0,
                tombstones,
                touched,
                resume_after,
            };
        }
    }

    /// Builds the next batch frame if there is something to send and room in the window.
    pub(crate) fn next_batch(
        &mut self,
        max_bytes: usize,
        max_in_flight: usize,
        stats: &mut Stats,
    ) -> Option<Vec<u8>> {
        if self.in_flight.len() >= max_in_flight {
            return None;
        }
        let feeding = matches!(self.bulk, Bulk::Feeding { .. });
        let must_begin = feeding && self.next_seq == 1;
        if !feeding && !matches!(self.bulk, Bulk::Sent { .. } | Bulk::Complete) {
            return None;
        }
        let mut keys = Vec::new();
        let mut changed_at = Vec::new();
        let mut stream = Vec::new();
        let bulk_before = self.bulk_records;
        let mut flags = BatchFlags(if must_begin {
            BatchFlags::BULK_BEGIN
        } else {
            0
        });
        // The bulk goes first: it has an end, while changes may keep coming as fast as the link
        // carries them, and a bulk behind them would never complete (nor the resync that an
        // overrun started). The order does not matter to the peer: a key changed since the dump
        // was requested is skipped here and sent with the changes.
        let mut examined = 0;
        let mut bulk_last_key = None;
        if let Bulk::Feeding {
            records,
            next,
            tombstones,
            touched,
            resume_after,
        } = &mut self.bulk
        {
            if must_begin && resume_after.is_some() {
                flags.0 |= BatchFlags::RESUMED;
            }
            while *next < records.len()
                && examined < DUMP_SCAN
                && self.writer.frame_len() + RECORD_LEN <= max_bytes
            {
                let record = &mut records[*next];
                *next += 1;
                examined += 1;
                // Passed in key order, sent or not: a touched record goes with the changes.
                bulk_last_key = Some(record.key);
                // Ours, and what we created or updated while apart even if no longer labelled
                // ours (we stepped down since, and our copies became the peer's). `merging`
                // does not change while the bulk is fed: only a new epoch or the merge's end do.
                if self.merging.get(&record.key) == Some(ApartChange::Changed) {
                    record.owner = self.local;
                }
                if record.owner != self.local {
                    continue;
                }
                if resume_after.is_some_and(|after| record.key <= after)
                    && !self.merging.contains(&record.key)
                {
                    // The peer applied it before the link was lost.
                    stats.bulk_records_not_resent += 1;
                    continue;
                }
                if touched.contains(&record.key) {
                    continue;
                }
                self.writer.push_upsert(record);
                keys.push(record.key);
                self.bulk_records += 1;
            }
            while *next == records.len() && self.writer.frame_len() + RECORD_LEN <= max_bytes {
                let Some(key) = tombstones.pop() else { break };
                if touched.contains(&key) {
                    continue;
                }
                self.writer.push(&SessionOp::RemoveAny { key });
                keys.push(key);
                self.bulk_records += 1;
            }
            if *next == records.len() && tombstones.is_empty() {
                flags.0 |= BatchFlags::BULK_END;
                self.bulk = Bulk::Sent {
                    end_seq: self.next_seq,
                };
            }
        }
        while self.writer.frame_len() + RECORD_LEN <= max_bytes {
            let Some(key) = self.pending_order.pop_front() else {
                break;
            };
            // Invariant: every key in `pending_order` is in `pending`.
            let Some((op, since)) = self.pending.remove(&key) else {
                continue;
            };
            changed_at.push(since);
            stream.push((key, ApartChange::of(&op)));
            self.writer.push(&op);
            keys.push(key);
        }
        // An empty batch after examining part of the dump: the next call goes on from there.
        if self.writer.is_empty() && flags.0 == 0 && examined == 0 {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut frame = Vec::with_capacity(self.writer.frame_len());
        stats.records_sent += self.writer.len() as u64;
        stats.batches_sent += 1;
        self.writer.finish(self.epoch, seq, flags, &mut frame);
        for key in &keys {
            *self.in_flight_keys.entry(*key).or_insert(0) += 1;
        }
        self.in_flight.push_back(InFlight {
            seq,
            frame: frame.clone(),
            keys,
            changed_at,
            stream,
            bulk_records: self.bulk_records - bulk_before,
            bulk_last_key,
        });
        Some(frame)
    }

    pub(crate) fn handle_ack(&mut self, ack: Ack, now: Instant, stats: &mut Stats) -> AckOutcome {
        let mut outcome = AckOutcome::default();
        if ack.epoch != self.epoch || matches!(self.bulk, Bulk::Idle) {
            return outcome;
        }
        let sent = self.next_seq - 1;
        if ack.received > sent {
            stats.bogus_acks += 1;
            return outcome;
        }
        if ack.received > self.received {
            self.received = ack.received;
            outcome.progress = true;
        }
        while self
            .in_flight
            .front()
            .is_some_and(|batch| batch.seq <= ack.applied)
        {
            let Some(batch) = self.in_flight.pop_front() else {
                break;
            };
            outcome.progress = true;
            for since in &batch.changed_at {
                stats.lag.record(now.saturating_since(*since));
            }
            for &(key, change) in &batch.stream {
                if change == ApartChange::Deleted {
                    self.held_by_peer.push_back((now, key));
                    self.held_keys.insert(key, now);
                }
            }
            stats.stream_records_replicated += batch.changed_at.len() as u64;
            stats.bulk_records_replicated += batch.bulk_records;
            if batch.bulk_last_key.is_some() {
                self.bulk_applied_to = self.bulk_applied_to.max(batch.bulk_last_key);
            }
            for key in batch.keys {
                if self.merging.contains(&key) {
                    self.merge_delivered.insert(key);
                }
                if let Some(count) = self.in_flight_keys.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        self.in_flight_keys.remove(&key);
                    }
                }
            }
        }
        self.forget_released(now);
        if let Bulk::Sent { end_seq } = self.bulk
            && end_seq <= ack.applied
        {
            self.bulk = Bulk::Complete;
            outcome.bulk_applied = Some((self.epoch, self.bulk_records));
            self.end_merge_if_done();
        }
        outcome
    }

    /// Forgets the acknowledged deletes the peer has applied by now, held or not.
    fn forget_released(&mut self, now: Instant) {
        while self
            .held_by_peer
            .front()
            .is_some_and(|(at, _)| now.saturating_since(*at) > self.peer_hold)
        {
            if let Some((at, key)) = self.held_by_peer.pop_front()
                && self.held_keys.get(&key) == Some(&at)
            {
                self.held_keys.remove(&key);
            }
        }
    }

    /// Whether the peer may still hold our delete of `key` (acknowledged within its hold):
    /// its copy, if it sends one, predates that delete.
    pub(crate) fn peer_may_hold_delete(&self, key: &SessionKey) -> bool {
        self.held_keys.contains_key(key)
    }

    /// True while batches the peer has not applied are outstanding.
    pub(crate) fn awaiting_ack(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Frames to send again after no progress: every batch after the last one the peer
    /// received (go-back-N); if it received them all, or the link neither loses nor reorders
    /// (`reliable`: what is unacknowledged there is still on its way), the newest one alone, as
    /// a probe: the peer answers a duplicate with a fresh acknowledgement, so a lost one is not
    /// waited for forever.
    pub(crate) fn frames_to_resend(&self, reliable: bool) -> Vec<Vec<u8>> {
        let received = if reliable { u64::MAX } else { self.received };
        let unreceived: Vec<_> = self
            .in_flight
            .iter()
            .filter(|b| b.seq > received)
            .map(|b| b.frame.clone())
            .collect();
        if unreceived.is_empty() {
            return self
                .in_flight
                .back()
                .map(|b| b.frame.clone())
                .into_iter()
                .collect();
        }
        unreceived
    }

    /// True if the peer has applied the latest state of `key` (as far as this node knows).
    pub(crate) fn is_replicated(&self, key: &SessionKey) -> bool {
        self.bulk_complete()
            && !self.changes_lost
            && !self.has_unacked_change(key)
            && !self.unsure.contains(key)
    }

    /// True if a change of `key` is queued or sent but not yet applied by the peer.
    /// Conservative while the stream is stopped: after any change then, true for every key.
    pub(crate) fn has_unacked_change(&self, key: &SessionKey) -> bool {
        self.changed_while_stopped
            || self.pending.contains_key(key)
            || self.in_flight_keys.contains_key(key)
    }

    /// Changes queued and not yet sent.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Batches sent and not yet applied.
    pub(crate) fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// Nothing queued or in flight, bulk sync applied.
    pub(crate) fn is_idle(&self) -> bool {
        self.bulk_complete() && self.pending.is_empty() && self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LagHistogram;
    use crate::sync::test_record as record;
    use failoverd_wire::Message;

    fn batch_keys(frame: &[u8]) -> (BatchFlags, Vec<SessionRecord>) {
        let Message::SessionBatch(batch) = Message::parse(frame).unwrap() else {
            panic!()
        };
        let records = batch
            .sections()
            .flat_map(|s| s.ops().map(Result::unwrap).collect::<Vec<_>>())
            .filter_map(|op| match op {
                SessionOp::Upsert(record) => Some(record),
                _ => None,
            })
            .collect();
        (batch.flags(), records)
    }

    #[test]
    fn a_change_after_the_dump_request_wins_over_the_dump() {
        let me = NodeId(1);
        let mut stats = Stats::default();
        let mut out = Outbound::new(me, 1024, Duration::from_millis(300));
        out.start(7, false, None, &mut Stats::default());
        let mut newer = record(1, me);
        newer.mark = 42;
        out.record_change(
            SessionOp::Upsert(newer.clone()),
            true,
            Instant::ZERO,
            &mut stats,
        );
        // The dump was read before the change reached us: it holds the old version.
        out.handle_dump(
            vec![record(1, me), record(2, me), record(3, NodeId(2))],
            &mut Stats::default(),
        );
        let frame = out.next_batch(64 * 1024, 8, &mut stats).unwrap();
        let (flags, records) = batch_keys(&frame);
        assert!(flags.has(BatchFlags::BULK_BEGIN) && flags.has(BatchFlags::BULK_END));
        assert_eq!(
            records,
            vec![record(2, me), newer],
            "old version skipped, peer-owned entry not sent"
        );
    }

    /// A kernel dump comes in no particular order; a resumed bulk leaves out what the peer
    /// holds by key, so the bulk must go in key order whatever the dump's.
    #[test]
    fn a_bulk_resumed_after_a_link_loss_misses_no_record_of_an_unordered_dump() {
        let me = NodeId(1);
        let mut stats = Stats::default();
        let mut out = Outbound::new(me, 1024, Duration::from_millis(300));
        let dump = || (0..1000).rev().map(|i| record(i, me)).collect::<Vec<_>>();
        out.start(4, true, None, &mut stats);
        out.handle_dump(dump(), &mut stats);
        let mut held = std::collections::BTreeSet::new();
        for seq in 1..=2 {
            let frame = out.next_batch(16 * 1024, 4, &mut stats).unwrap();
            held.extend(batch_keys(&frame).1.into_iter().map(|r| r.key));
            out.handle_ack(
                Ack {
                    epoch: 4,
                    received: seq,
                    applied: seq,
                },
                Instant::ZERO,
                &mut stats,
            );
        }
        // The link is lost with the third batch in flight, unapplied.
        out.next_batch(16 * 1024, 4, &mut stats).unwrap();
        out.stop(Instant::ZERO);
        out.start(5, true, None, &mut stats);
        out.handle_dump(dump(), &mut stats);
        let mut resent = 0;
        while let Some(frame) = out.next_batch(16 * 1024, 64, &mut stats) {
            let (flags, records) = batch_keys(&frame);
            if resent == 0 {
                assert!(flags.has(BatchFlags::RESUMED));
            }
            resent += records.len();
            held.extend(records.into_iter().map(|r| r.key));
        }
        assert_eq!(stats.bulk_resumes, 1);
        assert!(resent < 1000, "resumed, not sent whole");
        assert_eq!(held.len(), 1000, "every record reached the peer");
    }

    #[test]
    fn a_bulk_sync_completes_while_changes_keep_coming_faster_than_batches_go() {
        let me = NodeId(1);
        let mut stats = Stats::default();
        let mut out = Outbound::new(me, 1024, Duration::from_millis(300));
        out.start(4, false, None, &mut Stats::default());
        out.handle_dump(
            (0..1000).map(|i| record(i, me)).collect(),
            &mut Stats::default(),
        );
        let per_batch = (16 * 1024) / RECORD_LEN;
        let mut next_key = 1000;
        let mut batches = 0;
        while !out.bulk_complete() {
            // More new sessions than one batch holds, before every batch.
            for _ in 0..2 * per_batch {
                next_key += 1;
                out.record_change(
                    SessionOp::Upsert(record(next_key, me)),
                    true,
                    Instant::ZERO,
                    &mut stats,
                );
            }
            out.next_batch(16 * 1024, 4, &mut stats).unwrap();
            batches += 1;
            out.handle_ack(
                Ack {
                    epoch: 4,
                    received: batches,
                    applied: batches,
                },
                Instant::ZERO,
                &mut stats,
            );
            assert!(
                batches as usize <= 1000 / per_batch + 2,
                "the bulk is not starved by the changes"
            );
        }
        assert!(out.pending_len() > 0, "the changes wait for the bulk");
    }

    #[test]
    fn changes_coalesce_and_peer_owned_changes_are_not_replicated() {
        let me = NodeId(1);
        let mut stats = Stats::default();
        let mut out = Outbound::new(me, 1024, Duration::from_millis(300));
        out.start(1, false, None, &mut Stats::default());
        out.handle_dump(vec![], &mut Stats::default());
        for mark in 0..5 {
            let mut r = record(9, me);
            r.mark = mark;
            out.record_change(SessionOp::Upsert(r), true, Instant::ZERO, &mut stats);
        }
        let peer = NodeId(2);
        out.record_change(
            SessionOp::Upsert(record(10, peer)),
            true,
            Instant::ZERO,
            &mut stats,
        );
        let expired = SessionOp::Remove {
            key: record(11, peer).key,
            owner: peer,
        };
        out.record_change(expired.clone(), false, Instant::ZERO, &mut stats);
        assert_eq!(
            out.pending_len(),
            1,
            "a peer-owned copy expiring on the standby is not news"
        );
        out.record_change(expired, true, Instant::ZERO, &mut stats);
        assert_eq!(
            out.pending_len(),
            2,
            "a session ending on the active node is"
        );
        assert_eq!(stats.coalesced, 4);
        let (_, records) = batch_keys(&out.next_batch(64 * 1024, 8, &mut stats).unwrap());
        assert_eq!(records.len(), 1, "one upsert (and one remove)");
        assert_eq!(records[0].mark, 4);
    }

    #[test]
    fn replicated_only_once_applied_and_window_limits_sending() {
        let me = NodeId(1);
        let mut stats = Stats::default();
        let mut out = Outbound::new(me, 1024, Duration::from_millis(300));
        out.start(3, false, None, &mut Stats::default());
        out.handle_dump(
            (0..1000).map(|i| record(i, me)).collect(),
            &mut Stats::default(),
        );
        let mut frames = Vec::new();
        while let Some(frame) = out.next_batch(16 * 1024, 4, &mut stats) {
            frames.push(frame);
        }
        assert_eq!(frames.len(), 4, "window of 4 batches");
        let key = record(0, me).key;
        assert!(!out.is_replicated(&key));
        let outcome = out.handle_ack(
            Ack {
                epoch: 3,
                received: 4,
                applied: 0,
            },
            Instant::ZERO,
            &mut stats,
        );
        assert!(outcome.progress);
        assert!(!out.is_replicated(&key), "received is not applied");
        out.handle_ack(
            Ack {
                epoch: 3,
                received: 4,
                applied: 4,
            },
            Instant::ZERO,
            &mut stats,
        );
        assert!(!out.is_replicated(&key), "bulk not complete yet");
        while let Some(frame) = out.next_batch(16 * 1024, 4, &mut stats) {
            frames.push(frame);
            let seq = frames.len() as u64;
            out.handle_ack(
                Ack {
                    epoch: 3,
                    received: seq,
                    applied: seq,
                },
                Instant::ZERO,
                &mut stats,
            );
        }
        assert!(out.bulk_complete());
        assert!(out.is_replicated(&key));
        let total: usize = frames.iter().map(|f| batch_keys(f).1.len()).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn acks_of_another_epoch_or_beyond_what_was_sent_are_ignored() {
        let me = NodeId(1);
        let mut stats = Stats::default();
        let mut out = Outbound::new(me, 1024, Duration::from_millis(300));
        out.start(5, false, None, &mut Stats::default());
        out.handle_dump(vec![record(1, me)], &mut Stats::default());
        out.next_batch(64 * 1024, 8, &mut stats).unwrap();
        assert!(
            !out.handle_ack(
                Ack {
                    epoch: 4,
                    received: 1,
                    applied: 1
                },
                Instant::ZERO,
                &mut stats
            )
            .progress
        );
        assert!(
            !out.handle_ack(
                Ack {
                    epoch: 5,
                    received: 9,
                    applied: 9
                },
                Instant::ZERO,
                &mut stats
            )
            .progress
        );
        assert_eq!(stats.bogus_acks, 1);
        assert!(!out.bulk_complete());
    }

    #[test]
    fn unreceived_batches_are_resent_and_a_lost_ack_is_probed_for() {
        let me = NodeId(1);
        let mut stats = Stats::default();
        let mut out = Outbound::new(me, 1024, Duration::from_millis(300));
        out.start(5, false, None, &mut Stats::default());
        out.handle_dump(
            (0..300).map(|i| record(i, me)).collect(),
            &mut Stats::default(),
        );
        let first = out.next_batch(8 * 1024, 8, &mut stats).unwrap();
        let second = out.next_batch(8 * 1024, 8, &mut stats).unwrap();
        assert!(out.awaiting_ack());
        let ack = |received, applied| Ack {
            epoch: 5,
            received,
            applied,
        };
        out.handle_ack(ack(1, 0), Instant::ZERO, &mut stats);
        assert_eq!(out.frames_to_resend(false), vec![second.clone()]);
        assert_eq!(
            out.frames_to_resend(true),
            vec![second.clone()],
            "only a probe"
        );
        assert_ne!(second, first);
        // Everything received, nothing acknowledged as applied: probe with the newest batch.
        out.handle_ack(ack(2, 0), Instant::ZERO, &mut stats);
        assert_eq!(out.frames_to_resend(false), vec![second]);
    }

    /// Lag is one sample per stream record, from its change to the ack that it was applied;
    /// bulk-sync records are counted apart and not sampled.
    #[test]
    fn lag_is_sampled_per_stream_record_and_bulk_records_are_counted_apart() {
        let me = NodeId(1);
        let mut stats = Stats::default();
        let mut out = Outbound::new(me, 1024, Duration::from_millis(300));
        out.start(2, false, None, &mut Stats::default());
        out.handle_dump(
            (1000..1300).map(|i| record(i, me)).collect(),
            &mut Stats::default(),
        );
        let ms = |ms: u64| Instant::ZERO + std::time::Duration::from_millis(ms);
        for i in 0..100u16 {
            out.record_change(
                SessionOp::Upsert(record(i, me)),
                true,
                ms(u64::from(i)),
                &mut stats,
            );
        }
        let mut seq = 0;
        while out.next_batch(16 * 1024, 64, &mut stats).is_some() {
            seq += 1;
        }
        let ack = Ack {
            epoch: 2,
            received: seq,
            applied: seq,
        };
        out.handle_ack(ack, ms(1000), &mut stats);
        assert!(out.is_idle());
        assert_eq!(stats.bulk_records_replicated, 300);
        assert_eq!(stats.stream_records_replicated, 100);
        assert_eq!(stats.lag.count(), 100, "one sample per stream record");
        // Lags are 901..=1000 ms: the median is 950 ms, to within the stated error.
        let p50 = stats.lag.quantile(0.5).as_secs_f64() * 1000.0;
        assert!(
            (950.0..=950.0 * (1.0 + LagHistogram::RELATIVE_ERROR)).contains(&p50),
            "{p50}"
        );
        assert_eq!(stats.lag.max(), std::time::Duration::from_millis(1000));
    }
}
