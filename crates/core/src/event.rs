//! What a node reports: transitions with their reasons, kept in a bounded history.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use failoverd_wire::{BackupType, NodeId, Role, SessionKey, SyncState};

use crate::failure::{ActionError, ApplyError};
use crate::time::Instant;
use crate::vrrp::{GroupReason, GroupState};

/// Why a transition happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The node started.
    Started,
    /// The silence timer expired.
    SilenceExpired,
    /// Negotiation succeeded with this peer.
    NegotiationSucceeded(NodeId),
    /// No hello within the dead interval.
    PeerDead(Duration),
    /// The transport closed.
    LinkClosed(String),
    /// The peer said goodbye.
    PeerLeft,
    /// The peer reported that it left Synchronization.
    PeerLeftSynchronization(SyncState),
    /// The peer is not compatible.
    Incompatible(Incompatibility),
    /// No peer is alive.
    NoPeer,
    /// The peer is alive and active, and this node may not take over.
    PeerIsActive,
    /// Neither node was active; this one is preferred.
    Elected(Election),
    /// Both were active; this one yields to the preferred one.
    Conflict(Election),
    /// The failover link is down, but the heartbeat path hears the peer: neither was active,
    /// and this one is preferred.
    ElectedOnHeartbeat(Election),
    /// The failover link is down, but the heartbeat path hears the peer active too: this one
    /// yields to the preferred one.
    ConflictOnHeartbeat(Election),
    /// This node took over from a lower-priority active peer once ready.
    Preempted,
    /// A ready peer of higher priority takes over.
    PreemptedByPeer,
    /// The operator moved the active role (switchover).
    Switchover,
    /// The peer handed its active role over.
    PeerYielded,
    /// The daemon is shutting down.
    ShuttingDown,
    /// The takeover mechanism (VRRP) moved the forwarding here or away.
    Takeover(TakeoverReason),
}

/// Why the takeover mechanism moved the forwarding here or away: what the node's role follows
/// with [`RoleAuthority::External`](crate::RoleAuthority::External).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeoverReason {
    /// The VRRP group changed state (master: this node forwards).
    Vrrp {
        /// The group's new state.
        to: GroupState,
        /// Why it changed.
        why: GroupReason,
    },
}

impl fmt::Display for TakeoverReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vrrp { to, why } => write!(f, "VRRP {to}: {why}"),
        }
    }
}

/// How the active node was chosen, so the log says which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Higher priority.
    Priority {
        /// Ours.
        ours: u8,
        /// The peer's.
        theirs: u8,
    },
    /// Equal priority: the lower node id wins (explicit tie-break).
    LowerNodeId,
    /// The other node yields (switchover).
    PeerYielding,
}

/// The hello and dead intervals of a node, as its hellos carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloTimers {
    /// How often it sends a hello.
    pub hello: Duration,
    /// How long it waits for a hello before it declares the other node dead.
    pub dead: Duration,
}

/// Our hello timers and the peer's, when they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerMismatch {
    /// Ours.
    pub local: HelloTimers,
    /// The peer's, from its hello.
    pub peer: HelloTimers,
}

impl TimerMismatch {
    /// The mismatch of `local` and `peer`, if they differ.
    pub fn between(local: HelloTimers, peer: HelloTimers) -> Option<Self> {
        (local != peer).then_some(Self { local, peer })
    }

    /// True if one node's dead interval is not longer than the other's hello interval: it
    /// declares the other dead between two hellos, so the link flaps for certain.
    pub fn flaps(&self) -> bool {
        self.local.dead <= self.peer.hello || self.peer.dead <= self.local.hello
    }
}

impl fmt::Display for TimerMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hello timers differ: {} here, {} on the peer",
            self.local, self.peer
        )?;
        if self.flaps() {
            f.write_str("; a dead interval not longer than the other node's hello interval: the link will flap")?;
        }
        Ok(())
    }
}

impl fmt::Display for HelloTimers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hello {} ms, dead {} ms",
            self.hello.as_millis(),
            self.dead.as_millis()
        )
    }
}

