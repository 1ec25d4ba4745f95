//! Unit tests of the node: the role rules as a truth table, and negotiation and bulk sync driven
//! one frame at a time (`send!` feeds the node a frame from the peer, `recv!` expects the next
//! frame the node sends).

use std::time::Duration;

use failoverd_wire::{
    Ack, BatchFlags, BatchWriter, Hello, HelloFlags, Message, NodeId, ProtocolVersion, Role,
    SessionOp, SessionRecord, SyncState,
};

use super::session::State;
use super::{Node, PeerView};
use crate::config::{NodeConfig, RoleAuthority};
use crate::event::{Election, Event, Reason};
use crate::node::{Action, ActionResult, Token};
use crate::sync::test_record as record;
use crate::time::Instant;

const US: NodeId = NodeId(1);
const PEER: NodeId = NodeId(2);
const READY: u8 = HelloFlags::READY;
const PREEMPT: u8 = HelloFlags::PREEMPT;
const YIELDING: u8 = HelloFlags::YIELDING;

/// Node 1 of a pair with node 2. Hellos are fast and the dead interval long, so no test waits
/// long enough for the peer to die by accident.
fn config() -> NodeConfig {
    NodeConfig {
        node_id: US,
        peer: Some(PEER),
        hello_interval: Duration::from_millis(100),
        dead_interval: Duration::from_secs(10),
        ..NodeConfig::default()
    }
}

// ---- the role rules ----

/// This node, as a row of the table sets it up.
#[derive(Clone, Copy)]
struct Own {
    authority: RoleAuthority,
    role: Role,
    state: OwnState,
    priority: u8,
    yielding: bool,
    leaving: bool,
    /// The peer was lost (its last goodbye): the reason a node alone gives for taking over.
    peer_left: bool,
}

#[derive(Clone, Copy)]
enum OwnState {
    /// Just started: a peer not heard yet may be active.
    StartupSilence,
    /// Silence after leaving Synchronization.
    Silence,
    Independence,
}

/// What this node hears of the peer.
#[derive(Clone, Copy)]
enum Heard {
    Nobody,
    /// Over the failover link.
    Link(PeerSays),
    /// Over the heartbeat path only.
    Heartbeat(PeerSays),
}

/// The peer's hello.
#[derive(Clone, Copy)]
struct PeerSays {
    role: Role,
    priority: u8,
    flags: u8,
    /// The peer applied our current bulk sync.
    holds_ours: bool,
}

const ACTIVE: Own = Own {
    authority: RoleAuthority::Election,
    role: Role::Active,
    state: OwnState::Independence,
    priority: 100,
    yielding: false,
    leaving: false,
    peer_left: false,
};
const STANDBY: Own = Own {
    role: Role::Standby,
    ..ACTIVE
};
const PEER_ACTIVE: PeerSays = PeerSays {
    role: Role::Active,
    priority: 100,
    flags: 0,
    holds_ours: false,
};
const PEER_STANDBY: PeerSays = PeerSays {
    role: Role::Standby,
    ..PEER_ACTIVE
};
/// A standby peer of higher priority that holds our sessions and preempts.
const PEER_PREEMPTING: PeerSays = PeerSays {
    priority: 200,
    flags: READY | PREEMPT,
    holds_ours: true,
    ..PEER_STANDBY
};

/// A hello of the peer saying `says`.
fn peer_hello(says: PeerSays) -> Hello {
    Hello {
        pair_id: 1,
        node_id: PEER.0,
        priority: says.priority,
        backup_type: NodeConfig::default().backup_type,
        state: SyncState::Synchronization,
        role: says.role,
        flags: HelloFlags(says.flags),
        epoch: 1,
        hello_interval_ms: 100,
        dead_interval_ms: 10_000,
        tx_stamp: 1,
        echo_stamp: 0,
        resync_epoch: 0,
        protocol_minor: ProtocolVersion::CURRENT.minor,
        applied: None,
    }
}

/// Our stream's bulk sync (empty) sent and applied by the peer: what `holds_ours` says.
fn complete_our_bulk(node: &mut Node) {
    let stats = &mut node.stats;
    node.outbound.start(7, false, None, stats);
    node.outbound.handle_dump(Vec::new(), stats);
    let frame = node.outbound.next_batch(64 * 1024, 8, stats).unwrap();
    let Ok(Message::SessionBatch(batch)) = Message::parse(&frame) else {
        panic!("not a batch");
    };
    let seq = batch.seq();
    let ack = Ack {
        epoch: 7,
        received: seq,
        applied: seq,
    };
    node.outbound.handle_ack(ack, Instant::ZERO, stats);
    assert!(node.outbound.bulk_complete());
}

