//! Changes to the nftables ruleset, from the kernel's generation events (no polling).
// `AsyncFd::register` is unsafe (I/O safety): one block, with its reason.
#![allow(unsafe_code)]

use failoverd_backends::{NftablesChange, NftablesWatcher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::warn;

/// A transaction committed by the process `pid` (`None`: not known, e.g. after lost events).
#[derive(Debug, Clone, Copy)]
pub(super) struct RulesetChanged {
    /// The committing process, if known.
    pub(super) pid: Option<u32>,
}

/// Watches the ruleset of this network namespace; each commit comes on the receiver.
/// Each commit also sets `changed` (the worker's cue to read the tables again).
pub(super) fn spawn(
    changed: Arc<AtomicBool>,
) -> std::io::Result<mpsc::UnboundedReceiver<RulesetChanged>> {
    let watcher = NftablesWatcher::open()?;
    // SAFETY: the `AsyncFd` owns the watcher: its socket's descriptor stays open and the same
    // until the `AsyncFd` is dropped.
    let watcher = unsafe { AsyncFd::register_with_interest(watcher, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut watcher = watcher;
        loop {
            let Ok(mut ready) = watcher.readable_mut().await else {
                return;
            };
            loop {
                match ready.get_inner_mut().next_change() {
                    Ok(Some(change)) => {
                        changed.store(true, Ordering::SeqCst);
                        let pid = match change {
                            NftablesChange::Generation(generation) => generation.pid,
                            NftablesChange::Unknown => None,
                        };
                        if tx.send(RulesetChanged { pid }).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        ready.clear_ready();
                        break;
                    }
                    Err(err) => {
                        warn!("config sync: the nftables watcher failed: {err}");
                        return;
                    }
                }
            }
        }
    });
    Ok(rx)
}
