//! Session tables: the [`SessionBackend`] contract, its reports and errors, and the backends.
//!
//! The core never calls a backend: it emits [`SessionOp`]s to install and consumes the local
//! changes the daemon (or the simulation) polls out of the backend on its behalf.

use std::collections::HashSet;

pub use failoverd_core::ApplyError;
use failoverd_wire::{NodeId, SessionKey, SessionOp, SessionRecord};

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(target_os = "linux")]
pub mod conntrack;
mod memory;
mod perform;
mod sample;

#[cfg(target_os = "linux")]
pub use conntrack::{ConntrackBackend, ConntrackConfig, ConntrackStats, OwnerMark, OwnerMarkError};
pub use memory::{DEFAULT_QUEUE_LIMIT, MemoryBackend, MemoryStats};
pub use perform::perform;
pub use sample::sample_record;

/// A connection-tracking table that failoverd replicates.
///
/// # Ownership
///
/// Every entry has an owner ([`SessionRecord::owner`]): the node whose traffic created it or
/// last touched it, or that adopted it at a takeover. Ownership is what keeps one node's expiries
/// and flushes from deleting the other node's live sessions:
///
/// - entries created by local activity are owned by [`local_node`](Self::local_node);
/// - a local update of an entry another node owns makes it locally owned (ownership follows the
///   node whose traffic touches the entry), and the change is reported with the local owner;
/// - a local delete is reported as `Remove { key, owner }` with the entry's owner at the time;
///   the core decides whether it speaks for the peer's copy: a delete on the active node (the
///   session ended in the traffic it forwards) does, a peer-owned entry that merely expired on
///   the standby (which sees none of its packets) does not;
/// - [`apply`](Self::apply) stores each record with the owner it carries, and its `Remove` deletes
///   an entry only if the owner it names is the entry's owner.
///
/// # No echo
///
/// Only local activity (traffic through this node, or an operator's command) is reported by
/// [`poll_changes`](Self::poll_changes). What the daemon writes on the peer's behalf
/// ([`apply`](Self::apply), [`sweep`](Self::sweep), [`adopt`](Self::adopt)) is never reported back,
/// so a peer's update is not echoed to it.
///
/// # What backends do not promise
///
/// - Batches are not transactions: an op that fails leaves the ops before and after it applied.
/// - Ageing is the backend's own: the kernel's table counts timeouts down and expires entries
///   (reported as local deletes), [`MemoryBackend`] keeps every entry until it is deleted.
///   A timeout is data that the backend stores and reports.
/// - Iteration order of [`dump`](Self::dump) is unspecified.
/// - An entry's owner is checked and the entry changed in two steps; a kernel table may see
///   traffic in between.
///
/// # Use
///
/// One task owns the backend (`&mut self`) and serves it from its `select!` loop: await
/// [`changed`](Self::changed), then drain [`poll_changes`](Self::poll_changes); apply the peer's
/// ops in bounded slices so timers are not starved.
pub trait SessionBackend {
    /// The local node's id: entries created by local activity are owned by it.
    fn local_node(&self) -> NodeId;

    /// A snapshot of every entry, of every owner, in unspecified order.
    ///
    /// The source of a bulk sync and the input of anti-entropy (digest comparison), and the way
    /// to resynchronise after [`BackendError::Overrun`].
    fn dump(&mut self) -> Result<Vec<SessionRecord>, BackendError>;

    /// Applies the peer's ops in order, as one batch, and accounts for every op in the report:
    /// `applied + not_found + skipped_not_owner + failed.len() == ops.len()`.
    ///
    /// - `Upsert(record)` creates the entry, or replaces every field of the entry with the same
    ///   key, owner included. An existing entry is not an error: a kernel backend retries the
    ///   create as an update. Replacing an entry never needs room in the table.
    /// - `Remove { key, owner }` deletes the entry only if its owner is `owner`: a node never
    ///   deletes an entry another node owns ([`ApplyReport::skipped_not_owner`]). A missing entry
    ///   counts as [`ApplyReport::not_found`], not as an error (it expired, or was never synced).
    /// - `RemoveAny { key }` deletes the entry whoever owns it (the session ended on the active
    ///   peer); a missing entry counts as [`ApplyReport::not_found`].
    /// - A failing op (table full, refused by the table) is recorded in [`ApplyReport::failed`]
    ///   with its index, and the rest of the batch is still applied.
    ///
    /// Nothing applied here is reported by [`poll_changes`](Self::poll_changes) (no echo).
    fn apply(&mut self, ops: &[SessionOp]) -> ApplyReport;

