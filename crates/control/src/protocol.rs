//! The control protocol between the daemon and `failoverctl`: JSON lines over a Unix socket.
//!
//! A client writes one [`Request`] object per line and reads one [`Response`] per line, in
//! order; a connection may carry several requests. A request names its command in `cmd`:
//!
//! ```text
//! {"cmd":"status"}
//! {"ok":true,"data":{"node":{"name":"fw-a",...},...}}
//! {"cmd":"sessions","filter":{"proto":"tcp","owner":"peer"},"limit":100}
//! {"ok":true,"data":{"total":1200,"matched":400,"sessions":[...]}}
//! {"cmd":"frobnicate"}
//! {"ok":false,"error":"bad request: unknown variant `frobnicate`, ..."}
//! ```
//!
//! The data types below are the `data` of successful responses. Their field names are a
//! stable contract (`failoverctl --json` prints them as they are, and scripts rely on them):
//! fields are added, never renamed or removed, so clients must ignore fields they do not
//! know. The reference is in this crate's `README.md`.
//!
//! Values from a closed set (states, roles, modes, kinds) are enums here, each serialized as
//! the same string as before they were types. A value this version does not know, from a
//! newer daemon, fails to parse: `failoverctl` then says it does not understand the daemon's
//! data, and `failoverctl --json` (which prints the data as sent) still shows it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use failoverd_wire::{SessionRecord, Tuple, proto_name};
use serde::{Deserialize, Serialize};

pub use failoverd_wire::NodeId;

/// An enum whose variants are names in the JSON: each variant serializes as its name, which
/// [`name`](FailoverState::name) and `Display` give too, so human output and JSON agree, and
/// compares equal to it; a name this version does not know is refused.
macro_rules! names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $text)] $variant, )*
        }

        impl $name {
            /// The name used in JSON and in human output.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        // Code that checks a value against the JSON name (tests reading `failoverctl --json`)
        // reads the same with the type.
        impl PartialEq<&str> for $name {
            fn eq(&self, name: &&str) -> bool {
                self.name() == *name
            }
        }
    };
}

/// A command from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// This node's state; answered with [`Status`].
    Status,
    /// The peer as this node sees it; answered with [`PeerInfo`].
    Peer,
    /// Sessions in the table; answered with [`SessionList`].
    Sessions {
        /// Which sessions; all when absent.
        #[serde(default)]
        filter: SessionFilter,
        /// At most this many; all when absent.
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Session counts; answered with [`SessionCounts`].
    SessionsCount,
    /// Creates synthetic local sessions (memory backend only): for trying failoverd out and
    /// for tests. Answered with [`Generated`].
    SessionsGenerate {
        /// How many.
        count: u32,
    },
    /// Recent events, oldest first; answered with [`EventList`].
    Events {
        /// At most this many of the newest; all kept ones when absent.
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Hands the active role to the peer; answered with [`SwitchoverDone`].
    Switchover,
    /// Turns maintenance on or off (`{"cmd":"maintenance","on":true}`); answered with
    /// [`MaintenanceDone`]. A VRRP node in maintenance steps down and stays backup.
    Maintenance {
        /// On (true) or off (false).
        on: bool,
    },
}

impl Request {
    /// The command's name, as in `cmd`.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Peer => "peer",
            Request::Sessions { .. } => "sessions",
            Request::SessionsCount => "sessions-count",
            Request::SessionsGenerate { .. } => "sessions-generate",
            Request::Events { .. } => "events",
            Request::Switchover => "switchover",
            Request::Maintenance { .. } => "maintenance",
        }
    }

    /// Whether only root, the daemon's own user or the `control.group` may run the command:
    /// those that change the daemon's state, and the session list, which shows the
    /// connections crossing the firewall (the kernel lists its conntrack table to
    /// `CAP_NET_ADMIN` only). Any local user may run the others.
    pub fn privileged(&self) -> bool {
        match self {
            Request::Status | Request::Peer | Request::SessionsCount | Request::Events { .. } => {
                false
            }
            Request::Sessions { .. }
            | Request::SessionsGenerate { .. }
            | Request::Switchover
            | Request::Maintenance { .. } => true,
        }
    }
}

/// The answer to one request: `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "ResponseRepr", try_from = "ResponseRepr")]
pub enum Response {
    /// The command succeeded; the data type depends on the command.
    Ok(serde_json::Value),
    /// The command failed; the message is for the operator.
    Error(String),
}

impl Response {
    /// A successful response carrying `data`.
    pub fn ok(data: &impl Serialize) -> Response {
        match serde_json::to_value(data) {
            Ok(value) => Response::Ok(value),
            // Only maps with non-string keys fail to serialize; no protocol type has one.
            Err(err) => Response::Error(format!("internal error: cannot encode response: {err}")),
        }
    }

    /// A failed response.
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error(message.into())
    }
}

