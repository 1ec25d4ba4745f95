//! Sessions and configurations of a pair of nodes 1 and 2.

use std::net::{IpAddr, Ipv4Addr};

use failoverd_core::NodeConfig;
use failoverd_core::wire::{HelperName, NodeId, SessionKey, SessionRecord, TcpInfo, Tuple};

/// A distinct IPv4 TCP session for every `i`.
pub(crate) fn record(i: u32, owner: NodeId) -> SessionRecord {
    let orig = Tuple {
        src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 16))),
        dst: "192.0.2.1".parse().unwrap(),
        src_port: i as u16,
        dst_port: 80,
    };
    SessionRecord {
        key: SessionKey {
            zone: 0,
            l4proto: 6,
            orig,
        },
        reply: Tuple {
            src: orig.dst,
            dst: orig.src,
            src_port: 80,
            dst_port: orig.src_port,
        },
        owner,
        mark: 0,
        status: 0,
        timeout_secs: 100,
        tcp: TcpInfo::default(),
        seq_adj: Default::default(),
        labels: [0; 16],
        helper: HelperName::NONE,
    }
}

/// A node's configuration in a pair of nodes 1 and 2.
pub(crate) fn config(node: u32) -> NodeConfig {
    NodeConfig {
        node_id: NodeId(node),
        peer: Some(NodeId(3 - node)),
        ..NodeConfig::default()
    }
}
