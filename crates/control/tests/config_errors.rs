//! The configuration's error messages are a contract: one bad file per validation rule, and the
//! full text of its error, compared with `tests/golden/config_errors.txt`.
//!
//! After a deliberate change of a message, regenerate the golden file with
//! `FAILOVERD_BLESS=1 cargo test -p failoverd-control --test config_errors` and review the diff.

use std::path::Path;

use failoverd_control::Config;

const PATH: &str = "/etc/failoverd/failoverd.toml";
const KEY: &str = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const GOLDEN: &str = "tests/golden/config_errors.txt";

/// Only the required keys.
fn minimal() -> String {
    format!(
        "[node]\nname = \"fw-a\"\nkey = \"node.pem\"\n\n[link]\nlisten = \"192.0.2.1:7701\"\npeer = \"192.0.2.2:7701\"\npeer_key = \"{KEY}\"\n"
    )
}

/// `minimal()` with `[link]` keys added.
fn link(keys: &str) -> String {
    minimal() + keys
}

/// `minimal()` with `key = "node.pem"` followed by `keys` (in `[node]`).
fn node(keys: &str) -> String {
    minimal().replace(
        "key = \"node.pem\"\n",
        &format!("key = \"node.pem\"\n{keys}"),
    )
}

/// `minimal()` with a table appended.
fn with(table: &str) -> String {
    format!("{}{table}", minimal())
}

/// VRRP mode with one valid instance, then `extra`.
fn vrrp(extra: &str) -> String {
    with(&format!(
        "[takeover]\nmode = \"vrrp\"\n[[vrrp.instance]]\nname = \"lan\"\ninterface = \"lan\"\nvrid = 51\naddresses = [\"10.0.1.1/24\"]\n{extra}"
    ))
}

/// One `[[vrrp.instance]]` (in VRRP mode) with these keys.
fn instance(keys: &str) -> String {
    with(&format!(
        "[takeover]\nmode = \"vrrp\"\n[[vrrp.instance]]\n{keys}"
    ))
}

/// An instance with `keys` replacing its addresses.
fn lan(keys: &str) -> String {
    instance(&format!(
        "name = \"lan\"\ninterface = \"lan\"\nvrid = 51\n{keys}"
    ))
}

