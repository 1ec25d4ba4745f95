//! The configuration's unit tests: the example file, defaults, and the errors of `[node]`,
//! `[pair]`, `[link]`, `[timers]`, `[sessions]`, `[control]` and `[log]` (`takeover` has those
//! of `[takeover]`, `[vrrp]`, `[routing]` and `[hooks]`; `config_sync` those of `[config_sync]`
//! and its tables).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use failoverd_wire::{Fingerprint, Pins};

use super::local::check_filter;
use super::table::TABLES;
use super::table::header;
use super::*;

mod config_sync;
mod takeover;

const PATH: &str = "/etc/failoverd/failoverd.toml";
const KEY: &str = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A minimal valid file: only the required keys.
fn minimal() -> String {
    format!(
        "[node]\nname = \"fw-a\"\nkey = \"node.pem\"\n\n[link]\nlisten = \"0.0.0.0:7701\"\npeer = \"192.0.2.2:7701\"\npeer_key = \"{KEY}\"\n"
    )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(PATH))
}

/// Parses `text`, expects an error, and returns its message.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn the_example_parses_with_the_defaults() {
    let config = parse(Config::example()).unwrap();
    let defaults = parse(&minimal()).unwrap();
    assert_eq!(config.node.name, "fw-a");
    assert_eq!(config.node.key, Path::new("/etc/failoverd/node.pem"));
    // The example shows the defaults: the same values as a file that sets none of them.
    assert_eq!(config.pair, defaults.pair);
    assert_eq!(config.timers, defaults.timers);
    assert_eq!(config.sessions, defaults.sessions);
    assert_eq!(config.control, defaults.control);
    assert_eq!(config.log, defaults.log);
    assert_eq!(config.node.priority, defaults.node.priority);
    assert_eq!(config.node.preempt, defaults.node.preempt);
    assert_eq!(config.link.reconnect_min, defaults.link.reconnect_min);
    assert_eq!(config.link.reconnect_max, defaults.link.reconnect_max);
    assert_eq!(config.takeover, defaults.takeover);
    assert_eq!(config.vrrp, defaults.vrrp);
    assert_eq!(config.routing, None);
    assert_eq!(config.hooks, defaults.hooks);
    assert_eq!(config.config_sync, defaults.config_sync);
}

#[test]
fn the_example_has_every_key() {
    // Tables and keys without a default are there as settings to uncomment (`#key = `).
    let example = Config::example();
    for table in TABLES {
        let header = header(table.name);
        assert!(
            example.contains(&format!("\n{header}\n"))
                || example.contains(&format!("\n#{header}\n")),
            "{header}"
        );
        for key in table.keys {
            let name = key.name;
            assert!(
                example.contains(&format!("\n{name} = "))
                    || example.contains(&format!("\n#{name} = ")),
                "{} missing from the example",
                key.path()
            );
        }
    }
}

/// The example with its settings to uncomment uncommented, in VRRP mode (so without the
/// heartbeat path, which is for election mode only).
fn uncommented_example() -> String {
    let lines: Vec<&str> = Config::example()
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest)
                if !rest.is_empty()
                    && !rest.starts_with(' ')
                    && !rest.starts_with("heartbeat_") =>
            {
                rest
            }
            _ => line,
        })
        .collect();
    (lines.join("\n") + "\n").replace("mode = \"election\"", "mode = \"vrrp\"")
}

