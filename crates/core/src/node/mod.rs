//! One node of a failover pair, as a sans-I/O state machine.
//!
//! The [`Node`] and its getters live here; its methods are split by concern: `input` (the
//! `handle_*` entry points and timers), `negotiation` (hellos, compatibility, the one
//! `set_state`), `role` (who forwards, commands that move the role), `backend` (the one
//! outstanding backend action and its result), `digest` (anti-entropy), `output` (the `poll_*`
//! methods and what our hellos say) and `readiness` (what gates preemption). The state a
//! synchronization owns lives in `session`; the public types of the node's interface in
//! `types`.

mod backend;
mod digest;
mod input;
mod negotiation;
mod output;
mod readiness;
mod role;
mod session;
#[cfg(test)]
mod tests;
mod types;

pub use failoverd_wire::Channel;
pub use output::Transmit;
pub use readiness::NotReady;
pub use types::{Action, ActionResult, CommandError, HeartbeatPeer, PeerStatus, Token};

use std::collections::VecDeque;
use std::time::Duration;

use failoverd_wire::{Hello, NodeId, ProtocolVersion, Role, SessionKey, SyncState, VrrpReport};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::NodeConfig;
use crate::event::{Event, History, Incompatibility, Reason, TimerMismatch};
use crate::liveness::Liveness;
use crate::stats::Stats;
use crate::sync::inbound::Inbound;
use crate::sync::outbound::Outbound;
use crate::time::Instant;
use crate::timer::{Timer, TimerTable};
use backend::Work;
use negotiation::peer_timers;
use session::State;

/// Most the retransmit timeout grows by while nothing is acknowledged.
const MAX_BACKOFF: u32 = 8;

/// The live peer, as its last hello describes it.
#[derive(Debug)]
struct PeerView {
    node: NodeId,
    hello: Hello,
    heard_at: Instant,
    compatible: Result<(), Incompatibility>,
}

/// One node of a failover pair.
///
/// Methods, by group:
/// - getters: [`state`](Self::state), [`role`](Self::role), [`is_ready`](Self::is_ready),
///   [`peer`](Self::peer), [`heartbeat_peer`](Self::heartbeat_peer), [`stats`](Self::stats),
///   [`history`](Self::history), replication queries;
/// - input: `handle_link_up`, `handle_link_down`, `handle_frame`, `handle_heartbeat`,
///   `handle_timeout`, `handle_peer_dead`, `handle_local_changes`, `handle_changes_lost`,
///   `handle_action_done`;
/// - commands: [`switchover`](Self::switchover), [`set_forwarding`](Self::set_forwarding),
///   [`set_vrrp_report`](Self::set_vrrp_report), [`shutdown`](Self::shutdown);
/// - output, polled after every input in this order: [`poll_action`](Self::poll_action),
///   [`poll_transmit`](Self::poll_transmit), [`poll_heartbeat`](Self::poll_heartbeat) (with a
///   heartbeat path), [`poll_event`](Self::poll_event), then sleep until
///   [`poll_timeout`](Self::poll_timeout) and call `handle_timeout`; flow control:
///   [`wants_local_changes`](Self::wants_local_changes) says whether to feed more local changes.
///
/// See the crate documentation and `docs/ARCHITECTURE.md` for the protocol.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    state: State,
    role: Role,
    timers: TimerTable,
    /// The authenticated peer while the transport is up.
    link: Option<NodeId>,
    /// The live peer (heard within the dead interval).
    peer: Option<PeerView>,
    /// The peer as the heartbeat path last heard it, within the dead interval.
    heartbeat: Option<PeerView>,
    /// The last peer we synchronized with: whose entries to adopt when it dies.
    last_peer: Option<NodeId>,
    /// Whether `last_peer` is a peer heard since start (else it is only the configured peer,
    /// whose entries are those found at start).
    peer_heard: bool,
    /// Not yet synchronized since start: the entries found at start are still attributed to
    /// the configured peer (see the Synchronization arm of `set_state`).
    unsynchronized_since_start: bool,
    /// Why the peer was lost: the reason this node gives for taking over alone.
    loss_reason: Option<Reason>,
    /// Reported once per distinct reason, across link losses.
    reported_incompatibility: Option<Incompatibility>,
    /// Reported once per distinct value of the peer's timers, across link losses.
    reported_timer_mismatch: Option<TimerMismatch>,
    /// Our streams' epochs keep counting up, so an old stream's frames are never taken for a
    /// new one's.
    next_epoch: u32,
    /// Switchover asked: hand the active role over once the peer holds our sessions.
    yielding: bool,
    /// Shutting down: never take the active role again.
    leaving: bool,
    /// A sweep failed: not ready until the next synchronization starts over (kept past a
    /// link loss, so status still says why).
    apply_failed: bool,
    /// Multiplier of the wait before refused ops are tried again: doubles while they fail.
    /// Kept on the node: the peer's held deletes are applied after its goodbye too.
    apply_retry_backoff: u32,
    /// The last resync forced by lost backend events, and the least wait before the next.
    /// Kept past a link loss: overruns come from the backend, whatever the link does.
    overrun_resync: Option<(Instant, Duration)>,
    /// Our stream: kept past a link loss, for the changes made apart and a bulk to resume.
    outbound: Outbound,
    /// The peer's stream: kept past a link loss, for its held deletes and a bulk to resume.
    inbound: Inbound,
    /// The backend runs one action at a time in every state: a result may come after the
    /// state changed.
    outstanding: Option<(Token, Work)>,
    next_token: u64,
    /// Entries to relabel, (from, to); the latest role change decides.
    adopt: Option<(NodeId, NodeId)>,
    /// Active, we applied changes of a peer that was active too, as its own: once it is
    /// standby, we adopt them and send our table again. Kept past a link loss: the peer may
    /// give way only once reconnected.
    applied_for_active_peer: bool,
    /// Standby because our VRRP group was outranked, not because it failed: said in our hellos
    /// ([`HelloFlags::OUTRANKED`](failoverd_wire::HelloFlags::OUTRANKED)), so the peer applies
    /// the deletes we made while we forwarded. Kept across a link loss: the role is.
    outranked: bool,
    /// Our digests' round: counts up over the node's life, as the digest message says.
    digest_round: u32,
    /// Control frames to send (hellos, settings, digests, goodbye, VRRP reports), in every
    /// state.
    control: VecDeque<Vec<u8>>,
    /// What our VRRP instances hear, and whether the live peer has it.
    vrrp_report: Option<(VrrpReport, bool)>,
    /// What the live peer's VRRP instances hear, as it last said.
    peer_vrrp_report: Option<VrrpReport>,
    /// What our hellos say changed in a way the peer must learn at once.
    hello_due: bool,
    /// The hello schedule and the dead timer, unless the driver runs them apart
    /// ([`detach_liveness`](Node::detach_liveness)).
    liveness: Option<Liveness>,
    /// A hello for the heartbeat path is due (see [`Node::poll_heartbeat`]).
    heartbeat_due: bool,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    history: History,
    stats: Stats,
}

