//! Counters a node keeps; every kind of drop is counted separately.

use std::time::Duration;

/// Counters of one node since start.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Hellos sent.
    pub hellos_sent: u64,
    /// Hellos received.
    pub hellos_received: u64,
    /// Session batches sent (retransmissions excluded).
    pub batches_sent: u64,
    /// Session batches accepted.
    pub batches_received: u64,
    /// Records sent (retransmissions excluded).
    pub records_sent: u64,
    /// Records accepted from the peer.
    pub records_received: u64,
    /// Peer records applied to the local table.
    pub records_applied: u64,
    /// Batches sent again after no acknowledgement progress.
    pub retransmits: u64,
    /// Batches received twice (dropped).
    pub duplicate_batches: u64,
    /// Batches received after a gap (dropped; the sender resends).
    pub out_of_order_batches: u64,
    /// Batches of an epoch that is not current (dropped).
    pub stale_epoch_batches: u64,
    /// Frames that did not parse (dropped).
    pub malformed_frames: u64,
    /// Frames of an unknown kind (skipped).
    pub unknown_messages: u64,
    /// Batch sections of an unknown kind (skipped).
    pub unknown_sections: u64,
    /// Records the peer sent for entries it does not own (dropped).
    pub foreign_records: u64,
    /// Acknowledgements for batches never sent (ignored).
    pub bogus_acks: u64,
    /// Frames that arrived while the link was not up (dropped).
    pub frames_without_link: u64,
    /// Changes merged into a queued change of the same session.
    pub coalesced: u64,
    /// Peer records the backend refused.
    pub apply_failures: u64,
    /// Times the backend lost change events.
    pub changes_lost: u64,
    /// Bulk syncs of ours applied by the peer.
    pub bulk_syncs_sent: u64,
    /// Bulk syncs of the peer's applied here.
    pub bulk_syncs_received: u64,
    /// Stale peer entries removed after bulk syncs.
    pub swept: u64,
    /// Peer entries adopted at takeover.
    pub adopted: u64,
    /// Deletes from the peer held before they were applied (see `NodeConfig::remove_hold`).
    pub removes_held: u64,
    /// Deletes from the peer dropped: held when this node took over without the peer handing
    /// over, or when the stream restarted, or arriving within one hold after such a takeover.
    pub removes_discarded: u64,
    /// Resyncs started because the backend lost change events.
    pub overrun_resyncs: u64,
    /// Of those, the ones that waited for the backoff (an earlier one began too recently).
    pub resyncs_deferred: u64,
    /// Digests of our sessions sent to the peer (anti-entropy).
    pub digests_sent: u64,
    /// The peer's digests compared with our copies of its sessions.
    pub digests_compared: u64,
    /// Resyncs requested because the comparison found drift.
    pub drift_repairs: u64,
    /// Replication lag: from a change reaching the core to the peer acknowledging it applied.
    pub lag: LagHistogram,
}

/// Latency histogram with power-of-two microsecond buckets: constant memory, cheap to record.
#[derive(Debug, Clone, Default)]
pub struct LagHistogram {
    buckets: [u64; 32],
    count: u64,
    max: Duration,
}

impl LagHistogram {
    /// Adds one sample.
    pub fn record(&mut self, lag: Duration) {
        let micros = lag.as_micros().max(1) as u64;
        let bucket = (63 - micros.leading_zeros()) as usize;
        self.buckets[bucket.min(self.buckets.len() - 1)] += 1;
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

    /// Upper bound of the bucket holding quantile `q` (0..=1); zero without samples.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let target = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Duration::from_micros(1 << (bucket + 1)).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_bound_the_samples() {
        let mut h = LagHistogram::default();
        for micros in 1..=1000 {
            h.record(Duration::from_micros(micros));
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5);
        assert!(
            p50 >= Duration::from_micros(500) && p50 <= Duration::from_micros(1024),
            "{p50:?}"
        );
        assert_eq!(h.quantile(1.0), Duration::from_micros(1000));
    }
}
