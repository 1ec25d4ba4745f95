//! The public types of the node's interface: backend actions and their results, command errors,
//! what the node knows of its peer.

use std::collections::HashSet;

use failoverd_wire::{
    DIGEST_BUCKETS, NodeId, ProtocolVersion, Role, SessionKey, SessionOp, SessionRecord, SyncState,
};

use crate::event::{HelloTimers, Incompatibility, TimerMismatch};
use crate::failure::{ActionError, ApplyError};
use crate::time::Instant;

/// Identifies a backend action so its result can be matched to it. The core only accepts the
/// token of the action it has outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

/// Work for the driver. Backend actions run one at a time: the next is polled only after the
/// result of the previous one was handed back with [`Node::handle_action_done`](super::Node::handle_action_done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read every entry of the local table (source of our bulk sync).
    Dump {
        /// Hand back with the result.
        token: Token,
    },
    /// Apply the peer's ops, in order.
    Apply {
        /// Hand back with the result.
        token: Token,
        /// What to apply.
        ops: Vec<SessionOp>,
    },
    /// Delete every entry owned by `owner` whose key is not in `keep`.
    Sweep {
        /// Hand back with the result.
        token: Token,
        /// Whose entries.
        owner: NodeId,
        /// What the bulk sync mentioned.
        keep: HashSet<SessionKey>,
    },
    /// Make `to` the owner of every entry owned by `from`: this node takes over (the peer's
    /// entries become ours), or hands over to a live peer (ours become the peer's).
    Adopt {
        /// Hand back with the result.
        token: Token,
        /// The previous owner.
        from: NodeId,
        /// The new owner.
        to: NodeId,
    },
    /// Compute the digest of every entry owned by `owner` (anti-entropy): this node's own, to
    /// send to the peer, or the peer's, to compare with the digest the peer sent.
    Digest {
        /// Hand back with the result.
        token: Token,
        /// Whose entries.
        owner: NodeId,
    },
    /// Drop the failover-link connection and reconnect (the peer went silent on it).
    ResetLink,
}

/// The result of a backend [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// Result of [`Action::Dump`].
    Dumped(Result<Vec<SessionRecord>, ActionError>),
    /// Result of [`Action::Apply`]. Refused ops are tried again, so nothing the backend
    /// refused is acknowledged to the peer as applied.
    Applied {
        /// The action's ops, handed back: those from the first refusal on are tried again.
        ops: Vec<SessionOp>,
        /// Ops that took effect (including no-op removes).
        applied: u64,
        /// The ops the backend refused, by index into `ops`, in order, with why.
        refused: Vec<(usize, ApplyError)>,
    },
    /// Result of [`Action::Sweep`]: entries removed.
    Swept(Result<u64, ActionError>),
    /// Result of [`Action::Adopt`]: entries adopted.
    Adopted(Result<u64, ActionError>),
    /// Result of [`Action::Digest`] (see [`failoverd_wire::digest`]).
    Digested(Result<Box<Digest>, ActionError>),
}

/// Per-bucket sums of session digest hashes (see [`failoverd_wire::digest`]).
pub(crate) type Digest = [u64; DIGEST_BUCKETS];

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Switchover moves the active role away, so it runs on the active node.
    #[error("this node is standby: run switchover on the active node")]
    NotActive,
    /// Nobody to hand over to.
    #[error("no live peer to hand over to")]
    NoPeer,
    /// The peer would take over without our sessions.
    #[error("the peer is not ready (its bulk sync of our sessions is incomplete)")]
    PeerNotReady,
}

/// What this node knows of its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's node id.
    pub node_id: NodeId,
    /// Its failover state.
    pub state: SyncState,
    /// Its role.
    pub role: Role,
    /// Its priority.
    pub priority: u8,
    /// It holds our sessions: it says it is ready, and it has applied our current bulk sync.
    pub ready: bool,
    /// Negotiation problem, if any.
    pub incompatibility: Option<Incompatibility>,
    /// When we last heard a hello.
    pub last_heard: Instant,
    /// The protocol version it speaks.
    pub protocol: ProtocolVersion,
    /// Its hello timers.
    pub timers: HelloTimers,
    /// Its hello timers and ours, if they differ.
    pub timer_mismatch: Option<TimerMismatch>,
}

/// The peer as the heartbeat path hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatPeer {
    /// Its failover state.
    pub state: SyncState,
    /// Its role.
    pub role: Role,
    /// Its priority.
    pub priority: u8,
    /// When the last heartbeat arrived.
    pub last_heard: Instant,
}
