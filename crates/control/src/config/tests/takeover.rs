//! The errors of `[takeover]`, `[vrrp]` and its arrays of tables, `[routing]` and `[hooks]`.

use super::super::table::expected;
use super::*;

/// `minimal()` in VRRP mode: `[takeover]` on lines 9-10, then `extra` from line 11.
fn vrrp_file(extra: &str) -> String {
    minimal() + "[takeover]\nmode = \"vrrp\"\n" + extra
}

/// One valid instance, lines 11-15 of a `vrrp_file`.
const LAN: &str = "[[vrrp.instance]]\nname = \"lan\"\ninterface = \"lan\"\nvrid = 51\naddresses = [\"10.0.1.1/24\"]\n";

/// A `vrrp_file` with the `LAN` instance, `extra` added to it from line 16.
fn lan_with(extra: &str) -> String {
    vrrp_file(&format!("{LAN}{extra}"))
}

#[test]
fn a_full_takeover_configuration() {
    let text = minimal().replace(
        "key = \"node.pem\"",
        "key = \"node.pem\"\npriority = 150\npreempt = false",
    ) + r#"
[takeover]
mode = "vrrp"

[vrrp]
advert_interval_ms = 100
preempt_delay_ms = 2000
announce_repeat = 5
announce_interval_ms = 20
peer_check = false
silent_intervals = 5

[[vrrp.instance]]
name = "lan"
interface = "lan"
vrid = 51
addresses = ["10.0.1.1/24", "10.0.1.254/24"]
unicast_peers = ["10.0.1.3"]
source = "10.0.1.2"

[[vrrp.instance]]
name = "lan6"
interface = "lan"
vrid = 51
priority = 200
advert_interval_ms = 30
addresses = ["fe80::1/64", "2001:db8:1::1/64"]
accept = false
preempt = true
unicast_peers = ["fe80::3", "2001:db8:1::3"]
vmac = true

[[vrrp.instance]]
name = "wan_1"
interface = "eth1.100"
vrid = 52
addresses = ["192.0.2.10/32"]

[[vrrp.track_interface]]
name = "wan"
weight = 50

[[vrrp.track_interface]]
name = "eth1.100"

[[vrrp.track_route]]
destination = "::/0"
weight = 253

[[vrrp.track_script]]
name = "up.stream"
command = ["/usr/bin/ping", "-c1", "10.0.2.100"]
interval_ms = 2000
fall = 3
rise = 1
weight = 10

[[vrrp.track_script]]
name = "quick"
command = ["true"]
timeout_ms = 500

[routing]
vtysh = ["vtysh", "--vty_socket", "/run/frr/x"]
ospf6_interfaces = ["wan"]
active_cost = 1
standby_cost = 65535
timeout_ms = 100

[hooks]
on_active = ["/etc/failoverd/active.sh", "up"]
timeout_ms = 3000
"#;
    let config = parse(&text).unwrap();
    assert_eq!(config.takeover.mode, TakeoverKind::Vrrp);
    assert_eq!(config.takeover.mode.name(), "vrrp");
    let instance = |name: &str, interface: &str, vrid, addresses: &[&str]| VrrpInstanceSection {
        name: name.into(),
        interface: interface.into(),
        vrid,
        // node.priority, node.preempt and vrrp.advert_interval_ms.
        priority: 150,
        advert_interval: Duration::from_millis(100),
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        accept: true,
        preempt: false,
        unicast_peers: vec![],
        source: None,
        vmac: false,
    };
    assert_eq!(
        config.vrrp,
        VrrpSection {
            preempt_delay: Duration::from_secs(2),
            announce_repeat: 5,
            announce_interval: Duration::from_millis(20),
            peer_check: false,
            silent_intervals: 5,
            instances: vec![
                VrrpInstanceSection {
                    unicast_peers: vec!["10.0.1.3".parse().unwrap()],
                    source: Some("10.0.1.2".parse().unwrap()),
                    ..instance("lan", "lan", 51, &["10.0.1.1/24", "10.0.1.254/24"])
                },
                VrrpInstanceSection {
                    priority: 200,
                    advert_interval: Duration::from_millis(30),
                    accept: false,
                    preempt: true,
                    unicast_peers: vec![
                        "fe80::3".parse().unwrap(),
                        "2001:db8:1::3".parse().unwrap()
                    ],
                    vmac: true,
                    ..instance("lan6", "lan", 51, &["fe80::1/64", "2001:db8:1::1/64"])
                },
                instance("wan_1", "eth1.100", 52, &["192.0.2.10/32"]),
            ],
            track_interfaces: vec![
                TrackInterface {
                    name: "wan".into(),
                    weight: 50
                },
                TrackInterface {
                    name: "eth1.100".into(),
                    weight: 0
                },
            ],
            track_routes: vec![TrackRoute {
                destination: "::/0".parse().unwrap(),
                weight: 253
            }],
            track_scripts: vec![
                TrackScript {
                    name: "up.stream".into(),
                    command: vec!["/usr/bin/ping".into(), "-c1".into(), "10.0.2.100".into()],
                    interval: Duration::from_secs(2),
                    // Default: the interval.
                    timeout: Duration::from_secs(2),
                    fall: 3,
                    rise: 1,
                    weight: 10,
                },
                TrackScript {
                    name: "quick".into(),
                    command: vec!["true".into()],
                    interval: Duration::from_secs(1),
                    timeout: Duration::from_millis(500),
                    fall: 2,
                    rise: 2,
                    weight: 0,
                },
            ],
        }
    );
    assert!(!config.vrrp.instances[0].is_ipv6());
    assert!(config.vrrp.instances[1].is_ipv6());
    assert_eq!(
        config.routing,
        Some(RoutingSection {
            vtysh: vec!["vtysh".into(), "--vty_socket".into(), "/run/frr/x".into()],
            ospf_interfaces: vec![],
            ospf6_interfaces: vec!["wan".into()],
            active_cost: 1,
            standby_cost: 65535,
            timeout: Duration::from_millis(100),
        })
    );
    assert_eq!(
        config.hooks,
        HooksSection {
            on_active: Some(vec!["/etc/failoverd/active.sh".into(), "up".into()]),
            on_standby: None,
            timeout: Duration::from_secs(3),
        }
    );
}

