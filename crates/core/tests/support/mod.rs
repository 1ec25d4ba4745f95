//! Two cores joined by an instant, in-order link, each with an in-memory table that answers
//! its backend actions: what the daemon's driver does, without I/O.

#![allow(dead_code)] // Each test binary uses a part.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use failoverd_core::wire::{
    HelperName, NodeId, SessionKey, SessionOp, SessionRecord, TcpInfo, Tuple, digest,
};
use failoverd_core::{Action, ActionResult, Event, Instant, Node, NodeConfig};

/// A distinct IPv4 TCP session for every `i`.
pub fn record(i: u32, owner: NodeId) -> SessionRecord {
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
pub fn config(node: u32) -> NodeConfig {
    NodeConfig {
        node_id: NodeId(node),
        peer: Some(NodeId(3 - node)),
        ..NodeConfig::default()
    }
}

/// One node and its table.
pub struct Member {
    pub node: Node,
    pub table: BTreeMap<SessionKey, SessionRecord>,
    pub events: Vec<Event>,
}

impl Member {
    pub fn id(&self) -> NodeId {
        self.node.config().node_id
    }

    /// The sessions this node owns.
    pub fn owned(&self) -> Vec<SessionRecord> {
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
                for op in ops {
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
                    applied,
                    failed: 0,
                    first_error: None,
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
            Action::Adopt { token, from } => {
                let me = self.id();
                let mut adopted = 0;
                for r in self.table.values_mut().filter(|r| r.owner == from) {
                    r.owner = me;
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
pub type Rewrite = fn(&[u8]) -> Vec<Vec<u8>>;

/// Two nodes, 1 and 2, and the link between them.
pub struct Pair {
    pub members: [Member; 2],
    pub now: Instant,
    pub link_up: bool,
    /// Link resets a node asked for (its dead timer expired).
    pub resets: u32,
    pub rewrite_from_2: Option<Rewrite>,
}

impl Pair {
    /// Nodes with these configurations, started now, link down.
    pub fn new(configs: [NodeConfig; 2]) -> Self {
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

    pub fn connect(&mut self) {
        self.link_up = true;
        let ids = [self.members[0].id(), self.members[1].id()];
        for (i, member) in self.members.iter_mut().enumerate() {
            member.node.handle_link_up(self.now, ids[1 - i]);
        }
    }

    pub fn disconnect(&mut self) {
        self.link_up = false;
        for member in &mut self.members {
            member.node.handle_link_down(self.now, "test");
        }
    }

    /// Runs both nodes for `duration`: frames arrive at once and in order, actions complete at
    /// once, a link reset reconnects at once.
    pub fn run(&mut self, duration: Duration) {
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
    pub fn create(&mut self, i: usize, keys: impl IntoIterator<Item = u32>) {
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
