//! Negotiation and bulk sync, one frame at a time.

use failoverd_wire::{
    Ack, BatchFlags, BatchWriter, Hello, HelloFlags, Message, ProtocolVersion, Role, SessionOp,
    SessionRecord, SyncState,
};

use std::time::Duration;

use crate::config::{NodeConfig, RoleAuthority};
use crate::event::{Event, Reason, TakeoverReason};
use crate::node::{Action, ActionResult, Node, NotReady, Token};
use crate::sync::test_record as record;
use crate::time::Instant;
use crate::vrrp::{GroupReason, GroupState};

use super::{PEER, PeerSays, US, config, peer_hello};

/// Feeds `$node` the peer's frame `$frame` (anything [`Emit`]) at `$now`.
macro_rules! send {
    ($node:expr, $now:expr, $frame:expr) => {{
        let frame = Emit::frame(&$frame);
        $node.handle_frame($now, &frame);
    }};
}

/// Polls the next frame `$node` sends at `$now`, parses it and matches it against `$pattern`,
/// evaluating to `$then`.
macro_rules! recv {
    ($node:expr, $now:expr, $pattern:pat => $then:expr) => {{
        let transmit = $node.poll_transmit($now, true).expect("a frame to send");
        match Message::parse(&transmit.payload) {
            Ok($pattern) => $then,
            other => panic!("unexpected frame: {other:?}"),
        }
    }};
    ($node:expr, $now:expr, $pattern:pat) => {
        recv!($node, $now, $pattern => ())
    };
}

/// A frame the test sends as the peer.
trait Emit {
    fn frame(&self) -> Vec<u8>;
}

impl Emit for Hello {
    fn frame(&self) -> Vec<u8> {
        let mut frame = Vec::new();
        self.emit(&mut frame);
        frame
    }
}

impl Emit for Ack {
    fn frame(&self) -> Vec<u8> {
        let mut frame = Vec::new();
        self.emit(&mut frame);
        frame
    }
}

/// One batch of the peer's stream.
struct Batch {
    epoch: u32,
    seq: u64,
    flags: u8,
    records: Vec<SessionRecord>,
}

impl Emit for Batch {
    fn frame(&self) -> Vec<u8> {
        let mut writer = BatchWriter::new();
        for record in &self.records {
            writer.push_upsert(record);
        }
        let mut frame = Vec::new();
        writer.finish(self.epoch, self.seq, BatchFlags(self.flags), &mut frame);
        frame
    }
}

/// The peer's hello in `state` and `role`, of priority 100 unless said.
fn hello(state: SyncState, role: Role, priority: u8) -> Hello {
    Hello {
        state,
        ..peer_hello(PeerSays {
            role,
            priority,
            flags: 0,
            holds_ours: false,
        })
    }
}

/// Takes the node's next action, checks it is what `expected` says, and hands back `result`.
fn act(node: &mut Node, now: Instant, expected: fn(&Action) -> bool, result: ActionResult) {
    let action = node.poll_action().expect("an action");
    assert!(expected(&action), "unexpected action: {action:?}");
    let token = match action {
        Action::Dump { token }
        | Action::Apply { token, .. }
        | Action::Sweep { token, .. }
        | Action::Adopt { token, .. }
        | Action::Digest { token, .. } => token,
        Action::ResetLink => Token(u64::MAX),
    };
    node.handle_action_done(now, token, result);
}

