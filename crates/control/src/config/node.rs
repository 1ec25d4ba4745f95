//! `[node]`, `[pair]` and `[timers]`: this node, what both nodes agree on, and the negotiation
//! timers.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::source::Source;
use super::table::{node, pair, timers};
use super::values::{blame, int, millis, non_empty_path};
use crate::protocol::BackupMode;

/// `[node]`: this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSection {
    /// `name`: shown in status and logs.
    pub name: String,
    /// `key`: this node's key and certificate (a PEM file made by `failoverctl keygen`).
    /// A relative path in the file is resolved against the file's directory.
    pub key: PathBuf,
    /// `priority`: the higher is preferred as active.
    pub priority: u8,
    /// `preempt`: take the active role back from a lower-priority peer once ready.
    pub preempt: bool,
}

/// `[pair]`: settings both nodes must agree on, or negotiation fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSection {
    /// `id`: tells several pairs on one network apart.
    pub id: u32,
    /// `backup`.
    pub backup: BackupMode,
}

/// `[timers]`: negotiation timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimersSection {
    /// `hello_interval_ms`: how often hellos are sent.
    pub hello_interval: Duration,
    /// `dead_interval_ms` (at least twice the hello interval): the peer is declared dead after
    /// this long without a hello.
    pub dead_interval: Duration,
    /// `silence_ms` (at least the hello interval): the hold-down after start or after leaving
    /// Synchronization.
    pub silence: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    name: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    preempt: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPair {
    id: Option<Spanned<i64>>,
    backup: Option<BackupMode>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimers {
    hello_interval_ms: Option<Spanned<i64>>,
    dead_interval_ms: Option<Spanned<i64>>,
    silence_ms: Option<Spanned<i64>>,
}

impl RawNode {
    pub(super) fn validate(
        self,
        source: &Source<'_>,
        base: &Path,
        span: Option<&Range<usize>>,
    ) -> Result<NodeSection, ConfigError> {
        let name = self
            .name
            .ok_or_else(|| source.missing("node", "name", span))?;
        let chars = name.get_ref().chars().count();
        if chars == 0
            || chars > node::NAME.max_chars()
            || name.get_ref().chars().any(char::is_control)
        {
            return Err(source.bad_value(
                "node",
                "name",
                &name.span(),
                format!(
                    "must be {}, without control characters",
                    node::NAME.accepts.describe()
                ),
            ));
        }
        let key = self
            .key
            .ok_or_else(|| source.missing("node", "key", span))?;
        let key = base.join(non_empty_path(source, "node", "key", &key)?);
        let priority = int(source, &node::PRIORITY, self.priority.as_ref())?;
        Ok(NodeSection {
            name: name.into_inner(),
            key,
            // Invariant: `int` checked the range.
            priority: priority.value as u8,
            preempt: self.preempt.unwrap_or(node::PREEMPT.default_bool()),
        })
    }
}

impl RawPair {
    pub(super) fn validate(self, source: &Source<'_>) -> Result<PairSection, ConfigError> {
        let id = int(source, &pair::ID, self.id.as_ref())?;
        Ok(PairSection {
            // Invariant: `int` checked the range.
            id: id.value as u32,
            backup: self.backup.unwrap_or_else(|| pair::BACKUP.default_enum()),
        })
    }
}

impl RawTimers {
    pub(super) fn validate(self, source: &Source<'_>) -> Result<TimersSection, ConfigError> {
        let hello = int(
            source,
            &timers::HELLO_INTERVAL_MS,
            self.hello_interval_ms.as_ref(),
        )?;
        let dead = int(
            source,
            &timers::DEAD_INTERVAL_MS,
            self.dead_interval_ms.as_ref(),
        )?;
        let silence = int(source, &timers::SILENCE_MS, self.silence_ms.as_ref())?;
        // One missed hello must not declare the peer dead.
        if dead.value < 2 * hello.value {
            return Err(blame(&dead, &hello).relation_error(
                source,
                format!(
                    "timers.dead_interval_ms ({}) must be at least twice timers.hello_interval_ms ({})",
                    dead.value, hello.value
                ),
            ));
        }
        if silence.value < hello.value {
            return Err(blame(&silence, &hello).relation_error(
                source,
                format!(
                    "timers.silence_ms ({}) must be at least timers.hello_interval_ms ({})",
                    silence.value, hello.value
                ),
            ));
        }
        Ok(TimersSection {
            hello_interval: millis(hello.value),
            dead_interval: millis(dead.value),
            silence: millis(silence.value),
        })
    }
}
