//! What this node changed while its peer was away: the sessions it created or updated, and
//! tombstones for those it deleted. When the two meet again, these changes win over the peer's
//! older state of the same sessions (see `docs/ARCHITECTURE.md`, "Split brain").

use std::collections::{HashMap, VecDeque};

use failoverd_wire::{SessionKey, SessionOp, StreamPosition};

/// The last change of one session while apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApartChange {
    /// Created or updated: the table holds its state.
    Changed,
    /// Deleted: the table no longer has it, so the tombstone is all that says so.
    Deleted,
}

impl ApartChange {
    /// What `op` does to its session.
    pub(crate) fn of(op: &SessionOp) -> Self {
        match op {
            SessionOp::Upsert(_) => Self::Changed,
            SessionOp::Remove { .. } | SessionOp::RemoveAny { .. } => Self::Deleted,
        }
    }
}

/// The changes made while apart, one per session, the oldest collected first past a bound (a
/// node apart for long does not grow without limit; what it collected is counted).
#[derive(Debug)]
pub(crate) struct ApartLog {
    limit: usize,
    changes: HashMap<SessionKey, ApartChange>,
    /// Of `changes`, those last made in a batch the peer had not acknowledged when the link
    /// was lost: the batch. The peer may have applied it (the acknowledgement lost with the
    /// link); its hellos say how far it did, and then the change is no longer one made apart.
    unacknowledged: HashMap<SessionKey, StreamPosition>,
    /// The keys of `changes`, in the order of their first change.
    order: VecDeque<SessionKey>,
}

impl ApartLog {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            changes: HashMap::new(),
            unacknowledged: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Takes in `newer`'s changes (made after ours, so they replace ours); returns how many
    /// changes were collected to stay within the bound.
    pub(crate) fn absorb(&mut self, newer: ApartLog) -> u64 {
        let mut collected = 0;
        for key in newer.order {
            if let Some(change) = newer.changes.get(&key) {
                collected += self.note(key, *change);
                if let Some(batch) = newer.unacknowledged.get(&key) {
                    self.unacknowledged.insert(key, *batch);
                }
            }
        }
        collected
    }

    /// Records that `key` changed so in `batch`, which the peer had not acknowledged when the
    /// link was lost; returns how many older changes were collected to stay within the bound.
    pub(crate) fn note_unacknowledged(
        &mut self,
        key: SessionKey,
        change: ApartChange,
        batch: StreamPosition,
    ) -> u64 {
        let collected = self.note(key, change);
        self.unacknowledged.insert(key, batch);
        collected
    }

    /// The peer applied `applied.epoch`'s batches up to `applied.seq`: the changes last made in
    /// those were not made apart from it. Returns how many are forgotten.
    pub(crate) fn forget_applied_by_peer(&mut self, applied: StreamPosition) -> u64 {
        let seen: Vec<SessionKey> = self
            .unacknowledged
            .iter()
            .filter(|(_, batch)| batch.epoch == applied.epoch && batch.seq <= applied.seq)
            .map(|(key, _)| *key)
            .collect();
        let forgotten = seen.len() as u64;
        self.remove_all(seen);
        forgotten
    }

    /// Records that `key` changed so while apart; returns how many older changes were
    /// collected to stay within the bound.
    pub(crate) fn note(&mut self, key: SessionKey, change: ApartChange) -> u64 {
        self.unacknowledged.remove(&key);
        if self.changes.insert(key, change).is_some() {
            return 0;
        }
        self.order.push_back(key);
        if self.changes.len() > self.limit && self.changes.capacity() < 2 * self.limit {
            // Room for twice the bound: the table then reuses the slots of collected entries
            // instead of growing again (a table more than half full grows on reinsertion).
            self.changes.reserve(self.limit);
        }
        let mut collected = 0;
        while self.changes.len() > self.limit {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.changes.remove(&oldest).is_some() {
                self.unacknowledged.remove(&oldest);
                collected += 1;
            }
        }
        collected
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Every session changed or deleted while apart.
    pub(crate) fn keys(&self) -> impl Iterator<Item = SessionKey> + '_ {
        self.order.iter().copied()
    }

