//! Backend work: the one outstanding action (dump, apply, sweep, adopt, digest), which is
//! started next, and what its result changes; local changes and lost events from the backend.

use std::collections::HashSet;
use std::time::Duration;

use failoverd_wire::{DigestView, NodeId, Role, SessionKey, SessionOp};

use super::session::PendingSweep;
use super::types::{Action, ActionResult, Digest, Token};
use super::{MAX_BACKOFF, Node};
use crate::event::{ApplyFailure, BackendAction, Event};
use crate::failure::ActionError;
use crate::sync::inbound::InboundWork;
use crate::time::Instant;
use crate::timer::Timer;

/// Least time between two resyncs forced by lost backend events. Each is a full bulk sync both
/// ways: restarted at every overrun of a flood, none would ever complete. While overruns keep
/// coming the wait doubles, up to [`MAX_RESYNC_BACKOFF`]; after a quiet spell it is back here.
pub(super) const MIN_RESYNC_BACKOFF: Duration = Duration::from_millis(500);

/// Most time between two resyncs forced by lost backend events.
pub(super) const MAX_RESYNC_BACKOFF: Duration = Duration::from_secs(8);

/// What an outstanding backend action was for.
#[derive(Debug)]
pub(super) enum Work {
    Dump {
        epoch: u32,
    },
    Apply {
        generation: u64,
        last_seq: u64,
        bulk_end: bool,
        /// The peer's changes applied as ours (we are active): announced back once applied,
        /// so both copies carry the same owner (and a copy the peer took back meanwhile goes).
        claimed: Vec<SessionOp>,
        /// Where `claimed` came from: (index into the ops, the owner the peer sent).
        unclaimed: Vec<(usize, NodeId)>,
    },
    Sweep {
        generation: u64,
        last_seq: u64,
    },
    Adopt,
    Digest {
        /// The peer's digest to compare ours with; `None` for our own, to send.
        peer_digest: Option<Box<Digest>>,
    },
}

impl Node {
    /// Changes of the local table reported by the backend, in order (the backend never reports
    /// what it applied for the peer). Creates and updates of entries this node owns are
    /// replicated. A delete is replicated if this node owns the entry, or if this node is active:
    /// the session ended in the traffic it forwards, so the peer's copy goes too. A peer-owned
    /// entry that disappears on the standby merely expired there (it sees none of its packets)
    /// and must not delete the owner's live session. While the peer is away nothing is queued:
    /// the bulk sync that starts the next Synchronization carries the whole table.
    pub fn handle_local_changes(&mut self, now: Instant, ops: impl IntoIterator<Item = SessionOp>) {
        let active = self.role == Role::Active;
        for op in ops {
            self.inbound.cancel_suspect(op.key());
            self.outbound
                .record_change(op, active, now, &mut self.stats);
        }
    }

    /// The backend lost change events: resynchronize with a new bulk sync, at once unless
    /// one forced so began less than the backoff ago (then when it ends: see
    /// `MIN_RESYNC_BACKOFF`).
    pub fn handle_changes_lost(&mut self, now: Instant) {
        self.stats.changes_lost += 1;
        self.outbound.changes_lost();
        self.emit(now, Event::ChangesLost);
        if !self.state.synchronizing() || self.timers.is_set(Timer::ResyncBackoff) {
            // Outside Synchronization the next one resends everything anyway; a deferred
            // resync covers this loss too.
            return;
        }
        match self.overrun_resync {
            Some((last, wait)) if now < last + wait => {
                self.stats.resyncs_deferred += 1;
                self.timers.set(Timer::ResyncBackoff, last + wait);
            }
            _ => self.resync_after_overrun(now),
        }
    }