#[test]
fn routing_and_hooks_work_in_election_mode() {
    let text = minimal()
        + "[routing]\nospf_interfaces = [\"wan\"]\n[hooks]\non_standby = [\"/bin/true\"]\n[vrrp]\nadvert_interval_ms = 100\n";
    let config = parse(&text).unwrap();
    assert_eq!(config.takeover.mode, TakeoverKind::Election);
    assert_eq!(config.routing.unwrap().ospf_interfaces, ["wan"]);
    assert_eq!(config.hooks.on_standby, Some(vec!["/bin/true".to_string()]));
    assert!(config.vrrp.instances.is_empty());
}

#[test]
fn the_heartbeat_path_is_off_by_default_and_set_by_both_keys_in_election_mode() {
    assert_eq!(parse(&minimal()).unwrap().link.heartbeat, None);
    // The example's, uncommented.
    let example = Config::example()
        .replace("#heartbeat_listen", "heartbeat_listen")
        .replace("#heartbeat_peer", "heartbeat_peer");
    assert_eq!(
        parse(&example).unwrap().link.heartbeat,
        Some(HeartbeatSection {
            listen: "198.51.100.1:7702".parse().unwrap(),
            peer: "198.51.100.2:7702".parse().unwrap(),
        })
    );
}

#[test]
fn heartbeat_path_errors() {
    let with = |keys: &str| minimal() + keys;
    assert_eq!(
        error(&with("heartbeat_listen = \"198.51.100.1:7702\"\n")),
        format!(
            "{PATH}:5:1: link.heartbeat_peer: missing required key: {}",
            expected("link", "heartbeat_peer")
        )
    );
    assert_eq!(
        error(&with("heartbeat_peer = \"198.51.100.2:7702\"\n")),
        format!(
            "{PATH}:5:1: link.heartbeat_listen: missing required key: {}",
            expected("link", "heartbeat_listen")
        )
    );
    let both = |peer: &str| {
        with(&format!(
            "heartbeat_listen = \"198.51.100.1:7702\"\nheartbeat_peer = \"{peer}\"\n"
        ))
    };
    assert!(
        error(&both("192.0.2.2:7702"))
            .contains("link.heartbeat_peer = \"192.0.2.2:7702\": must be another address of the peer than link.peer's"),
    );
    assert!(error(&both("0.0.0.0:7702")).contains("not the unspecified address"));
    assert!(error(&both("198.51.100.1:7702")).contains("must differ from link.heartbeat_listen"));
    let vrrp = both("198.51.100.2:7702")
        + "[takeover]\nmode = \"vrrp\"\n[[vrrp.instance]]\nname = \"lan\"\ninterface = \"lan\"\nvrid = 51\naddresses = [\"10.0.1.1/24\"]\n";
    assert_eq!(
        error(&vrrp),
        format!(
            "{PATH}:9:20: link.heartbeat_listen = \"198.51.100.1:7702\": the heartbeat path is used only with takeover.mode = \"election\", and the mode is \"vrrp\": the VRRP adverts on the traffic networks already tell a live peer from a dead one; remove link.heartbeat_listen and link.heartbeat_peer"
        )
    );
}

