//! Negotiation with a real peer: timers, protocol versions, peer-controlled integers, and
//! what happens to changes while the peer is away.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use failoverd_core::wire::{
    BackupType, BatchView, HEADER_LEN, Hello, HelloFlags, Message, NodeId, ProtocolVersion,
    RECORD_LEN, Role, SyncState,
};
use failoverd_core::wire::{
    SessionKey, SessionOp, SessionRecord, VrrpInstanceReport, VrrpReport, digest,
};
use failoverd_core::{
    Action, ActionResult, Event, HelloTimers, Instant, Node, NodeConfig, TimerMismatch,
};
use proptest::prelude::*;
use support::{config, record};

// Two cores joined by an instant, in-order link, each with an in-memory table that answers
// its backend actions: what the daemon's driver does, without I/O.

/// One node and its table.
struct Member {
    node: Node,
    table: BTreeMap<SessionKey, SessionRecord>,
    events: Vec<Event>,
}

impl Member {
    fn id(&self) -> NodeId {
        self.node.config().node_id
    }

    /// The sessions this node owns.
    fn owned(&self) -> Vec<SessionRecord> {
        let id = self.id();
        self.table
            .values()
            .filter(|r| r.owner == id)
            .cloned()
            .collect()
    }

    /// Runs one backend action against the table.
    fn act(&mut self, now: Instant, action: Action) -> bool {
        let (token, result) = match action {
            Action::Dump { token } => (
                token,
                ActionResult::Dumped(Ok(self.table.values().cloned().collect())),
            ),
            Action::Apply { token, ops } => {
                let applied = ops.len() as u64;
                for op in ops.clone() {
                    match op {
                        SessionOp::Upsert(record) => {
                            self.table.insert(record.key, record);
                        }
                        SessionOp::Remove { key, owner } => {
                            if self.table.get(&key).is_some_and(|r| r.owner == owner) {
                                self.table.remove(&key);
                            }
                        }
                        SessionOp::RemoveAny { key } => {
                            self.table.remove(&key);
                        }
                    }
                }
                let result = ActionResult::Applied {
                    ops,
                    applied,
                    refused: Vec::new(),
                };
                (token, result)
            }
            Action::Sweep { token, owner, keep } => {
                let before = self.table.len();
                self.table
                    .retain(|key, r| r.owner != owner || keep.contains(key));
                (
                    token,
                    ActionResult::Swept(Ok((before - self.table.len()) as u64)),
                )
            }
            Action::Adopt { token, from, to } => {
                let mut adopted = 0;
                for r in self.table.values_mut().filter(|r| r.owner == from) {
                    r.owner = to;
                    adopted += 1;
                }
                (token, ActionResult::Adopted(Ok(adopted)))
            }
            Action::Digest { token, owner } => {
                let sums = digest(self.table.values().filter(|r| r.owner == owner));
                (token, ActionResult::Digested(Ok(Box::new(sums))))
            }
            Action::ResetLink => return true,
        };
        self.node.handle_action_done(now, token, result);
        false
    }
}

/// Rewrites a frame on its way from node 2 to node 1, into any number of frames.
type Rewrite = fn(&[u8]) -> Vec<Vec<u8>>;

/// Two nodes, 1 and 2, and the link between them.
struct Pair {
    members: [Member; 2],
    now: Instant,
    link_up: bool,
    /// Link resets a node asked for (its dead timer expired).
    resets: u32,
    rewrite_from_2: Option<Rewrite>,
}

impl Pair {
    /// Nodes with these configurations, started now, link down.
    fn new(configs: [NodeConfig; 2]) -> Self {
        let now = Instant::ZERO;
        Self {
            members: configs.map(|config| Member {
                node: Node::new(config, now),
                table: BTreeMap::new(),
                events: Vec::new(),
            }),
            now,
            link_up: false,
            resets: 0,
            rewrite_from_2: None,
        }
    }

    fn connect(&mut self) {
        self.link_up = true;
        let ids = [self.members[0].id(), self.members[1].id()];
        for (i, member) in self.members.iter_mut().enumerate() {
            member.node.handle_link_up(self.now, ids[1 - i]);
        }
    }

    fn disconnect(&mut self) {
        self.link_up = false;
        for member in &mut self.members {
            member.node.handle_link_down(self.now, "test");
        }
    }

