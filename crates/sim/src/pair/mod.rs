//! Two nodes, their memory tables and the link between them, driven in virtual time.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use failoverd_backends::session::conformance::ComparedFields;
use failoverd_backends::{MemoryBackend, SessionBackend, perform, sample_record};
use failoverd_core::vrrp::{Group, GroupConfig, GroupState, InstanceConfig, VrrpEvent};
use failoverd_core::{Action, Event, Instant, Node, NodeConfig, Reason, TakeoverReason, Token};
use failoverd_wire::{NodeId, Role, SessionKey, SessionOp, SessionRecord, SyncState};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

mod config;
mod config_checks;
mod invariants;

pub use config::{ConfigNode, Kernel};

use crate::link::{Link, LinkFaults, LinkModel};
use crate::mutant::{self, Mutant};

/// One simulated node: its core, its table, and what the harness observed of it.
#[derive(Debug)]
pub struct SimNode {
    /// The sans-I/O core.
    pub core: Node,
    /// Its session table.
    pub table: MemoryBackend,
    /// Its VRRP group, when VRRP decides the role ([`Pair::enable_vrrp`]).
    pub vrrp: Option<Group>,
    /// False after a crash, until restart.
    pub alive: bool,
    /// Its end of the transport connection is up.
    pub connected: bool,
    /// Shutting down gracefully: it hands over, so readiness does not apply to the peer.
    pub leaving: bool,
    /// The backend action in progress and when it completes.
    work: Option<(Instant, Token, Action)>,
    /// Every event with its time.
    pub events: Vec<(Instant, Event)>,
    /// When it last entered Synchronization.
    pub sync_since: Option<Instant>,
    /// When it last became standby.
    pub standby_since: Instant,
    /// What its traffic did to each session, and when, while both nodes were active (a split
    /// brain) or apart from its peer: made outside Synchronization, or made in it but not yet
    /// applied by the peer's backend when Synchronization ended (the peer never saw it). For
    /// the merge oracle ([`Pair::check_settled`]); forgotten when it crashes or leaves (its
    /// tombstones go with it). A change whose event its backend lost is not kept (the core never
    /// saw it).
    pub split_changes: HashMap<SessionKey, (SplitChange, Instant)>,
    /// Changes its traffic made in Synchronization that the peer's backend has not applied
    /// yet: they join `split_changes` if Synchronization ends first.
    unseen: HashMap<SessionKey, (SplitChange, Instant)>,
    /// When the peer last applied its bulk sync (the merge of what it changed apart).
    merged_at: Option<Instant>,
    /// Its backend is losing change events (an overrun not yet reported to the core).
    pub lost_events: bool,
    config: NodeConfig,
    changes: Vec<SessionOp>,
}

/// A two-node simulation.
#[derive(Debug)]
pub struct Pair {
    /// Virtual time.
    pub now: Instant,
    /// The nodes.
    pub nodes: [SimNode; 2],
    /// The link between them.
    pub link: Link,
    /// How long a backend action takes, at least and at most.
    pub backend_latency: (Duration, Duration),
    /// How long a dropped transport connection takes to come back.
    pub reconnect_delay: Duration,
    /// Invariant violations seen so far.
    pub violations: Vec<String>,
    /// Last time both nodes were active together.
    pub split_brain_at: Option<Instant>,
    /// Breaches of the split-brain merge rule are violations; otherwise they are only
    /// collected in [`Pair::merge_rule_breaches`] (randomized schedules still find some: see
    /// docs/ARCHITECTURE.md, "Known limitations").
    pub strict_merge_rule: bool,
    /// Breaches of the merge rule seen by [`Pair::check_settled`] when not strict.
    pub merge_rule_breaches: Vec<String>,
    /// Sessions both nodes changed apart whose merge happened before one of them crashed or
    /// left (forgetting its side): either outcome keeps the rule.
    contested: HashSet<SessionKey>,
    both_active_since: Option<Instant>,
    reconnect_at: Option<Instant>,
    next_check: Instant,
    /// Interval of the periodic "replicated means present" check.
    pub check_interval: Duration,
    rng: SmallRng,
    next_session: u32,
    restarts: u64,
    /// When set, every local change and backend action is recorded here (for debugging a seed).
    pub trace: Option<Vec<(Instant, usize, String)>>,
    /// The network the VRRP adverts cross, apart from the failover link.
    pub lan: Lan,
    /// The heartbeat path (election mode), apart from the failover link.
    pub heartbeat: HeartbeatPath,
    /// A fault planted in the harness, to show an invariant check failing.
    pub mutant: Option<Mutant>,
    /// Each node's config sync, once [`Pair::enable_config_sync`] gave it one.
    pub config: [Option<ConfigNode>; 2],
    /// How long a config read or apply takes, at least and at most.
    pub config_latency: (Duration, Duration),
    /// Config sync draws from its own generator, so a schedule without it plays exactly as
    /// before it existed.
    config_rng: SmallRng,
}

