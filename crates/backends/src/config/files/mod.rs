//! The `files` configuration backend: files and directories mirrored whole from the source to
//! the standby (issue 13).
//!
//! A unit is an absolute path, a file or a directory, named in this node's [`FilesConfig`].
//! Its canonical form is an [`archive`] (version [`FORMAT_VERSION_TEXT`]): for a file one
//! entry, for a directory every entry sorted by path, each with its type, mode, owner, group
//! and (files) content. [`FilesBackend::reload`] runs a unit's reload command.
//!
//! # Applying: all or nothing
//!
//! Each unit `/d/u` has an aside, `/d/.u.failoverd-swap`, in its own directory (renames stay
//! on one filesystem, so they are atomic):
//!
//! 1. every unit given is staged in its aside (a leftover of a crash is removed first): a file
//!    written, owned, moded and `fsync`ed; a directory as a whole new tree, then one `syncfs`;
//! 2. each unit is swapped in, in the order given: `renameat2(RENAME_EXCHANGE)` with the old
//!    file or tree, a plain rename where the unit is absent, the unit renamed to its aside
//!    for a removal;
//! 3. each unit's directory is `fsync`ed;
//! 4. the asides, which now hold the old contents, are removed.
//!
//! A failure in step 1 removes what was staged; in steps 2 and 3 it swaps back, in reverse,
//! what was swapped. Either way the error is a [`ConfigError::Apply`] naming the unit, with
//! what was being done, the path and the OS's message. A crash leaves each unit whole (old or
//! new), but may leave a set of units half swapped: the next sync's comparison repairs it.
//!
//! # Safety on the standby
//!
//! - Only units this node's own configuration names are read or applied; the daemon's
//!   configuration file and key files ([`FilesConfig::protected`]) can be neither a unit nor
//!   inside one.
//! - Every path in an archive is relative and normalized (no `..`, no absolute path, no empty
//!   or `.` component): the parser refuses the rest. Staging creates entries only beneath a
//!   directory it just made, exclusively (`O_EXCL`) and with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)`, so no symlink is ever followed, whether in the old tree or planted
//!   meanwhile; the old tree is never written into, only swapped out and removed
//!   (`remove_dir_all`, which does not follow symlinks either).
//! - Symlinks, device files, fifos and sockets are never carried: reading a unit holding one
//!   fails naming it, and the archive has no way to describe one. A symlink in a unit on the
//!   standby is replaced with the rest of the old tree. A unit that is itself a symlink is
//!   refused when read; applying replaces the link, never its target.
//! - Reload commands come from this node's configuration only, never from the peer.
//! - The unit's own directories (e.g. `/etc` of `/etc/app`) are the administrator's: they are
//!   followed as configured.

mod apply;
pub mod archive;
mod config;
mod read;
mod reload;
mod sys;

use std::path::Path;

use failoverd_wire::UnitKind;

use super::{ConfigBackend, ConfigError};
use archive::ArchiveView;

pub use archive::FORMAT_VERSION_TEXT;
pub use config::{FilesConfig, FilesConfigError, FilesUnit};
pub use reload::{RELOAD_STDERR_KEPT, RELOAD_TIMEOUT};

/// The files backend of one node (Linux: it relies on `openat2` and `renameat2`).
#[derive(Debug, Clone)]
pub struct FilesBackend {
    config: FilesConfig,
}

impl FilesBackend {
    /// A backend serving `config`'s units, after checking it (see [`FilesConfigError`]).
    pub fn new(config: FilesConfig) -> Result<Self, FilesConfigError> {
        config::validate(&config)?;
        Ok(Self { config })
    }

    /// The units served.
    pub fn units(&self) -> &[FilesUnit] {
        &self.config.units
    }

    /// Runs `unit`'s reload command, if it has one (`Ok` if not). The daemon calls it after
    /// the units changed, files first, then nftables, then the reloads. A failure is a
    /// [`ConfigError::Tool`] naming the program, with the unit, the exit status and the end of
    /// its stderr ([`RELOAD_STDERR_KEPT`] bytes); a command still running after
    /// [`RELOAD_TIMEOUT`] is killed and reported.
    pub fn reload(&self, unit: &str) -> Result<(), ConfigError> {
        let Some(argv) = self.unit(unit)?.reload.as_ref() else {
            return Ok(());
        };
        reload::run(argv, RELOAD_TIMEOUT).map_err(|failure| ConfigError::Tool {
            tool: argv.first().cloned().unwrap_or_default(),
            message: format!("reloading {unit}: {failure}"),
        })
    }

    fn unit(&self, name: &str) -> Result<&FilesUnit, ConfigError> {
        self.config
            .units
            .iter()
            .find(|u| u.path.as_os_str() == name)
            .ok_or_else(|| ConfigError::Refused {
                unit: name.to_owned(),
                why: "not a files unit of this node's configuration".into(),
            })
    }
}

impl ConfigBackend for FilesBackend {
    fn kind(&self) -> UnitKind {
        UnitKind::Files
    }

    fn version(&mut self) -> Result<String, ConfigError> {
        Ok(FORMAT_VERSION_TEXT.to_owned())
    }

    fn read(&mut self, unit: &str) -> Result<Option<Vec<u8>>, ConfigError> {
        let path = &self.unit(unit)?.path;
        let archive = read::read_unit(path).map_err(|error| ConfigError::Read {
            unit: unit.to_owned(),
            message: error.to_string(),
        })?;
        Ok(archive.map(|a| a.emit()))
    }

    fn apply(&mut self, units: &[(String, Option<Vec<u8>>)]) -> Result<(), ConfigError> {
        let mut changes = Vec::with_capacity(units.len());
        for (i, (name, content)) in units.iter().enumerate() {
            let path: &Path = &self.unit(name)?.path;
            if units[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(ConfigError::Refused {
                    unit: name.clone(),
                    why: "given twice in one apply".into(),
                });
            }
            let content = match content {
                None => None,
                Some(bytes) => Some(checked(name, bytes)?),
            };
            changes.push(apply::Change { path, content });
        }
        apply::apply(&changes).map_err(|failure| ConfigError::Apply {
            unit: failure.unit.display().to_string(),
            message: failure.message,
        })
    }
}

/// `bytes` as an archive, refused (naming the entry) if they are not a valid one.
fn checked<'a>(unit: &str, bytes: &'a [u8]) -> Result<ArchiveView<'a>, ConfigError> {
    ArchiveView::new_checked(bytes).map_err(|error| ConfigError::Refused {
        unit: unit.to_owned(),
        why: format!("not a valid files archive: {error}"),
    })
}