#[test]
fn takeover_mode_errors() {
    assert_eq!(
        error(&vrrp_file("")),
        format!(
            "{PATH}:10:8: takeover.mode = \"vrrp\": needs at least one [[vrrp.instance]]: the virtual router(s) whose mastership makes this node active"
        )
    );
    assert_eq!(
        error(&(minimal() + LAN)),
        format!(
            "{PATH}:9:1: vrrp.instance: VRRP instances and trackers are used only with takeover.mode = \"vrrp\", and the mode is \"election\" (the default); set takeover.mode = \"vrrp\" or remove the [[vrrp.instance]] sections"
        )
    );
    let text = minimal()
        + "[takeover]\nmode = \"election\"\n[[vrrp.track_route]]\ndestination = \"0.0.0.0/0\"\n";
    assert_eq!(
        error(&text),
        format!(
            "{PATH}:11:1: vrrp.track_route: VRRP instances and trackers are used only with takeover.mode = \"vrrp\", and the mode is \"election\"; set takeover.mode = \"vrrp\" or remove the [[vrrp.track_route]] sections"
        )
    );
    assert_eq!(
        error(&(minimal() + "[takeover]\nmode = \"keepalived\"\n")),
        format!("{PATH}:10:8: takeover.mode = \"keepalived\": must be \"election\" or \"vrrp\"")
    );
}

#[test]
fn advert_interval_errors() {
    assert_eq!(
        error(&lan_with("advert_interval_ms = 15\n")),
        format!(
            "{PATH}:16:22: vrrp.instance.advert_interval_ms = 15: must be a multiple of 10 (VRRPv3 counts centiseconds)"
        )
    );
    assert_eq!(
        error(&lan_with("advert_interval_ms = 5\n")),
        format!("{PATH}:16:22: vrrp.instance.advert_interval_ms = 5: must be at least 10")
    );
    assert_eq!(
        error(&vrrp_file(&format!(
            "[vrrp]\nadvert_interval_ms = 40960\n{LAN}"
        ))),
        format!("{PATH}:12:22: vrrp.advert_interval_ms = 40960: must be at most 40950")
    );
    assert_eq!(
        error(&vrrp_file(&format!("[vrrp]\nannounce_repeat = 0\n{LAN}"))),
        format!("{PATH}:12:19: vrrp.announce_repeat = 0: must be at least 1")
    );
    let config = parse(&lan_with("advert_interval_ms = 40950\n")).unwrap();
    assert_eq!(
        config.vrrp.instances[0].advert_interval,
        Duration::from_millis(40950)
    );
}