#[test]
fn the_examples_settings_to_uncomment_are_valid() {
    let config = parse(&uncommented_example()).unwrap();
    assert_eq!(config.takeover.mode, TakeoverKind::Vrrp);
    assert_eq!(
        config.vrrp.instances,
        [VrrpInstanceSection {
            name: "lan".into(),
            interface: "lan".into(),
            vrid: 51,
            priority: 200,
            advert_interval: Duration::from_millis(50),
            addresses: vec!["10.0.1.1/24".parse().unwrap()],
            accept: true,
            preempt: true,
            unicast_peers: vec![],
            source: Some("10.0.1.2".parse().unwrap()),
            vmac: false,
        }]
    );
    assert_eq!(
        config.vrrp.track_interfaces,
        [TrackInterface {
            name: "wan".into(),
            weight: 0
        }]
    );
    assert_eq!(
        config.vrrp.track_routes,
        [TrackRoute {
            destination: "0.0.0.0/0".parse().unwrap(),
            weight: 0
        }]
    );
    assert_eq!(config.vrrp.track_scripts.len(), 1);
    assert_eq!(
        config.routing,
        Some(RoutingSection {
            vtysh: vec!["vtysh".into()],
            ospf_interfaces: vec!["wan".into()],
            ospf6_interfaces: vec![],
            active_cost: 10,
            standby_cost: 1000,
            timeout: Duration::from_millis(5000),
        })
    );
    assert_eq!(
        config.hooks.on_standby,
        Some(vec!["/etc/failoverd/standby.sh".to_string()])
    );
    assert_eq!(
        config.config_sync.files,
        [FilesUnit {
            path: PathBuf::from("/etc/haproxy/haproxy.cfg"),
            reload: Some(vec![
                "/usr/bin/systemctl".into(),
                "reload".into(),
                "haproxy".into()
            ]),
        }]
    );
    assert_eq!(
        config.config_sync.nftables.defines,
        BTreeMap::from([("nat_pool".to_string(), "192.0.2.10".to_string())])
    );
}

#[test]
fn defaults_and_typed_values() {
    let config = parse(&minimal()).unwrap();
    assert_eq!(
        config,
        Config {
            node: NodeSection {
                name: "fw-a".into(),
                // Relative to the file's directory.
                key: PathBuf::from("/etc/failoverd/node.pem"),
                priority: 100,
                preempt: true,
            },
            pair: PairSection {
                id: 1,
                backup: BackupMode::Symmetric
            },
            link: LinkSection {
                listen: "0.0.0.0:7701".parse().unwrap(),
                peer: "192.0.2.2:7701".parse().unwrap(),
                peer_key: Pins::one(KEY.parse().unwrap()),
                reconnect_min: Duration::from_millis(100),
                reconnect_max: Duration::from_millis(2000),
                heartbeat: None,
            },
            timers: TimersSection {
                hello_interval: Duration::from_millis(50),
                dead_interval: Duration::from_millis(150),
                silence: Duration::from_millis(1000),
            },
            sessions: SessionsSection {
                backend: BackendKind::Memory,
                digest_interval: Duration::from_secs(60),
                peer_buffer: 32 << 20,
                conntrack: ConntrackSection::default(),
            },
            control: ControlSection {
                socket: PathBuf::from(DEFAULT_SOCKET),
                group: None,
            },
            log: LogSection {
                format: LogFormat::Text,
                level: "info".into()
            },
            takeover: TakeoverSection {
                mode: TakeoverKind::Election
            },
            vrrp: VrrpSection {
                preempt_delay: Duration::ZERO,
                announce_repeat: 3,
                announce_interval: Duration::from_millis(100),
                peer_check: true,
                silent_intervals: 3,
                instances: vec![],
                track_interfaces: vec![],
                track_routes: vec![],
                track_scripts: vec![],
            },
            routing: None,
            hooks: HooksSection {
                on_active: None,
                on_standby: None,
                timeout: Duration::from_millis(5000),
            },
            config_sync: ConfigSyncSection {
                mode: ConfigSyncMode::Off,
                source: SyncSource::Priority,
                compare_interval: Duration::from_secs(10),
                repair_after: 3,
                max_unit_bytes: 16 << 20,
                nftables: NftablesSync::default(),
                files: vec![],
            },
        }
    );
}

