//! Dynamic set elements: runtime state (a blocklist the packet path fills with timeouts),
//! replicated like sessions rather than as configuration.
//!
//! The packet path adds elements without a netlink event, so the source reads its dynamic sets
//! at an interval ([`ElementAction::Read`]) and a [`Tracker`] turns each read into what the
//! replica lacks: elements that are new, whose value, comment or timeout changed, or whose
//! expiry was refreshed (more lifetime left than the previous read predicts), and keys deleted
//! before their expiry. An element that simply expired is sent nothing for: it expires on the
//! replica too. The first read after the source became ready (a new link, a takeover, versions
//! that now match) sends every element once.
//!
//! Sending needs this node to be the source, in Synchronization, with a peer that offered as
//! the replica with the same versions. The replica applies ([`ElementAction::Apply`]) only
//! sets its own configuration names as dynamic.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use failoverd_wire::{ConfigSyncMessage, ElementEntry, MAX_ELEMENTS, SetElements};

use super::{ActionId, ConfigSync};
use crate::time::Instant;

/// A read of the dynamic sets may take at most this share of the time between reads (one
/// fifth: about 20 % of a core for the `nft` runs): the wait after a read is at least this many
/// times its duration.
pub const READ_COST_FACTOR: u32 = 5;

/// Element sync's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementsConfig {
    /// The dynamic sets this node's configuration names, each `family table set`. The source
    /// reads them; the replica applies no other.
    pub sets: Vec<String>,
    /// The shortest wait between two reads on the source (the wait is also at least
    /// [`READ_COST_FACTOR`] times the last read's duration).
    pub interval: Duration,
    /// An element whose remaining lifetime exceeds the previous read's prediction by more than
    /// this (plus the read's own duration) was refreshed, and one gone within it of its
    /// predicted expiry expired.
    pub refresh_slack: Duration,
}

/// Element work for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementAction {
    /// Read these sets' elements with their remaining lifetimes; then
    /// [`super::ConfigSync::handle_elements`].
    Read {
        /// For the result.
        id: ActionId,
        /// `family table set` each.
        sets: Vec<String>,
    },
    /// Delete `removes` (those present), then add `adds` to `set` (an element present is
    /// replaced, its expiry with it); then [`super::ConfigSync::handle_elements_applied`].
    Apply {
        /// `family table set`, one this node names.
        set: String,
        /// Elements to add or replace, each with what was left of its lifetime at the source.
        adds: Vec<ElementEntry>,
        /// Keys to delete.
        removes: Vec<String>,
    },
}

/// The result of [`ElementAction::Read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementsRead {
    /// Per set, its elements or the reader's error.
    pub sets: Vec<(String, Result<Vec<ElementEntry>, String>)>,
    /// How long the read took: the next waits at least [`READ_COST_FACTOR`] times this.
    pub took: Duration,
}

/// The machine's element state.
#[derive(Debug, Default)]
pub(super) struct ElementSync {
    config: Option<ElementsConfig>,
    tracker: Tracker,
    reading: Option<ActionId>,
    /// When the source reads next (set while it is ready and no read is under way).
    next_read: Option<Instant>,
    actions: VecDeque<ElementAction>,
}

impl ElementSync {
    /// Forgets what the replica was sent (a new link, a takeover).
    pub(super) fn reset(&mut self) {
        self.tracker.reset();
    }

    /// The source's next read, if one is scheduled.
    pub(super) fn timeout(&self) -> Option<Instant> {
        self.next_read
    }
}

impl ConfigSync {
    /// The machine with dynamic set elements replicated for `config.sets` (without this call,
    /// none are: the replica refuses every element).
    pub fn with_elements(mut self, mut config: ElementsConfig) -> Self {
        config.sets.sort();
        config.sets.dedup();
        self.elements.config = Some(config);
        self
    }

    /// The next element read or apply for the daemon.
    pub fn poll_element_action(&mut self) -> Option<ElementAction> {
        self.elements.actions.pop_front()
    }

