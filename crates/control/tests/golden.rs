//! The control protocol's JSON is a contract (`failoverctl --json`, scripts): each golden file
//! was written from the protocol types before they changed shape, and must still parse into
//! them and serialize back to the same bytes.

use std::path::Path;

use failoverd_control::protocol::{
    ConfigDiff, ConfigSyncReply, ConfigSyncStatus, EventList, PeerInfo, SessionCounts, SessionList,
    Status, TakeoverStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `golden/<name>` as a `T`, serializes it again, and compares the bytes.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let golden = std::fs::read_to_string(&path).unwrap();
    let value: T = serde_json::from_str(&golden)
        .unwrap_or_else(|err| panic!("{} does not parse: {err}", path.display()));
    let again = serde_json::to_string_pretty(&value).unwrap() + "\n";
    assert_eq!(again, golden, "{} changed on a round trip", path.display());
}

#[test]
fn statuses_round_trip_unchanged() {
    for name in [
        "status_vrrp.json",
        "status_vrrp_fault.json",
        "status_routing.json",
        "status_routing_applying.json",
        "status_hooks.json",
        "status_heartbeat.json",
    ] {
        round_trip::<Status>(name);
    }
}

#[test]
fn peer_sessions_and_events_round_trip_unchanged() {
    round_trip::<PeerInfo>("peer.json");
    round_trip::<SessionList>("sessions.json");
    round_trip::<SessionCounts>("sessions_count.json");
    round_trip::<EventList>("events.json");
}

#[test]
fn config_sync_answers_round_trip_unchanged() {
    for name in [
        "config_status_auto.json",
        "config_status_failed.json",
        "config_status_waiting.json",
    ] {
        round_trip::<ConfigSyncStatus>(name);
    }
    round_trip::<ConfigDiff>("config_diff.json");
    round_trip::<ConfigSyncReply>("config_sync_accepted.json");
    round_trip::<ConfigSyncReply>("config_sync_refused.json");
    round_trip::<EventList>("events_config.json");
}

/// The config-sync statuses refuse what this version does not know, as the rest does.
#[test]
fn unknown_config_sync_values_are_refused() {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/config_status_failed.json");
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    assert!(serde_json::from_value::<ConfigSyncStatus>(status.clone()).is_ok());
    for (pointer, unknown) in [
        ("/mode", "on"),
        ("/part", "both"),
        ("/status", "synchronizing all"),
        ("/units/0/kind", "iptables"),
        ("/units/0/local_state", "gone"),
        ("/units/0/peer_state", "gone"),
        ("/units/0/last_result", "partly-applied"),
    ] {
        let mut changed = status.clone();
        *changed.pointer_mut(pointer).unwrap() = unknown.into();
        let err = serde_json::from_value::<ConfigSyncStatus>(changed).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant"),
            "{pointer}: {err}"
        );
    }
    let mut changed = status;
    changed["versions"]["backends"]["iptables"] = "1.8".into();
    assert!(serde_json::from_value::<ConfigSyncStatus>(changed).is_err());
}

/// A value this version does not know (a newer daemon's) is refused, not guessed: `failoverctl`
/// then says it does not understand the data, and `--json` prints it as sent.
#[test]
fn unknown_values_are_refused() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/status_vrrp.json");
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    let takeover = &status["takeover"];
    assert!(serde_json::from_value::<TakeoverStatus>(takeover.clone()).is_ok());
    for (pointer, unknown) in [
        ("/mode", "carp"),
        ("/group/state", "standby"),
        ("/group/peer", "absent"),
        ("/group/instances/0/state", "fault-ish"),
        ("/group/instances/0/family", "ipx"),
        ("/group/tracks/0/kind", "bfd"),
    ] {
        let mut changed = takeover.clone();
        *changed.pointer_mut(pointer).unwrap() = unknown.into();
        let err = serde_json::from_value::<TakeoverStatus>(changed).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant"),
            "{pointer}: {err}"
        );
    }
    let mut peer = status["peer"].clone();
    peer["node_id"] = "not-hex!".into();
    assert!(serde_json::from_value::<PeerInfo>(peer).is_err());
    let mut routing = takeover.clone();
    routing["routing"] = serde_json::json!({"state": "draining", "last_error": null});
    assert!(serde_json::from_value::<TakeoverStatus>(routing).is_err());
    for (field, unknown) in [
        ("backup", "active-active"),
        ("backend", "ebpf"),
        ("node_id", "1000abcdef"),
    ] {
        let mut changed = status.clone();
        changed["node"][field] = unknown.into();
        assert!(
            serde_json::from_value::<Status>(changed).is_err(),
            "{field}"
        );
    }
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sessions.json");
    let list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    for (field, bad) in [
        ("proto", "gre"),
        ("proto", "other"),
        ("proto", "256"),
        ("owner", "1000abc"),
        ("owner", "1000abcx"),
    ] {
        let mut changed = list.clone();
        changed["sessions"][0][field] = bad.into();
        assert!(
            serde_json::from_value::<SessionList>(changed).is_err(),
            "{field} {bad}"
        );
    }
}
