//! Which files and directories this node syncs, and the checks that keep the daemon's own
//! files out of them.

use std::path::{Component, Path, PathBuf};

use failoverd_wire::MAX_UNIT_NAME;

/// What the names of the asides (the new content staged beside a unit, then the old content
/// swapped out) end with: `.<unit's name>.failoverd-swap`, in the unit's directory.
pub(super) const ASIDE_SUFFIX: &str = ".failoverd-swap";

/// One file or directory synced as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesUnit {
    /// Absolute and normalized: the unit's name on both nodes. Whether it is a file or a
    /// directory is what the source holds.
    pub path: PathBuf,
    /// Run by [`FilesBackend::reload`](super::FilesBackend::reload) after the unit changed:
    /// the program, then its arguments (no shell). From this node's configuration only.
    pub reload: Option<Vec<String>>,
}

/// The files backend's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilesConfig {
    /// The units.
    pub units: Vec<FilesUnit>,
    /// Files no unit may be or contain: the daemon's configuration file and its key files.
    pub protected: Vec<PathBuf>,
}

/// Why a [`FilesConfig`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilesConfigError {
    /// A unit path that is not absolute.
    #[error("files unit {0}: not an absolute path")]
    Relative(PathBuf),
    /// A unit path with `.`, `..`, `//` or a trailing `/`: its name would not be the one path
    /// both nodes agree on.
    #[error("files unit {path}: not normalized ({why})")]
    NotNormalized {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// `/` itself.
    #[error("files unit /: the whole filesystem cannot be a unit")]
    Root,
    /// Not a valid unit name on the failover link (UTF-8, no control characters, at most
    /// [`MAX_UNIT_NAME`] bytes).
    #[error("files unit {path}: {why}")]
    Name {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// A name the backend uses for its asides.
    #[error("files unit {0}: names ending in {ASIDE_SUFFIX} are the backend's own")]
    Reserved(PathBuf),
    /// The unit is, or contains, a protected file.
    #[error("files unit {unit}: it is or contains {protected}, which is never synced")]
    Protected {
        /// The unit.
        unit: PathBuf,
        /// The protected file.
        protected: PathBuf,
    },
    /// A protected path that is not absolute.
    #[error("protected path {0}: not an absolute path")]
    ProtectedRelative(PathBuf),
    /// One unit inside another (or the same twice).
    #[error("files unit {inner}: inside files unit {outer}")]
    Nested {
        /// The enclosing unit.
        outer: PathBuf,
        /// The unit inside it.
        inner: PathBuf,
    },
    /// A reload with no program.
    #[error("files unit {0}: an empty reload command")]
    EmptyReload(PathBuf),
}

/// Checks `config` whole (see [`FilesConfigError`]).
pub(super) fn validate(config: &FilesConfig) -> Result<(), FilesConfigError> {
    let mut protected = Vec::new();
    for path in &config.protected {
        if !path.is_absolute() {
            return Err(FilesConfigError::ProtectedRelative(path.clone()));
        }
        protected.extend(spellings(path));
    }
    for unit in &config.units {
        check_path(&unit.path)?;
        if unit.reload.as_ref().is_some_and(Vec::is_empty) {
            return Err(FilesConfigError::EmptyReload(unit.path.clone()));
        }
        for (spelling, _) in spellings(&unit.path) {
            if let Some((_, p)) = protected.iter().find(|(p, _)| p.starts_with(&spelling)) {
                return Err(FilesConfigError::Protected {
                    unit: unit.path.clone(),
                    protected: p.clone(),
                });
            }
        }
    }
    for (i, outer) in config.units.iter().enumerate() {
        for (j, inner) in config.units.iter().enumerate() {
            if i != j && inner.path.starts_with(&outer.path) && (i < j || inner.path != outer.path)
            {
                return Err(FilesConfigError::Nested {
                    outer: outer.path.clone(),
                    inner: inner.path.clone(),
                });
            }
        }
    }
    Ok(())
}

fn check_path(path: &Path) -> Result<(), FilesConfigError> {
    let Some(text) = path.to_str() else {
        return Err(FilesConfigError::Name {
            path: path.into(),
            why: "not UTF-8",
        });
    };
    if text.len() > MAX_UNIT_NAME {
        return Err(FilesConfigError::Name {
            path: path.into(),
            why: "longer than a unit name may be (255 bytes)",
        });
    }
    if text.chars().any(char::is_control) {
        return Err(FilesConfigError::Name {
            path: path.into(),
            why: "a control character",
        });
    }
    if !text.starts_with('/') {
        return Err(FilesConfigError::Relative(path.into()));
    }
    if text == "/" {
        return Err(FilesConfigError::Root);
    }
    for component in text[1..].split('/') {
        let why = match component {
            "" => "an empty component: `//` or a trailing `/`",
            "." => "a `.` component",
            ".." => "a `..` component",
            _ => continue,
        };
        return Err(FilesConfigError::NotNormalized {
            path: path.into(),
            why,
        });
    }
    // The aside is `.<name><suffix>`, and a name has at most NAME_MAX (255) bytes.
    if text.rsplit('/').next().map_or(0, str::len) + 1 + ASIDE_SUFFIX.len() > 255 {
        return Err(FilesConfigError::Name {
            path: path.into(),
            why: "a file name too long for the aside the backend stages it in",
        });
    }
    if text.ends_with(ASIDE_SUFFIX) {
        return Err(FilesConfigError::Reserved(path.into()));
    }
    Ok(())
}

/// The ways `path` may be spelled, each paired with `path` as given: lexically cleaned, and
/// with its existing directories resolved (symlinks in them included), so that a unit reached
/// through a symlink cannot contain a protected file unnoticed.
fn spellings(path: &Path) -> Vec<(PathBuf, PathBuf)> {
    let lexical: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let mut out = vec![(lexical, path.to_path_buf())];
    if let Ok(resolved) = std::fs::canonicalize(path) {
        out.push((resolved, path.to_path_buf()));
    } else if let (Some(parent), Some(name)) = (path.parent(), path.file_name())
        && let Ok(parent) = std::fs::canonicalize(parent)
    {
        out.push((parent.join(name), path.to_path_buf()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(units: &[&str], protected: &[&str]) -> FilesConfig {
        FilesConfig {
            units: units
                .iter()
                .map(|p| FilesUnit {
                    path: p.into(),
                    reload: None,
                })
                .collect(),
            protected: protected.iter().map(PathBuf::from).collect(),
        }
    }

    #[test]
    fn paths_are_absolute_and_normalized() {
        let refused = |unit: &str| validate(&config(&[unit], &[])).unwrap_err();
        assert_eq!(
            refused("etc/app"),
            FilesConfigError::Relative("etc/app".into())
        );
        assert_eq!(refused("/"), FilesConfigError::Root);
        for unit in ["/etc/../app", "/etc/./app", "/etc//app", "/etc/app/", "/.."] {
            assert!(
                matches!(refused(unit), FilesConfigError::NotNormalized { .. }),
                "{unit}"
            );
        }
        assert!(matches!(
            refused("/etc/a\nb"),
            FilesConfigError::Name { .. }
        ));
        assert!(matches!(
            refused(&format!("/etc/{}", "a".repeat(240))),
            FilesConfigError::Name { .. }
        ));
        assert!(matches!(
            refused(&format!("/{}", "a".repeat(255))),
            FilesConfigError::Name { .. }
        ));
        assert_eq!(
            refused("/etc/.app.failoverd-swap"),
            FilesConfigError::Reserved("/etc/.app.failoverd-swap".into())
        );
        // Control: look-alikes are fine.
        let longest = format!("/etc/{}", "a".repeat(255 - 1 - ASIDE_SUFFIX.len()));
        validate(&config(
            &["/etc/..app", "/etc/app..", "/etc/a.b", &longest],
            &[],
        ))
        .unwrap();
    }

    #[test]
    fn protected_files_are_never_units_nor_inside_one() {
        let protected = [
            "/nonexistent-fo/etc/failoverd.toml",
            "/nonexistent-fo/keys/node.pem",
        ];
        for unit in [
            "/nonexistent-fo/etc/failoverd.toml",
            "/nonexistent-fo/etc",
            "/nonexistent-fo/keys",
            "/nonexistent-fo",
        ] {
            assert!(
                matches!(
                    validate(&config(&[unit], &protected)),
                    Err(FilesConfigError::Protected { .. })
                ),
                "{unit}"
            );
        }
        // Control: beside them, and a name that only shares a prefix.
        validate(&config(
            &[
                "/nonexistent-fo/etc/app.conf",
                "/nonexistent-fo/etc/failoverd.toml.d",
            ],
            &protected,
        ))
        .unwrap();
        assert_eq!(
            validate(&config(&[], &["node.pem"])),
            Err(FilesConfigError::ProtectedRelative("node.pem".into()))
        );
    }

    #[test]
    fn a_protected_file_reached_through_a_symlink_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let protected = real.join("node.pem");
        let through_link = dir.path().join("link");
        let unit = through_link.to_str().unwrap();
        assert!(matches!(
            validate(&config(&[unit], &[protected.to_str().unwrap()])),
            Err(FilesConfigError::Protected { .. })
        ));
        // Control: the same names without the link are unrelated.
        std::fs::remove_file(&through_link).unwrap();
        std::fs::create_dir(&through_link).unwrap();
        validate(&config(&[unit], &[protected.to_str().unwrap()])).unwrap();
    }

    #[test]
    fn units_do_not_nest() {
        assert_eq!(
            validate(&config(&["/etc/app", "/etc/app/conf.d"], &[])),
            Err(FilesConfigError::Nested {
                outer: "/etc/app".into(),
                inner: "/etc/app/conf.d".into()
            })
        );
        assert_eq!(
            validate(&config(&["/etc/app/conf.d", "/etc/app"], &[])),
            Err(FilesConfigError::Nested {
                outer: "/etc/app".into(),
                inner: "/etc/app/conf.d".into()
            })
        );
        assert!(matches!(
            validate(&config(&["/etc/app", "/etc/app"], &[])),
            Err(FilesConfigError::Nested { .. })
        ));
        // Control: siblings sharing a prefix.
        validate(&config(&["/etc/app", "/etc/app2", "/etc/ap"], &[])).unwrap();
        let mut empty_reload = config(&["/etc/app"], &[]);
        empty_reload.units[0].reload = Some(Vec::new());
        assert_eq!(
            validate(&empty_reload),
            Err(FilesConfigError::EmptyReload("/etc/app".into()))
        );
    }
}
