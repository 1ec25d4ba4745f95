//! Anti-entropy: the peer's digests of its sessions compared with ours, and drift repaired by a
//! resync.

use failoverd_wire::DIGEST_BUCKETS;

use super::Node;
use super::types::Digest;
use crate::event::Event;
use crate::time::Instant;
use crate::timer::Timer;

impl Node {
    /// Anti-entropy: a bucket whose sums differ in two comparisons in a row, with neither
    /// node's sum changed in between, holds drift that no event reported (a change lost, an
    /// entry changed behind the daemon's back); buckets that keep changing hold sessions on
    /// their way and are left to the stream. Drift is repaired by a resync of the peer's
    /// sessions (bulk sync and sweep).
    pub(super) fn compare_digests(&mut self, now: Instant, theirs: Box<Digest>, ours: Box<Digest>) {
        let peer_epoch = self.peer.as_ref().map(|p| p.hello.epoch);
        let Some(session) = self.state.session_mut() else {
            return;
        };
        self.stats.digests_compared += 1;
        let drifted = match &session.last_comparison {
            Some((last_theirs, last_ours)) => (0..DIGEST_BUCKETS)
                .filter(|&b| {
                    theirs[b] != ours[b] && last_theirs[b] == theirs[b] && last_ours[b] == ours[b]
                })
                .count(),
            None => 0,
        };
        if drifted == 0 {
            session.last_comparison = Some((theirs, ours));
            return;
        }
        session.last_comparison = None;
        session.resync_requested = peer_epoch;
        self.stats.drift_repairs += 1;
        self.emit(now, Event::DriftFound { buckets: drifted });
        self.hello_due = true;
    }

    /// The peer's waiting digest becomes the one to compare, if one digest interval passed
    /// since the last did; otherwise it waits for that.
    pub(super) fn promote_peer_digest(&mut self, now: Instant) {
        let Some(session) = self.state.session_mut() else {
            return;
        };
        if now < session.peer_digest_after {
            self.timers
                .set(Timer::PeerDigest, session.peer_digest_after);
            return;
        }
        let Some(digest) = session.peer_digest_waiting.take() else {
            return;
        };
        // One still not compared (the backend was busy) is older than this one.
        if session.peer_digest.replace(digest).is_some() {
            self.stats.digests_dropped += 1;
        }
        session.peer_digest_after = now + self.config.digest_interval;
        self.drive_backend();
    }
}
