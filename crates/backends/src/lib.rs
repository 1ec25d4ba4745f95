//! failoverd backends: the tables and devices the daemon drives on the core's behalf, each behind
//! a small trait so the core, the simulation and the daemon never depend on one implementation.
//!
//! # Sessions
//!
//! [`SessionBackend`] is the contract of a connection-tracking table: dump it, apply the peer's
//! ops, report local changes, sweep stale entries, adopt a dead peer's entries. Its doc comment is
//! the contract; `session::conformance` (behind the `conformance` feature) is the same contract
//! as tests that every backend runs.
//!
//! | backend | table | status |
//! |---|---|---|
//! | [`MemoryBackend`] | a userspace hash map (demo, simulation, unprivileged use) | here |
//! | [`ConntrackBackend`] | the Linux kernel table over ctnetlink | here (Linux) |
//!
//! Takeover (VRRP, FRR, hooks) is the daemon's (`crates/failoverd/src/takeover`): it drives
//! devices and routing daemons rather than a table.
//!
//! # Configuration
//!
//! [`ConfigBackend`] is the contract of a kind of configuration unit for configuration sync:
//! read a unit's canonical form, apply units all or nothing. `config::conformance` is the same
//! contract as tests.
//!
//! | backend | units | status |
//! |---|---|---|
//! | [`NftablesBackend`] | nftables tables, through `nft` (one transaction per apply) | here (Linux) |
//! | [`FilesBackend`] | files and directories (staged aside, swapped in atomically) | here (Linux) |

pub mod config;
pub mod session;
#[cfg(target_os = "linux")]
mod socket_filter;

#[cfg(target_os = "linux")]
pub use config::nftables::{
    Generation, NftablesBackend, NftablesChange, NftablesConfig, NftablesWatcher,
    NftablesWatcherStats, SetElement,
};
pub use config::{ConfigBackend, ConfigError};
#[cfg(target_os = "linux")]
pub use config::{FilesBackend, FilesConfig, FilesConfigError, FilesUnit};

pub use session::{
    ApplyError, ApplyReport, BackendError, DEFAULT_QUEUE_LIMIT, LocalError, MemoryBackend,
    MemoryStats, SessionBackend, perform, sample_record,
};
#[cfg(target_os = "linux")]
pub use session::{ConntrackBackend, ConntrackConfig, ConntrackStats, OwnerMark, OwnerMarkError};
