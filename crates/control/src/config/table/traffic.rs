//! The keys of what moves the traffic: `[vrrp]` and its arrays of tables, `[routing]` and
//! `[hooks]`.

use super::*;

pub(crate) mod vrrp {
    use super::*;

    const T: &str = "vrrp";
    /// What a VRRP advertisement interval accepts: VRRPv3 carries it in centiseconds in 12 bits.
    pub(crate) const ADVERT: Accepts = Accepts::Int(
        Range::new(10, 40_950)
            .ms()
            .step(10, "VRRPv3 counts centiseconds"),
    );
    pub const ADVERT_INTERVAL_MS: Key = Key::new(
        T,
        "advert_interval_ms",
        ADVERT,
        Value::Int(50),
        "The advertisement interval of the instances that do not set their own.",
    );
    pub const PREEMPT_DELAY_MS: Key = Key::new(
        T,
        "preempt_delay_ms",
        Accepts::Int(Range::new(0, MAX_MS).ms()),
        Value::Int(0),
        "Once this node is ready (it holds the peer's sessions), wait this long before preempting a lower-priority master.",
    )
    .note("A node with no master to preempt takes over at once.");
    pub const ANNOUNCE_REPEAT: Key = Key::new(
        T,
        "announce_repeat",
        Accepts::Int(Range::new(1, 100)),
        Value::Int(3),
        "Gratuitous ARPs / unsolicited neighbour advertisements per address on becoming master.",
    );
    pub const ANNOUNCE_INTERVAL_MS: Key = Key::new(
        T,
        "announce_interval_ms",
        Accepts::Int(Range::new(10, 10_000).ms()),
        Value::Int(100),
        "The time between those.",
    );
    pub const PEER_CHECK: Key = Key::new(
        T,
        "peer_check",
        BOOL,
        Value::Bool(true),
        "Ignore adverts that the failoverd peer contradicts: while it says over the failover link that it is not master, an advert claiming mastership is forged.",
    )
    .note(
        "Such an advert neither takes this node's group down nor holds it back (a deviation from RFC 5798; see docs/TAKEOVER.md, \"Threats\"). Turn off only if a third VRRP router shares the pair's virtual router ids.",
    );
    pub const SILENT_INTERVALS: Key = Key::new(
        T,
        "silent_intervals",
        Accepts::Int(Range::new(0, 100)),
        Value::Int(3),
        "After this many master-down intervals with no master heard on one instance while the group follows a master on another network (a dead switch behind a live port), the failover link decides which node acts: the one whose port still hears that network.",
    )
    .note("0: never (docs/TAKEOVER.md, \"One network silent\").");
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "VRRP, used with takeover.mode = \"vrrp\": the instances' defaults, and the announcements.",
        keys: &[
            ADVERT_INTERVAL_MS,
            PREEMPT_DELAY_MS,
            ANNOUNCE_REPEAT,
            ANNOUNCE_INTERVAL_MS,
            PEER_CHECK,
            SILENT_INTERVALS,
        ],
    };
}

pub(crate) mod instance {
    use super::*;

