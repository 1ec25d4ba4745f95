//! Carries out the core's backend actions on a session backend: the one adapter between
//! [`failoverd_core::Action`] and [`SessionBackend`], shared by the daemon and the simulation.

use failoverd_core::{Action, ActionError, ActionResult, Token};
use failoverd_wire::digest;

use super::{BackendError, SessionBackend};

/// Performs `action` on `backend` and returns the result to hand back to the core with
/// [`failoverd_core::Node::handle_action_done`]. `None` for actions that are not the backend's
/// ([`Action::ResetLink`]).
pub fn perform<B: SessionBackend>(
    backend: &mut B,
    action: Action,
) -> Option<(Token, ActionResult)> {
    Some(match action {
        Action::Dump { token } => (
            token,
            ActionResult::Dumped(backend.dump().map_err(action_error)),
        ),
        Action::Apply { token, ops } => {
            let report = backend.apply(&ops);
            let result = ActionResult::Applied {
                applied: (ops.len() - report.failed.len()) as u64,
                refused: report.failed,
                ops,
            };
            (token, result)
        }
        Action::Sweep { token, owner, keep } => {
            let swept = backend
                .sweep(owner, &keep)
                .map(|n| n as u64)
                .map_err(action_error);
            (token, ActionResult::Swept(swept))
        }
        Action::Adopt { token, from, to } => {
            let adopted = backend
                .adopt(from, to)
                .map(|n| n as u64)
                .map_err(action_error);
            (token, ActionResult::Adopted(adopted))
        }
        Action::Digest { token, owner } => {
            let digest = backend
                .dump()
                .map(|records| Box::new(digest(records.iter().filter(|r| r.owner == owner))))
                .map_err(action_error);
            (token, ActionResult::Digested(digest))
        }
        Action::ResetLink => return None,
    })
}

/// The backend's error as the core takes it: the same failure, as data.
fn action_error(error: BackendError) -> ActionError {
    match error {
        BackendError::Overrun { lost } => ActionError::Overrun { lost },
        BackendError::Io(error) => ActionError::Io {
            kind: error.kind(),
            detail: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;
    use crate::session::{ApplyError, sample_record};
    use failoverd_wire::{NodeId, SessionOp};

    #[test]
    fn apply_reports_which_ops_were_refused_and_hands_the_ops_back() {
        let mut backend = MemoryBackend::new(NodeId(1)).with_capacity_limit(1);
        let ops = vec![
            SessionOp::Upsert(sample_record(1, NodeId(2))),
            SessionOp::Upsert(sample_record(2, NodeId(2))),
        ];
        let Some((
            _,
            ActionResult::Applied {
                ops: handed_back,
                applied,
                refused,
            },
        )) = perform(
            &mut backend,
            Action::Apply {
                token: Token(0),
                ops: ops.clone(),
            },
        )
        else {
            panic!("not an apply result");
        };
        assert_eq!(applied, 1);
        assert_eq!(refused, vec![(1, ApplyError::TableFull)]);
        assert_eq!(handed_back, ops);
    }

    #[test]
    fn a_failed_action_displays_as_the_backend_error_does() {
        let errors = [
            BackendError::Overrun { lost: Some(3) },
            BackendError::Overrun { lost: None },
            BackendError::Io(std::io::Error::from_raw_os_error(1)),
            BackendError::Io(std::io::Error::other("netlink socket closed")),
        ];
        for error in errors {
            let text = error.to_string();
            assert_eq!(action_error(error).to_string(), text);
        }
    }
}
