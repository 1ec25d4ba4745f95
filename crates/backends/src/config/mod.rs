//! Configuration units: the [`ConfigBackend`] contract and the backends that read and apply
//! them for configuration sync (issue 13).
//!
//! The core's config-sync machine never calls a backend: it asks the daemon for read-backs and
//! applies, and the daemon runs them here, off the driver.

use failoverd_wire::UnitKind;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(target_os = "linux")]
pub mod files;
pub mod nftables;
#[cfg(target_os = "linux")]
pub use files::{FilesBackend, FilesConfig, FilesConfigError, FilesUnit};

/// Why a backend could not read or apply: the underlying program's or OS's message, kept whole
/// for the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The unit's name is not one this backend accepts (not configured, malformed, a path
    /// escaping its directory, a protected file).
    #[error("unit {unit}: {why}")]
    Refused {
        /// The unit.
        unit: String,
        /// Why.
        why: String,
    },
    /// Reading failed (`nft` failed, a file could not be read).
    #[error("reading {unit}: {message}")]
    Read {
        /// The unit.
        unit: String,
        /// The program's or OS's message.
        message: String,
    },
    /// Applying failed; nothing was changed.
    #[error("applying {unit}: {message}")]
    Apply {
        /// The unit that failed (the first, if the transaction names no one unit).
        unit: String,
        /// The program's or OS's message (e.g. `nft`'s error output).
        message: String,
    },
    /// A tool the backend runs is missing or failed to start.
    #[error("{tool}: {message}")]
    Tool {
        /// The program.
        tool: String,
        /// Why it could not run.
        message: String,
    },
}

/// A kind of configuration unit on this node: nftables tables, or files and directories.
///
/// # Canonical form
///
/// [`read`](Self::read) returns a unit's canonical form: the same bytes on every node that
/// holds the same configuration, whatever order or handles it was created with. The hash both
/// nodes compare is of these bytes, and the standby hashes its own read-back after applying,
/// never what it received.
///
/// # All or nothing
///
/// [`apply`](Self::apply) makes every unit given exactly its content (or absent), or changes
/// nothing and says why. Units not given are never touched.
pub trait ConfigBackend: Send {
    /// Which units this backend serves.
    fn kind(&self) -> UnitKind;

    /// What the canonical form depends on (e.g. `nftables v1.0.9`), compared with the peer's.
    fn version(&mut self) -> Result<String, ConfigError>;

    /// The unit's canonical form now; `None` if it does not exist.
    fn read(&mut self, unit: &str) -> Result<Option<Vec<u8>>, ConfigError>;

    /// Makes each unit exactly its content (`None`: absent) in one transaction.
    fn apply(&mut self, units: &[(String, Option<Vec<u8>>)]) -> Result<(), ConfigError>;
}
