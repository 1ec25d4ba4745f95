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
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use failoverd_wire::Fingerprint;
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
    /// `peer_key`: the fingerprint the peer's key must have; nothing else is trusted.
    pub peer_key: Fingerprint,
    /// `reconnect_min_ms` (default 100): the first delay before dialling again.
    pub reconnect_min: Duration,
    /// `reconnect_max_ms` (default 2000): the delay doubles up to this.
    pub reconnect_max: Duration,
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
listen = "0.0.0.0:7701"
# The peer's failover-link address. Required.
peer = "192.0.2.2:7701"
# The peer's key fingerprint, printed by `failoverctl keygen` on the peer. Required.
# Only a peer with this key is accepted. (This all-zero value matches no key.)
peer_key = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
# Delay before dialling again after a failure; it doubles up to the maximum.
reconnect_min_ms = 100
reconnect_max_ms = 2000

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

# Used only with backend = "conntrack".
[sessions.conntrack]
# Receive buffer of the kernel event socket, in bytes (65536..=1073741824).
event_buffer_bytes = 67108864
# The least timeout of the peer's entries in this kernel, re-armed while the peer holds them
# (they see no packets here), corrected to the real timeout at takeover (60..=2592000).
peer_entry_timeout_secs = 3600
# Replicate only these zones, protocols and networks; empty lists mean all.
zones = []
protocols = []
include = []
# Never replicated (loopback and the failover link's addresses always are), e.g. ["192.0.2.0/24"].
exclude = []

[control]
# The Unix socket failoverctl talks to; mode 0660.
socket = "/run/failoverd/failoverd.sock"

[log]
# "text" or "json" (one object per line).
format = "text"
# A tracing filter directive, e.g. "info" or "warn,failoverd=debug".
level = "info"
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
    peer_key: Option<Spanned<String>>,
    reconnect_min_ms: Option<Spanned<i64>>,
    reconnect_max_ms: Option<Spanned<i64>>,
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
    conntrack: Option<RawConntrack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    event_buffer_bytes: Option<Spanned<i64>>,
    peer_entry_timeout_secs: Option<Spanned<i64>>,
    zones: Option<Vec<Spanned<i64>>>,
    protocols: Option<Vec<Spanned<String>>>,
    include: Option<Vec<Spanned<String>>>,
    exclude: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<LogFormat>,
    level: Option<Spanned<String>>,
}

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
                "an IP address and port to listen on, e.g. \"0.0.0.0:7701\" or \"[::]:7701\"",
            ),
            (
                "peer",
                "the peer's IP address and port, e.g. \"192.0.2.2:7701\" or \"[2001:db8::2]:7701\"",
            ),
            (
                "peer_key",
                "\"sha256:\" and 64 hex digits, the fingerprint `failoverctl keygen` printed on the peer",
            ),
            (
                "reconnect_min_ms",
                "milliseconds, an integer from 1 to 3600000",
            ),
            (
                "reconnect_max_ms",
                "milliseconds, an integer from 1 to 3600000",
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
    ("control", &[("socket", "the path of the control socket")]),
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
];

/// What `table.key` accepts.
fn expected(table: &str, key: &str) -> &'static str {
    SCHEMA
        .iter()
        .find(|(name, _)| *name == table)
        .and_then(|(_, keys)| keys.iter().find(|(name, _)| *name == key))
        .map_or("(not a known key)", |(_, what)| what)
}

/// The keys a table accepts (the tables, for the top level), for "unknown key" errors.
fn allowed_keys(table: &str) -> String {
    if table.is_empty() {
        let tables: Vec<String> = SCHEMA.iter().map(|(name, _)| format!("[{name}]")).collect();
        return format!("the file has the tables {}", tables.join(", "));
    }
    match SCHEMA.iter().find(|(name, _)| *name == table) {
        Some((_, keys)) => {
            let keys: Vec<&str> = keys.iter().map(|(name, _)| *name).collect();
            format!("[{table}] has the keys {}", keys.join(", "))
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
        let link = match self.link {
            Some(raw) => {
                let span = raw.span();
                raw.into_inner().validate(source, &span)?
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
        Ok(Config {
            node,
            pair,
            link,
            timers,
            sessions,
            control,
            log,
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
        Ok(SessionsConfig {
            backend,
            digest_interval: millis(digest.value),
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
    fn validate(self, source: &Source<'_>, span: &Range<usize>) -> Result<LinkConfig, ConfigError> {
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
        let key = peer_key.get_ref().parse::<Fingerprint>().map_err(|err| {
            source.bad_value(
                "link",
                "peer_key",
                &peer_key.span(),
                format!("{err}; must be {}", expected("link", "peer_key")),
            )
        })?;
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
        Ok(LinkConfig {
            listen: listen_addr,
            peer: peer_addr,
            peer_key: key,
            reconnect_min: millis(min.value),
            reconnect_max: millis(max.value),
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
    }

    #[test]
    fn the_example_has_every_key() {
        for (table, keys) in SCHEMA {
            assert!(
                Config::example().contains(&format!("[{table}]\n")),
                "[{table}]"
            );
            for (key, _) in *keys {
                assert!(
                    Config::example().contains(&format!("\n{key} = ")),
                    "{table}.{key} missing from the example"
                );
            }
        }
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
                    peer_key: KEY.parse().unwrap(),
                    reconnect_min: Duration::from_millis(100),
                    reconnect_max: Duration::from_millis(2000),
                },
                timers: TimersConfig {
                    hello_interval: Duration::from_millis(50),
                    dead_interval: Duration::from_millis(150),
                    silence: Duration::from_millis(1000),
                },
                sessions: SessionsConfig {
                    backend: SessionBackend::Memory,
                    digest_interval: Duration::from_secs(60),
                    conntrack: ConntrackConfig::default(),
                },
                control: ControlConfig {
                    socket: PathBuf::from(DEFAULT_SOCKET)
                },
                log: LogConfig {
                    format: LogFormat::Text,
                    level: "info".into()
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
        let text = minimal() + "[vrrp]\nid = 1\n";
        let message = error(&text);
        assert!(
            message.starts_with(&format!(
                "{PATH}:9:2: vrrp: unknown table; the file has the tables [node], [pair], [link]"
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
        let config = parse(
            &(conntrack
                + "zones = [0, 7]\nprotocols = [\"tcp\", \"UDP\", \"132\"]\ninclude = [\"10.0.0.0/8\", \"2001:db8::/32\"]\npeer_entry_timeout_secs = 600\n"),
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
                "{PATH}:8:12: link.peer_key = \"sha256:1234\": expected 64 hex digits after \"sha256:\", found 4 characters; must be \"sha256:\" and 64 hex digits, the fingerprint `failoverctl keygen` printed on the peer"
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
}
