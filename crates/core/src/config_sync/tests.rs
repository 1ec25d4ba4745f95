//! Two config-sync machines on a virtual clock, joined by a link that can lose, duplicate and
//! hold messages, each with an in-memory "kernel" of units that can refuse applies.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use failoverd_wire::{
    ConfigSyncMessage, ConfigVersions, ElementEntry, SyncOutcome, UnitId, UnitKind,
};

use super::*;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

fn table(name: &str) -> UnitId {
    UnitId {
        kind: UnitKind::Nftables,
        name: name.into(),
    }
}

fn versions(nft: &str) -> ConfigVersions {
    ConfigVersions {
        failoverd: "0.1.0".into(),
        schema: 1,
        backends: vec![(UnitKind::Nftables, nft.into())],
    }
}

fn config(mode: Mode, seed: u64) -> ConfigSyncConfig {
    ConfigSyncConfig {
        mode,
        units: vec![table("inet filter"), table("ip nat")],
        versions: versions("nftables v1.0.6"),
        compare_interval: 10 * SECOND,
        repair_after: 3,
        max_unit_bytes: 16 << 20,
        confirm_window: 300 * MS,
        retry_after: 5 * SECOND,
        coalesce: 100 * MS,
        seed,
    }
}

type Units = BTreeMap<UnitId, Vec<u8>>;

/// How a kernel stores what it is given.
type Rewrite = fn(&[u8]) -> Vec<u8>;

struct Pair {
    now: Instant,
    nodes: [ConfigSync; 2],
    /// Each node's units as its kernel holds them (absent: not in the map).
    kernels: [Units; 2],
    /// An apply on node n fails with this message.
    refuse: [Option<String>; 2],
    /// Node n's kernel stores what it is given in another form.
    stores_as: [Option<Rewrite>; 2],
    /// Messages on their way: (to, message).
    wire: VecDeque<(usize, ConfigSyncMessage)>,
    /// Decides the fate of each message: `Keep`, `Drop` or `Twice`.
    fate: Box<dyn FnMut(&ConfigSyncMessage) -> Fate>,
    events: [Vec<ConfigSyncEvent>; 2],
    /// Each node's dynamic sets: per set, per key, the element and its deadline.
    sets: [Sets; 2],
    /// How long each read of the dynamic sets says it took, and how many were made.
    element_read_took: Duration,
    element_reads: [u32; 2],
}

type Sets = BTreeMap<String, BTreeMap<String, (ElementEntry, Option<Instant>)>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Drop,
    Twice,
}

impl Pair {
    fn new(a: ConfigSyncConfig, b: ConfigSyncConfig) -> Self {
        Self {
            now: Instant::ZERO,
            nodes: [ConfigSync::new(a), ConfigSync::new(b)],
            kernels: [Units::new(), Units::new()],
            refuse: [None, None],
            stores_as: [None, None],
            wire: VecDeque::new(),
            fate: Box::new(|_| Fate::Keep),
            events: [Vec::new(), Vec::new()],
            sets: [Sets::new(), Sets::new()],
            element_read_took: Duration::ZERO,
            element_reads: [0, 0],
        }
    }

    fn auto() -> Self {
        Self::new(config(Mode::Auto, 100), config(Mode::Auto, 200))
    }

    fn set(&mut self, node: usize, unit: &str, content: &str) {
        self.kernels[node].insert(table(unit), content.as_bytes().to_vec());
    }

    fn link(&mut self, parts: [Option<Part>; 2]) {
        for (n, part) in parts.into_iter().enumerate() {
            let now = self.now;
            self.nodes[n].set_link(now, part);
        }
        self.pump();
    }

    /// Node 0 the source, node 1 the replica.
    fn synchronized(&mut self) {
        self.link([Some(Part::Source), Some(Part::Replica)]);
    }

    fn readback(&self, node: usize, units: &[UnitId]) -> Vec<(UnitId, Readback)> {
        units
            .iter()
            .map(|u| (u.clone(), Ok(self.kernels[node].get(u).cloned())))
            .collect()
    }

