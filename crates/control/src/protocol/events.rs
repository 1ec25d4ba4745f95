//! `events`, `switchover` and `maintenance`.

use serde::{Deserialize, Serialize};

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
        /// Configuration sync's status changed (`from` and `to` are statuses).
        ConfigStatus = "config-status",
        /// The peer applied this node's configuration (a full or an incremental sync).
        ConfigSent = "config-sent",
        /// This node applied the source's configuration.
        ConfigApplied = "config-applied",
        /// A configuration sync failed, was rolled back or was refused (on either node); the
        /// message names the unit and the kernel's or the OS's message.
        ConfigFailed = "config-failed",
        /// A periodic comparison found units differing between the nodes.
        ConfigDrift = "config-drift",
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
    use serde_json::json;

    use super::*;

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
            EventKind::ConfigStatus,
            EventKind::ConfigSent,
            EventKind::ConfigApplied,
            EventKind::ConfigFailed,
            EventKind::ConfigDrift,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.name()));
            assert_eq!(
                serde_json::from_value::<EventKind>(json!(kind.name())).unwrap(),
                kind
            );
        }
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
