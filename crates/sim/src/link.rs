//! The simulated failover link: per-direction queues of `(deliver_at, frame)` with seeded loss,
//! duplication, delay jitter (which reorders) and partitions.

use std::time::Duration;

use failoverd_core::Instant;
use rand::Rng;
use rand::rngs::SmallRng;

/// How the link misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFaults {
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra random delay up to this much; frames overtake each other.
    pub jitter: Duration,
}

impl LinkFaults {
    /// A perfect link with `delay`.
    pub fn clean(delay: Duration) -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            delay,
            jitter: Duration::ZERO,
        }
    }
}

/// A frame on its way.
#[derive(Debug)]
struct Flight {
    deliver_at: Instant,
    /// Tie-break so equal delivery times keep send order (determinism).
    order: u64,
    connection: u64,
    to: usize,
    bytes: Vec<u8>,
}

/// Both directions of the link.
#[derive(Debug)]
pub struct Link {
    /// Current misbehaviour.
    pub faults: LinkFaults,
    /// While true, every frame is dropped and no connection can be made.
    pub partitioned: bool,
    /// Transport connection generation: frames of an older connection are never delivered.
    pub connection: u64,
    flights: Vec<Flight>,
    order: u64,
    /// Frames dropped by loss or partition.
    pub dropped: u64,
}

impl Link {
    /// A link with these faults.
    pub fn new(faults: LinkFaults) -> Self {
        Self {
            faults,
            partitioned: false,
            connection: 0,
            flights: Vec::new(),
            order: 0,
            dropped: 0,
        }
    }

    /// Sends `bytes` to node `to` on the current connection.
    pub fn send(&mut self, now: Instant, to: usize, bytes: Vec<u8>, rng: &mut SmallRng) {
        if self.partitioned || rng.random_bool(self.faults.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if rng.random_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.faults.jitter.mul_f64(rng.random::<f64>());
            self.order += 1;
            self.flights.push(Flight {
                deliver_at: now + self.faults.delay + jitter,
                order: self.order,
                connection: self.connection,
                to,
                bytes: bytes.clone(),
            });
        }
    }

    /// When the next frame arrives.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.flights.iter().map(|f| f.deliver_at).min()
    }

    /// Frames due at `now`, in arrival order, for the current connection only.
    pub fn deliver(&mut self, now: Instant) -> Vec<(usize, Vec<u8>)> {
        let mut due: Vec<Flight> = Vec::new();
        let mut index = 0;
        while index < self.flights.len() {
            if self.flights[index].deliver_at <= now {
                due.push(self.flights.swap_remove(index));
            } else {
                index += 1;
            }
        }
        due.sort_by_key(|f| (f.deliver_at, f.order));
        let connection = self.connection;
        due.into_iter()
            .filter(|f| f.connection == connection)
            .map(|f| (f.to, f.bytes))
            .collect()
    }

    /// A new transport connection: whatever is in flight on the old one is lost.
    pub fn reconnect(&mut self) {
        self.connection += 1;
        self.flights.clear();
    }
}