    /// Moves messages and performs actions until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for n in 0..2 {
                while let Some(action) = self.nodes[n].poll_action() {
                    moved = true;
                    self.perform(n, action);
                }
                while let Some(action) = self.nodes[n].poll_element_action() {
                    moved = true;
                    self.perform_elements(n, action);
                }
                while let Some(message) = self.nodes[n].poll_transmit() {
                    moved = true;
                    match (self.fate)(&message) {
                        Fate::Keep => self.wire.push_back((1 - n, message)),
                        Fate::Drop => {}
                        Fate::Twice => {
                            self.wire.push_back((1 - n, message.clone()));
                            self.wire.push_back((1 - n, message));
                        }
                    }
                }
                while let Some(event) = self.nodes[n].poll_event() {
                    self.events[n].push(event);
                }
            }
            if let Some((to, message)) = self.wire.pop_front() {
                moved = true;
                let now = self.now;
                self.nodes[to].handle_message(now, message);
            }
            if !moved {
                return;
            }
        }
    }

    fn perform(&mut self, n: usize, action: ConfigAction) {
        let now = self.now;
        match action {
            ConfigAction::Read { id, units } => {
                let result = self.readback(n, &units);
                self.nodes[n].handle_read(now, id, result);
            }
            ConfigAction::Apply { id, units } => {
                let ids: Vec<UnitId> = units.iter().map(|(u, _)| u.clone()).collect();
                let result = match &self.refuse[n] {
                    Some(message) => Err(ApplyFailed {
                        unit: ids.first().cloned(),
                        message: message.clone(),
                    }),
                    None => {
                        let previous = self
                            .readback(n, &ids)
                            .into_iter()
                            .map(|(u, c)| (u, c.unwrap()))
                            .collect();
                        for (unit, content) in units {
                            match content {
                                Some(bytes) => {
                                    let stored =
                                        self.stores_as[n].map_or(bytes.clone(), |f| f(&bytes));
                                    self.kernels[n].insert(unit, stored)
                                }
                                None => self.kernels[n].remove(&unit),
                            };
                        }
                        Ok(Applied {
                            previous,
                            readback: self.readback(n, &ids),
                        })
                    }
                };
                self.nodes[n].handle_applied(now, id, result);
            }
        }
    }

    /// Advances the clock to `until`, firing timers on the way.
    fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        loop {
            self.pump();
            let next = self.nodes.iter().filter_map(ConfigSync::poll_timeout).min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    for n in 0..2 {
                        let now = self.now;
                        self.nodes[n].handle_timeout(now);
                    }
                }
                _ => break,
            }
        }
        self.now = until;
        self.pump();
    }

    fn changed(&mut self, node: usize) {
        let now = self.now;
        self.nodes[node].local_changed(now);
    }

    fn status(&self, node: usize) -> (SyncStatus, StatusReason) {
        let (status, reason) = self.nodes[node].status();
        (status, reason.clone())
    }

    fn in_sync(&self) -> bool {
        self.kernels[0] == self.kernels[1]
    }
}

#[test]
fn a_rejoin_with_equal_units_sends_nothing() {
    for equal in [true, false] {
        let mut pair = Pair::auto();
        for n in 0..2 {
            pair.set(n, "inet filter", "table inet filter { chain input { } }");
        }
        if !equal {
            pair.set(1, "ip nat", "table ip nat { }");
        }
        pair.synchronized();
        let sent = pair.nodes[0].stats().units_sent;
        if equal {
            assert_eq!(sent, 0, "equal units were sent");
            assert_eq!(pair.status(0), (SyncStatus::Auto, StatusReason::InSync));
            assert_eq!(pair.status(1), (SyncStatus::Auto, StatusReason::Following));
        } else {
            // The control: the replica's extra table goes, in one full sync.
            assert_eq!(sent, 1);
            assert_eq!(pair.nodes[0].stats().full_syncs, 1);
            assert!(pair.in_sync(), "{:?}", pair.kernels);
            assert!(!pair.kernels[1].contains_key(&table("ip nat")));
        }
    }
}

#[test]
fn a_change_on_the_source_reaches_the_replica_and_is_hashed_from_its_readback() {
    let mut pair = Pair::auto();
    pair.synchronized();
    pair.set(
        0,
        "inet filter",
        "table inet filter { chain input { tcp dport 22 accept } }",
    );
    pair.changed(0);
    pair.run_for(200 * MS);
    assert!(pair.in_sync());
    assert_eq!(pair.nodes[0].stats().incremental_syncs, 1);
    let view = pair.nodes[0].units();
    let filter = view.iter().find(|u| u.id == table("inet filter")).unwrap();
    assert_eq!(filter.local, filter.peer);
    assert!(matches!(
        filter.last_result,
        Some(UnitResult {
            outcome: SyncOutcome::Applied,
            ..
        })
    ));
    // The replica's answer carries the hash of its own kernel's read-back: a kernel that
    // stores the rules differently shows as a difference, not as a success.
    let mut pair = Pair::auto();
    pair.stores_as[1] = Some(|bytes| [bytes, b" # as stored"].concat());
    pair.synchronized();
    pair.set(0, "inet filter", "table inet filter { }");
    pair.changed(0);
    pair.run_for(SECOND);
    let filter = pair.nodes[0]
        .units()
        .into_iter()
        .find(|u| u.id == table("inet filter"))
        .unwrap();
    assert_ne!(filter.local, filter.peer);
    assert!(
        matches!(
            &filter.last_result,
            Some(UnitResult { outcome: SyncOutcome::Failed, message, .. }) if message.contains("read-back differs")
        ),
        "{:?}",
        filter.last_result
    );
}