    /// The result of the backend action identified by `token`.
    pub fn handle_action_done(&mut self, now: Instant, token: Token, result: ActionResult) {
        let Some((expected, work)) = self.outstanding.take() else {
            return;
        };
        if expected != token {
            self.outstanding = Some((expected, work));
            return;
        }
        match (work, result) {
            (Work::Dump { epoch }, ActionResult::Dumped(Ok(records))) => {
                // A dump for a stream since restarted or stopped describes nothing to send.
                if epoch == self.outbound.epoch() && self.state.synchronizing() {
                    self.outbound.handle_dump(records, &mut self.stats);
                }
            }
            (Work::Dump { .. }, ActionResult::Dumped(Err(error))) => {
                self.action_failed(now, BackendAction::Dump, error);
                if let Some(session) = self.state.session_mut() {
                    session.dump_blocked = true;
                }
                self.timers
                    .set(Timer::DumpRetry, now + self.config.retransmit_timeout);
            }
            (
                Work::Apply {
                    generation,
                    last_seq,
                    bulk_end,
                    claimed,
                    unclaimed,
                },
                ActionResult::Applied {
                    mut ops,
                    applied,
                    refused,
                },
            ) => {
                // A refused op is tried again as the peer sent it: whether to claim it is
                // decided by the role at the retry.
                for (index, owner) in unclaimed {
                    if let Some(SessionOp::Upsert(record)) = ops.get_mut(index) {
                        record.owner = owner;
                    }
                }
                self.stats.records_applied += applied;
                let refused_keys: HashSet<SessionKey> = refused
                    .iter()
                    .filter_map(|(index, _)| ops.get(*index).map(|op| *op.key()))
                    .collect();
                for op in claimed {
                    if !refused_keys.contains(op.key()) {
                        self.outbound.record_change(op, true, now, &mut self.stats);
                    }
                }
                if let Some((first, error)) = refused.first() {
                    self.stats.apply_failures += refused.len() as u64;
                    let first = ApplyFailure::Refused {
                        error: error.clone(),
                        key: ops.get(*first).map(|op| *op.key()),
                    };
                    self.emit(
                        now,
                        Event::ApplyFailed {
                            count: refused.len() as u64,
                            first,
                        },
                    );
                }
                if generation == self.inbound.generation() {
                    // Refused ops are not acknowledged, and are tried again after a backoff
                    // that doubles while they keep failing.
                    let indices: Vec<usize> = refused.iter().map(|(index, _)| *index).collect();
                    if !self.inbound.record_refusals(ops, &indices) {
                        self.apply_retry_backoff = 1;
                        self.timers.stop(Timer::ApplyRetry);
                    } else if self.timers.get(Timer::ApplyRetry).is_none() {
                        let wait = self.config.retransmit_timeout * self.apply_retry_backoff;
                        self.apply_retry_backoff = (self.apply_retry_backoff * 2).min(MAX_BACKOFF);
                        self.timers.set(Timer::ApplyRetry, now + wait);
                    }
                    if let Some(InboundWork::Sweep { keep, last_seq }) =
                        self.inbound.applied(last_seq, bulk_end)
                    {
                        // A bulk's sweep: the stream of this generation is a synchronization's.
                        if let Some(session) = self.state.session_mut() {
                            session.pending_sweep = Some(PendingSweep {
                                keep,
                                last_seq,
                                generation,
                            });
                        }
                    } else if bulk_end {
                        self.bulk_received(now, 0);
                    }
                }
            }
            (
                Work::Sweep {
                    generation,
                    last_seq,
                },
                ActionResult::Swept(result),
            ) => {
                // A sweep of a stream since restarted is stale: the next bulk's sweep covers it.
                let current = generation == self.inbound.generation();
                let swept = match result {
                    Ok(swept) => swept,
                    Err(error) => {
                        // Stale entries of the peer stay: not ready until the next sync.
                        self.apply_failed |= current;
                        self.action_failed(now, BackendAction::Sweep, error);
                        0
                    }
                };
                if current {
                    self.stats.swept += swept;
                    self.inbound.swept(last_seq);
                    self.bulk_received(now, swept);
                }
            }
            (Work::Digest { peer_digest }, ActionResult::Digested(Ok(ours))) => {
                // Outside Synchronization the digest was for a session that has ended.
                if self.state.synchronizing() {
                    match peer_digest {
                        Some(theirs) => self.compare_digests(now, theirs, ours),
                        None => self.send_digest(&ours),
                    }
                }
            }
            // The next digest interval brings the next round.
            (Work::Digest { .. }, ActionResult::Digested(Err(error))) => {
                self.action_failed(now, BackendAction::Digest, error);
            }
            (Work::Adopt, ActionResult::Adopted(Ok(adopted))) => self.stats.adopted += adopted,
            (Work::Adopt, ActionResult::Adopted(Err(error))) => {
                self.action_failed(now, BackendAction::Adopt, error);
            }
            (work, result) => {
                // The adapter answers every action with a result of its kind
                // (`failoverd_backends::perform`): anything else is a driver bug. Still, a
                // failure it carries is reported.
                debug_assert!(false, "{result:?} is no result of {work:?}");
                if let Some((action, error)) = failure(result) {
                    self.action_failed(now, action, error);
                }
            }
        }
        self.drive_backend();
        self.update_role(now);
    }