fn cases() -> Vec<(&'static str, String)> {
    let conntrack = |keys: &str| with(&format!("[sessions.conntrack]\n{keys}"));
    let script = |keys: &str| {
        vrrp(&format!(
            "[[vrrp.track_script]]\nname = \"up\"\ncommand = [\"true\"]\n{keys}"
        ))
    };
    let routing = |keys: &str| with(&format!("[routing]\nospf_interfaces = [\"wan\"]\n{keys}"));
    let sync = |keys: &str| with(&format!("[config_sync]\n{keys}"));
    let nft = |keys: &str| with(&format!("[config_sync.nftables]\n{keys}"));
    let files = |path: &str, extra: &str| {
        with(&format!(
            "[[config_sync.files]]\npath = \"{path}\"\n{extra}"
        ))
    };
    let heartbeat = |peer: &str| {
        link(&format!(
            "heartbeat_listen = \"198.51.100.1:7702\"\nheartbeat_peer = \"{peer}\"\n"
        ))
    };
    vec![
        // Syntax and structure.
        ("not TOML", "[node\nname = 1\n".to_string()),
        (
            "duplicate key",
            "[node]\nname = \"a\"\n[node]\n".to_string(),
        ),
        ("unknown table", with("[vrrrp]\nid = 1\n")),
        ("unknown key", node("prio = 3\n")),
        (
            "unknown key, dotted",
            format!("timers.hello = 3\n{}", minimal()),
        ),
        (
            "unknown key in an inline table",
            link("retry = { min = 1 }\n"),
        ),
        ("unknown key, sub-tables listed", vrrp("[vrrp]\nmode = 1\n")),
        ("unknown key, array of tables", vrrp("vrrid = 5\n")),
        (
            "table of the wrong type",
            format!("pair = 5\n{}", minimal()),
        ),
        (
            "array of tables of the wrong type",
            with("[vrrp]\ninstance = 5\n"),
        ),
        ("integer of the wrong type", node("priority = \"high\"\n")),
        (
            "integer too large for TOML",
            with("[pair]\nid = 99999999999999999999999\n"),
        ),
        ("bool of the wrong type", node("preempt = 1\n")),
        ("enum value", with("[pair]\nbackup = \"both\"\n")),
        ("string of the wrong type", "[node]\nname = 5\n".to_string()),
        (
            "peer_key of the wrong type",
            minimal().replace(&format!("\"{KEY}\""), "7"),
        ),
        // Missing keys.
        ("empty file", String::new()),
        (
            "missing node.key",
            minimal().replace("key = \"node.pem\"\n", ""),
        ),
        (
            "missing [link]",
            "[node]\nname = \"a\"\nkey = \"k\"\n".to_string(),
        ),
        (
            "missing link.peer",
            minimal().replace("peer = \"192.0.2.2:7701\"\n", ""),
        ),
        (
            "missing link.peer_key",
            minimal().replace(&format!("peer_key = \"{KEY}\"\n"), ""),
        ),
        (
            "missing instance vrid",
            lan("addresses = [\"10.0.1.1/24\"]\n").replace("vrid = 51\n", ""),
        ),
        (
            "missing instance name",
            instance("interface = \"lan\"\nvrid = 51\naddresses = [\"10.0.1.1/24\"]\n"),
        ),
        (
            "missing instance interface",
            instance("name = \"lan\"\nvrid = 51\naddresses = [\"10.0.1.1/24\"]\n"),
        ),
        ("missing instance addresses", lan("")),
        // [node]
        ("node.name empty", minimal().replace("\"fw-a\"", "\"\"")),
        (
            "node.name too long",
            minimal().replace("\"fw-a\"", &format!("\"{}\"", "a".repeat(65))),
        ),
        (
            "node.name control character",
            minimal().replace("\"fw-a\"", "\"a\\tb\""),
        ),
        (
            "node.key empty",
            minimal().replace("key = \"node.pem\"", "key = \"\""),
        ),
        ("node.priority low", node("priority = 0\n")),
        ("node.priority high", node("priority = 255\n")),
        // [pair]
        ("pair.id low", with("[pair]\nid = 0\n")),
        ("pair.id high", with("[pair]\nid = 4294967296\n")),
        // [link]
        (
            "link.listen not an address",
            minimal().replace("192.0.2.1:7701", "0.0.0.0"),
        ),
        (
            "link.peer host name",
            minimal().replace("192.0.2.2:7701", "fw-b:7701"),
        ),
        (
            "link.peer port 0",
            minimal().replace("192.0.2.2:7701", "192.0.2.2:0"),
        ),
        (
            "link.peer unspecified",
            minimal().replace("192.0.2.2:7701", "0.0.0.0:7702"),
        ),
        (
            "link.peer equals listen",
            minimal().replace("192.0.2.2:7701", "192.0.2.1:7701"),
        ),
        ("link.peer_key short", minimal().replace(KEY, "sha256:1234")),
        (
            "link.peer_key algorithm",
            minimal().replace(KEY, &KEY.replace("sha256", "sha1")),
        ),
        (
            "link.peer_key three pins",
            minimal().replace(
                &format!("\"{KEY}\""),
                &format!("[\"{KEY}\", \"{KEY}\", \"{KEY}\"]"),
            ),
        ),
        (
            "link.peer_key empty list",
            minimal().replace(&format!("\"{KEY}\""), "[]"),
        ),
        (
            "link.peer_key pinned twice",
            minimal().replace(&format!("\"{KEY}\""), &format!("[\"{KEY}\", \"{KEY}\"]")),
        ),
        (
            "link.peer_key bad element",
            minimal().replace(
                &format!("\"{KEY}\""),
                &format!("[\"{KEY}\", \"sha256:12\"]"),
            ),
        ),
        ("link.reconnect_min_ms low", link("reconnect_min_ms = 0\n")),
        (
            "link.reconnect_max_ms high",
            link("reconnect_max_ms = 3600001\n"),
        ),
        (
            "link.reconnect_max_ms below min",
            link("reconnect_min_ms = 500\nreconnect_max_ms = 400\n"),
        ),
        (
            "link.reconnect_max_ms below the default min",
            link("reconnect_max_ms = 50\n"),
        ),
        (
            "link.reconnect_min_ms above the default max",
            link("reconnect_min_ms = 3000\n"),
        ),
        (
            "heartbeat_listen alone",
            link("heartbeat_listen = \"198.51.100.1:7702\"\n"),
        ),
        (
            "heartbeat_peer alone",
            link("heartbeat_peer = \"198.51.100.2:7702\"\n"),
        ),
        (
            "heartbeat_peer on the link's network",
            heartbeat("192.0.2.2:7702"),
        ),
        ("heartbeat_peer unspecified", heartbeat("0.0.0.0:7702")),
        (
            "heartbeat_peer equals listen",
            heartbeat("198.51.100.1:7702"),
        ),
        ("heartbeat_peer not an address", heartbeat("fw-b")),
        (
            "heartbeat with VRRP",
            heartbeat("198.51.100.2:7702")
                + "[takeover]\nmode = \"vrrp\"\n[[vrrp.instance]]\nname = \"lan\"\ninterface = \"lan\"\nvrid = 51\naddresses = [\"10.0.1.1/24\"]\n",
        ),
        // [timers]
        (
            "timers.hello_interval_ms low",
            with("[timers]\nhello_interval_ms = 5\n"),
        ),
        (
            "timers.hello_interval_ms high",
            with("[timers]\nhello_interval_ms = 3600001\n"),
        ),
        (
            "timers.dead_interval_ms low",
            with("[timers]\ndead_interval_ms = 19\n"),
        ),
        ("timers.silence_ms low", with("[timers]\nsilence_ms = 9\n")),
        (
            "dead below twice hello",
            with("[timers]\nhello_interval_ms = 100\ndead_interval_ms = 150\n"),
        ),
        (
            "hello above half the default dead",
            with("[timers]\nhello_interval_ms = 100\n"),
        ),
        (
            "silence below hello",
            with("[timers]\nhello_interval_ms = 100\ndead_interval_ms = 300\nsilence_ms = 50\n"),
        ),
        (
            "silence below the default hello",
            with("[timers]\nsilence_ms = 20\n"),
        ),
        // [sessions]
        (
            "sessions.backend",
            with("[sessions]\nbackend = \"kernel\"\n"),
        ),
        (
            "sessions.digest_interval_ms between 0 and 1000",
            with("[sessions]\ndigest_interval_ms = 500\n"),
        ),
        (
            "sessions.digest_interval_ms negative",
            with("[sessions]\ndigest_interval_ms = -1\n"),
        ),
        (
            "sessions.digest_interval_ms high",
            with("[sessions]\ndigest_interval_ms = 86400001\n"),
        ),
        (
            "sessions.peer_buffer_mib low",
            with("[sessions]\npeer_buffer_mib = 4\n"),
        ),
        (
            "sessions.peer_buffer_mib high",
            with("[sessions]\npeer_buffer_mib = 4097\n"),
        ),
        ("conntrack unknown key", conntrack("buffer = 1\n")),
        (
            "conntrack.event_buffer_bytes low",
            conntrack("event_buffer_bytes = 65535\n"),
        ),
        (
            "conntrack.event_buffer_bytes high",
            conntrack("event_buffer_bytes = 1073741825\n"),
        ),
        (
            "conntrack.peer_entry_timeout_secs low",
            conntrack("peer_entry_timeout_secs = 59\n"),
        ),
        (
            "conntrack.peer_entry_timeout_secs high",
            conntrack("peer_entry_timeout_secs = 2592001\n"),
        ),
        (
            "conntrack.owner_mark one bit",
            conntrack("owner_mark = 0x80000000\n"),
        ),
        (
            "conntrack.owner_mark three bits",
            conntrack("owner_mark = 7\n"),
        ),
        (
            "conntrack.owner_mark high",
            conntrack("owner_mark = 0x100000000\n"),
        ),
        (
            "conntrack.owner_mark negative",
            conntrack("owner_mark = -1\n"),
        ),
        ("conntrack.zones", conntrack("zones = [70000]\n")),
        (
            "conntrack.zones of the wrong type",
            conntrack("zones = [\"a\"]\n"),
        ),
        (
            "conntrack.protocols",
            conntrack("protocols = [\"tcp\", \"quic\"]\n"),
        ),
        (
            "conntrack.protocols number",
            conntrack("protocols = [\"256\"]\n"),
        ),
        ("conntrack.include", conntrack("include = [\"10.0.0.1\"]\n")),
        (
            "conntrack.exclude",
            conntrack("exclude = [\"10.0.0.0/33\"]\n"),
        ),
        // [control], [log]
        ("control.socket empty", with("[control]\nsocket = \"\"\n")),
        ("control.group empty", with("[control]\ngroup = \"\"\n")),
        ("log.format", with("[log]\nformat = \"xml\"\n")),
        (
            "log.format long",
            with(&format!("[log]\nformat = \"{}\"\n", "x".repeat(100))),
        ),
        ("log.level empty", with("[log]\nlevel = \" \"\n")),
        (
            "log.level bad level",
            with("[log]\nlevel = \"failoverd=loud\"\n"),
        ),
        (
            "log.level empty directive",
            with("[log]\nlevel = \"warn, ,info\"\n"),
        ),
        // [takeover], [vrrp]
        ("takeover.mode", with("[takeover]\nmode = \"keepalived\"\n")),
        (
            "takeover.mode vrrp without instances",
            with("[takeover]\nmode = \"vrrp\"\n"),
        ),
        (
            "instance in election mode (default)",
            with("[[vrrp.instance]]\nname = \"lan\"\n"),
        ),
        (
            "tracker in election mode (set)",
            with(
                "[takeover]\nmode = \"election\"\n[[vrrp.track_route]]\ndestination = \"0.0.0.0/0\"\n",
            ),
        ),
        (
            "vrrp.advert_interval_ms high",
            vrrp("[vrrp]\nadvert_interval_ms = 40960\n"),
        ),
        (
            "vrrp.advert_interval_ms not a multiple of 10",
            vrrp("[vrrp]\nadvert_interval_ms = 55\n"),
        ),
        (
            "vrrp.preempt_delay_ms negative",
            vrrp("[vrrp]\npreempt_delay_ms = -1\n"),
        ),
        (
            "vrrp.preempt_delay_ms high",
            vrrp("[vrrp]\npreempt_delay_ms = 3600001\n"),
        ),
        (
            "vrrp.announce_repeat low",
            vrrp("[vrrp]\nannounce_repeat = 0\n"),
        ),
        (
            "vrrp.announce_repeat high",
            vrrp("[vrrp]\nannounce_repeat = 101\n"),
        ),
        (
            "vrrp.announce_interval_ms low",
            vrrp("[vrrp]\nannounce_interval_ms = 9\n"),
        ),
        (
            "vrrp.announce_interval_ms high",
            vrrp("[vrrp]\nannounce_interval_ms = 10001\n"),
        ),
        ("vrrp.peer_check", vrrp("[vrrp]\npeer_check = \"yes\"\n")),
        (
            "vrrp.silent_intervals high",
            vrrp("[vrrp]\nsilent_intervals = 101\n"),
        ),
        // [[vrrp.instance]]
        (
            "instance.name too long",
            lan("addresses = [\"10.0.1.1/24\"]\n")
                .replace("\"lan\"\ninterface", "\"abcdefghijklmnop\"\ninterface"),
        ),
        (
            "instance.name character",
            lan("addresses = [\"10.0.1.1/24\"]\n")
                .replace("\"lan\"\ninterface", "\"la n\"\ninterface"),
        ),
        (
            "instance.interface",
            lan("addresses = [\"10.0.1.1/24\"]\n")
                .replace("interface = \"lan\"", "interface = \"eth0:1\""),
        ),
        (
            "instance.interface too long",
            lan("addresses = [\"10.0.1.1/24\"]\n")
                .replace("interface = \"lan\"", "interface = \"abcdefghijklmnop\""),
        ),
        (
            "instance.vrid low",
            lan("addresses = [\"10.0.1.1/24\"]\n").replace("vrid = 51", "vrid = 0"),
        ),
        (
            "instance.vrid high",
            lan("addresses = [\"10.0.1.1/24\"]\n").replace("vrid = 51", "vrid = 256"),
        ),
        (
            "instance.vrid of the wrong type",
            lan("addresses = [\"10.0.1.1/24\"]\n").replace("vrid = 51", "vrid = \"51\""),
        ),
        ("instance.priority high", vrrp("priority = 255\n")),
        ("instance.priority low", vrrp("priority = 0\n")),
        (
            "instance.advert_interval_ms low",
            vrrp("advert_interval_ms = 5\n"),
        ),
        (
            "instance.advert_interval_ms not a multiple of 10",
            vrrp("advert_interval_ms = 15\n"),
        ),
        ("instance.accept", vrrp("accept = \"yes\"\n")),
        ("instance.preempt", vrrp("preempt = 1\n")),
        ("instance.vmac", vrrp("vmac = 1\n")),
        ("instance.addresses empty", lan("addresses = []\n")),
        (
            "instance.addresses not a network",
            lan("addresses = [\"10.0.1.1\"]\n"),
        ),
        (
            "instance.addresses multicast",
            lan("addresses = [\"224.0.0.18/32\"]\n"),
        ),
        (
            "instance.addresses two families",
            lan("addresses = [\"10.0.1.1/24\", \"2001:db8::1/64\"]\n"),
        ),
        (
            "instance.addresses twice",
            lan("addresses = [\"10.0.1.1/24\", \"10.0.1.1/32\"]\n"),
        ),
        (
            "instance.addresses IPv6 first global",
            lan("addresses = [\"2001:db8::1/64\", \"fe80::1/64\"]\n"),
        ),
        (
            "instance.unicast_peers family",
            vrrp("unicast_peers = [\"10.0.1.3\", \"2001:db8::3\"]\n"),
        ),
        (
            "instance.unicast_peers twice",
            vrrp("unicast_peers = [\"10.0.1.3\", \"10.0.1.3\"]\n"),
        ),
        (
            "instance.unicast_peers host name",
            vrrp("unicast_peers = [\"fw-b\"]\n"),
        ),
        (
            "instance.unicast_peers multicast",
            vrrp("unicast_peers = [\"224.0.0.18\"]\n"),
        ),
        ("instance.source family", vrrp("source = \"fe80::2\"\n")),
        (
            "instance.source unspecified",
            vrrp("source = \"0.0.0.0\"\n"),
        ),
        (
            "instance.source IPv6 global",
            lan("addresses = [\"fe80::1/64\", \"2001:db8:1::1/64\"]\nsource = \"2001:db8:1::2\"\n"),
        ),
        (
            "instance names unique",
            vrrp(
                "[[vrrp.instance]]\nname = \"lan\"\ninterface = \"lan\"\nvrid = 52\naddresses = [\"10.0.1.9/24\"]\n",
            ),
        ),
        (
            "instance (interface, vrid, family) unique",
            vrrp(
                "[[vrrp.instance]]\nname = \"lan2\"\ninterface = \"lan\"\nvrid = 51\naddresses = [\"10.0.1.9/24\"]\n",
            ),
        ),
        (
            "instance addresses unique",
            vrrp(
                "[[vrrp.instance]]\nname = \"dmz\"\ninterface = \"dmz\"\nvrid = 51\naddresses = [\"10.0.1.1/32\"]\n",
            ),
        ),
        // Trackers.
        (
            "track_interface.name missing",
            vrrp("[[vrrp.track_interface]]\nweight = 3\n"),
        ),
        (
            "track_interface.name",
            vrrp("[[vrrp.track_interface]]\nname = \"a/b\"\n"),
        ),
        (
            "track_interface.weight high",
            vrrp("[[vrrp.track_interface]]\nname = \"wan\"\nweight = 254\n"),
        ),
        (
            "track_interface twice",
            vrrp(
                "[[vrrp.track_interface]]\nname = \"wan\"\n[[vrrp.track_interface]]\nname = \"wan\"\n",
            ),
        ),
        (
            "track_route.destination missing",
            vrrp("[[vrrp.track_route]]\nweight = 3\n"),
        ),
        (
            "track_route.destination not a network",
            vrrp("[[vrrp.track_route]]\ndestination = \"default\"\n"),
        ),
        (
            "track_route.destination host bits",
            vrrp("[[vrrp.track_route]]\ndestination = \"10.0.0.1/8\"\n"),
        ),
        (
            "track_route twice",
            vrrp(
                "[[vrrp.track_route]]\ndestination = \"::/0\"\n[[vrrp.track_route]]\ndestination = \"::/0\"\n",
            ),
        ),
        (
            "track_route.weight negative",
            vrrp("[[vrrp.track_route]]\ndestination = \"::/0\"\nweight = -1\n"),
        ),
        (
            "track_script.name missing",
            vrrp("[[vrrp.track_script]]\ncommand = [\"true\"]\n"),
        ),
        (
            "track_script.name",
            vrrp("[[vrrp.track_script]]\nname = \"a/b\"\ncommand = [\"true\"]\n"),
        ),
        (
            "track_script.command missing",
            vrrp("[[vrrp.track_script]]\nname = \"up\"\n"),
        ),
        (
            "track_script.command empty",
            vrrp("[[vrrp.track_script]]\nname = \"up\"\ncommand = []\n"),
        ),
        (
            "track_script.command empty program",
            vrrp("[[vrrp.track_script]]\nname = \"up\"\ncommand = [\"\", \"x\"]\n"),
        ),
        (
            "track_script.command a string",
            vrrp("[[vrrp.track_script]]\nname = \"up\"\ncommand = \"ping 10.0.2.100\"\n"),
        ),
        (
            "track_script.command NUL",
            vrrp("[[vrrp.track_script]]\nname = \"up\"\ncommand = [\"a\\u0000b\"]\n"),
        ),
        ("track_script.interval_ms low", script("interval_ms = 50\n")),
        ("track_script.timeout_ms low", script("timeout_ms = 9\n")),
        (
            "track_script.timeout_ms above interval",
            script("interval_ms = 500\ntimeout_ms = 600\n"),
        ),
        (
            "track_script.timeout_ms above the default interval",
            script("timeout_ms = 1001\n"),
        ),
        ("track_script.fall low", script("fall = 0\n")),
        ("track_script.rise high", script("rise = 101\n")),
        ("track_script.weight high", script("weight = 254\n")),
        (
            "track_script names unique",
            script("[[vrrp.track_script]]\nname = \"up\"\ncommand = [\"true\"]\n"),
        ),
        // [routing]
        (
            "routing without interfaces",
            with("[routing]\nvtysh = [\"vtysh\"]\n"),
        ),
        (
            "routing with empty interface lists",
            with("[routing]\nospf_interfaces = []\nospf6_interfaces = []\n"),
        ),
        ("routing.vtysh empty", routing("vtysh = []\n")),
        (
            "routing.ospf_interfaces name",
            with("[routing]\nospf_interfaces = [\"a b\"]\n"),
        ),
        (
            "routing.ospf6_interfaces twice",
            routing("ospf6_interfaces = [\"wan\", \"wan\"]\n"),
        ),
        (
            "routing.ospf_interfaces of the wrong type",
            with("[routing]\nospf_interfaces = \"wan\"\n"),
        ),
        ("routing.active_cost low", routing("active_cost = 0\n")),
        (
            "routing.standby_cost high",
            routing("standby_cost = 65536\n"),
        ),
        (
            "routing.standby_cost not above active",
            routing("standby_cost = 10\n"),
        ),
        (
            "routing.active_cost above the default standby",
            routing("active_cost = 2000\n"),
        ),
        ("routing.timeout_ms low", routing("timeout_ms = 50\n")),
        // [hooks]
        ("hooks.on_active empty", with("[hooks]\non_active = []\n")),
        (
            "hooks.on_standby empty program",
            with("[hooks]\non_standby = [\"\"]\n"),
        ),
        (
            "hooks.on_active NUL",
            with("[hooks]\non_active = [\"a\\u0000b\"]\n"),
        ),
        ("hooks.timeout_ms low", with("[hooks]\ntimeout_ms = 99\n")),
        (
            "hooks.timeout_ms high",
            with("[hooks]\ntimeout_ms = 3600001\n"),
        ),
        // [config_sync] and its tables
        ("config_sync.mode value", sync("mode = \"on\"\n")),
        ("config_sync.mode without units", sync("mode = \"auto\"\n")),
        ("config_sync.source name", sync("source = \"fw-b\"\n")),
        (
            "config_sync.source short id",
            sync("source = \"2000abc\"\n"),
        ),
        (
            "config_sync.compare_interval_ms low",
            sync("compare_interval_ms = 999\n"),
        ),
        ("config_sync.repair_after low", sync("repair_after = 0\n")),
        (
            "config_sync.max_unit_bytes above the link's limit",
            sync("max_unit_bytes = 67108865\n"),
        ),
        ("nftables.tables one word", nft("tables = [\"filter\"]\n")),
        (
            "nftables.tables two spaces",
            nft("tables = [\"inet  filter\"]\n"),
        ),
        ("nftables.tables family", nft("tables = [\"ipx filter\"]\n")),
        ("nftables.tables name", nft("tables = [\"inet 9filter\"]\n")),
        (
            "nftables.tables twice",
            nft("tables = [\"inet filter\", \"inet filter\"]\n"),
        ),
        (
            "nftables.tables of the wrong type",
            nft("tables = \"inet filter\"\n"),
        ),
        (
            "nftables.dynamic_sets two words",
            nft("tables = [\"inet filter\"]\ndynamic_sets = [\"inet filter\"]\n"),
        ),
        (
            "nftables.dynamic_sets set name",
            nft("tables = [\"inet filter\"]\ndynamic_sets = [\"inet filter block/list\"]\n"),
        ),
        (
            "nftables.dynamic_sets table not synced",
            nft("tables = [\"inet filter\"]\ndynamic_sets = [\"ip filter blocklist\"]\n"),
        ),
        (
            "nftables.dynamic_sets twice",
            nft(
                "tables = [\"inet filter\"]\ndynamic_sets = [\"inet filter b\", \"inet filter b\"]\n",
            ),
        ),
        (
            "nftables.defines name",
            nft("defines = { \"1pool\" = \"192.0.2.10\" }\n"),
        ),
        (
            "nftables.defines value of the wrong type",
            nft("defines = { pool = 10 }\n"),
        ),
        (
            "nftables.defines empty value",
            nft("defines = { pool = \" \" }\n"),
        ),
        (
            "nftables.defines control character",
            nft("defines = { pool = \"a\\nb\" }\n"),
        ),
        (
            "nftables.defines values distinct",
            nft(
                "[config_sync.nftables.defines]\npool_a = \"192.0.2.10\"\npool_b = \"192.0.2.10\"\n",
            ),
        ),
        (
            "files.path missing",
            with("[[config_sync.files]]\nreload = [\"true\"]\n"),
        ),
        ("files.path relative", files("etc/hosts", "")),
        ("files.path root", files("/", "")),
        ("files.path trailing slash", files("/etc/haproxy/", "")),
        ("files.path dot dot", files("/etc/../etc/hosts", "")),
        ("files.path double slash", files("/etc//hosts", "")),
        ("files.path dot", files("/etc/./hosts", "")),
        ("files.path control character", files("/etc/ho\\tsts", "")),
        (
            "files.path too long",
            files(&format!("/{}", "a".repeat(255)), ""),
        ),
        (
            "files.path the configuration file",
            files("/etc/failoverd/failoverd.toml", ""),
        ),
        (
            "files.path the directory of the configuration",
            files("/etc/failoverd", ""),
        ),
        ("files.path the key", files("/etc/failoverd/node.pem", "")),
        (
            "files.path twice",
            files(
                "/etc/hosts",
                "[[config_sync.files]]\npath = \"/etc/hosts\"\n",
            ),
        ),
        (
            "files.path inside another",
            files(
                "/etc/haproxy",
                "[[config_sync.files]]\npath = \"/etc/haproxy/haproxy.cfg\"\n",
            ),
        ),
        (
            "files.path holding another",
            files(
                "/etc/haproxy/haproxy.cfg",
                "[[config_sync.files]]\npath = \"/etc/haproxy\"\n",
            ),
        ),
        ("files.reload empty", files("/etc/hosts", "reload = []\n")),
        (
            "files.reload empty program",
            files("/etc/hosts", "reload = [\"\"]\n"),
        ),
        (
            "too many units",
            with(
                &(0..65)
                    .map(|i| format!("[[config_sync.files]]\npath = \"/etc/unit{i}\"\n"))
                    .collect::<String>(),
            ),
        ),
    ]
}

