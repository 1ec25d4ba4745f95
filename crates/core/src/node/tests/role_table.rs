//! The role rules (`decide_role`) as a truth table: every combination the function tells apart.

use failoverd_wire::{Ack, HelloFlags, Message, Role};

use crate::config::{NodeConfig, RoleAuthority};
use crate::event::{Election, Reason};
use crate::node::session::State;
use crate::node::{Node, PeerView};
use crate::time::Instant;

use super::{PEER, PeerSays, config, peer_hello};

const READY: u8 = HelloFlags::READY;
const PREEMPT: u8 = HelloFlags::PREEMPT;
const YIELDING: u8 = HelloFlags::YIELDING;

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
