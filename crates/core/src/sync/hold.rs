//! Deletes from the peer wait a moment before they are applied.
//!
//! A node that is failing often deletes many sessions just before it loses the active role:
//! the kernel flushes the masquerade entries of an interface that goes down, and a node losing
//! its links sees its sessions end. Replicated at once, such a burst would wipe the survivor's
//! copies of the very sessions it is about to carry. So a delete from the peer is held for a
//! while (longer than the role authority takes to move the role: see
//! `NodeConfig::remove_hold`), and dropped if this node takes over meanwhile without the peer
//! handing over on purpose, together with the deletes that arrive within one hold after such
//! a takeover (sent before the peer knew): the survivor keeps the sessions, and a session that
//! really ended merely lingers until its own timeout. Unless the peer was healthy: still
//! active when the window ends, or outranked by a higher priority (it says so in its hellos). An upsert of the same key cancels the
//! held delete, so a session that was ended and begun again with the same tuple is not deleted
//! late.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use failoverd_wire::{SessionKey, SessionOp};

use crate::time::Instant;

/// Deletes from the peer, waiting until they are due.
#[derive(Debug)]
pub(crate) struct RemoveHold {
    hold: Duration,
    /// Held deletes in arrival order, with when they are due and their ticket.
    queue: VecDeque<(Instant, u64, SessionOp)>,
    /// The ticket of the latest held delete of each key; a queued delete whose ticket is no
    /// longer here was cancelled (or superseded by a later delete of the same key).
    latest: HashMap<SessionKey, u64>,
    next_ticket: u64,
    /// Until this instant deletes are suspect: this node took over from a peer that did not
    /// hand over on purpose (see [`RemoveHold::discard`]).
    distrust_until: Option<Instant>,
    /// The suspect deletes: held when this node took over, or arriving within one hold after.
    /// Dropped when the window ends, unless the peer still says it is active then (a split
    /// brain, not a failing node: they ended real sessions; see [`RemoveHold::settle`]).
    suspects: BTreeMap<SessionKey, SessionOp>,
}

/// What [`RemoveHold::split`] did with a batch's ops.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split {
    /// To apply now (upserts, or everything when nothing is held).
    pub(crate) now: Vec<SessionOp>,
    /// Deletes taken into the hold.
    pub(crate) held: usize,
    /// Deletes taken as suspects on arrival (sent by a peer that may have lost the role by
    /// failing).
    pub(crate) suspect: usize,
}

impl RemoveHold {
    pub(crate) fn new(hold: Duration) -> Self {
        Self {
            hold,
            queue: VecDeque::new(),
            latest: HashMap::new(),
            next_ticket: 0,
            distrust_until: None,
            suspects: BTreeMap::new(),
        }
    }

    /// Takes the deletes out of `ops` (in stream order) into the hold, or drops them within a
    /// hold after a takeover the peer did not hand over; the rest is to apply now. An upsert
    /// cancels a held delete of its key.
    /// A delete of a session this node deleted itself while apart (`deleted_here`) is applied
    /// at once: it only confirms our tombstone (the peer echoes it after the merge, to remove a
    /// copy we took back from its older bulk), and dropped it would let that copy outlive the
    /// merge if we take over.
    pub(crate) fn split(
        &mut self,
        now: Instant,
        ops: Vec<SessionOp>,
        active: bool,
        deleted_here: &dyn Fn(&SessionKey) -> bool,
    ) -> Split {
        let mut split = Split {
            now: Vec::with_capacity(ops.len()),
            held: 0,
            suspect: 0,
        };
        if self.hold.is_zero() {
            split.now = ops;
            return split;
        }
        let distrusted = self.distrust_until.is_some_and(|until| now < until);
        for op in ops {
            match op {
                SessionOp::Upsert(ref record) => {
                    self.latest.remove(&record.key);
                    self.suspects.remove(&record.key);
                    split.now.push(op);
                }
                SessionOp::Remove { ref key, .. } | SessionOp::RemoveAny { ref key }
                    if deleted_here(key) =>
                {
                    split.now.push(op);
                }
                SessionOp::Remove { key, .. } | SessionOp::RemoveAny { key } if distrusted => {
                    self.suspects.insert(key, op);
                    split.suspect += 1;
                }
                // An active node is not the one a failing peer's flush would wipe out: its
                // peer is standby and sends deletes of its own entries and of what it deleted
                // while apart, which must take effect before its bulk's sweep.
                SessionOp::Remove { .. } | SessionOp::RemoveAny { .. } if active => {
                    split.now.push(op);
                }
                SessionOp::Remove { key, .. } | SessionOp::RemoveAny { key } => {
                    let ticket = self.next_ticket;
                    self.next_ticket += 1;
                    self.latest.insert(key, ticket);
                    self.queue.push_back((now + self.hold, ticket, op));
                    split.held += 1;
                }
            }
        }
        split
    }

