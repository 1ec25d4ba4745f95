//! What goes in and out of the config-sync machine, its statuses and counters.

use std::fmt;
use std::time::Duration;

use failoverd_wire::{ConfigVersions, SyncOutcome, UnitId, UnitState};

use crate::stats::stats;
use crate::time::Instant;

/// How the source sends its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every unit that differs when synchronization begins, then every change, and drift
    /// repaired after [`ConfigSyncConfig::repair_after`] failed comparisons.
    Auto,
    /// Everything on command ([`super::ConfigSync::request_full_sync`]); differences are
    /// reported only.
    Manual,
}

/// This node's part in config sync, decided by the daemon from its role and configuration:
/// in symmetric mode the active node is the source; in asymmetric mode a designated node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Sends its configuration.
    Source,
    /// Applies the source's.
    Replica,
}

/// The machine's settings.
#[derive(Debug, Clone)]
pub struct ConfigSyncConfig {
    /// Auto or manual.
    pub mode: Mode,
    /// The units this node's configuration names. The replica applies no other.
    pub units: Vec<UnitId>,
    /// What this node's canonical forms depend on; a peer with other versions is refused.
    pub versions: ConfigVersions,
    /// How often both nodes read their units and compare (drift).
    pub compare_interval: Duration,
    /// Failed comparisons of a unit in a row before auto mode repairs it.
    pub repair_after: u32,
    /// The largest unit content sent or accepted.
    pub max_unit_bytes: u32,
    /// After an apply, a failover link lost within this long restores the previous units
    /// (the new configuration may have cut the link): at least the dead interval.
    pub confirm_window: Duration,
    /// A transfer with no result for this long is sent again.
    pub retry_after: Duration,
    /// Local changes noticed within this long are read once.
    pub coalesce: Duration,
    /// Seeds transfer, action and request ids (unique per run).
    pub seed: u64,
}

/// Identifies an action, for its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionId(pub u64);

/// A unit's canonical content as read, `None` if absent, or the reader's error.
pub type Readback = Result<Option<Vec<u8>>, String>;

/// Units with the content each is to have (`None`: absent) or had.
pub type UnitContents = Vec<(UnitId, Option<Vec<u8>>)>;

/// Work for the daemon: each ends with a call back into the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigAction {
    /// Read these units' canonical forms; then [`super::ConfigSync::handle_read`].
    Read {
        /// For the result.
        id: ActionId,
        /// Which.
        units: Vec<UnitId>,
    },
    /// Read each unit's current content (kept for a rollback), make each unit exactly its
    /// content (`None`: absent) in one transaction per backend (files, then nftables, then the
    /// reloads), read them back; then [`super::ConfigSync::handle_applied`].
    Apply {
        /// For the result.
        id: ActionId,
        /// What to apply.
        units: UnitContents,
    },
}

/// An apply that went through: what was there before, and the read-back after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Each unit's content before the apply.
    pub previous: UnitContents,
    /// Each unit's canonical content after it.
    pub readback: Vec<(UnitId, Readback)>,
}

/// An apply that failed: nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyFailed {
    /// The unit that failed, if one did.
    pub unit: Option<UnitId>,
    /// The kernel's or the OS's message.
    pub message: String,
}

/// What the machine is doing, as the seed's product family names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// Nothing to do until the reason clears.
    Waiting,
    /// Both nodes claim to be the source: nothing is sent.
    Conflict,
    /// Reading the units and exchanging offers.
    Preparing,
    /// A full sync is on its way.
    SynchronizingAll,
    /// Auto mode: changes follow as they happen.
    Auto,
    /// Manual mode: differences are reported, sent on command.
    NotAuto,
}

impl SyncStatus {
    /// Stable name for status and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Conflict => "conflict",
            Self::Preparing => "preparing",
            Self::SynchronizingAll => "synchronizing-all",
            Self::Auto => "auto",
            Self::NotAuto => "not-auto",
        }
    }
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the machine is in its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusReason {
    /// The pair is not in Synchronization.
    NotSynchronized,
    /// Reading this node's units.
    ReadingUnits,
    /// No offer from the peer yet.
    AwaitingPeerOffer,
    /// The peer sends no offers: config sync is off there, or it is an older failoverd.
    PeerSilent,
    /// The canonical forms are not comparable.
    VersionMismatch {
        /// This node's.
        ours: ConfigVersions,
        /// The peer's.
        theirs: ConfigVersions,
    },
    /// Both nodes claim to be the source.
    BothSources,
    /// Neither node claims to be the source.
    NoSource,
    /// Units on their way (a full sync or an incremental one).
    Sending {
        /// How many.
        units: usize,
    },
    /// Every unit both nodes name is equal.
    InSync,
    /// These units differ between the nodes.
    Differ {
        /// Which.
        units: Vec<UnitId>,
    },
    /// The last sync of a unit failed on the replica, and is not retried until the source
    /// changes it (or a manual full sync).
    Failed {
        /// The unit, if the failure names one.
        unit: Option<UnitId>,
        /// The replica's message.
        message: String,
    },
    /// The replica rolled the last sync back: it lost the failover link after applying.
    RolledBack {
        /// The units restored.
        units: Vec<UnitId>,
    },
    /// The replica applies what the source sends.
    Following,
}