/// The heartbeat path: the nodes' hellos as authenticated datagrams over a network of their
/// own ([`Pair::enable_heartbeat`]), which may be cut apart from the failover link.
#[derive(Debug, Default)]
pub struct HeartbeatPath {
    /// The nodes send and hear heartbeats.
    pub enabled: bool,
    /// While true, heartbeats are lost.
    pub partitioned: bool,
    /// One-way delay of a heartbeat.
    pub delay: Duration,
    /// Heartbeats on their way: (deliver at, to, hello frame).
    flights: Vec<(Instant, usize, Vec<u8>)>,
}

/// The network between the two VRRP groups: adverts with a fixed delay, and partitions of
/// their own (the failover link may be cut while the LAN still carries adverts, and the
/// reverse).
#[derive(Debug, Default)]
pub struct Lan {
    /// The VRRP advert interval; `None` while VRRP is not enabled.
    pub advert_interval: Option<Duration>,
    /// While true, adverts are lost.
    pub partitioned: bool,
    /// When the LAN last healed (or VRRP started).
    pub healed_at: Instant,
    /// One-way delay of an advert.
    pub delay: Duration,
    /// Adverts on their way: (deliver at, to, source, destination, message).
    flights: Vec<(Instant, usize, IpAddr, IpAddr, Vec<u8>)>,
}

impl Lan {
    /// How long a backup waits for a master's advert, at most (RFC 5798: three intervals and
    /// the skew time), with one more interval for adverts on their way.
    pub fn master_down(&self) -> Duration {
        self.advert_interval.unwrap_or_default() * 5
    }
}

impl SimNode {
    fn new(config: NodeConfig, now: Instant) -> Self {
        Self {
            core: Node::new(config.clone(), now),
            table: MemoryBackend::new(config.node_id),
            vrrp: None,
            alive: true,
            connected: false,
            leaving: false,
            work: None,
            events: Vec::new(),
            sync_since: None,
            standby_since: now,
            split_changes: HashMap::new(),
            unseen: HashMap::new(),
            merged_at: None,
            lost_events: false,
            config,
            changes: Vec::new(),
        }
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    /// Entries this node owns, sorted.
    pub fn owned(&self) -> Vec<SessionRecord> {
        let mut owned: Vec<_> = self
            .table
            .iter()
            .filter(|r| r.owner == self.id())
            .cloned()
            .collect();
        owned.sort_by_key(|r| r.key);
        owned
    }

    /// When its core last became active, if it is active.
    pub fn active_since(&self) -> Option<Instant> {
        match self
            .events
            .iter()
            .rev()
            .find_map(|(at, event)| match event {
                Event::RoleChanged { to, .. } => Some((*at, *to)),
                _ => None,
            }) {
            Some((at, Role::Active)) => Some(at),
            _ => None,
        }
    }

    /// Keys in the table, sorted (deterministic picks).
    pub fn sorted_keys(&self) -> Vec<SessionKey> {
        let mut keys: Vec<_> = self.table.iter().map(|r| r.key).collect();
        keys.sort();
        keys
    }
}

impl Pair {
    /// Two fresh nodes over a datagram link, not yet connected; the transport connects at once.
    pub fn new(configs: [NodeConfig; 2], faults: LinkFaults, seed: u64) -> Self {
        Self::with_link(configs, LinkModel::Datagram, faults, seed)
    }