    /// Runs both nodes for `duration`: frames arrive at once and in order, actions complete at
    /// once, a link reset reconnects at once.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            self.settle();
            let next = self
                .members
                .iter()
                .filter_map(|m| m.node.poll_timeout())
                .min()
                .unwrap_or(end);
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            for member in &mut self.members {
                member.node.handle_timeout(self.now);
            }
        }
    }

    /// Delivers frames and completes actions until nothing moves.
    fn settle(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            for i in 0..2 {
                while let Some(action) = self.members[i].node.poll_action() {
                    moved = true;
                    if self.members[i].act(now, action) && self.link_up {
                        self.resets += 1;
                        self.disconnect();
                        self.connect();
                    }
                }
                while let Some(transmit) = self.members[i].node.poll_transmit(now, true) {
                    moved = true;
                    let frames = match (i, self.rewrite_from_2) {
                        (1, Some(rewrite)) => rewrite(&transmit.payload),
                        _ => vec![transmit.payload],
                    };
                    for frame in frames.iter().filter(|_| self.link_up) {
                        self.members[1 - i].node.handle_frame(now, frame);
                    }
                }
                while let Some(event) = self.members[i].node.poll_event() {
                    moved = true;
                    self.members[i].events.push(event);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Node `i` creates sessions it owns (in its table, reported to its core).
    fn create(&mut self, i: usize, keys: impl IntoIterator<Item = u32>) {
        let member = &mut self.members[i];
        let id = member.id();
        let records: Vec<_> = keys.into_iter().map(|k| record(k, id)).collect();
        for r in &records {
            member.table.insert(r.key, r.clone());
        }
        member
            .node
            .handle_local_changes(self.now, records.into_iter().map(SessionOp::Upsert));
    }
}

fn timer_events(events: &[Event]) -> Vec<TimerMismatch> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TimersDiffer(m) => Some(*m),
            _ => None,
        })
        .collect()
}

fn timers(hello_ms: u64, dead_ms: u64) -> HelloTimers {
    HelloTimers {
        hello: Duration::from_millis(hello_ms),
        dead: Duration::from_millis(dead_ms),
    }
}

/// Node 1 sends hellos every 50 ms and waits 150 ms; node 2 sends every 200 ms: node 1
/// declares it dead between hellos, again and again. Both say why, once.
#[test]
fn mismatched_timers_are_reported_once_with_both_values() {
    let mut slow = config(2);
    slow.hello_interval = Duration::from_millis(200);
    slow.dead_interval = Duration::from_millis(600);
    let mut pair = Pair::new([config(1), slow]);
    pair.connect();
    pair.run(Duration::from_secs(5));
    assert!(pair.resets >= 3, "the link flaps: {} resets", pair.resets);
    let want = TimerMismatch {
        local: timers(50, 150),
        peer: timers(200, 600),
    };
    assert_eq!(timer_events(&pair.members[0].events), [want]);
    assert!(want.flaps());
    assert!(
        want.to_string()
            .contains("hello 200 ms, dead 600 ms on the peer")
    );
    assert!(want.to_string().contains("will flap"), "{want}");
    let mirrored = TimerMismatch {
        local: want.peer,
        peer: want.local,
    };
    assert_eq!(timer_events(&pair.members[1].events), [mirrored]);
    let peer = pair.members[1].node.peer().expect("node 1 is live");
    assert_eq!(peer.timers, timers(50, 150));
    assert_eq!(peer.timer_mismatch, Some(mirrored));
}

/// Control: equal timers raise nothing; different timers that cannot flap are reported
/// without the flapping warning.
#[test]
fn equal_timers_raise_nothing_and_a_harmless_difference_no_flap_warning() {
    let mut pair = Pair::new([config(1), config(2)]);
    pair.connect();
    pair.run(Duration::from_secs(3));
    assert_eq!(pair.members[0].node.state(), SyncState::Synchronization);
    assert!(timer_events(&pair.members[0].events).is_empty());
    assert_eq!(pair.members[0].node.peer().unwrap().timer_mismatch, None);

    let mut other = config(2);
    other.dead_interval = Duration::from_millis(200);
    let mut pair = Pair::new([config(1), other]);
    pair.connect();
    pair.run(Duration::from_secs(3));
    assert_eq!(pair.resets, 0);
    let [mismatch] = timer_events(&pair.members[0].events)[..] else {
        panic!("{:?}", pair.members[0].events)
    };
    assert!(!mismatch.flaps() && !mismatch.to_string().contains("flap"));
    assert_eq!(pair.members[0].node.state(), SyncState::Synchronization);
}

