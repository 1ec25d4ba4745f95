//! What the takeover parts did, for `failoverctl events`: VRRP group changes, tracked objects
//! going up or down, hooks run, FRR costs set. Shared by the parts, read by the driver.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use failoverd_control::protocol::EventKind;

/// Entries kept; older ones are dropped.
const KEPT: usize = 64;

/// One thing a takeover part did.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// When.
    pub at: Instant,
    /// `vrrp`, `track`, `hook` or `routing`.
    pub kind: EventKind,
    /// What, as the log says it.
    pub message: String,
}

/// A bounded, shared list of [`HistoryEntry`].
#[derive(Debug, Clone, Default)]
pub struct TakeoverHistory(Arc<Mutex<VecDeque<HistoryEntry>>>);

impl TakeoverHistory {
    /// Records `message` now.
    pub fn record(&self, kind: EventKind, message: impl Into<String>) {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == KEPT {
            entries.pop_front();
        }
        entries.push_back(HistoryEntry {
            at: Instant::now(),
            kind,
            message: message.into(),
        });
    }

    /// Every entry kept, oldest first.
    pub fn entries(&self) -> Vec<HistoryEntry> {
        let entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().cloned().collect()
    }
}
