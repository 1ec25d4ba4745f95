//! Every key of the configuration file, once: what it accepts, its default and its help.
//!
//! The validation reads its ranges and defaults here, errors say what a key accepts from here,
//! and the example file and the READMEs' reference tables are generated from here (tests fail
//! when the checked-in copies drift). The defaults the core also uses are the core's
//! ([`failoverd_core::defaults`]). To add a key: add it here and to its table's list, read it
//! in the section's validation, and regenerate the documents (`FAILOVERD_BLESS=1 cargo test -p
//! failoverd-control`).

use std::time::Duration;

use failoverd_core::defaults;

use super::keys::{Accepts, Key, Range, Table, TableKind, Value};

/// Every table, in the order of the file and of the "unknown table" error.
pub(crate) static TABLES: &[Table] = &[
    node::TABLE,
    pair::TABLE,
    link::TABLE,
    timers::TABLE,
    sessions::TABLE,
    conntrack::TABLE,
    control::TABLE,
    log::TABLE,
    takeover::TABLE,
    vrrp::TABLE,
    instance::TABLE,
    track_interface::TABLE,
    track_route::TABLE,
    track_script::TABLE,
    routing::TABLE,
    hooks::TABLE,
];

/// Where the daemon and `failoverctl` look for the configuration when not told otherwise.
pub const DEFAULT_PATH: &str = "/etc/failoverd/failoverd.toml";

/// The default control socket (`control.socket`).
pub const DEFAULT_SOCKET: &str = "/run/failoverd/failoverd.sock";

/// Timer values above this are refused: an hour is far beyond any sensible failover timer, and
/// the cap keeps every deadline the daemon computes from them far from overflowing.
const MAX_MS: i64 = 3_600_000;

/// The core's shortest hello interval, in milliseconds.
const MIN_HELLO_MS: i64 = ms(failoverd_core::MIN_HELLO_INTERVAL);

/// What an interface name accepts (Linux: IFNAMSIZ - 1 bytes, no '/', ':' or white space).
pub(crate) const INTERFACE: &str = "an interface name of 1 to 15 characters without /, : or spaces";

const BOOL: Accepts = Accepts::Text("true or false");

/// A tracker's weight.
const WEIGHT: Accepts = Accepts::Int(Range::new(0, 253).min_means("fault: never master"));