#[test]
fn instance_name_errors() {
    let named =
        |name: &str| vrrp_file(&LAN.replace("\"lan\"\ninterface", &format!("{name}\ninterface")));
    assert_eq!(
        error(&named("\"abcdefghijklmnop\"")),
        format!(
            "{PATH}:12:8: vrrp.instance.name = \"abcdefghijklmnop\": must be a name of 1 to 15 characters: letters, digits, _ and -"
        )
    );
    assert!(error(&named("\"la n\"")).contains("vrrp.instance.name = \"la n\": must be a name"));
    assert!(error(&named("\"\"")).contains("vrrp.instance.name = \"\": must be a name"));
    assert!(parse(&named("\"abcdefghijklmno\"")).is_ok());
    let second = LAN
        .replace("vrid = 51", "vrid = 52")
        .replace("10.0.1.1", "10.0.1.9");
    assert_eq!(
        error(&vrrp_file(&format!("{LAN}{second}"))),
        format!(
            "{PATH}:17:8: vrrp.instance.name = \"lan\": the instance on line 12 has this name too; names must be unique"
        )
    );
}

#[test]
fn instance_identity_errors() {
    // Same interface and vrid: only for different families.
    let second = LAN
        .replace("name = \"lan\"", "name = \"lan2\"")
        .replace("10.0.1.1", "10.0.1.9");
    assert_eq!(
        error(&vrrp_file(&format!("{LAN}{second}"))),
        format!(
            "{PATH}:19:8: vrrp.instance.vrid = 51: instance \"lan\" (line 14) has this vrid on interface lan for IPv4 too; (interface, vrid, family) must be unique"
        )
    );
    let v6 = second.replace("[\"10.0.1.9/24\"]", "[\"fe80::1/64\"]");
    assert!(parse(&vrrp_file(&format!("{LAN}{v6}"))).is_ok());
    let other_interface = second.replace("interface = \"lan\"", "interface = \"dmz\"");
    assert!(parse(&vrrp_file(&format!("{LAN}{other_interface}"))).is_ok());
    // A link-local address is per link: the same one on two interfaces is allowed.
    let lan6 = "[[vrrp.instance]]\nname = \"lan6\"\ninterface = \"lan\"\nvrid = 61\naddresses = [\"fe80::1/64\"]\n";
    let dmz6 = "[[vrrp.instance]]\nname = \"dmz6\"\ninterface = \"dmz\"\nvrid = 61\naddresses = [\"fe80::1/64\"]\n";
    assert!(parse(&vrrp_file(&format!("{LAN}{lan6}{dmz6}"))).is_ok());
    // One virtual address, one instance.
    let same_address = other_interface.replace("10.0.1.9/24", "10.0.1.1/32");
    assert_eq!(
        error(&vrrp_file(&format!("{LAN}{same_address}"))),
        format!(
            "{PATH}:20:14: vrrp.instance.addresses = \"10.0.1.1/32\": 10.0.1.1 is an address of instance \"lan\" too; a virtual address belongs to one instance"
        )
    );
    let vrid = |value: &str| vrrp_file(&LAN.replace("vrid = 51", &format!("vrid = {value}")));
    assert_eq!(
        error(&vrid("0")),
        format!("{PATH}:14:8: vrrp.instance.vrid = 0: must be at least 1")
    );
    assert_eq!(
        error(&vrid("256")),
        format!("{PATH}:14:8: vrrp.instance.vrid = 256: must be at most 255")
    );
    assert_eq!(
        error(&vrid("\"51\"")),
        format!("{PATH}:14:8: vrrp.instance.vrid = \"51\": must be an integer from 1 to 255")
    );
    assert_eq!(
        error(&lan_with("priority = 255\n")),
        format!("{PATH}:16:12: vrrp.instance.priority = 255: must be at most 254")
    );
    assert_eq!(
        error(&vrrp_file(
            &LAN.replace("interface = \"lan\"", "interface = \"eth0:1\"")
        )),
        format!(
            "{PATH}:13:13: vrrp.instance.interface = \"eth0:1\": must be an interface name of 1 to 15 characters without /, : or spaces"
        )
    );
}