    /// Two fresh nodes over a link of `model`, not yet connected; the transport connects at
    /// once.
    pub fn with_link(
        configs: [NodeConfig; 2],
        model: LinkModel,
        faults: LinkFaults,
        seed: u64,
    ) -> Self {
        let now = Instant::ZERO;
        let [a, b] = configs;
        Self {
            now,
            nodes: [SimNode::new(a, now), SimNode::new(b, now)],
            link: Link::new(model, faults),
            backend_latency: (Duration::from_micros(200), Duration::from_millis(3)),
            reconnect_delay: Duration::from_millis(100),
            violations: Vec::new(),
            split_brain_at: None,
            strict_merge_rule: false,
            merge_rule_breaches: Vec::new(),
            contested: HashSet::new(),
            both_active_since: None,
            reconnect_at: Some(now),
            next_check: now,
            // Each check reads every session: every 20 ms keeps the schedules cheap, and a
            // violation lasts at least until the next acknowledgement.
            check_interval: Duration::from_millis(20),
            rng: SmallRng::seed_from_u64(seed),
            next_session: 0,
            restarts: 0,
            trace: None,
            lan: Lan::default(),
            heartbeat: HeartbeatPath::default(),
            mutant: None,
            config: [None, None],
            config_latency: config::LATENCY,
            config_rng: SmallRng::seed_from_u64(seed ^ 0xc0f1_6000),
        }
    }

    /// Gives the election a heartbeat path beside the failover link (as
    /// `link.heartbeat_listen` does in the daemon): a cut failover link alone then leaves one
    /// node active.
    pub fn enable_heartbeat(&mut self) {
        self.heartbeat.enabled = true;
        self.heartbeat.delay = Duration::from_micros(200);
    }

    /// Cuts (or heals) the heartbeat path.
    pub fn set_heartbeat_partitioned(&mut self, partitioned: bool) {
        self.heartbeat.partitioned = partitioned;
        if partitioned {
            self.heartbeat.flights.clear();
        }
    }

    /// VRRP decides the role, as in the daemon: one group per node (nodes configured with
    /// `RoleAuthority::External`), its state moving the core's role, the core's readiness
    /// gating its preemption; adverts every `advert_interval` over [`Pair::lan`].
    pub fn enable_vrrp(&mut self, advert_interval: Duration) {
        self.lan.advert_interval = Some(advert_interval);
        self.lan.delay = Duration::from_micros(200);
        self.lan.healed_at = self.now;
        for i in 0..2 {
            self.start_vrrp(i);
        }
    }

