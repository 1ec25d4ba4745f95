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

mod sync;
mod traffic;

pub(crate) use sync::{NFT_NAME, NFT_NAME_MAX, config_sync, sync_files, sync_nftables};
pub(crate) use traffic::{
    hooks, instance, routing, track_interface, track_route, track_script, vrrp,
};

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
    config_sync::TABLE,
    sync_nftables::TABLE,
    sync_files::TABLE,
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
    pub(crate) const NAME: Key = Key::new(
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
    pub(crate) const KEY: Key = Key::new(
        T,
        "key",
        Accepts::Text("the path of this node's key file (failoverctl keygen --out PATH)"),
        Value::Required,
        "This node's key and certificate, made by `failoverctl keygen --out PATH`.",
    )
    .note("A relative path is relative to the file's directory. Keep the file mode 0600, as keygen writes it.")
    .example("\"/etc/failoverd/node.pem\"");
    pub(crate) const PRIORITY: Key = Key::new(
        T,
        "priority",
        Accepts::Int(Range::new(1, 254)),
        Value::Int(defaults::PRIORITY as i64),
        "The higher is preferred as active (equal: the lower node id).",
    );
    pub(crate) const PREEMPT: Key = Key::new(
        T,
        "preempt",
        BOOL,
        Value::Bool(defaults::PREEMPT),
        "Take the active role back from a lower-priority peer once ready (sessions synchronized).",
    );
    pub(crate) const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[NAME, KEY, PRIORITY, PREEMPT],
    };
}

pub(crate) mod pair {
    use super::*;

    const T: &str = "pair";
    pub(crate) const ID: Key = Key::new(
        T,
        "id",
        Accepts::Int(Range::new(1, u32::MAX as i64)),
        Value::Int(defaults::PAIR_ID as i64),
        "Tells several pairs on one network apart; both nodes must agree.",
    );
    pub(crate) const BACKUP: Key = Key::new(
        T,
        "backup",
        Accepts::Text("\"symmetric\" or \"asymmetric\""),
        Value::Str(defaults::BACKUP_TYPE.name()),
        "How the pair forwards: one node at a time (symmetric: active/standby), or both (asymmetric: a reply may come back through the other node); both nodes must agree.",
    );
    pub(crate) const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[ID, BACKUP],
    };
}

pub(crate) mod link {
    use super::*;

