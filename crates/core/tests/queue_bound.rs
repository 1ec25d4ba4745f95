//! Memory while the peer is away: changing 10,000,000 distinct sessions costs what changing
//! 1,000,000 does (finding 4 of issue 10: every change used to be queued until the next bulk
//! sync, which resends the whole table anyway).
//!
//! `FAILOVERD_QUEUE_KEYS` sets the number of changes (default 10,000,000; the measure is
//! taken at a tenth and compared at every further tenth). What is kept is the apart log of the
//! split-brain merge, bounded by `apart_log_limit` (262,144 by default), so a tenth must exceed
//! that bound: `FAILOVERD_QUEUE_KEYS=3000000 cargo test -p failoverd-core --test queue_bound`
//! runs the same check with less memory.

// A counting global allocator: implementing GlobalAlloc is unsafe by definition.
#![allow(unsafe_code)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use failoverd_core::wire::{NodeId, SessionOp, SyncState};
use failoverd_core::{Instant, Node};

/// Counts the bytes allocated and not yet freed, in this test binary.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn the_queue_does_not_grow_while_the_peer_is_away() {
    let keys: u32 = std::env::var("FAILOVERD_QUEUE_KEYS")
        .ok()
        .map(|v| v.parse().expect("FAILOVERD_QUEUE_KEYS: a number"))
        .unwrap_or(10_000_000);
    let step = keys / 10;
    let me = NodeId(1);
    let mut now = Instant::ZERO;
    let mut node = Node::new(support::config(1), now);
    // Alone: the silence timer expired and no peer answers.
    now = now + Duration::from_secs(2);
    node.handle_timeout(now);
    assert_eq!(node.state(), SyncState::Independence);
    while node.poll_event().is_some() {}

    let mut measured = None;
    let mut next = 0;
    while next < keys {
        for chunk_start in (next..next + step).step_by(10_000) {
            let end = (chunk_start + 10_000).min(next + step);
            let ops: Vec<_> = (chunk_start..end)
                .map(|i| SessionOp::Upsert(support::record(i, me)))
                .collect();
            node.handle_local_changes(now, ops);
        }
        next += step;
        let now_at = (node.pending_changes(), LIVE.load(Ordering::Relaxed));
        match measured {
            None => measured = Some(now_at),
            Some(first) => assert_eq!(
                now_at, first,
                "(queued changes, heap bytes) after {next} changes vs after {step}"
            ),
        }
    }
    assert_eq!(measured.map(|(queued, _)| queued), Some(0));
}