/// The JSON shape of [`Response`]: a flag and either field, which an enum cannot express
/// directly with serde's attributes.
#[derive(Serialize, Deserialize)]
struct ResponseRepr {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<Response> for ResponseRepr {
    fn from(response: Response) -> Self {
        match response {
            Response::Ok(data) => Self {
                ok: true,
                data: Some(data),
                error: None,
            },
            Response::Error(error) => Self {
                ok: false,
                data: None,
                error: Some(error),
            },
        }
    }
}

impl TryFrom<ResponseRepr> for Response {
    type Error = &'static str;

    fn try_from(repr: ResponseRepr) -> Result<Self, &'static str> {
        match repr {
            ResponseRepr {
                ok: true,
                data: Some(data),
                ..
            } => Ok(Response::Ok(data)),
            ResponseRepr {
                ok: false,
                error: Some(error),
                ..
            } => Ok(Response::Error(error)),
            ResponseRepr { ok: true, .. } => Err("\"ok\":true without \"data\""),
            ResponseRepr { ok: false, .. } => Err("\"ok\":false without \"error\""),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// status and peer

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
    pub node_id: String,
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
    pub node_id: Option<String>,
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

// ---------------------------------------------------------------------------------------------
// takeover

/// How the traffic moves to the active node, part of [`Status`] (`docs/TAKEOVER.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverStatus {
    /// `takeover.mode`.
    pub mode: TakeoverKind,
    /// The VRRP group (mode `"vrrp"`); `None` otherwise.
    pub group: Option<VrrpGroupView>,
    /// FRR (`[routing]`); `None` when not configured.
    pub routing: Option<RoutingView>,
    /// Role-change commands (`[hooks]`); `None` when none is configured.
    pub hooks: Option<HooksView>,
}

impl Default for TakeoverStatus {
    /// Election mode, nothing else configured: what a daemon that does not report takeover
    /// does.
    fn default() -> Self {
        Self {
            mode: TakeoverKind::Election,
            group: None,
            routing: None,
            hooks: None,
        }
    }
}

names! {
    /// What decides which node forwards (`takeover.mode`).
    pub enum TakeoverKind {
        /// The nodes elect the active one over the failover link.
        Election = "election",
        /// The VRRP group's mastership.
        Vrrp = "vrrp",
    }
}

/// The VRRP group: all of this node's instances, which move together.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VrrpGroupView {
    /// The group's state.
    pub state: VrrpState,
    /// Why it is in that state (e.g. "master down timer expired on lan").
    pub reason: String,
    /// Whether the core allows preempting a healthy master (this node holds the peer's
    /// sessions).
    pub ready_to_preempt: bool,
    /// Why this node does not preempt now, when it could want to (e.g. "preempt delay: 1.2 s
    /// left"); `None` when nothing holds it back.
    pub not_preempting: Option<String>,
    /// Maintenance is on (`failoverctl maintenance on`).
    pub maintenance: bool,
    /// `vrrp.peer_check`: adverts the peer's state contradicts are ignored.
    #[serde(default)]
    pub peer_check: bool,
    /// The peer's group as the failover link says (`"unheard"` from daemons before it).
    #[serde(default)]
    pub peer: VrrpPeerState,
    /// `vrrp.silent_intervals`: after this many master-down intervals with no master heard on
    /// one instance, the failover link decides which node acts (0: never).
    #[serde(default)]
    pub silent_intervals: u32,
    /// The sum of the weights of the trackers that are down, taken off every instance's
    /// priority.
    pub priority_penalty: u8,
    /// Why the group is in fault (a weight-0 tracker is down); `None` when not.
    pub fault: Option<String>,
    /// Each instance.
    pub instances: Vec<VrrpInstanceView>,
    /// Each tracker.
    pub tracks: Vec<TrackView>,
}

names! {
    /// The state of the VRRP group or of one instance (RFC 5798 6.4; `fault` is the group's
    /// only).
    #[derive(Default)]
    pub enum VrrpState {
        /// Not started, or stopped.
        #[default]
        Initialize = "initialize",
        /// Another router is master.
        Backup = "backup",
        /// This node is master.
        Master = "master",
        /// A tracked object with weight 0 is down: never master.
        Fault = "fault",
    }
}

names! {
    /// The peer's VRRP group as the failover link says.
    #[derive(Default)]
    pub enum VrrpPeerState {
        /// No failoverd peer heard: adverts are taken as RFC 5798 says.
        #[default]
        Unheard = "unheard",
        /// The peer says it is not master.
        NotMaster = "not-master",
        /// The peer is about to take over: adverts are taken as the RFC says.
        Preempting = "preempting",
        /// The peer says it is master.
        Master = "master",
    }
}

/// One VRRP instance (`[[vrrp.instance]]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VrrpInstanceView {
    /// `name`.
    pub name: String,
    /// `interface`.
    pub interface: String,
    /// `vrid`.
    pub vrid: u8,
    /// The address family of its adverts and addresses.
    pub family: Family,
    /// The instance's state (never `fault`).
    pub state: VrrpState,
    /// The priority it advertises now: the configured one less the penalty.
    pub priority: u8,
    /// `priority` from the configuration.
    pub configured_priority: u8,
    /// The advertisement interval in use, milliseconds (a backup uses the master's).
    pub advert_interval_ms: u64,
    /// The current master's address (this node's when master); `None` when unknown.
    pub master_address: Option<String>,
    /// The current master's priority; `None` when unknown.
    pub master_priority: Option<u8>,
    /// The virtual addresses, `address/prefix`.
    pub addresses: Vec<String>,
    /// Whether this node has the virtual addresses on the interface now.
    pub holds_addresses: bool,
    /// `unicast_peers`; empty: multicast.
    pub unicast_peers: Vec<String>,
    /// Advertisements sent.
    pub adverts_sent: u64,
    /// Valid advertisements received.
    pub adverts_received: u64,
    /// Packets dropped by the checks: the sum of `dropped`.
    pub malformed_dropped: u64,
    /// Those per reason.
    #[serde(default)]
    pub dropped: VrrpDropsView,
    /// Valid adverts of another virtual router on the network (ignored, not counted above).
    #[serde(default)]
    pub other_vrid: u64,
    /// Valid adverts ignored because the peer, over the failover link, says it is not master
    /// (forged; not counted above).
    #[serde(default)]
    pub peer_contradicted: u64,
    /// Contested claims and priority-0 adverts not answered at once (rate limited).
    #[serde(default)]
    pub answers_limited: u64,
    /// Master-down intervals in a row with no master heard (a backup that follows a master
    /// on another network); 0 when a master is heard.
    #[serde(default)]
    pub silent_for: u32,
    /// The interface received packets within the last 2 s: the network behind it is alive.
    #[serde(default)]
    pub port_hears: bool,
    /// The peer's report on this virtual router (over the failover link): it has heard no
    /// master for `silent_intervals`; `None` without a report.
    #[serde(default)]
    pub peer_silent: Option<bool>,
    /// The peer's report: its port hears the network; `None` without a report.
    #[serde(default)]
    pub peer_hears: Option<bool>,
    /// Times this instance became master.
    pub became_master: u64,
}