    fn start_vrrp(&mut self, i: usize) {
        let Some(advert_interval) = self.lan.advert_interval else {
            return;
        };
        let config = &self.nodes[i].config;
        let id = config.node_id.0;
        let mut group = Group::new(GroupConfig {
            instances: vec![InstanceConfig {
                name: "lan".to_string(),
                vrid: 7,
                priority: config.priority.clamp(1, 254),
                advert_interval,
                addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1))],
                source: IpAddr::V4(Ipv4Addr::new(10, 9, (id >> 8) as u8, id as u8)),
                unicast_peers: Vec::new(),
                preempt: config.preempt,
            }],
            preempt_delay: Duration::ZERO,
            announce_repeat: 0,
            announce_interval: advert_interval,
            peer_check: true,
            silent_intervals: 3,
        });
        group.start(self.now);
        self.nodes[i].vrrp = Some(group);
        self.flush_vrrp(i);
    }

    /// Drains node `i`'s VRRP group: adverts onto the LAN, state changes into the core.
    fn flush_vrrp(&mut self, i: usize) {
        let now = self.now;
        let Some(group) = self.nodes[i].vrrp.as_mut() else {
            return;
        };
        let source = group.config().instances[0].source;
        let mut adverts = Vec::new();
        while let Some(transmit) = group.poll_transmit() {
            adverts.push(transmit);
        }
        while group.poll_action().is_some() {}
        let mut changes = Vec::new();
        while let Some(event) = group.poll_event() {
            if let VrrpEvent::GroupChanged { to, reason, .. } = event {
                changes.push((to, reason));
            }
        }
        if !self.lan.partitioned {
            for advert in adverts {
                self.lan.flights.push((
                    now + self.lan.delay,
                    1 - i,
                    source,
                    advert.dst,
                    advert.payload,
                ));
            }
        }
        for (to, reason) in changes {
            let why = TakeoverReason::Vrrp { to, why: reason };
            self.set_forwarding(i, to == GroupState::Master, why);
        }
    }

    /// Cuts (or heals) the LAN the VRRP adverts cross.
    pub fn set_lan_partitioned(&mut self, partitioned: bool) {
        if self.lan.partitioned && !partitioned {
            self.lan.healed_at = self.now;
        }
        self.lan.partitioned = partitioned;
        if partitioned {
            self.lan.flights.clear();
        }
    }

    /// Runs until `deadline` (virtual time).
    pub fn run_until(&mut self, deadline: Instant) {
        loop {
            let next = self
                .next_event()
                .unwrap_or(deadline)
                .min(deadline)
                .max(self.now);
            self.now = next;
            self.process_due();
            if self.now >= deadline {
                break;
            }
        }
    }

    /// Runs for `duration`.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        self.run_until(deadline);
    }

    fn next_event(&self) -> Option<Instant> {
        let mut next = [
            self.link.next_delivery(),
            self.reconnect_at,
            Some(self.next_check),
        ];
        let mut best = next.iter_mut().filter_map(|t| *t).min();
        let flights = self.lan.flights.iter().map(|f| f.0);
        if let Some(flight) = flights
            .chain(self.heartbeat.flights.iter().map(|f| f.0))
            .min()
        {
            best = Some(best.map_or(flight, |b| b.min(flight)));
        }
        for (node, config) in self.nodes.iter().zip(&self.config) {
            if !node.alive {
                continue;
            }
            let vrrp = node.vrrp.as_ref().and_then(Group::poll_timeout);
            for t in [
                node.core.poll_timeout(),
                node.work.as_ref().map(|w| w.0),
                vrrp,
                config.as_ref().and_then(ConfigNode::next_event),
            ]
            .into_iter()
            .flatten()
            {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        }
        best
    }

    fn process_due(&mut self) {
        let now = self.now;
        for (to, bytes) in self.link.deliver(now) {
            if self.nodes[to].alive && self.nodes[to].connected {
                if let Some(trace) = &mut self.trace {
                    trace.push((now, to, describe_frame(&bytes)));
                }
                if !self.deliver_config(to, &bytes) {
                    self.nodes[to].core.handle_frame(now, &bytes);
                }
                self.flush(to);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lan.flights)
            .into_iter()
            .partition(|f| f.0 <= now);
        self.lan.flights = later;
        for (_, to, src, dst, bytes) in due {
            let node = &mut self.nodes[to];
            if node.alive
                && let Some(group) = node.vrrp.as_mut()
            {
                group.handle_packet(now, 0, src, dst, 255, &bytes);
                self.flush_vrrp(to);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.heartbeat.flights)
            .into_iter()
            .partition(|f| f.0 <= now);
        self.heartbeat.flights = later;
        for (_, to, hello) in due {
            if self.nodes[to].alive {
                let peer = self.nodes[1 - to].id();
                self.nodes[to].core.handle_heartbeat(now, peer, &hello);
                self.flush(to);
            }
        }
        for i in 0..2 {
            if !self.nodes[i].alive {
                continue;
            }
            if let Some(group) = self.nodes[i].vrrp.as_mut()
                && group.poll_timeout().is_some_and(|t| t <= now)
            {
                group.handle_timeout(now);
                self.flush_vrrp(i);
            }
            if self.nodes[i].core.poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[i].core.handle_timeout(now);
                self.flush(i);
            }
            if self.nodes[i].work.as_ref().is_some_and(|w| w.0 <= now) {
                self.complete_work(i);
            }
            self.config_due(i);
        }
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.try_connect();
        }
        self.check_both_active();
        if now >= self.next_check {
            self.next_check = now + self.check_interval;
            self.check_replicated_present("periodic");
        }
    }

    /// Drains a node's outputs: actions, frames, events, then its table's local changes.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        loop {
            let mut progressed = false;
            while let Some(action) = self.nodes[i].core.poll_action() {
                progressed = true;
                match action {
                    Action::ResetLink if self.link.model == LinkModel::Stream => {
                        self.reset_link("reset after peer silence");
                    }
                    Action::ResetLink => self.disconnect(i, "reset after peer silence"),
                    other => self.start_work(i, other),
                }
            }
            while let Some(transmit) = self.nodes[i].core.poll_transmit(now, true) {
                progressed = true;
                if self.nodes[i].connected {
                    self.link.send(
                        now,
                        1 - i,
                        transmit.channel,
                        transmit.payload,
                        &mut self.rng,
                    );
                }
            }
            while self.heartbeat.enabled
                && let Some(hello) = self.nodes[i].core.poll_heartbeat(now)
            {
                progressed = true;
                if !self.heartbeat.partitioned {
                    let at = now + self.heartbeat.delay;
                    self.heartbeat.flights.push((at, 1 - i, hello));
                }
            }
            while let Some(event) = self.nodes[i].core.poll_event() {
                progressed = true;
                self.observe(i, &event);
                self.nodes[i].events.push((now, event));
            }
            let node = &mut self.nodes[i];
            match node.table.poll_changes(&mut node.changes, usize::MAX) {
                Ok(0) => {}
                Ok(_) => {
                    progressed = true;
                    let mut changes = std::mem::take(&mut node.changes);
                    if self.mutant == Some(Mutant::LostApartDeletes)
                        && node.core.state() != SyncState::Synchronization
                    {
                        changes.retain(|op| !matches!(op, SessionOp::Remove { .. }));
                    }
                    if let Some(trace) = &mut self.trace {
                        let role = node.core.role();
                        trace.extend(
                            changes
                                .iter()
                                .map(|op| (now, i, format!("local ({role}) {op:?}"))),
                        );
                    }
                    node.core.handle_local_changes(now, changes);
                }
                Err(_) => {
                    progressed = true;
                    // Events are seen again from here on.
                    node.lost_events = false;
                    node.core.handle_changes_lost(now);
                }
            }
            if !progressed {
                break;
            }
        }
        let node = &mut self.nodes[i];
        if let Some(group) = node.vrrp.as_mut() {
            let ready = node.core.is_ready()
                || (self.mutant == Some(Mutant::TakeoverBeforeReady)
                    && node.core.state() == SyncState::Synchronization);
            group.set_ready(now, ready);
            group.set_peer(now, node.core.vrrp_peer());
        }
        self.flush_config(i);
    }

    fn start_work(&mut self, i: usize, action: Action) {
        let (min, max) = self.backend_latency;
        let latency = min + (max.saturating_sub(min)).mul_f64(self.rng.random::<f64>());
        let token = match &action {
            Action::Dump { token }
            | Action::Apply { token, .. }
            | Action::Sweep { token, .. }
            | Action::Adopt { token, .. }
            | Action::Digest { token, .. } => *token,
            Action::ResetLink => return,
        };
        debug_assert!(
            self.nodes[i].work.is_none(),
            "the core keeps one backend action outstanding"
        );
        self.nodes[i].work = Some((self.now + latency, token, action));
    }

    /// The backend action takes effect when it completes, not when it is issued.
    fn complete_work(&mut self, i: usize) {
        let Some((_, token, action)) = self.nodes[i].work.take() else {
            return;
        };
        if let Some(trace) = &mut self.trace {
            trace.push((self.now, i, format!("perform {action:?}")));
        }
        let applied: Vec<SessionKey> = match &action {
            Action::Apply { ops, .. } => ops.iter().map(|op| *op.key()).collect(),
            _ => Vec::new(),
        };
        let node = &mut self.nodes[i];
        let result = match self
            .mutant
            .and_then(|m| mutant::perform(m, &mut node.table, &action))
        {
            Some(result) => Some(result),
            None => perform(&mut node.table, action).map(|(_, result)| result),
        };
        self.note_seen(i, &applied);
        let node = &mut self.nodes[i];
        if let Some(mut result) = result {
            // Dumps come out of a hash map: sort them so a seed replays exactly.
            if let failoverd_core::ActionResult::Dumped(Ok(records)) = &mut result {
                records.sort_by_key(|r| r.key);
            }
            node.core.handle_action_done(self.now, token, result);
        }
        self.flush(i);
    }

    fn disconnect(&mut self, i: usize, reason: &str) {
        if self.nodes[i].connected {
            self.nodes[i].connected = false;
            self.nodes[i].core.handle_link_down(self.now, reason);
            self.flush(i);
        }
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        let at = self.now + self.reconnect_delay;
        self.reconnect_at = Some(self.reconnect_at.map_or(at, |t| t.min(at)));
    }

    fn try_connect(&mut self) {
        self.reconnect_at = None;
        let wanted = self.nodes.iter().any(|n| n.alive && !n.connected);
        if !wanted {
            return;
        }
        if self.link.partitioned || !self.nodes.iter().all(|n| n.alive) {
            self.schedule_reconnect();
            return;
        }
        // The acceptor replaces its old connection with the new one.
        for i in 0..2 {
            if self.nodes[i].connected {
                self.nodes[i].connected = false;
                self.nodes[i]
                    .core
                    .handle_link_down(self.now, "replaced by a new connection");
                self.flush(i);
            }
        }
        self.link.reconnect();
        for i in 0..2 {
            self.nodes[i].connected = true;
            let peer = self.nodes[1 - i].id();
            self.nodes[i].core.handle_link_up(self.now, peer);
        }
        for i in 0..2 {
            self.flush(i);
        }
    }

    // ---- faults and commands ----

    /// The node dies silently: no goodbye, no FIN; the peer must notice missed hellos.
    pub fn crash(&mut self, i: usize) {
        if !self.nodes[i].alive {
            return;
        }
        self.check_replicated_present("crash");
        self.forget_split_changes(i);
        let node = &mut self.nodes[i];
        node.alive = false;
        node.connected = false;
        node.work = None;
        node.vrrp = None;
        if let Some(config) = self.config[i].as_mut() {
            config.stop();
        }
    }

    /// The node starts again with an empty table (a reboot).
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].alive {
            return;
        }
        self.restarts += 1;
        let mut config = self.nodes[i].config.clone();
        config.seed = config.seed.wrapping_add(self.restarts);
        self.nodes[i] = SimNode::new(config, self.now);
        let node = &mut self.nodes[i];
        node.events.clear();
        if let Some(config) = self.config[i].as_mut() {
            config.restart(self.restarts);
        }
        self.reconnect_at = Some(self.now);
        self.flush(i);
        self.start_vrrp(i);
    }

    /// Graceful shutdown: the node says goodbye and hands over, then stops.
    pub fn shutdown(&mut self, i: usize) {
        if !self.nodes[i].alive {
            return;
        }
        self.nodes[i].leaving = true;
        self.nodes[i].core.shutdown(self.now);
        self.flush(i);
        if let Some(group) = self.nodes[i].vrrp.as_mut() {
            group.shutdown(self.now);
        }
        self.flush_vrrp(i);
        self.forget_split_changes(i);
        let node = &mut self.nodes[i];
        node.alive = false;
        node.connected = false;
        node.work = None;
        node.vrrp = None;
        if let Some(config) = self.config[i].as_mut() {
            config.stop();
        }
    }

    /// Cuts (or heals) the link silently in both directions.
    pub fn set_partitioned(&mut self, partitioned: bool) {
        self.link.set_partitioned(self.now, partitioned);
        if !partitioned {
            self.schedule_reconnect();
        }
    }

    /// The transport connections reset (a TCP RST, a TLS error, or one side giving up on a
    /// silent peer): both ends see them close, what was in flight is lost, and the pair
    /// redials after [`reconnect_delay`](Self::reconnect_delay).
    pub fn reset_link(&mut self, why: &str) {
        for i in 0..2 {
            if self.nodes[i].connected {
                self.nodes[i].connected = false;
                self.nodes[i].core.handle_link_down(self.now, why);
                self.flush(i);
            }
        }
        self.link.reconnect();
        self.schedule_reconnect();
    }

    /// Operator switchover on node `i` (ignored if refused).
    pub fn switchover(&mut self, i: usize) -> bool {
        if !self.nodes[i].alive {
            return false;
        }
        let ok = self.nodes[i].core.switchover(self.now).is_ok();
        self.flush(i);
        // With VRRP the group hands over, as the daemon's switchover does.
        if ok && let Some(group) = self.nodes[i].vrrp.as_mut() {
            let handed = group.hand_over(self.now).is_ok();
            self.flush_vrrp(i);
            return handed;
        }
        ok
    }

    /// The takeover mechanism (VRRP) says whether node `i` forwards (nodes configured with
    /// `RoleAuthority::External`), and why.
    pub fn set_forwarding(&mut self, i: usize, forwarding: bool, why: TakeoverReason) {
        if self.nodes[i].alive {
            self.nodes[i].core.set_forwarding(self.now, forwarding, why);
            self.flush(i);
        }
    }

    /// The node's backend overruns: its queued change events, and those until the overrun is
    /// reported, are lost (netlink ENOBUFS).
    pub fn lose_events(&mut self, i: usize) {
        if self.nodes[i].alive {
            self.nodes[i].table.inject_overrun();
            self.nodes[i].lost_events = true;
        }
    }

    // ---- workload ----

    /// A new session created by traffic through node `i`.
    pub fn create_session(&mut self, i: usize) -> SessionKey {
        self.next_session += 1;
        let record = sample_record(self.next_session, self.nodes[i].id());
        let key = record.key;
        let _ = self.nodes[i].table.create_local(record);
        self.note_split_change(i, key, SplitChange::Changed);
        self.flush(i);
        key
    }

    /// Traffic through node `i` updates a random session it holds.
    pub fn update_random(&mut self, i: usize) {
        let keys = self.nodes[i].sorted_keys();
        if keys.is_empty() {
            return;
        }
        let key = keys[self.rng.random_range(0..keys.len())];
        self.update_session(i, key);
    }

    /// Traffic through node `i` updates session `key`, if it holds it.
    pub fn update_session(&mut self, i: usize, key: SessionKey) {
        if let Some(mut record) = self.nodes[i].table.get(&key).cloned() {
            record.timeout_secs = self.rng.random_range(1..432_000);
            record.mark = self.rng.random();
            let _ = self.nodes[i].table.update_local(record);
            self.note_split_change(i, key, SplitChange::Changed);
            self.flush(i);
        }
    }

    /// A random session through node `i` ends.
    pub fn delete_random(&mut self, i: usize) {
        let keys = self.nodes[i].sorted_keys();
        if keys.is_empty() {
            return;
        }
        let key = keys[self.rng.random_range(0..keys.len())];
        self.delete_session(i, key);
    }

    /// Traffic through node `i` ends session `key`.
    pub fn delete_session(&mut self, i: usize, key: SessionKey) {
        let _ = self.nodes[i].table.delete_local(&key);
        self.note_split_change(i, key, SplitChange::Deleted);
        self.flush(i);
    }

    /// Records what node `i`'s traffic did to `key` while the two could not agree on it: both
    /// active, or `i` not synchronized with its peer (apart); a change made in Synchronization
    /// waits in `unseen` until the peer applies it.
    fn note_split_change(&mut self, i: usize, key: SessionKey, change: SplitChange) {
        let both_active = self
            .nodes
            .iter()
            .all(|n| n.alive && n.core.role() == Role::Active);
        let now = self.now;
        let node = &mut self.nodes[i];
        if node.lost_events {
            node.unseen.remove(&key);
            node.split_changes.remove(&key);
            return;
        }
        let synchronized = node.core.state() == SyncState::Synchronization;
        if both_active || !synchronized {
            node.split_changes.insert(key, (change, now));
        }
        if synchronized {
            // Both active and synchronized: the change also reaches the peer as any other,
            // and once applied there it is merged (see `note_seen`).
            node.unseen.insert(key, (change, now));
        } else {
            node.unseen.remove(&key);
        }
    }

    /// Node `y`'s backend applied `keys` for its peer: the peer's changes of them that `y`'s
    /// table now reflects are seen.
    fn note_seen(&mut self, y: usize, keys: &[SessionKey]) {
        let x = 1 - y;
        for key in keys {
            let Some(&(change, _)) = self.nodes[x].unseen.get(key) else {
                continue;
            };
            let held = self.nodes[y].table.get(key);
            let seen = match change {
                SplitChange::Deleted => held.is_none(),
                SplitChange::Changed => {
                    held.zip(self.nodes[x].table.get(key))
                        .is_some_and(|(copy, ours)| {
                            ComparedFields::of(copy) == ComparedFields::of(ours)
                        })
                }
            };
            if seen {
                self.nodes[x].unseen.remove(key);
                // A change made while both were active, applied by a peer that changed the
                // same session apart: merged, and either side may have won.
                if self.nodes[x].split_changes.contains_key(key)
                    && self.nodes[y].split_changes.contains_key(key)
                {
                    self.contested.insert(*key);
                }
            }
        }
    }

    /// Node `i` left Synchronization: what the peer never applied was made apart from it,
    /// except a delete the peer dropped by its hold (it took over from `i` without a handover:
    /// see `NodeConfig::remove_hold`); that session lingers by design, on both nodes.
    fn unseen_made_apart(&mut self, i: usize) {
        let unseen = std::mem::take(&mut self.nodes[i].unseen);
        let peer = &self.nodes[1 - i];
        let dropped = |key: &SessionKey, change: SplitChange| {
            change == SplitChange::Deleted
                && peer.alive
                && peer.table.get(key).is_some()
                && !peer.core.has_pending_remove(key)
        };
        let apart: Vec<_> = unseen
            .into_iter()
            .filter(|(key, (change, _))| !dropped(key, *change))
            .collect();
        self.nodes[i].split_changes.extend(apart);
    }

    /// Node `i` crashes or leaves: what it changed apart goes with it, but a session both
    /// changed apart and already merged stays contested (either side may have won).
    fn forget_split_changes(&mut self, i: usize) {
        let merged_at = self.nodes[i].merged_at;
        let peer = &self.nodes[1 - i].split_changes;
        let contested: Vec<_> = self.nodes[i]
            .split_changes
            .iter()
            .filter(|(key, (_, at))| merged_at.is_some_and(|m| m > *at) && peer.contains_key(key))
            .map(|(key, _)| *key)
            .collect();
        self.contested.extend(contested);
        let node = &mut self.nodes[i];
        node.split_changes.clear();
        node.unseen.clear();
    }

    /// One random workload step on every live active node.
    pub fn traffic_step(&mut self) {
        for i in 0..2 {
            if self.nodes[i].alive && self.nodes[i].core.role() == Role::Active {
                match self.rng.random_range(0..10) {
                    0..5 => {
                        self.create_session(i);
                    }
                    5..8 => self.update_random(i),
                    _ => self.delete_random(i),
                }
            }
        }
    }

    /// The random number generator of the run (schedules draw from it too).
    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }
}