impl Node {
    /// A node that has just started: Silence, standby.
    ///
    /// Panics if `config` does not [`validate`](NodeConfig::validate) (a caller bug: the daemon
    /// validates the config file first).
    pub fn new(config: NodeConfig, now: Instant) -> Self {
        if let Err(err) = config.validate() {
            panic!("invalid node config: {err}");
        }
        let mut rng = SmallRng::seed_from_u64(config.seed ^ u64::from(config.node_id.0));
        let mut node = Self {
            state: State::Silence { startup: true },
            role: Role::Standby,
            timers: TimerTable::default(),
            link: None,
            peer: None,
            heartbeat: None,
            last_peer: config.peer,
            peer_heard: false,
            unsynchronized_since_start: true,
            loss_reason: None,
            reported_incompatibility: None,
            reported_timer_mismatch: None,
            next_epoch: rng.random(),
            yielding: false,
            leaving: false,
            apply_failed: false,
            apply_retry_backoff: 1,
            overrun_resync: None,
            outbound: Outbound::new(config.node_id, config.apart_log_limit, config.remove_hold),
            inbound: Inbound::new(
                config.remove_hold,
                config.filter.clone(),
                config.max_peer_buffer,
            ),
            outstanding: None,
            next_token: 0,
            adopt: None,
            applied_for_active_peer: false,
            outranked: false,
            digest_round: 0,
            control: VecDeque::new(),
            vrrp_report: None,
            peer_vrrp_report: None,
            hello_due: false,
            liveness: Some(Liveness::new(
                config.hello_interval,
                config.dead_interval,
                now,
            )),
            heartbeat_due: false,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            history: History::new(config.history_len),
            stats: Stats::default(),
            config,
        };
        node.timers
            .set(Timer::Silence, now + node.config.silence_timer);
        // The heartbeat path's hellos keep to the node's timers: the path is the fallback for a
        // silent failover link, so it needs no thread of its own.
        node.timers.set(Timer::Heartbeat, now);
        node.emit(
            now,
            Event::StateChanged {
                from: SyncState::Silence,
                to: SyncState::Silence,
                reason: Reason::Started,
            },
        );
        node
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The failover state.
    pub fn state(&self) -> SyncState {
        self.state.name()
    }

    /// Whether this node forwards.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The live peer, if any.
    pub fn peer(&self) -> Option<PeerStatus> {
        self.peer.as_ref().map(|p| PeerStatus {
            node_id: p.node,
            state: p.hello.state,
            role: p.hello.role,
            priority: p.hello.priority,
            ready: self.peer_holds_ours(p),
            incompatibility: p.compatible.clone().err(),
            last_heard: p.heard_at,
            protocol: ProtocolVersion::of_hello(&p.hello),
            timers: peer_timers(&p.hello),
            timer_mismatch: TimerMismatch::between(self.local_timers(), peer_timers(&p.hello)),
        })
    }

    /// What the live peer's VRRP instances hear, as its last report over the failover link
    /// said (peers from 1.3 on).
    pub fn peer_vrrp_report(&self) -> Option<&VrrpReport> {
        self.peer_vrrp_report.as_ref()
    }

    /// The peer as the heartbeat path hears it (heard within the dead interval), if at all.
    pub fn heartbeat_peer(&self) -> Option<HeartbeatPeer> {
        self.heartbeat.as_ref().map(|h| HeartbeatPeer {
            state: h.hello.state,
            role: h.hello.role,
            priority: h.hello.priority,
            last_heard: h.heard_at,
        })
    }

    /// The protocol version both nodes speak, while a peer is live: behaviour a newer version
    /// adds runs only if this is at least that version.
    pub(crate) fn common_protocol(&self) -> Option<ProtocolVersion> {
        let peer = self.peer.as_ref()?;
        Some(ProtocolVersion::CURRENT.common(ProtocolVersion::of_hello(&peer.hello)))
    }

    /// Round-trip time of the last hello exchange (`None` once the liveness is detached: ask
    /// it).
    pub fn link_rtt(&self) -> Option<Duration> {
        self.liveness.as_ref().and_then(Liveness::rtt)
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The bounded event history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Epoch of our current outbound stream.
    pub fn epoch(&self) -> u32 {
        self.outbound.epoch()
    }

    /// True if the peer has applied the latest state of our session `key`. Conservative: false
    /// while our bulk sync is incomplete or after change events were lost.
    pub fn is_replicated(&self, key: &SessionKey) -> bool {
        self.outbound.is_replicated(key)
    }

    /// True if a change of `key` is queued or sent but not yet applied by the peer. (Public
    /// for the simulation's invariants, which tell a change on its way from drift.)
    pub fn has_unacked_change(&self, key: &SessionKey) -> bool {
        self.outbound.has_unacked_change(key)
    }

    /// True if the peer's delete of `key` has arrived but is held or queued, not yet applied
    /// (see [`NodeConfig::remove_hold`]). (Public for the simulation's invariants.)
    pub fn has_pending_remove(&self, key: &SessionKey) -> bool {
        self.inbound.has_pending_remove(key)
    }

    /// Our bulk sync is applied by the peer and no change is queued or in flight. (Public for
    /// the simulation's invariants: nothing is left to replicate once it settles.)
    pub fn is_replication_idle(&self) -> bool {
        self.outbound.is_idle()
    }

    /// Whether the driver should hand over more local changes now (flow control). False while
    /// synchronizing with more than [`max_pending_changes`](NodeConfig::max_pending_changes)
    /// queued: the link is the bottleneck, and changes wait in the backend's own queue (which
    /// coalesces nothing but costs nothing here) until batches drain the queue. Outside
    /// Synchronization nothing is sent or queued, so nothing is held back either.
    pub fn wants_local_changes(&self) -> bool {
        !self.state.synchronizing() || self.outbound.pending_len() < self.config.max_pending_changes
    }

    /// Bytes of the peer's batches held, waiting for a gap to fill or for the backend (at
    /// most [`NodeConfig::max_peer_buffer`]).
    pub fn peer_buffered_bytes(&self) -> usize {
        self.inbound.buffered_bytes()
    }

    /// Changes queued, not yet sent.
    pub fn pending_changes(&self) -> usize {
        self.outbound.pending_len()
    }

    /// Batches sent, not yet applied by the peer.
    pub fn in_flight_batches(&self) -> usize {
        self.outbound.in_flight_len()
    }
}