#[test]
fn drift_on_the_replica_is_repaired_in_auto_mode_and_reported_in_manual_mode() {
    for mode in [Mode::Auto, Mode::Manual] {
        let mut pair = Pair::new(config(mode, 100), config(mode, 200));
        for n in 0..2 {
            pair.set(n, "inet filter", "table inet filter { }");
        }
        pair.synchronized();
        // Someone edits the standby: drift, never sent back.
        pair.set(1, "inet filter", "table inet filter { chain sneaky { } }");
        pair.changed(1);
        pair.run_for(200 * MS);
        assert_eq!(
            pair.nodes[1].stats().units_sent,
            0,
            "the replica sent its units"
        );
        assert!(!pair.in_sync());
        // Two comparisons (the replica's offer after its change, the periodic one): still
        // drifting, not yet repaired.
        pair.run_for(10 * SECOND);
        assert!(!pair.in_sync());
        assert_eq!(pair.nodes[0].stats().drift_detected, 1);
        // The third repairs (auto) or reports (manual).
        pair.run_for(10 * SECOND);
        let drift = pair.events[0].iter().find_map(|e| match e {
            ConfigSyncEvent::Drift { repairing, .. } => Some(*repairing),
            _ => None,
        });
        assert_eq!(drift, Some(mode == Mode::Auto));
        match mode {
            Mode::Auto => {
                assert!(pair.in_sync());
                assert_eq!(pair.nodes[0].stats().drift_repaired, 1);
                assert_eq!(pair.status(0), (SyncStatus::Auto, StatusReason::InSync));
            }
            Mode::Manual => {
                assert!(!pair.in_sync(), "manual mode repaired drift");
                assert_eq!(
                    pair.status(0),
                    (
                        SyncStatus::NotAuto,
                        StatusReason::Differ {
                            units: vec![table("inet filter")]
                        }
                    )
                );
            }
        }
    }
}

#[test]
fn manual_mode_syncs_everything_on_command_only() {
    let mut pair = Pair::new(config(Mode::Manual, 100), config(Mode::Manual, 200));
    pair.set(0, "inet filter", "table inet filter { }");
    pair.set(1, "ip nat", "table ip nat { }");
    let now = pair.now;
    assert_eq!(
        pair.nodes[0].request_full_sync(now),
        Err(CommandRefused::NotSynchronized)
    );
    pair.synchronized();
    pair.run_for(SECOND);
    assert_eq!(pair.nodes[0].stats().units_sent, 0);
    assert_eq!(pair.status(0).0, SyncStatus::NotAuto);
    let now = pair.now;
    assert_eq!(
        pair.nodes[1].request_full_sync(now),
        Err(CommandRefused::NotSource)
    );
    pair.nodes[0].request_full_sync(now).unwrap();
    pair.pump();
    assert!(pair.in_sync());
    assert_eq!(
        pair.nodes[0].stats().units_sent,
        2,
        "everything, equal or not"
    );
    assert_eq!(pair.status(0), (SyncStatus::NotAuto, StatusReason::InSync));
}

#[test]
fn both_sources_is_a_conflict_and_nothing_is_sent() {
    let mut pair = Pair::auto();
    pair.set(0, "inet filter", "table inet filter { }");
    pair.link([Some(Part::Source), Some(Part::Source)]);
    for n in 0..2 {
        assert_eq!(
            pair.status(n),
            (SyncStatus::Conflict, StatusReason::BothSources)
        );
        assert_eq!(pair.nodes[n].stats().units_sent, 0);
    }
    assert!(!pair.in_sync());
    // Resolved when one yields.
    pair.link([Some(Part::Source), Some(Part::Replica)]);
    assert!(pair.in_sync());
}