    /// A whole backend action failed: reported, as refused ops are.
    fn action_failed(&mut self, now: Instant, action: BackendAction, error: ActionError) {
        let first = ApplyFailure::Action { action, error };
        self.emit(now, Event::ApplyFailed { count: 0, first });
    }

    /// Our digest of our sessions, for the peer to compare with its copy.
    fn send_digest(&mut self, ours: &Digest) {
        let mut frame = Vec::new();
        DigestView::emit(self.digest_round, ours, &mut frame);
        self.digest_round = self.digest_round.wrapping_add(1);
        self.stats.digests_sent += 1;
        self.control.push_back(frame);
    }

    /// Starts the next backend action if none is outstanding. Order: adopt (takeover), the
    /// sweep that ends a bulk, our dump, then the peer's ops in bounded slices.
    pub(super) fn drive_backend(&mut self) {
        if self.outstanding.is_some() {
            return;
        }
        let token = Token(self.next_token);
        let (action, work) = if let Some((from, to)) = self.adopt.take() {
            (Action::Adopt { token, from, to }, Work::Adopt)
        } else if let Some(PendingSweep {
            mut keep,
            last_seq,
            generation,
        }) = self
            .state
            .session_mut()
            .and_then(|s| s.pending_sweep.take())
        {
            let owner = self.last_peer.unwrap_or_default();
            // What we changed while apart stays until our bulk has taken it to the peer (we may
            // have stepped down since, so that it is labelled the peer's).
            keep.extend(self.outbound.changed_apart_keys());
            (
                Action::Sweep { token, owner, keep },
                Work::Sweep {
                    generation,
                    last_seq,
                },
            )
        } else if self.outbound.wants_dump()
            && self.state.session().is_some_and(|s| !s.dump_blocked)
        {
            (
                Action::Dump { token },
                Work::Dump {
                    epoch: self.outbound.epoch(),
                },
            )
        } else {
            match self.inbound.next_work(self.config.max_apply_slice) {
                Some(InboundWork::Apply {
                    mut ops,
                    last_seq,
                    bulk_end,
                }) => {
                    if self.role == Role::Active {
                        // What this node changed while apart wins over the peer's state of the
                        // same sessions until the merge is over (docs/ARCHITECTURE.md, "Split
                        // brain"); a node that is standby takes the active one's state.
                        // So does a delete of ours that the peer may still hold (acknowledged on
                        // arrival): its copy of the session predates it (both active, the peer
                        // resends what it adopted at its takeover).
                        let before = ops.len();
                        ops.retain(|op| {
                            let superseded = match op {
                                SessionOp::Upsert(_) => {
                                    self.outbound.peer_may_hold_delete(op.key())
                                }
                                _ => false,
                            };
                            !(superseded || self.outbound.changed_apart(op.key()))
                        });
                        self.stats.peer_changes_superseded += (before - ops.len()) as u64;
                    }
                    let mut claimed = Vec::new();
                    let mut unclaimed = Vec::new();
                    let peer_active = self.peer_active();
                    if self.role == Role::Active && self.symmetric() && peer_active {
                        self.applied_for_active_peer |=
                            ops.iter().any(|op| matches!(op, SessionOp::Upsert(_)));
                    }
                    if self.role == Role::Active && self.symmetric() && !peer_active {
                        // The active node owns what it holds: the peer's changes (made while it
                        // forwarded and reaching us after we took over, or made after a split
                        // brain) are applied as ours. Not while the peer forwards too (both
                        // active, the link up): each would claim and echo the other's changes.
                        for (index, op) in ops.iter_mut().enumerate() {
                            match op {
                                SessionOp::Upsert(record) => {
                                    unclaimed.push((index, record.owner));
                                    record.owner = self.config.node_id;
                                    claimed.push(SessionOp::Upsert(record.clone()));
                                }
                                // Echoed too: the peer may hold a copy again that it took from
                                // our bulk sync before this delete reached us.
                                SessionOp::Remove { key, .. } | SessionOp::RemoveAny { key } => {
                                    claimed.push(SessionOp::RemoveAny { key: *key });
                                }
                            }
                        }
                    }
                    let generation = self.inbound.generation();
                    (
                        Action::Apply { token, ops },
                        Work::Apply {
                            generation,
                            last_seq,
                            bulk_end,
                            claimed,
                            unclaimed,
                        },
                    )
                }
                Some(InboundWork::Sweep { .. }) => return,
                // Digests come after everything received before them is applied.
                None => {
                    let Some(session) = self.state.session_mut() else {
                        return;
                    };
                    if let Some(theirs) = session.peer_digest.take() {
                        let owner = self.last_peer.unwrap_or_default();
                        (
                            Action::Digest { token, owner },
                            Work::Digest {
                                peer_digest: Some(theirs),
                            },
                        )
                    } else if std::mem::take(&mut session.digest_due) {
                        let owner = self.config.node_id;
                        (
                            Action::Digest { token, owner },
                            Work::Digest { peer_digest: None },
                        )
                    } else {
                        return;
                    }
                }
            }
        };
        self.next_token += 1;
        self.outstanding = Some((token, work));
        self.actions.push_back(action);
    }