    const T: &str = "link";
    pub(crate) const LISTEN: Key = Key::new(
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
    pub(crate) const PEER: Key = Key::new(
        T,
        "peer",
        Accepts::Text(
            "the peer's IP address and port, e.g. \"192.0.2.2:7701\" or \"[2001:db8::2]:7701\"",
        ),
        Value::Required,
        "The peer's failover-link address; connections from any other address are closed before TLS.",
    )
    .example("\"192.0.2.2:7701\"");
    pub(crate) const PEER_KEY: Key = Key::new(
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
    pub(crate) const RECONNECT_MIN_MS: Key = Key::new(
        T,
        "reconnect_min_ms",
        Accepts::Int(Range::new(1, MAX_MS).ms()),
        Value::Int(100),
        "The first delay before dialling again after a failure; it doubles up to reconnect_max_ms.",
    );
    pub(crate) const RECONNECT_MAX_MS: Key = Key::new(
        T,
        "reconnect_max_ms",
        Accepts::Int(Range::new(1, MAX_MS).ms()),
        Value::Int(2000),
        "The longest delay between dials; at least reconnect_min_ms.",
    );
    pub(crate) const HEARTBEAT_LISTEN: Key = Key::new(
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
    pub(crate) const HEARTBEAT_PEER: Key = Key::new(
        T,
        "heartbeat_peer",
        Accepts::Text(
            "the peer's heartbeat IP address and UDP port, on another network than link.peer, e.g. \"198.51.100.2:7702\" (with heartbeat_listen)",
        ),
        Value::Unset,
        "The peer's heartbeat address, on another network than link.peer.",
    )
    .example("\"198.51.100.2:7702\"");
    pub(crate) const TABLE: Table = Table {
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
    pub(crate) const HELLO_INTERVAL_MS: Key = Key::new(
        T,
        "hello_interval_ms",
        Accepts::Int(Range::new(MIN_HELLO_MS, MAX_MS).ms()),
        Value::Int(ms(defaults::HELLO_INTERVAL)),
        "How often hellos are sent.",
    );
    pub(crate) const DEAD_INTERVAL_MS: Key = Key::new(
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
    pub(crate) const SILENCE_MS: Key = Key::new(
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
    pub(crate) const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[HELLO_INTERVAL_MS, DEAD_INTERVAL_MS, SILENCE_MS],
    };
}

pub(crate) mod sessions {
    use super::*;

    const T: &str = "sessions";
    pub(crate) const BACKEND: Key = Key::new(
        T,
        "backend",
        Accepts::Text("\"memory\" or \"conntrack\""),
        Value::Str("memory"),
        "Which session table is replicated: memory is a userspace table (the demo, trying it out), conntrack the kernel's connection-tracking table over ctnetlink (needs CAP_NET_ADMIN).",
    );
    pub(crate) const DIGEST_INTERVAL_MS: Key = Key::new(
        T,
        "digest_interval_ms",
        Accepts::Int(Range::new(1000, 86_400_000).ms().zero_is_off()),
        Value::Int(ms(defaults::DIGEST_INTERVAL)),
        "Anti-entropy: how often each node sends a digest of its sessions for the peer to compare with its copies; drift no event reported is resynchronized.",
    )
    .note("Each costs a dump of the table on both nodes.");
    pub(crate) const PEER_BUFFER_MIB: Key = Key::new(
        T,
        "peer_buffer_mib",
        Accepts::Int(Range::new(8, 4096).unit("MiB")),
        Value::Int((defaults::MAX_PEER_BUFFER >> 20) as i64),
        "The peer's batches held in memory (ahead of a gap, or waiting to be applied), at most.",
    )
    .note(
        "An honest peer keeps at most 8 MiB unapplied; one sending past that gets its batches dropped (resent later) or its link reset, never more memory (docs/SECURITY.md).",
    );
    pub(crate) const TABLE: Table = Table {
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
    pub(crate) const EVENT_BUFFER_BYTES: Key = Key::new(
        T,
        "event_buffer_bytes",
        Accepts::Int(Range::new(65_536, 1 << 30).unit("bytes")),
        Value::Int(defaults::EVENT_BUFFER_BYTES as i64),
        "The receive buffer of the kernel event socket; a burst larger than it overruns, which costs a resynchronization.",
    );
    pub(crate) const PEER_ENTRY_TIMEOUT_SECS: Key = Key::new(
        T,
        "peer_entry_timeout_secs",
        Accepts::Int(Range::new(60, 2_592_000).unit("seconds")),
        Value::Int(defaults::PEER_ENTRY_TIMEOUT_SECS as i64),
        "The least timeout of the peer's entries in this kernel, re-armed while the peer holds them (they see no packets here), corrected to the real timeout at takeover.",
    );
    pub(crate) const OWNER_MARK: Key = Key::new(
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
    pub(crate) const ZONES: Key = Key::new(
        T,
        "zones",
        Accepts::Text("a list of conntrack zones, integers from 0 to 65535"),
        Value::List(&[]),
        "Replicate only entries of these conntrack zones; empty: all.",
    );
    pub(crate) const PROTOCOLS: Key = Key::new(
        T,
        "protocols",
        Accepts::Text(
            "a list of IP protocols: names (tcp, udp, icmp, icmpv6, sctp, dccp, gre, udplite) or numbers from 0 to 255 as strings",
        ),
        Value::List(&[]),
        "Replicate only these IP protocols; empty: all.",
    );
    pub(crate) const INCLUDE: Key = Key::new(
        T,
        "include",
        NETWORKS,
        Value::List(&[]),
        "Replicate only sessions whose original source or destination is in one of these networks; empty: all.",
    );
    pub(crate) const EXCLUDE: Key = Key::new(
        T,
        "exclude",
        NETWORKS,
        Value::List(&[]),
        "Never replicate sessions whose original source or destination is in one of these networks, e.g. [\"192.0.2.0/24\"].",
    )
    .note(
        "Loopback and the failover link's addresses are always excluded. The same filter refuses the peer's ops outside it (counted as peer_ops_filtered).",
    );
    pub(crate) const TABLE: Table = Table {
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
    pub(crate) const SOCKET: Key = Key::new(
        T,
        "socket",
        Accepts::Text("the path of the control socket"),
        Value::Str(DEFAULT_SOCKET),
        "The Unix socket failoverctl talks to; a relative path is relative to the file's directory.",
    )
    .note(
        "Mode 0666: every local user may read status, peer, the session count and events; keep it in a directory that only root can write, never /tmp.",
    );
    pub(crate) const GROUP: Key = Key::new(
        T,
        "group",
        Accepts::Text("a group name or number"),
        Value::Unset,
        "Besides root and the daemon's own user, members of this group may switch over, turn maintenance on or off, generate sessions and list them (docs/SECURITY.md).",
    )
    .example("\"failoverd\"");
    pub(crate) const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[SOCKET, GROUP],
    };
}

pub(crate) mod log {
    use super::*;

    const T: &str = "log";
    pub(crate) const FORMAT: Key = Key::new(
        T,
        "format",
        Accepts::Text("\"text\" or \"json\""),
        Value::Str("text"),
        "How log lines are written: text, or json (one object per line, for log collectors).",
    );
    pub(crate) const LEVEL: Key = Key::new(
        T,
        "level",
        Accepts::Text("a tracing filter directive, e.g. \"info\" or \"warn,failoverd=debug\""),
        Value::Str("info"),
        "Which lines are logged: a tracing EnvFilter directive.",
    );
    pub(crate) const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[FORMAT, LEVEL],
    };
}

pub(crate) mod takeover {
    use super::*;

    const T: &str = "takeover";
    pub(crate) const MODE: Key = Key::new(
        T,
        "mode",
        Accepts::Text("\"election\" or \"vrrp\""),
        Value::Str("election"),
        "Who decides which node forwards (docs/TAKEOVER.md): election (the nodes agree over the failover link; [routing] and [hooks] move the traffic) or vrrp (failoverd's own VRRPv3 speaker: its master is active and the virtual addresses move with it; needs a [[vrrp.instance]]).",
    );
    pub(crate) const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[MODE],
    };
}

/// The table named `name`.
pub(crate) fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|table| table.name == name)
}

/// How a table's header is written: `[name]`, or `[[name]]` for an array of tables.
pub(crate) fn header(name: &str) -> String {
    match table(name) {
        Some(Table {
            kind: TableKind::Array,
            ..
        }) => format!("[[{name}]]"),
        _ => format!("[{name}]"),
    }
}

/// What `table.key` accepts, for "wrong type" and "missing key" errors.
pub(crate) fn expected(table_name: &str, key: &str) -> String {
    if let Some(found) = table(table_name).and_then(|t| t.keys.iter().find(|k| k.name == key)) {
        return found.accepts.describe();
    }
    // A sub-table written with the wrong type (`vrrp.instance = 5`).
    match table(&format!("{table_name}.{key}")) {
        Some(Table {
            kind: TableKind::Array,
            ..
        }) => "an array of tables (sections written [[...]])",
        Some(_) => "a table",
        None => "(not a known key)",
    }
    .to_string()
}

/// The keys a table accepts (the tables, for the top level), for "unknown key" errors.
pub(crate) fn allowed_keys(table_name: &str) -> String {
    if table_name.is_empty() {
        let tables: Vec<String> = TABLES.iter().map(|t| header(t.name)).collect();
        return format!("the file has the tables {}", tables.join(", "));
    }
    let Some(found) = table(table_name) else {
        return format!("[{table_name}] is not a known table");
    };
    let keys: Vec<&str> = found.keys.iter().map(|key| key.name).collect();
    let prefix = format!("{table_name}.");
    let tables: Vec<String> = TABLES
        .iter()
        .filter(|t| {
            t.name
                .strip_prefix(&prefix)
                .is_some_and(|n| !n.contains('.'))
        })
        .map(|t| header(t.name))
        .collect();
    let mut text = format!("{} has the keys {}", header(table_name), keys.join(", "));
    if !tables.is_empty() {
        text.push_str(&format!(" and the tables {}", tables.join(", ")));
    }
    text
}
