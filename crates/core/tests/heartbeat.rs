//! Election mode with a second heartbeat path: a cut failover link alone never makes both
//! nodes active, and the peer's death (both paths silent) is still detected in the dead
//! interval. The controls run the same cuts without the heartbeat path.

use std::time::Duration;

use failoverd_core::wire::{Hello, Message, NodeId, Role};
use failoverd_core::{Action, ActionResult, Event, Instant, Node, NodeConfig, Reason};

/// A node's configuration in a pair of nodes 1 and 2.
fn config(node: u32) -> NodeConfig {
    NodeConfig {
        node_id: NodeId(node),
        peer: Some(NodeId(3 - node)),
        ..NodeConfig::default()
    }
}

/// Rewrites a hello on the heartbeat path.
type Forge = fn(&[u8]) -> Vec<u8>;

/// Two cores, a failover link and a heartbeat path, each delivering at once and in order, and
/// backend actions answered at once by an empty table: the daemon's driver without I/O.
struct Pair {
    nodes: [Node; 2],
    alive: [bool; 2],
    now: Instant,
    link_up: bool,
    /// The second path exists (configured on both nodes).
    heartbeat_path: bool,
    /// ... and carries datagrams.
    heartbeat_up: bool,
    /// Frames rewritten on the heartbeat path, if set.
    forge: Option<Forge>,
    /// Time during which both nodes were active, checked at every step.
    both_active_for: Duration,
    events: [Vec<Event>; 2],
}

impl Pair {
    /// Node 1 (priority 200) and node 2 (priority 100), started now, both paths connected.
    fn new(heartbeat_path: bool) -> Self {
        let configs: [NodeConfig; 2] = [
            NodeConfig {
                priority: 200,
                ..config(1)
            },
            NodeConfig {
                priority: 100,
                ..config(2)
            },
        ];
        let mut pair = Self {
            nodes: configs.map(|c| Node::new(c, Instant::ZERO)),
            alive: [true; 2],
            now: Instant::ZERO,
            link_up: false,
            heartbeat_path,
            heartbeat_up: true,
            forge: None,
            both_active_for: Duration::ZERO,
            events: [Vec::new(), Vec::new()],
        };
        pair.connect();
        pair
    }

    fn connect(&mut self) {
        self.link_up = true;
        for i in 0..2 {
            if self.alive[i] {
                self.nodes[i].handle_link_up(self.now, NodeId(2 - i as u32));
            }
        }
    }

    fn cut_link(&mut self) {
        // Silently, as a cable pulled: each side notices missed hellos.
        self.link_up = false;
    }

    fn kill(&mut self, i: usize) {
        self.alive[i] = false;
    }

    fn role(&self, i: usize) -> Role {
        self.nodes[i].role()
    }

    fn actives(&self) -> usize {
        (0..2)
            .filter(|&i| self.alive[i] && self.role(i) == Role::Active)
            .count()
    }

    /// Runs for `duration`, summing the time both nodes are active.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            self.settle();
            let next = (0..2)
                .filter(|&i| self.alive[i])
                .filter_map(|i| self.nodes[i].poll_timeout())
                .min()
                .unwrap_or(end)
                .min(end)
                .max(self.now);
            if self.actives() == 2 {
                self.both_active_for += next - self.now;
            }
            self.now = next;
            if self.now >= end {
                return;
            }
            for i in (0..2).filter(|&i| self.alive[i]) {
                self.nodes[i].handle_timeout(self.now);
            }
        }
    }

    fn settle(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            for i in (0..2).filter(|&i| self.alive[i]) {
                let j = 1 - i;
                while let Some(action) = self.nodes[i].poll_action() {
                    moved = true;
                    let (token, result) = match action {
                        Action::Dump { token } => (token, ActionResult::Dumped(Ok(Vec::new()))),
                        Action::Apply { token, ops } => {
                            let applied = ops.len() as u64;
                            let result = ActionResult::Applied {
                                ops,
                                applied,
                                refused: Vec::new(),
                            };
                            (token, result)
                        }
                        Action::Sweep { token, .. } => (token, ActionResult::Swept(Ok(0))),
                        Action::Adopt { token, .. } => (token, ActionResult::Adopted(Ok(0))),
                        Action::Digest { token, .. } => {
                            (token, ActionResult::Digested(Ok(Box::new([0; 256]))))
                        }
                        Action::ResetLink => continue,
                    };
                    self.nodes[i].handle_action_done(now, token, result);
                }
                while let Some(transmit) = self.nodes[i].poll_transmit(now, true) {
                    moved = true;
                    if self.link_up && self.alive[j] {
                        self.nodes[j].handle_frame(now, &transmit.payload);
                    }
                }
                while let Some(hello) = self.nodes[i].poll_heartbeat(now) {
                    moved = true;
                    if self.heartbeat_path && self.heartbeat_up && self.alive[j] {
                        let hello = match self.forge {
                            Some(forge) => forge(&hello),
                            None => hello,
                        };
                        // The transport authenticated the sender as the pinned peer.
                        self.nodes[j].handle_heartbeat(now, NodeId(2 - j as u32), &hello);
                    }
                }
                while let Some(event) = self.nodes[i].poll_event() {
                    moved = true;
                    self.events[i].push(event);
                }
            }
            if !moved {
                return;
            }
        }
    }
}

const SETTLE: Duration = Duration::from_secs(3);
const DEAD: Duration = Duration::from_millis(150);
const HELLO: Duration = Duration::from_millis(50);