    /// The result of [`ElementAction::Read`]: each set's changes go to the replica, if this
    /// node still sends.
    pub fn handle_elements(&mut self, now: Instant, id: ActionId, read: ElementsRead) {
        if self.elements.reading != Some(id) {
            return;
        }
        self.elements.reading = None;
        let Some(config) = self.elements.config.clone() else {
            return;
        };
        let wait = config.interval.max(read.took * READ_COST_FACTOR);
        self.elements.next_read = Some(now + wait);
        if !self.elements_source_ready() {
            return;
        }
        for (set, elements) in read.sets {
            let elements = match elements {
                Ok(elements) => elements,
                Err(_) => {
                    // Its baseline stays: the next read that works compares with it.
                    self.stats.element_reads_failed += 1;
                    continue;
                }
            };
            let changes =
                self.elements
                    .tracker
                    .read(now, read.took, &set, elements, config.refresh_slack);
            self.stats.elements_unsendable += changes.unsendable;
            for message in messages(&set, changes) {
                self.stats.elements_sent += (message.adds.len() + message.removes.len()) as u64;
                self.transmits
                    .push_back(ConfigSyncMessage::Elements(message));
            }
        }
        self.step(now);
    }

    /// The result of [`ElementAction::Apply`]: counted when it failed (the message is the
    /// daemon's to log).
    pub fn handle_elements_applied(&mut self, result: Result<(), String>) {
        if result.is_err() {
            self.stats.element_applies_failed += 1;
        }
    }

    /// The source sends elements: in Synchronization, with a peer that offered as the replica
    /// with the same versions, and sets to read.
    fn elements_source_ready(&self) -> bool {
        self.comparable_replica()
            && self
                .elements
                .config
                .as_ref()
                .is_some_and(|c| !c.sets.is_empty())
    }

    /// Schedules the source's reads while it is ready, and forgets what was sent while it is
    /// not (the replica may miss changes meanwhile: the next ready read sends everything).
    pub(super) fn step_elements(&mut self, now: Instant) {
        if !self.elements_source_ready() {
            self.elements.tracker.reset();
            self.elements.next_read = None;
            return;
        }
        if self.elements.reading.is_some() {
            return;
        }
        let due = *self.elements.next_read.get_or_insert(now);
        if due <= now {
            let id = ActionId(self.next_id());
            let sets = self
                .elements
                .config
                .as_ref()
                .map(|c| c.sets.clone())
                .unwrap_or_default();
            self.elements.reading = Some(id);
            self.elements.next_read = None;
            self.elements
                .actions
                .push_back(ElementAction::Read { id, sets });
        }
    }

    /// Elements from the peer: applied if this node is the replica of a source with the same
    /// versions and names the set.
    pub(super) fn receive_elements(&mut self, message: SetElements) {
        let entries = (message.adds.len() + message.removes.len()) as u64;
        let from_source = self.comparable_source();
        if !from_source {
            self.stats.unexpected_messages += 1;
            return;
        }
        let named = self
            .elements
            .config
            .as_ref()
            .is_some_and(|c| c.sets.binary_search(&message.set).is_ok());
        if !named {
            self.stats.elements_refused += entries;
            return;
        }
        self.stats.elements_received += entries;
        self.elements.actions.push_back(ElementAction::Apply {
            set: message.set,
            adds: message.adds,
            removes: message.removes,
        });
    }
}

/// What the source last told the replica of one element.
#[derive(Debug, Clone)]
struct Sent {
    entry: ElementEntry,
    /// When it expires, as the read that sent or last saw it predicts.
    deadline: Option<Instant>,
}

impl Sent {
    fn new(now: Instant, entry: ElementEntry) -> Self {
        let deadline = entry.expires_ms.map(|ms| now + Duration::from_millis(ms));
        Self { entry, deadline }
    }

    /// Whether `now`'s copy says something the replica does not know: other fields, or a
    /// lifetime refreshed beyond the prediction by more than `slack`.
    fn outdated_by(&self, fresh: &Self, slack: Duration) -> bool {
        let (a, b) = (&self.entry, &fresh.entry);
        if (&a.value, &a.comment, a.timeout_ms) != (&b.value, &b.comment, b.timeout_ms) {
            return true;
        }
        match (self.deadline, fresh.deadline) {
            (Some(old), Some(new)) => new > old + slack,
            (None, None) => false,
            _ => true,
        }
    }
}