/// VRRP packets dropped by the checks (RFC 5798 7.1), per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VrrpDropsView {
    /// IPv4 on an IPv6 instance or the reverse.
    pub family: u64,
    /// TTL / hop limit not 255 (routed from off the link).
    pub ttl: u64,
    /// Not VRRP version 3.
    pub version: u64,
    /// Not an advertisement.
    #[serde(rename = "type")]
    pub kind: u64,
    /// Too short, or not exactly the header and its addresses.
    pub length: u64,
    /// Bad checksum.
    pub checksum: u64,
    /// With `unicast_peers`: from another source.
    pub unknown_peer: u64,
}

/// One tracker (`[[vrrp.track_*]]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrackView {
    /// What is tracked.
    pub kind: TrackKind,
    /// The interface, the route's destination or the script's name.
    pub name: String,
    /// Whether it is up.
    pub up: bool,
    /// Its weight: the penalty while down; 0 means fault.
    pub weight: u8,
}

names! {
    /// What a tracker watches.
    #[derive(Default)]
    pub enum TrackKind {
        /// An interface's link state (`track_interface`, and every instance's own interface).
        #[default]
        Interface = "interface",
        /// Whether a route exists (`track_route`).
        Route = "route",
        /// A command's exit status (`track_script`).
        Script = "script",
    }
}

/// FRR (`[routing]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoutingView {
    /// Where applying the role's cost is.
    pub state: RoutingState,
    /// The most recent failure to apply a cost, kept after a later success; `None` if none.
    pub last_error: Option<String>,
}

names! {
    /// Where FRR's costs are.
    #[derive(Default)]
    pub enum RoutingState {
        /// A change runs or waits (also before the first one ran).
        #[default]
        Applying = "applying",
        /// The last run failed; until one succeeds.
        Failed = "failed",
        /// The active cost is set.
        Active = "active",
        /// The standby cost is set.
        Standby = "standby",
    }
}

/// Role-change commands (`[hooks]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HooksView {
    /// How the last run ended (e.g. "on_active exited 0 after 12 ms"); `None` before the first.
    pub last: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// sessions

/// The answer to `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// Sessions in the table.
    pub total: usize,
    /// Sessions that match the filter (may exceed `sessions.len()` when limited).
    pub matched: usize,
    /// The matching sessions, at most the request's limit.
    pub sessions: Vec<SessionView>,
}