#[test]
fn missing_and_unknown_instance_keys() {
    assert_eq!(
        error(&vrrp_file(&LAN.replace("vrid = 51\n", ""))),
        format!("{PATH}:11:1: vrrp.instance.vrid: missing required key: an integer from 1 to 255")
    );
    // The second instance's header.
    let second = "[[vrrp.instance]]\nname = \"b\"\ninterface = \"b\"\nvrid = 1\n";
    assert!(
        error(&vrrp_file(&format!("{LAN}{second}")))
            .starts_with(&format!("{PATH}:16:1: vrrp.instance.addresses: missing required key: a list of 1 to 255 addresses")),
        "{}",
        error(&vrrp_file(&format!("{LAN}{second}")))
    );
    assert_eq!(
        error(&lan_with("vrrid = 5\n")),
        format!(
            "{PATH}:16:1: vrrp.instance.vrrid: unknown key; [[vrrp.instance]] has the keys name, interface, vrid, priority, advert_interval_ms, addresses, accept, preempt, unicast_peers, source, vmac"
        )
    );
    assert_eq!(
        error(&lan_with("accept = \"yes\"\n")),
        format!("{PATH}:16:10: vrrp.instance.accept = \"yes\": must be true or false")
    );
    assert_eq!(
        error(&vrrp_file("[vrrp]\ninstance = 5\n")),
        format!(
            "{PATH}:12:12: vrrp.instance = 5: must be an array of tables (sections written [[...]])"
        )
    );
    let message = error(&vrrp_file(&format!("[vrrp]\nmode = 1\n{LAN}")));
    assert_eq!(
        message,
        format!(
            "{PATH}:12:1: vrrp.mode: unknown key; [vrrp] has the keys advert_interval_ms, preempt_delay_ms, announce_repeat, announce_interval_ms, peer_check, silent_intervals and the tables [[vrrp.instance]], [[vrrp.track_interface]], [[vrrp.track_route]], [[vrrp.track_script]]"
        )
    );
}

#[test]
fn instance_address_errors() {
    let addresses = |list: &str| vrrp_file(&LAN.replace("[\"10.0.1.1/24\"]", list));
    assert_eq!(
        error(&addresses("[]")),
        format!(
            "{PATH}:15:13: vrrp.instance.addresses = []: has 0 addresses; must be a list of 1 to 255 addresses with prefix length, all IPv4 or all IPv6, e.g. [\"10.0.1.1/24\"] or [\"fe80::1/64\", \"2001:db8::1/64\"] (IPv6: the first link-local)"
        )
    );
    let many: Vec<String> = (0..256)
        .map(|i| format!("\"10.1.{}.{}/16\"", i / 200, i % 200 + 1))
        .collect();
    assert!(
        error(&addresses(&format!("[{}]", many.join(", "))))
            .contains("has 256 addresses; must be a list of 1 to 255")
    );
    assert!(parse(&addresses(&format!("[{}]", many[..255].join(", ")))).is_ok());
    assert_eq!(
        error(&addresses("[\"10.0.1.1/24\", \"2001:db8::1/64\"]")),
        format!(
            "{PATH}:15:29: vrrp.instance.addresses = \"2001:db8::1/64\": is IPv6 but the instance's first address (10.0.1.1/24) is IPv4; an instance's addresses are all one family (use another instance for the other family)"
        )
    );
    assert_eq!(
        error(&addresses("[\"2001:db8::1/64\", \"fe80::1/64\"]")),
        format!(
            "{PATH}:15:14: vrrp.instance.addresses = \"2001:db8::1/64\": the first address of an IPv6 instance must be link-local (fe80::/10, RFC 5798 5.2.9), e.g. \"fe80::1/64\"; the others may be global"
        )
    );
    assert!(parse(&addresses("[\"febf::1/64\"]")).is_ok());
    assert!(error(&addresses("[\"fec0::1/64\"]")).contains("must be link-local"));
    assert_eq!(
        error(&addresses("[\"10.0.1.1/24\", \"10.0.1.1/32\"]")),
        format!("{PATH}:15:29: vrrp.instance.addresses = \"10.0.1.1/32\": is listed twice")
    );
    assert_eq!(
        error(&addresses("[\"224.0.0.18/32\"]")),
        format!(
            "{PATH}:15:14: vrrp.instance.addresses = \"224.0.0.18/32\": must be a unicast address"
        )
    );
    assert!(
        error(&addresses("[\"10.0.1.1\"]")).contains(
            "vrrp.instance.addresses = \"10.0.1.1\": not a network (address/prefix length); must be a list of 1 to 255"
        )
    );
}