/// A reason the peer cannot be synchronized with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incompatibility {
    /// A protocol major version this build does not speak (frames carry the major).
    Version(u8),
    /// Another pair id.
    PairId {
        /// Ours.
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// Another backup type.
    BackupType {
        /// Ours.
        ours: BackupType,
        /// The peer's.
        theirs: BackupType,
    },
    /// The hello's node id differs from the authenticated key's.
    NodeId {
        /// From the authenticated key.
        authenticated: NodeId,
        /// From the hello.
        claimed: NodeId,
    },
    /// The peer has our own node id: both nodes use the same key.
    SameNodeId,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(v) => write!(
                f,
                "peer speaks protocol major version {v}, we speak {}",
                failoverd_wire::VERSION
            ),
            Self::PairId { ours, theirs } => {
                write!(f, "peer is in pair {theirs}, we are in pair {ours}")
            }
            Self::BackupType { ours, theirs } => write!(
                f,
                "peer backup type is {}, ours is {}",
                theirs.name(),
                ours.name()
            ),
            Self::NodeId {
                authenticated,
                claimed,
            } => {
                write!(
                    f,
                    "peer authenticated as node {authenticated} but claims node {claimed}"
                )
            }
            Self::SameNodeId => f.write_str("peer uses our own key (same node id)"),
        }
    }
}

impl fmt::Display for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Priority { ours, theirs } => write!(f, "priority {ours} vs peer {theirs}"),
            Self::LowerNodeId => f.write_str("equal priority, tie broken by lower node id"),
            Self::PeerYielding => f.write_str("peer yields"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started => f.write_str("started"),
            Self::SilenceExpired => f.write_str("silence timer expired"),
            Self::NegotiationSucceeded(peer) => write!(f, "negotiation succeeded with node {peer}"),
            Self::PeerDead(silent) => {
                write!(f, "peer dead: no hello for {} ms", silent.as_millis())
            }
            Self::LinkClosed(why) => write!(f, "failover link closed: {why}"),
            Self::PeerLeft => f.write_str("peer left (goodbye)"),
            Self::PeerLeftSynchronization(state) => {
                write!(f, "peer left synchronization (now {state})")
            }
            Self::Incompatible(why) => write!(f, "negotiation failed: {why}"),
            Self::NoPeer => f.write_str("no live peer"),
            Self::PeerIsActive => f.write_str("peer is active"),
            Self::Elected(how) => write!(f, "elected ({how})"),
            Self::Conflict(how) => write!(f, "both active, yielding ({how})"),
            Self::ElectedOnHeartbeat(how) => write!(
                f,
                "elected over the heartbeat path, the failover link down ({how})"
            ),
            Self::ConflictOnHeartbeat(how) => write!(
                f,
                "both active (peer heard on the heartbeat path, the failover link down), yielding ({how})"
            ),
            Self::Preempted => f.write_str("preempted lower-priority peer (ready)"),
            Self::PreemptedByPeer => f.write_str("ready peer of higher priority takes over"),
            Self::Switchover => f.write_str("switchover requested"),
            Self::PeerYielded => f.write_str("peer handed over (switchover)"),
            Self::ShuttingDown => f.write_str("shutting down"),
            Self::Takeover(why) => write!(f, "takeover: {why}"),
        }
    }
}