/// Node 1 active and node 2 standby, synchronized.
fn settled(heartbeat_path: bool) -> Pair {
    let mut pair = Pair::new(heartbeat_path);
    pair.run(SETTLE);
    assert_eq!((pair.role(0), pair.role(1)), (Role::Active, Role::Standby));
    assert_eq!(pair.both_active_for, Duration::ZERO);
    pair
}

#[test]
fn a_cut_failover_link_leaves_exactly_one_active_with_the_heartbeat_path() {
    let mut pair = settled(true);
    assert!(pair.nodes[1].heartbeat_peer().is_some());
    pair.cut_link();
    pair.run(SETTLE);
    assert_eq!(pair.both_active_for, Duration::ZERO);
    assert_eq!((pair.role(0), pair.role(1)), (Role::Active, Role::Standby));
    assert!(pair.nodes[1].peer().is_none(), "the link's peer is lost");
    assert!(pair.nodes[1].held_by_heartbeat());
    assert_eq!(
        pair.nodes[1].heartbeat_peer().map(|p| p.role),
        Some(Role::Active)
    );
}

#[test]
fn control_a_cut_failover_link_without_the_heartbeat_path_makes_both_active() {
    let mut pair = settled(false);
    pair.cut_link();
    pair.run(SETTLE);
    assert_eq!(pair.actives(), 2);
    assert!(pair.both_active_for > SETTLE - 2 * DEAD);
    assert!(!pair.nodes[1].held_by_heartbeat());
}

#[test]
fn the_peers_death_is_detected_in_the_dead_interval_with_both_paths_silent() {
    // Both paths up; the link cut with the heartbeat path up; and without a heartbeat path
    // (the detection as it was): the same bound, from the last hello heard on any path.
    for (link, heartbeat_path) in [(true, true), (false, true), (true, false)] {
        let mut pair = settled(heartbeat_path);
        if !link {
            pair.cut_link();
            pair.run(SETTLE);
            assert_eq!(pair.role(1), Role::Standby);
        }
        let killed = pair.now;
        pair.kill(0);
        pair.run(SETTLE);
        assert_eq!(pair.role(1), Role::Active);
        let detection = took_over_at(&pair, 1) - killed;
        assert!(
            detection <= DEAD && detection >= DEAD - HELLO,
            "detection {detection:?} (link {link}, heartbeat path {heartbeat_path})"
        );
    }
}

/// When node `i` last became active, from its role events.
fn took_over_at(pair: &Pair, i: usize) -> Instant {
    pair.nodes[i]
        .history()
        .iter()
        .rev()
        .find(|e| {
            matches!(
                e.event,
                Event::RoleChanged {
                    to: Role::Active,
                    ..
                }
            )
        })
        .map(|e| e.at)
        .expect("became active")
}

#[test]
fn both_active_resolve_by_the_election_rule_when_only_the_heartbeat_path_heals() {
    let mut pair = settled(true);
    pair.cut_link();
    pair.heartbeat_up = false;
    pair.run(SETTLE);
    assert_eq!(pair.actives(), 2, "both paths cut: both active");
    pair.heartbeat_up = true;
    pair.both_active_for = Duration::ZERO;
    pair.run(SETTLE);
    // Node 1 has the higher priority and stays; node 2 yields at its first heartbeat.
    assert_eq!((pair.role(0), pair.role(1)), (Role::Active, Role::Standby));
    assert!(pair.both_active_for <= HELLO);
    let yielded = pair.events[1].iter().any(|e| {
        matches!(
            e,
            Event::RoleChanged {
                to: Role::Standby,
                reason: Reason::ConflictOnHeartbeat(_),
                ..
            }
        )
    });
    assert!(yielded, "{:?}", pair.events[1]);
}

#[test]
fn nodes_that_never_had_a_failover_link_elect_one_active_over_the_heartbeat_path() {
    for heartbeat_path in [true, false] {
        let mut pair = Pair::new(heartbeat_path);
        pair.cut_link();
        pair.run(SETTLE);
        if heartbeat_path {
            assert_eq!((pair.role(0), pair.role(1)), (Role::Active, Role::Standby));
            assert_eq!(pair.both_active_for, Duration::ZERO);
        } else {
            assert_eq!(pair.actives(), 2, "the control: both active");
        }
    }
}

#[test]
fn a_heartbeat_that_is_not_the_peers_compatible_hello_holds_nothing() {
    // Another pair's hello, and one claiming another node id than the key's.
    fn other_pair(frame: &[u8]) -> Vec<u8> {
        rewrite(frame, |h| h.pair_id += 1)
    }
    fn other_node(frame: &[u8]) -> Vec<u8> {
        rewrite(frame, |h| h.node_id += 10)
    }
    for forge in [other_pair as Forge, other_node] {
        let mut pair = settled(true);
        pair.forge = Some(forge);
        pair.cut_link();
        pair.run(SETTLE);
        assert_eq!(pair.actives(), 2);
        assert!(pair.nodes[0].stats().heartbeats_refused > 0);
        assert_eq!(pair.nodes[0].heartbeat_peer(), None);
    }
}

fn rewrite(frame: &[u8], change: fn(&mut Hello)) -> Vec<u8> {
    let Ok(Message::Hello(mut hello)) = Message::parse(frame) else {
        panic!("a hello");
    };
    change(&mut hello);
    let mut out = Vec::new();
    hello.emit(&mut out);
    out
}