/// The source's view of what the replica holds of each dynamic set.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    /// Per set, the elements sent or seen since the source became ready; absent: nothing
    /// sent yet (the next read sends every element).
    sets: BTreeMap<String, BTreeMap<String, Sent>>,
}

/// What one read of a set means for the replica.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Changes {
    pub(super) adds: Vec<ElementEntry>,
    pub(super) removes: Vec<String>,
    /// Elements that cannot travel (a text beyond the wire's limits): left out.
    pub(super) unsendable: u64,
}

impl Tracker {
    /// Forgets what was sent: the next read of every set sends all its elements.
    pub(super) fn reset(&mut self) {
        self.sets.clear();
    }

    /// Compares a read of `set` made by `now` (over `took`) with what was sent, and takes it as
    /// what the replica holds once the changes are sent.
    pub(super) fn read(
        &mut self,
        now: Instant,
        took: Duration,
        set: &str,
        elements: Vec<ElementEntry>,
        slack: Duration,
    ) -> Changes {
        // The listing was made somewhere within the read: its predictions are that uncertain.
        let slack = slack + took;
        let mut changes = Changes::default();
        let mut fresh = BTreeMap::new();
        for entry in elements {
            if entry.check().is_err() {
                changes.unsendable += 1;
                continue;
            }
            fresh.insert(entry.key.clone(), Sent::new(now, entry));
        }
        let Some(known) = self.sets.get(set) else {
            changes.adds = fresh.values().map(|s| s.entry.clone()).collect();
            self.sets.insert(set.to_owned(), fresh);
            return changes;
        };
        for (key, seen) in &fresh {
            if known
                .get(key)
                .is_none_or(|sent| sent.outdated_by(seen, slack))
            {
                changes.adds.push(seen.entry.clone());
            }
        }
        for (key, sent) in known {
            let expired = sent.deadline.is_some_and(|at| at <= now + slack);
            if !fresh.contains_key(key) && !expired {
                changes.removes.push(key.clone());
            }
        }
        // An element not refreshed keeps its predicted deadline; the fresh one is what a
        // later read compares with otherwise.
        let mut next = fresh;
        for (key, seen) in &mut next {
            if let Some(sent) = known.get(key)
                && !sent.outdated_by(seen, slack)
            {
                *seen = sent.clone();
            }
        }
        self.sets.insert(set.to_owned(), next);
        changes
    }
}