/// Every key of the file, by table: each is given a value of the wrong type (an inline table),
/// so that the golden file holds what every key accepts.
const KEYS: &[(&str, &[&str])] = &[
    ("node", &["name", "key", "priority", "preempt"]),
    ("pair", &["id", "backup"]),
    (
        "link",
        &[
            "listen",
            "peer",
            "peer_key",
            "reconnect_min_ms",
            "reconnect_max_ms",
            "heartbeat_listen",
            "heartbeat_peer",
        ],
    ),
    (
        "timers",
        &["hello_interval_ms", "dead_interval_ms", "silence_ms"],
    ),
    (
        "sessions",
        &["backend", "digest_interval_ms", "peer_buffer_mib"],
    ),
    (
        "sessions.conntrack",
        &[
            "event_buffer_bytes",
            "peer_entry_timeout_secs",
            "owner_mark",
            "zones",
            "protocols",
            "include",
            "exclude",
        ],
    ),
    ("control", &["socket", "group"]),
    ("log", &["format", "level"]),
    ("takeover", &["mode"]),
    (
        "vrrp",
        &[
            "advert_interval_ms",
            "preempt_delay_ms",
            "announce_repeat",
            "announce_interval_ms",
            "peer_check",
            "silent_intervals",
        ],
    ),
    (
        "[vrrp.instance]",
        &[
            "name",
            "interface",
            "vrid",
            "priority",
            "advert_interval_ms",
            "addresses",
            "accept",
            "preempt",
            "unicast_peers",
            "source",
            "vmac",
        ],
    ),
    ("[vrrp.track_interface]", &["name", "weight"]),
    ("[vrrp.track_route]", &["destination", "weight"]),
    (
        "[vrrp.track_script]",
        &[
            "name",
            "command",
            "interval_ms",
            "timeout_ms",
            "fall",
            "rise",
            "weight",
        ],
    ),
    (
        "routing",
        &[
            "vtysh",
            "ospf_interfaces",
            "ospf6_interfaces",
            "active_cost",
            "standby_cost",
            "timeout_ms",
        ],
    ),
    ("hooks", &["on_active", "on_standby", "timeout_ms"]),
    (
        "config_sync",
        &[
            "mode",
            "source",
            "compare_interval_ms",
            "repair_after",
            "max_unit_bytes",
        ],
    ),
    (
        "config_sync.nftables",
        &["tables", "dynamic_sets", "defines"],
    ),
    ("[config_sync.files]", &["path", "reload"]),
];