    const T: &str = "vrrp.instance";
    pub const NAME: Key = Key::new(
        T,
        "name",
        Accepts::Name {
            max: 15,
            charset: "letters, digits, _ and -",
        },
        Value::Required,
        "Unique; it names macvlans and log fields.",
    )
    .example("\"lan\"");
    pub const INTERFACE: Key = Key::new(
        T,
        "interface",
        Accepts::Text(super::INTERFACE),
        Value::Required,
        "Where adverts go and the addresses are added.",
    )
    .example("\"lan\"");
    pub const VRID: Key = Key::new(
        T,
        "vrid",
        Accepts::Int(Range::new(1, 255)),
        Value::Required,
        "The virtual router id; (interface, vrid, family) is unique.",
    )
    .example("51");
    pub const PRIORITY: Key = Key::new(
        T,
        "priority",
        Accepts::Int(Range::new(1, 254)),
        Value::Key("node.priority"),
        "This node's priority in this virtual router.",
    )
    .example("200");
    pub const ADVERT_INTERVAL_MS: Key = Key::new(
        T,
        "advert_interval_ms",
        super::vrrp::ADVERT,
        Value::Key("vrrp.advert_interval_ms"),
        "The advertisement interval.",
    )
    .example("50");
    pub const ADDRESSES: Key = Key::new(
        T,
        "addresses",
        Accepts::Text(
            "a list of 1 to 255 addresses with prefix length, all IPv4 or all IPv6, e.g. [\"10.0.1.1/24\"] or [\"fe80::1/64\", \"2001:db8::1/64\"] (IPv6: the first link-local)",
        ),
        Value::Required,
        "The virtual addresses with their prefix length, all of one family, each in one instance only.",
    )
    .note(
        "IPv6: the first must be link-local (fe80::/10, RFC 5798 5.2.9), e.g. [\"fe80::1/64\", \"2001:db8:1::1/64\"].",
    )
    .example("[\"10.0.1.1/24\"]");
    pub const ACCEPT: Key = Key::new(
        T,
        "accept",
        BOOL,
        Value::Bool(true),
        "Accept mode: the master answers for its virtual addresses.",
    );
    pub const PREEMPT: Key = Key::new(
        T,
        "preempt",
        BOOL,
        Value::Key("node.preempt"),
        "Preempt a lower-priority master once ready.",
    )
    .example("true");
    pub const UNICAST_PEERS: Key = Key::new(
        T,
        "unicast_peers",
        Accepts::Text("a list of the peers' IP addresses, of the instance's family"),
        Value::List(&[]),
        "Non-empty: adverts go to these addresses (the instance's family) instead of multicast.",
    )
    .note(
        "IPv6 peers may be global: adverts still leave from the link-local source, and a peer's adverts from a link-local address are taken as the peer's.",
    );
    pub const SOURCE: Key = Key::new(
        T,
        "source",
        Accepts::Text("an IP address of this node, of the instance's family"),
        Value::Found("the interface's first address of the family"),
        "The adverts' source address.",
    )
    .note("IPv6: link-local only (RFC 5798 5.1.2.1).")
    .example("\"10.0.1.2\"");
    pub const VMAC: Key = Key::new(
        T,
        "vmac",
        BOOL,
        Value::Bool(false),
        "A virtual MAC on a macvlan `vrrp<vrid>` (`vrrp6-<vrid>` for IPv6) over the interface.",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Array,
        help: "One VRRPv3 virtual router (RFC 5798), only with takeover.mode = \"vrrp\" (which needs at least one). All instances of a node move together (one group).",
        keys: &[
            NAME,
            INTERFACE,
            VRID,
            PRIORITY,
            ADVERT_INTERVAL_MS,
            ADDRESSES,
            ACCEPT,
            PREEMPT,
            UNICAST_PEERS,
            SOURCE,
            VMAC,
        ],
    };
}

pub(crate) mod track_interface {
    use super::*;

    const T: &str = "vrrp.track_interface";
    pub const NAME: Key = Key::new(
        T,
        "name",
        Accepts::Text(super::INTERFACE),
        Value::Required,
        "The interface.",
    )
    .example("\"wan\"");
    pub const WEIGHT: Key = Key::new(
        T,
        "weight",
        super::WEIGHT,
        Value::Int(0),
        "How much the group's priority falls while it is down; 0: fault.",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Array,
        help: "Tracking: while the interface is down, the group's priority falls by weight; weight 0 means fault (never master; a master steps down).",
        keys: &[NAME, WEIGHT],
    };
}

pub(crate) mod track_route {
    use super::*;

    const T: &str = "vrrp.track_route";
    pub const DESTINATION: Key = Key::new(
        T,
        "destination",
        Accepts::Text("a network, e.g. \"0.0.0.0/0\" or \"2001:db8::/32\""),
        Value::Required,
        "The prefix (no host bits set).",
    )
    .example("\"0.0.0.0/0\"");
    pub const WEIGHT: Key = Key::new(
        T,
        "weight",
        super::WEIGHT,
        Value::Int(0),
        "How much the group's priority falls while the route is missing; 0: fault.",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Array,
        help: "A route to exactly this prefix must exist in the main table.",
        keys: &[DESTINATION, WEIGHT],
    };
}

pub(crate) mod track_script {
    use super::*;

