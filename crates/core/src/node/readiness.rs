//! Readiness: why this node may not take over from a healthy active peer yet, and whether the
//! peer holds our sessions.

use failoverd_wire::HelloFlags;

use super::session::State;
use super::{Node, PeerView};

/// Why this node is not ready to take over from a healthy active peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Not in Synchronization with the peer.
    NotSynchronized,
    /// The peer's bulk sync is not yet applied.
    BulkSyncIncomplete,
    /// We asked the peer to resend its sessions (our copy is known to be incomplete).
    ResyncPending,
    /// Some of the peer's sessions could not be applied.
    ApplyFailed,
}

impl NotReady {
    /// Stable name for the CLI and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotSynchronized => "not-synchronized",
            Self::BulkSyncIncomplete => "bulk-sync-incomplete",
            Self::ResyncPending => "resync-pending",
            Self::ApplyFailed => "apply-failed",
        }
    }
}

impl Node {
    /// Ready to take over from a healthy active peer: holds a complete copy of its sessions.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reasons().is_empty()
    }

    /// Why this node is not ready (empty when it is).
    pub fn not_ready_reasons(&self) -> Vec<NotReady> {
        let mut reasons = Vec::new();
        match &self.state {
            State::Synchronization(session) if session.resync_requested.is_some() => {
                reasons.push(NotReady::ResyncPending);
            }
            State::Synchronization(_) => {
                let restarted = self
                    .peer
                    .as_ref()
                    .is_some_and(|p| self.inbound.epoch() != Some(p.hello.epoch));
                // A stream the peer restarted (its hello names the new epoch) is not complete
                // here until its own bulk sync is.
                if !self.inbound.complete() || restarted {
                    reasons.push(NotReady::BulkSyncIncomplete);
                }
            }
            State::Silence { .. } | State::Independence => {
                reasons.push(NotReady::NotSynchronized);
            }
        }
        if self.apply_failed || self.inbound.has_refused() {
            reasons.push(NotReady::ApplyFailed);
        }
        reasons
    }

    /// The live peer holds our sessions: it says it is ready, and it has applied our current
    /// stream's bulk sync. Its "ready" alone may describe a stream we have since restarted (a
    /// resync after lost events): what we queued, and what the lost events hid, then reach it
    /// only with the new bulk (simulation seed 17372).
    pub(super) fn peer_holds_ours(&self, peer: &PeerView) -> bool {
        peer.hello.flags.has(HelloFlags::READY) && self.outbound.bulk_complete()
    }
}
