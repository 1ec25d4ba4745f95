//! The sans-I/O core of failoverd: one node of a failover pair as a state machine.
//!
//! No sockets, threads or clocks: every input carries `now` ([`Instant`]), and outputs are
//! polled ([`Node::poll_transmit`], [`Node::poll_action`], [`Node::poll_event`],
//! [`Node::poll_timeout`]). The daemon drives it with real I/O, the simulation with a virtual
//! clock and a faulty link; both see the same behaviour.
//!
//! - negotiation: Silence -> Independence -> Synchronization -> Silence (the seed's diagram);
//! - roles: who forwards, by priority with an explicit tie-break, gated on readiness;
//! - session sync: bulk sync with epochs, coalesced incremental changes, numbered batches
//!   acknowledged once applied, bounded apply slices, sweep of stale entries.
#![forbid(unsafe_code)]

mod config;
pub mod config_sync;
mod event;
mod failure;
mod filter;
mod liveness;
mod node;
mod stats;
mod sync;
mod time;
mod timer;
pub mod vrrp;

pub use config::{MIN_HELLO_INTERVAL, defaults};
pub use config::{NodeConfig, NodeConfigError, RoleAuthority};
pub use event::{
    ApplyFailure, BackendAction, Election, Event, HelloTimers, History, HistoryEntry,
    Incompatibility, Reason, TakeoverReason, TimerMismatch,
};
pub use failure::{ActionError, ApplyError};
pub use filter::{IpNet, ReplicationFilter};
pub use liveness::Liveness;
pub use node::{
    Action, ActionResult, Channel, CommandError, HeartbeatPeer, Node, NotReady, PeerStatus, Token,
    Transmit,
};
pub use stats::{LagHistogram, Stats};
pub use time::Instant;

pub use failoverd_wire as wire;
