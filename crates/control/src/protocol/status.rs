//! `status` and `peer`.

use std::collections::BTreeMap;

use failoverd_wire::NodeId;
use serde::{Deserialize, Serialize};

use super::TakeoverStatus;

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub node: NodeInfo,
    /// The failover state.
    pub state: FailoverState,
    /// Milliseconds since the last state change.
    pub state_since_ms: u64,
    /// Whether this node forwards.
    pub role: Role,
    /// Whether this node is ready to take over: [`Status::not_ready`] is empty.
    pub ready: bool,
    /// Why this node is not ready (e.g. the peer's bulk sync is incomplete); empty when ready.
    pub not_ready: Vec<String>,
    /// The peer; `None` before the daemon knows anything about it.
    pub peer: Option<PeerInfo>,
    /// Session counts.
    pub sessions: SessionCounts,
    /// Replication progress and lag.
    pub replication: Replication,
    /// Every counter of the core, the link and the backend, flat, with snake_case names
    /// (e.g. `hellos_sent`, `link_reconnects`, `backend_apply_errors`).
    pub counters: BTreeMap<String, u64>,
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
    /// How the traffic moves: the takeover mode, the VRRP group, FRR and hooks. A daemon
    /// without it is in election mode.
    #[serde(default)]
    pub takeover: TakeoverStatus,
    /// The heartbeat path (`link.heartbeat_listen`); `None` when none is configured.
    #[serde(default)]
    pub heartbeat: Option<HeartbeatInfo>,
}

/// The heartbeat path, as `status` shows it: a second path for hellos beside the failover link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatInfo {
    /// `link.heartbeat_peer`.
    pub address: String,
    /// `"up"` while the peer is heard on it (an authentic, fresh heartbeat within the dead
    /// interval), else `"down"`.
    pub state: LinkState,
    /// The peer's role, from its last heartbeat.
    pub peer_role: Option<Role>,
    /// The peer's failover state, from its last heartbeat.
    pub peer_state: Option<FailoverState>,
    /// Milliseconds since the last heartbeat.
    pub last_heard_ms_ago: Option<u64>,
    /// This node stays standby because the peer is heard on this path while the failover link
    /// is down (the peer is active, or preferred).
    pub holds_standby: bool,
}

/// This node's identity and settings, as `status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `node.name` from the configuration.
    pub name: String,
    /// The node id, 8 hex digits (from the key's fingerprint).
    #[serde(with = "super::node_id_hex")]
    pub node_id: NodeId,
    /// The key's fingerprint, `sha256:<64 hex>`: what the peer pins.
    pub fingerprint: String,
    /// `pair.id`.
    pub pair_id: u32,
    /// `node.priority`.
    pub priority: u8,
    /// `pair.backup`.
    pub backup: BackupMode,
    /// `node.preempt`.
    pub preempt: bool,
    /// `sessions.backend`.
    pub backend: BackendKind,
}

names! {
    /// How the pair backs its sessions up (`pair.backup`).
    pub enum BackupMode {
        /// Active/standby: traffic flows through one node at a time.
        Symmetric = "symmetric",
        /// Both forward; a reply may come back through the other node.
        Asymmetric = "asymmetric",
    }
}

names! {
    /// The session table a node runs (`sessions.backend`).
    pub enum BackendKind {
        /// The userspace table.
        Memory = "memory",
        /// The kernel's connection-tracking table.
        Conntrack = "conntrack",
    }
}

names! {
    /// A node's failover state, as the negotiation defines it.
    pub enum FailoverState {
        /// Just started, or just left Synchronization (a hold-down against flapping).
        Silence = "silence",
        /// No failover link negotiated: the node works alone.
        Independence = "independence",
        /// Negotiation done: sessions are backed up both ways.
        Synchronization = "synchronization",
    }
}

names! {
    /// Whether a node forwards traffic.
    pub enum Role {
        /// Forwards traffic.
        Active = "active",
        /// Holds the peer's sessions, ready to take over.
        Standby = "standby",
    }
}

names! {
    /// Whether the failover link to the peer is established (authenticated).
    pub enum LinkState {
        /// Connected and authenticated.
        Up = "up",
        /// Not connected.
        Down = "down",
    }
}

/// The peer as this node sees it: the answer to `peer`, and part of [`Status`]. The fields the
/// peer reports in its hellos are `None` until a hello has been received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// `link.peer` from the configuration.
    pub address: String,
    /// The failover link.
    pub link: LinkState,
    /// The peer's node id, 8 hex digits.
    #[serde(default, with = "super::node_id_hex::option")]
    pub node_id: Option<NodeId>,
    /// The peer's failover state, from its last hello.
    pub state: Option<FailoverState>,
    /// The peer's role, from its last hello.
    pub role: Option<Role>,
    /// The peer's priority.
    pub priority: Option<u8>,
    /// Whether the peer is ready to take over.
    pub ready: Option<bool>,
    /// Milliseconds since the last hello.
    pub last_hello_ms_ago: Option<u64>,
    /// Round-trip time of the failover link in microseconds.
    pub rtt_us: Option<u64>,
    /// Why negotiation with this peer fails (e.g. "peer is in pair 2, we are in pair 1").
    pub incompatibility: Option<String>,
    /// The failover-link protocol version the peer speaks, `"major.minor"` (`"1.0"` for the
    /// first release).
    #[serde(default)]
    pub protocol: Option<String>,
    /// The peer's hello interval, milliseconds.
    #[serde(default)]
    pub hello_interval_ms: Option<u64>,
    /// The peer's dead interval, milliseconds.
    #[serde(default)]
    pub dead_interval_ms: Option<u64>,
    /// The warning when the peer's hello or dead interval differs from ours (synchronization
    /// goes on); `None` when they are equal.
    #[serde(default)]
    pub timer_mismatch: Option<String>,
}

/// How many sessions the table holds and how many changes are on their way: the answer to
/// `sessions-count`, and part of [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionCounts {
    /// All sessions in the table.
    pub total: u64,
    /// Sessions this node owns (its kernel created them).
    pub owned: u64,
    /// Sessions the peer owns (backed up here).
    pub peer_owned: u64,
    /// Local changes queued and not yet sent.
    pub pending_changes: u64,
    /// Batches sent and not yet acknowledged by the peer.
    pub in_flight_batches: u64,
}

/// Replication progress and lag, part of [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Replication {
    /// The current bulk-sync epoch.
    pub epoch: u64,
    /// The peer has applied this node's bulk sync.
    pub bulk_sent: bool,
    /// This node has applied the peer's bulk sync (it holds the peer's sessions).
    pub bulk_received: bool,
    /// Median lag, microseconds: from a change reaching the core to the peer acknowledging it.
    pub lag_p50_us: u64,
    /// 99th percentile lag, microseconds.
    pub lag_p99_us: u64,
    /// Largest lag seen, microseconds.
    pub lag_max_us: u64,
    /// Number of lag samples.
    pub lag_samples: u64,
    /// Bytes of the peer's batches held now, waiting for a gap to fill or to be applied (at
    /// most `sessions.peer_buffer_mib`; absent from daemons before it).
    #[serde(default)]
    pub peer_buffered_bytes: u64,
}