#[test]
fn a_version_mismatch_refuses_with_the_versions() {
    let mut b = config(Mode::Auto, 200);
    b.versions = versions("nftables v1.0.9");
    let mut pair = Pair::new(config(Mode::Auto, 100), b);
    pair.set(0, "inet filter", "table inet filter { }");
    pair.synchronized();
    assert_eq!(pair.nodes[0].stats().units_sent, 0);
    let (status, reason) = pair.status(0);
    assert_eq!(status, SyncStatus::Waiting);
    let text = reason.to_string();
    assert!(text.contains("v1.0.6") && text.contains("v1.0.9"), "{text}");
    assert_eq!(
        pair.nodes[0].request_full_sync(pair.now),
        Err(CommandRefused::PeerNotReady(reason))
    );
}

#[test]
fn a_failed_apply_is_reported_and_retried_only_after_a_change() {
    let mut pair = Pair::auto();
    pair.refuse[1] = Some("Error: Could not process rule: No such file or directory".into());
    pair.set(
        0,
        "inet filter",
        "table inet filter { chain c { iifname eth9 drop } }",
    );
    pair.synchronized();
    assert_eq!(pair.nodes[1].stats().applies_failed, 1);
    let (status, reason) = pair.status(0);
    assert_eq!(status, SyncStatus::Auto);
    assert!(
        matches!(&reason, StatusReason::Failed { unit: Some(u), message } if *u == table("inet filter") && message.contains("No such file")),
        "{reason:?}"
    );
    // Not sent again by the comparisons.
    pair.run_for(40 * SECOND);
    assert_eq!(pair.nodes[0].stats().units_sent, 1);
    // The next change retries, and goes through.
    pair.refuse[1] = None;
    pair.set(0, "inet filter", "table inet filter { chain c { } }");
    pair.changed(0);
    pair.run_for(SECOND);
    assert!(pair.in_sync());
    assert_eq!(pair.status(0), (SyncStatus::Auto, StatusReason::InSync));
}

#[test]
fn a_link_lost_after_an_apply_rolls_it_back_for_good() {
    let mut pair = Pair::auto();
    let old = "table inet filter { chain input { type filter hook input priority 0; } }";
    for n in 0..2 {
        pair.set(n, "inet filter", old);
    }
    pair.synchronized();
    let cutting = "table inet filter { chain input { type filter hook input priority 0; tcp dport 3780 drop } }";
    pair.set(0, "inet filter", cutting);
    pair.changed(0);
    pair.run_for(100 * MS);
    assert_eq!(pair.kernels[1][&table("inet filter")], cutting.as_bytes());
    // The new rules cut the failover link: the replica's peer goes silent.
    pair.link([None, None]);
    assert_eq!(
        pair.kernels[1][&table("inet filter")],
        old.as_bytes(),
        "not rolled back"
    );
    assert_eq!(pair.nodes[1].stats().rollbacks, 1);
    // Back in Synchronization, the same content is not applied again.
    pair.run_for(SECOND);
    pair.synchronized();
    pair.run_for(40 * SECOND);
    assert_eq!(pair.kernels[1][&table("inet filter")], old.as_bytes());
    assert!(
        matches!(pair.status(0).1, StatusReason::RolledBack { .. }),
        "{:?}",
        pair.status(0)
    );
    // The control: a link lost after the window keeps what was applied.
    let mut pair = Pair::auto();
    pair.synchronized();
    pair.set(0, "inet filter", cutting);
    pair.changed(0);
    pair.run_for(SECOND);
    pair.link([None, None]);
    assert_eq!(pair.kernels[1][&table("inet filter")], cutting.as_bytes());
}

#[test]
fn lost_and_duplicated_chunks_end_in_sync() {
    for fate in [Fate::Drop, Fate::Twice] {
        let mut pair = Pair::auto();
        pair.synchronized();
        let mut first = true;
        pair.fate = Box::new(move |m| {
            if matches!(m, ConfigSyncMessage::Chunk(_)) && std::mem::take(&mut first) {
                fate
            } else {
                Fate::Keep
            }
        });
        let big = "x".repeat(3 * failoverd_wire::MAX_CHUNK_LEN);
        pair.set(0, "inet filter", &big);
        pair.changed(0);
        pair.run_for(SECOND);
        assert_eq!(pair.in_sync(), fate == Fate::Twice);
        pair.run_for(10 * SECOND);
        assert!(pair.in_sync());
        let resent = pair.nodes[0].stats().transfers_resent;
        assert_eq!(resent, u64::from(fate == Fate::Drop));
        assert!(pair.nodes[1].stats().chunks_dropped >= 1);
    }
}

