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
//! Half the schedules also run configuration sync ([`Pair::enable_config_sync`],
//! [`schedule::config_plan`]): each node's [`failoverd_core::config_sync::ConfigSync`] with an
//! in-memory kernel of units ([`Kernel`]), its frames over the same failover link (emitted and
//! parsed as the daemon does), its part following the node's state and role as the daemon sets
//! it (in Synchronization the active node is the source, the standby the replica), while the
//! source's units change, the standby's drift, kernels refuse applies, lack a feature or store
//! another form, and the operator runs `config sync`. Its invariants:
//!
//! - only the replica applies (or, right after an apply, restores what it replaced when the
//!   link is lost within the confirm window), only units its own configuration names, and only
//!   content the source's machine was given by the source's kernel (hash for hash);
//! - only the source sends sync transfers; a node claims the source in its offers only while
//!   active in Synchronization, so a conflict (both claiming it) arises only when both were
//!   active, and a node in conflict sends no transfer;
//! - after settling, every unit both nodes name holds the source's content on both, unless
//!   the last sync of it failed, was refused or was rolled back and the source's status says
//!   so; with every unit equal the status says in sync.
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
pub use pair::{ConfigNode, HeartbeatPath, Kernel, Lan, Pair, SimNode, SplitChange, same_copy};