/// What a node's traffic last did to a session during a split brain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitChange {
    /// Created or updated it.
    Changed,
    /// Ended it.
    Deleted,
}

/// Whether `copy` mirrors `record`: equal on the compared fields (the one list every "tables
/// equal" check uses) and labelled with the same owner (the replication's own bookkeeping).
pub fn same_copy(copy: &SessionRecord, record: &SessionRecord) -> bool {
    copy.owner == record.owner && ComparedFields::of(copy) == ComparedFields::of(record)
}

/// A received frame, for the trace: batches with their ops, acks with their counters.
fn describe_frame(bytes: &[u8]) -> String {
    use failoverd_wire::Message;
    match Message::parse(bytes) {
        Ok(Message::SessionBatch(batch)) => {
            let ops: Vec<_> = batch
                .sections()
                .flat_map(|section| section.ops().collect::<Vec<_>>())
                .collect();
            format!(
                "receive batch epoch {} seq {} flags {:?} {ops:?}",
                batch.epoch(),
                batch.seq(),
                batch.flags()
            )
        }
        Ok(Message::Ack(ack)) => format!("receive {ack:?}"),
        Ok(other) => format!("receive {:?}", std::mem::discriminant(&other)),
        Err(error) => format!("receive malformed frame: {error}"),
    }
}
