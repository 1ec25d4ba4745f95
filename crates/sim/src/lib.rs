//! Deterministic simulation of a failoverd pair.
//!
//! Two [`failoverd_core::Node`]s with memory tables, a virtual clock and a link that loses,
//! delays, duplicates, reorders and partitions ([`LinkFaults`]). [`schedule::run`] plays one
//! seeded random schedule of faults (crashes, partitions, graceful shutdowns, lost backend
//! events, switchovers, loss bursts) against a steady workload and checks the invariants:
//!
//! - a session the active node counts as replicated is on the standby, identical;
//! - a node that takes over from a live peer holds the peer's sessions (readiness);
//! - both nodes are never active longer than one dead interval while the link is up;
//! - states follow the seed's diagram only;
//! - after healing, both nodes are synchronized and ready, one is active, and each node's
//!   sessions are mirrored exactly on the other (nothing stale, nothing missing).
//!
//! A failing seed replays exactly: `FAILOVERD_SIM_SEED=<seed> cargo test -p failoverd-sim`.
#![warn(missing_docs)]

mod link;
mod pair;
pub mod schedule;

pub use link::{Link, LinkFaults, LinkModel};
pub use pair::{Pair, SimNode};