#[test]
fn peer_and_source_errors() {
    assert_eq!(
        error(&lan_with(
            "unicast_peers = [\"10.0.1.3\", \"2001:db8::3\"]\n"
        )),
        format!(
            "{PATH}:16:30: vrrp.instance.unicast_peers = \"2001:db8::3\": is IPv6 but the instance's addresses are IPv4; must be a list of the peers' IP addresses, of the instance's family"
        )
    );
    assert_eq!(
        error(&lan_with("unicast_peers = [\"10.0.1.3\", \"10.0.1.3\"]\n")),
        format!("{PATH}:16:30: vrrp.instance.unicast_peers = \"10.0.1.3\": is listed twice")
    );
    assert_eq!(
        error(&lan_with("unicast_peers = [\"fw-b\"]\n")),
        format!(
            "{PATH}:16:18: vrrp.instance.unicast_peers = \"fw-b\": not an IP address (host names are not resolved); must be a list of the peers' IP addresses, of the instance's family"
        )
    );
    assert_eq!(
        error(&lan_with("source = \"fe80::2\"\n")),
        format!(
            "{PATH}:16:10: vrrp.instance.source = \"fe80::2\": is IPv6 but the instance's addresses are IPv4; must be an IP address of this node, of the instance's family"
        )
    );
    let lan6 = LAN.replace(
        "[\"10.0.1.1/24\"]",
        "[\"fe80::1/64\", \"2001:db8:1::1/64\"]",
    );
    assert_eq!(
        error(&vrrp_file(&format!("{lan6}source = \"2001:db8:1::2\"\n"))),
        format!(
            "{PATH}:16:10: vrrp.instance.source = \"2001:db8:1::2\": an IPv6 advert's source must be the interface's link-local address (fe80::/10, RFC 5798 5.1.2.1): receivers drop any other; unicast_peers may still be global addresses"
        )
    );
    let global_peers = "source = \"fe80::2\"\nunicast_peers = [\"2001:db8:1::3\"]\n";
    assert!(parse(&vrrp_file(&format!("{lan6}{global_peers}"))).is_ok());
    assert_eq!(
        error(&lan_with("source = \"0.0.0.0\"\n")),
        format!("{PATH}:16:10: vrrp.instance.source = \"0.0.0.0\": must be a unicast address")
    );
}