    pub(super) fn bulk_received(&mut self, now: Instant, swept: u64) {
        self.stats.bulk_syncs_received += 1;
        self.outbound.peer_bulk_applied();
        let epoch = self.inbound.epoch().unwrap_or_default();
        let records = self.inbound.bulk_records();
        self.hello_due = true;
        self.emit(
            now,
            Event::BulkReceived {
                epoch,
                records,
                swept,
            },
        );
    }

    /// A resync forced by lost backend events. The wait before the next one doubles when this
    /// one follows the last within twice its wait (overruns keep coming), else starts over.
    pub(super) fn resync_after_overrun(&mut self, now: Instant) {
        let wait = match self.overrun_resync {
            Some((last, wait)) if now < last + 2 * wait => (2 * wait).min(MAX_RESYNC_BACKOFF),
            _ => MIN_RESYNC_BACKOFF,
        };
        self.overrun_resync = Some((now, wait));
        self.stats.overrun_resyncs += 1;
        self.restart_outbound();
        // The peer's stream may hold an entry we deleted without telling it: ask for a new one
        // too, naming the epoch to replace, so a repeated request restarts it once.
        let peer_epoch = self.peer.as_ref().map(|p| p.hello.epoch);
        if let Some(session) = self.state.session_mut() {
            session.resync_requested = peer_epoch;
        }
        self.hello_due = true;
    }

    /// A new epoch of our stream: everything is sent again by a bulk sync.
    pub(super) fn restart_outbound(&mut self) {
        let epoch = self.take_epoch();
        self.outbound.start(epoch, false, None, &mut self.stats);
        if let Some(session) = self.state.session_mut() {
            session.resend.clear();
        }
        self.timers.stop(Timer::Retransmit);
        self.drive_backend();
    }

    pub(super) fn take_epoch(&mut self) -> u32 {
        self.next_epoch = self.next_epoch.wrapping_add(1);
        self.next_epoch
    }

    pub(super) fn arm_remove_hold(&mut self) {
        match self.inbound.next_held_due() {
            Some(at) => self.timers.set(Timer::RemoveHold, at),
            None => self.timers.stop(Timer::RemoveHold),
        }
    }
}

/// The failure of a whole backend action that `result` carries, if any.
fn failure(result: ActionResult) -> Option<(BackendAction, ActionError)> {
    match result {
        ActionResult::Dumped(Err(error)) => Some((BackendAction::Dump, error)),
        ActionResult::Swept(Err(error)) => Some((BackendAction::Sweep, error)),
        ActionResult::Adopted(Err(error)) => Some((BackendAction::Adopt, error)),
        ActionResult::Digested(Err(error)) => Some((BackendAction::Digest, error)),
        ActionResult::Dumped(Ok(_))
        | ActionResult::Swept(Ok(_))
        | ActionResult::Adopted(Ok(_))
        | ActionResult::Digested(Ok(_))
        | ActionResult::Applied { .. } => None,
    }
}