impl SessionList {
    /// Filters `records` and keeps at most `limit` (all when `None`) of the matches; `local` is
    /// this node, which tells local from peer-owned sessions.
    pub fn select<'a>(
        records: impl IntoIterator<Item = &'a SessionRecord>,
        filter: &SessionFilter,
        limit: Option<usize>,
        local: NodeId,
    ) -> SessionList {
        let limit = limit.unwrap_or(usize::MAX);
        let mut list = SessionList {
            total: 0,
            matched: 0,
            sessions: Vec::new(),
        };
        for record in records {
            list.total += 1;
            if filter.matches(record, local) {
                list.matched += 1;
                if list.sessions.len() < limit {
                    list.sessions.push(SessionView::from_record(record, local));
                }
            }
        }
        list
    }

    /// The list [`select`](Self::select) makes with no limit, as the JSON of a `SessionList`
    /// written piece by piece (the sessions first, then `total` and `matched`): each piece of
    /// [`SESSIONS_PER_PIECE`] sessions goes to `emit` as soon as it is made, so a large table
    /// is never held whole as JSON. Stops when `emit` returns false (the reader is gone).
    pub fn write_json<'a>(
        records: impl IntoIterator<Item = &'a SessionRecord>,
        filter: &SessionFilter,
        local: NodeId,
        mut emit: impl FnMut(Vec<u8>) -> bool,
    ) {
        let (mut total, mut matched) = (0usize, 0usize);
        let mut piece = b"{\"sessions\":[".to_vec();
        for record in records {
            total += 1;
            if !filter.matches(record, local) {
                continue;
            }
            if matched > 0 {
                piece.push(b',');
            }
            matched += 1;
            // Invariant: a view is strings and numbers, which always serialize.
            serde_json::to_writer(&mut piece, &SessionView::from_record(record, local))
                .expect("a session view serializes");
            if matched.is_multiple_of(SESSIONS_PER_PIECE) && !emit(std::mem::take(&mut piece)) {
                return;
            }
        }
        piece.extend_from_slice(format!("],\"total\":{total},\"matched\":{matched}}}").as_bytes());
        emit(piece);
    }
}

/// Sessions per piece of [`SessionList::write_json`].
pub const SESSIONS_PER_PIECE: usize = 1024;

/// One session as the control protocol shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The protocol.
    pub proto: Proto,
    /// Address family.
    pub family: Family,
    /// The original direction.
    pub orig: TupleView,
    /// The reply direction; differs from the inverted original under NAT.
    pub reply: TupleView,
    /// The owner's node id, 8 hex digits.
    #[serde(with = "node_id_hex")]
    pub owner: NodeId,
    /// Owned by this node.
    pub local: bool,
    /// Conntrack zone.
    pub zone: u16,
    /// Connection mark.
    pub mark: u32,
    /// `IPS_*` status bits.
    pub status: u32,
    /// Remaining lifetime, seconds.
    pub timeout: u32,
    /// TCP tracking state (e.g. "ESTABLISHED"); TCP only.
    pub tcp_state: Option<String>,
    /// Conntrack helper (e.g. "ftp"), when one is attached.
    pub helper: Option<String>,
    /// Connection labels, 32 hex digits, when any bit is set.
    pub labels: Option<String>,
}

/// TCP's IP protocol number: only TCP sessions have a tracking state.
const IPPROTO_TCP: u8 = 6;

impl SessionView {
    /// The view of `record`; `local` is this node.
    pub fn from_record(record: &SessionRecord, local: NodeId) -> SessionView {
        let labels = (record.labels != [0; 16])
            .then(|| record.labels.iter().map(|b| format!("{b:02x}")).collect());
        SessionView {
            proto: Proto(record.key.l4proto),
            family: Family::of(record.key.orig.src),
            orig: TupleView::from(&record.key.orig),
            reply: TupleView::from(&record.reply),
            owner: record.owner,
            local: record.owner == local,
            zone: record.key.zone,
            mark: record.mark,
            status: record.status,
            timeout: record.timeout_secs,
            tcp_state: (record.key.l4proto == IPPROTO_TCP)
                .then(|| record.tcp.state.name().to_string()),
            helper: Some(record.helper.as_str())
                .filter(|name| !name.is_empty())
                .map(str::to_string),
            labels,
        }
    }
}

/// An IP protocol: in JSON its name ("tcp", "udp", "icmp", "icmpv6", "sctp"), or its number
/// for others ("47").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Proto(pub u8);

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match proto_name(self.0) {
            "other" => write!(f, "{}", self.0),
            name => f.write_str(name),
        }
    }
}

impl From<Proto> for String {
    fn from(proto: Proto) -> String {
        proto.to_string()
    }
}

impl TryFrom<String> for Proto {
    type Error = String;

    /// A name [`Display`](fmt::Display) gives, or a number.
    fn try_from(text: String) -> Result<Proto, String> {
        if let Ok(number) = text.parse() {
            return Ok(Proto(number));
        }
        (0..=u8::MAX)
            .find(|&n| proto_name(n) == text && text != "other")
            .map(Proto)
            .ok_or_else(|| format!("unknown protocol {text:?}"))
    }
}

/// A node id in JSON: 8 hex digits, as its `Display`.
mod node_id_hex {
    use failoverd_wire::NodeId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(id: &NodeId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NodeId, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() != 8 {
            return Err(D::Error::custom(format!(
                "node id {text:?} is not 8 hex digits"
            )));
        }
        u32::from_str_radix(&text, 16)
            .map(NodeId)
            .map_err(|_| D::Error::custom(format!("node id {text:?} is not 8 hex digits")))
    }
}