#[test]
fn tracker_errors() {
    assert_eq!(
        error(&lan_with(
            "[[vrrp.track_interface]]\nname = \"wan\"\nweight = 254\n"
        )),
        format!("{PATH}:18:10: vrrp.track_interface.weight = 254: must be at most 253")
    );
    assert_eq!(
        error(&lan_with(
            "[[vrrp.track_interface]]\nname = \"wan\"\n[[vrrp.track_interface]]\nname = \"wan\"\n"
        )),
        format!(
            "{PATH}:19:8: vrrp.track_interface.name = \"wan\": interface wan is already tracked; track each once"
        )
    );
    assert_eq!(
        error(&lan_with("[[vrrp.track_interface]]\nweight = 3\n")),
        format!(
            "{PATH}:16:1: vrrp.track_interface.name: missing required key: an interface name of 1 to 15 characters without /, : or spaces"
        )
    );
    assert_eq!(
        error(&lan_with(
            "[[vrrp.track_route]]\ndestination = \"10.0.0.1/8\"\n"
        )),
        format!(
            "{PATH}:17:15: vrrp.track_route.destination = \"10.0.0.1/8\": has host bits set; a route's destination is a prefix: did you mean \"10.0.0.0/8\"?"
        )
    );
    assert_eq!(
        error(&lan_with(
            "[[vrrp.track_route]]\ndestination = \"::/0\"\n[[vrrp.track_route]]\ndestination = \"::/0\"\n"
        )),
        format!(
            "{PATH}:19:15: vrrp.track_route.destination = \"::/0\": is already tracked; track each route once"
        )
    );
}

#[test]
fn track_script_errors() {
    let script = |extra: &str| lan_with(&format!("[[vrrp.track_script]]\nname = \"up\"\n{extra}"));
    assert_eq!(
        error(&script("command = []\n")),
        format!(
            "{PATH}:18:11: vrrp.track_script.command = []: must not be empty: must be a command and its arguments, run without a shell, e.g. [\"/usr/bin/ping\", \"-c1\", \"10.0.2.100\"]"
        )
    );
    assert_eq!(
        error(&script("command = [\"\", \"x\"]\n")),
        format!(
            "{PATH}:18:12: vrrp.track_script.command = \"\": the program (the first element) must not be empty"
        )
    );
    assert_eq!(
        error(&script("command = \"ping 10.0.2.100\"\n")),
        format!(
            "{PATH}:18:11: vrrp.track_script.command = \"ping 10.0.2.100\": must be a command and its arguments, run without a shell, e.g. [\"/usr/bin/ping\", \"-c1\", \"10.0.2.100\"]"
        )
    );
    assert!(error(&script("")).starts_with(&format!(
        "{PATH}:16:1: vrrp.track_script.command: missing required key"
    )));
    let with = |extra: &str| script(&format!("command = [\"true\"]\n{extra}"));
    assert_eq!(
        error(&with("interval_ms = 50\n")),
        format!("{PATH}:19:15: vrrp.track_script.interval_ms = 50: must be at least 100")
    );
    assert_eq!(
        error(&with("interval_ms = 500\ntimeout_ms = 600\n")),
        format!(
            "{PATH}:20:14: vrrp.track_script.timeout_ms = 600: vrrp.track_script.timeout_ms (600) must be at most vrrp.track_script.interval_ms (500): one run at a time"
        )
    );
    // The default interval (1000) against a longer timeout: the timeout is what was set.
    assert!(error(&with("timeout_ms = 1001\n")).starts_with(&format!(
        "{PATH}:19:14: vrrp.track_script.timeout_ms = 1001:"
    )));
    assert_eq!(
        error(&with("fall = 0\n")),
        format!("{PATH}:19:8: vrrp.track_script.fall = 0: must be at least 1")
    );
    assert_eq!(
        error(&with("rise = 101\n")),
        format!("{PATH}:19:8: vrrp.track_script.rise = 101: must be at most 100")
    );
    assert_eq!(
        error(&with("weight = -1\n")),
        format!("{PATH}:19:10: vrrp.track_script.weight = -1: must be at least 0")
    );
    assert_eq!(
        error(&with(
            "[[vrrp.track_script]]\nname = \"up\"\ncommand = [\"true\"]\n"
        )),
        format!(
            "{PATH}:20:8: vrrp.track_script.name = \"up\": another track script has this name; names must be unique"
        )
    );
    let named = |name: &str| {
        lan_with(&format!(
            "[[vrrp.track_script]]\nname = {name}\ncommand = [\"true\"]\n"
        ))
    };
    assert!(error(&named("\"a b\"")).contains("vrrp.track_script.name = \"a b\": must be a name"));
    assert!(error(&named(&format!("\"{}\"", "a".repeat(65)))).contains("must be a name"));
    assert!(
        error(&named("\"a/b\""))
            .contains("must be a name of 1 to 64 characters: letters, digits, _, - and .")
    );
    assert!(parse(&named(&format!("\"{}\"", "a".repeat(64)))).is_ok());
}