fn events(node: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

/// A node whose silence just expired (Independence, active alone), link up, its hellos
/// consumed.
fn independent() -> (Node, Instant) {
    let mut node = Node::new(config(), Instant::ZERO);
    node.handle_link_up(Instant::ZERO, PEER);
    recv!(node, Instant::ZERO, Message::Hello(hello) => {
        assert_eq!(hello.state, SyncState::Silence);
    });
    let now = Instant::ZERO + config().silence_timer;
    node.handle_timeout(now);
    assert_eq!(node.state(), SyncState::Independence);
    recv!(node, now, Message::Hello(hello) => {
        assert_eq!(hello.state, SyncState::Independence);
    });
    events(&mut node);
    (node, now)
}

#[test]
fn a_compatible_peer_out_of_silence_negotiates_synchronization() {
    let (mut node, now) = independent();
    send!(
        node,
        now,
        hello(SyncState::Independence, Role::Standby, 100)
    );
    assert_eq!(node.state(), SyncState::Synchronization);
    assert!(events(&mut node).contains(&Event::StateChanged {
        from: SyncState::Independence,
        to: SyncState::Synchronization,
        reason: Reason::NegotiationSucceeded(PEER),
    }));
    // The peer learns at once.
    recv!(node, now, Message::Hello(hello) => {
        assert_eq!(hello.state, SyncState::Synchronization);
    });
}

#[test]
fn a_peer_in_silence_is_not_negotiated_with() {
    let (mut node, now) = independent();
    send!(node, now, hello(SyncState::Silence, Role::Standby, 100));
    assert_eq!(node.state(), SyncState::Independence);
}

#[test]
fn a_peer_of_another_pair_is_refused_once() {
    let (mut node, now) = independent();
    let stranger = Hello {
        pair_id: 9,
        ..hello(SyncState::Independence, Role::Standby, 100)
    };
    send!(node, now, stranger);
    send!(node, now, stranger);
    assert_eq!(node.state(), SyncState::Independence);
    let failures = events(&mut node)
        .into_iter()
        .filter(|event| matches!(event, Event::NegotiationFailed(_)))
        .count();
    assert_eq!(failures, 1);
}

#[test]
fn leaving_synchronization_drops_the_session() {
    let (mut node, now) = independent();
    send!(
        node,
        now,
        hello(SyncState::Independence, Role::Standby, 100)
    );
    let session = node.state.session_mut().expect("synchronizing");
    session.resync_requested = Some(3);
    assert_eq!(node.not_ready_reasons(), [NotReady::ResyncPending]);
    node.handle_link_down(now, "test");
    assert_eq!(node.state(), SyncState::Silence);
    assert!(node.state.session().is_none());
    assert_eq!(node.not_ready_reasons(), [NotReady::NotSynchronized]);
}

#[test]
fn our_bulk_sync_is_sent_and_acknowledged() {
    let (mut node, now) = independent();
    send!(
        node,
        now,
        hello(SyncState::Independence, Role::Standby, 100)
    );
    send!(
        node,
        now,
        hello(SyncState::Synchronization, Role::Standby, 100)
    );
    // Active, restarted, the peer standby: the entries found at start are claimed back first.
    act(
        &mut node,
        now,
        |a| {
            matches!(
                a,
                Action::Adopt {
                    from: PEER,
                    to: US,
                    ..
                }
            )
        },
        ActionResult::Adopted(Ok(0)),
    );
    act(
        &mut node,
        now,
        |a| matches!(a, Action::Dump { .. }),
        ActionResult::Dumped(Ok(vec![record(1, US), record(2, PEER)])),
    );
    recv!(node, now, Message::Hello(_));
    let (epoch, seq) = recv!(node, now, Message::SessionBatch(batch) => {
        let flags = batch.flags();
        assert!(flags.has(BatchFlags::BULK_BEGIN) && flags.has(BatchFlags::BULK_END));
        let ops: Vec<SessionOp> = batch.sections().flat_map(|s| s.ops()).map(Result::unwrap).collect();
        assert_eq!(ops, [SessionOp::Upsert(record(1, US))], "only ours");
        (batch.epoch(), batch.seq())
    });
    assert_eq!(epoch, node.epoch());
    assert!(!node.is_replicated(&record(1, US).key));
    let applied = Ack {
        epoch,
        received: seq,
        applied: seq,
    };
    send!(node, now, applied);
    assert!(events(&mut node).contains(&Event::BulkSent { epoch, records: 1 }));
    assert!(node.is_replicated(&record(1, US).key));
}

#[test]
fn the_peers_bulk_sync_is_applied_swept_and_acknowledged() {
    let (mut node, now) = independent();
    // The peer is active and preferred: this node steps down and takes the peer's sessions.
    send!(node, now, hello(SyncState::Independence, Role::Active, 200));
    send!(
        node,
        now,
        hello(SyncState::Synchronization, Role::Active, 200)
    );
    assert_eq!(node.role(), Role::Standby);
    // The dump of our bulk began on entering Synchronization; stepping down then hands what
    // we own to the peer.
    act(
        &mut node,
        now,
        |a| matches!(a, Action::Dump { .. }),
        ActionResult::Dumped(Ok(Vec::new())),
    );
    let handed_over =
        |a: &Action| matches!(a, Action::Adopt { from, to, .. } if (*from, *to) == (US, PEER));
    act(&mut node, now, handed_over, ActionResult::Adopted(Ok(0)));
    assert_eq!(node.not_ready_reasons(), [NotReady::BulkSyncIncomplete]);
    let bulk = Batch {
        epoch: 1,
        seq: 1,
        flags: BatchFlags::BULK_BEGIN | BatchFlags::BULK_END,
        records: vec![record(5, PEER)],
    };
    send!(node, now, bulk);
    let ops = vec![SessionOp::Upsert(record(5, PEER))];
    act(
        &mut node,
        now,
        |a| matches!(a, Action::Apply { ops, .. } if ops.len() == 1),
        ActionResult::Applied {
            ops,
            applied: 1,
            refused: Vec::new(),
        },
    );
    act(
        &mut node,
        now,
        |a| matches!(a, Action::Sweep { owner: PEER, keep, .. } if keep.contains(&record(5, PEER).key)),
        ActionResult::Swept(Ok(2)),
    );
    assert!(events(&mut node).contains(&Event::BulkReceived {
        epoch: 1,
        records: 1,
        swept: 2,
    }));
    assert!(node.is_ready());
    recv!(node, now, Message::Hello(hello) => assert!(hello.flags.has(HelloFlags::READY)));
    recv!(node, now, Message::Ack(ack) => assert_eq!((ack.epoch, ack.applied), (1, 1)));
}

#[test]
fn a_failed_digest_is_reported() {
    let (mut node, now) = independent();
    send!(node, now, hello(SyncState::Independence, Role::Active, 200));
    send!(
        node,
        now,
        hello(SyncState::Synchronization, Role::Active, 200)
    );
    act(
        &mut node,
        now,
        |a| matches!(a, Action::Dump { .. }),
        ActionResult::Dumped(Ok(Vec::new())),
    );
    act(
        &mut node,
        now,
        |a| matches!(a, Action::Adopt { .. }),
        ActionResult::Adopted(Ok(0)),
    );
    events(&mut node);
    let later = now + config().digest_interval;
    node.handle_timeout(later);
    let error = crate::failure::ActionError::Io {
        kind: std::io::ErrorKind::PermissionDenied,
        detail: "Operation not permitted (os error 1)".into(),
    };
    act(
        &mut node,
        later,
        |a| matches!(a, Action::Digest { owner: US, .. }),
        ActionResult::Digested(Err(error.clone())),
    );
    let failed = events(&mut node);
    assert!(
        failed.iter().any(|event| event.to_string()
            == "0 peer sessions could not be applied: digest failed: session table I/O failed: \
                Operation not permitted (os error 1)"),
        "{failed:?}"
    );
}

#[test]
fn the_common_protocol_is_the_older_of_both() {
    let (mut node, now) = independent();
    assert_eq!(node.common_protocol(), None, "no peer");
    send!(
        node,
        now,
        hello(SyncState::Independence, Role::Standby, 100)
    );
    assert_eq!(node.common_protocol(), Some(ProtocolVersion::CURRENT));
    let first_release = Hello {
        protocol_minor: 0,
        ..hello(SyncState::Synchronization, Role::Standby, 100)
    };
    send!(node, now, first_release);
    let first = ProtocolVersion { major: 1, minor: 0 };
    assert_eq!(node.common_protocol(), Some(first));
    assert_eq!(node.peer().unwrap().protocol, first);
}

/// Our hellos say `OUTRANKED` while VRRP keeps us standby because a higher priority was heard,
/// and not after a fault: the peer applies our last deletes in the first case only.
#[test]
fn hellos_say_outranked_only_after_a_step_down_for_a_higher_priority() {
    let external = NodeConfig {
        role_authority: RoleAuthority::External,
        ..config()
    };
    let mut node = Node::new(external, Instant::ZERO);
    let now = Instant::ZERO + Duration::from_millis(10);
    let vrrp = |to, why| TakeoverReason::Vrrp { to, why };
    let master_down = GroupReason::MasterDown {
        instance: "lan".to_string(),
    };
    let outranked = GroupReason::Outranked {
        instance: "lan".to_string(),
        master: "10.0.1.3".parse().unwrap(),
        priority: 200,
    };
    let fault = GroupReason::Fault {
        why: "wan down".to_string(),
        stepped_down: true,
    };
    let says_outranked = |node: &Node| node.make_hello().flags.has(HelloFlags::OUTRANKED);
    for (why_down, expected) in [(outranked, true), (fault, false)] {
        node.set_forwarding(now, true, vrrp(GroupState::Master, master_down.clone()));
        assert!(!says_outranked(&node), "master");
        node.set_forwarding(now, false, vrrp(GroupState::Backup, why_down.clone()));
        assert_eq!(says_outranked(&node), expected, "{why_down:?}");
    }
}