    /// Moves local changes (entries created, updated or deleted by local activity, never by
    /// [`apply`](Self::apply), [`sweep`](Self::sweep) or [`adopt`](Self::adopt)) into `out`, in
    /// the order they happened, at most `max` of them, and returns how many it appended.
    ///
    /// Creates and updates are reported as `Upsert` of the whole record (owned by the local
    /// node), deletes as `Remove { key, owner }` with the owner the entry had (see the trait's
    /// ownership rules).
    /// `Ok(0)` means nothing is pending now. Only observable changes are reported: a kernel emits
    /// no event when a packet merely refreshes an entry's timeout.
    ///
    /// # Overrun
    ///
    /// When change events were lost (a full queue; ENOBUFS on a netlink socket), the next call
    /// returns [`BackendError::Overrun`] once, before any further event, and the caller must
    /// resynchronise from a [`dump`](Self::dump) taken after it. The events that were still
    /// queued at that point are discarded rather than delivered after the error: the dump covers
    /// them, and delivering them after it would roll the peer back to older versions. After
    /// that the backend delivers new events again.
    fn poll_changes(&mut self, out: &mut Vec<SessionOp>, max: usize)
    -> Result<usize, BackendError>;

    /// Resolves when [`poll_changes`](Self::poll_changes) may have something: at once if changes
    /// (or an overrun) are pending when it is called, otherwise when some arrive.
    ///
    /// It may resolve spuriously (`poll_changes` then returns `Ok(0)`), and it is cancel-safe:
    /// dropping it loses nothing, changes stay queued until polled. One wake-up can stand for
    /// many changes, so drain `poll_changes` until it returns fewer than `max`, or call
    /// `changed` again (it resolves at once while changes are pending). The future borrows
    /// nothing from the backend, so a `select!` branch can await it while another branch's
    /// handler uses the backend mutably:
    ///
    /// ```
    /// use failoverd_backends::{MemoryBackend, SessionBackend};
    /// # use failoverd_wire::{NodeId, SessionRecord};
    /// # async fn serve(
    /// #     backend: &mut MemoryBackend,
    /// #     mut from_peer: tokio::sync::mpsc::Receiver<Vec<failoverd_wire::SessionOp>>,
    /// # ) {
    /// let mut changes = Vec::new();
    /// loop {
    ///     tokio::select! {
    ///         _ = backend.changed() => {
    ///             match backend.poll_changes(&mut changes, 400) {
    ///                 Ok(_) => { /* hand `changes` to the core */ changes.clear(); }
    ///                 Err(_overrun) => { /* dump and start a bulk sync */ }
    ///             }
    ///         }
    ///         ops = from_peer.recv() => match ops {
    ///             Some(ops) => { backend.apply(&ops); }
    ///             None => break,
    ///         },
    ///     }
    /// }
    /// # }
    /// ```
    fn changed(&self) -> impl Future<Output = ()> + Send + 'static;

    /// Deletes every entry owned by `owner` whose key is not in `keep`, and returns how many it
    /// deleted. Used after a bulk sync from `owner`: `keep` holds the keys it sent, and entries
    /// of `owner` it did not send are stale. Entries of other owners are never touched. Not
    /// reported by [`poll_changes`](Self::poll_changes).
    fn sweep(&mut self, owner: NodeId, keep: &HashSet<SessionKey>) -> Result<usize, BackendError>;

    /// Makes `to` the owner of every entry owned by `from`, and returns how many changed owner.
    ///
    /// The survivor of a takeover adopts the dead peer's sessions, so that a late `Remove` from
    /// that peer (a flush while it died) no longer deletes them. Not reported by
    /// [`poll_changes`](Self::poll_changes).
    fn adopt(&mut self, from: NodeId, to: NodeId) -> Result<usize, BackendError>;

    /// The number of entries, of every owner. Fallible because a kernel table is asked, not
    /// counted.
    fn count(&self) -> Result<usize, BackendError>;
}

/// What [`SessionBackend::apply`] did with a batch: every op is counted exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Ops that changed the table: upserts stored, removes that deleted their entry.
    pub applied: usize,
    /// Removes whose key was not in the table.
    pub not_found: usize,
    /// Removes left undone because the entry is owned by another node than the op names.
    pub skipped_not_owner: usize,
    /// Ops the table refused, by index into the batch, in batch order.
    pub failed: Vec<(usize, ApplyError)>,
}

/// Why a local-activity command (an operator's `failoverctl sessions add`, the demo's traffic
/// generator, a test) changed nothing.
///
/// Local commands are strict where [`SessionBackend::apply`] is lenient, as a kernel table is
/// for its own traffic: a create needs a free key, an update or delete an existing entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// The table is at its size limit and refused a new entry.
    #[error("session table full: new entry refused")]
    TableFull,
    /// A create named a key that is already in the table.
    #[error("a session with this key already exists")]
    Exists,
    /// An update or delete named a key that is not in the table.
    #[error("no session with this key")]
    NotFound,
}

/// A failure of a whole backend call.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Change events were lost; the caller must resynchronise from a dump (see
    /// [`SessionBackend::poll_changes`]).
    #[error("{} session change events lost: resynchronise from a dump", lost_count(.lost))]
    Overrun {
        /// How many events were lost, when the backend can tell: a netlink socket reports
        /// ENOBUFS without a count.
        lost: Option<u64>,
    },
    /// The backend could not reach its table (for a kernel backend: a netlink socket error, or
    /// missing CAP_NET_ADMIN).
    #[error("session table I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

fn lost_count(lost: &Option<u64>) -> String {
    match lost {
        Some(lost) => lost.to_string(),
        None => "an unknown number of".to_string(),
    }
}
