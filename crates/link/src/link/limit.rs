//! What a host that reaches the failover port can make this node spend: log lines and
//! handshakes. Both limiters take `now` as an argument (no clock inside), so their tests run on
//! a made-up timeline.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What a log line is about: lines with the same key and kind are coalesced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum LogKey {
    /// A connection from this address (or to it). Another address than the peer's has only
    /// one kind of refusal, so a flood from it costs one line per interval; the peer's address
    /// gets one line per kind, so that a passing "connection reset" does not hide a wrong key.
    Source(IpAddr),
    /// A local condition (accept failed, dial timed out).
    Local(&'static str),
}

/// At most one log line per key, kind and interval, and one summary line per interval of what
/// was suppressed, by kind. Memory is bounded: past `max_keys` keys that have logged within the
/// interval, further keys are suppressed (and still counted in the summary).
#[derive(Debug)]
pub(super) struct LogLimiter {
    interval: Duration,
    max_keys: usize,
    /// When each key and kind last logged, and how many of its lines were suppressed since.
    last: HashMap<(LogKey, &'static str), (Instant, u64)>,
    /// Lines suppressed since the last summary, by kind.
    suppressed: BTreeMap<&'static str, u64>,
    /// When the current summary window opened.
    window: Instant,
}

impl LogLimiter {
    pub(super) fn new(interval: Duration, max_keys: usize, now: Instant) -> Self {
        LogLimiter {
            interval,
            max_keys,
            last: HashMap::new(),
            suppressed: BTreeMap::new(),
            window: now,
        }
    }

    /// `Some(lines of this key suppressed since its previous line)` if a line may be logged
    /// now; `None` (counted under `kind`) if not.
    pub(super) fn allow(&mut self, key: LogKey, kind: &'static str, now: Instant) -> Option<u64> {
        let key = (key, kind);
        if !self.last.contains_key(&key) && self.last.len() >= self.max_keys {
            let interval = self.interval;
            self.last
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < interval);
        }
        let room = self.last.len() < self.max_keys;
        match self.last.get_mut(&key) {
            Some((at, suppressed)) if now.saturating_duration_since(*at) < self.interval => {
                *suppressed += 1;
            }
            Some((at, suppressed)) => {
                *at = now;
                return Some(std::mem::take(suppressed));
            }
            None if room => {
                self.last.insert(key, (now, 0));
                return Some(0);
            }
            None => {}
        }
        *self.suppressed.entry(kind).or_default() += 1;
        None
    }

    /// Once the interval since the previous summary has passed: what was suppressed in it, by
    /// kind (`None` when nothing was, or the interval has not passed).
    pub(super) fn summary(&mut self, now: Instant) -> Option<BTreeMap<&'static str, u64>> {
        if now.saturating_duration_since(self.window) < self.interval {
            return None;
        }
        self.window = now;
        (!self.suppressed.is_empty()).then(|| std::mem::take(&mut self.suppressed))
    }
}

/// A token bucket: `burst` at once, then `per_second` on average.
#[derive(Debug)]
pub(super) struct TokenBucket {
    per_second: u32,
    burst: u32,
    /// Tokens in thousandths, so that refilling at any rate loses nothing to rounding.
    milli_tokens: u64,
    at: Instant,
}

impl TokenBucket {
    pub(super) fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            per_second,
            burst,
            milli_tokens: u64::from(burst) * 1000,
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        let refill = elapsed.as_millis() as u64 * u64::from(self.per_second);
        self.milli_tokens = (self.milli_tokens + refill).min(u64::from(self.burst) * 1000);
        // Advance by what was credited only, so sub-millisecond remainders are not lost.
        self.at += Duration::from_millis(elapsed.as_millis() as u64);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);

    fn ip(last: u8) -> LogKey {
        LogKey::Source(IpAddr::from([127, 0, 1, last]))
    }

    #[test]
    fn one_line_per_source_and_interval_then_a_summary() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut log = LogLimiter::new(INTERVAL, 1024, t0);
        // 1,000 refusals from each of 3 sources over 9.9 s: one line each.
        let mut lines = 0;
        for i in 0..3000u64 {
            if log.allow(ip((i % 3) as u8), "source", at(i * 3)).is_some() {
                lines += 1;
            }
        }
        assert_eq!(lines, 3);
        assert_eq!(
            log.allow(LogKey::Local("dial timeout"), "dial", at(9000)),
            Some(0)
        );
        // Another kind of refusal from a source that already logged: a line of its own.
        assert_eq!(log.allow(ip(0), "wrong key", at(9000)), Some(0));
        assert_eq!(log.allow(ip(0), "wrong key", at(9001)), None);
        assert_eq!(log.summary(at(9999)), None, "not before the interval");
        let summary = log.summary(at(10_000)).expect("something was suppressed");
        assert_eq!(
            summary.into_iter().collect::<Vec<_>>(),
            [("source", 2997), ("wrong key", 1)]
        );
        assert_eq!(log.summary(at(20_000)), None, "nothing suppressed since");
        // The next line of a source reports what it suppressed.
        assert_eq!(log.allow(ip(0), "source", at(10_000)), Some(999));
        assert_eq!(log.allow(ip(0), "source", at(10_001)), None);
    }

    #[test]
    fn a_flood_from_many_sources_is_bounded_by_max_keys() {
        let t0 = Instant::now();
        let mut log = LogLimiter::new(INTERVAL, 16, t0);
        let lines = (0..=255u8)
            .filter(|&n| log.allow(ip(n), "source", t0).is_some())
            .count();
        assert_eq!(lines, 16);
        // Once the interval has passed, old keys make room for new ones.
        let later = t0 + INTERVAL;
        assert_eq!(log.allow(ip(200), "source", later), Some(0));
        assert_eq!(log.summary(later).expect("summary")["source"], 240);
    }

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(8, 16, t0);
        assert_eq!((0..100).filter(|_| bucket.take(t0)).count(), 16);
        // 8 per second: one token every 125 ms, none lost to rounding at 1 ms steps.
        let taken = (1..=1000u64)
            .filter(|&ms| bucket.take(t0 + Duration::from_millis(ms)))
            .count();
        assert_eq!(taken, 8);
        // Refill is capped at the burst.
        let much_later = t0 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| bucket.take(much_later)).count(), 16);
    }
}
