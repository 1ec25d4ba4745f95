//! The node's clock: the one place the daemon turns the monotonic clock into the core's
//! [`Instant`], shared by the driver, the hello thread and the VRRP task.

use std::time::Duration;

use failoverd_core::Instant;

/// The node's clock: nanoseconds since the driver started, read from the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }

    /// The core's `now`.
    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.origin.elapsed().as_nanos() as u64)
    }

    /// The core's instant of a monotonic `at` (zero if before the start).
    pub fn at(&self, at: std::time::Instant) -> Instant {
        let since = tokio::time::Instant::from_std(at).saturating_duration_since(self.origin);
        Instant::from_nanos(since.as_nanos() as u64)
    }

    /// The monotonic instant of a core deadline.
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.origin + Duration::from_nanos(at.as_nanos())
    }
}