#[test]
fn routing_errors() {
    assert_eq!(
        error(&(minimal() + "[routing]\nvtysh = [\"vtysh\"]\n")),
        format!(
            "{PATH}:9:1: routing.ospf_interfaces: [routing] needs at least one interface in routing.ospf_interfaces or routing.ospf6_interfaces: where the OSPF cost follows the role"
        )
    );
    assert_eq!(
        error(&(minimal() + "[routing]\nospf_interfaces = []\n")),
        format!(
            "{PATH}:10:19: routing.ospf_interfaces = []: [routing] needs at least one interface in routing.ospf_interfaces or routing.ospf6_interfaces: where the OSPF cost follows the role"
        )
    );
    let routing = |extra: &str| minimal() + "[routing]\nospf_interfaces = [\"wan\"]\n" + extra;
    assert_eq!(
        error(&routing("vtysh = []\n")),
        format!(
            "{PATH}:11:9: routing.vtysh = []: must not be empty: must be the command and arguments that reach FRR's vtysh, e.g. [\"vtysh\"]"
        )
    );
    assert_eq!(
        error(&routing("standby_cost = 10\n")),
        format!(
            "{PATH}:11:16: routing.standby_cost = 10: routing.standby_cost (10) must be more than routing.active_cost (10): the active node advertises the better (lower) cost"
        )
    );
    // standby_cost is the default: active_cost is what was changed.
    assert!(error(&routing("active_cost = 2000\n")).starts_with(&format!("{PATH}:11:15: routing.active_cost = 2000: routing.standby_cost (1000) must be more than")));
    assert_eq!(
        error(&routing("active_cost = 0\n")),
        format!("{PATH}:11:15: routing.active_cost = 0: must be at least 1")
    );
    assert_eq!(
        error(&routing("ospf6_interfaces = [\"wan\", \"wan\"]\n")),
        format!("{PATH}:11:28: routing.ospf6_interfaces = \"wan\": is listed twice")
    );
    assert_eq!(
        error(&routing("timeout_ms = 50\n")),
        format!("{PATH}:11:14: routing.timeout_ms = 50: must be at least 100")
    );
}

#[test]
fn hooks_errors() {
    assert_eq!(
        error(&(minimal() + "[hooks]\non_active = []\n")),
        format!(
            "{PATH}:10:13: hooks.on_active = []: must not be empty: must be a command and its arguments, run without a shell, e.g. [\"/etc/failoverd/active.sh\"]"
        )
    );
    assert_eq!(
        error(&(minimal() + "[hooks]\non_standby = [\"\"]\n")),
        format!(
            "{PATH}:10:15: hooks.on_standby = \"\": the program (the first element) must not be empty"
        )
    );
    assert_eq!(
        error(&(minimal() + "[hooks]\ntimeout_ms = 99\n")),
        format!("{PATH}:10:14: hooks.timeout_ms = 99: must be at least 100")
    );
    assert_eq!(
        error(&(minimal() + "[hooks]\non_active = [\"a\\u0000b\"]\n")),
        format!("{PATH}:10:14: hooks.on_active = \"a\\u0000b\": must not contain NUL characters")
    );
}