#[test]
fn a_takeover_in_the_middle_of_a_full_sync_ends_with_the_new_sources_units() {
    let mut pair = Pair::auto();
    pair.set(
        0,
        "inet filter",
        &"a".repeat(2 * failoverd_wire::MAX_CHUNK_LEN),
    );
    pair.set(1, "inet filter", "b");
    // Node 0's transfer is cut after its header.
    let mut seen = 0;
    pair.fate = Box::new(move |m| {
        if matches!(m, ConfigSyncMessage::Chunk(_)) {
            seen += 1;
            if seen <= 2 {
                return Fate::Drop;
            }
        }
        Fate::Keep
    });
    pair.synchronized();
    assert!(!pair.in_sync());
    // Node 1 takes over: it is the source now.
    pair.link([Some(Part::Replica), Some(Part::Source)]);
    pair.run_for(SECOND);
    assert!(pair.in_sync());
    assert_eq!(pair.kernels[0][&table("inet filter")], b"b");
}

#[test]
fn a_unit_the_replica_does_not_name_or_too_large_is_refused() {
    let mut b = config(Mode::Auto, 200);
    b.units.retain(|u| u.name != "ip nat");
    let mut pair = Pair::new(config(Mode::Auto, 100), b);
    pair.set(0, "ip nat", "table ip nat { }");
    pair.synchronized();
    // The source sends only units both name.
    assert_eq!(pair.nodes[0].stats().units_sent, 0);
    assert!(pair.kernels[1].is_empty());
    // A transfer naming it anyway (a peer that does not check) is refused.
    let header = failoverd_wire::TransferHeader {
        transfer: 77,
        purpose: TransferPurpose::FullSync,
        request: 0,
        units: vec![failoverd_wire::TransferUnit {
            id: table("ip nat"),
            state: UnitState::Absent,
            len: 0,
        }],
    };
    let now = pair.now;
    pair.nodes[1].handle_message(now, ConfigSyncMessage::Transfer(header.clone()));
    assert_eq!(pair.nodes[1].stats().refused_unit, 1);
    let mut big = header;
    big.units[0].id = table("inet filter");
    big.units[0].len = (16 << 20) + 1;
    big.units[0].state = UnitState::Present(unit_hash(b""));
    pair.nodes[1].handle_message(now, ConfigSyncMessage::Transfer(big));
    assert_eq!(pair.nodes[1].stats().refused_unit, 2);
    assert!(
        pair.nodes[1].poll_action().is_none(),
        "applied a refused transfer"
    );
}

#[test]
fn a_peer_without_config_sync_is_reported_silent() {
    let mut pair = Pair::auto();
    let now = pair.now;
    pair.nodes[0].set_link(now, Some(Part::Source));
    pair.fate = Box::new(|_| Fate::Drop);
    pair.pump();
    assert_eq!(
        pair.status(0),
        (SyncStatus::Preparing, StatusReason::AwaitingPeerOffer)
    );
    pair.run_for(11 * SECOND);
    assert_eq!(
        pair.status(0),
        (SyncStatus::Waiting, StatusReason::PeerSilent)
    );
}

#[test]
fn a_diff_holds_both_nodes_readbacks() {
    let mut pair = Pair::new(config(Mode::Manual, 100), config(Mode::Manual, 200));
    pair.set(0, "inet filter", "ours");
    pair.set(1, "inet filter", "theirs");
    pair.synchronized();
    let now = pair.now;
    let request = pair.nodes[0].request_diff(now).unwrap();
    assert_eq!(pair.nodes[0].request_diff(now), Err(CommandRefused::Busy));
    pair.pump();
    let diff = pair.events[0]
        .iter()
        .find_map(|e| match e {
            ConfigSyncEvent::DiffReady(diff) => Some(diff.clone()),
            _ => None,
        })
        .expect("no diff");
    assert_eq!(diff.request, request);
    let filter = diff
        .units
        .iter()
        .find(|(u, ..)| *u == table("inet filter"))
        .unwrap();
    assert_eq!(filter.1, Ok(Some(b"ours".to_vec())));
    assert_eq!(filter.2, Some(Ok(Some(b"theirs".to_vec()))));
    let nat = diff
        .units
        .iter()
        .find(|(u, ..)| *u == table("ip nat"))
        .unwrap();
    assert_eq!((&nat.1, &nat.2), (&Ok(None), &Some(Ok(None))));
    // No answer: the diff fails in time.
    pair.fate = Box::new(|_| Fate::Drop);
    let now = pair.now;
    pair.nodes[0].request_diff(now).unwrap();
    pair.run_for(6 * SECOND);
    assert!(
        pair.events[0]
            .iter()
            .any(|e| matches!(e, ConfigSyncEvent::DiffFailed { .. }))
    );
}

mod elements;
