//! The keys of configuration sync: `[config_sync]`, `[config_sync.nftables]` and
//! `[[config_sync.files]]`.

use super::*;

/// What an nftables identifier (a table, set or define name) accepts, for `concat!`.
macro_rules! nft_name {
    () => {
        "1 to 64 characters: a letter or _, then letters, digits, _, - and ."
    };
}

/// What an nftables identifier (a table, set or define name) accepts.
pub(crate) const NFT_NAME: &str = nft_name!();

/// The longest nftables identifier accepted, in characters.
pub(crate) const NFT_NAME_MAX: usize = 64;

pub(crate) mod config_sync {
    use super::*;

    const T: &str = "config_sync";
    pub(crate) const MODE: Key = Key::new(
        T,
        "mode",
        Accepts::Text("\"off\", \"auto\" or \"manual\""),
        Value::Str("off"),
        "Configuration sync over the failover link, in Synchronization: auto sends everything once, then every change, and repairs drift; manual sends everything on `failoverctl config sync` and only reports drift.",
    )
    .note(
        "Both nodes name the same units; the replica applies only units its own configuration names, and its reload commands are its own.",
    );
    pub(crate) const SOURCE: Key = Key::new(
        T,
        "source",
        Accepts::Text(
            "\"priority\" or a node id (8 hex digits, as failoverctl status shows it)",
        ),
        Value::Str("priority"),
        "Which node's configuration is synced in asymmetric mode (both nodes active): priority (the higher node.priority; equal: the lower node id) or that node. In symmetric mode the active node is the source and this key is ignored.",
    )
    .note("Both nodes must agree: two nodes that both claim to be the source sync nothing (status conflict).");
    pub(crate) const COMPARE_INTERVAL_MS: Key = Key::new(
        T,
        "compare_interval_ms",
        Accepts::Int(Range::new(1000, MAX_MS).ms()),
        Value::Int(10_000),
        "How often the nodes compare their units' hashes, to catch drift (a change made on the replica, or one no event reported).",
    );
    pub(crate) const REPAIR_AFTER: Key = Key::new(
        T,
        "repair_after",
        Accepts::Int(Range::new(1, 100)),
        Value::Int(3),
        "Comparisons in a row that find a unit differing before auto mode repairs it with a sync (manual mode only reports it).",
    );
    pub(crate) const MAX_UNIT_BYTES: Key = Key::new(
        T,
        "max_unit_bytes",
        Accepts::Int(Range::new(65_536, failoverd_wire::MAX_UNIT_LEN as i64).unit("bytes")),
        Value::Int(16 << 20),
        "The largest unit (a table's canonical text, a file or directory's archive) sent or accepted; a larger one fails with a clear reason.",
    );
    pub(crate) const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "Configuration sync over the failover link: the replica's synced nftables tables and files made exactly the source's, all or nothing.",
        keys: &[
            MODE,
            SOURCE,
            COMPARE_INTERVAL_MS,
            REPAIR_AFTER,
            MAX_UNIT_BYTES,
        ],
    };
}

pub(crate) mod sync_nftables {
    use super::*;

    const T: &str = "config_sync.nftables";
    pub(crate) const TABLES: Key = Key::new(
        T,
        "tables",
        Accepts::Text(concat!(
            "a list of tables, each \"family name\" (family ip, ip6, inet, arp, bridge or netdev; name ",
            nft_name!(),
            "), e.g. [\"inet filter\"]"
        )),
        Value::List(&[]),
        "The nftables tables synced, each recreated whole on the replica in one transaction; tables not listed are never touched.",
    )
    .note("Keep failoverd's own tables and the failover link's rules out of the list.")
    .example("[\"inet filter\"]");
    pub(crate) const DYNAMIC_SETS: Key = Key::new(
        T,
        "dynamic_sets",
        Accepts::Text(
            "a list of sets, each \"family table set\" of a listed table, e.g. [\"inet filter blocklist\"]",
        ),
        Value::List(&[]),
        "Sets whose elements the data path adds (e.g. a blocklist with timeouts): their elements are replicated as runtime state with their remaining timeout, and left out of the hash and the diff.",
    )
    .example("[\"inet filter blocklist\"]");
    pub(crate) const DEFINES: Key = Key::new(
        T,
        "defines",
        Accepts::Text(concat!(
            "a table of nftables variables, each name (",
            nft_name!(),
            ") = non-empty text, all values distinct, e.g. { nat_pool = \"192.0.2.10\" }"
        )),
        Value::Unset,
        "Values that differ per node inside the synced tables (e.g. each node's NAT pool in asymmetric mode): the synced text carries $name, each node substitutes its own value; hash and diff compare the text before substitution.",
    )
    .note("Each node sets its own values for the same names.")
    .example("{ nat_pool = \"192.0.2.10\" }");
    pub(crate) const TABLE: Table = Table {
        name: T,
        kind: TableKind::Plain,
        help: "",
        keys: &[TABLES, DYNAMIC_SETS, DEFINES],
    };
}

pub(crate) mod sync_files {
    use super::*;

    const T: &str = "config_sync.files";
    pub(crate) const PATH: Key = Key::new(
        T,
        "path",
        Accepts::Text(
            "an absolute path, normalized (no ., .. or //, no / at the end), not / and not this file or the node's key or a directory holding them",
        ),
        Value::Required,
        "A file, or a directory synced whole (files gone on the source are removed); replaced atomically, mode and ownership kept.",
    )
    .example("\"/etc/haproxy/haproxy.cfg\"");
    pub(crate) const RELOAD: Key = Key::new(
        T,
        "reload",
        Accepts::Text(
            "a command and its arguments, run without a shell, e.g. [\"/usr/bin/systemctl\", \"reload\", \"haproxy\"]",
        ),
        Value::Unset,
        "Run on the replica after the unit is applied (after the nftables tables); its failure is reported.",
    )
    .example("[\"/usr/bin/systemctl\", \"reload\", \"haproxy\"]");
    pub(crate) const TABLE: Table = Table {
        name: T,
        kind: TableKind::Array,
        help: "One file or directory synced. Units apply in order: these files, in the order written, then the nftables tables, then the reload commands.",
        keys: &[PATH, RELOAD],
    };
}
