//! Every deadline of a node lives in one table (the hello schedule and the dead timer in its
//! [`Liveness`](crate::Liveness)); `poll_timeout` is the minimum of both.

use crate::time::Instant;

/// The node's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Silence ends: move to Independence.
    Silence,
    /// No acknowledgement progress: resend unacknowledged batches.
    Retransmit,
    /// A failed dump may be tried again.
    DumpRetry,
    /// Ops the backend refused may be tried again.
    ApplyRetry,
    /// The next delete from the peer is due (see `NodeConfig::remove_hold`).
    RemoveHold,
    /// Time to send a digest of our sessions (anti-entropy).
    Digest,
    /// The peer's digest that waited may be compared (one per digest interval).
    PeerDigest,
    /// Active alone since start for long enough: adopt the entries found at start.
    AdoptAlone,
    /// A resync forced by lost backend events, deferred by the backoff, is due.
    ResyncBackoff,
    /// Send the next hello on the heartbeat path.
    Heartbeat,
    /// The peer is no longer heard on the heartbeat path if no heartbeat arrives before this.
    HeartbeatDead,
}

impl Timer {
    const ALL: [Timer; 11] = [
        Timer::Silence,
        Timer::Retransmit,
        Timer::DumpRetry,
        Timer::ApplyRetry,
        Timer::RemoveHold,
        Timer::Digest,
        Timer::PeerDigest,
        Timer::AdoptAlone,
        Timer::ResyncBackoff,
        Timer::Heartbeat,
        Timer::HeartbeatDead,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines by timer; `None` is disarmed.
#[derive(Debug, Default, Clone)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the timers that expired at `now`, each once.
    pub(crate) fn expired(&mut self, now: Instant) -> impl Iterator<Item = Timer> + use<> {
        let mut fired = Vec::new();
        for timer in Timer::ALL {
            if self.get(timer).is_some_and(|at| at <= now) {
                self.stop(timer);
                fired.push(timer);
            }
        }
        fired.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_timers_fire_once_and_next_is_the_minimum() {
        let mut table = TimerTable::default();
        table.set(Timer::Retransmit, Instant::from_nanos(300));
        table.set(Timer::Silence, Instant::from_nanos(100));
        assert_eq!(table.next_timeout(), Some(Instant::from_nanos(100)));
        assert_eq!(table.expired(Instant::from_nanos(50)).count(), 0);
        assert_eq!(
            table.expired(Instant::from_nanos(100)).collect::<Vec<_>>(),
            [Timer::Silence]
        );
        assert_eq!(table.expired(Instant::from_nanos(100)).count(), 0);
        assert_eq!(table.next_timeout(), Some(Instant::from_nanos(300)));
    }
}