/// One direction of a session. For ICMP, `sport` is the echo id and `dport` is
/// `type << 8 | code`, as conntrack reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TupleView {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl From<&Tuple> for TupleView {
    fn from(tuple: &Tuple) -> Self {
        TupleView {
            src: tuple.src,
            dst: tuple.dst,
            sport: tuple.src_port,
            dport: tuple.dst_port,
        }
    }
}

names! {
    /// An address family.
    #[derive(Default)]
    pub enum Family {
        /// IPv4.
        #[default]
        Ipv4 = "ipv4",
        /// IPv6.
        Ipv6 = "ipv6",
    }
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

names! {
    /// Whose sessions to list.
    pub enum OwnerFilter {
        /// Owned by this node.
        Local = "local",
        /// Owned by another node (backed up here).
        Peer = "peer",
    }
}

/// Which sessions `sessions` lists: every given criterion must match; absent ones match all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionFilter {
    /// Protocol name ("tcp", case-insensitive) or number ("6").
    pub proto: Option<String>,
    /// Matches any of the four addresses (both directions, so NAT addresses match too).
    pub addr: Option<IpAddr>,
    /// Matches any of the four ports.
    pub port: Option<u16>,
    /// Local or peer-owned sessions.
    pub owner: Option<OwnerFilter>,
    /// Address family.
    pub family: Option<Family>,
}

impl SessionFilter {
    /// Whether `record` matches; `local` is this node.
    pub fn matches(&self, record: &SessionRecord, local: NodeId) -> bool {
        let tuples = [&record.key.orig, &record.reply];
        let proto = self.proto.as_deref().is_none_or(|proto| {
            let number = record.key.l4proto;
            proto.eq_ignore_ascii_case(proto_name(number)) || proto.parse() == Ok(number)
        });
        let addr = self
            .addr
            .is_none_or(|addr| tuples.iter().any(|t| t.src == addr || t.dst == addr));
        let port = self.port.is_none_or(|port| {
            tuples
                .iter()
                .any(|t| t.src_port == port || t.dst_port == port)
        });
        let owner = self.owner.is_none_or(|owner| match owner {
            OwnerFilter::Local => record.owner == local,
            OwnerFilter::Peer => record.owner != local,
        });
        let family = self
            .family
            .is_none_or(|family| Family::of(record.key.orig.src) == family);
        proto && addr && port && owner && family
    }
}

/// The answer to `sessions-generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    /// Sessions created.
    pub created: u32,
    /// Sessions not created because the table is full.
    pub table_full: u32,
}

// ---------------------------------------------------------------------------------------------
// events, switchover and maintenance

/// The answer to `events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventList {
    /// Oldest first.
    pub events: Vec<EventView>,
}

/// One entry of the event history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// Milliseconds since the daemon started.
    pub at_ms: u64,
    /// What kind of event.
    pub kind: EventKind,
    /// The previous state or role (state and role events).
    pub from: Option<String>,
    /// The new state or role (state and role events).
    pub to: Option<String>,
    /// Why it happened, when the event has a reason.
    pub reason: Option<String>,
    /// The whole event in one line, for people.
    pub message: String,
}

names! {
    /// Kinds of events.
    pub enum EventKind {
        /// The failover state changed.
        State = "state",
        /// The role changed.
        Role = "role",
        /// Negotiation with a live peer failed.
        Negotiation = "negotiation",
        /// The peer applied this node's bulk sync.
        BulkSent = "bulk-sent",
        /// This node applied the peer's bulk sync.
        BulkReceived = "bulk-received",
        /// The backend lost change events; a resync follows.
        ChangesLost = "changes-lost",
        /// The backend refused some of the peer's sessions.
        ApplyFailed = "apply-failed",
        /// A setting that should be equal on both nodes differs.
        SettingDiffers = "setting-differs",
        /// The peer's hello or dead interval differs from ours.
        TimersDiffer = "timers-differ",
        /// The digest comparison found drift; a resync follows.
        Drift = "drift",
        /// The failover link went up or down.
        Link = "link",
        /// The VRRP group or one of its instances changed state.
        Vrrp = "vrrp",
        /// A tracker went up or down.
        Track = "track",
        /// A role-change command ran (or failed, or timed out).
        Hook = "hook",
        /// FRR's costs were applied, or applying them failed.
        Routing = "routing",
        /// The heartbeat path started or stopped hearing the peer.
        Heartbeat = "heartbeat",
    }
}

/// The answer to `switchover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverDone {
    /// What happened, for people (e.g. "handed the active role to node 2000abcd").
    pub message: String,
}

/// The answer to `maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceDone {
    /// What happened, for people (e.g. "maintenance on: stepping down").
    pub message: String,
}

#[cfg(test)]
mod tests {
    use failoverd_wire::{HelperName, TcpInfo, TcpState};
    use serde_json::json;

    use super::*;