    /// The sessions created or updated while apart.
    pub(crate) fn changed(&self) -> impl Iterator<Item = SessionKey> + '_ {
        self.of_kind(ApartChange::Changed)
    }

    pub(crate) fn get(&self, key: &SessionKey) -> Option<ApartChange> {
        self.changes.get(key).copied()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub(crate) fn contains(&self, key: &SessionKey) -> bool {
        self.changes.contains_key(key)
    }

    /// In the order of the first change: a replay sends the same frames.
    fn of_kind(&self, kind: ApartChange) -> impl Iterator<Item = SessionKey> + '_ {
        self.order
            .iter()
            .filter(move |key| self.changes.get(key) == Some(&kind))
            .copied()
    }

    /// Forgets the changes of `keys` (merged with the peer).
    pub(crate) fn remove_all(&mut self, keys: impl IntoIterator<Item = SessionKey>) {
        for key in keys {
            self.changes.remove(&key);
            self.unacknowledged.remove(&key);
        }
        let changes = &self.changes;
        self.order.retain(|key| changes.contains_key(key));
    }

    /// Forgets everything (merged with the peer), keeping the memory for the next absence.
    pub(crate) fn clear(&mut self) {
        self.changes.clear();
        self.unacknowledged.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::test_record as record;
    use failoverd_wire::NodeId;

    fn key(i: u16) -> SessionKey {
        record(i, NodeId(1)).key
    }

    fn batch(epoch: u32, seq: u64) -> StreamPosition {
        StreamPosition { epoch, seq }
    }

    /// Only changes last made in a batch the peer says it applied are forgotten: not those of
    /// a later batch or another epoch, nor a change made apart after the batch.
    #[test]
    fn the_peer_applied_only_what_its_position_covers() {
        let mut log = ApartLog::new(100);
        log.note_unacknowledged(key(1), ApartChange::Changed, batch(7, 3));
        log.note_unacknowledged(key(2), ApartChange::Deleted, batch(7, 4));
        log.note_unacknowledged(key(3), ApartChange::Changed, batch(7, 5));
        log.note_unacknowledged(key(4), ApartChange::Changed, batch(6, 1));
        log.note_unacknowledged(key(5), ApartChange::Changed, batch(7, 3));
        log.note(key(5), ApartChange::Deleted);
        log.note(key(6), ApartChange::Changed);
        assert_eq!(log.forget_applied_by_peer(batch(7, 4)), 2);
        let left: Vec<_> = log.keys().collect();
        assert_eq!(left, [key(3), key(4), key(5), key(6)]);
        assert_eq!(log.get(&key(5)), Some(ApartChange::Deleted));
        assert_eq!(log.forget_applied_by_peer(batch(7, 4)), 0);
    }

    /// Absorbing a newer log keeps its batches, and a change made apart later replaces one
    /// only in flight.
    #[test]
    fn absorb_keeps_the_batch_of_the_latest_change() {
        let mut older = ApartLog::new(100);
        older.note_unacknowledged(key(1), ApartChange::Changed, batch(7, 3));
        older.note_unacknowledged(key(2), ApartChange::Changed, batch(7, 3));
        let mut newer = ApartLog::new(100);
        newer.note(key(1), ApartChange::Deleted);
        newer.note_unacknowledged(key(3), ApartChange::Changed, batch(8, 1));
        older.absorb(newer);
        assert_eq!(older.forget_applied_by_peer(batch(7, 3)), 1);
        assert_eq!(older.forget_applied_by_peer(batch(8, 1)), 1);
        assert_eq!(older.keys().collect::<Vec<_>>(), [key(1)]);
    }
}
