//! What the session-table thread needs of a table beyond the [`SessionBackend`] contract: counts
//! and listings for `failoverctl`, counters for status, periodic upkeep, and the synthetic
//! traffic of the memory table.

use std::time::Duration;

use failoverd_backends::{BackendError, MemoryBackend, SessionBackend};
use failoverd_control::protocol::{BackendKind, SessionFilter, SessionList};

/// A session table the daemon can run.
pub trait Table: SessionBackend + Send + 'static {
    /// Which table it is (`sessions.backend`).
    fn kind(&self) -> BackendKind;

    /// Entries by owner, and the table's counters; cheap enough for every status request.
    fn counts(&mut self) -> Result<Counts, BackendError>;

    /// The entries that match `filter`, at most `limit` of them.
    fn list(
        &mut self,
        filter: &SessionFilter,
        limit: Option<usize>,
    ) -> Result<SessionList, BackendError> {
        let local = self.local_node();
        let records = self.dump()?;
        Ok(SessionList::select(&records, filter, limit, local))
    }

    /// How often [`upkeep`](Self::upkeep) runs; `None` for never.
    fn upkeep_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work of the table (re-arming the timeouts of the peer's entries); returns how
    /// many entries it touched.
    fn upkeep(&mut self) -> Result<usize, BackendError> {
        Ok(0)
    }

    /// Whether this node is active now: a table that keeps owners across restarts records
    /// them by role (the conntrack owner stamp).
    fn set_active(&mut self, _active: bool) -> Result<(), BackendError> {
        Ok(())
    }

    /// The memory table, which makes synthetic local traffic; `None` for a real table.
    fn synthetic(&mut self) -> Option<&mut MemoryBackend> {
        None
    }
}

impl Table for MemoryBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    fn counts(&mut self) -> Result<Counts, BackendError> {
        let local = self.local_node();
        let stats = self.stats();
        Ok(Counts {
            total: self.len() as u64,
            owned: self.iter().filter(|r| r.owner == local).count() as u64,
            counters: vec![
                ("events_in", stats.events_emitted),
                ("events_lost", stats.events_lost),
                ("pending_changes", self.pending_changes() as u64),
                ("ops_out", stats.applied),
                ("apply_errors", stats.refused),
                ("overruns", stats.overruns),
            ],
        })
    }

    fn list(
        &mut self,
        filter: &SessionFilter,
        limit: Option<usize>,
    ) -> Result<SessionList, BackendError> {
        Ok(SessionList::select(
            self.iter(),
            filter,
            limit,
            self.local_node(),
        ))
    }

    fn synthetic(&mut self) -> Option<&mut MemoryBackend> {
        Some(self)
    }
}

/// Entries of the table by owner, and its counters.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// All entries.
    pub total: u64,
    /// Entries this node owns.
    pub owned: u64,
    /// The table's own counters (events in, batches out, overruns, ...), unprefixed.
    pub counters: TableCounters,
}

/// Named counters of a session table.
pub type TableCounters = Vec<(&'static str, u64)>;