#[test]
fn each_side_knows_the_others_protocol_version() {
    let mut pair = Pair::new([config(1), config(2)]);
    pair.connect();
    pair.run(Duration::from_secs(3));
    let node = &pair.members[0].node;
    assert_eq!(node.peer().unwrap().protocol, ProtocolVersion::CURRENT);
    assert_eq!(node.common_protocol(), Some(ProtocolVersion::CURRENT));

    // Node 2 as the first release sends it: hellos end after `resync_epoch`.
    let mut pair = Pair::new([config(1), config(2)]);
    pair.rewrite_from_2 = Some(as_release_1_0);
    pair.connect();
    pair.run(Duration::from_secs(3));
    let node = &pair.members[0].node;
    let first = ProtocolVersion { major: 1, minor: 0 };
    assert_eq!(node.peer().unwrap().protocol, first);
    assert_eq!(node.common_protocol(), Some(first));
    assert_eq!(
        node.state(),
        SyncState::Synchronization,
        "1.0 and 1.1 synchronize"
    );
    assert!(node.is_ready());
}

/// A hello cut to 1.0's 48-byte body; other frames unchanged.
fn as_release_1_0(frame: &[u8]) -> Vec<Vec<u8>> {
    let mut frame = frame.to_vec();
    if matches!(Message::parse(&frame), Ok(Message::Hello(_))) {
        frame.truncate(HEADER_LEN + 48);
        frame[4..8].copy_from_slice(&((HEADER_LEN + 48) as u32).to_be_bytes());
    }
    vec![frame]
}

/// Node 2 as a later minor version might send: 8 more bytes in every record, an unknown
/// section in every batch, 8 more bytes in every hello, and a message kind of its own.
fn as_newer_minor(frame: &[u8]) -> Vec<Vec<u8>> {
    let Ok(message) = Message::parse(frame) else {
        return vec![frame.to_vec()];
    };
    let mut body = frame[HEADER_LEN..].to_vec();
    match message {
        Message::SessionBatch(batch) => body = extended(&batch),
        Message::Hello(_) => body.extend_from_slice(&[0xa5; 8]),
        _ => {}
    }
    let mut out = frame[..HEADER_LEN].to_vec();
    out.extend_from_slice(&body);
    let len = out.len() as u32;
    out[4..8].copy_from_slice(&len.to_be_bytes());
    // A message of a kind this version does not know, before every frame.
    let unknown = vec![b'F', b'O', 1, 99, 0, 0, 0, 12, 1, 2, 3, 4];
    vec![unknown, out]
}

fn extended(batch: &BatchView<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&batch.epoch().to_be_bytes());
    body.extend_from_slice(&[batch.flags().0, 0, 0, 0]);
    body.extend_from_slice(&batch.seq().to_be_bytes());
    let sections: Vec<_> = batch.sections().collect();
    body.extend_from_slice(&(sections.len() as u16 + 1).to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    for section in sections {
        let code = match section.kind {
            failoverd_core::wire::SectionKind::Upsert => 1,
            failoverd_core::wire::SectionKind::Remove => 2,
            failoverd_core::wire::SectionKind::RemoveAny => 3,
            failoverd_core::wire::SectionKind::Unknown(code) => code,
        };
        body.extend_from_slice(&[code, 0]);
        body.extend_from_slice(&((section.record_len + 8) as u16).to_be_bytes());
        body.extend_from_slice(&(section.count as u32).to_be_bytes());
        for raw in section.raw_records() {
            body.extend_from_slice(raw);
            body.extend_from_slice(&[0xee; 8]);
        }
    }
    body.extend_from_slice(&[200, 0, 0, 4, 0, 0, 0, 1, 9, 9, 9, 9]);
    body
}

#[test]
fn a_newer_minor_peer_is_read_with_the_extra_skipped_and_counted() {
    let mut pair = Pair::new([config(1), config(2)]);
    pair.rewrite_from_2 = Some(as_newer_minor);
    pair.create(1, 0..500);
    pair.connect();
    pair.run(Duration::from_secs(3));
    let (one, two) = (&pair.members[0], &pair.members[1]);
    assert!(one.node.is_ready(), "node 1 holds node 2's sessions");
    let copies: Vec<_> = one
        .table
        .values()
        .filter(|r| r.owner == two.id())
        .cloned()
        .collect();
    assert_eq!(
        copies,
        two.owned(),
        "every record read, appended bytes ignored"
    );
    let stats = one.node.stats();
    assert!(stats.unknown_sections >= 1, "unknown sections counted");
    assert!(stats.unknown_messages >= 1, "unknown kinds counted");
    assert_eq!(stats.malformed_frames, 0);

    // Control: records shorter than this version's are not skipped, they are refused.
    let mut pair = Pair::new([config(1), config(2)]);
    pair.rewrite_from_2 = Some(truncated_records);
    pair.create(1, 0..500);
    pair.connect();
    pair.run(Duration::from_secs(3));
    assert!(!pair.members[0].node.is_ready());
    assert!(pair.members[0].node.stats().malformed_frames > 0);
}