impl fmt::Display for StatusReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSynchronized => f.write_str("the pair is not in synchronization"),
            Self::ReadingUnits => f.write_str("reading this node's units"),
            Self::AwaitingPeerOffer => f.write_str("waiting for the peer's offer"),
            Self::PeerSilent => f.write_str(
                "the peer sends no config-sync offers (config_sync is off there, or it runs \
                 an older failoverd)",
            ),
            Self::VersionMismatch { ours, theirs } => write!(
                f,
                "versions differ: ours {}, the peer's {}",
                versions(ours),
                versions(theirs)
            ),
            Self::BothSources => f.write_str("both nodes claim to be the configuration source"),
            Self::NoSource => f.write_str("neither node is the configuration source"),
            Self::Sending { units } => write!(f, "sending {units} units"),
            Self::InSync => f.write_str("every unit is in sync"),
            Self::Differ { units } => write!(f, "{} differ: {}", units.len(), unit_names(units)),
            Self::Failed { unit, message } => match unit {
                Some(unit) => write!(f, "the last sync failed on {}: {message}", unit.name),
                None => write!(f, "the last sync failed: {message}"),
            },
            Self::RolledBack { units } => write!(
                f,
                "rolled back {} after the failover link was lost",
                unit_names(units)
            ),
            Self::Following => f.write_str("applying what the source sends"),
        }
    }
}

fn versions(v: &ConfigVersions) -> String {
    let mut text = format!("failoverd {} schema {}", v.failoverd, v.schema);
    for (_, version) in &v.backends {
        text.push_str(", ");
        text.push_str(version);
    }
    text
}

/// Unit names, comma-separated (for reasons, events and logs).
pub fn unit_names(units: &[UnitId]) -> String {
    units
        .iter()
        .map(|u| u.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a node reports of config sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSyncEvent {
    /// The status or its reason changed.
    StatusChanged {
        /// Before.
        from: SyncStatus,
        /// Now.
        to: SyncStatus,
        /// Why.
        reason: StatusReason,
    },
    /// The source sent units.
    Sent {
        /// Full sync or incremental.
        full: bool,
        /// Which.
        units: Vec<UnitId>,
    },
    /// The replica applied units.
    Applied {
        /// Which.
        units: Vec<UnitId>,
    },
    /// An apply failed (on this node, or the peer reported it).
    Failed {
        /// The unit, if known.
        unit: Option<UnitId>,
        /// The message.
        message: String,
    },
    /// The replica refused a transfer, or the peer refused ours.
    Refused {
        /// Why.
        reason: String,
    },
    /// Units put back after the link was lost following an apply.
    RolledBack {
        /// Which.
        units: Vec<UnitId>,
    },
    /// Units differ from the source's while the source did not change them (drift).
    Drift {
        /// Which.
        units: Vec<UnitId>,
        /// Auto mode repairs them now; manual mode only reports.
        repairing: bool,
    },
    /// A `config diff` has both nodes' read-backs.
    DiffReady(Diff),
    /// A `config diff` could not complete.
    DiffFailed {
        /// The request.
        request: u64,
        /// Why.
        reason: String,
    },
}

/// Both nodes' read-backs of every unit, for `config diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The request it answers.
    pub request: u64,
    /// Per unit this node names: its read-back here and on the peer (`None`: the peer does
    /// not name it).
    pub units: Vec<(UnitId, Readback, Option<Readback>)>,
}

/// The last outcome of a sync of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitResult {
    /// How it ended.
    pub outcome: SyncOutcome,
    /// The replica's message (empty when applied).
    pub message: String,
    /// When.
    pub at: Instant,
}

/// One unit as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitView {
    /// The unit.
    pub id: UnitId,
    /// This node's read-back (`None`: not read yet).
    pub local: Option<UnitState>,
    /// The peer's, from its latest offer or result (`None`: unknown, or not named there).
    pub peer: Option<UnitState>,
    /// The last sync that applied it.
    pub last_sync: Option<Instant>,
    /// The last sync's outcome.
    pub last_result: Option<UnitResult>,
}

stats! {
    /// Config-sync counters; every drop has its own.
    #[derive(Debug, Clone, Default)]
    pub struct ConfigSyncStats {
        counters {
            /// Offers sent.
            offers_sent,
            /// Offers received.
            offers_received,
            /// Units sent in sync transfers (retransmissions included).
            units_sent,
            /// Units received in sync transfers, complete and matching their hash.
            units_received,
            /// Full syncs sent.
            full_syncs,
            /// Incremental syncs sent.
            incremental_syncs,
            /// Transfers sent again for want of a result.
            transfers_resent,
            /// Applies that failed on this node.
            applies_failed,
            /// Applies undone after the link was lost.
            rollbacks,
            /// Comparisons of the peer's offer with this node's units, on the source.
            comparisons,
            /// Units found drifting (first failed comparison of a run).
            drift_detected,
            /// Drifting units re-sent and applied.
            drift_repaired,
            /// Offers or transfers refused for a version mismatch.
            refused_version,
            /// Transfers refused for naming a unit this node does not, or one too large.
            refused_unit,
            /// Offers found both nodes claiming the source.
            conflicts,
            /// Chunks out of place (dropped; an out-of-order one aborts its transfer).
            chunks_dropped,
            /// Transfers whose content did not match the hash announced (dropped).
            transfers_corrupt,
            /// Messages received that are out of place (a result for no transfer, a transfer
            /// while not the replica, elements while not the replica of a comparable source).
            unexpected_messages,
            /// Dynamic set elements (adds and removes) sent by the source.
            elements_sent,
            /// Dynamic set elements (adds and removes) the replica took to apply.
            elements_received,
            /// Elements refused: their set is not one of this node's dynamic sets.
            elements_refused,
            /// Elements the source left out: a text beyond the wire's limits.
            elements_unsendable,
            /// Reads of a dynamic set that failed on the source.
            element_reads_failed,
            /// Element applies that failed on the replica.
            element_applies_failed,
        }
    }
}
