//! How the traffic moves, part of `status`.

use serde::{Deserialize, Serialize};

use super::Family;

/// How the traffic moves to the active node, part of [`Status`](super::Status)
/// (`docs/TAKEOVER.md`).
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::{Replication, SessionCounts, Status};

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
}
