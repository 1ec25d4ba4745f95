//! Mutants: faults planted in the harness, each breaking one guarantee from outside the core,
//! so that every invariant check is shown able to fail (a check no mutant trips could be
//! blind). They live in the simulation only: the shipped code carries no planted bug.

use failoverd_core::{Action, ActionResult};

/// A planted fault, set with [`crate::Pair::mutant`] or [`crate::schedule::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// The backend reports every op of an apply done but drops one in four: writes the peer
    /// counts as replicated that never happened. For "replicated means present" and the
    /// settled tables.
    LostWrites,
    /// The backend reports sweeps done without removing anything: entries the bulk sync did
    /// not mention stay. For the settled tables.
    SkippedSweeps,
    /// The VRRP group is told its node is ready as soon as it synchronizes, before the bulk
    /// sync is applied, so it preempts a healthy master early. For the readiness checks: a
    /// node that preempts a live master is ready and holds the peer's sessions (VRRP
    /// schedules only: in the election the core alone decides).
    TakeoverBeforeReady,
    /// The backend loses the delete events of a node apart from its peer (not synchronized):
    /// the core keeps no tombstone. For the split-brain merge rule.
    LostApartDeletes,
    /// The replica's config backend reports, as its read-back after an apply, the content it
    /// was sent rather than what its kernel holds (the replica hashing what it received). For
    /// the settled config units: a kernel storing another form goes unnoticed.
    ReadbackIsReceived,
    /// The daemon sets the config-sync part from the state only, missing a role change
    /// within Synchronization (a switchover, a preemption): the old source keeps sending, the
    /// new active applies. For "applies only on the replica" and "only the source sends".
    PartIgnoresRole,
}

/// The ops of an apply that [`Mutant::LostWrites`] drops: every fourth.
fn dropped(index: usize) -> bool {
    index % 4 == 3
}

/// Performs `action` on `table` as the mutant's backend would, or `None` when the mutant does
/// not touch this action (the caller performs it as usual).
pub(crate) fn perform(
    mutant: Mutant,
    table: &mut failoverd_backends::MemoryBackend,
    action: &Action,
) -> Option<ActionResult> {
    match (mutant, action) {
        (Mutant::LostWrites, Action::Apply { token, ops }) => {
            let kept: Vec<usize> = (0..ops.len()).filter(|&i| !dropped(i)).collect();
            let subset = Action::Apply {
                token: *token,
                ops: kept.iter().map(|&i| ops[i].clone()).collect(),
            };
            let Some((_, ActionResult::Applied { refused, .. })) =
                failoverd_backends::perform(table, subset)
            else {
                unreachable!("an apply answers Applied");
            };
            let refused: Vec<_> = refused
                .into_iter()
                .map(|(i, error)| (kept[i], error))
                .collect();
            Some(ActionResult::Applied {
                applied: (ops.len() - refused.len()) as u64,
                refused,
                ops: ops.clone(),
            })
        }
        (Mutant::SkippedSweeps, Action::Sweep { .. }) => Some(ActionResult::Swept(Ok(0))),
        _ => None,
    }
}
