//! The operator-facing contracts of failoverd, shared by the daemon and `failoverctl`:
//!
//! - [`config`]: the configuration file (`/etc/failoverd/failoverd.toml`), parsed into a typed,
//!   fully validated [`Config`]; every error names the file, line, key and what is allowed.
//! - [`protocol`]: the control protocol's requests, responses and data types (JSON lines over
//!   a Unix socket). Their field names are a stable contract, listed in this crate's README.
//! - [`transport`]: the socket itself: [`transport::bind`] and [`transport::serve`] for the
//!   daemon, [`transport::request`] and [`transport::Client`] for the CLI.
//!
//! Nothing here touches the failover link or the session tables: the daemon maps its core's
//! state to these types. This crate depends on the sans-I/O core only for the defaults the
//! configuration file shares with it ([`failoverd_core::defaults`]), and on no TLS or netlink
//! crate. `failoverctl` itself does link TLS in: `failoverctl keygen` makes the node's key pair
//! with the failover link's crate; it never needs netlink or the backends.

pub mod config;
pub mod protocol;
pub mod transport;

pub use config::{Config, ConfigError};
pub use protocol::{Request, Response};
pub use transport::ControlError;

/// The operating system's reason for an I/O error, without Rust's ` (os error N)` suffix:
/// operators read "No such file or directory", not errno numbers.
pub(crate) fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match (err.raw_os_error(), text.rsplit_once(" (os error ")) {
        (Some(_), Some((reason, _))) => reason.to_string(),
        _ => text,
    }
}
