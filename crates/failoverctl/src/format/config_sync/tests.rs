//! The human output of `failoverctl config`, from the control crate's golden responses.

use failoverd_control::protocol::{ConfigSyncState, ConfigUnitDiff, ConfigUnitKind};
use serde::de::DeserializeOwned;

use super::*;

/// `crates/control/tests/golden/<name>`, the JSON a daemon answers with.
fn golden<T: DeserializeOwned>(name: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../control/tests/golden")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn a_source_in_step() {
    assert_eq!(
        config_status(&golden("config_status_auto.json")),
        "\
config sync   mode auto  part source  status auto (incremental: every change is sent to the peer)
versions      failoverd 0.1.0  schema 1  nftables v1.0.9  files 1
              peer: the same
units         files     /etc/haproxy/haproxy.cfg  in sync  here e3b0c44298fc  peer e3b0c44298fc  applied 2026-12-08 00:00:12 UTC
              nftables  inet filter               in sync  here 5f0c3d9a1b2e  peer 5f0c3d9a1b2e  applied 2026-12-08 00:00:12 UTC
counters      comparisons        40
              full_syncs          1
              incremental_syncs   1
              offers_received    41
              offers_sent        42
              units_sent          3
"
    );
}

/// The failure shows once, with the unit that failed it and the kernel's message, though the
/// sync spanned two units.
#[test]
fn a_replica_whose_apply_failed() {
    assert_eq!(
        config_status(&golden("config_status_failed.json")),
        "\
config sync   mode auto  part replica  status not-auto (the last sync failed: nftables inet filter; the next change retries)
versions      failoverd 0.1.0  schema 1  nftables v1.0.9  files 1
              peer: the same
units         files     /etc/haproxy/haproxy.cfg  in sync  here e3b0c44298fc  peer e3b0c44298fc  failed 2026-12-08 00:01:00 UTC
              nftables  inet filter               differs  here 0d1e2f304152  peer 5f0c3d9a1b2e  failed 2026-12-08 00:01:00 UTC
failed        nftables inet filter at 2026-12-08 00:01:00 UTC
                Error: Could not process rule: No such file or directory
                add rule inet filter input iifname \"lan9\" accept
                                              ^^^^^^^^^^^^^^^^
counters      applies_failed      1
              comparisons        40
              drift_detected      2
              full_syncs          1
              incremental_syncs   1
              offers_received    42
              offers_sent        41
              units_received      5
"
    );
}

#[test]
fn versions_that_differ_and_units_not_heard_of() {
    assert_eq!(
        config_status(&golden("config_status_waiting.json")),
        "\
config sync   mode manual  part none  status waiting (versions differ: nftables v1.0.9 here, nftables v1.1.1 on the peer)
versions      failoverd 0.1.0  schema 1  nftables v1.0.9  files 1
              peer: failoverd 0.1.0  schema 1  nftables v1.1.1  files 1  (they differ: nothing is synced until they match)
units         files     /etc/keepalived  differs  here absent        peer unreadable  never synced
              nftables  inet filter      differs  here 5f0c3d9a1b2e  peer unknown     never synced
counters      offers_received  2
              offers_sent      2
              refused_version  1
"
    );
}

#[test]
fn sync_off_with_nothing_heard() {
    let mut status: ConfigSyncStatus = golden("config_status_waiting.json");
    status.status = ConfigSyncState::Off;
    status.reason = "config_sync.mode is off".into();
    status.peer_versions = None;
    status.versions_match = None;
    status.units.clear();
    status.counters = Default::default();
    let text = config_status(&status);
    assert!(
        text.ends_with("              peer: no offer heard yet\nunits         none configured\n"),
        "{text}"
    );
}

#[test]
fn a_diff_per_unit() {
    let diff: ConfigDiff = golden("config_diff.json");
    assert_eq!(
        config_diff(&diff),
        "\
files /etc/haproxy/haproxy.cfg: the same on both nodes (e3b0c44298fc)
nftables inet filter: differs (here 5f0c3d9a1b2e, peer 0d1e2f304152)
--- fw-a (this node) inet filter
+++ fw-b (peer) inet filter
@@ -3,5 +3,6 @@
 \t\ttype filter hook input priority filter; policy drop;
 \t\tct state established,related accept
 \t\ttcp dport 22 accept
+\t\ttcp dport 8080 accept
 \t}
 }
1 of 2 units differ
"
    );
}

#[test]
fn a_diff_right_after_a_sync_is_empty() {
    let mut diff: ConfigDiff = golden("config_diff.json");
    diff.units[1].diff.clear();
    diff.units.push(ConfigUnitDiff {
        kind: ConfigUnitKind::Files,
        name: "/etc/keepalived".into(),
        local_state: ConfigUnitState::Absent,
        local_hash: None,
        peer_state: ConfigUnitState::Absent,
        peer_hash: None,
        diff: String::new(),
    });
    assert_eq!(
        config_diff(&diff),
        "\
files /etc/haproxy/haproxy.cfg: the same on both nodes (e3b0c44298fc)
nftables inet filter: the same on both nodes (5f0c3d9a1b2e)
files /etc/keepalived: the same on both nodes (absent)
no differences: 3 units the same on both nodes
"
    );
    diff.units.clear();
    assert_eq!(config_diff(&diff), "no units configured\n");
}

#[test]
fn a_sync_accepted_or_refused() {
    let accepted: ConfigSyncReply = golden("config_sync_accepted.json");
    assert_eq!(
        config_sync(&accepted).unwrap(),
        "full sync of 2 units to node 2000abcd started\n"
    );
    let refused: ConfigSyncReply = golden("config_sync_refused.json");
    assert_eq!(
        config_sync(&refused).unwrap_err().to_string(),
        "config sync refused: this node is not the configuration source: the active node (2000abcd) is"
    );
}

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(951_868_799_999), "2000-02-29 23:59:59 UTC");
    assert_eq!(utc(1_796_688_012_345), "2026-12-08 00:00:12 UTC");
    assert_eq!(utc(4_107_542_400_000), "2100-03-01 00:00:00 UTC");
    assert_eq!(utc(1_709_164_800_000), "2024-02-29 00:00:00 UTC");
    assert_eq!(utc(1_735_689_599_000), "2024-12-31 23:59:59 UTC");
}
