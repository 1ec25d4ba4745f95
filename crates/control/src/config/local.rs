//! `[control]` and `[log]`: this daemon's own control socket and logs.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::source::Source;
use super::table::expected;
use super::table::{control, log};
use super::values::non_empty_path;

/// `[control]`: the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSection {
    /// `socket`; a relative path is resolved against
    /// the file's directory.
    pub socket: PathBuf,
    /// `group` (none by default): besides root and the daemon's own user, members of this group
    /// (a name or a number) may run the commands that change state (switchover, maintenance,
    /// sessions generate) and list the sessions; every local user may read the status.
    pub group: Option<String>,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSection {
    /// `format`.
    pub format: LogFormat,
    /// `level`: a tracing `EnvFilter` directive such as `"warn,failoverd=debug"`.
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    socket: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    format: Option<LogFormat>,
    level: Option<Spanned<String>>,
}

impl RawControl {
    pub(super) fn validate(
        self,
        source: &Source<'_>,
        base: &Path,
    ) -> Result<ControlSection, ConfigError> {
        Ok(ControlSection {
            socket: match self.socket {
                Some(socket) => base.join(non_empty_path(source, "control", "socket", &socket)?),
                None => PathBuf::from(control::SOCKET.default_str()),
            },
            group: match self.group {
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
        })
    }
}

impl RawLog {
    pub(super) fn validate(self, source: &Source<'_>) -> Result<LogSection, ConfigError> {
        Ok(LogSection {
            format: self.format.unwrap_or_else(|| log::FORMAT.default_enum()),
            level: match self.level {
                Some(level) => {
                    check_filter(level.get_ref()).map_err(|problem| {
                        source.bad_value("log", "level", &level.span(), problem)
                    })?;
                    level.into_inner()
                }
                None => log::LEVEL.default_str().to_string(),
            },
        })
    }
}

/// Checks the parts of a tracing `EnvFilter` directive that can be checked without tracing:
/// the level after `=` (or a bare level). A bare word that is not a level is a target name,
/// which `EnvFilter` accepts, so it is accepted here too; span filters (`[...]`) are left to
/// the daemon.
pub(super) fn check_filter(text: &str) -> Result<(), String> {
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