    /// The streamed list is the same JSON value as the one `select` makes, in pieces.
    #[test]
    fn a_streamed_list_is_the_selected_list() {
        let local = NodeId(1);
        let records: Vec<_> = (0..2500u32)
            .map(|i| {
                let mut record = tcp();
                record.key.orig.src_port = i as u16;
                record.owner = NodeId(1 + i % 2);
                record
            })
            .collect();
        let filter = SessionFilter {
            owner: Some(OwnerFilter::Local),
            ..SessionFilter::default()
        };
        let mut pieces = Vec::new();
        SessionList::write_json(&records, &filter, local, |piece| {
            pieces.push(piece);
            true
        });
        assert_eq!(
            pieces.len(),
            2,
            "1,250 matches: one full piece and the rest"
        );
        let streamed: SessionList = serde_json::from_slice(&pieces.concat()).unwrap();
        assert_eq!(
            streamed,
            SessionList::select(&records, &filter, None, local)
        );
        assert_eq!((streamed.total, streamed.matched), (2500, 1250));
    }

    /// `name` is the `cmd` a request is sent with.
    #[test]
    fn request_names_are_their_cmd() {
        for request in [
            Request::Status,
            Request::Peer,
            Request::Sessions {
                filter: SessionFilter::default(),
                limit: None,
            },
            Request::SessionsCount,
            Request::SessionsGenerate { count: 1 },
            Request::Events { limit: None },
            Request::Switchover,
            Request::Maintenance { on: true },
        ] {
            let json = serde_json::to_value(&request).unwrap();
            assert_eq!(json["cmd"], request.name(), "{request:?}");
        }
    }

    const LOCAL: NodeId = NodeId(0x1000_abcd);
    const PEER: NodeId = NodeId(0x2000_abcd);

    fn record(
        proto: u8,
        orig: (&str, u16, &str, u16),
        reply_src: &str,
        owner: NodeId,
    ) -> SessionRecord {
        let (src, sport, dst, dport) = orig;
        SessionRecord {
            key: failoverd_wire::SessionKey {
                zone: 0,
                l4proto: proto,
                orig: Tuple {
                    src: src.parse().unwrap(),
                    dst: dst.parse().unwrap(),
                    src_port: sport,
                    dst_port: dport,
                },
            },
            reply: Tuple {
                src: dst.parse().unwrap(),
                dst: reply_src.parse().unwrap(),
                src_port: dport,
                dst_port: 61000,
            },
            owner,
            mark: 0,
            status: 0x18e,
            timeout_secs: 120,
            tcp: TcpInfo {
                state: TcpState::ESTABLISHED,
                ..TcpInfo::default()
            },
            seq_adj: Default::default(),
            labels: [0; 16],
            helper: HelperName::NONE,
        }
    }

    fn tcp() -> SessionRecord {
        record(
            6,
            ("10.0.0.1", 40000, "192.0.2.80", 80),
            "198.51.100.1",
            LOCAL,
        )
    }

    fn udp6() -> SessionRecord {
        record(
            17,
            ("2001:db8::1", 5353, "2001:db8::2", 53),
            "2001:db8::1",
            PEER,
        )
    }

    #[test]
    fn requests_have_a_stable_json_form() {
        let cases = [
            (Request::Status, json!({"cmd": "status"})),
            (Request::Peer, json!({"cmd": "peer"})),
            (Request::SessionsCount, json!({"cmd": "sessions-count"})),
            (
                Request::SessionsGenerate { count: 5 },
                json!({"cmd": "sessions-generate", "count": 5}),
            ),
            (
                Request::Events { limit: Some(3) },
                json!({"cmd": "events", "limit": 3}),
            ),
            (Request::Switchover, json!({"cmd": "switchover"})),
            (
                Request::Maintenance { on: true },
                json!({"cmd": "maintenance", "on": true}),
            ),
            (
                Request::Maintenance { on: false },
                json!({"cmd": "maintenance", "on": false}),
            ),
            (
                Request::Sessions {
                    filter: SessionFilter {
                        proto: Some("tcp".into()),
                        owner: Some(OwnerFilter::Peer),
                        ..SessionFilter::default()
                    },
                    limit: Some(100),
                },
                json!({"cmd": "sessions", "limit": 100, "filter": {
                    "proto": "tcp", "addr": null, "port": null, "owner": "peer", "family": null}}),
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(serde_json::to_value(&request).unwrap(), expected);
            assert_eq!(
                serde_json::from_value::<Request>(expected).unwrap(),
                request
            );
        }
        // Optional fields may be left out.
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"sessions"}"#).unwrap(),
            Request::Sessions {
                filter: SessionFilter::default(),
                limit: None
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"events"}"#).unwrap(),
            Request::Events { limit: None }
        );
        // A misspelt filter must not silently match everything.
        assert!(
            serde_json::from_str::<Request>(r#"{"cmd":"sessions","filter":{"protocol":"tcp"}}"#)
                .is_err()
        );
    }