#[test]
fn every_key_set() {
    let text = minimal()
        .replace(
            "[link]",
            "[link]\nreconnect_min_ms = 5\nreconnect_max_ms = 5",
        )
        .replace("[node]", "[node]\npriority = 200\npreempt = false")
        + "[pair]\nid = 4294967295\nbackup = \"asymmetric\"\n\
           [timers]\nhello_interval_ms = 10\ndead_interval_ms = 20\nsilence_ms = 10\n\
           [control]\nsocket = \"/tmp/x.sock\"\n\
           [log]\nformat = \"json\"\nlevel = \"warn,failoverd=debug\"\n";
    let config = parse(&text).unwrap();
    assert_eq!(config.node.priority, 200);
    assert!(!config.node.preempt);
    assert_eq!(config.pair.id, u32::MAX);
    assert_eq!(config.pair.backup, BackupMode::Asymmetric);
    assert_eq!(config.link.reconnect_max, Duration::from_millis(5));
    assert_eq!(config.timers.dead_interval, Duration::from_millis(20));
    assert_eq!(config.control.socket, Path::new("/tmp/x.sock"));
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn missing_file() {
    let err = Config::load(Path::new("/nonexistent/failoverd.toml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read /nonexistent/failoverd.toml: No such file or directory"
    );
}

#[test]
fn out_of_range() {
    let text = minimal() + "[timers]\nhello_interval_ms = 5\n";
    assert_eq!(
        error(&text),
        format!("{PATH}:10:21: timers.hello_interval_ms = 5: must be at least 10")
    );
    let text = minimal().replace("key = \"node.pem\"", "key = \"node.pem\"\npriority = 255");
    assert_eq!(
        error(&text),
        format!("{PATH}:4:12: node.priority = 255: must be at most 254")
    );
    let text = minimal() + "[pair]\nid = 0\n";
    assert_eq!(
        error(&text),
        format!("{PATH}:10:6: pair.id = 0: must be at least 1")
    );
}

#[test]
fn unknown_keys_and_tables() {
    let text = minimal().replace("name = \"fw-a\"", "name = \"fw-a\"\nprio = 3");
    assert_eq!(
        error(&text),
        format!(
            "{PATH}:3:1: node.prio: unknown key; [node] has the keys name, key, priority, preempt"
        )
    );
    let text = minimal() + "[vrrrp]\nid = 1\n";
    let message = error(&text);
    assert!(
        message.starts_with(&format!(
            "{PATH}:9:2: vrrrp: unknown table; the file has the tables [node], [pair], [link]"
        )),
        "{message}"
    );
    // Dotted keys and inline tables are located too.
    let text = format!("timers.hello = 3\n{}", minimal());
    assert_eq!(
        error(&text),
        format!(
            "{PATH}:1:8: timers.hello: unknown key; [timers] has the keys hello_interval_ms, dead_interval_ms, silence_ms"
        )
    );
    let text = minimal().replace("[link]", "[link]\nretry = { min = 1 }");
    assert!(error(&text).starts_with(&format!("{PATH}:6:1: link.retry: unknown key")));
}

#[test]
fn wrong_types() {
    let text = minimal().replace(
        "key = \"node.pem\"",
        "key = \"node.pem\"\npriority = \"high\"",
    );
    assert_eq!(
        error(&text),
        format!("{PATH}:4:12: node.priority = \"high\": must be an integer from 1 to 254")
    );
    let text = minimal().replace("key = \"node.pem\"", "key = \"node.pem\"\npreempt = 1");
    assert_eq!(
        error(&text),
        format!("{PATH}:4:11: node.preempt = 1: must be true or false")
    );
    let text = minimal() + "[pair]\nbackup = \"both\"\n";
    assert_eq!(
        error(&text),
        format!("{PATH}:10:10: pair.backup = \"both\": must be \"symmetric\" or \"asymmetric\"")
    );
    let text = minimal() + "[sessions]\nbackend = \"kernel\"\n";
    assert_eq!(
        error(&text),
        format!("{PATH}:10:11: sessions.backend = \"kernel\": must be \"memory\" or \"conntrack\"")
    );
    assert_eq!(
        error(&(minimal() + "[sessions]\ndigest_interval_ms = 500\n")),
        format!(
            "{PATH}:10:22: sessions.digest_interval_ms = 500: must be milliseconds, 0 (off) or an integer from 1000 to 86400000"
        )
    );
    assert_eq!(
        error(&(minimal() + "[sessions]\npeer_buffer_mib = 4\n")),
        format!("{PATH}:10:19: sessions.peer_buffer_mib = 4: must be at least 8")
    );
    let conntrack = minimal() + "[sessions]\nbackend = \"conntrack\"\n[sessions.conntrack]\n";
    assert_eq!(
        error(&(conntrack.clone() + "protocols = [\"tcp\", \"quic\"]\n")),
        format!(
            "{PATH}:12:21: sessions.conntrack.protocols = \"quic\": must be a list of IP protocols: names (tcp, udp, icmp, icmpv6, sctp, dccp, gre, udplite) or numbers from 0 to 255 as strings"
        )
    );
    assert_eq!(
        error(&(conntrack.clone() + "exclude = [\"10.0.0.0/33\"]\n")),
        format!(
            "{PATH}:12:12: sessions.conntrack.exclude = \"10.0.0.0/33\": not a network (address/prefix length); must be a list of networks, e.g. [\"10.0.0.0/8\", \"2001:db8::/32\"]"
        )
    );
    assert_eq!(
        error(&(conntrack.clone() + "zones = [70000]\n")),
        format!(
            "{PATH}:12:10: sessions.conntrack.zones = 70000: must be a list of conntrack zones, integers from 0 to 65535"
        )
    );
    assert_eq!(
        error(&(conntrack.clone() + "owner_mark = 0x80000000\n")),
        format!(
            "{PATH}:12:14: sessions.conntrack.owner_mark = 0x80000000: has 1 bits set; must be a 32-bit mask with exactly two bits set, e.g. 0xc0000000, or 0 (off)"
        )
    );
    assert_eq!(
        error(&(conntrack.clone() + "owner_mark = 0x100000000\n")),
        format!(
            "{PATH}:12:14: sessions.conntrack.owner_mark = 0x100000000: must be at most 4294967295"
        )
    );
    let config = parse(
        &(conntrack
            + "zones = [0, 7]\nprotocols = [\"tcp\", \"UDP\", \"132\"]\ninclude = [\"10.0.0.0/8\", \"2001:db8::/32\"]\npeer_entry_timeout_secs = 600\nowner_mark = 0x300\n"),
    )
    .unwrap();
    assert_eq!(config.sessions.backend, BackendKind::Conntrack);
    assert_eq!(
        config.sessions.conntrack,
        ConntrackSection {
            zones: vec![0, 7],
            protocols: vec![6, 17, 132],
            include: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap()
            ],
            peer_entry_timeout_secs: 600,
            owner_mark: 0x300,
            ..ConntrackSection::default()
        }
    );
    let text = format!("pair = 5\n{}", minimal());
    assert_eq!(
        error(&text),
        format!("{PATH}:1:8: pair = 5: must be a table")
    );
    let text = minimal() + "[pair]\nid = 99999999999999999999999\n";
    assert!(
        error(&text).starts_with(&format!(
            "{PATH}:10:6: pair.id = 99999999999999999999999: must be an integer"
        )),
        "{}",
        error(&text)
    );
}

#[test]
fn syntax_errors_are_located() {
    let text = minimal() + "[timers]\nhello_interval_ms = \n";
    let message = error(&text);
    assert!(message.starts_with(&format!("{PATH}:10:")), "{message}");
    assert!(message.contains("invalid TOML"), "{message}");
    let message = error("[node]\nname = \"a\"\n[node]\n");
    assert_eq!(
        message,
        format!("{PATH}:3:2: invalid TOML: duplicate key (at node)")
    );
}

#[test]
fn bad_addresses() {
    let text = minimal().replace("192.0.2.2:7701", "fw-b:7701");
    assert_eq!(
        error(&text),
        format!(
            "{PATH}:7:8: link.peer = \"fw-b:7701\": not an IP address and port (host names are not resolved); must be the peer's IP address and port, e.g. \"192.0.2.2:7701\" or \"[2001:db8::2]:7701\""
        )
    );
    let text = minimal().replace("0.0.0.0:7701", "0.0.0.0");
    assert!(error(&text).starts_with(&format!(
        "{PATH}:6:10: link.listen = \"0.0.0.0\": not an IP address and port"
    )));
    let text = minimal().replace("192.0.2.2:7701", "192.0.2.2:0");
    assert!(error(&text).contains("link.peer = \"192.0.2.2:0\": port 0 cannot be dialled"));
    let text = minimal().replace("192.0.2.2:7701", "0.0.0.0:7702");
    assert!(error(&text).contains("link.peer = \"0.0.0.0:7702\": must be the peer's own address"));
}

#[test]
fn bad_fingerprints() {
    let text = minimal().replace(KEY, "sha256:1234");
    assert_eq!(
        error(&text),
        format!(
            "{PATH}:8:12: link.peer_key = \"sha256:1234\": expected 64 hex digits after \"sha256:\", found 4 characters; must be \"sha256:\" and 64 hex digits, the fingerprint `failoverctl keygen` printed on the peer, or a list of two such (the old and the new key, while rotating the peer's key)"
        )
    );
    let text = minimal().replace(KEY, &KEY.replace("sha256", "sha1"));
    assert!(error(&text).contains("link.peer_key = \"sha1:0011"));
    assert!(
        error(&text).contains("a fingerprint starts with \"sha256:\""),
        "{}",
        error(&text)
    );
}

/// Issue 11: the peer's key can be rotated: one pin, or a list of at most two.
#[test]
fn peer_key_is_one_fingerprint_or_a_list_of_two() {
    let other = KEY.replace("00112233", "ffeeddcc");
    let pins = |line: &str| {
        parse(&minimal().replace(&format!("peer_key = \"{KEY}\""), line))
            .map(|config| config.link.peer_key)
            .ok()
    };
    let key: Fingerprint = KEY.parse().unwrap();
    let next: Fingerprint = other.parse().unwrap();
    assert_eq!(pins(&format!("peer_key = \"{KEY}\"")), Some(Pins::one(key)));
    assert_eq!(
        pins(&format!("peer_key = [\"{KEY}\"]")),
        Some(Pins::one(key))
    );
    assert_eq!(
        pins(&format!("peer_key = [\"{KEY}\", \"{other}\"]")),
        Some(Pins::new(&[key, next]).unwrap())
    );
    let refused = |line: String| error(&minimal().replace(&format!("peer_key = \"{KEY}\""), &line));
    let message = refused(format!("peer_key = [\"{KEY}\", \"{other}\", \"{KEY}\"]"));
    assert!(
        message.contains("link.peer_key = [") && message.contains("found 3"),
        "{message}"
    );
    assert!(refused("peer_key = []".to_string()).contains("found 0"));
    assert!(refused(format!("peer_key = [\"{KEY}\", \"{KEY}\"]")).contains("pinned twice"));
    let message = refused(format!("peer_key = [\"{KEY}\", \"sha256:12\"]"));
    assert!(
        message.contains("\"sha256:12\": expected 64 hex digits"),
        "{message}"
    );
    let message = refused("peer_key = 7".to_string());
    assert!(message.contains("or a list of two such"), "{message}");
}

#[test]
fn missing_required_keys() {
    let text = minimal().replace("key = \"node.pem\"\n", "");
    assert_eq!(
        error(&text),
        format!(
            "{PATH}:1:1: node.key: missing required key: the path of this node's key file (failoverctl keygen --out PATH)"
        )
    );
    let text = minimal().replace(&format!("peer_key = \"{KEY}\"\n"), "");
    assert!(error(&text).starts_with(&format!(
        "{PATH}:5:1: link.peer_key: missing required key: \"sha256:\""
    )));
    let message = error("[node]\nname = \"a\"\nkey = \"k\"\n");
    assert!(
        message.starts_with(&format!("{PATH}:1:1: link.listen: missing required key")),
        "{message}"
    );
    assert!(error("").starts_with(&format!("{PATH}:1:1: node.name: missing required key")));
}

#[test]
fn cross_field_checks_blame_the_key_that_was_set() {
    let text = minimal() + "[timers]\nhello_interval_ms = 100\ndead_interval_ms = 150\n";
    assert_eq!(
        error(&text),
        format!(
            "{PATH}:11:20: timers.dead_interval_ms = 150: timers.dead_interval_ms (150) must be at least twice timers.hello_interval_ms (100)"
        )
    );
    // dead_interval_ms is the default: the hello interval is what was changed.
    let text = minimal() + "[timers]\nhello_interval_ms = 100\n";
    assert!(error(&text).starts_with(&format!("{PATH}:10:21: timers.hello_interval_ms = 100: timers.dead_interval_ms (150) must be at least twice")));
    let text = minimal() + "[timers]\nsilence_ms = 20\n";
    assert!(error(&text).starts_with(&format!("{PATH}:10:14: timers.silence_ms = 20: timers.silence_ms (20) must be at least timers.hello_interval_ms (50)")));
    let text = minimal().replace("[link]", "[link]\nreconnect_max_ms = 50");
    assert!(error(&text).starts_with(&format!(
        "{PATH}:6:20: link.reconnect_max_ms = 50: link.reconnect_max_ms (50) must be at least"
    )));
    let text = minimal().replace("192.0.2.2:7701", "0.0.0.0:7701");
    let message = error(&text);
    assert!(
        message.contains("must be the peer's own address"),
        "{message}"
    );
    let text = minimal()
        .replace("0.0.0.0:7701", "192.0.2.1:7701")
        .replace("192.0.2.2:7701", "192.0.2.1:7701");
    assert_eq!(
        error(&text),
        format!(
            "{PATH}:7:8: link.peer = \"192.0.2.1:7701\": must differ from link.listen: it is the other node's address"
        )
    );
}

#[test]
fn other_values() {
    let text = minimal().replace("\"fw-a\"", "\"\"");
    assert!(error(&text).starts_with(&format!(
        "{PATH}:2:8: node.name = \"\": must be a name of 1 to 64 characters"
    )));
    let text = minimal() + "[log]\nlevel = \"failoverd=loud\"\n";
    assert_eq!(
        error(&text),
        format!(
            "{PATH}:10:9: log.level = \"failoverd=loud\": \"loud\" is not a level; levels are trace, debug, info, warn, error or off"
        )
    );
    let text = minimal() + "[log]\nformat = \"xml\"\n";
    assert!(error(&text).contains("log.format = \"xml\": must be \"text\" or \"json\""));
    let text = minimal() + "[control]\nsocket = \"\"\n";
    assert!(
        error(&text)
            .contains("control.socket = \"\": must be the path of the control socket, not empty")
    );
    assert!(check_filter("info").is_ok());
    assert!(check_filter("failoverd_core[sync]=trace,warn").is_ok());
    assert!(check_filter("warn, ,info").is_err());
}

#[test]
fn long_values_are_shortened() {
    let long = "x".repeat(100);
    let text = minimal() + &format!("[log]\nformat = \"{long}\"\n");
    let message = error(&text);
    assert!(
        message.contains(&format!("log.format = \"{}...: must be", &long[..39])),
        "{message}"
    );
}