/// `changes` of `set` as messages of at most [`MAX_ELEMENTS`] entries each (removes first:
/// an add and a remove of one key cannot both be in one read).
pub(super) fn messages(set: &str, changes: Changes) -> Vec<SetElements> {
    let mut out = Vec::new();
    let mut removes = changes.removes.into_iter().peekable();
    let mut adds = changes.adds.into_iter().peekable();
    while removes.peek().is_some() || adds.peek().is_some() {
        let removes: Vec<String> = removes.by_ref().take(MAX_ELEMENTS).collect();
        let adds = adds.by_ref().take(MAX_ELEMENTS - removes.len()).collect();
        out.push(SetElements {
            set: set.to_owned(),
            adds,
            removes,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLACK: Duration = Duration::from_secs(1);

    fn element(key: &str, expires_s: Option<u64>) -> ElementEntry {
        ElementEntry {
            key: key.into(),
            value: None,
            comment: None,
            timeout_ms: None,
            expires_ms: expires_s.map(|s| s * 1000),
        }
    }

    fn at(s: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(s)
    }

    fn keys(entries: &[ElementEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn new_refreshed_and_deleted_elements_are_changes_and_expired_ones_are_not() {
        let mut tracker = Tracker::default();
        let first = tracker.read(
            at(0),
            Duration::ZERO,
            "ip t s",
            vec![
                element("a", Some(600)),
                element("b", Some(600)),
                element("c", Some(10)),
                element("d", None),
            ],
            SLACK,
        );
        assert_eq!(
            keys(&first.adds),
            ["a", "b", "c", "d"],
            "the first read sends all"
        );
        // 20 s later: a aged as predicted, b refreshed to 600 s, c expired, d deleted (no
        // expiry), e new.
        let later = tracker.read(
            at(20),
            Duration::ZERO,
            "ip t s",
            vec![
                element("a", Some(580)),
                element("b", Some(600)),
                element("e", Some(60)),
            ],
            SLACK,
        );
        assert_eq!(keys(&later.adds), ["b", "e"]);
        assert_eq!(later.removes, ["d"]);
        // a deleted long before its expiry goes; nothing changed is nothing sent.
        let gone = tracker.read(
            at(30),
            Duration::ZERO,
            "ip t s",
            vec![element("b", Some(590)), element("e", Some(50))],
            SLACK,
        );
        assert_eq!((gone.adds, gone.removes), (vec![], vec!["a".to_string()]));
    }

    /// Aging within the slack is no refresh; a refresh just above it is (the control).
    #[test]
    fn a_refresh_is_a_lifetime_clearly_above_the_prediction() {
        for (expires_ms, took, refreshed) in [
            (590_000 + 1000, Duration::ZERO, false),
            (590_000 + 1001, Duration::ZERO, true),
            (590_000 + 1500, Duration::from_secs(1), false),
        ] {
            let mut tracker = Tracker::default();
            tracker.read(at(0), took, "s", vec![element("a", Some(600))], SLACK);
            let mut again = element("a", None);
            again.expires_ms = Some(expires_ms);
            let changes = tracker.read(at(10), took, "s", vec![again], SLACK);
            assert_eq!(
                changes.adds.len() == 1,
                refreshed,
                "{expires_ms} ms, {took:?}"
            );
        }
    }

    /// An element re-read without a refresh keeps the prediction of the read that sent it, so
    /// small extensions add up until the replica's copy is more than the slack behind, and
    /// then it is sent.
    #[test]
    fn small_extensions_add_up_against_what_was_sent() {
        let mut tracker = Tracker::default();
        tracker.read(
            at(0),
            Duration::ZERO,
            "s",
            vec![element("a", Some(600))],
            SLACK,
        );
        let mut sent_at = Vec::new();
        for step in 1..=6 {
            // Each read says 0.4 s more than the one before predicts.
            let mut entry = element("a", None);
            entry.expires_ms = Some(600_000 - step * 10_000 + step * 400);
            let changes = tracker.read(at(step * 10), Duration::ZERO, "s", vec![entry], SLACK);
            if !changes.adds.is_empty() {
                sent_at.push(step);
            }
        }
        assert_eq!(sent_at, [3, 6]);
    }

    #[test]
    fn changed_fields_and_unsendable_elements() {
        let mut tracker = Tracker::default();
        let mut long = element("x", None);
        long.key = "k".repeat(300);
        let first = tracker.read(
            at(0),
            Duration::ZERO,
            "m",
            vec![element("a", None), long],
            SLACK,
        );
        assert_eq!((first.adds.len(), first.unsendable), (1, 1));
        let mut valued = element("a", None);
        valued.value = Some("drop".into());
        let changes = tracker.read(at(1), Duration::ZERO, "m", vec![valued], SLACK);
        assert_eq!(keys(&changes.adds), ["a"]);
        tracker.reset();
        let again = tracker.read(at(2), Duration::ZERO, "m", vec![element("a", None)], SLACK);
        assert_eq!(keys(&again.adds), ["a"], "after a reset everything is sent");
    }

    #[test]
    fn messages_hold_at_most_max_elements_entries() {
        let changes = Changes {
            adds: (0..MAX_ELEMENTS + 5)
                .map(|i| element(&i.to_string(), None))
                .collect(),
            removes: vec!["r".into(); 10],
            unsendable: 0,
        };
        let out = messages("s", changes);
        let sizes: Vec<(usize, usize)> = out
            .iter()
            .map(|m| (m.removes.len(), m.adds.len()))
            .collect();
        assert_eq!(sizes, [(10, MAX_ELEMENTS - 10), (0, 15)]);
        assert!(messages("s", Changes::default()).is_empty());
    }
}