const fn ms(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

pub(crate) mod node {
    use super::*;

    const T: &str = "node";
    pub const NAME: Key = Key::new(
        T,
        "name",
        Accepts::Name {
            max: 64,
            charset: "",
        },
        Value::Required,
        "Shown in status and logs.",
    )
    .example("\"fw-a\"");
    pub const KEY: Key = Key::new(
        T,
        "key",
        Accepts::Text("the path of this node's key file (failoverctl keygen --out PATH)"),
        Value::Required,
        "This node's key and certificate, made by `failoverctl keygen --out PATH`.",
    )
    .note("A relative path is relative to the file's directory. Keep the file mode 0600, as keygen writes it.")
    .example("\"/etc/failoverd/node.pem\"");
    pub const PRIORITY: Key = Key::new(
        T,
        "priority",
        Accepts::Int(Range::new(1, 254)),
        Value::Int(defaults::PRIORITY as i64),
        "The higher is preferred as active (equal: the lower node id).",
    );
    pub const PREEMPT: Key = Key::new(
        T,
        "preempt",
        BOOL,
        Value::Bool(defaults::PREEMPT),
        "Take the active role back from a lower-priority peer once ready (sessions synchronized).",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[NAME, KEY, PRIORITY, PREEMPT],
    };
}

pub(crate) mod pair {
    use super::*;

    const T: &str = "pair";
    pub const ID: Key = Key::new(
        T,
        "id",
        Accepts::Int(Range::new(1, u32::MAX as i64)),
        Value::Int(defaults::PAIR_ID as i64),
        "Tells several pairs on one network apart; both nodes must agree.",
    );
    pub const BACKUP: Key = Key::new(
        T,
        "backup",
        Accepts::Text("\"symmetric\" or \"asymmetric\""),
        Value::Str(defaults::BACKUP_TYPE.name()),
        "How the pair forwards: one node at a time (symmetric: active/standby), or both (asymmetric: a reply may come back through the other node); both nodes must agree.",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[ID, BACKUP],
    };
}

pub(crate) mod link {
    use super::*;

    const T: &str = "link";
    pub const LISTEN: Key = Key::new(
        T,
        "listen",
        Accepts::Text(
            "this node's failover-link IP address and port, e.g. \"192.0.2.1:7701\" (a wildcard such as \"0.0.0.0:7701\" is accepted, with a warning)",
        ),
        Value::Required,
        "This node's address on the failover link (TLS over TCP): connections are accepted only from the peer's address, and this node dials from this one.",
    )
    .note(
        "A wildcard such as \"0.0.0.0:7701\" works only while the peer's dials leave from its link.peer address; a warning is logged.",
    )
    .example("\"192.0.2.1:7701\"");
    pub const PEER: Key = Key::new(
        T,
        "peer",
        Accepts::Text(
            "the peer's IP address and port, e.g. \"192.0.2.2:7701\" or \"[2001:db8::2]:7701\"",
        ),
        Value::Required,
        "The peer's failover-link address; connections from any other address are closed before TLS.",
    )
    .example("\"192.0.2.2:7701\"");
    pub const PEER_KEY: Key = Key::new(
        T,
        "peer_key",
        Accepts::Text(
            "\"sha256:\" and 64 hex digits, the fingerprint `failoverctl keygen` printed on the peer, or a list of two such (the old and the new key, while rotating the peer's key)",
        ),
        Value::Required,
        "The peer's key fingerprint, printed by `failoverctl keygen` on the peer: only a peer with this key is accepted.",
    )
    .note(
        "To rotate the peer's key without downtime, pin both: `peer_key = [\"sha256:<old>\", \"sha256:<new>\"]`, restart the peer with its new key, then drop the old pin. (The example's all-zero value matches no key.)",
    )
    .example("\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"");
    pub const RECONNECT_MIN_MS: Key = Key::new(
        T,
        "reconnect_min_ms",
        Accepts::Int(Range::new(1, MAX_MS).ms()),
        Value::Int(100),
        "The first delay before dialling again after a failure; it doubles up to reconnect_max_ms.",
    );
    pub const RECONNECT_MAX_MS: Key = Key::new(
        T,
        "reconnect_max_ms",
        Accepts::Int(Range::new(1, MAX_MS).ms()),
        Value::Int(2000),
        "The longest delay between dials; at least reconnect_min_ms.",
    );
    pub const HEARTBEAT_LISTEN: Key = Key::new(
        T,
        "heartbeat_listen",
        Accepts::Text(
            "an IP address and UDP port to receive the peer's heartbeats on, e.g. \"198.51.100.1:7702\" (with heartbeat_peer; only with takeover.mode = \"election\")",
        ),
        Value::Unset,
        "The heartbeat path: a second path for the hellos (UDP, each signed with this node's key) over another network than the failover link, e.g. a traffic interface; this node receives them here.",
    )
    .note(
        "Only with takeover.mode = \"election\": a cut failover link then does not make both nodes active while the peer is heard on this path (with VRRP the adverts on the traffic networks already decide). Both keys or neither.",
    )
    .example("\"198.51.100.1:7702\"");
    pub const HEARTBEAT_PEER: Key = Key::new(
        T,
        "heartbeat_peer",
        Accepts::Text(
            "the peer's heartbeat IP address and UDP port, on another network than link.peer, e.g. \"198.51.100.2:7702\" (with heartbeat_listen)",
        ),
        Value::Unset,
        "The peer's heartbeat address, on another network than link.peer.",
    )
    .example("\"198.51.100.2:7702\"");
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "The failover link.",
        keys: &[
            LISTEN,
            PEER,
            PEER_KEY,
            RECONNECT_MIN_MS,
            RECONNECT_MAX_MS,
            HEARTBEAT_LISTEN,
            HEARTBEAT_PEER,
        ],
    };
}

pub(crate) mod timers {
    use super::*;

    const T: &str = "timers";
    pub const HELLO_INTERVAL_MS: Key = Key::new(
        T,
        "hello_interval_ms",
        Accepts::Int(Range::new(MIN_HELLO_MS, MAX_MS).ms()),
        Value::Int(ms(defaults::HELLO_INTERVAL)),
        "How often hellos are sent.",
    );
    pub const DEAD_INTERVAL_MS: Key = Key::new(
        T,
        "dead_interval_ms",
        Accepts::Int(
            Range::new(2 * MIN_HELLO_MS, MAX_MS)
                .ms()
                .relation("at least twice hello_interval_ms"),
        ),
        Value::Int(ms(defaults::DEAD_INTERVAL)),
        "The peer is dead after this long without a hello.",
    );
    pub const SILENCE_MS: Key = Key::new(
        T,
        "silence_ms",
        Accepts::Int(
            Range::new(MIN_HELLO_MS, MAX_MS)
                .ms()
                .relation("at least hello_interval_ms"),
        ),
        Value::Int(ms(defaults::SILENCE_TIMER)),
        "The hold-down after start and after leaving Synchronization.",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[HELLO_INTERVAL_MS, DEAD_INTERVAL_MS, SILENCE_MS],
    };
}

pub(crate) mod sessions {
    use super::*;

    const T: &str = "sessions";
    pub const BACKEND: Key = Key::new(
        T,
        "backend",
        Accepts::Text("\"memory\" or \"conntrack\""),
        Value::Str("memory"),
        "Which session table is replicated: memory is a userspace table (the demo, trying it out), conntrack the kernel's connection-tracking table over ctnetlink (needs CAP_NET_ADMIN).",
    );
    pub const DIGEST_INTERVAL_MS: Key = Key::new(
        T,
        "digest_interval_ms",
        Accepts::Int(Range::new(1000, 86_400_000).ms().zero_is_off()),
        Value::Int(ms(defaults::DIGEST_INTERVAL)),
        "Anti-entropy: how often each node sends a digest of its sessions for the peer to compare with its copies; drift no event reported is resynchronized.",
    )
    .note("Each costs a dump of the table on both nodes.");
    pub const PEER_BUFFER_MIB: Key = Key::new(
        T,
        "peer_buffer_mib",
        Accepts::Int(Range::new(8, 4096).unit("MiB")),
        Value::Int((defaults::MAX_PEER_BUFFER >> 20) as i64),
        "The peer's batches held in memory (ahead of a gap, or waiting to be applied), at most.",
    )
    .note(
        "An honest peer keeps at most 8 MiB unapplied; one sending past that gets its batches dropped (resent later) or its link reset, never more memory (docs/SECURITY.md).",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[BACKEND, DIGEST_INTERVAL_MS, PEER_BUFFER_MIB],
    };
}

pub(crate) mod conntrack {
    use super::*;

    const T: &str = "sessions.conntrack";
    const NETWORKS: Accepts =
        Accepts::Text("a list of networks, e.g. [\"10.0.0.0/8\", \"2001:db8::/32\"]");
    pub const EVENT_BUFFER_BYTES: Key = Key::new(
        T,
        "event_buffer_bytes",
        Accepts::Int(Range::new(65_536, 1 << 30).unit("bytes")),
        Value::Int(defaults::EVENT_BUFFER_BYTES as i64),
        "The receive buffer of the kernel event socket; a burst larger than it overruns, which costs a resynchronization.",
    );
    pub const PEER_ENTRY_TIMEOUT_SECS: Key = Key::new(
        T,
        "peer_entry_timeout_secs",
        Accepts::Int(Range::new(60, 2_592_000).unit("seconds")),
        Value::Int(defaults::PEER_ENTRY_TIMEOUT_SECS as i64),
        "The least timeout of the peer's entries in this kernel, re-armed while the peer holds them (they see no packets here), corrected to the real timeout at takeover.",
    );
    pub const OWNER_MARK: Key = Key::new(
        T,
        "owner_mark",
        Accepts::Mask(
            Range::new(0, u32::MAX as i64),
            "a 32-bit mask with exactly two bits set, e.g. 0xc0000000, or 0 (off)",
        ),
        Value::Hex(defaults::OWNER_MARK as i64),
        "Two conntrack-mark bits that record in each kernel entry whose session it is (the lower: this node's, the higher: the peer's), so that a restarted daemon keeps its own sessions.",
    )
    .note("Keep them out of the marks the ruleset sets; 0 turns the stamp off.");
    pub const ZONES: Key = Key::new(
        T,
        "zones",
        Accepts::Text("a list of conntrack zones, integers from 0 to 65535"),
        Value::List(&[]),
        "Replicate only entries of these conntrack zones; empty: all.",
    );
    pub const PROTOCOLS: Key = Key::new(
        T,
        "protocols",
        Accepts::Text(
            "a list of IP protocols: names (tcp, udp, icmp, icmpv6, sctp, dccp, gre, udplite) or numbers from 0 to 255 as strings",
        ),
        Value::List(&[]),
        "Replicate only these IP protocols; empty: all.",
    );
    pub const INCLUDE: Key = Key::new(
        T,
        "include",
        NETWORKS,
        Value::List(&[]),
        "Replicate only sessions whose original source or destination is in one of these networks; empty: all.",
    );
    pub const EXCLUDE: Key = Key::new(
        T,
        "exclude",
        NETWORKS,
        Value::List(&[]),
        "Never replicate sessions whose original source or destination is in one of these networks, e.g. [\"192.0.2.0/24\"].",
    )
    .note(
        "Loopback and the failover link's addresses are always excluded. The same filter refuses the peer's ops outside it (counted as peer_ops_filtered).",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "The kernel's connection-tracking table; read only with sessions.backend = \"conntrack\".",
        keys: &[
            EVENT_BUFFER_BYTES,
            PEER_ENTRY_TIMEOUT_SECS,
            OWNER_MARK,
            ZONES,
            PROTOCOLS,
            INCLUDE,
            EXCLUDE,
        ],
    };
}

pub(crate) mod control {
    use super::*;

    const T: &str = "control";
    pub const SOCKET: Key = Key::new(
        T,
        "socket",
        Accepts::Text("the path of the control socket"),
        Value::Str(DEFAULT_SOCKET),
        "The Unix socket failoverctl talks to; a relative path is relative to the file's directory.",
    )
    .note(
        "Mode 0666: every local user may read status, peer, the session count and events; keep it in a directory that only root can write, never /tmp.",
    );
    pub const GROUP: Key = Key::new(
        T,
        "group",
        Accepts::Text("a group name or number"),
        Value::Unset,
        "Besides root and the daemon's own user, members of this group may switch over, turn maintenance on or off, generate sessions and list them (docs/SECURITY.md).",
    )
    .example("\"failoverd\"");
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[SOCKET, GROUP],
    };
}

pub(crate) mod log {
    use super::*;

    const T: &str = "log";
    pub const FORMAT: Key = Key::new(
        T,
        "format",
        Accepts::Text("\"text\" or \"json\""),
        Value::Str("text"),
        "How log lines are written: text, or json (one object per line, for log collectors).",
    );
    pub const LEVEL: Key = Key::new(
        T,
        "level",
        Accepts::Text("a tracing filter directive, e.g. \"info\" or \"warn,failoverd=debug\""),
        Value::Str("info"),
        "Which lines are logged: a tracing EnvFilter directive.",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[FORMAT, LEVEL],
    };
}

pub(crate) mod takeover {
    use super::*;

    const T: &str = "takeover";
    pub const MODE: Key = Key::new(
        T,
        "mode",
        Accepts::Text("\"election\" or \"vrrp\""),
        Value::Str("election"),
        "Who decides which node forwards (docs/TAKEOVER.md): election (the nodes agree over the failover link; [routing] and [hooks] move the traffic) or vrrp (failoverd's own VRRPv3 speaker: its master is active and the virtual addresses move with it; needs a [[vrrp.instance]]).",
    );
    pub const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[MODE],
    };
}

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