    const T: &str = "vrrp.track_script";
    pub const NAME: Key = Key::new(
        T,
        "name",
        Accepts::Name {
            max: 64,
            charset: "letters, digits, _, - and .",
        },
        Value::Required,
        "Unique; shown in status and logs.",
    )
    .example("\"upstream\"");
    pub const COMMAND: Key = Key::new(
        T,
        "command",
        Accepts::Text(
            "a command and its arguments, run without a shell, e.g. [\"/usr/bin/ping\", \"-c1\", \"10.0.2.100\"]",
        ),
        Value::Required,
        "The command and its arguments (argv, no shell).",
    )
    .example("[\"/usr/bin/ping\", \"-c1\", \"-W1\", \"10.0.2.100\"]");
    pub const INTERVAL_MS: Key = Key::new(
        T,
        "interval_ms",
        Accepts::Int(Range::new(100, MAX_MS).ms()),
        Value::Int(1000),
        "How often it runs.",
    );
    pub const TIMEOUT_MS: Key = Key::new(
        T,
        "timeout_ms",
        Accepts::Int(Range::new(10, MAX_MS).ms().relation("at most interval_ms")),
        Value::Key("vrrp.track_script.interval_ms"),
        "Then the command is killed and counts as a failure.",
    )
    .example("1000");
    pub const FALL: Key = Key::new(
        T,
        "fall",
        Accepts::Int(Range::new(1, 100)),
        Value::Int(2),
        "Failures in a row that mark it down.",
    );
    pub const RISE: Key = Key::new(
        T,
        "rise",
        Accepts::Int(Range::new(1, 100)),
        Value::Int(2),
        "Successes in a row that mark it up.",
    );
    pub const WEIGHT: Key = Key::new(
        T,
        "weight",
        super::WEIGHT,
        Value::Int(0),
        "How much the group's priority falls while it is down; 0: fault.",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Array,
        help: "A command run periodically, up while it exits 0.",
        keys: &[NAME, COMMAND, INTERVAL_MS, TIMEOUT_MS, FALL, RISE, WEIGHT],
    };
}

pub(crate) mod routing {
    use super::*;

    const T: &str = "routing";
    const INTERFACES: Accepts = Accepts::Text("a list of interface names, e.g. [\"wan\"]");
    pub const VTYSH: Key = Key::new(
        T,
        "vtysh",
        Accepts::Text("the command and arguments that reach FRR's vtysh, e.g. [\"vtysh\"]"),
        Value::List(&["vtysh"]),
        "The argv prefix that reaches FRR, e.g. [\"vtysh\", \"--vty_socket\", \"/run/frr/x\"].",
    );
    pub const OSPF_INTERFACES: Key = Key::new(
        T,
        "ospf_interfaces",
        INTERFACES,
        Value::List(&[]),
        "Interfaces whose `ip ospf cost` follows the role.",
    )
    .example("[\"wan\"]");
    pub const OSPF6_INTERFACES: Key = Key::new(
        T,
        "ospf6_interfaces",
        INTERFACES,
        Value::List(&[]),
        "Interfaces whose `ipv6 ospf6 cost` follows the role; at least one interface in the two lists.",
    );
    pub const ACTIVE_COST: Key = Key::new(
        T,
        "active_cost",
        Accepts::Int(Range::new(1, 65_535)),
        Value::Int(10),
        "The cost the active node advertises.",
    );
    pub const STANDBY_COST: Key = Key::new(
        T,
        "standby_cost",
        Accepts::Int(Range::new(1, 65_535).relation("more than active_cost")),
        Value::Int(1000),
        "The cost the standby node advertises.",
    );
    pub const TIMEOUT_MS: Key = Key::new(
        T,
        "timeout_ms",
        Accepts::Int(Range::new(100, MAX_MS).ms()),
        Value::Int(5000),
        "A vtysh call taking longer is killed.",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Optional,
        help: "FRR follows the role: the active node advertises the better OSPF cost (either takeover mode). Absent: no routing.",
        keys: &[
            VTYSH,
            OSPF_INTERFACES,
            OSPF6_INTERFACES,
            ACTIVE_COST,
            STANDBY_COST,
            TIMEOUT_MS,
        ],
    };
}

pub(crate) mod hooks {
    use super::*;

    const T: &str = "hooks";
    pub const ON_ACTIVE: Key = Key::new(
        T,
        "on_active",
        Accepts::Text(
            "a command and its arguments, run without a shell, e.g. [\"/etc/failoverd/active.sh\"]",
        ),
        Value::Unset,
        "Run on becoming active.",
    )
    .example("[\"/etc/failoverd/active.sh\"]");
    pub const ON_STANDBY: Key = Key::new(
        T,
        "on_standby",
        Accepts::Text(
            "a command and its arguments, run without a shell, e.g. [\"/etc/failoverd/standby.sh\"]",
        ),
        Value::Unset,
        "Run on becoming standby.",
    )
    .example("[\"/etc/failoverd/standby.sh\"]");
    pub const TIMEOUT_MS: Key = Key::new(
        T,
        "timeout_ms",
        Accepts::Int(Range::new(100, MAX_MS).ms()),
        Value::Int(5000),
        "Then the command is killed, and that is logged.",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "Commands (argv, no shell) run on role changes, with FAILOVERD_ROLE, FAILOVERD_FROM, FAILOVERD_REASON and FAILOVERD_NODE in their environment; their output goes to the log.",
        keys: &[ON_ACTIVE, ON_STANDBY, TIMEOUT_MS],
    };
}