fn truncated_records(frame: &[u8]) -> Vec<Vec<u8>> {
    let Ok(Message::SessionBatch(_)) = Message::parse(frame) else {
        return vec![frame.to_vec()];
    };
    let mut frame = frame.to_vec();
    let at = HEADER_LEN + 20 + 2;
    if frame.len() > at + 2 && frame[at - 2] == 1 {
        frame[at..at + 2].copy_from_slice(&((RECORD_LEN - 1) as u16).to_be_bytes());
    }
    vec![frame]
}

fn hello_from_2(
    stamps: (u64, u64),
    intervals: (u32, u32),
    flags: u8,
    epoch: u32,
    state: SyncState,
    role: Role,
) -> Vec<u8> {
    let hello = Hello {
        pair_id: 1,
        node_id: 2,
        priority: 100,
        backup_type: BackupType::SYMMETRIC,
        state,
        role,
        flags: HelloFlags(flags),
        epoch,
        hello_interval_ms: intervals.0,
        dead_interval_ms: intervals.1,
        tx_stamp: stamps.0,
        echo_stamp: stamps.1,
        resync_epoch: epoch,
        protocol_minor: u16::MAX,
    };
    let mut frame = Vec::new();
    hello.emit(&mut frame);
    frame
}

fn arb_state() -> impl Strategy<Value = SyncState> {
    prop_oneof![
        Just(SyncState::Silence),
        Just(SyncState::Independence),
        Just(SyncState::Synchronization)
    ]
}

proptest! {
    /// Whatever integers the peer's hellos carry, a node neither panics (debug builds check
    /// overflow) nor stops answering with hellos.
    #[test]
    fn extreme_hello_values_never_panic(
        hellos in proptest::collection::vec(
            (
                prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), Just(0u64), Just(1u64), any::<u64>()],
                prop_oneof![Just(u64::MAX), Just(0u64), any::<u64>()],
                prop_oneof![Just(u32::MAX), Just(0u32), any::<u32>()],
                prop_oneof![Just(u32::MAX), Just(0u32), any::<u32>()],
                any::<u8>(),
                any::<u32>(),
                arb_state(),
                prop_oneof![Just(Role::Standby), Just(Role::Active)],
                0u64..10_000_000,
            ),
            1..12,
        ),
    ) {
        let mut node = Node::new(config(1), Instant::ZERO);
        let mut now = Instant::ZERO;
        node.handle_link_up(now, NodeId(2));
        for (tx, echo, hello_ms, dead_ms, flags, epoch, state, role, wait_us) in hellos {
            let frame = hello_from_2((tx, echo), (hello_ms, dead_ms), flags, epoch, state, role);
            node.handle_frame(now, &frame);
            now = now + Duration::from_micros(wait_us);
            node.handle_timeout(now);
            while let Some(transmit) = node.poll_transmit(now, true) {
                if let Ok(Message::Hello(ours)) = Message::parse(&transmit.payload) {
                    prop_assert!(tx == 0 || ours.echo_stamp >= tx, "echo saturates, never wraps");
                }
            }
            while node.poll_action().is_some() {}
            while node.poll_event().is_some() {}
            let _ = node.peer();
        }
    }
}

/// While the peer is away nothing is queued (the next bulk sync resends the table), and
/// nothing is lost: the peer ends with every change, and no session counts as replicated
/// before the bulk sync that carries it is applied.
#[test]
fn changes_while_the_peer_is_away_are_not_queued_and_reach_it_by_the_bulk_sync() {
    let mut pair = Pair::new([config(1), config(2)]);
    pair.create(0, 0..100);
    pair.connect();
    pair.run(Duration::from_secs(3));
    assert!(pair.members[1].node.is_ready());
    let old = record(5, NodeId(1)).key;
    assert!(pair.members[0].node.is_replicated(&old));

    pair.disconnect();
    pair.run(Duration::from_millis(10));
    pair.create(0, 100..1100);
    let one = &pair.members[0].node;
    assert_eq!(
        one.pending_changes(),
        0,
        "nothing queued while the peer is away"
    );
    let new = record(500, NodeId(1)).key;
    assert!(!one.is_replicated(&new) && !one.is_replicated(&old));
    assert!(one.has_unacked_change(&new), "the peer misses it");

    pair.connect();
    pair.run(Duration::from_secs(3));
    let (one, two) = (&pair.members[0], &pair.members[1]);
    let copies: Vec<_> = two
        .table
        .values()
        .filter(|r| r.owner == one.id())
        .cloned()
        .collect();
    assert_eq!(copies, one.owned(), "the bulk sync carried every change");
    assert_eq!(copies.len(), 1100);
    assert!(one.node.is_replicated(&new) && !one.node.has_unacked_change(&new));
}