    #[test]
    fn responses_have_a_stable_json_form() {
        let ok = Response::ok(&Generated {
            created: 3,
            table_full: 0,
        });
        let text = serde_json::to_string(&ok).unwrap();
        assert_eq!(text, r#"{"ok":true,"data":{"created":3,"table_full":0}}"#);
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), ok);
        let err = Response::error("no peer");
        let text = serde_json::to_string(&err).unwrap();
        assert_eq!(text, r#"{"ok":false,"error":"no peer"}"#);
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), err);
        assert!(serde_json::from_str::<Response>(r#"{"ok":true}"#).is_err());
        assert!(serde_json::from_str::<Response>(r#"{"ok":false}"#).is_err());
    }

    #[test]
    fn session_views() {
        let mut ftp = tcp();
        ftp.labels[15] = 1;
        ftp.helper = HelperName::new("ftp").unwrap();
        ftp.key.zone = 2;
        let view = SessionView::from_record(&ftp, LOCAL);
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            json!({
                "proto": "tcp", "family": "ipv4",
                "orig": {"src": "10.0.0.1", "dst": "192.0.2.80", "sport": 40000, "dport": 80},
                "reply": {"src": "192.0.2.80", "dst": "198.51.100.1", "sport": 80, "dport": 61000},
                "owner": "1000abcd", "local": true, "zone": 2, "mark": 0, "status": 0x18e,
                "timeout": 120, "tcp_state": "ESTABLISHED", "helper": "ftp",
                "labels": "00000000000000000000000000000001",
            })
        );
        let view = SessionView::from_record(&udp6(), LOCAL);
        assert_eq!(view.family, Family::Ipv6);
        assert!(!view.local);
        assert_eq!(view.owner.to_string(), "2000abcd");
        assert_eq!(
            (view.tcp_state, view.helper, view.labels),
            (None, None, None)
        );
        let gre = record(47, ("10.0.0.1", 0, "10.0.0.2", 0), "10.0.0.1", LOCAL);
        assert_eq!(
            SessionView::from_record(&gre, LOCAL).proto.to_string(),
            "47"
        );
    }

    #[test]
    fn filters() {
        let (tcp, udp6) = (tcp(), udp6());
        let matching = |filter: SessionFilter| {
            [&tcp, &udp6]
                .into_iter()
                .filter(|r| filter.matches(r, LOCAL))
                .map(|r| proto_name(r.key.l4proto))
                .collect::<Vec<_>>()
        };
        let filter = |f: fn(&mut SessionFilter)| {
            let mut filter = SessionFilter::default();
            f(&mut filter);
            matching(filter)
        };
        assert_eq!(filter(|_| {}), ["tcp", "udp"]);
        assert_eq!(filter(|f| f.proto = Some("TCP".into())), ["tcp"]);
        assert_eq!(filter(|f| f.proto = Some("17".into())), ["udp"]);
        assert_eq!(filter(|f| f.proto = Some("icmp".into())), [] as [&str; 0]);
        // The NAT address appears only in the reply tuple.
        assert_eq!(
            filter(|f| f.addr = Some("198.51.100.1".parse().unwrap())),
            ["tcp"]
        );
        assert_eq!(
            filter(|f| f.addr = Some("2001:db8::2".parse().unwrap())),
            ["udp"]
        );
        assert_eq!(filter(|f| f.port = Some(61000)), ["tcp", "udp"]);
        assert_eq!(filter(|f| f.port = Some(53)), ["udp"]);
        assert_eq!(filter(|f| f.owner = Some(OwnerFilter::Local)), ["tcp"]);
        assert_eq!(filter(|f| f.owner = Some(OwnerFilter::Peer)), ["udp"]);
        assert_eq!(filter(|f| f.family = Some(Family::Ipv6)), ["udp"]);
        assert_eq!(
            filter(|f| {
                f.proto = Some("tcp".into());
                f.owner = Some(OwnerFilter::Peer);
            }),
            [] as [&str; 0]
        );
    }

    #[test]
    fn select_counts_and_limits() {
        let records = [tcp(), udp6(), tcp()];
        let all = SessionList::select(&records, &SessionFilter::default(), Some(2), LOCAL);
        assert_eq!((all.total, all.matched, all.sessions.len()), (3, 3, 2));
        let filter = SessionFilter {
            owner: Some(OwnerFilter::Peer),
            ..SessionFilter::default()
        };
        let peer = SessionList::select(&records, &filter, None, LOCAL);
        assert_eq!((peer.total, peer.matched, peer.sessions.len()), (3, 1, 1));
    }

    #[test]
    fn event_kinds_are_kebab_case() {
        for kind in [
            EventKind::State,
            EventKind::Role,
            EventKind::Negotiation,
            EventKind::BulkSent,
            EventKind::BulkReceived,
            EventKind::ChangesLost,
            EventKind::ApplyFailed,
            EventKind::SettingDiffers,
            EventKind::Drift,
            EventKind::Link,
            EventKind::Vrrp,
            EventKind::Track,
            EventKind::Hook,
            EventKind::Routing,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.name()));
            assert_eq!(
                serde_json::from_value::<EventKind>(json!(kind.name())).unwrap(),
                kind
            );
        }
    }

    /// The example of `docs/TAKEOVER.md`, field for field.
    fn takeover_json() -> serde_json::Value {
        json!({"mode": "vrrp",
            "group": {"state": "master", "reason": "master down timer expired on lan",
                "ready_to_preempt": true, "not_preempting": null, "maintenance": false,
                "peer_check": true, "peer": "not-master", "silent_intervals": 3,
                "priority_penalty": 0, "fault": null,
                "instances": [{"name": "lan", "interface": "lan", "vrid": 51, "family": "ipv4",
                    "state": "master", "priority": 200, "configured_priority": 200,
                    "advert_interval_ms": 50, "master_address": "10.0.1.2",
                    "master_priority": 200, "addresses": ["10.0.1.1/24"],
                    "holds_addresses": true, "unicast_peers": [], "adverts_sent": 123,
                    "adverts_received": 4, "malformed_dropped": 1,
                    "dropped": {"family": 0, "ttl": 1, "version": 0, "type": 0, "length": 0,
                        "checksum": 0, "unknown_peer": 0},
                    "other_vrid": 0, "peer_contradicted": 0, "answers_limited": 0,
                    "silent_for": 0, "port_hears": true, "peer_silent": false,
                    "peer_hears": true, "became_master": 1}],
                "tracks": [{"kind": "interface", "name": "wan", "up": true, "weight": 0}]},
            "routing": {"state": "active", "last_error": null},
            "hooks": {"last": "on_active exited 0 after 12 ms"}})
    }

    #[test]
    fn takeover_status_has_the_documented_json_form() {
        let takeover = TakeoverStatus {
            mode: TakeoverKind::Vrrp,
            group: Some(VrrpGroupView {
                state: VrrpState::Master,
                reason: "master down timer expired on lan".into(),
                ready_to_preempt: true,
                not_preempting: None,
                maintenance: false,
                peer_check: true,
                peer: VrrpPeerState::NotMaster,
                silent_intervals: 3,
                priority_penalty: 0,
                fault: None,
                instances: vec![VrrpInstanceView {
                    name: "lan".into(),
                    interface: "lan".into(),
                    vrid: 51,
                    family: Family::Ipv4,
                    state: VrrpState::Master,
                    priority: 200,
                    configured_priority: 200,
                    advert_interval_ms: 50,
                    master_address: Some("10.0.1.2".into()),
                    master_priority: Some(200),
                    addresses: vec!["10.0.1.1/24".into()],
                    holds_addresses: true,
                    unicast_peers: vec![],
                    adverts_sent: 123,
                    adverts_received: 4,
                    malformed_dropped: 1,
                    dropped: VrrpDropsView {
                        ttl: 1,
                        ..VrrpDropsView::default()
                    },
                    port_hears: true,
                    peer_silent: Some(false),
                    peer_hears: Some(true),
                    became_master: 1,
                    ..VrrpInstanceView::default()
                }],
                tracks: vec![TrackView {
                    kind: TrackKind::Interface,
                    name: "wan".into(),
                    up: true,
                    weight: 0,
                }],
            }),
            routing: Some(RoutingView {
                state: RoutingState::Active,
                last_error: None,
            }),
            hooks: Some(HooksView {
                last: Some("on_active exited 0 after 12 ms".into()),
            }),
        };
        assert_eq!(serde_json::to_value(&takeover).unwrap(), takeover_json());
        assert_eq!(
            serde_json::from_value::<TakeoverStatus>(takeover_json()).unwrap(),
            takeover
        );
        assert_eq!(
            serde_json::to_value(TakeoverStatus::default()).unwrap(),
            json!({"mode": "election", "group": null, "routing": null, "hooks": null})
        );
    }

    #[test]
    fn status_without_takeover_is_election() {
        let status = json!({
            "node": {"name": "fw-a", "node_id": "1000abcd", "fingerprint": "sha256:00",
                "pair_id": 1, "priority": 100, "backup": "symmetric", "preempt": true,
                "backend": "memory"},
            "state": "independence", "state_since_ms": 5, "role": "active", "ready": false,
            "not_ready": ["no bulk sync from the peer yet"], "peer": null,
            "sessions": SessionCounts::default(), "replication": Replication::default(),
            "counters": {}, "uptime_ms": 5,
        });
        let mut parsed: Status = serde_json::from_value(status).unwrap();
        assert_eq!(parsed.takeover, TakeoverStatus::default());
        parsed.takeover = serde_json::from_value(takeover_json()).unwrap();
        let round_trip = serde_json::to_value(&parsed).unwrap();
        assert_eq!(round_trip["takeover"], takeover_json());
    }

    #[test]
    fn maintenance_done_is_a_message() {
        let done = MaintenanceDone {
            message: "maintenance on".into(),
        };
        assert_eq!(
            serde_json::to_value(&done).unwrap(),
            json!({"message": "maintenance on"})
        );
    }
}
