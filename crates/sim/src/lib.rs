//! Deterministic simulation of a failoverd pair.
//!
//! Two [`failoverd_core::Node`]s with memory tables, a virtual clock and a failover link of one
//! of two models ([`LinkModel`]): what the daemon ships, two in-order connections (TLS over
//! TCP) that reset, stall and delay, or datagrams that are lost, delayed, duplicated, reordered
//! and partitioned ([`LinkFaults`]). The role is decided by the core's election, or by a VRRP
//! group per node ([`Pair::enable_vrrp`]) whose adverts cross a LAN of their own.
//! [`schedule::run`] plays one seeded random schedule of faults (crashes, partitions, graceful
//! shutdowns, lost backend events, switchovers, loss bursts, resets, stalls, tables refusing
//! applies or full) in the mode the seed draws ([`schedule::Mode`]) against a steady workload
//! and checks the invariants:
//!
//! - a session the active node counts as replicated is on the standby, identical;
//! - a node that takes over from a live peer holds the peer's sessions, and one that preempts a
//!   live master is ready (readiness);
//! - both nodes are never active longer than the role authority takes to notice the other
//!   while its path is up (the failover link for the election, the LAN for VRRP);
//! - states follow the seed's diagram only;
//! - after healing, both nodes are synchronized and ready, one is active, and each node's
//!   sessions are mirrored exactly on the other (nothing stale, nothing missing), compared on
//!   the one list of fields every "tables equal" check uses
//!   ([`failoverd_backends::session::conformance::ComparedFields`]) and the owner, after a
//!   split brain too;
//! - a session one node's traffic deleted during a split brain stays deleted unless the other
//!   node's traffic changed it meanwhile (the merge rule's tombstones).
//!
//! Mutants planted in the harness ([`Mutant`]) show each check failing.
//!
//! A failing seed replays exactly: `FAILOVERD_SIM_SEED=<seed> cargo test -p failoverd-sim`.
#![forbid(unsafe_code)]

mod link;
mod mutant;
mod pair;
pub mod schedule;

pub use link::{Link, LinkFaults, LinkModel};
pub use mutant::Mutant;
pub use pair::{HeartbeatPath, Lan, Pair, SimNode, SplitChange, same_copy};
