//! Unit tests of the node: the role rules as a truth table (`role_table`), and negotiation and
//! bulk sync driven one frame at a time (`frames`: `send!` feeds the node a frame from the
//! peer, `recv!` expects the next frame the node sends).

mod frames;
mod role_table;

use std::time::Duration;

use failoverd_wire::{Hello, HelloFlags, NodeId, ProtocolVersion, Role, SyncState};

use crate::config::NodeConfig;

const US: NodeId = NodeId(1);
const PEER: NodeId = NodeId(2);

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

/// The peer's hello.
#[derive(Clone, Copy)]
struct PeerSays {
    role: Role,
    priority: u8,
    flags: u8,
    /// The peer applied our current bulk sync.
    holds_ours: bool,
}

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