/// A node set up as `own`, hearing `heard`.
fn node_in(own: Own, heard: Heard) -> Node {
    let config = NodeConfig {
        role_authority: own.authority,
        priority: own.priority,
        ..config()
    };
    let mut node = Node::new(config, Instant::ZERO);
    node.role = own.role;
    node.yielding = own.yielding;
    node.leaving = own.leaving;
    node.state = match own.state {
        OwnState::StartupSilence => State::Silence { startup: true },
        OwnState::Silence => State::Silence { startup: false },
        OwnState::Independence => State::Independence,
    };
    if own.peer_left {
        node.loss_reason = Some(Reason::PeerLeft);
    }
    let view = |says: PeerSays| PeerView {
        node: PEER,
        hello: peer_hello(says),
        heard_at: Instant::ZERO,
        compatible: Ok(()),
    };
    match heard {
        Heard::Nobody => {}
        Heard::Link(says) => {
            if says.holds_ours {
                complete_our_bulk(&mut node);
            }
            node.peer = Some(view(says));
        }
        Heard::Heartbeat(says) => node.heartbeat = Some(view(says)),
    }
    node
}

/// A row of the table: what it shows, this node, what it hears, and the role it moves to.
type Row = (&'static str, Own, Heard, Option<(Role, Reason)>);

#[test]
fn decide_role_truth_table() {
    use Heard::{Heartbeat, Link, Nobody};
    let outranked = Election::Priority {
        ours: 100,
        theirs: 200,
    };
    let preferred = Election::Priority {
        ours: 200,
        theirs: 100,
    };
    let rows: &[Row] = &[
        // Who decides.
        (
            "the takeover mechanism decides",
            Own {
                authority: RoleAuthority::External,
                ..STANDBY
            },
            Nobody,
            None,
        ),
        (
            "a leaving node never takes over",
            Own {
                leaving: true,
                ..STANDBY
            },
            Nobody,
            None,
        ),
        // No peer on either path.
        (
            "alone: standby takes over",
            STANDBY,
            Nobody,
            Some((Role::Active, Reason::NoPeer)),
        ),
        (
            "alone after the peer left: the loss is the reason",
            Own {
                peer_left: true,
                ..STANDBY
            },
            Nobody,
            Some((Role::Active, Reason::PeerLeft)),
        ),
        (
            "alone in the start-up silence: waits for a peer that may be active",
            Own {
                state: OwnState::StartupSilence,
                ..STANDBY
            },
            Nobody,
            None,
        ),
        (
            "alone in a later silence: takes over",
            Own {
                state: OwnState::Silence,
                ..STANDBY
            },
            Nobody,
            Some((Role::Active, Reason::NoPeer)),
        ),
        ("alone and active: stays", ACTIVE, Nobody, None),
        // The heartbeat path only.
        (
            "heartbeat, both active, preferred: stays",
            Own {
                priority: 200,
                ..ACTIVE
            },
            Heartbeat(PEER_ACTIVE),
            None,
        ),
        (
            "heartbeat, both active, outranked: steps down",
            ACTIVE,
            Heartbeat(PeerSays {
                priority: 200,
                ..PEER_ACTIVE
            }),
            Some((Role::Standby, Reason::ConflictOnHeartbeat(outranked))),
        ),
        (
            "heartbeat, active and standby: stays",
            ACTIVE,
            Heartbeat(PEER_STANDBY),
            None,
        ),
        (
            "heartbeat, standby and active: stays",
            STANDBY,
            Heartbeat(PEER_ACTIVE),
            None,
        ),
        (
            "heartbeat, both standby, preferred: takes over",
            Own {
                priority: 200,
                ..STANDBY
            },
            Heartbeat(PEER_STANDBY),
            Some((Role::Active, Reason::ElectedOnHeartbeat(preferred))),
        ),
        (
            "heartbeat, both standby, outranked: stays",
            STANDBY,
            Heartbeat(PeerSays {
                priority: 200,
                ..PEER_STANDBY
            }),
            None,
        ),
        (
            "heartbeat, both standby, preferred, start-up silence: waits",
            Own {
                priority: 200,
                state: OwnState::StartupSilence,
                ..STANDBY
            },
            Heartbeat(PEER_STANDBY),
            None,
        ),
        // The failover link: both active.
        (
            "both active, equal priority, lower node id: stays",
            ACTIVE,
            Link(PEER_ACTIVE),
            None,
        ),
        (
            "both active, outranked: steps down",
            ACTIVE,
            Link(PeerSays {
                priority: 200,
                ..PEER_ACTIVE
            }),
            Some((Role::Standby, Reason::Conflict(outranked))),
        ),
        (
            "both active, yielding: steps down",
            Own {
                yielding: true,
                priority: 200,
                ..ACTIVE
            },
            Link(PEER_ACTIVE),
            Some((Role::Standby, Reason::Conflict(Election::PeerYielding))),
        ),
        // Active, the peer standby.
        (
            "switchover to a peer holding our sessions",
            Own {
                yielding: true,
                ..ACTIVE
            },
            Link(PeerSays {
                flags: READY,
                holds_ours: true,
                ..PEER_STANDBY
            }),
            Some((Role::Standby, Reason::Switchover)),
        ),
        (
            "switchover waits for a peer that says ready but lacks our current bulk",
            Own {
                yielding: true,
                ..ACTIVE
            },
            Link(PeerSays {
                flags: READY,
                ..PEER_STANDBY
            }),
            None,
        ),
        (
            "a ready peer of higher priority preempts",
            ACTIVE,
            Link(PEER_PREEMPTING),
            Some((Role::Standby, Reason::PreemptedByPeer)),
        ),
        (
            "a peer of higher priority that does not preempt",
            ACTIVE,
            Link(PeerSays {
                flags: READY,
                ..PEER_PREEMPTING
            }),
            None,
        ),
        (
            "a peer of higher priority that is not ready",
            ACTIVE,
            Link(PeerSays {
                flags: PREEMPT,
                holds_ours: false,
                ..PEER_PREEMPTING
            }),
            None,
        ),
        (
            "a preempting peer that yields",
            ACTIVE,
            Link(PeerSays {
                flags: READY | PREEMPT | YIELDING,
                ..PEER_PREEMPTING
            }),
            None,
        ),
        (
            "a ready, preempting peer of lower priority",
            Own {
                priority: 250,
                ..ACTIVE
            },
            Link(PEER_PREEMPTING),
            None,
        ),
        // Standby, the peer active: the active one hands over first.
        (
            "standby of higher priority under an active peer: waits for it to step down",
            Own {
                priority: 200,
                ..STANDBY
            },
            Link(PEER_ACTIVE),
            None,
        ),
        // Both standby.
        (
            "both standby, equal priority, lower node id: takes over",
            STANDBY,
            Link(PEER_STANDBY),
            Some((Role::Active, Reason::Elected(Election::LowerNodeId))),
        ),
        (
            "both standby, outranked: stays",
            STANDBY,
            Link(PeerSays {
                priority: 200,
                ..PEER_STANDBY
            }),
            None,
        ),
        (
            "both standby, the peer yields: takes over",
            Own {
                priority: 50,
                ..STANDBY
            },
            Link(PeerSays {
                flags: YIELDING,
                ..PEER_STANDBY
            }),
            Some((Role::Active, Reason::PeerYielded)),
        ),
        (
            "both standby, we yield: stays",
            Own {
                yielding: true,
                ..STANDBY
            },
            Link(PEER_STANDBY),
            None,
        ),
    ];
    for (row, own, heard, expected) in rows {
        let node = node_in(*own, *heard);
        assert_eq!(node.decide_role(), *expected, "{row}");
    }
}

// ---- negotiation and bulk sync, frame by frame ----

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
    assert_eq!(node.not_ready_reasons(), [super::NotReady::ResyncPending]);
    node.handle_link_down(now, "test");
    assert_eq!(node.state(), SyncState::Silence);
    assert!(node.state.session().is_none());
    assert_eq!(node.not_ready_reasons(), [super::NotReady::NotSynchronized]);
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
    assert_eq!(
        node.not_ready_reasons(),
        [super::NotReady::BulkSyncIncomplete]
    );
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
    let error = crate::node::ActionError::Io {
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
