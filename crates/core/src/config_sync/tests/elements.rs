//! Dynamic set elements in the pair: each node's sets hold elements with deadlines on the
//! virtual clock; the source's reads, the replica's applies.

use super::*;

const BLOCKLIST: &str = "inet filter blocklist";
const MINUTE: Duration = Duration::from_secs(60);

fn elements(sets: &[&str]) -> ElementsConfig {
    ElementsConfig {
        sets: sets.iter().map(|s| s.to_string()).collect(),
        interval: SECOND,
        refresh_slack: SECOND,
    }
}

impl Pair {
    /// An auto pair whose nodes replicate these dynamic sets.
    fn with_sets(sets: [&[&str]; 2]) -> Self {
        let mut pair = Self::auto();
        pair.nodes = [
            ConfigSync::new(config(Mode::Auto, 100)).with_elements(elements(sets[0])),
            ConfigSync::new(config(Mode::Auto, 200)).with_elements(elements(sets[1])),
        ];
        pair
    }

    pub(super) fn perform_elements(&mut self, n: usize, action: ElementAction) {
        let now = self.now;
        match action {
            ElementAction::Read { id, sets } => {
                let sets = sets
                    .into_iter()
                    .map(|set| {
                        let held = self.sets[n].get(&set).into_iter().flatten();
                        let live = held
                            .filter(|(_, (_, deadline))| deadline.is_none_or(|d| d > now))
                            .map(|(_, (entry, deadline))| ElementEntry {
                                expires_ms: deadline
                                    .map(|d| d.saturating_since(now).as_millis() as u64),
                                ..entry.clone()
                            })
                            .collect();
                        (set, Ok(live))
                    })
                    .collect();
                self.element_reads[n] += 1;
                let read = ElementsRead {
                    sets,
                    took: self.element_read_took,
                };
                self.nodes[n].handle_elements(now, id, read);
            }
            ElementAction::Apply { set, adds, removes } => {
                let held = self.sets[n].entry(set).or_default();
                for key in removes {
                    held.remove(&key);
                }
                for entry in adds {
                    let deadline = entry.expires_ms.map(|ms| now + Duration::from_millis(ms));
                    held.insert(entry.key.clone(), (entry, deadline));
                }
                self.nodes[n].handle_elements_applied(Ok(()));
            }
        }
    }

    /// The packet path adds (or refreshes) `key` on node `n` for `lifetime`.
    fn block(&mut self, n: usize, set: &str, key: &str, lifetime: Duration) {
        let entry = ElementEntry {
            key: key.into(),
            value: None,
            comment: None,
            timeout_ms: Some(lifetime.as_millis() as u64),
            expires_ms: None,
        };
        let deadline = Some(self.now + lifetime);
        let held = self.sets[n].entry(set.into()).or_default();
        held.insert(key.into(), (entry, deadline));
    }

    fn unblock(&mut self, n: usize, set: &str, key: &str) {
        self.sets[n].get_mut(set).map(|held| held.remove(key));
    }

    /// Node `n`'s deadline for `key`, if it holds it (expired or not).
    fn deadline(&self, n: usize, set: &str, key: &str) -> Option<Option<Instant>> {
        self.sets[n]
            .get(set)?
            .get(key)
            .map(|(_, deadline)| *deadline)
    }
}

#[test]
fn elements_reach_the_replica_with_their_remaining_lifetime() {
    let mut pair = Pair::with_sets([&[BLOCKLIST], &[BLOCKLIST]]);
    pair.block(0, BLOCKLIST, "192.0.2.1", 10 * MINUTE);
    pair.synchronized();
    pair.run_for(3 * SECOND);
    pair.block(0, BLOCKLIST, "192.0.2.2", 10 * MINUTE);
    let added_at = pair.now;
    pair.run_for(2 * SECOND);
    assert_eq!(
        pair.deadline(1, BLOCKLIST, "192.0.2.1"),
        Some(Some(Instant::ZERO + 10 * MINUTE))
    );
    assert_eq!(
        pair.deadline(1, BLOCKLIST, "192.0.2.2"),
        Some(Some(added_at + 10 * MINUTE))
    );
    assert_eq!(pair.nodes[0].stats().elements_sent, 2);
    assert_eq!(pair.nodes[1].stats().elements_received, 2);
    // Nothing changed: nothing more is sent, read after read.
    pair.run_for(30 * SECOND);
    assert_eq!(pair.nodes[0].stats().elements_sent, 2);
    // The replica never reads its sets.
    assert!(pair.sets[1].len() == 1 && pair.nodes[1].stats().elements_sent == 0);
}

#[test]
fn a_refresh_and_a_delete_on_the_source_reach_the_replica() {
    let mut pair = Pair::with_sets([&[BLOCKLIST], &[BLOCKLIST]]);
    pair.block(0, BLOCKLIST, "192.0.2.1", 10 * MINUTE);
    pair.block(0, BLOCKLIST, "192.0.2.2", 10 * MINUTE);
    pair.synchronized();
    pair.run_for(MINUTE);
    // Hit again: its lifetime starts over.
    pair.block(0, BLOCKLIST, "192.0.2.1", 10 * MINUTE);
    let refreshed_at = pair.now;
    pair.unblock(0, BLOCKLIST, "192.0.2.2");
    pair.run_for(2 * SECOND);
    assert_eq!(
        pair.deadline(1, BLOCKLIST, "192.0.2.1"),
        Some(Some(refreshed_at + 10 * MINUTE))
    );
    assert_eq!(pair.deadline(1, BLOCKLIST, "192.0.2.2"), None, "deleted");
    assert_eq!(pair.nodes[0].stats().elements_sent, 4);
}