    /// The held deletes that are due at `now`, in arrival order.
    pub(crate) fn release(&mut self, now: Instant) -> Vec<SessionOp> {
        let mut due = Vec::new();
        while let Some((at, ..)) = self.queue.front()
            && *at <= now
        {
            let Some((_, ticket, op)) = self.queue.pop_front() else {
                break;
            };
            if self.latest.get(op.key()) == Some(&ticket) {
                self.latest.remove(op.key());
                due.push(op);
            }
        }
        due
    }

    /// Every held delete, due or not, in arrival order.
    pub(crate) fn release_all(&mut self) -> Vec<SessionOp> {
        match self.queue.back() {
            Some((last, ..)) => {
                let last = *last;
                self.release(last)
            }
            None => Vec::new(),
        }
    }

    /// Makes every held delete suspect, and those arriving within one hold from `now` (this
    /// node takes over from a peer that did not hand over on purpose: its last deletes may be
    /// a flush).
    pub(crate) fn discard(&mut self, now: Instant) {
        self.distrust_until = Some(now + self.hold);
        for (_, ticket, op) in self.queue.drain(..) {
            if self.latest.get(op.key()) == Some(&ticket) {
                self.suspects.insert(*op.key(), op);
            }
        }
        self.latest.clear();
    }

    /// This node changed `key` itself: a suspect delete of it would end a session its own
    /// traffic carries.
    pub(crate) fn cancel_suspect(&mut self, key: &SessionKey) {
        self.suspects.remove(key);
    }

    /// Once the window after a takeover has ended at `now`: the suspect deletes to apply if the
    /// peer still says it is active (both were: each node's traffic ended its own sessions) or
    /// that a higher priority outranked it (it was healthy until then), and how many were
    /// dropped otherwise (the peer was failing: a flush).
    pub(crate) fn settle(&mut self, now: Instant, peer_healthy: bool) -> (Vec<SessionOp>, usize) {
        if self.distrust_until.is_some_and(|until| now < until) {
            return (Vec::new(), 0);
        }
        self.distrust_until = None;
        let suspects = std::mem::take(&mut self.suspects);
        if peer_healthy {
            (suspects.into_values().collect(), 0)
        } else {
            (Vec::new(), suspects.len())
        }
    }

    /// Forgets every held delete without a window (the stream they came in is replaced: the
    /// next bulk sync's sweep covers them), and returns how many were still live.
    pub(crate) fn clear(&mut self) -> usize {
        self.queue.clear();
        std::mem::take(&mut self.latest).len()
    }

    /// The peer is gone: the suspect deletes are dropped (how many is returned).
    pub(crate) fn drop_suspects(&mut self) -> usize {
        self.distrust_until = None;
        std::mem::take(&mut self.suspects).len()
    }

    /// Whether a delete of `key` is held (or suspect).
    pub(crate) fn is_held(&self, key: &SessionKey) -> bool {
        self.latest.contains_key(key) || self.suspects.contains_key(key)
    }

