//! Negotiation with a real peer: timers, protocol versions, peer-controlled integers, and
//! what happens to changes while the peer is away.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use failoverd_core::wire::{
    BackupType, BatchFlags, BatchView, BatchWriter, DIGEST_BUCKETS, DigestView, HEADER_LEN, Hello,
    HelloFlags, Message, NodeId, ProtocolVersion, RECORD_LEN, Role, SyncState,
};
use failoverd_core::wire::{
    SessionKey, SessionOp, SessionRecord, VrrpInstanceReport, VrrpReport, digest,
};
use failoverd_core::{
    Action, ActionResult, Event, HelloTimers, Instant, Node, NodeConfig, ReplicationFilter,
    TimerMismatch,
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

    // Node 2 as the first release sends it: hellos end after `resync_epoch`.
    let mut pair = Pair::new([config(1), config(2)]);
    pair.rewrite_from_2 = Some(as_release_1_0);
    pair.connect();
    pair.run(Duration::from_secs(3));
    let node = &pair.members[0].node;
    let first = ProtocolVersion { major: 1, minor: 0 };
    assert_eq!(node.peer().unwrap().protocol, first);
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
        applied: None,
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

// Issue 11, item 6: an authenticated peer gone bad (a stolen key). Node 2 synchronizes
// honestly, then frames built by hand arrive at node 1 as node 2's.

/// A pair synchronized with node 2 active (so node 1 holds a copy and compares digests).
fn synchronized(one: NodeConfig) -> Pair {
    let mut two = config(2);
    two.priority = 200;
    two.digest_interval = one.digest_interval;
    let mut pair = Pair::new([one, two]);
    pair.connect();
    pair.run(Duration::from_secs(3));
    assert_eq!(pair.members[0].node.state(), SyncState::Synchronization);
    assert!(
        pair.members[0].node.is_ready(),
        "node 1 holds node 2's bulk"
    );
    pair
}

/// Node 2's stream as node 1 expects it next: (epoch, next sequence number).
fn next_batch_of_2(pair: &Pair) -> (u32, u64) {
    let two = &pair.members[1].node;
    assert_eq!(two.stats().retransmits, 0, "one batch per sequence number");
    (two.epoch(), two.stats().batches_sent + 1)
}

fn batch(epoch: u32, seq: u64, records: &[SessionRecord]) -> Vec<u8> {
    let mut writer = BatchWriter::new();
    for r in records {
        writer.push_upsert(r);
    }
    let mut frame = Vec::new();
    writer.finish(epoch, seq, BatchFlags(0), &mut frame);
    frame
}

/// Node 2's session `i`, but of protocol `l4proto`.
fn of_proto(i: u32, l4proto: u8) -> SessionRecord {
    let mut r = record(i, NodeId(2));
    r.key.l4proto = l4proto;
    r
}

/// Node 1 replicates TCP only and never 198.51.100.0/24: node 2's UDP session and its session
/// to 198.51.100.7 are refused and counted, its TCP session applied. The control: with the
/// default filter all three are applied (so the check can see a peer op reach the table).
#[test]
fn peer_ops_outside_the_local_filter_are_refused_and_counted() {
    let mut udp_and_tcp_only = config(1);
    udp_and_tcp_only.filter = ReplicationFilter {
        protocols: vec![6],
        exclude: vec!["198.51.100.0/24".parse().unwrap()],
        ..ReplicationFilter::default()
    };
    for (filter, refused) in [(udp_and_tcp_only, 2), (config(1), 0)] {
        let mut pair = synchronized(filter);
        let (epoch, seq) = next_batch_of_2(&pair);
        let mut excluded = record(2, NodeId(2));
        excluded.key.orig.dst = "198.51.100.7".parse().unwrap();
        let records = [of_proto(1, 17), excluded, of_proto(3, 6)];
        let now = pair.now;
        pair.members[0]
            .node
            .handle_frame(now, &batch(epoch, seq, &records));
        pair.run(Duration::from_millis(100));
        let one = &pair.members[0];
        let applied = records
            .iter()
            .filter(|r| one.table.contains_key(&r.key))
            .count();
        assert_eq!(applied, 3 - refused);
        assert!(one.table.contains_key(&records[2].key), "TCP is applied");
        assert_eq!(one.node.stats().peer_ops_filtered, refused as u64);
        assert_eq!(one.node.state(), SyncState::Synchronization);
    }
}

/// Records of node 2 filling a batch of about 1 MiB (the largest frame).
fn mib_of_records() -> Vec<SessionRecord> {
    let count = (failoverd_core::wire::MAX_FRAME_LEN - 64) / RECORD_LEN;
    (0..count as u32).map(|i| record(i, NodeId(2))).collect()
}

/// Sets the sequence number of a batch frame.
fn set_seq(frame: &mut [u8], seq: u64) {
    frame[HEADER_LEN + 8..HEADER_LEN + 16].copy_from_slice(&seq.to_be_bytes());
}

/// Node 2 sends 2,000 batches of 1 MiB, all ahead of a gap: node 1 holds at most its
/// 32 MiB (`max_peer_buffer`), counts the rest as dropped, and once the gap is filled
/// applies what it held and stays synchronized (the rest is the sender's to resend). The
/// control: with the bound lifted, 100 such batches are all held (the measure sees growth).
#[test]
fn reordered_batches_are_held_within_the_peer_buffer() {
    let budget = NodeConfig::default().max_peer_buffer;
    let records = mib_of_records();
    for (max_peer_buffer, sent) in [(budget, 2000), (usize::MAX, 100)] {
        let mut pair = synchronized(NodeConfig {
            max_peer_buffer,
            ..config(1)
        });
        let (epoch, gap) = next_batch_of_2(&pair);
        let mut frame = batch(epoch, 0, &records);
        let now = pair.now;
        let mut most = 0;
        for seq in gap + 1..=gap + sent {
            set_seq(&mut frame, seq);
            pair.members[0].node.handle_frame(now, &frame);
            most = most.max(pair.members[0].node.peer_buffered_bytes());
        }
        let held = most / (frame.len() - HEADER_LEN);
        let stats = pair.members[0].node.stats();
        if max_peer_buffer == usize::MAX {
            assert_eq!(held as u64, sent, "the control holds every batch");
            assert!(most > budget);
            continue;
        }
        assert!(most <= budget, "{most} bytes held");
        // Those more than 1,024 ahead are refused before the buffer is even considered.
        assert!(
            stats.peer_buffer_drops >= 1000 - held as u64,
            "{} dropped",
            stats.peer_buffer_drops
        );
        let first = pair.members[0].table.len();
        pair.members[0]
            .node
            .handle_frame(now, &batch(epoch, gap, &[of_proto(7_000_000, 6)]));
        pair.settle();
        let one = &pair.members[0];
        assert_eq!(
            one.node.peer_buffered_bytes(),
            0,
            "the held batches applied"
        );
        assert_eq!(one.table.len(), first + records.len() + 1);
        assert_eq!(one.node.state(), SyncState::Synchronization);
        assert_eq!(pair.resets, 0);
    }
}

/// A peer that sends in order past its window (2,000 batches of 1 MiB, none applied yet)
/// fills the buffer, then the link is reset: at most 32 MiB held, the excess counted, and
/// the pair synchronizes again. The control: an honest window (`max_in_flight` batches of
/// `max_batch_bytes`) fits, and nothing is reset.
#[test]
fn a_peer_sending_past_its_window_resets_the_link() {
    let budget = NodeConfig::default().max_peer_buffer;
    let window = NodeConfig::default().max_in_flight;
    let big = mib_of_records();
    let honest: Vec<_> = big[..NodeConfig::default().max_batch_bytes / RECORD_LEN - 1].to_vec();
    for (records, sent) in [(big, 2000), (honest, window as u64)] {
        let mut pair = synchronized(config(1));
        let (epoch, first) = next_batch_of_2(&pair);
        let mut frame = batch(epoch, 0, &records);
        let now = pair.now;
        let mut most = 0;
        // Delivered back to back: the backend applies nothing in between.
        for seq in first..first + sent {
            set_seq(&mut frame, seq);
            pair.members[0].node.handle_frame(now, &frame);
            most = most.max(pair.members[0].node.peer_buffered_bytes());
        }
        let stats = pair.members[0].node.stats().clone();
        assert!(most <= budget, "{most} bytes held");
        pair.run(Duration::from_secs(3));
        if sent == window as u64 {
            assert_eq!((stats.peer_buffer_drops, stats.peer_buffer_resets), (0, 0));
            assert_eq!(pair.resets, 0, "the control: an honest window fits");
            continue;
        }
        assert_eq!(stats.peer_buffer_resets, 1);
        assert!(stats.peer_buffer_drops >= 1);
        assert_eq!(pair.resets, 1, "the link was reset");
        assert_eq!(pair.members[0].node.state(), SyncState::Synchronization);
    }
}

/// Node 2 sends 100 digests a second for 10 s with a digest interval of 1 s: node 1 compares
/// at most one per second (each costs a dump) and counts the rest as dropped. The control:
/// node 2's own digests, one a second, are all compared and none dropped.
#[test]
fn the_peers_digests_cost_at_most_one_dump_per_interval() {
    let one = || NodeConfig {
        digest_interval: Duration::from_secs(1),
        ..config(1)
    };
    let mut pair = synchronized(one());
    let before = pair.members[0].node.stats().clone();
    pair.run(Duration::from_secs(10));
    let honest = pair.members[0].node.stats();
    assert!(honest.digests_compared - before.digests_compared >= 9);
    assert_eq!(honest.digests_dropped, 0);

    let mut pair = synchronized(one());
    let before = pair.members[0].node.stats().clone();
    let mut frame = Vec::new();
    DigestView::emit(0, &[0; DIGEST_BUCKETS], &mut frame);
    for _ in 0..1000 {
        pair.run(Duration::from_millis(10));
        let now = pair.now;
        pair.members[0].node.handle_frame(now, &frame);
    }
    let stats = pair.members[0].node.stats();
    let compared = stats.digests_compared - before.digests_compared;
    assert!(compared <= 11, "{compared} digests compared in 10 s");
    assert!(stats.digests_dropped >= 980, "{}", stats.digests_dropped);
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

/// Under VRRP the peer's hellos say how its group stands: master while it forwards; about to
/// preempt while it is a ready standby with preemption and a higher priority (its first advert
/// outruns the hello that says it became master); not master otherwise. Unheard with no peer.
#[test]
fn the_vrrp_peer_check_sees_a_preempting_peer() {
    use failoverd_core::RoleAuthority;
    use failoverd_core::TakeoverReason;
    use failoverd_core::vrrp::{GroupReason, GroupState, PeerView};
    let vrrp_master = || TakeoverReason::Vrrp {
        to: GroupState::Master,
        why: GroupReason::MasterDown {
            instance: "lan".into(),
        },
    };
    let vrrp_backup = || TakeoverReason::Vrrp {
        to: GroupState::Backup,
        why: GroupReason::Switchover,
    };
    let vrrp = |node: u32, priority: u8| NodeConfig {
        role_authority: RoleAuthority::External,
        priority,
        ..config(node)
    };
    let mut pair = Pair::new([vrrp(1, 100), vrrp(2, 200)]);
    assert_eq!(pair.members[0].node.vrrp_peer(), PeerView::Unheard);
    let now = pair.now;
    pair.members[0]
        .node
        .set_forwarding(now, true, vrrp_master());
    pair.connect();
    pair.run(Duration::from_secs(3));
    assert!(pair.members[1].node.is_ready());
    assert_eq!(pair.members[0].node.vrrp_peer(), PeerView::Preempting);
    assert_eq!(
        pair.members[1].node.vrrp_peer(),
        PeerView::Master,
        "node 1 forwards"
    );
    let now = pair.now;
    pair.members[1]
        .node
        .set_forwarding(now, true, vrrp_master());
    pair.members[0]
        .node
        .set_forwarding(now, false, vrrp_backup());
    pair.run(Duration::from_secs(1));
    assert_eq!(pair.members[0].node.vrrp_peer(), PeerView::Master);
    assert_eq!(
        pair.members[1].node.vrrp_peer(),
        PeerView::NotMaster,
        "a lower priority does not preempt"
    );
}
