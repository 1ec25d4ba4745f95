//! The failover state, and the state a synchronization owns: leaving Synchronization drops it.

use std::collections::{HashSet, VecDeque};

use failoverd_wire::{NodeId, SessionKey, SyncState};

use super::types::Digest;
use crate::time::Instant;

/// The seed's failover states; Synchronization carries what only it needs.
#[derive(Debug)]
pub(super) enum State {
    /// `startup` holds the role back: a peer we have not heard yet may be active.
    Silence {
        startup: bool,
    },
    Independence,
    Synchronization(SyncSession),
}

impl State {
    pub(super) fn name(&self) -> SyncState {
        match self {
            Self::Silence { .. } => SyncState::Silence,
            Self::Independence => SyncState::Independence,
            Self::Synchronization(_) => SyncState::Synchronization,
        }
    }

    pub(super) fn session(&self) -> Option<&SyncSession> {
        match self {
            Self::Synchronization(session) => Some(session),
            Self::Silence { .. } | Self::Independence => None,
        }
    }

    pub(super) fn session_mut(&mut self) -> Option<&mut SyncSession> {
        match self {
            Self::Synchronization(session) => Some(session),
            Self::Silence { .. } | Self::Independence => None,
        }
    }

    pub(super) fn synchronizing(&self) -> bool {
        matches!(self, Self::Synchronization(_))
    }
}

/// What exists only while synchronizing with a peer: leaving Synchronization drops it, so the
/// next synchronization starts from nothing. What must outlive a link loss stays on the
/// [`Node`](super::Node).
#[derive(Debug)]
pub(super) struct SyncSession {
    /// The peer negotiated with.
    pub(super) peer: NodeId,
    /// We asked the peer for a new bulk sync: the epoch of its stream to replace.
    pub(super) resync_requested: Option<u32>,
    /// Multiplier of the retransmit timeout: doubles while nothing is acknowledged.
    pub(super) retransmit_backoff: u32,
    /// Unacknowledged batches to send again (the retransmit timer expired).
    pub(super) resend: VecDeque<Vec<u8>>,
    /// The sweep that ends the peer's bulk sync, once the backend is free.
    pub(super) pending_sweep: Option<PendingSweep>,
    /// A dump failed: the next waits for `Timer::DumpRetry`.
    pub(super) dump_blocked: bool,
    /// Anti-entropy: our digest is due to be computed and sent.
    pub(super) digest_due: bool,
    /// The peer's latest digest, waiting for ours of its sessions to compare with.
    pub(super) peer_digest: Option<Box<Digest>>,
    /// The peer's latest digest, waiting for `peer_digest_after`: each comparison costs a
    /// dump, so a peer sending digests faster than one per digest interval gets no more.
    pub(super) peer_digest_waiting: Option<Box<Digest>>,
    pub(super) peer_digest_after: Instant,
    /// The previous comparison (the peer's digest, ours): a bucket that differs twice with
    /// neither side changed in between is drift, not sessions on their way.
    pub(super) last_comparison: Option<(Box<Digest>, Box<Digest>)>,
}

impl SyncSession {
    pub(super) fn new(peer: NodeId, now: Instant) -> Self {
        Self {
            peer,
            resync_requested: None,
            retransmit_backoff: 1,
            resend: VecDeque::new(),
            pending_sweep: None,
            dump_blocked: false,
            digest_due: false,
            peer_digest: None,
            peer_digest_waiting: None,
            peer_digest_after: now,
            last_comparison: None,
        }
    }
}

/// The sweep that ends the peer's bulk sync: its entries not mentioned go.
#[derive(Debug)]
pub(super) struct PendingSweep {
    pub(super) keep: HashSet<SessionKey>,
    pub(super) last_seq: u64,
    /// The inbound stream's generation it belongs to.
    pub(super) generation: u64,
}