    /// When the next held delete is due, or the window after a takeover ends.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let held = self.queue.front().map(|(at, ..)| *at);
        match (held, self.distrust_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::test_record as record;
    use failoverd_wire::NodeId;

    const HOLD: Duration = Duration::from_millis(300);

    fn remove(i: u16) -> SessionOp {
        SessionOp::Remove {
            key: record(i, NodeId(2)).key,
            owner: NodeId(2),
        }
    }

    fn upsert(i: u16) -> SessionOp {
        SessionOp::Upsert(record(i, NodeId(2)))
    }

    /// What `split` passes on at once.
    fn split(hold: &mut RemoveHold, now: Instant, ops: Vec<SessionOp>) -> Vec<SessionOp> {
        hold.split(now, ops, false, &|_| false).now
    }

    #[test]
    fn deletes_wait_until_due_and_upserts_pass_at_once() {
        let t0 = Instant::ZERO;
        let mut hold = RemoveHold::new(HOLD);
        assert_eq!(
            split(&mut hold, t0, vec![upsert(1), remove(2)]),
            vec![upsert(1)]
        );
        assert_eq!(hold.next_due(), Some(t0 + HOLD));
        assert_eq!(hold.release(t0 + HOLD / 2), vec![]);
        assert_eq!(hold.release(t0 + HOLD), vec![remove(2)]);
        assert_eq!(hold.next_due(), None);
    }

    #[test]
    fn an_upsert_of_the_key_cancels_its_held_delete() {
        let t0 = Instant::ZERO;
        let mut hold = RemoveHold::new(HOLD);
        assert_eq!(split(&mut hold, t0, vec![remove(1), remove(2)]), vec![]);
        assert_eq!(split(&mut hold, t0, vec![upsert(1)]), vec![upsert(1)]);
        // Ended again after it began again: the later delete stands.
        assert_eq!(split(&mut hold, t0, vec![remove(2)]), vec![]);
        assert_eq!(hold.release(t0 + HOLD), vec![remove(2)]);
    }

    #[test]
    fn a_takeover_makes_what_is_held_and_what_arrives_within_a_hold_suspect() {
        let t0 = Instant::ZERO;
        for peer_still_active in [false, true] {
            let mut hold = RemoveHold::new(HOLD);
            hold.split(t0, (0..10).map(remove).collect(), false, &|_| false);
            let takeover = t0 + HOLD / 2;
            hold.discard(takeover);
            assert_eq!(hold.release(t0 + HOLD), vec![]);
            // Sent before the peer knew it had lost the role: suspect, upserts still pass and
            // clear their key.
            let late = hold.split(
                takeover + HOLD / 2,
                vec![remove(11), upsert(12), upsert(3)],
                false,
                &|_| false,
            );
            assert_eq!(
                (late.now, late.held, late.suspect),
                (vec![upsert(12), upsert(3)], 0, 1)
            );
            // Our own traffic changed one: its delete no longer stands.
            hold.cancel_suspect(remove(4).key());
            assert_eq!(
                hold.settle(takeover + HOLD / 2, peer_still_active),
                (vec![], 0)
            );
            assert_eq!(hold.next_due(), Some(takeover + HOLD));
            // One hold after the takeover: a peer that still says it is active was not
            // failing, and its deletes apply (all but the two superseded); else they go.
            let (released, dropped) = hold.settle(takeover + HOLD, peer_still_active);
            if peer_still_active {
                let expected: Vec<_> = [0, 1, 2, 5, 6, 7, 8, 9, 11].map(remove).into();
                assert_eq!((released, dropped), (expected, 0));
            } else {
                assert_eq!((released, dropped), (vec![], 9));
            }
            // Deletes are held again.
            let later = hold.split(takeover + HOLD, vec![remove(13)], false, &|_| false);
            assert_eq!((later.held, later.suspect), (1, 0));
            assert_eq!(hold.release(takeover + 2 * HOLD), vec![remove(13)]);
        }
    }

    #[test]
    fn a_delete_of_what_we_deleted_apart_is_applied_at_once() {
        let mut hold = RemoveHold::new(HOLD);
        let ours = *remove(1).key();
        let split = hold.split(Instant::ZERO, vec![remove(1), remove(2)], false, &|key| {
            *key == ours
        });
        assert_eq!((split.now, split.held), (vec![remove(1)], 1));
    }

    #[test]
    fn clearing_opens_no_window() {
        let t0 = Instant::ZERO;
        let mut hold = RemoveHold::new(HOLD);
        hold.split(t0, vec![remove(1)], false, &|_| false);
        assert_eq!(hold.clear(), 1);
        assert_eq!(hold.split(t0, vec![remove(2)], false, &|_| false).held, 1);
    }

    #[test]
    fn no_hold_passes_everything() {
        let mut hold = RemoveHold::new(Duration::ZERO);
        let ops = vec![remove(1), upsert(2)];
        assert_eq!(split(&mut hold, Instant::ZERO, ops.clone()), ops);
    }
}