/// Issue 10, finding 1: the backend hands the core its whole table at once, and examining a
/// million records in that one call made a driver turn of 235 ms (debug build). The dump is
/// examined as it is fed, a bounded slice per `poll_transmit`, and a driver handles its other
/// inputs between two calls. Node 1 holds a million sessions of a former peer (never sent)
/// and ten of its own: its bulk sync goes out in hundreds of steps instead of one, and node 2
/// ends with exactly node 1's ten sessions.
#[test]
fn a_million_record_dump_is_examined_in_bounded_steps() {
    const OTHERS: u32 = 1_000_000;
    let former_peer = NodeId(7);
    let mut pair = Pair::new([config(1), config(2)]);
    for i in 0..OTHERS {
        let r = record(i, former_peer);
        pair.members[0].table.insert(r.key, r);
    }
    pair.create(0, OTHERS..OTHERS + 10);
    pair.connect();
    pair.run(Duration::from_secs(3));
    let stats = pair.members[0].node.stats();
    assert!(
        stats.batches_sent >= 100,
        "the dump was examined in {} steps: at most ~10,000 records each would be 100",
        stats.batches_sent
    );
    assert_eq!(
        stats.records_sent, 10,
        "only node 1's own sessions are sent"
    );
    let mut received = pair.members[1].table.values().cloned().collect::<Vec<_>>();
    received.sort_by_key(|r| r.key);
    let mut own = pair.members[0].owned();
    own.sort_by_key(|r| r.key);
    assert_eq!(received, own);
    assert!(pair.members[1].node.is_ready());
}

fn lan_report(silent: bool) -> VrrpReport {
    VrrpReport {
        instances: vec![VrrpInstanceReport {
            vrid: 51,
            ipv6: false,
            silent,
            hears: true,
        }],
    }
}

#[test]
fn vrrp_reports_reach_the_peer_when_they_change_and_after_a_reconnect() {
    let mut pair = Pair::new([config(1), config(2)]);
    // Set before any peer: sent once one is heard.
    pair.members[1].node.set_vrrp_report(lan_report(false));
    pair.connect();
    pair.run(Duration::from_secs(1));
    assert_eq!(
        pair.members[0].node.peer_vrrp_report(),
        Some(&lan_report(false))
    );
    pair.members[1].node.set_vrrp_report(lan_report(true));
    pair.run(Duration::from_millis(10));
    assert_eq!(
        pair.members[0].node.peer_vrrp_report(),
        Some(&lan_report(true))
    );
    pair.disconnect();
    assert_eq!(
        pair.members[0].node.peer_vrrp_report(),
        None,
        "forgotten with the peer"
    );
    pair.connect();
    pair.run(Duration::from_secs(1));
    assert_eq!(
        pair.members[0].node.peer_vrrp_report(),
        Some(&lan_report(true)),
        "sent again to the returning peer"
    );
}

#[test]
fn a_peer_older_than_1_3_gets_no_vrrp_report() {
    // Node 2 speaks 1.0: node 1 does not send what it would count as unknown.
    let mut pair = Pair::new([config(1), config(2)]);
    pair.rewrite_from_2 = Some(as_release_1_0);
    pair.members[0].node.set_vrrp_report(lan_report(true));
    pair.connect();
    pair.run(Duration::from_secs(3));
    assert_eq!(pair.members[1].node.peer_vrrp_report(), None);
    // The control: node 2 at the current version gets it.
    let mut pair = Pair::new([config(1), config(2)]);
    pair.members[0].node.set_vrrp_report(lan_report(true));
    pair.connect();
    pair.run(Duration::from_secs(3));
    assert_eq!(
        pair.members[1].node.peer_vrrp_report(),
        Some(&lan_report(true))
    );
}
