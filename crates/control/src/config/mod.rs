//! The configuration file, `/etc/failoverd/failoverd.toml` by default.
//!
//! The key names, their defaults and their ranges are a documented contract, written once in
//! the key table (`config/table/`); the reference in `crates/control/README.md` and the
//! example file ([`Config::example`]) are generated from it.
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
//!
//! One module per group of sections holds its typed structs, its raw structs and its
//! validation: `node` (`[node]`, `[pair]`, `[timers]`), `link`, `sessions`, `local`
//! (`[control]`, `[log]`), `takeover` (`[takeover]`, `[vrrp]`), `vrrp` (its arrays of
//! tables), `routing` (`[routing]`, `[hooks]`), `config_sync` (`[config_sync]` and its
//! tables).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::io_reason;

mod config_sync;
#[cfg(test)]
mod docs;
mod example;
mod keys;
mod link;
mod local;
mod node;
mod routing;
mod sessions;
mod source;
mod table;
mod takeover;
#[cfg(test)]
mod tests;
mod values;
mod vrrp;

pub use crate::protocol::{BackendKind, BackupMode, ConfigSyncMode, TakeoverKind};
pub use config_sync::{
    ConfigSyncSection, FilesUnit, NftFamily, NftSet, NftTable, NftablesSync, SyncSource,
};
pub use link::{HeartbeatSection, LinkSection};
pub use local::{ControlSection, LogFormat, LogSection};
pub use node::{NodeSection, PairSection, TimersSection};
pub use routing::{HooksSection, RoutingSection};
pub use sessions::{ConntrackSection, SessionsSection};
pub use table::{DEFAULT_PATH, DEFAULT_SOCKET};
pub use takeover::{TakeoverSection, VrrpSection};
pub use vrrp::{TrackInterface, TrackRoute, TrackScript, VrrpInstanceSection};

use config_sync::{Protected, RawConfigSync};
use link::RawLink;
use local::{RawControl, RawLog};
use node::{RawNode, RawPair, RawTimers};
use routing::{RawHooks, RawRouting};
use sessions::RawSessions;
use source::Source;
use takeover::{RawTakeover, RawVrrp};

/// The validated configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[node]`: this node.
    pub node: NodeSection,
    /// `[pair]`: what both nodes must agree on.
    pub pair: PairSection,
    /// `[link]`: the failover link.
    pub link: LinkSection,
    /// `[timers]`: negotiation timers.
    pub timers: TimersSection,
    /// `[sessions]`: the session-table backend.
    pub sessions: SessionsSection,
    /// `[control]`: the control socket of `failoverctl`.
    pub control: ControlSection,
    /// `[log]`: logging.
    pub log: LogSection,
    /// `[takeover]`: who decides which node forwards.
    pub takeover: TakeoverSection,
    /// `[vrrp]`, `[[vrrp.instance]]` and `[[vrrp.track_*]]`: the VRRPv3 speaker (used with
    /// `takeover.mode = "vrrp"`; without it the lists are empty).
    pub vrrp: VrrpSection,
    /// `[routing]`: FRR follows the role by OSPF costs; `None` when the table is absent.
    pub routing: Option<RoutingSection>,
    /// `[hooks]`: commands run on role changes.
    pub hooks: HooksSection,
    /// `[config_sync]` and its tables: the nftables tables and files kept equal on both
    /// nodes.
    pub config_sync: ConfigSyncSection,
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
        static EXAMPLE: OnceLock<String> = OnceLock::new();
        EXAMPLE.get_or_init(example::render)
    }
}

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
    #[serde(default)]
    config_sync: RawConfigSync,
}

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
        let control = self.control.validate(source, base)?;
        let log = self.log.validate(source)?;
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
        let protected = Protected {
            config: source.path,
            key: &node.key,
        };
        let config_sync = self.config_sync.validate(source, &protected)?;
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
            config_sync,
        })
    }
}
