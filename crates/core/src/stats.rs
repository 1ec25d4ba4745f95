//! Counters a node keeps; every kind of drop is counted separately.

use std::time::Duration;

/// Defines `Stats` with its `u64` counters and their names: each counter is listed once, and
/// [`Stats::counters`] yields every one of them by its field name (the stable names of
/// `failoverctl status`), so no list of them is kept by hand anywhere else.
macro_rules! stats {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            counters {
                $( $(#[$counter_meta:meta])* $counter:ident, )*
            }
            $( $(#[$field_meta:meta])* pub $field:ident: $field_type:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$counter_meta])* pub $counter: u64, )*
            $( $(#[$field_meta])* pub $field: $field_type, )*
        }

        impl $name {
            /// Every counter with its name (the field's), in declaration order.
            pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> + use<> {
                [$( (stringify!($counter), self.$counter), )*].into_iter()
            }
        }
    };
}
pub(crate) use stats;

stats! {
    /// Counters of one node since start.
    #[derive(Debug, Clone, Default)]
    pub struct Stats {
        counters {
            /// Hellos sent.
            hellos_sent,
            /// Hellos received.
            hellos_received,
            /// Hellos heard on the heartbeat path (authenticated and fresh, checked by the
            /// transport).
            heartbeats_received,
            /// Heartbeats that were not a compatible hello of the peer (dropped).
            heartbeats_refused,
            /// Session batches sent (retransmissions excluded).
            batches_sent,
            /// Session batches accepted.
            batches_received,
            /// Records sent (retransmissions excluded).
            records_sent,
            /// Records accepted from the peer.
            records_received,
            /// Peer records applied to the local table.
            records_applied,
            /// Batches sent again after no acknowledgement progress.
            retransmits,
            /// Batches received twice (dropped).
            duplicate_batches,
            /// Batches received after a gap (dropped; the sender resends).
            out_of_order_batches,
            /// Batches of an epoch that is not current (dropped).
            stale_epoch_batches,
            /// Frames that did not parse (dropped).
            malformed_frames,
            /// Frames of an unknown kind (skipped).
            unknown_messages,
            /// Batch sections of an unknown kind (skipped).
            unknown_sections,
            /// Records the peer sent for entries it does not own (dropped).
            foreign_records,
            /// Ops of the peer outside this node's replication filter (refused: see
            /// `NodeConfig::filter`).
            peer_ops_filtered,
            /// Batches of the peer dropped because the batches held already filled
            /// `NodeConfig::max_peer_buffer` (those ahead of a gap are resent by the peer).
            peer_buffer_drops,
            /// Link resets because the peer sent in order past the buffer (past its window).
            peer_buffer_resets,
            /// Acknowledgements for batches never sent (ignored).
            bogus_acks,
            /// Frames that arrived while the link was not up (dropped).
            frames_without_link,
            /// Changes merged into a queued change of the same session.
            coalesced,
            /// Peer records the backend refused.
            apply_failures,
            /// Times the backend lost change events.
            changes_lost,
            /// Bulk syncs of ours applied by the peer.
            bulk_syncs_sent,
            /// Bulk syncs of the peer's applied here.
            bulk_syncs_received,
            /// Stale peer entries removed after bulk syncs.
            swept,
            /// Peer entries adopted at takeover.
            adopted,
            /// Deletes from the peer held before they were applied (see `NodeConfig::remove_hold`).
            removes_held,
            /// Deletes from the peer dropped: held when this node took over without the peer
            /// handing over, or arriving within one hold after such a takeover, unless the peer
            /// still said it was active one hold after it; or held when the stream restarted.
            removes_discarded,
            /// Resyncs started because the backend lost change events.
            overrun_resyncs,
            /// Of those, the ones that waited for the backoff (an earlier one began too recently).
            resyncs_deferred,
            /// Digests of our sessions sent to the peer (anti-entropy).
            digests_sent,
            /// The peer's digests compared with our copies of its sessions.
            digests_compared,
            /// The peer's digests not compared: a newer one replaced it while it waited (at most
            /// one is compared per `NodeConfig::digest_interval`), or digests are off here.
            digests_dropped,
            /// Resyncs requested because the comparison found drift.
            drift_repairs,
            /// Changes made while the peer was away that were forgotten to stay within
            /// `apart_log_limit` (their merge falls back to the peer's state).
            apart_changes_collected,
            /// Changes sent in batches the peer had not acknowledged when the link was lost, which
            /// its hello then said it had applied: not made apart from it after all.
            apart_changes_applied_by_peer,
            /// Bulk syncs that resumed one a link loss interrupted (see `BatchFlags::RESUMED`).
            bulk_resumes,
            /// Records those resumed bulk syncs did not send again: the peer had applied them.
            bulk_records_not_resent,
            /// The peer's changes not applied because this node changed or deleted the same session
            /// while apart (the split-brain merge rule).
            peer_changes_superseded,
            /// Records of the incremental stream (changes, not bulk sync) the peer acknowledged as
            /// applied: one per record sent, so coalesced changes count once.
            stream_records_replicated,
            /// Bulk-sync records the peer acknowledged as applied.
            bulk_records_replicated,
        }
        /// Replication lag of the incremental stream, one sample per record in
        /// [`stream_records_replicated`](Self::stream_records_replicated): from the change reaching
        /// the core (the oldest change the record carries) to the acknowledgement saying the peer
        /// applied it. Bulk-sync records are not sampled: they wait for the dump, not the link.
        pub lag: LagHistogram,
    }
}

/// Sub-buckets per power of two: the relative width of a bucket is at most `1 / SUB_BUCKETS`.
const SUB_BUCKETS: u64 = 128;
/// Values below this have a bucket each (exact).
const EXACT_BELOW: u64 = 2 * SUB_BUCKETS;

/// Latency histogram with log-linear microsecond buckets (as HdrHistogram): every value below
/// 256 µs has its own bucket, above that each power of two is split into 128 equal buckets. A
/// [`quantile`](Self::quantile) is the highest value of the bucket holding the sample of that
/// rank, so it is never below the true sample and at most [`Self::RELATIVE_ERROR`] above it.
/// Memory grows with the largest sample only: 8 bytes per bucket up to it (14 KiB for 1 s).
#[derive(Debug, Clone, Default)]
pub struct LagHistogram {
    buckets: Vec<u64>,
    count: u64,
    max: Duration,
}

impl LagHistogram {
    /// Bound on the relative error of [`quantile`](Self::quantile) (0.79 %), above microsecond
    /// resolution.
    pub const RELATIVE_ERROR: f64 = 1.0 / SUB_BUCKETS as f64;

    /// Adds one sample.
    pub fn record(&mut self, lag: Duration) {
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        let index = bucket_of(micros);
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, 0);
        }
        self.buckets[index] += 1;
        self.count += 1;
        self.max = self.max.max(lag);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest sample.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The samples recorded since `earlier`, a copy of this histogram taken before (the
    /// largest sample is this one's, an upper bound).
    pub fn since(&self, earlier: &LagHistogram) -> LagHistogram {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        LagHistogram {
            buckets,
            count: self.count.saturating_sub(earlier.count),
            max: self.max,
        }
    }

    /// The sample of rank `ceil(q * count)` (nearest rank; `q` in 0..=1), to within
    /// [`Self::RELATIVE_ERROR`] above; zero without samples.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let target = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Duration::from_micros(highest_in(index)).min(self.max);
            }
        }
        self.max
    }
}

/// The bucket of a value: its own below [`EXACT_BELOW`], else its power of two and its top
/// eight bits.
fn bucket_of(micros: u64) -> usize {
    if micros < EXACT_BELOW {
        return micros as usize;
    }
    let octave = u64::from(63 - micros.leading_zeros()); // >= 8
    let shift = octave - SUB_BUCKETS.trailing_zeros() as u64;
    let sub = (micros >> shift) - SUB_BUCKETS;
    (EXACT_BELOW + (octave - 8) * SUB_BUCKETS + sub) as usize
}

/// The highest value that [`bucket_of`] maps to `index`.
fn highest_in(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT_BELOW {
        return index;
    }
    let octave = (index - EXACT_BELOW) / SUB_BUCKETS + 8;
    let sub = (index - EXACT_BELOW) % SUB_BUCKETS;
    let shift = octave - SUB_BUCKETS.trailing_zeros() as u64;
    // The top bucket of the top octave ends at u64::MAX: computed in u128, then saturated.
    let end = (u128::from(SUB_BUCKETS + sub + 1) << shift) - 1;
    u64::try_from(end).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every counter is listed once, by its field's name, with its value.
    #[test]
    fn counters_are_every_field_by_name() {
        let stats = Stats {
            hellos_sent: 7,
            bulk_records_replicated: 9,
            ..Stats::default()
        };
        let counters: Vec<(&str, u64)> = stats.counters().collect();
        let names: std::collections::BTreeSet<&str> = counters.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), counters.len(), "a name is listed twice");
        assert!(counters.contains(&("hellos_sent", 7)));
        assert!(counters.contains(&("bulk_records_replicated", 9)));
        assert!(counters.contains(&("peer_changes_superseded", 0)));
    }

    #[test]
    fn quantiles_bound_the_samples() {
        let mut h = LagHistogram::default();
        for micros in 1..=1000 {
            h.record(Duration::from_micros(micros));
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5);
        assert!(
            p50 >= Duration::from_micros(500) && p50 <= Duration::from_micros(504),
            "{p50:?}"
        );
        assert_eq!(h.quantile(1.0), Duration::from_micros(1000));
    }

    #[test]
    fn since_counts_only_the_later_samples() {
        let mut h = LagHistogram::default();
        for micros in 1..=1000 {
            h.record(Duration::from_micros(micros * 1000));
        }
        let earlier = h.clone();
        for _ in 0..100 {
            h.record(Duration::from_micros(7));
        }
        let later = h.since(&earlier);
        assert_eq!(later.count(), 100);
        assert_eq!(later.quantile(0.99), Duration::from_micros(7));
        // The control: the whole histogram's median is one of the early, slow samples.
        assert!(h.quantile(0.5) > Duration::from_millis(400));
    }

    #[test]
    fn buckets_tile_the_whole_range() {
        for micros in (0..4096).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let index = bucket_of(micros);
            assert!(highest_in(index) >= micros, "{micros}");
            assert!(index == 0 || highest_in(index - 1) < micros, "{micros}");
        }
        assert_eq!(highest_in(bucket_of(u64::MAX)), u64::MAX);
    }

    proptest! {
        /// Against the exact nearest-rank percentile of the samples: never below, at most
        /// `RELATIVE_ERROR` above. Power-of-two buckets (the histogram before) are up to 100 %
        /// off and fail this.
        #[test]
        fn quantiles_are_within_the_stated_relative_error(
            samples in proptest::collection::vec(1u64..10_000_000, 1..2000),
            q in 0.0f64..=1.0,
        ) {
            let mut h = LagHistogram::default();
            for &micros in &samples {
                h.record(Duration::from_micros(micros));
            }
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let rank = ((sorted.len() as f64 * q).ceil() as usize).max(1);
            let exact = sorted[rank - 1] as f64;
            let got = h.quantile(q).as_micros() as f64;
            prop_assert!(got >= exact, "{got} below the sample {exact}");
            prop_assert!(
                got <= exact * (1.0 + LagHistogram::RELATIVE_ERROR),
                "{got} more than {} above {exact}", LagHistogram::RELATIVE_ERROR
            );
        }
    }
}