/// Something that happened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The failover state changed.
    StateChanged {
        /// Previous state.
        from: SyncState,
        /// New state.
        to: SyncState,
        /// Why.
        reason: Reason,
    },
    /// The role changed.
    RoleChanged {
        /// Previous role.
        from: Role,
        /// New role.
        to: Role,
        /// Why.
        reason: Reason,
    },
    /// Negotiation with a live peer failed (reported once per distinct reason).
    NegotiationFailed(Incompatibility),
    /// The peer's hello or dead interval differs from ours (reported once per distinct pair of
    /// the peer's values). Only a warning: synchronization goes on (see `docs/ARCHITECTURE.md`).
    TimersDiffer(TimerMismatch),
    /// Our bulk sync was applied by the peer.
    BulkSent {
        /// Epoch of the bulk.
        epoch: u32,
        /// Records in it.
        records: u64,
    },
    /// The peer's bulk sync is applied here: this node holds its sessions (ready).
    BulkReceived {
        /// Epoch of the bulk.
        epoch: u32,
        /// Records received.
        records: u64,
        /// Stale entries removed.
        swept: u64,
    },
    /// The backend lost change events; a resync follows.
    ChangesLost,
    /// The backend refused some of the peer's records, or a whole backend action failed
    /// (`count` 0).
    ApplyFailed {
        /// How many.
        count: u64,
        /// The first error.
        first: ApplyFailure,
    },
    /// The digest comparison found the peer's sessions and our copies different, twice with
    /// neither side changing: a resync of the peer's sessions follows.
    DriftFound {
        /// Digest buckets that differ.
        buckets: usize,
    },
    /// The heartbeat path started (`up`) or stopped hearing the peer (no heartbeat for the
    /// dead interval).
    HeartbeatPath {
        /// Heard now, or no longer.
        up: bool,
    },
    /// A setting that should be equal on both nodes differs (see `NodeConfig::settings`).
    SettingDiffers {
        /// The setting's name.
        name: String,
        /// This node's value; `None` if it has no such setting.
        local: Option<u64>,
        /// The peer's value; `None` if it has no such setting.
        peer: Option<u64>,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StateChanged { from, to, reason } => write!(f, "state {from} -> {to}: {reason}"),
            Self::RoleChanged { from, to, reason } => write!(f, "role {from} -> {to}: {reason}"),
            Self::NegotiationFailed(why) => write!(f, "negotiation failed: {why}"),
            Self::TimersDiffer(mismatch) => mismatch.fmt(f),
            Self::BulkSent { epoch, records } => write!(
                f,
                "bulk sync of {records} sessions applied by peer (epoch {epoch})"
            ),
            Self::BulkReceived {
                epoch,
                records,
                swept,
            } => {
                write!(
                    f,
                    "bulk sync of {records} peer sessions applied, {swept} stale swept (epoch {epoch}): ready"
                )
            }
            Self::ChangesLost => f.write_str("backend lost change events: resynchronizing"),
            Self::ApplyFailed { count, first } => {
                write!(f, "{count} peer sessions could not be applied: {first}")
            }
            Self::DriftFound { buckets } => write!(
                f,
                "our copy of the peer's sessions drifted ({buckets} digest buckets differ): resynchronizing"
            ),
            Self::HeartbeatPath { up: true } => f.write_str("heartbeat path up: the peer is heard"),
            Self::HeartbeatPath { up: false } => {
                f.write_str("heartbeat path down: no heartbeat for the dead interval")
            }
            Self::SettingDiffers { name, local, peer } => {
                let show = |v: &Option<u64>| v.map_or("unset".to_string(), |v| v.to_string());
                write!(
                    f,
                    "setting {name} differs: {} here, {} on the peer; a takeover may behave differently",
                    show(local),
                    show(peer)
                )
            }
        }
    }
}

/// What failed in an [`Event::ApplyFailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyFailure {
    /// The backend refused one of the peer's ops.
    Refused {
        /// Why.
        error: ApplyError,
        /// The op's session, if the backend named an op of the batch.
        key: Option<SessionKey>,
    },
    /// A whole backend action failed.
    Action {
        /// Which.
        action: BackendAction,
        /// Why.
        error: ActionError,
    },
}

/// A backend action that works on the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendAction {
    /// Reading our table for our bulk sync.
    Dump,
    /// Removing the peer's entries its bulk sync no longer mentions.
    Sweep,
    /// Relabelling the entries of one owner as another's.
    Adopt,
    /// Computing a digest of one owner's entries.
    Digest,
}

impl fmt::Display for BackendAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dump => "dump",
            Self::Sweep => "sweep",
            Self::Adopt => "adopt",
            Self::Digest => "digest",
        })
    }
}

impl fmt::Display for ApplyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { error, key } => {
                write!(f, "{error} (")?;
                if let Some(key) = key {
                    write!(f, "{key}")?;
                }
                f.write_str(")")
            }
            Self::Action { action, error } => write!(f, "{action} failed: {error}"),
        }
    }
}

/// An event with the time it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When.
    pub at: Instant,
    /// What.
    pub event: Event,
}

/// The last `capacity` events; the oldest go first.
#[derive(Debug, Clone)]
pub struct History {
    entries: VecDeque<HistoryEntry>,
    capacity: usize,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn push(&mut self, at: Instant, event: Event) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(HistoryEntry { at, event });
    }

    /// The entries, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &HistoryEntry> {
        self.entries.iter()
    }
}
