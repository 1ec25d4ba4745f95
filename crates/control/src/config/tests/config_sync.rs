//! `[config_sync]` and its tables: typed values, the unit order, and the values that must be
//! accepted next to those refused (each refusal's message is in the golden file of
//! `tests/config_errors.rs`).

use failoverd_wire::{NodeId, UnitId, UnitKind};

use super::*;

/// `minimal()` with `extra` from line 9.
fn with(extra: &str) -> String {
    minimal() + extra
}

#[test]
fn every_key_set() {
    let config = parse(&with(
        r#"[config_sync]
mode = "auto"
source = "2000abcd"
compare_interval_ms = 2000
repair_after = 1
max_unit_bytes = 67108864

[config_sync.nftables]
tables = ["inet filter", "ip nat", "netdev ingress_1"]
dynamic_sets = ["inet filter blocklist", "ip nat pool.v4"]
defines = { nat_pool = "192.0.2.10", _lan = "eth1" }

[[config_sync.files]]
path = "/etc/haproxy"
reload = ["/usr/bin/systemctl", "reload", "haproxy"]

[[config_sync.files]]
path = "/etc/hosts"
"#,
    ))
    .unwrap();
    let sync = &config.config_sync;
    assert_eq!(sync.mode, ConfigSyncMode::Auto);
    assert_eq!(sync.source, SyncSource::Node(NodeId(0x2000_abcd)));
    assert_eq!(sync.compare_interval, Duration::from_secs(2));
    assert_eq!(sync.repair_after, 1);
    assert_eq!(sync.max_unit_bytes, 64 << 20);
    let inet_filter = NftTable {
        family: NftFamily::Inet,
        name: "filter".into(),
    };
    assert_eq!(sync.nftables.tables[0], inet_filter);
    assert_eq!(sync.nftables.tables[2].family, NftFamily::Netdev);
    assert_eq!(
        sync.nftables.dynamic_sets[0],
        NftSet {
            table: inet_filter,
            name: "blocklist".into()
        }
    );
    assert_eq!(sync.nftables.defines["_lan"], "eth1");
    assert_eq!(sync.files[0].reload.as_ref().unwrap()[1], "reload");
    assert_eq!(sync.files[1].reload, None);
    // Files first, in the order written, then the tables.
    let unit = |kind, name: &str| UnitId {
        kind,
        name: name.into(),
    };
    assert_eq!(
        sync.units(),
        [
            unit(UnitKind::Files, "/etc/haproxy"),
            unit(UnitKind::Files, "/etc/hosts"),
            unit(UnitKind::Nftables, "inet filter"),
            unit(UnitKind::Nftables, "ip nat"),
            unit(UnitKind::Nftables, "netdev ingress_1"),
        ]
    );
}

#[test]
fn manual_mode_and_the_priority_source() {
    let config = parse(&with(
        "[config_sync]\nmode = \"manual\"\nsource = \"priority\"\n[config_sync.nftables]\ntables = [\"bridge t\"]\n",
    ))
    .unwrap();
    assert_eq!(config.config_sync.mode, ConfigSyncMode::Manual);
    assert_eq!(config.config_sync.source, SyncSource::Priority);
    // Off, units may be listed: they are kept for when it is turned on.
    let config = parse(&with(
        "[config_sync.nftables]\ntables = [\"inet filter\"]\n",
    ))
    .unwrap();
    assert_eq!(config.config_sync.mode, ConfigSyncMode::Off);
    assert_eq!(config.config_sync.units().len(), 1);
}

/// The controls of the refusals: paths next to the protected ones and to other units, and the
/// longest names, are accepted.
#[test]
fn near_misses_are_accepted() {
    let text = with(
        r#"[config_sync]
mode = "auto"
[[config_sync.files]]
path = "/etc/failoverd2"
[[config_sync.files]]
path = "/etc/failoverd/other.conf"
[[config_sync.files]]
path = "/etc/haproxy.d"
[[config_sync.files]]
path = "/etc/haproxy"
"#,
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.config_sync.files.len(), 4);
    let longest = "a".repeat(64);
    let text = with(&format!(
        "[config_sync.nftables]\ntables = [\"inet {longest}\"]\ndynamic_sets = [\"inet {longest} {longest}\"]\n"
    ));
    assert!(parse(&text).is_ok());
    let text = with(&format!(
        "[config_sync.nftables]\ntables = [\"inet {longest}a\"]\n"
    ));
    assert!(error(&text).contains("the table's name must be 1 to 64 characters"));
    // 64 units are accepted, 65 are not.
    let files = |n: usize| {
        (0..n)
            .map(|i| format!("[[config_sync.files]]\npath = \"/etc/unit{i}\"\n"))
            .collect::<String>()
    };
    assert!(parse(&with(&files(64))).is_ok());
    assert!(error(&with(&files(65))).contains("65 units (65 files, 0 nftables tables)"));
    let tables: Vec<String> = (0..65).map(|i| format!("\"inet t{i}\"")).collect();
    let text = with(&format!(
        "[config_sync.nftables]\ntables = [{}]\n",
        tables.join(", ")
    ));
    assert_eq!(
        error(&text),
        "/etc/failoverd/failoverd.toml:10:10: config_sync.nftables.tables: 65 units (0 files, 65 nftables tables); at most 64 are synced"
    );
}

#[test]
fn the_key_elsewhere_is_protected_too() {
    let text = minimal().replace("key = \"node.pem\"", "key = \"/srv/keys/fw-a.pem\"")
        + "[[config_sync.files]]\npath = \"/srv/keys\"\n";
    assert_eq!(
        error(&text),
        "/etc/failoverd/failoverd.toml:10:8: config_sync.files.path = \"/srv/keys\": holds node.key, the node's key (/srv/keys/fw-a.pem): the daemon's own files are never synced"
    );
    // Relative to the configuration file's directory, like the key.
    let text = minimal() + "[[config_sync.files]]\npath = \"/etc/failoverd/node.pem\"\n";
    assert!(
        error(&text).contains("is node.key, the node's key"),
        "{}",
        error(&text)
    );
}
