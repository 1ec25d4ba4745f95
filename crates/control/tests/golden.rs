//! The control protocol's JSON is a contract (`failoverctl --json`, scripts): each golden file
//! was written from the protocol types before they changed shape, and must still parse into
//! them and serialize back to the same bytes.

use std::path::Path;

use failoverd_control::protocol::{EventList, PeerInfo, SessionCounts, SessionList, Status};
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
