//! The configuration file, `/etc/failoverd/failoverd.toml` by default.
//!
//! The key names, their defaults and their ranges are a documented contract (the reference is in
//! `crates/control/README.md`; [`Config::example`] is a commented file with every key).
//!
//! Parsing happens in two steps. serde reads the TOML into raw structs that keep every value's
//! byte span ([`toml::Spanned`]) and reject unknown keys; then [`Config::parse`] checks ranges,
//! addresses, the fingerprint and the relations between keys, and builds the typed [`Config`].
//! Either step can fail, and every [`ConfigError`] names the file, the line and column, the key,
//! the offending value, what is wrong and what is allowed:
//!
//! ```text
//! /etc/failoverd/failoverd.toml:12:21: timers.hello_interval_ms = 5: must be at least 10
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use failoverd_wire::{Fingerprint, Pins};
pub use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::io_reason;

/// Where the daemon and `failoverctl` look for the configuration when not told otherwise.
pub const DEFAULT_PATH: &str = "/etc/failoverd/failoverd.toml";

/// The default control socket (`control.socket`).
pub const DEFAULT_SOCKET: &str = "/run/failoverd/failoverd.sock";

/// Timer values above this are refused: an hour is far beyond any sensible failover timer, and
/// the cap keeps every deadline the daemon computes from them far from overflowing.
const MAX_MS: i64 = 3_600_000;

/// The smallest hello interval: below 10 ms the hellos cost more than the detection they buy.
const MIN_HELLO_MS: i64 = 10;

/// The longest node name; it appears in every log line and status, so it should stay short.
const MAX_NAME_CHARS: usize = 64;

/// The validated configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[node]`: this node.
    pub node: NodeConfig,
    /// `[pair]`: what both nodes must agree on.
    pub pair: PairConfig,
    /// `[link]`: the failover link.
    pub link: LinkConfig,
    /// `[timers]`: negotiation timers.
    pub timers: TimersConfig,
    /// `[sessions]`: the session-table backend.
    pub sessions: SessionsConfig,
    /// `[control]`: the control socket of `failoverctl`.
    pub control: ControlConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[takeover]`: who decides which node forwards.
    pub takeover: TakeoverConfig,
    /// `[vrrp]`, `[[vrrp.instance]]` and `[[vrrp.track_*]]`: the VRRPv3 speaker (used with
    /// `takeover.mode = "vrrp"`; without it the lists are empty).
    pub vrrp: VrrpConfig,
    /// `[routing]`: FRR follows the role by OSPF costs; `None` when the table is absent.
    pub routing: Option<RoutingConfig>,
    /// `[hooks]`: commands run on role changes.
    pub hooks: HooksConfig,
}

/// `[node]`: this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `name`: shown in status and logs.
    pub name: String,
    /// `key`: this node's key and certificate (a PEM file made by `failoverctl keygen`).
    /// A relative path in the file is resolved against the file's directory.
    pub key: PathBuf,
    /// `priority` (1..=254, default 100): the higher is preferred as active.
    pub priority: u8,
    /// `preempt` (default true): take the active role back from a lower-priority peer once ready.
    pub preempt: bool,
}

/// `[pair]`: settings both nodes must agree on, or negotiation fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairConfig {
    /// `id` (1..=4294967295, default 1): tells several pairs on one network apart.
    pub id: u32,
    /// `backup` (default symmetric).
    pub backup: BackupType,
}

/// How the pair forwards traffic, which decides how sessions are backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Active/standby: only the active node forwards.
    Symmetric,
    /// Both nodes forward and a reply may return through the other node, so a new session
    /// must reach the peer before its reply can.
    Asymmetric,
}

impl BackupType {
    /// The name used in the file and in status output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Symmetric => "symmetric",
            Self::Asymmetric => "asymmetric",
        }
    }
}

impl fmt::Display for BackupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[link]`: the failover link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// `listen`: the address this node accepts the failover link on.
    pub listen: SocketAddr,
    /// `peer`: the peer's failover-link address.
    pub peer: SocketAddr,
    /// `peer_key`: the fingerprints the peer's key may have (one, or two while the peer's key
    /// is rotated); nothing else is trusted.
    pub peer_key: Pins,
    /// `reconnect_min_ms` (default 100): the first delay before dialling again.
    pub reconnect_min: Duration,
    /// `reconnect_max_ms` (default 2000): the delay doubles up to this.
    pub reconnect_max: Duration,
    /// `heartbeat_listen` and `heartbeat_peer` (default: none): a second path for hellos, over
    /// another network than the failover link (election mode only).
    pub heartbeat: Option<HeartbeatPath>,
}

/// The heartbeat path: the hellos, signed with the node's key, as UDP datagrams over another
/// network than the failover link (a traffic interface), so that with `takeover.mode =
/// "election"` a cut failover link alone does not make both nodes active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatPath {
    /// `heartbeat_listen`: the UDP address this node receives the peer's heartbeats on.
    pub listen: SocketAddr,
    /// `heartbeat_peer`: the peer's heartbeat address, on another network than `link.peer`.
    pub peer: SocketAddr,
}

/// `[timers]`: negotiation timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimersConfig {
    /// `hello_interval_ms` (default 50, at least 10): how often hellos are sent.
    pub hello_interval: Duration,
    /// `dead_interval_ms` (default 150, at least twice the hello interval): the peer is
    /// declared dead after this long without a hello.
    pub dead_interval: Duration,
    /// `silence_ms` (default 1000, at least the hello interval): the hold-down after start or
    /// after leaving Synchronization.
    pub silence: Duration,
}

/// `[sessions]`: the session-table backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsConfig {
    /// `backend` (default memory).
    pub backend: SessionBackend,
    /// `digest_interval_ms` (default 60000; 0 turns it off): how often each node sends a
    /// digest of its sessions for the peer to compare with its copies (anti-entropy). Each
    /// costs a dump of the table on both nodes.
    pub digest_interval: Duration,
    /// `peer_buffer_mib` (default 32, 8..=4096): the peer's received batches held in memory
    /// (ahead of a gap, or waiting for the backend), at most, in bytes. An honest peer keeps
    /// at most 8 MiB unapplied; past the bound a batch ahead of a gap is dropped (the peer
    /// resends it) and one in order resets the link.
    pub peer_buffer: usize,
    /// `[sessions.conntrack]`: settings of the kernel backend (read only with `backend =
    /// "conntrack"`).
    pub conntrack: ConntrackConfig,
}

/// `[sessions.conntrack]`: the Linux kernel's connection-tracking table over ctnetlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// `event_buffer_bytes` (default 64 MiB): the receive buffer of the event socket; a burst
    /// larger than it overruns, which costs a resynchronization.
    pub event_buffer_bytes: usize,
    /// `peer_entry_timeout_secs` (default 3600): the least timeout of the peer's entries in
    /// this node's kernel, re-armed while the peer holds them (they see no packets here).
    pub peer_entry_timeout_secs: u32,
    /// `owner_mark` (default `0xc0000000`): the two conntrack-mark bits that record in each
    /// kernel entry whose session it is (the lower: this node's, the higher: the peer's), so a
    /// restarted daemon keeps its own sessions; 0 turns the stamp off.
    pub owner_mark: u32,
    /// `zones` (default all): replicate only entries of these conntrack zones.
    pub zones: Vec<u16>,
    /// `protocols` (default all): replicate only these IP protocols.
    pub protocols: Vec<u8>,
    /// `include` (default everything): replicate only entries whose original source or
    /// destination is inside one of these networks.
    pub include: Vec<IpNet>,
    /// `exclude`: never replicate entries whose original source or destination is inside one
    /// of these networks (loopback and the failover link's own addresses always are).
    pub exclude: Vec<IpNet>,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        Self {
            event_buffer_bytes: 64 << 20,
            peer_entry_timeout_secs: 3600,
            owner_mark: 0xc000_0000,
            zones: Vec::new(),
            protocols: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

/// Which session table the daemon replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionBackend {
    /// A userspace table: for the demo, simulation and unprivileged use.
    Memory,
    /// The Linux kernel's connection-tracking table, over ctnetlink (needs CAP_NET_ADMIN).
    Conntrack,
}

impl SessionBackend {
    /// The name used in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Conntrack => "conntrack",
        }
    }
}

/// `[control]`: the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// `socket` (default `/run/failoverd/failoverd.sock`); a relative path is resolved against
    /// the file's directory.
    pub socket: PathBuf,
    /// `group` (default none): besides root and the daemon's own user, members of this group
    /// (a name or a number) may run the commands that change state (switchover, maintenance,
    /// sessions generate) and list the sessions; every local user may read the status.
    pub group: Option<String>,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `format` (default text).
    pub format: LogFormat,
    /// `level` (default "info"): a tracing `EnvFilter` directive such as `"warn,failoverd=debug"`.
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[takeover]`: who decides which node forwards, and so what moves the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TakeoverConfig {
    /// `mode` (default election).
    pub mode: TakeoverMode,
}

/// Who decides which node is active (`takeover.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeoverMode {
    /// The core decides over the failover link (priority, preempt, readiness); `[routing]`
    /// and `[hooks]` move the traffic.
    #[default]
    Election,
    /// failoverd's own VRRPv3 speaker decides: its group's master is active, and the
    /// virtual addresses move with it.
    Vrrp,
}

impl TakeoverMode {
    /// The name used in the file and in status output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Election => "election",
            Self::Vrrp => "vrrp",
        }
    }
}

