//! The failoverd daemon: wiring only. The decisions are in `failoverd-core`; this crate connects
//! the core to the failover link (`failoverd-link`), the session table (`failoverd-backends`),
//! the control socket (`failoverd-control`) and the clock.
//!
//! - [`driver`]: the task that owns a node's core, and the views of it `failoverctl` gets;
//! - [`clock`]: the core's clock, read from the monotonic clock;
//! - [`hellos`]: the hello thread, which keeps the hellos on time whatever the driver does;
//! - [`table_thread`]: the session table's own thread, running a [`table::Table`];
//! - [`daemon`]: `failoverd` with a config file;
//! - [`kernel`]: the kernel's conntrack table, opened with the start-up checks;
//! - [`takeover`]: what moves the traffic (VRRP, FRR, hooks);
//! - [`demo`]: `failoverd demo`, two nodes on loopback.

pub mod clock;
pub mod config_sync;
pub mod daemon;
pub mod demo;
pub mod driver;
pub mod hellos;
#[cfg(target_os = "linux")]
pub mod kernel;
#[cfg(target_os = "linux")]
pub mod net;
mod proxy;
pub mod table;
pub mod table_thread;
pub mod takeover;