/// An element that expires on the source is not sent (it expires on the replica too); the
/// control: one deleted before its expiry is.
#[test]
fn an_element_that_simply_expired_is_not_sent() {
    let mut pair = Pair::with_sets([&[BLOCKLIST], &[BLOCKLIST]]);
    pair.block(0, BLOCKLIST, "192.0.2.1", 10 * SECOND);
    pair.block(0, BLOCKLIST, "192.0.2.2", 10 * MINUTE);
    pair.synchronized();
    pair.run_for(30 * SECOND);
    assert_eq!(
        pair.nodes[0].stats().elements_sent,
        2,
        "the expiry sent nothing"
    );
    pair.unblock(0, BLOCKLIST, "192.0.2.2");
    pair.run_for(2 * SECOND);
    assert_eq!(pair.nodes[0].stats().elements_sent, 3, "the delete went");
    assert_eq!(pair.deadline(1, BLOCKLIST, "192.0.2.2"), None);
}

/// After a takeover the new source sends every element it holds once: the old source, now
/// the replica, gets what it lacked.
#[test]
fn a_takeover_sends_every_element_once() {
    let mut pair = Pair::with_sets([&[BLOCKLIST], &[BLOCKLIST]]);
    pair.block(0, BLOCKLIST, "192.0.2.1", 10 * MINUTE);
    pair.synchronized();
    pair.run_for(2 * SECOND);
    // Node 1 blocks an address of its own while it is the replica (e.g. by hand): never sent.
    pair.block(1, BLOCKLIST, "192.0.2.9", 10 * MINUTE);
    pair.run_for(2 * SECOND);
    assert_eq!(pair.deadline(0, BLOCKLIST, "192.0.2.9"), None);
    pair.link([Some(Part::Replica), Some(Part::Source)]);
    pair.run_for(2 * SECOND);
    assert_eq!(pair.nodes[1].stats().elements_sent, 2, "everything, once");
    assert!(pair.deadline(0, BLOCKLIST, "192.0.2.9").is_some());
    assert_eq!(
        pair.deadline(0, BLOCKLIST, "192.0.2.1"),
        Some(Some(Instant::ZERO + 10 * MINUTE)),
        "the element the old source sent keeps its deadline"
    );
    pair.run_for(30 * SECOND);
    assert_eq!(pair.nodes[1].stats().elements_sent, 2);
}

/// The replica applies only sets its own configuration names; the control: a named one in the
/// same run is applied.
#[test]
fn the_replica_refuses_sets_it_does_not_name() {
    let mut pair = Pair::with_sets([&[BLOCKLIST, "ip nat allow"], &[BLOCKLIST]]);
    pair.block(0, BLOCKLIST, "192.0.2.1", 10 * MINUTE);
    pair.block(0, "ip nat allow", "10.0.0.1", 10 * MINUTE);
    pair.synchronized();
    pair.run_for(2 * SECOND);
    assert!(pair.deadline(1, BLOCKLIST, "192.0.2.1").is_some());
    assert_eq!(pair.deadline(1, "ip nat allow", "10.0.0.1"), None);
    assert_eq!(pair.nodes[1].stats().elements_refused, 1);
    assert_eq!(pair.nodes[1].stats().elements_received, 1);
}

/// No reads and no elements unless the source has a comparable replica: not with other
/// versions (control: the same pair with equal versions replicates).
#[test]
fn nothing_is_read_or_sent_without_a_comparable_replica() {
    for equal in [true, false] {
        let mut pair = Pair::with_sets([&[BLOCKLIST], &[BLOCKLIST]]);
        if !equal {
            let mut other = config(Mode::Auto, 200);
            other.versions = versions("nftables v1.1.0");
            pair.nodes[1] = ConfigSync::new(other).with_elements(elements(&[BLOCKLIST]));
        }
        pair.block(0, BLOCKLIST, "192.0.2.1", 10 * MINUTE);
        pair.synchronized();
        pair.run_for(5 * SECOND);
        assert_eq!(pair.deadline(1, BLOCKLIST, "192.0.2.1").is_some(), equal);
        assert_eq!(pair.nodes[0].stats().elements_sent, u64::from(equal));
        if !equal {
            assert_eq!(pair.nodes[0].poll_element_action(), None);
        }
    }
    // Not linked: no reads either.
    let mut pair = Pair::with_sets([&[BLOCKLIST], &[BLOCKLIST]]);
    pair.run_for(5 * SECOND);
    assert_eq!(pair.nodes[0].poll_timeout(), None);
}

/// A read that takes long widens the interval to READ_COST_FACTOR times its duration, so
/// reading costs at most a fifth of the time; a quick one keeps the configured interval (the
/// control).
#[test]
fn slow_reads_widen_the_interval() {
    for (took, reads) in [(Duration::ZERO, 60), (3 * SECOND, 4)] {
        let mut pair = Pair::with_sets([&[BLOCKLIST], &[BLOCKLIST]]);
        pair.element_read_took = took;
        pair.synchronized();
        let before = pair.element_reads[0];
        pair.run_for(60 * SECOND);
        assert_eq!(
            pair.element_reads[0] - before,
            reads,
            "reads taking {took:?}"
        );
        assert_eq!(pair.element_reads[1], 0, "the replica never reads");
    }
}