impl fmt::Display for TakeoverMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[vrrp]` with its instances and trackers. All instances of a node form one group: they
/// move together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    /// `preempt_delay_ms` (default 0, 0..=3600000): once ready, wait this long before
    /// preempting a lower-priority master.
    pub preempt_delay: Duration,
    /// `announce_repeat` (default 3, 1..=100): gratuitous ARPs / unsolicited neighbour
    /// advertisements per address on becoming master.
    pub announce_repeat: u32,
    /// `announce_interval_ms` (default 100, 10..=10000): the time between those.
    pub announce_interval: Duration,
    /// `peer_check` (default true): adverts that the failoverd peer's state contradicts (it
    /// says over the failover link that it is not master) are ignored (docs/TAKEOVER.md,
    /// "Threats").
    pub peer_check: bool,
    /// `silent_intervals` (default 3, 0..=100; 0: never): after this many master-down
    /// intervals with no master heard on one instance while the group follows a master on
    /// another network, the failover link decides which node acts (docs/TAKEOVER.md).
    pub silent_intervals: u32,
    /// `[[vrrp.instance]]`: the virtual routers (at least one with `takeover.mode = "vrrp"`).
    pub instances: Vec<VrrpInstanceConfig>,
    /// `[[vrrp.track_interface]]`.
    pub track_interfaces: Vec<TrackInterface>,
    /// `[[vrrp.track_route]]`.
    pub track_routes: Vec<TrackRoute>,
    /// `[[vrrp.track_script]]`.
    pub track_scripts: Vec<TrackScript>,
}

impl Default for VrrpConfig {
    fn default() -> Self {
        Self {
            preempt_delay: Duration::ZERO,
            announce_repeat: 3,
            announce_interval: Duration::from_millis(100),
            peer_check: true,
            silent_intervals: 3,
            instances: Vec::new(),
            track_interfaces: Vec::new(),
            track_routes: Vec::new(),
            track_scripts: Vec::new(),
        }
    }
}

/// `[[vrrp.instance]]`: one VRRPv3 virtual router (RFC 5798).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstanceConfig {
    /// `name`: unique, 1..=15 characters `[A-Za-z0-9_-]`.
    pub name: String,
    /// `interface`: where advertisements go and the addresses are added.
    pub interface: String,
    /// `vrid` (1..=255): unique per interface and family.
    pub vrid: u8,
    /// `priority` (1..=254, default `node.priority`).
    pub priority: u8,
    /// `advert_interval_ms` (10..=40950, a multiple of 10; default `vrrp.advert_interval_ms`).
    pub advert_interval: Duration,
    /// `addresses`: 1..=255 virtual addresses with their prefix length, all of one family;
    /// for IPv6 the first is link-local (RFC 5798 5.2.9).
    pub addresses: Vec<IpNet>,
    /// `accept` (default true): the master answers for its virtual addresses.
    pub accept: bool,
    /// `preempt` (default `node.preempt`).
    pub preempt: bool,
    /// `unicast_peers` (default none: multicast): adverts go to these, of the instance's family.
    pub unicast_peers: Vec<IpAddr>,
    /// `source`: the adverts' source address, of the instance's family; `None`: the
    /// interface's first address of the family (IPv6: its link-local address).
    pub source: Option<IpAddr>,
    /// `vmac` (default false): a virtual MAC on a macvlan over the interface.
    pub vmac: bool,
}

impl VrrpInstanceConfig {
    /// Whether the instance is IPv6 (its addresses are all of one family, and there is at
    /// least one).
    pub fn is_ipv6(&self) -> bool {
        self.addresses
            .first()
            .is_some_and(|net| net.addr().is_ipv6())
    }
}

/// `[[vrrp.track_interface]]`: the group's priority falls by `weight` while the interface is
/// down; weight 0 means fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInterface {
    /// `name`: the interface.
    pub name: String,
    /// `weight` (0..=253, default 0: fault).
    pub weight: u8,
}

/// `[[vrrp.track_route]]`: a route to exactly this prefix must exist in the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRoute {
    /// `destination`: the prefix (no host bits set).
    pub destination: IpNet,
    /// `weight` (0..=253, default 0: fault).
    pub weight: u8,
}

/// `[[vrrp.track_script]]`: a command run periodically; its exit status is the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    /// `name`: unique, shown in status and logs.
    pub name: String,
    /// `command`: argv, run without a shell; never empty.
    pub command: Vec<String>,
    /// `interval_ms` (default 1000, 100..=3600000).
    pub interval: Duration,
    /// `timeout_ms` (default `interval_ms`, at most `interval_ms`): then the command is killed
    /// and counts as a failure.
    pub timeout: Duration,
    /// `fall` (default 2, 1..=100): failures in a row that mark it down.
    pub fall: u32,
    /// `rise` (default 2, 1..=100): successes in a row that mark it up.
    pub rise: u32,
    /// `weight` (0..=253, default 0: fault).
    pub weight: u8,
}

/// `[routing]`: FRR; the active node advertises the better OSPF cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// `vtysh` (default `["vtysh"]`): the argv prefix that reaches FRR; never empty.
    pub vtysh: Vec<String>,
    /// `ospf_interfaces`: `ip ospf cost` is set on these.
    pub ospf_interfaces: Vec<String>,
    /// `ospf6_interfaces`: `ipv6 ospf6 cost` is set on these. At least one of the two lists
    /// is not empty.
    pub ospf6_interfaces: Vec<String>,
    /// `active_cost` (default 10, 1..=65535).
    pub active_cost: u16,
    /// `standby_cost` (default 1000, 1..=65535): more than `active_cost`.
    pub standby_cost: u16,
    /// `timeout_ms` (default 5000, 100..=3600000): a vtysh call taking longer is killed.
    pub timeout: Duration,
}

/// `[hooks]`: commands run on role changes (argv, no shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    /// `on_active`: run on becoming active; never an empty list.
    pub on_active: Option<Vec<String>>,
    /// `on_standby`: run on becoming standby; never an empty list.
    pub on_standby: Option<Vec<String>>,
    /// `timeout_ms` (default 5000, 100..=3600000): then the command is killed.
    pub timeout: Duration,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            on_active: None,
            on_standby: None,
            timeout: Duration::from_millis(5000),
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {}: {}", .path.display(), io_reason(.error))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why; its reason is part of the message, so it is not reported as a `source`.
        error: io::Error,
    },
    /// The file is not valid TOML, or a key or value is wrong.
    #[error("{}:{line}:{column}: {}", .path.display(), Located::new(.key, .value, .problem))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The dotted key (`timers.hello_interval_ms`); `None` for TOML syntax errors.
        key: Option<String>,
        /// The offending value as written in the file (shortened); `None` when the key is
        /// missing or unknown.
        value: Option<String>,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// The part of [`ConfigError::Invalid`]'s message after the location.
struct Located<'a> {
    key: Option<&'a str>,
    value: Option<&'a str>,
    problem: &'a str,
}

impl<'a> Located<'a> {
    fn new(key: &'a Option<String>, value: &'a Option<String>, problem: &'a str) -> Self {
        Located {
            key: key.as_deref(),
            value: value.as_deref(),
            problem,
        }
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key, self.value) {
            (Some(key), Some(value)) => write!(f, "{key} = {value}: ")?,
            (Some(key), None) => write!(f, "{key}: ")?,
            (None, _) => {}
        }
        f.write_str(self.problem)
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Validates `text`, the contents of the file at `path`. The path names the file in
    /// errors, and relative paths in the file are resolved against its directory.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let source = Source { text, path };
        let raw: RawConfig = toml::from_str(text).map_err(|err| source.toml_error(&err))?;
        raw.validate(&source)
    }

    /// A commented example file with every key (and the defaults): a starting point that
    /// parses as it is, once the peer's fingerprint and addresses are filled in.
    pub fn example() -> &'static str {
        EXAMPLE
    }
}

const EXAMPLE: &str = r#"# failoverd configuration: /etc/failoverd/failoverd.toml
# Keys marked "required" have no default; every other line shows the default.

[node]
# Shown in status and logs. Required.
name = "fw-a"
# This node's key and certificate, made by `failoverctl keygen --out PATH`. Required.
# A relative path is relative to this file's directory.
key = "/etc/failoverd/node.pem"
# 1..=254: the higher is preferred as active.
priority = 100
# Take the active role back from a lower-priority peer once ready (sessions synchronized).
preempt = true

[pair]
# 1..=4294967295; both nodes must agree.
id = 1
# "symmetric" (active/standby) or "asymmetric" (both forward); both nodes must agree.
backup = "symmetric"

[link]
# The failover link (TLS over TCP). Required.
# This node's address on the failover link: connections are accepted only from the peer's
# address, and this node dials from this one. (A wildcard such as "0.0.0.0:7701" works only
# while the peer's dials leave from its link.peer address; a warning is logged.)
listen = "192.0.2.1:7701"
# The peer's failover-link address. Required.
peer = "192.0.2.2:7701"
# The peer's key fingerprint, printed by `failoverctl keygen` on the peer. Required.
# Only a peer with this key is accepted. (This all-zero value matches no key.) To rotate the
# peer's key without downtime, pin both: peer_key = ["sha256:<old>", "sha256:<new>"], restart
# the peer with its new key, then drop the old pin.
peer_key = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
# Delay before dialling again after a failure; it doubles up to the maximum.
reconnect_min_ms = 100
reconnect_max_ms = 2000
# A second path for the hellos (UDP, each signed with this node's key), over another network
# than the failover link, e.g. a traffic interface. Only with takeover.mode = "election": a cut
# failover link then does not make both nodes active while the peer is heard on this path
# (with VRRP the adverts on the traffic networks already decide). Both keys or neither.
#heartbeat_listen = "198.51.100.1:7702"
#heartbeat_peer = "198.51.100.2:7702"

[timers]
# How often hellos are sent; at least 10.
hello_interval_ms = 50
# The peer is dead after this long without a hello; at least twice the hello interval.
dead_interval_ms = 150
# Hold-down after start or after leaving synchronization; at least the hello interval.
silence_ms = 1000

[sessions]
# "memory" (a userspace table: the demo, trying it out) or "conntrack" (the kernel's table).
backend = "memory"
# Anti-entropy: how often each node sends a digest of its sessions for the peer to compare with
# its copies; drift no event reported is resynchronized. Each costs a dump on both nodes. 0: off.
digest_interval_ms = 60000
# The peer's batches held in memory (ahead of a gap, or waiting to be applied), at most, in MiB
# (8..=4096). An honest peer keeps at most 8 MiB unapplied; one sending past that gets its
# batches dropped (resent later) or its link reset, never more memory.
peer_buffer_mib = 32

# Used only with backend = "conntrack".
[sessions.conntrack]
# Receive buffer of the kernel event socket, in bytes (65536..=1073741824).
event_buffer_bytes = 67108864
# The least timeout of the peer's entries in this kernel, re-armed while the peer holds them
# (they see no packets here), corrected to the real timeout at takeover (60..=2592000).
peer_entry_timeout_secs = 3600
# Two conntrack-mark bits that record in each kernel entry whose session it is (the lower: this
# node's, the higher: the peer's), so that a restarted daemon keeps its own sessions. Keep them
# out of the marks the ruleset sets; 0 turns the stamp off.
owner_mark = 0xc0000000
# Replicate only these zones, protocols and networks; empty lists mean all.
zones = []
protocols = []
include = []
# Never replicated (loopback and the failover link's addresses always are), e.g. ["192.0.2.0/24"].
exclude = []

[control]
# The Unix socket failoverctl talks to (mode 0666: every local user may read status, peer,
# the session count and events; keep it in a directory that only root can write, never /tmp).
socket = "/run/failoverd/failoverd.sock"
# Besides root and the daemon's own user, members of this group may switch over, turn
# maintenance on or off, generate sessions and list them. Default: none.
#group = "failoverd"

[log]
# "text" or "json" (one object per line).
format = "text"
# A tracing filter directive, e.g. "info" or "warn,failoverd=debug".
level = "info"

[takeover]
# Who decides which node forwards (docs/TAKEOVER.md): "election" (the nodes agree over the
# failover link; [routing] and [hooks] move the traffic) or "vrrp" (failoverd's own VRRPv3
# speaker: its master is active and the virtual addresses move with it; needs a [[vrrp.instance]]).
mode = "election"

# VRRP, used with takeover.mode = "vrrp": defaults for every instance, and the announcements.
[vrrp]
# Advertisement interval (10..=40950, a multiple of 10: VRRPv3 counts centiseconds).
advert_interval_ms = 50
# Once this node is ready (it holds the peer's sessions), wait this long before preempting a
# lower-priority master (0..=3600000). A node with no master to preempt takes over at once.
preempt_delay_ms = 0
# Gratuitous ARPs / unsolicited neighbour advertisements per address on becoming master
# (1..=100), and the time between them (10..=10000).
announce_repeat = 3
announce_interval_ms = 100
# Ignore adverts that the failoverd peer contradicts: while it says over the failover link that
# it is not master, an advert claiming mastership is forged and neither takes this node's
# group down nor holds it back (a deviation from RFC 5798; see docs/TAKEOVER.md, "Threats").
# Turn off only if a third VRRP router shares the pair's virtual router ids.
peer_check = true
# After this many master-down intervals with no master heard on one instance while the group
# follows a master on another network (a dead switch behind a live port), the failover link
# decides which node acts: the one whose port still hears that network (0..=100; 0: never).
silent_intervals = 3

# The sections below are examples, not defaults: a line that starts with # and no space
# is a setting to uncomment. All instances of a node move together (one group).
#[[vrrp.instance]]
# Unique, 1..=15 characters: letters, digits, _ and -. Required.
#name = "lan"
# Where adverts go and the addresses are added. Required.
#interface = "lan"
# 1..=255, unique per interface and family. Required.
#vrid = 51
# 1..=254; default node.priority.
#priority = 200
# Default vrrp.advert_interval_ms.
#advert_interval_ms = 50
# 1..=255 addresses with prefix length, one family; IPv6: the first must be link-local
# (fe80::/10), e.g. ["fe80::1/64", "2001:db8:1::1/64"]. Required.
#addresses = ["10.0.1.1/24"]
# Accept mode: the master answers for its virtual addresses.
#accept = true
# Default node.preempt.
#preempt = true
# Non-empty: adverts go to these addresses (the instance's family) instead of multicast. IPv6
# peers may be global: adverts still leave from the link-local source, and a peer's adverts
# from a link-local address are taken as the peer's.
#unicast_peers = []
# The adverts' source; default: the interface's first address of the family. IPv6: link-local
# only (RFC 5798 5.1.2.1).
#source = "10.0.1.2"
# A virtual MAC on a macvlan "vrrp<vrid>" ("vrrp6-<vrid>" for IPv6) over the interface.
#vmac = false

# Tracking: while down, the group's priority falls by `weight` (0..=253); weight 0 means fault
# (never master; a master steps down).
#[[vrrp.track_interface]]
#name = "wan"
#weight = 0

# A route to exactly this prefix must exist in the main table.
#[[vrrp.track_route]]
#destination = "0.0.0.0/0"
#weight = 0

# A command (argv, no shell), up while it exits 0.
#[[vrrp.track_script]]
#name = "upstream"
#command = ["/usr/bin/ping", "-c1", "-W1", "10.0.2.100"]
# 100..=3600000.
#interval_ms = 1000
# Then the command is killed and counts as a failure; default and at most interval_ms.
#timeout_ms = 1000
# Failures in a row that mark it down, successes in a row that mark it up (1..=100).
#fall = 2
#rise = 2
#weight = 0

# FRR follows the role: the active node advertises the better OSPF cost. Absent: no routing.
#[routing]
# The argv prefix that reaches FRR, e.g. ["vtysh", "--vty_socket", "/run/frr/x"].
#vtysh = ["vtysh"]
# `ip ospf cost` is set on these, `ipv6 ospf6 cost` on those; at least one interface in all.
#ospf_interfaces = ["wan"]
#ospf6_interfaces = []
# 1..=65535; standby_cost must be more than active_cost.
#active_cost = 10
#standby_cost = 1000
# A vtysh call taking longer is killed (100..=3600000).
#timeout_ms = 5000

# Commands (argv, no shell) run on role changes, with FAILOVERD_ROLE, FAILOVERD_FROM,
# FAILOVERD_REASON and FAILOVERD_NODE in their environment; their output goes to the log.
[hooks]
#on_active = ["/etc/failoverd/active.sh"]
#on_standby = ["/etc/failoverd/standby.sh"]
# Then the command is killed, and that is logged (100..=3600000).
timeout_ms = 5000
"#;

// ---------------------------------------------------------------------------------------------
// The schema: raw structs as serde reads them, and the description of every key.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Option<Spanned<RawNode>>,
    #[serde(default)]
    pair: RawPair,
    link: Option<Spanned<RawLink>>,
    #[serde(default)]
    timers: RawTimers,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    takeover: RawTakeover,
    #[serde(default)]
    vrrp: RawVrrp,
    routing: Option<Spanned<RawRouting>>,
    #[serde(default)]
    hooks: RawHooks,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    preempt: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPair {
    id: Option<Spanned<i64>>,
    backup: Option<BackupType>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    listen: Option<Spanned<String>>,
    peer: Option<Spanned<String>>,
    peer_key: Option<Spanned<RawPins>>,
    reconnect_min_ms: Option<Spanned<i64>>,
    reconnect_max_ms: Option<Spanned<i64>>,
    heartbeat_listen: Option<Spanned<String>>,
    heartbeat_peer: Option<Spanned<String>>,
}

/// `link.peer_key`: one fingerprint, or a list (validated to one or two).
#[derive(Deserialize)]
#[serde(untagged, expecting = "a fingerprint string or a list of at most two")]
enum RawPins {
    One(String),
    List(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimers {
    hello_interval_ms: Option<Spanned<i64>>,
    dead_interval_ms: Option<Spanned<i64>>,
    silence_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    backend: Option<SessionBackend>,
    digest_interval_ms: Option<Spanned<i64>>,
    peer_buffer_mib: Option<Spanned<i64>>,
    conntrack: Option<RawConntrack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    event_buffer_bytes: Option<Spanned<i64>>,
    peer_entry_timeout_secs: Option<Spanned<i64>>,
    owner_mark: Option<Spanned<i64>>,
    zones: Option<Vec<Spanned<i64>>>,
    protocols: Option<Vec<Spanned<String>>>,
    include: Option<Vec<Spanned<String>>>,
    exclude: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<LogFormat>,
    level: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTakeover {
    mode: Option<Spanned<TakeoverMode>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVrrp {
    advert_interval_ms: Option<Spanned<i64>>,
    preempt_delay_ms: Option<Spanned<i64>>,
    announce_repeat: Option<Spanned<i64>>,
    announce_interval_ms: Option<Spanned<i64>>,
    peer_check: Option<bool>,
    silent_intervals: Option<Spanned<i64>>,
    #[serde(default)]
    instance: Vec<Spanned<RawInstance>>,
    #[serde(default)]
    track_interface: Vec<Spanned<RawTrackInterface>>,
    #[serde(default)]
    track_route: Vec<Spanned<RawTrackRoute>>,
    #[serde(default)]
    track_script: Vec<Spanned<RawTrackScript>>,
}

/// A list as written in the file: the whole list's span and each element's.
type RawList = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: Option<Spanned<String>>,
    interface: Option<Spanned<String>>,
    vrid: Option<Spanned<i64>>,
    priority: Option<Spanned<i64>>,
    advert_interval_ms: Option<Spanned<i64>>,
    addresses: Option<RawList>,
    accept: Option<bool>,
    preempt: Option<bool>,
    unicast_peers: Option<RawList>,
    source: Option<Spanned<String>>,
    vmac: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrackInterface {
    name: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrackRoute {
    destination: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrackScript {
    name: Option<Spanned<String>>,
    command: Option<RawList>,
    interval_ms: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    rise: Option<Spanned<i64>>,
    weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    vtysh: Option<RawList>,
    ospf_interfaces: Option<RawList>,
    ospf6_interfaces: Option<RawList>,
    active_cost: Option<Spanned<i64>>,
    standby_cost: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    on_active: Option<RawList>,
    on_standby: Option<RawList>,
    timeout_ms: Option<Spanned<i64>>,
}

/// What a VRRP advertisement interval accepts.
const ADVERT_INTERVAL: &str = "milliseconds, a multiple of 10 from 10 to 40950";
/// What a tracker's weight accepts.
const WEIGHT: &str = "an integer from 0 (fault: never master) to 253";
/// What an interface name accepts (Linux: IFNAMSIZ - 1 bytes, no '/', ':' or white space).
const INTERFACE: &str = "an interface name of 1 to 15 characters without /, : or spaces";
/// What a list of interfaces accepts.
const INTERFACES: &str = "a list of interface names, e.g. [\"wan\"]";

/// Every table and its keys, with what each key accepts: the text of "unknown key", "wrong
/// type" and "missing key" errors. A test checks that the example file has all of them.
const SCHEMA: &[(&str, &[(&str, &str)])] = &[
    (
        "node",
        &[
            ("name", "a name of 1 to 64 characters"),
            (
                "key",
                "the path of this node's key file (failoverctl keygen --out PATH)",
            ),
            ("priority", "an integer from 1 to 254"),
            ("preempt", "true or false"),
        ],
    ),
    (
        "pair",
        &[
            ("id", "an integer from 1 to 4294967295"),
            ("backup", "\"symmetric\" or \"asymmetric\""),
        ],
    ),
    (
        "link",
        &[
            (
                "listen",
                "this node's failover-link IP address and port, e.g. \"192.0.2.1:7701\" (a wildcard such as \"0.0.0.0:7701\" is accepted, with a warning)",
            ),
            (
                "peer",
                "the peer's IP address and port, e.g. \"192.0.2.2:7701\" or \"[2001:db8::2]:7701\"",
            ),
            (
                "peer_key",
                "\"sha256:\" and 64 hex digits, the fingerprint `failoverctl keygen` printed on the peer, or a list of two such (the old and the new key, while rotating the peer's key)",
            ),
            (
                "reconnect_min_ms",
                "milliseconds, an integer from 1 to 3600000",
            ),
            (
                "reconnect_max_ms",
                "milliseconds, an integer from 1 to 3600000",
            ),
            (
                "heartbeat_listen",
                "an IP address and UDP port to receive the peer's heartbeats on, e.g. \"198.51.100.1:7702\" (with heartbeat_peer; only with takeover.mode = \"election\")",
            ),
            (
                "heartbeat_peer",
                "the peer's heartbeat IP address and UDP port, on another network than link.peer, e.g. \"198.51.100.2:7702\" (with heartbeat_listen)",
            ),
        ],
    ),
    (
        "timers",
        &[
            (
                "hello_interval_ms",
                "milliseconds, an integer from 10 to 3600000",
            ),
            (
                "dead_interval_ms",
                "milliseconds, an integer from 20 to 3600000, at least twice hello_interval_ms",
            ),
            (
                "silence_ms",
                "milliseconds, an integer from 10 to 3600000, at least hello_interval_ms",
            ),
        ],
    ),
    (
        "sessions",
        &[
            ("backend", "\"memory\" or \"conntrack\""),
            (
                "digest_interval_ms",
                "milliseconds, 0 (off) or an integer from 1000 to 86400000",
            ),
            ("peer_buffer_mib", "MiB, an integer from 8 to 4096"),
        ],
    ),
    (
        "sessions.conntrack",
        &[
            (
                "event_buffer_bytes",
                "bytes, an integer from 65536 to 1073741824",
            ),
            (
                "peer_entry_timeout_secs",
                "seconds, an integer from 60 to 2592000",
            ),
            (
                "owner_mark",
                "a 32-bit mask with exactly two bits set, e.g. 0xc0000000, or 0 (off)",
            ),
            (
                "zones",
                "a list of conntrack zones, integers from 0 to 65535",
            ),
            (
                "protocols",
                "a list of IP protocols: names (tcp, udp, icmp, icmpv6, sctp, dccp, gre, udplite) or numbers from 0 to 255 as strings",
            ),
            (
                "include",
                "a list of networks, e.g. [\"10.0.0.0/8\", \"2001:db8::/32\"]",
            ),
            (
                "exclude",
                "a list of networks, e.g. [\"10.0.0.0/8\", \"2001:db8::/32\"]",
            ),
        ],
    ),
    (
        "control",
        &[
            ("socket", "the path of the control socket"),
            ("group", "a group name or number"),
        ],
    ),
    (
        "log",
        &[
            ("format", "\"text\" or \"json\""),
            (
                "level",
                "a tracing filter directive, e.g. \"info\" or \"warn,failoverd=debug\"",
            ),
        ],
    ),
    ("takeover", &[("mode", "\"election\" or \"vrrp\"")]),
    (
        "vrrp",
        &[
            ("advert_interval_ms", ADVERT_INTERVAL),
            (
                "preempt_delay_ms",
                "milliseconds, an integer from 0 to 3600000",
            ),
            ("announce_repeat", "an integer from 1 to 100"),
            (
                "announce_interval_ms",
                "milliseconds, an integer from 10 to 10000",
            ),
            ("peer_check", "true or false"),
            ("silent_intervals", "an integer from 0 to 100"),
        ],
    ),
    (
        "vrrp.instance",
        &[
            (
                "name",
                "a name of 1 to 15 characters: letters, digits, _ and -",
            ),
            ("interface", INTERFACE),
            ("vrid", "an integer from 1 to 255"),
            ("priority", "an integer from 1 to 254"),
            ("advert_interval_ms", ADVERT_INTERVAL),
            (
                "addresses",
                "a list of 1 to 255 addresses with prefix length, all IPv4 or all IPv6, e.g. [\"10.0.1.1/24\"] or [\"fe80::1/64\", \"2001:db8::1/64\"] (IPv6: the first link-local)",
            ),
            ("accept", "true or false"),
            ("preempt", "true or false"),
            (
                "unicast_peers",
                "a list of the peers' IP addresses, of the instance's family",
            ),
            (
                "source",
                "an IP address of this node, of the instance's family",
            ),
            ("vmac", "true or false"),
        ],
    ),
    (
        "vrrp.track_interface",
        &[("name", INTERFACE), ("weight", WEIGHT)],
    ),
    (
        "vrrp.track_route",
        &[
            (
                "destination",
                "a network, e.g. \"0.0.0.0/0\" or \"2001:db8::/32\"",
            ),
            ("weight", WEIGHT),
        ],
    ),
    (
        "vrrp.track_script",
        &[
            (
                "name",
                "a name of 1 to 64 characters: letters, digits, _, - and .",
            ),
            (
                "command",
                "a command and its arguments, run without a shell, e.g. [\"/usr/bin/ping\", \"-c1\", \"10.0.2.100\"]",
            ),
            (
                "interval_ms",
                "milliseconds, an integer from 100 to 3600000",
            ),
            (
                "timeout_ms",
                "milliseconds, an integer from 10 to 3600000, at most interval_ms",
            ),
            ("fall", "an integer from 1 to 100"),
            ("rise", "an integer from 1 to 100"),
            ("weight", WEIGHT),
        ],
    ),
    (
        "routing",
        &[
            (
                "vtysh",
                "the command and arguments that reach FRR's vtysh, e.g. [\"vtysh\"]",
            ),
            ("ospf_interfaces", INTERFACES),
            ("ospf6_interfaces", INTERFACES),
            ("active_cost", "an integer from 1 to 65535"),
            (
                "standby_cost",
                "an integer from 1 to 65535, more than active_cost",
            ),
            ("timeout_ms", "milliseconds, an integer from 100 to 3600000"),
        ],
    ),
    (
        "hooks",
        &[
            (
                "on_active",
                "a command and its arguments, run without a shell, e.g. [\"/etc/failoverd/active.sh\"]",
            ),
            (
                "on_standby",
                "a command and its arguments, run without a shell, e.g. [\"/etc/failoverd/standby.sh\"]",
            ),
            ("timeout_ms", "milliseconds, an integer from 100 to 3600000"),
        ],
    ),
];

/// The tables written as `[[name]]`: arrays of tables.
const ARRAY_TABLES: &[&str] = &[
    "vrrp.instance",
    "vrrp.track_interface",
    "vrrp.track_route",
    "vrrp.track_script",
];

/// How a table's header is written: `[name]`, or `[[name]]` for an array of tables.
fn header(table: &str) -> String {
    if ARRAY_TABLES.contains(&table) {
        format!("[[{table}]]")
    } else {
        format!("[{table}]")
    }
}

/// What `table.key` accepts.
fn expected(table: &str, key: &str) -> &'static str {
    SCHEMA
        .iter()
        .find(|(name, _)| *name == table)
        .and_then(|(_, keys)| keys.iter().find(|(name, _)| *name == key))
        .map_or_else(
            || {
                // A sub-table written with the wrong type (`vrrp.instance = 5`).
                let dotted = format!("{table}.{key}");
                if ARRAY_TABLES.contains(&dotted.as_str()) {
                    "an array of tables (sections written [[...]])"
                } else if SCHEMA.iter().any(|(name, _)| *name == dotted) {
                    "a table"
                } else {
                    "(not a known key)"
                }
            },
            |(_, what)| what,
        )
}

/// The keys a table accepts (the tables, for the top level), for "unknown key" errors.
fn allowed_keys(table: &str) -> String {
    if table.is_empty() {
        let tables: Vec<String> = SCHEMA.iter().map(|(name, _)| header(name)).collect();
        return format!("the file has the tables {}", tables.join(", "));
    }
    match SCHEMA.iter().find(|(name, _)| *name == table) {
        Some((_, keys)) => {
            let keys: Vec<&str> = keys.iter().map(|(name, _)| *name).collect();
            let prefix = format!("{table}.");
            let tables: Vec<String> = SCHEMA
                .iter()
                .filter(|(name, _)| name.strip_prefix(&prefix).is_some_and(|n| !n.contains('.')))
                .map(|(name, _)| header(name))
                .collect();
            let mut text = format!("{} has the keys {}", header(table), keys.join(", "));
            if !tables.is_empty() {
                text.push_str(&format!(" and the tables {}", tables.join(", ")));
            }
            text
        }
        None => format!("[{table}] is not a known table"),
    }
}

// ---------------------------------------------------------------------------------------------
// Error locations.

/// The text being parsed and its path: turns byte spans into located errors.
struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        let line = before.matches('\n').count() + 1;
        (line, before[line_start..].chars().count() + 1)
    }

    /// The value at `span` as written in the file, shortened to its first line and 40
    /// characters so an error stays one readable line.
    fn value_text(&self, span: &Range<usize>) -> String {
        let raw = self.text.get(span.clone()).unwrap_or("");
        let first_line = raw.lines().next().unwrap_or("");
        let mut short: String = first_line.chars().take(40).collect();
        if short.len() < raw.len() {
            short.push_str("...");
        }
        short
    }

    fn error(
        &self,
        span: &Range<usize>,
        key: Option<String>,
        value: Option<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_column(span.start);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            key,
            value,
            problem: problem.into(),
        }
    }

    /// An error about the value of `table.key` at `span`.
    fn bad_value(
        &self,
        table: &str,
        key: &str,
        span: &Range<usize>,
        problem: impl Into<String>,
    ) -> ConfigError {
        self.error(
            span,
            Some(format!("{table}.{key}")),
            Some(self.value_text(span)),
            problem,
        )
    }

    /// A required key that is absent; located at its table's header, or the top of the file
    /// when the whole table is missing.
    fn missing(&self, table: &str, key: &str, table_span: Option<&Range<usize>>) -> ConfigError {
        self.error(
            table_span.unwrap_or(&(0..0)),
            Some(format!("{table}.{key}")),
            None,
            format!("missing required key: {}", expected(table, key)),
        )
    }

    /// Turns a serde/TOML error into a located one. serde's message does not say which table
    /// the key is in, so the key is found by re-parsing the document with spans and looking
    /// for the key or value at the error's span.
    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let document = match toml::de::DeTable::parse(self.text) {
            Ok(document) => document,
            // Not TOML at all: the parser's own message is the best there is.
            Err(syntax) => {
                let span = syntax.span().unwrap_or(0..0);
                let mut problem = format!("invalid TOML: {}", syntax.message().trim_end());
                let at = self.value_text(&span);
                if !at.trim().is_empty() {
                    problem.push_str(&format!(" (at {at})"));
                }
                return self.error(&span, None, None, problem);
            }
        };
        let Some(found) = find_key(document.get_ref(), &span, &[]) else {
            return self.error(&span, None, None, err.message().trim_end());
        };
        let (table, key) = match found.path.split_last() {
            Some((key, table)) => (table.join("."), key.clone()),
            None => (String::new(), String::new()),
        };
        let dotted = found.path.join(".");
        if err.message().starts_with("unknown field") {
            let problem = if table.is_empty() {
                format!("unknown table; {}", allowed_keys(""))
            } else {
                format!("unknown key; {}", allowed_keys(&table))
            };
            return self.error(&found.key_span, Some(dotted), None, problem);
        }
        let what = if table.is_empty() {
            "a table".to_string()
        } else {
            expected(&table, &key).to_string()
        };
        let value = Some(self.value_text(&found.value_span));
        self.error(
            &found.value_span,
            Some(dotted),
            value,
            format!("must be {what}"),
        )
    }
}

/// A key found at an error's span.
struct FoundKey {
    path: Vec<String>,
    key_span: Range<usize>,
    value_span: Range<usize>,
}

/// The innermost key whose name or value is at `span`.
fn find_key(
    table: &toml::de::DeTable<'_>,
    span: &Range<usize>,
    prefix: &[String],
) -> Option<FoundKey> {
    for (key, value) in table {
        let mut path = prefix.to_vec();
        path.push(key.get_ref().to_string());
        let here = || FoundKey {
            path: path.clone(),
            key_span: key.span(),
            value_span: value.span(),
        };
        if key.span() == *span {
            return Some(here());
        }
        let value_span = value.span();
        let inside = value_span.start <= span.start && span.end <= value_span.end;
        // Tables written as `[header]` sections do not cover their keys' spans, so every
        // sub-table is searched, not only the ones whose span contains the error.
        if let toml::de::DeValue::Table(inner) = value.get_ref()
            && let Some(found) = find_key(inner, span, &path)
        {
            return Some(found);
        }
        // The same for each table of an array of tables (`[[vrrp.instance]]`); the key path
        // has no index, the line tells which one.
        if let toml::de::DeValue::Array(items) = value.get_ref() {
            for item in items.iter() {
                if let toml::de::DeValue::Table(inner) = item.get_ref()
                    && let Some(found) = find_key(inner, span, &path)
                {
                    return Some(found);
                }
            }
        }
        if inside {
            return Some(here());
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Validation: raw values to typed ones.

impl RawConfig {
    fn validate(self, source: &Source<'_>) -> Result<Config, ConfigError> {
        let base = source.path.parent().unwrap_or(Path::new(""));
        let node = self.node.as_ref().map(Spanned::span);
        let node = match self.node {
            Some(raw) => raw.into_inner().validate(source, base, node.as_ref())?,
            None => return Err(source.missing("node", "name", None)),
        };
        let pair = self.pair.validate(source)?;
        let (takeover, mode_span) = self.takeover.validate();
        let link = match self.link {
            Some(raw) => {
                let span = raw.span();
                raw.into_inner().validate(source, &span, takeover.mode)?
            }
            None => return Err(source.missing("link", "listen", None)),
        };
        let timers = self.timers.validate(source)?;
        let sessions = self.sessions.validate(source)?;
        let control = ControlConfig {
            socket: match self.control.socket {
                Some(socket) => base.join(non_empty_path(source, "control", "socket", &socket)?),
                None => PathBuf::from(DEFAULT_SOCKET),
            },
            group: match self.control.group {
                Some(group) if group.get_ref().is_empty() => {
                    return Err(source.bad_value(
                        "control",
                        "group",
                        &group.span(),
                        format!("must be {}, not empty", expected("control", "group")),
                    ));
                }
                group => group.map(Spanned::into_inner),
            },
        };
        let log = LogConfig {
            format: self.log.format.unwrap_or(LogFormat::Text),
            level: match self.log.level {
                Some(level) => {
                    check_filter(level.get_ref()).map_err(|problem| {
                        source.bad_value("log", "level", &level.span(), problem)
                    })?;
                    level.into_inner()
                }
                None => "info".to_string(),
            },
        };
        let vrrp = self
            .vrrp
            .validate(source, &node, takeover.mode, mode_span.as_ref())?;
        let routing = match self.routing {
            Some(raw) => {
                let span = raw.span();
                Some(raw.into_inner().validate(source, &span)?)
            }
            None => None,
        };
        let hooks = self.hooks.validate(source)?;
        Ok(Config {
            node,
            pair,
            link,
            timers,
            sessions,
            control,
            log,
            takeover,
            vrrp,
            routing,
            hooks,
        })
    }
}

impl RawSessions {
    fn validate(self, source: &Source<'_>) -> Result<SessionsConfig, ConfigError> {
        let backend = self.backend.unwrap_or(SessionBackend::Memory);
        // Read whatever the backend, so the example can show every key: a memory backend
        // ignores it.
        let conntrack = match self.conntrack {
            Some(raw) => raw.validate(source)?,
            None => ConntrackConfig::default(),
        };
        let digest = int(
            source,
            "sessions",
            "digest_interval_ms",
            self.digest_interval_ms.as_ref(),
            60_000,
            0,
            86_400_000,
        )?;
        if digest.value != 0 && digest.value < 1000 {
            return Err(source.bad_value(
                "sessions",
                "digest_interval_ms",
                &digest.span.unwrap_or(0..0),
                format!("must be {}", expected("sessions", "digest_interval_ms")),
            ));
        }
        let peer_buffer = int(
            source,
            "sessions",
            "peer_buffer_mib",
            self.peer_buffer_mib.as_ref(),
            32,
            8,
            4096,
        )?;
        Ok(SessionsConfig {
            backend,
            digest_interval: millis(digest.value),
            peer_buffer: (peer_buffer.value as usize) << 20,
            conntrack,
        })
    }
}

impl RawConntrack {
    fn validate(self, source: &Source<'_>) -> Result<ConntrackConfig, ConfigError> {
        const TABLE: &str = "sessions.conntrack";
        let defaults = ConntrackConfig::default();
        let buffer = int(
            source,
            TABLE,
            "event_buffer_bytes",
            self.event_buffer_bytes.as_ref(),
            defaults.event_buffer_bytes as i64,
            65_536,
            1 << 30,
        )?;
        let timeout = int(
            source,
            TABLE,
            "peer_entry_timeout_secs",
            self.peer_entry_timeout_secs.as_ref(),
            i64::from(defaults.peer_entry_timeout_secs),
            60,
            2_592_000,
        )?;
        let owner_mark = int(
            source,
            TABLE,
            "owner_mark",
            self.owner_mark.as_ref(),
            i64::from(defaults.owner_mark),
            0,
            i64::from(u32::MAX),
        )?;
        if ![0, 2].contains(&owner_mark.value.count_ones()) {
            return Err(source.bad_value(
                TABLE,
                "owner_mark",
                &owner_mark.span.unwrap_or(0..0),
                format!(
                    "has {} bits set; must be {}",
                    owner_mark.value.count_ones(),
                    expected(TABLE, "owner_mark")
                ),
            ));
        }
        let zones = self
            .zones
            .unwrap_or_default()
            .iter()
            .map(|zone| {
                u16::try_from(*zone.get_ref()).map_err(|_| {
                    source.bad_value(
                        TABLE,
                        "zones",
                        &zone.span(),
                        format!("must be {}", expected(TABLE, "zones")),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let protocols = self
            .protocols
            .unwrap_or_default()
            .iter()
            .map(|name| {
                protocol_number(name.get_ref()).ok_or_else(|| {
                    source.bad_value(
                        TABLE,
                        "protocols",
                        &name.span(),
                        format!("must be {}", expected(TABLE, "protocols")),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let networks = |key: &str, raw: Option<Vec<Spanned<String>>>| {
            raw.unwrap_or_default()
                .iter()
                .map(|net| {
                    net.get_ref().parse::<IpNet>().map_err(|_| {
                        source.bad_value(
                            TABLE,
                            key,
                            &net.span(),
                            format!(
                                "not a network (address/prefix length); must be {}",
                                expected(TABLE, key)
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(ConntrackConfig {
            // Invariant: `int` checked the ranges, which fit both types.
            event_buffer_bytes: buffer.value as usize,
            peer_entry_timeout_secs: timeout.value as u32,
            owner_mark: owner_mark.value as u32,
            zones,
            protocols,
            include: networks("include", self.include)?,
            exclude: networks("exclude", self.exclude)?,
        })
    }
}

/// An IP protocol by name or number (`"tcp"`, `"6"`).
fn protocol_number(text: &str) -> Option<u8> {
    let number = match text.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "dccp" => 33,
        "gre" => 47,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "udplite" => 136,
        other => return other.parse().ok(),
    };
    Some(number)
}

impl RawNode {
    fn validate(
        self,
        source: &Source<'_>,
        base: &Path,
        span: Option<&Range<usize>>,
    ) -> Result<NodeConfig, ConfigError> {
        let name = self
            .name
            .ok_or_else(|| source.missing("node", "name", span))?;
        let chars = name.get_ref().chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS || name.get_ref().chars().any(char::is_control) {
            return Err(source.bad_value(
                "node",
                "name",
                &name.span(),
                format!(
                    "must be {}, without control characters",
                    expected("node", "name")
                ),
            ));
        }
        let key = self
            .key
            .ok_or_else(|| source.missing("node", "key", span))?;
        let key = base.join(non_empty_path(source, "node", "key", &key)?);
        let priority = int(
            source,
            "node",
            "priority",
            self.priority.as_ref(),
            100,
            1,
            254,
        )?;
        Ok(NodeConfig {
            name: name.into_inner(),
            key,
            priority: priority.value as u8,
            preempt: self.preempt.unwrap_or(true),
        })
    }
}

impl RawPair {
    fn validate(self, source: &Source<'_>) -> Result<PairConfig, ConfigError> {
        let id = int(
            source,
            "pair",
            "id",
            self.id.as_ref(),
            1,
            1,
            u32::MAX.into(),
        )?;
        Ok(PairConfig {
            id: id.value as u32,
            backup: self.backup.unwrap_or(BackupType::Symmetric),
        })
    }
}

impl RawLink {
    fn validate(
        self,
        source: &Source<'_>,
        span: &Range<usize>,
        mode: TakeoverMode,
    ) -> Result<LinkConfig, ConfigError> {
        let listen = self
            .listen
            .ok_or_else(|| source.missing("link", "listen", Some(span)))?;
        let peer = self
            .peer
            .ok_or_else(|| source.missing("link", "peer", Some(span)))?;
        let peer_key = self
            .peer_key
            .ok_or_else(|| source.missing("link", "peer_key", Some(span)))?;
        let listen_addr = address(source, "listen", &listen)?;
        let peer_addr = address(source, "peer", &peer)?;
        if peer_addr.ip().is_unspecified() {
            return Err(source.bad_value(
                "link",
                "peer",
                &peer.span(),
                "must be the peer's own address, not the unspecified address",
            ));
        }
        if peer_addr == listen_addr {
            return Err(source.bad_value(
                "link",
                "peer",
                &peer.span(),
                "must differ from link.listen: it is the other node's address",
            ));
        }
        let bad_key = |problem: String| {
            source.bad_value(
                "link",
                "peer_key",
                &peer_key.span(),
                format!("{problem}; must be {}", expected("link", "peer_key")),
            )
        };
        let keys = match peer_key.get_ref() {
            RawPins::One(text) => vec![
                text.parse::<Fingerprint>()
                    .map_err(|err| bad_key(err.to_string()))?,
            ],
            RawPins::List(texts) => texts
                .iter()
                .map(|text| {
                    text.parse::<Fingerprint>()
                        .map_err(|err| bad_key(format!("{text:?}: {err}")))
                })
                .collect::<Result<_, _>>()?,
        };
        let key = Pins::new(&keys).map_err(|err| bad_key(err.to_string()))?;
        let min = int(
            source,
            "link",
            "reconnect_min_ms",
            self.reconnect_min_ms.as_ref(),
            100,
            1,
            MAX_MS,
        )?;
        let max = int(
            source,
            "link",
            "reconnect_max_ms",
            self.reconnect_max_ms.as_ref(),
            2000,
            1,
            MAX_MS,
        )?;
        if max.value < min.value {
            return Err(blame(&max, &min).relation_error(
                source,
                "link",
                format!(
                    "link.reconnect_max_ms ({}) must be at least link.reconnect_min_ms ({})",
                    max.value, min.value
                ),
            ));
        }
        let heartbeat = match (self.heartbeat_listen, self.heartbeat_peer) {
            (None, None) => None,
            (Some(_), None) => return Err(source.missing("link", "heartbeat_peer", Some(span))),
            (None, Some(_)) => {
                return Err(source.missing("link", "heartbeat_listen", Some(span)));
            }
            (Some(listen), Some(peer)) => {
                if mode != TakeoverMode::Election {
                    return Err(source.bad_value(
                        "link",
                        "heartbeat_listen",
                        &listen.span(),
                        format!(
                            "the heartbeat path is used only with takeover.mode = \"election\", and the mode is \"{}\": the VRRP adverts on the traffic networks already tell a live peer from a dead one; remove link.heartbeat_listen and link.heartbeat_peer",
                            mode.name()
                        ),
                    ));
                }
                let heartbeat_listen = address(source, "heartbeat_listen", &listen)?;
                let heartbeat_peer = address(source, "heartbeat_peer", &peer)?;
                let problem = if heartbeat_peer.ip().is_unspecified() {
                    Some("must be the peer's own address, not the unspecified address")
                } else if heartbeat_peer == heartbeat_listen {
                    Some("must differ from link.heartbeat_listen: it is the other node's address")
                } else if heartbeat_peer.ip() == peer_addr.ip() {
                    Some(
                        "must be another address of the peer than link.peer's: a heartbeat path over the failover link's own network is cut with it",
                    )
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(source.bad_value("link", "heartbeat_peer", &peer.span(), problem));
                }
                Some(HeartbeatPath {
                    listen: heartbeat_listen,
                    peer: heartbeat_peer,
                })
            }
        };
        Ok(LinkConfig {
            listen: listen_addr,
            peer: peer_addr,
            peer_key: key,
            reconnect_min: millis(min.value),
            reconnect_max: millis(max.value),
            heartbeat,
        })
    }
}

impl RawTimers {
    fn validate(self, source: &Source<'_>) -> Result<TimersConfig, ConfigError> {
        let hello = int(
            source,
            "timers",
            "hello_interval_ms",
            self.hello_interval_ms.as_ref(),
            50,
            MIN_HELLO_MS,
            MAX_MS,
        )?;
        let dead = int(
            source,
            "timers",
            "dead_interval_ms",
            self.dead_interval_ms.as_ref(),
            150,
            2 * MIN_HELLO_MS,
            MAX_MS,
        )?;
        let silence = int(
            source,
            "timers",
            "silence_ms",
            self.silence_ms.as_ref(),
            1000,
            MIN_HELLO_MS,
            MAX_MS,
        )?;
        // One missed hello must not declare the peer dead.
        if dead.value < 2 * hello.value {
            return Err(blame(&dead, &hello).relation_error(
                source,
                "timers",
                format!(
                    "timers.dead_interval_ms ({}) must be at least twice timers.hello_interval_ms ({})",
                    dead.value, hello.value
                ),
            ));
        }
        if silence.value < hello.value {
            return Err(blame(&silence, &hello).relation_error(
                source,
                "timers",
                format!(
                    "timers.silence_ms ({}) must be at least timers.hello_interval_ms ({})",
                    silence.value, hello.value
                ),
            ));
        }
        Ok(TimersConfig {
            hello_interval: millis(hello.value),
            dead_interval: millis(dead.value),
            silence: millis(silence.value),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Takeover: [takeover], [vrrp] and its arrays, [routing], [hooks].

/// The longest VRRP instance name: it names macvlans and log fields, so it follows the
/// interface-name limit.
const MAX_INSTANCE_CHARS: usize = 15;

/// The longest track script name.
const MAX_SCRIPT_CHARS: usize = 64;

/// The default VRRP advertisement interval, milliseconds.
const DEFAULT_ADVERT_MS: i64 = 50;

/// The line of a span, to point from one error at a related key elsewhere in the file.
fn line_of(source: &Source<'_>, span: &Range<usize>) -> usize {
    source.line_column(span.start).0
}

/// A required key of an element of an array of tables (or of a table), located at the
/// element's header when absent.
fn required<T>(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: Option<Spanned<T>>,
    table_span: &Range<usize>,
) -> Result<Spanned<T>, ConfigError> {
    raw.ok_or_else(|| source.missing(table, key, Some(table_span)))
}

/// A VRRP advertisement interval: VRRPv3 carries it in centiseconds in 12 bits.
fn advert_interval(
    source: &Source<'_>,
    table: &str,
    raw: Option<&Spanned<i64>>,
    default: i64,
) -> Result<i64, ConfigError> {
    let value = int(
        source,
        table,
        "advert_interval_ms",
        raw,
        default,
        10,
        40_950,
    )?;
    if value.value % 10 != 0 {
        return Err(source.bad_value(
            table,
            "advert_interval_ms",
            &value.span.unwrap_or(0..0),
            "must be a multiple of 10 (VRRPv3 counts centiseconds)",
        ));
    }
    Ok(value.value)
}

/// A tracker's weight (0..=253, default 0).
fn weight(source: &Source<'_>, table: &str, raw: Option<&Spanned<i64>>) -> Result<u8, ConfigError> {
    // Invariant: the range fits a u8.
    Ok(int(source, table, "weight", raw, 0, 0, 253)?.value as u8)
}

/// A name of `1..=max` characters from `[A-Za-z0-9_-]` (and `.` when `dot`).
fn simple_name(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &Spanned<String>,
    max: usize,
    dot: bool,
) -> Result<String, ConfigError> {
    let name = raw.get_ref();
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dot && c == '.');
    if name.is_empty() || name.chars().count() > max || !name.chars().all(allowed) {
        return Err(source.bad_value(
            table,
            key,
            &raw.span(),
            format!("must be {}", expected(table, key)),
        ));
    }
    Ok(name.clone())
}

/// A Linux interface name: what the kernel's `dev_valid_name` accepts.
fn interface_name(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &Spanned<String>,
) -> Result<String, ConfigError> {
    let name = raw.get_ref();
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if !valid {
        return Err(source.bad_value(table, key, &raw.span(), format!("must be {INTERFACE}")));
    }
    Ok(name.clone())
}

/// A list of interface names, without repeats.
fn interface_list(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: Option<&RawList>,
) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    for raw in raw.map_or(&[][..], |list| list.get_ref()) {
        let name = interface_name(source, table, key, raw)?;
        if names.contains(&name) {
            return Err(source.bad_value(table, key, &raw.span(), "is listed twice"));
        }
        names.push(name);
    }
    Ok(names)
}

/// A command line: argv, run without a shell.
fn argv(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &RawList,
) -> Result<Vec<String>, ConfigError> {
    let Some(program) = raw.get_ref().first() else {
        return Err(source.bad_value(
            table,
            key,
            &raw.span(),
            format!("must not be empty: must be {}", expected(table, key)),
        ));
    };
    if program.get_ref().is_empty() {
        return Err(source.bad_value(
            table,
            key,
            &program.span(),
            "the program (the first element) must not be empty",
        ));
    }
    if let Some(bad) = raw
        .get_ref()
        .iter()
        .find(|arg| arg.get_ref().contains('\0'))
    {
        return Err(source.bad_value(table, key, &bad.span(), "must not contain NUL characters"));
    }
    Ok(raw
        .get_ref()
        .iter()
        .map(|arg| arg.get_ref().clone())
        .collect())
}

/// An IP network (`"10.0.1.1/24"`).
fn ip_net(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &Spanned<String>,
) -> Result<IpNet, ConfigError> {
    raw.get_ref().parse::<IpNet>().map_err(|_| {
        source.bad_value(
            table,
            key,
            &raw.span(),
            format!(
                "not a network (address/prefix length); must be {}",
                expected(table, key)
            ),
        )
    })
}

/// "IPv4" or "IPv6", for messages.
fn family_name(ipv6: bool) -> &'static str {
    if ipv6 { "IPv6" } else { "IPv4" }
}

/// An address a VRRP peer or source can have: of the instance's family and unicast.
fn peer_address(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &Spanned<String>,
    ipv6: bool,
) -> Result<IpAddr, ConfigError> {
    let bad = |problem: String| source.bad_value(table, key, &raw.span(), problem);
    let addr: IpAddr = raw.get_ref().parse().map_err(|_| {
        bad(format!(
            "not an IP address (host names are not resolved); must be {}",
            expected(table, key)
        ))
    })?;
    if addr.is_ipv6() != ipv6 {
        return Err(bad(format!(
            "is {} but the instance's addresses are {}; must be {}",
            family_name(addr.is_ipv6()),
            family_name(ipv6),
            expected(table, key)
        )));
    }
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() || is_broadcast(addr) {
        return Err(bad("must be a unicast address".to_string()));
    }
    Ok(addr)
}

fn is_broadcast(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(v4) if v4.is_broadcast())
}

/// IPv6 link-local unicast, fe80::/10.
fn is_link_local_v6(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(v6) if v6.is_unicast_link_local())
}

/// What the cross-instance checks need to point at.
struct InstanceSpans {
    name: Range<usize>,
    vrid: Range<usize>,
    addresses: Vec<Range<usize>>,
}

/// The defaults an instance inherits.
struct InstanceDefaults {
    priority: u8,
    preempt: bool,
    advert_ms: i64,
}

impl RawTakeover {
    fn validate(self) -> (TakeoverConfig, Option<Range<usize>>) {
        match self.mode {
            Some(mode) => (
                TakeoverConfig {
                    mode: *mode.get_ref(),
                },
                Some(mode.span()),
            ),
            None => (TakeoverConfig::default(), None),
        }
    }
}

impl RawVrrp {
    fn validate(
        self,
        source: &Source<'_>,
        node: &NodeConfig,
        mode: TakeoverMode,
        mode_span: Option<&Range<usize>>,
    ) -> Result<VrrpConfig, ConfigError> {
        const TABLE: &str = "vrrp";
        let defaults = VrrpConfig::default();
        let advert_ms = advert_interval(
            source,
            TABLE,
            self.advert_interval_ms.as_ref(),
            DEFAULT_ADVERT_MS,
        )?;
        let delay = int(
            source,
            TABLE,
            "preempt_delay_ms",
            self.preempt_delay_ms.as_ref(),
            0,
            0,
            MAX_MS,
        )?;
        let repeat = int(
            source,
            TABLE,
            "announce_repeat",
            self.announce_repeat.as_ref(),
            i64::from(defaults.announce_repeat),
            1,
            100,
        )?;
        let announce = int(
            source,
            TABLE,
            "announce_interval_ms",
            self.announce_interval_ms.as_ref(),
            defaults.announce_interval.as_millis() as i64,
            10,
            10_000,
        )?;
        let silent = int(
            source,
            TABLE,
            "silent_intervals",
            self.silent_intervals.as_ref(),
            i64::from(defaults.silent_intervals),
            0,
            100,
        )?;
        match mode {
            TakeoverMode::Election => {
                let given = [
                    ("vrrp.instance", self.instance.first().map(Spanned::span)),
                    (
                        "vrrp.track_interface",
                        self.track_interface.first().map(Spanned::span),
                    ),
                    (
                        "vrrp.track_route",
                        self.track_route.first().map(Spanned::span),
                    ),
                    (
                        "vrrp.track_script",
                        self.track_script.first().map(Spanned::span),
                    ),
                ];
                if let Some((table, Some(span))) =
                    given.into_iter().find(|(_, span)| span.is_some())
                {
                    return Err(source.error(
                        &span,
                        Some(table.to_string()),
                        None,
                        format!(
                            "VRRP instances and trackers are used only with takeover.mode = \"vrrp\", and the mode is \"election\"{}; set takeover.mode = \"vrrp\" or remove the {} sections",
                            if mode_span.is_none() { " (the default)" } else { "" },
                            header(table),
                        ),
                    ));
                }
            }
            TakeoverMode::Vrrp if self.instance.is_empty() => {
                return Err(source.error(
                    mode_span.unwrap_or(&(0..0)),
                    Some("takeover.mode".to_string()),
                    Some("\"vrrp\"".to_string()),
                    "needs at least one [[vrrp.instance]]: the virtual router(s) whose mastership makes this node active",
                ));
            }
            TakeoverMode::Vrrp => {}
        }
        let inherited = InstanceDefaults {
            priority: node.priority,
            preempt: node.preempt,
            advert_ms,
        };
        let mut instances: Vec<VrrpInstanceConfig> = Vec::new();
        let mut spans: Vec<InstanceSpans> = Vec::new();
        for raw in self.instance {
            let span = raw.span();
            let (instance, here) = raw.into_inner().validate(source, &span, &inherited)?;
            check_instance_against_others(source, &instance, &here, &instances, &spans)?;
            instances.push(instance);
            spans.push(here);
        }
        let mut track_interfaces: Vec<TrackInterface> = Vec::new();
        for raw in self.track_interface {
            const TABLE: &str = "vrrp.track_interface";
            let span = raw.span();
            let raw = raw.into_inner();
            let name = required(source, TABLE, "name", raw.name, &span)?;
            let track = TrackInterface {
                name: interface_name(source, TABLE, "name", &name)?,
                weight: weight(source, TABLE, raw.weight.as_ref())?,
            };
            if let Some(other) = track_interfaces.iter().find(|t| t.name == track.name) {
                return Err(source.bad_value(
                    TABLE,
                    "name",
                    &name.span(),
                    format!(
                        "interface {} is already tracked; track each once",
                        other.name
                    ),
                ));
            }
            track_interfaces.push(track);
        }
        let mut track_routes: Vec<TrackRoute> = Vec::new();
        for raw in self.track_route {
            const TABLE: &str = "vrrp.track_route";
            let span = raw.span();
            let raw = raw.into_inner();
            let destination = required(source, TABLE, "destination", raw.destination, &span)?;
            let net = ip_net(source, TABLE, "destination", &destination)?;
            if net.trunc() != net {
                return Err(source.bad_value(
                    TABLE,
                    "destination",
                    &destination.span(),
                    format!(
                        "has host bits set; a route's destination is a prefix: did you mean \"{}\"?",
                        net.trunc()
                    ),
                ));
            }
            if track_routes.iter().any(|t| t.destination == net) {
                return Err(source.bad_value(
                    TABLE,
                    "destination",
                    &destination.span(),
                    "is already tracked; track each route once",
                ));
            }
            track_routes.push(TrackRoute {
                destination: net,
                weight: weight(source, TABLE, raw.weight.as_ref())?,
            });
        }
        let mut track_scripts: Vec<TrackScript> = Vec::new();
        for raw in self.track_script {
            let span = raw.span();
            let script = raw.into_inner().validate(source, &span, &track_scripts)?;
            track_scripts.push(script);
        }
        Ok(VrrpConfig {
            preempt_delay: millis(delay.value),
            // Invariant: `int` checked the ranges.
            announce_repeat: repeat.value as u32,
            announce_interval: millis(announce.value),
            peer_check: self.peer_check.unwrap_or(defaults.peer_check),
            // Invariant: `int` checked the range.
            silent_intervals: silent.value as u32,
            instances,
            track_interfaces,
            track_routes,
            track_scripts,
        })
    }
}

impl RawInstance {
    fn validate(
        self,
        source: &Source<'_>,
        span: &Range<usize>,
        inherited: &InstanceDefaults,
    ) -> Result<(VrrpInstanceConfig, InstanceSpans), ConfigError> {
        const TABLE: &str = "vrrp.instance";
        let name = required(source, TABLE, "name", self.name, span)?;
        let interface = required(source, TABLE, "interface", self.interface, span)?;
        let vrid = required(source, TABLE, "vrid", self.vrid, span)?;
        let addresses = required(source, TABLE, "addresses", self.addresses, span)?;
        let checked_name = simple_name(source, TABLE, "name", &name, MAX_INSTANCE_CHARS, false)?;
        let checked_interface = interface_name(source, TABLE, "interface", &interface)?;
        let checked_vrid = int(source, TABLE, "vrid", Some(&vrid), 0, 1, 255)?;
        let priority = int(
            source,
            TABLE,
            "priority",
            self.priority.as_ref(),
            i64::from(inherited.priority),
            1,
            254,
        )?;
        let advert_ms = advert_interval(
            source,
            TABLE,
            self.advert_interval_ms.as_ref(),
            inherited.advert_ms,
        )?;
        let count = addresses.get_ref().len();
        if count == 0 || count > 255 {
            return Err(source.bad_value(
                TABLE,
                "addresses",
                &addresses.span(),
                format!(
                    "has {count} addresses; must be {}",
                    expected(TABLE, "addresses")
                ),
            ));
        }
        let mut nets: Vec<IpNet> = Vec::with_capacity(count);
        for raw in addresses.get_ref() {
            let net = ip_net(source, TABLE, "addresses", raw)?;
            let addr = net.addr();
            let bad = |problem: String| source.bad_value(TABLE, "addresses", &raw.span(), problem);
            if addr.is_unspecified()
                || addr.is_multicast()
                || addr.is_loopback()
                || is_broadcast(addr)
            {
                return Err(bad("must be a unicast address".to_string()));
            }
            if let Some(first) = nets.first()
                && first.addr().is_ipv6() != addr.is_ipv6()
            {
                return Err(bad(format!(
                    "is {} but the instance's first address ({first}) is {}; an instance's addresses are all one family (use another instance for the other family)",
                    family_name(addr.is_ipv6()),
                    family_name(first.addr().is_ipv6()),
                )));
            }
            if nets.iter().any(|other| other.addr() == addr) {
                return Err(bad("is listed twice".to_string()));
            }
            if nets.is_empty() && addr.is_ipv6() && !is_link_local_v6(addr) {
                return Err(bad(
                    "the first address of an IPv6 instance must be link-local (fe80::/10, RFC 5798 5.2.9), e.g. \"fe80::1/64\"; the others may be global".to_string(),
                ));
            }
            nets.push(net);
        }
        let ipv6 = nets[0].addr().is_ipv6();
        let mut unicast_peers: Vec<IpAddr> = Vec::new();
        for raw in self.unicast_peers.as_ref().map_or(&[][..], |l| l.get_ref()) {
            let peer = peer_address(source, TABLE, "unicast_peers", raw, ipv6)?;
            if unicast_peers.contains(&peer) {
                return Err(source.bad_value(
                    TABLE,
                    "unicast_peers",
                    &raw.span(),
                    "is listed twice",
                ));
            }
            unicast_peers.push(peer);
        }
        let source_addr = match &self.source {
            Some(raw) => {
                let addr = peer_address(source, TABLE, "source", raw, ipv6)?;
                if ipv6 && !is_link_local_v6(addr) {
                    return Err(source.bad_value(
                        TABLE,
                        "source",
                        &raw.span(),
                        "an IPv6 advert's source must be the interface's link-local address (fe80::/10, RFC 5798 5.1.2.1): receivers drop any other; unicast_peers may still be global addresses",
                    ));
                }
                Some(addr)
            }
            None => None,
        };
        let spans = InstanceSpans {
            name: name.span(),
            vrid: vrid.span(),
            addresses: addresses.get_ref().iter().map(Spanned::span).collect(),
        };
        Ok((
            VrrpInstanceConfig {
                name: checked_name,
                interface: checked_interface,
                // Invariant: `int` checked the ranges.
                vrid: checked_vrid.value as u8,
                priority: priority.value as u8,
                advert_interval: millis(advert_ms),
                addresses: nets,
                accept: self.accept.unwrap_or(true),
                preempt: self.preempt.unwrap_or(inherited.preempt),
                unicast_peers,
                source: source_addr,
                vmac: self.vmac.unwrap_or(false),
            },
            spans,
        ))
    }
}

/// Names, (interface, vrid, family) and addresses are unique across instances.
fn check_instance_against_others(
    source: &Source<'_>,
    instance: &VrrpInstanceConfig,
    here: &InstanceSpans,
    others: &[VrrpInstanceConfig],
    spans: &[InstanceSpans],
) -> Result<(), ConfigError> {
    const TABLE: &str = "vrrp.instance";
    for (other, there) in others.iter().zip(spans) {
        if other.name == instance.name {
            return Err(source.bad_value(
                TABLE,
                "name",
                &here.name,
                format!(
                    "the instance on line {} has this name too; names must be unique",
                    line_of(source, &there.name)
                ),
            ));
        }
        if other.interface == instance.interface
            && other.vrid == instance.vrid
            && other.is_ipv6() == instance.is_ipv6()
        {
            return Err(source.bad_value(
                TABLE,
                "vrid",
                &here.vrid,
                format!(
                    "instance \"{}\" (line {}) has this vrid on interface {} for {} too; (interface, vrid, family) must be unique",
                    other.name,
                    line_of(source, &there.vrid),
                    other.interface,
                    family_name(other.is_ipv6()),
                ),
            ));
        }
        for (net, span) in instance.addresses.iter().zip(&here.addresses) {
            // A link-local address is one per link: the same one on two interfaces is two.
            let link_local = is_link_local_v6(net.addr());
            let same_scope = !link_local || other.interface == instance.interface;
            if same_scope && other.addresses.iter().any(|o| o.addr() == net.addr()) {
                return Err(source.bad_value(
                    TABLE,
                    "addresses",
                    span,
                    format!(
                        "{} is an address of instance \"{}\" too; a virtual address belongs to one instance",
                        net.addr(),
                        other.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl RawTrackScript {
    fn validate(
        self,
        source: &Source<'_>,
        span: &Range<usize>,
        others: &[TrackScript],
    ) -> Result<TrackScript, ConfigError> {
        const TABLE: &str = "vrrp.track_script";
        let name = required(source, TABLE, "name", self.name, span)?;
        let checked_name = simple_name(source, TABLE, "name", &name, MAX_SCRIPT_CHARS, true)?;
        if others.iter().any(|other| other.name == checked_name) {
            return Err(source.bad_value(
                TABLE,
                "name",
                &name.span(),
                "another track script has this name; names must be unique",
            ));
        }
        let command = required(source, TABLE, "command", self.command, span)?;
        let command = argv(source, TABLE, "command", &command)?;
        let interval = int(
            source,
            TABLE,
            "interval_ms",
            self.interval_ms.as_ref(),
            1000,
            100,
            MAX_MS,
        )?;
        let timeout = int(
            source,
            TABLE,
            "timeout_ms",
            self.timeout_ms.as_ref(),
            interval.value,
            10,
            MAX_MS,
        )?;
        if timeout.value > interval.value {
            return Err(blame(&timeout, &interval).relation_error(
                source,
                TABLE,
                format!(
                    "{TABLE}.timeout_ms ({}) must be at most {TABLE}.interval_ms ({}): one run at a time",
                    timeout.value, interval.value
                ),
            ));
        }
        let fall = int(source, TABLE, "fall", self.fall.as_ref(), 2, 1, 100)?;
        let rise = int(source, TABLE, "rise", self.rise.as_ref(), 2, 1, 100)?;
        Ok(TrackScript {
            name: checked_name,
            command,
            interval: millis(interval.value),
            timeout: millis(timeout.value),
            // Invariant: `int` checked the ranges.
            fall: fall.value as u32,
            rise: rise.value as u32,
            weight: weight(source, TABLE, self.weight.as_ref())?,
        })
    }
}

impl RawRouting {
    fn validate(
        self,
        source: &Source<'_>,
        span: &Range<usize>,
    ) -> Result<RoutingConfig, ConfigError> {
        const TABLE: &str = "routing";
        let vtysh = match &self.vtysh {
            Some(raw) => argv(source, TABLE, "vtysh", raw)?,
            None => vec!["vtysh".to_string()],
        };
        let ospf = interface_list(
            source,
            TABLE,
            "ospf_interfaces",
            self.ospf_interfaces.as_ref(),
        )?;
        let ospf6 = interface_list(
            source,
            TABLE,
            "ospf6_interfaces",
            self.ospf6_interfaces.as_ref(),
        )?;
        if ospf.is_empty() && ospf6.is_empty() {
            let problem = "[routing] needs at least one interface in routing.ospf_interfaces or routing.ospf6_interfaces: where the OSPF cost follows the role";
            // At an empty list if the file has one, else at the table's header.
            let written = [
                ("ospf_interfaces", self.ospf_interfaces.as_ref()),
                ("ospf6_interfaces", self.ospf6_interfaces.as_ref()),
            ];
            return Err(
                match written
                    .iter()
                    .find_map(|(key, list)| Some((*key, (*list)?)))
                {
                    Some((key, list)) => source.bad_value(TABLE, key, &list.span(), problem),
                    None => source.error(
                        span,
                        Some("routing.ospf_interfaces".to_string()),
                        None,
                        problem,
                    ),
                },
            );
        }
        let active = int(
            source,
            TABLE,
            "active_cost",
            self.active_cost.as_ref(),
            10,
            1,
            65_535,
        )?;
        let standby = int(
            source,
            TABLE,
            "standby_cost",
            self.standby_cost.as_ref(),
            1000,
            1,
            65_535,
        )?;
        if standby.value <= active.value {
            return Err(blame(&standby, &active).relation_error(
                source,
                TABLE,
                format!(
                    "routing.standby_cost ({}) must be more than routing.active_cost ({}): the active node advertises the better (lower) cost",
                    standby.value, active.value
                ),
            ));
        }
        let timeout = int(
            source,
            TABLE,
            "timeout_ms",
            self.timeout_ms.as_ref(),
            5000,
            100,
            MAX_MS,
        )?;
        Ok(RoutingConfig {
            vtysh,
            ospf_interfaces: ospf,
            ospf6_interfaces: ospf6,
            // Invariant: `int` checked the ranges.
            active_cost: active.value as u16,
            standby_cost: standby.value as u16,
            timeout: millis(timeout.value),
        })
    }
}

impl RawHooks {
    fn validate(self, source: &Source<'_>) -> Result<HooksConfig, ConfigError> {
        const TABLE: &str = "hooks";
        let command = |key: &str, raw: Option<&RawList>| {
            raw.map(|raw| argv(source, TABLE, key, raw)).transpose()
        };
        let timeout = int(
            source,
            TABLE,
            "timeout_ms",
            self.timeout_ms.as_ref(),
            5000,
            100,
            MAX_MS,
        )?;
        Ok(HooksConfig {
            on_active: command("on_active", self.on_active.as_ref())?,
            on_standby: command("on_standby", self.on_standby.as_ref())?,
            timeout: millis(timeout.value),
        })
    }
}

/// An integer after its range check, with where it came from (`None`: the default).
struct Int {
    value: i64,
    span: Option<Range<usize>>,
    key: &'static str,
}

impl Int {
    /// An error about a relation between two keys, located at this one.
    fn relation_error(&self, source: &Source<'_>, table: &str, problem: String) -> ConfigError {
        match &self.span {
            Some(span) => source.bad_value(table, self.key, span, problem),
            // Both keys hold their defaults: cannot happen, the defaults are consistent.
            None => source.error(
                &(0..0),
                Some(format!("{table}.{}", self.key)),
                None,
                problem,
            ),
        }
    }
}

/// Which of two related keys to blame: the first one if the file sets it, otherwise the
/// second (the first then holds its default, so the second is what the operator changed).
fn blame<'a>(first: &'a Int, second: &'a Int) -> &'a Int {
    if first.span.is_none() && second.span.is_some() {
        second
    } else {
        first
    }
}

/// Reads an optional integer key with its default and inclusive range.
fn int(
    source: &Source<'_>,
    table: &str,
    key: &'static str,
    raw: Option<&Spanned<i64>>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<Int, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Int {
            value: default,
            span: None,
            key,
        });
    };
    let value = *raw.get_ref();
    let problem = if value < min {
        format!("must be at least {min}")
    } else if value > max {
        format!("must be at most {max}")
    } else {
        return Ok(Int {
            value,
            span: Some(raw.span()),
            key,
        });
    };
    Err(source.bad_value(table, key, &raw.span(), problem))
}

fn millis(value: i64) -> Duration {
    // Invariant: `int` checked that the value is positive.
    Duration::from_millis(value.unsigned_abs())
}

fn address(
    source: &Source<'_>,
    key: &str,
    raw: &Spanned<String>,
) -> Result<SocketAddr, ConfigError> {
    let bad = |problem: &str| {
        source.bad_value(
            "link",
            key,
            &raw.span(),
            format!("{problem}; must be {}", expected("link", key)),
        )
    };
    let addr: SocketAddr = raw
        .get_ref()
        .parse()
        .map_err(|_| bad("not an IP address and port (host names are not resolved)"))?;
    if addr.port() == 0 {
        return Err(bad("port 0 cannot be dialled"));
    }
    Ok(addr)
}

fn non_empty_path(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &Spanned<String>,
) -> Result<PathBuf, ConfigError> {
    if raw.get_ref().is_empty() {
        return Err(source.bad_value(
            table,
            key,
            &raw.span(),
            format!("must be {}, not empty", expected(table, key)),
        ));
    }
    Ok(PathBuf::from(raw.get_ref()))
}

/// Checks the parts of a tracing `EnvFilter` directive that can be checked without tracing:
/// the level after `=` (or a bare level). A bare word that is not a level is a target name,
/// which `EnvFilter` accepts, so it is accepted here too; span filters (`[...]`) are left to
/// the daemon.
fn check_filter(text: &str) -> Result<(), String> {
    const LEVELS: &str = "trace, debug, info, warn, error or off";
    let is_level = |word: &str| {
        ["trace", "debug", "info", "warn", "error", "off"]
            .iter()
            .any(|level| word.eq_ignore_ascii_case(level))
    };
    if text.trim().is_empty() {
        return Err(format!("must be {}", expected("log", "level")));
    }
    for directive in text.split(',').map(str::trim) {
        if directive.is_empty() || directive.contains(char::is_whitespace) {
            return Err(format!(
                "{directive:?} is not a directive; must be {}",
                expected("log", "level")
            ));
        }
        if directive.contains('[') {
            continue;
        }
        if let Some((_, level)) = directive.rsplit_once('=')
            && !is_level(level)
        {
            return Err(format!("{level:?} is not a level; levels are {LEVELS}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn the_example_has_every_key() {
        // Tables and keys without a default are there as settings to uncomment (`#key = `).
        let example = Config::example();
        for (table, keys) in SCHEMA {
            let header = header(table);
            assert!(
                example.contains(&format!("\n{header}\n"))
                    || example.contains(&format!("\n#{header}\n")),
                "{header}"
            );
            for (key, _) in *keys {
                assert!(
                    example.contains(&format!("\n{key} = "))
                        || example.contains(&format!("\n#{key} = ")),
                    "{table}.{key} missing from the example"
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
        assert_eq!(config.takeover.mode, TakeoverMode::Vrrp);
        assert_eq!(
            config.vrrp.instances,
            [VrrpInstanceConfig {
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
            Some(RoutingConfig {
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
    }

    #[test]
    fn defaults_and_typed_values() {
        let config = parse(&minimal()).unwrap();
        assert_eq!(
            config,
            Config {
                node: NodeConfig {
                    name: "fw-a".into(),
                    // Relative to the file's directory.
                    key: PathBuf::from("/etc/failoverd/node.pem"),
                    priority: 100,
                    preempt: true,
                },
                pair: PairConfig {
                    id: 1,
                    backup: BackupType::Symmetric
                },
                link: LinkConfig {
                    listen: "0.0.0.0:7701".parse().unwrap(),
                    peer: "192.0.2.2:7701".parse().unwrap(),
                    peer_key: Pins::one(KEY.parse().unwrap()),
                    reconnect_min: Duration::from_millis(100),
                    reconnect_max: Duration::from_millis(2000),
                    heartbeat: None,
                },
                timers: TimersConfig {
                    hello_interval: Duration::from_millis(50),
                    dead_interval: Duration::from_millis(150),
                    silence: Duration::from_millis(1000),
                },
                sessions: SessionsConfig {
                    backend: SessionBackend::Memory,
                    digest_interval: Duration::from_secs(60),
                    peer_buffer: 32 << 20,
                    conntrack: ConntrackConfig::default(),
                },
                control: ControlConfig {
                    socket: PathBuf::from(DEFAULT_SOCKET),
                    group: None,
                },
                log: LogConfig {
                    format: LogFormat::Text,
                    level: "info".into()
                },
                takeover: TakeoverConfig {
                    mode: TakeoverMode::Election
                },
                vrrp: VrrpConfig {
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
                hooks: HooksConfig {
                    on_active: None,
                    on_standby: None,
                    timeout: Duration::from_millis(5000),
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
        assert_eq!(config.pair.backup, BackupType::Asymmetric);
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
            format!(
                "{PATH}:10:10: pair.backup = \"both\": must be \"symmetric\" or \"asymmetric\""
            )
        );
        let text = minimal() + "[sessions]\nbackend = \"kernel\"\n";
        assert_eq!(
            error(&text),
            format!(
                "{PATH}:10:11: sessions.backend = \"kernel\": must be \"memory\" or \"conntrack\""
            )
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
        assert_eq!(config.sessions.backend, SessionBackend::Conntrack);
        assert_eq!(
            config.sessions.conntrack,
            ConntrackConfig {
                zones: vec![0, 7],
                protocols: vec![6, 17, 132],
                include: vec![
                    "10.0.0.0/8".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap()
                ],
                peer_entry_timeout_secs: 600,
                owner_mark: 0x300,
                ..ConntrackConfig::default()
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
        assert!(
            error(&text).contains("link.peer = \"0.0.0.0:7702\": must be the peer's own address")
        );
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
        let refused =
            |line: String| error(&minimal().replace(&format!("peer_key = \"{KEY}\""), &line));
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
            error(&text).contains(
                "control.socket = \"\": must be the path of the control socket, not empty"
            )
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

    // -----------------------------------------------------------------------------------------
    // Takeover: [takeover], [vrrp], [[vrrp.*]], [routing], [hooks].

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
        assert_eq!(config.takeover.mode, TakeoverMode::Vrrp);
        assert_eq!(config.takeover.mode.name(), "vrrp");
        let instance = |name: &str, interface: &str, vrid, addresses: &[&str]| VrrpInstanceConfig {
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
            VrrpConfig {
                preempt_delay: Duration::from_secs(2),
                announce_repeat: 5,
                announce_interval: Duration::from_millis(20),
                peer_check: false,
                silent_intervals: 5,
                instances: vec![
                    VrrpInstanceConfig {
                        unicast_peers: vec!["10.0.1.3".parse().unwrap()],
                        source: Some("10.0.1.2".parse().unwrap()),
                        ..instance("lan", "lan", 51, &["10.0.1.1/24", "10.0.1.254/24"])
                    },
                    VrrpInstanceConfig {
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
            Some(RoutingConfig {
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
            HooksConfig {
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
        assert_eq!(config.takeover.mode, TakeoverMode::Election);
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
            Some(HeartbeatPath {
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
        assert!(
            error(&both("198.51.100.1:7702")).contains("must differ from link.heartbeat_listen")
        );
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
            format!(
                "{PATH}:10:8: takeover.mode = \"keepalived\": must be \"election\" or \"vrrp\""
            )
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
        let named = |name: &str| {
            vrrp_file(&LAN.replace("\"lan\"\ninterface", &format!("{name}\ninterface")))
        };
        assert_eq!(
            error(&named("\"abcdefghijklmnop\"")),
            format!(
                "{PATH}:12:8: vrrp.instance.name = \"abcdefghijklmnop\": must be a name of 1 to 15 characters: letters, digits, _ and -"
            )
        );
        assert!(
            error(&named("\"la n\"")).contains("vrrp.instance.name = \"la n\": must be a name")
        );
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
            format!(
                "{PATH}:11:1: vrrp.instance.vrid: missing required key: an integer from 1 to 255"
            )
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
        let script =
            |extra: &str| lan_with(&format!("[[vrrp.track_script]]\nname = \"up\"\n{extra}"));
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
        assert!(
            error(&named("\"a b\"")).contains("vrrp.track_script.name = \"a b\": must be a name")
        );
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
            format!(
                "{PATH}:10:14: hooks.on_active = \"a\\u0000b\": must not contain NUL characters"
            )
        );
    }
}
