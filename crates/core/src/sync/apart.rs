//! What this node changed while its peer was away: the sessions it created or updated, and
//! tombstones for those it deleted. When the two meet again, these changes win over the peer's
//! older state of the same sessions (see `docs/ARCHITECTURE.md`, "Split brain").

use std::collections::{HashMap, VecDeque};

use failoverd_wire::{SessionKey, SessionOp};

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
    /// The keys of `changes`, in the order of their first change.
    order: VecDeque<SessionKey>,
}

impl ApartLog {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            changes: HashMap::new(),
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
            }
        }
        collected
    }

    /// Records that `key` changed so while apart; returns how many older changes were
    /// collected to stay within the bound.
    pub(crate) fn note(&mut self, key: SessionKey, change: ApartChange) -> u64 {
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
        }
        let changes = &self.changes;
        self.order.retain(|key| changes.contains_key(key));
    }

    /// Forgets everything (merged with the peer), keeping the memory for the next absence.
    pub(crate) fn clear(&mut self) {
        self.changes.clear();
        self.order.clear();
    }
}