/// One case per key of [`KEYS`]: the key set to an inline table.
fn wrong_types() -> Vec<(String, String)> {
    let mut cases = Vec::new();
    for (table, keys) in KEYS {
        for key in *keys {
            // `defines` is a table: an integer is its wrong type.
            let wrong = if *key == "defines" { "5" } else { "{}" };
            let line = format!("{key} = {wrong}\n");
            // A required key of the minimal file is replaced, not written twice.
            let required = minimal()
                .lines()
                .find(|written| written.starts_with(&format!("{key} = ")))
                .map(|written| format!("{written}\n"));
            let text = match (*table, required) {
                ("node" | "link", Some(written)) => minimal().replace(&written, &line),
                ("node", None) => node(&line),
                ("link", None) => link(&line),
                _ => with(&format!("[{table}]\n{line}")),
            };
            cases.push((format!("wrong type: {table}.{key}"), text));
        }
    }
    cases
}

/// Every case and its error, in the golden file's format.
fn render() -> String {
    let mut out = String::new();
    let fixed = cases()
        .into_iter()
        .map(|(name, text)| (name.to_string(), text));
    for (name, text) in fixed.chain(wrong_types()) {
        let message = match Config::parse(&text, Path::new(PATH)) {
            Ok(_) => panic!("{name}: the file is valid:\n{text}"),
            Err(err) => err.to_string(),
        };
        out.push_str(&format!("{name}\n    {message}\n"));
    }
    out
}

#[test]
fn every_validation_rule_says_what_it_said() {
    let actual = render();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("FAILOVERD_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .find(|(a, e)| a != e)
            .map_or_else(String::new, |(a, e)| {
                format!("first difference:\n  now:    {a}\n  golden: {e}\n")
            });
        panic!(
            "the configuration's error messages differ from {GOLDEN}\n{first}\
             if the change is deliberate, run FAILOVERD_BLESS=1 cargo test -p failoverd-control --test config_errors"
        );
    }
}

#[test]
fn the_cases_have_distinct_names() {
    let names: Vec<String> = cases()
        .iter()
        .map(|(name, _)| name.to_string())
        .chain(wrong_types().into_iter().map(|(name, _)| name))
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
}
