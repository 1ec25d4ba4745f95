//! The simulated failover link, in one of two models:
//!
//! - [`LinkModel::Datagram`]: frames with seeded loss, duplication, delay jitter (which
//!   reorders) and partitions that drop everything;
//! - [`LinkModel::Stream`]: what the daemon ships, TLS over two TCP connections (control and
//!   data): frames on one connection arrive in order, never lost or duplicated while it is up;
//!   its faults are delay, stalls (a partition is one: TCP holds what is sent until the path
//!   heals) and resets, which lose whatever is in flight.

use std::time::Duration;

use failoverd_core::{Channel, Instant};
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

/// How the link carries frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkModel {
    /// Independent frames: lost, duplicated and reordered as [`LinkFaults`] says.
    Datagram,
    /// Two in-order connections (control and data), as the daemon's TLS over TCP.
    Stream,
}

/// A frame on its way.
#[derive(Debug)]
struct Flight {
    deliver_at: Instant,
    channel: Channel,
    /// Tie-break so equal delivery times keep send order (determinism).
    order: u64,
    connection: u64,
    to: usize,
    bytes: Vec<u8>,
}

/// Both directions of the link.
#[derive(Debug)]
pub struct Link {
    /// How frames travel.
    pub model: LinkModel,
    /// Current misbehaviour (a stream ignores loss and duplication).
    pub faults: LinkFaults,
    /// While true, no connection can be made, and every frame is dropped (datagram) or held
    /// until the partition heals (stream).
    pub partitioned: bool,
    /// A stream delivers nothing before this (a stall: the path holds its bytes).
    stalled_until: Instant,
    /// Transport connection generation: frames of an older connection are never delivered.
    pub connection: u64,
    flights: Vec<Flight>,
    order: u64,
    /// Frames dropped by loss or partition.
    pub dropped: u64,
}

impl Link {
    /// A link with these faults.
    pub fn new(model: LinkModel, faults: LinkFaults) -> Self {
        Self {
            model,
            faults,
            partitioned: false,
            stalled_until: Instant::ZERO,
            connection: 0,
            flights: Vec::new(),
            order: 0,
            dropped: 0,
        }
    }

    /// Sends `bytes` to node `to` on the current connection.
    pub fn send(
        &mut self,
        now: Instant,
        to: usize,
        channel: Channel,
        bytes: Vec<u8>,
        rng: &mut SmallRng,
    ) {
        if self.model == LinkModel::Stream {
            let jitter = self.faults.jitter.mul_f64(rng.random::<f64>());
            // In order on its connection: never before the frame sent ahead of it.
            let behind = self
                .flights
                .iter()
                .filter(|f| f.to == to && f.channel == channel)
                .map(|f| f.deliver_at)
                .max()
                .unwrap_or(Instant::ZERO);
            self.order += 1;
            self.flights.push(Flight {
                deliver_at: (now + self.faults.delay + jitter)
                    .max(behind)
                    .max(self.stalled_until),
                channel,
                order: self.order,
                connection: self.connection,
                to,
                bytes,
            });
            return;
        }
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
                channel,
                order: self.order,
                connection: self.connection,
                to,
                bytes: bytes.clone(),
            });
        }
    }

    /// When the next frame arrives (none while a stream is partitioned).
    pub fn next_delivery(&self) -> Option<Instant> {
        if self.model == LinkModel::Stream && self.partitioned {
            return None;
        }
        self.flights.iter().map(|f| f.deliver_at).min()
    }

    /// A stream delivers nothing until `until`: what is in flight and what is sent meanwhile
    /// arrives then, in order.
    pub fn stall(&mut self, until: Instant) {
        self.stalled_until = self.stalled_until.max(until);
        for flight in &mut self.flights {
            flight.deliver_at = flight.deliver_at.max(until);
        }
    }

    /// Cuts or heals the path. A healed stream delivers what it held from `now` on.
    pub fn set_partitioned(&mut self, now: Instant, partitioned: bool) {
        if self.partitioned && !partitioned {
            self.stall(now);
        }
        self.partitioned = partitioned;
    }

    /// Frames due at `now`, in arrival order, for the current connection only.
    pub fn deliver(&mut self, now: Instant) -> Vec<(usize, Vec<u8>)> {
        if self.model == LinkModel::Stream && self.partitioned {
            return Vec::new();
        }
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
