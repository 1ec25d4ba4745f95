//! One node of a failover pair, as a sans-I/O state machine.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::Duration;

use failoverd_wire::{
    BackupType, DIGEST_BUCKETS, DigestView, Goodbye, GoodbyeReason, Hello, HelloFlags, Message,
    NodeId, ProtocolVersion, Role, SessionKey, SessionOp, SessionRecord, SettingsView, SyncState,
    VrrpReport, WireError,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::{NodeConfig, PlantedBug, RoleAuthority};
use crate::event::{Election, Event, HelloTimers, History, Incompatibility, Reason, TimerMismatch};
use crate::liveness::Liveness;
use crate::stats::Stats;
use crate::sync::inbound::{Inbound, InboundWork, Receipt};
use crate::sync::outbound::Outbound;
use crate::time::Instant;
use crate::timer::{Timer, TimerTable};

/// Most the retransmit timeout grows by while nothing is acknowledged.
const MAX_BACKOFF: u32 = 8;

/// Least time between two resyncs forced by lost backend events. Each is a full bulk sync both
/// ways: restarted at every overrun of a flood, none would ever complete. While overruns keep
/// coming the wait doubles, up to [`MAX_RESYNC_BACKOFF`]; after a quiet spell it is back here.
const MIN_RESYNC_BACKOFF: Duration = Duration::from_millis(500);

/// Most time between two resyncs forced by lost backend events.
const MAX_RESYNC_BACKOFF: Duration = Duration::from_secs(8);

/// Which path of the failover link a frame takes. Control frames (hellos, acks, goodbye) must
/// never wait behind data frames (session batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Small and latency-critical.
    Control,
    /// Bulk session data.
    Data,
}

/// A frame to send to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The path to send it on.
    pub channel: Channel,
    /// One whole frame.
    pub payload: Vec<u8>,
}

/// Identifies a backend action so its result can be matched to it. The core only accepts the
/// token of the action it has outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

/// Work for the driver. Backend actions run one at a time: the next is polled only after the
/// result of the previous one was handed back with [`Node::handle_action_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read every entry of the local table (source of our bulk sync).
    Dump {
        /// Hand back with the result.
        token: Token,
    },
    /// Apply the peer's ops, in order.
    Apply {
        /// Hand back with the result.
        token: Token,
        /// What to apply.
        ops: Vec<SessionOp>,
    },
    /// Delete every entry owned by `owner` whose key is not in `keep`.
    Sweep {
        /// Hand back with the result.
        token: Token,
        /// Whose entries.
        owner: NodeId,
        /// What the bulk sync mentioned.
        keep: HashSet<SessionKey>,
    },
    /// Make `to` the owner of every entry owned by `from`: this node takes over (the peer's
    /// entries become ours), or hands over to a live peer (ours become the peer's).
    Adopt {
        /// Hand back with the result.
        token: Token,
        /// The previous owner.
        from: NodeId,
        /// The new owner.
        to: NodeId,
    },
    /// Compute the digest of every entry owned by `owner` (anti-entropy): this node's own, to
    /// send to the peer, or the peer's, to compare with the digest the peer sent.
    Digest {
        /// Hand back with the result.
        token: Token,
        /// Whose entries.
        owner: NodeId,
    },
    /// Drop the failover-link connection and reconnect (the peer went silent on it).
    ResetLink,
}

/// The result of a backend [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// Result of [`Action::Dump`].
    Dumped(Result<Vec<SessionRecord>, String>),
    /// Result of [`Action::Apply`]. Refused ops are tried again, so nothing the backend
    /// refused is acknowledged to the peer as applied.
    Applied {
        /// The action's ops, handed back: those from the first refusal on are tried again.
        ops: Vec<SessionOp>,
        /// Ops that took effect (including no-op removes).
        applied: u64,
        /// The ops the backend refused, by index into `ops`, in order, with why.
        refused: Vec<(usize, ApplyError)>,
    },
    /// Result of [`Action::Sweep`]: entries removed.
    Swept(Result<u64, String>),
    /// Result of [`Action::Adopt`]: entries adopted.
    Adopted(Result<u64, String>),
    /// Result of [`Action::Digest`] (see [`failoverd_wire::digest`]).
    Digested(Result<Box<Digest>, String>),
}

/// Why a backend refused one op of an [`Action::Apply`]; the rest of the batch is applied
/// regardless.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The table is at its size limit (`nf_conntrack_max` for the kernel), so a new entry was
    /// refused. Replacing an existing entry never fails this way.
    #[error("session table full: new entry refused")]
    TableFull,
    /// The table refused the entry for another reason, given by the backend (for a kernel
    /// backend, the errno and the attribute it concerns).
    #[error("session entry refused: {0}")]
    Refused(String),
}

/// Per-bucket sums of session digest hashes (see [`failoverd_wire::digest`]).
pub type Digest = [u64; DIGEST_BUCKETS];

/// Why this node is not ready to take over from a healthy active peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Not in Synchronization with the peer.
    NotSynchronized,
    /// The peer's bulk sync is not yet applied.
    BulkSyncIncomplete,
    /// We asked the peer to resend its sessions (our copy is known to be incomplete).
    ResyncPending,
    /// Some of the peer's sessions could not be applied.
    ApplyFailed,
}

impl NotReady {
    /// Stable name for the CLI and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotSynchronized => "not-synchronized",
            Self::BulkSyncIncomplete => "bulk-sync-incomplete",
            Self::ResyncPending => "resync-pending",
            Self::ApplyFailed => "apply-failed",
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Switchover moves the active role away, so it runs on the active node.
    #[error("this node is standby: run switchover on the active node")]
    NotActive,
    /// Nobody to hand over to.
    #[error("no live peer to hand over to")]
    NoPeer,
    /// The peer would take over without our sessions.
    #[error("the peer is not ready (its bulk sync of our sessions is incomplete)")]
    PeerNotReady,
}

/// What this node knows of its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's node id.
    pub node_id: NodeId,
    /// Its failover state.
    pub state: SyncState,
    /// Its role.
    pub role: Role,
    /// Its priority.
    pub priority: u8,
    /// It holds our sessions: it says it is ready, and it has applied our current bulk sync.
    pub ready: bool,
    /// Negotiation problem, if any.
    pub incompatibility: Option<Incompatibility>,
    /// When we last heard a hello.
    pub last_heard: Instant,
    /// The protocol version it speaks.
    pub protocol: ProtocolVersion,
    /// Its hello timers.
    pub timers: HelloTimers,
    /// Its hello timers and ours, if they differ.
    pub timer_mismatch: Option<TimerMismatch>,
}

/// The peer as the heartbeat path hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatPeer {
    /// Its failover state.
    pub state: SyncState,
    /// Its role.
    pub role: Role,
    /// Its priority.
    pub priority: u8,
    /// When the last heartbeat arrived.
    pub last_heard: Instant,
}

#[derive(Debug)]
enum State {
    /// `startup` holds the role back: a peer we have not heard yet may be active.
    Silence {
        startup: bool,
    },
    Independence,
    Synchronization(SyncSession),
}

impl State {
    fn name(&self) -> SyncState {
        match self {
            Self::Silence { .. } => SyncState::Silence,
            Self::Independence => SyncState::Independence,
            Self::Synchronization(_) => SyncState::Synchronization,
        }
    }

    fn session(&self) -> Option<&SyncSession> {
        match self {
            Self::Synchronization(session) => Some(session),
            _ => None,
        }
    }

    fn session_mut(&mut self) -> Option<&mut SyncSession> {
        match self {
            Self::Synchronization(session) => Some(session),
            _ => None,
        }
    }

    fn synchronizing(&self) -> bool {
        matches!(self, Self::Synchronization(_))
    }
}

/// What exists only while synchronizing with a peer: leaving Synchronization drops it, so the
/// next synchronization starts from nothing. What must outlive a link loss stays on [`Node`].
#[derive(Debug)]
struct SyncSession {
    /// The peer negotiated with.
    peer: NodeId,
    /// We asked the peer for a new bulk sync: the epoch of its stream to replace.
    resync_requested: Option<u32>,
    /// Multiplier of the retransmit timeout: doubles while nothing is acknowledged.
    retransmit_backoff: u32,
    /// Unacknowledged batches to send again (the retransmit timer expired).
    resend: VecDeque<Vec<u8>>,
    /// The sweep that ends the peer's bulk sync, once the backend is free.
    pending_sweep: Option<PendingSweep>,
    /// A dump failed: the next waits for [`Timer::DumpRetry`].
    dump_blocked: bool,
    /// Anti-entropy: our digest is due to be computed and sent.
    digest_due: bool,
    /// The peer's latest digest, waiting for ours of its sessions to compare with.
    peer_digest: Option<Box<Digest>>,
    /// The peer's latest digest, waiting for `peer_digest_after`: each comparison costs a
    /// dump, so a peer sending digests faster than one per digest interval gets no more.
    peer_digest_waiting: Option<Box<Digest>>,
    peer_digest_after: Instant,
    /// The previous comparison (the peer's digest, ours): a bucket that differs twice with
    /// neither side changed in between is drift, not sessions on their way.
    last_comparison: Option<(Box<Digest>, Box<Digest>)>,
}

impl SyncSession {
    fn new(peer: NodeId, now: Instant) -> Self {
        Self {
            peer,
            resync_requested: None,
            retransmit_backoff: 1,
            resend: VecDeque::new(),
            pending_sweep: None,
            dump_blocked: false,
            digest_due: false,
            peer_digest: None,
            peer_digest_waiting: None,
            peer_digest_after: now,
            last_comparison: None,
        }
    }
}

/// The sweep that ends the peer's bulk sync: its entries not mentioned go.
#[derive(Debug)]
struct PendingSweep {
    keep: HashSet<SessionKey>,
    last_seq: u64,
    /// The inbound stream's generation it belongs to.
    generation: u64,
}

/// The live peer, as its last hello describes it.
#[derive(Debug)]
struct PeerView {
    node: NodeId,
    hello: Hello,
    heard_at: Instant,
    compatible: Result<(), Incompatibility>,
}

/// What an outstanding backend action was for.
#[derive(Debug)]
enum Work {
    Dump {
        epoch: u32,
    },
    Apply {
        generation: u64,
        last_seq: u64,
        bulk_end: bool,
        /// The peer's changes applied as ours (we are active): announced back once applied,
        /// so both copies carry the same owner (and a copy the peer took back meanwhile goes).
        claimed: Vec<SessionOp>,
        /// Where `claimed` came from: (index into the ops, the owner the peer sent).
        unclaimed: Vec<(usize, NodeId)>,
    },
    Sweep {
        generation: u64,
        last_seq: u64,
    },
    Adopt,
    Digest {
        /// The peer's digest to compare ours with; `None` for our own, to send.
        peer_digest: Option<Box<Digest>>,
    },
}

/// One node of a failover pair.
///
/// Methods, by group:
/// - getters: [`state`](Self::state), [`role`](Self::role), [`is_ready`](Self::is_ready),
///   [`peer`](Self::peer), [`heartbeat_peer`](Self::heartbeat_peer), [`stats`](Self::stats),
///   [`history`](Self::history), replication queries;
/// - input: `handle_link_up`, `handle_link_down`, `handle_frame`, `handle_heartbeat`,
///   `handle_timeout`, `handle_local_changes`, `handle_changes_lost`, `handle_action_done`;
/// - commands: [`switchover`](Self::switchover), [`shutdown`](Self::shutdown);
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
    loss_reason: Option<Reason>,
    reported_incompatibility: Option<Incompatibility>,
    reported_timer_mismatch: Option<TimerMismatch>,
    next_epoch: u32,
    yielding: bool,
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
    /// standby, we adopt them and send our table again.
    applied_for_active_peer: bool,
    /// Our digests' round: counts up over the node's life, as the digest message says.
    digest_round: u32,
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
            outbound: Outbound::new(
                config.node_id,
                config.apart_log_limit,
                config.has_bug(PlantedBug::DropTombstones),
                config.remove_hold,
            ),
            inbound: Inbound::new(
                config.remove_hold,
                config.filter.clone(),
                config.max_peer_buffer,
            ),
            outstanding: None,
            next_token: 0,
            adopt: None,
            applied_for_active_peer: false,
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

    // ---- getters ----

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

    /// Ready to take over from a healthy active peer: holds a complete copy of its sessions.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reasons().is_empty()
    }

    /// Why this node is not ready (empty when it is).
    pub fn not_ready_reasons(&self) -> Vec<NotReady> {
        let mut reasons = Vec::new();
        match &self.state {
            State::Synchronization(session) if session.resync_requested.is_some() => {
                reasons.push(NotReady::ResyncPending);
            }
            State::Synchronization(_) => {
                let restarted = self
                    .peer
                    .as_ref()
                    .is_some_and(|p| self.inbound.epoch() != Some(p.hello.epoch));
                // A stream the peer restarted (its hello names the new epoch) is not complete
                // here until its own bulk sync is.
                if !self.inbound.complete() || restarted {
                    reasons.push(NotReady::BulkSyncIncomplete);
                }
            }
            State::Silence { .. } | State::Independence => {
                reasons.push(NotReady::NotSynchronized);
            }
        }
        if self.apply_failed || self.inbound.has_refused() {
            reasons.push(NotReady::ApplyFailed);
        }
        reasons
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

    /// Standby because the heartbeat path hears the peer while the failover link does not:
    /// the peer is active (or preferred), so this node does not take over (election mode).
    pub fn held_by_heartbeat(&self) -> bool {
        self.config.role_authority == RoleAuthority::Election
            && self.role == Role::Standby
            && self.peer.is_none()
            && self.heartbeat.is_some()
    }

    /// The protocol version both nodes speak, while a peer is live: behaviour a newer version
    /// adds runs only if this is at least that version.
    pub fn common_protocol(&self) -> Option<ProtocolVersion> {
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

    /// True if a change of `key` is queued or sent but not yet applied by the peer.
    pub fn has_unacked_change(&self, key: &SessionKey) -> bool {
        self.outbound.has_unacked_change(key)
    }

    /// True if the peer's delete of `key` has arrived but is held or queued, not yet applied
    /// (see [`NodeConfig::remove_hold`]).
    pub fn has_pending_remove(&self, key: &SessionKey) -> bool {
        self.inbound.has_pending_remove(key)
    }

    /// Our bulk sync is applied by the peer and no change is queued or in flight.
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

    /// The peer's batches received here and not yet applied.
    pub fn apply_backlog(&self) -> usize {
        self.inbound.queued_batches()
    }

    // ---- input ----

    /// The transport authenticated `peer` and is up.
    pub fn handle_link_up(&mut self, now: Instant, peer: NodeId) {
        self.link = Some(peer);
        self.hello_due = true;
        if let Some(liveness) = &mut self.liveness {
            liveness.handle_link_up(now);
        }
    }

    /// The transport closed.
    pub fn handle_link_down(&mut self, now: Instant, reason: &str) {
        self.link = None;
        self.control.clear();
        if let Some(liveness) = &mut self.liveness {
            liveness.handle_link_down();
        }
        self.peer_lost(now, Reason::LinkClosed(reason.to_owned()));
        self.update_role(now);
    }

    /// A frame from the authenticated peer.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) {
        let Some(authenticated) = self.link else {
            self.stats.frames_without_link += 1;
            return;
        };
        match Message::parse(bytes) {
            Err(WireError::UnsupportedVersion(version)) => {
                self.incompatible(now, Incompatibility::Version(version));
            }
            Err(_) => self.stats.malformed_frames += 1,
            Ok(Message::Hello(hello)) => self.handle_hello(now, authenticated, hello),
            Ok(Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Shutdown | GoodbyeReason::Unknown(_),
            })) => {
                if let Some(liveness) = &mut self.liveness {
                    liveness.handle_goodbye();
                }
                // A peer that leaves hands over on purpose: the deletes we hold from it ended
                // real sessions, and the stream's end must not drop them (dropped, a copy we
                // adopt at the takeover would outlive the session: simulation seed 921).
                let held = self.inbound.take_held();
                self.peer_lost(now, Reason::PeerLeft);
                self.inbound.apply_after_reset(held);
                self.drive_backend();
            }
            Ok(Message::SessionBatch(batch)) => {
                if !self.state.synchronizing() {
                    self.stats.stale_epoch_batches += 1;
                    return;
                }
                let bug = self.config.has_bug(PlantedBug::AckBeforeApply);
                let may_resume = !self.outbound.has_apart_changes();
                let outbound = &self.outbound;
                match self.inbound.handle_batch(
                    now,
                    batch,
                    bug,
                    may_resume,
                    &|key| outbound.deleted_apart(key),
                    &mut self.stats,
                ) {
                    Err(_) => self.stats.malformed_frames += 1,
                    Ok(Receipt::Overflow) => {
                        // The peer ignored its window. Everything applied stays; the next
                        // synchronization's bulk sync and sweep bring the rest.
                        self.stats.peer_buffer_resets += 1;
                        self.peer_lost(
                            now,
                            Reason::LinkClosed("the peer sent past its window".to_owned()),
                        );
                        self.actions.push_back(Action::ResetLink);
                        self.update_role(now);
                        return;
                    }
                    Ok(_) => {}
                }
                if let Some(epoch) = self.inbound.take_resume_refused() {
                    // The peer resumes a bulk we no longer hold part of: ask for it whole.
                    if let Some(session) = self.state.session_mut() {
                        session.resync_requested = Some(epoch);
                    }
                    self.hello_due = true;
                }
                self.arm_remove_hold();
                self.drive_backend();
            }
            Ok(Message::Ack(ack)) => {
                if !self.state.synchronizing() {
                    return;
                }
                let outcome = self.outbound.handle_ack(ack, now, &mut self.stats);
                if outcome.progress {
                    self.arm_retransmit(now, true);
                }
                if let Some((epoch, records)) = outcome.bulk_applied {
                    self.stats.bulk_syncs_sent += 1;
                    self.emit(now, Event::BulkSent { epoch, records });
                }
            }
            Ok(Message::Settings(settings)) => self.compare_settings(now, settings),
            Ok(Message::Digest(digest)) => {
                // Compared only against a complete copy of the peer's sessions, and only by a
                // standby: an active node holds the standby's changes as its own.
                let copy_held = !(self.role == Role::Active && self.symmetric());
                if copy_held
                    && self.inbound.complete()
                    && let State::Synchronization(session) = &mut self.state
                {
                    if self.config.digest_interval.is_zero() {
                        self.stats.digests_dropped += 1;
                    } else {
                        let digest = Box::new(digest.buckets());
                        if session.peer_digest_waiting.replace(digest).is_some() {
                            self.stats.digests_dropped += 1;
                        }
                        self.promote_peer_digest(now);
                    }
                }
            }
            Ok(Message::VrrpReport(report)) => self.peer_vrrp_report = Some(report.report()),
            Ok(Message::Unknown(_)) => self.stats.unknown_messages += 1,
        }
        self.update_role(now);
    }

    /// A hello from the heartbeat path, authenticated as `peer` and found fresh by the transport
    /// (a second path beside the failover link, e.g. over a traffic network). It does not
    /// negotiate or synchronize; it only tells, in election mode, that the peer is alive and in
    /// which role while the failover link is down, so a cut link alone does not make both nodes
    /// active (see `docs/ARCHITECTURE.md`, "The heartbeat path").
    pub fn handle_heartbeat(&mut self, now: Instant, peer: NodeId, bytes: &[u8]) {
        let hello = match Message::parse(bytes) {
            Ok(Message::Hello(hello)) if self.check(peer, &hello).is_ok() => hello,
            _ => {
                self.stats.heartbeats_refused += 1;
                return;
            }
        };
        self.stats.heartbeats_received += 1;
        if self.heartbeat.is_none() {
            self.emit(now, Event::HeartbeatPath { up: true });
        }
        self.heartbeat = Some(PeerView {
            node: peer,
            hello,
            heard_at: now,
            compatible: Ok(()),
        });
        self.timers
            .set(Timer::HeartbeatDead, now + self.config.dead_interval);
        self.update_role(now);
    }

    /// Runs every timer that expired at `now`, each once; spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(liveness) = &mut self.liveness {
            liveness.handle_timeout(now);
            if let Some(silent) = liveness.poll_dead() {
                self.peer_dead(now, silent);
            }
        }
        for timer in self.timers.expired(now) {
            match timer {
                Timer::Heartbeat => {
                    self.heartbeat_due = true;
                    self.timers
                        .set(Timer::Heartbeat, now + self.config.hello_interval);
                }
                Timer::Silence => {
                    self.set_state(now, State::Independence, Reason::SilenceExpired);
                    self.try_negotiate(now);
                }
                Timer::Retransmit => {
                    if self.outbound.awaiting_ack()
                        && let State::Synchronization(session) = &mut self.state
                    {
                        let reliable = self.config.reliable_link;
                        session
                            .resend
                            .extend(self.outbound.frames_to_resend(reliable));
                        self.stats.retransmits += 1;
                        // Back off while nothing moves: a peer busy applying a bulk sync
                        // is not helped by more copies.
                        session.retransmit_backoff =
                            (session.retransmit_backoff * 2).min(MAX_BACKOFF);
                        let wait = self.config.retransmit_timeout * session.retransmit_backoff;
                        self.timers.set(Timer::Retransmit, now + wait);
                    }
                }
                Timer::DumpRetry => {
                    if let Some(session) = self.state.session_mut() {
                        session.dump_blocked = false;
                    }
                    self.drive_backend();
                }
                Timer::ApplyRetry => {
                    self.inbound.retry_refused();
                    self.drive_backend();
                }
                Timer::Digest => {
                    if let Some(session) = self.state.session_mut() {
                        session.digest_due = true;
                        self.drive_backend();
                    }
                    self.timers
                        .set(Timer::Digest, now + self.config.digest_interval);
                }
                Timer::PeerDigest => self.promote_peer_digest(now),
                Timer::ResyncBackoff => {
                    if self.state.synchronizing() {
                        self.resync_after_overrun(now);
                    }
                }
                Timer::AdoptAlone => {
                    if self.role == Role::Active && self.peer.is_none() {
                        self.adopt = self.last_peer.map(|peer| (peer, self.config.node_id));
                        self.drive_backend();
                    }
                }
                Timer::HeartbeatDead => {
                    if let Some(heard) = self.heartbeat.take() {
                        self.emit(now, Event::HeartbeatPath { up: false });
                        if self.peer.is_none() {
                            // Silent on both paths: the peer is dead.
                            self.loss_reason = Some(Reason::PeerDead(now - heard.heard_at));
                        }
                    }
                }
                Timer::RemoveHold => {
                    self.inbound.release_held(now);
                    let peer_active = self.peer_active();
                    self.inbound
                        .settle_suspects(now, peer_active, &mut self.stats);
                    self.arm_remove_hold();
                    self.drive_backend();
                }
            }
        }
        self.update_role(now);
    }

    /// The detached liveness ([`detach_liveness`](Self::detach_liveness)) heard no hello for
    /// `silent`: the peer is dead.
    pub fn handle_peer_dead(&mut self, now: Instant, silent: Duration) {
        self.peer_dead(now, silent);
        self.update_role(now);
    }

    fn peer_dead(&mut self, now: Instant, silent: Duration) {
        self.peer_lost(now, Reason::PeerDead(silent));
        self.actions.push_back(Action::ResetLink);
    }

    /// Changes of the local table reported by the backend, in order (the backend never reports
    /// what it applied for the peer). Creates and updates of entries this node owns are
    /// replicated. A delete is replicated if this node owns the entry, or if this node is active:
    /// the session ended in the traffic it forwards, so the peer's copy goes too. A peer-owned
    /// entry that disappears on the standby merely expired there (it sees none of its packets)
    /// and must not delete the owner's live session. While the peer is away nothing is queued:
    /// the bulk sync that starts the next Synchronization carries the whole table.
    pub fn handle_local_changes(&mut self, now: Instant, ops: impl IntoIterator<Item = SessionOp>) {
        let active = self.role == Role::Active;
        for op in ops {
            self.inbound.cancel_suspect(op.key());
            self.outbound
                .record_change(op, active, now, &mut self.stats);
        }
    }

    /// The backend lost change events: resynchronize with a new bulk sync, at once unless
    /// one forced so began less than the backoff ago (then when it ends: see
    /// [`MIN_RESYNC_BACKOFF`]).
    pub fn handle_changes_lost(&mut self, now: Instant) {
        self.stats.changes_lost += 1;
        self.outbound.changes_lost();
        self.emit(now, Event::ChangesLost);
        if !self.state.synchronizing() || self.timers.is_set(Timer::ResyncBackoff) {
            // Outside Synchronization the next one resends everything anyway; a deferred
            // resync covers this loss too.
            return;
        }
        match self.overrun_resync {
            Some((last, wait)) if now < last + wait => {
                self.stats.resyncs_deferred += 1;
                self.timers.set(Timer::ResyncBackoff, last + wait);
            }
            _ => self.resync_after_overrun(now),
        }
    }

    /// A resync forced by lost backend events. The wait before the next one doubles when this
    /// one follows the last within twice its wait (overruns keep coming), else starts over.
    fn resync_after_overrun(&mut self, now: Instant) {
        let wait = match self.overrun_resync {
            Some((last, wait)) if now < last + 2 * wait => (2 * wait).min(MAX_RESYNC_BACKOFF),
            _ => MIN_RESYNC_BACKOFF,
        };
        self.overrun_resync = Some((now, wait));
        self.stats.overrun_resyncs += 1;
        self.restart_outbound();
        // The peer's stream may hold an entry we deleted without telling it: ask for a new one
        // too, naming the epoch to replace, so a repeated request restarts it once.
        let peer_epoch = self.peer.as_ref().map(|p| p.hello.epoch);
        if let Some(session) = self.state.session_mut() {
            session.resync_requested = peer_epoch;
        }
        self.hello_due = true;
    }

    /// A new epoch of our stream: everything is sent again by a bulk sync.
    fn restart_outbound(&mut self) {
        let epoch = self.take_epoch();
        self.outbound.start(epoch, false, None, &mut self.stats);
        if let Some(session) = self.state.session_mut() {
            session.resend.clear();
        }
        self.timers.stop(Timer::Retransmit);
        self.drive_backend();
    }

    /// The result of the backend action identified by `token`.
    pub fn handle_action_done(&mut self, now: Instant, token: Token, result: ActionResult) {
        let Some((expected, work)) = self.outstanding.take() else {
            return;
        };
        if expected != token {
            self.outstanding = Some((expected, work));
            return;
        }
        match (work, result) {
            (Work::Dump { epoch }, ActionResult::Dumped(Ok(records)))
                if epoch == self.outbound.epoch() && self.state.synchronizing() =>
            {
                self.outbound.handle_dump(records, &mut self.stats);
            }
            (Work::Dump { .. }, ActionResult::Dumped(Err(error))) => {
                self.emit(
                    now,
                    Event::ApplyFailed {
                        count: 0,
                        first: format!("dump failed: {error}"),
                    },
                );
                if let Some(session) = self.state.session_mut() {
                    session.dump_blocked = true;
                }
                self.timers
                    .set(Timer::DumpRetry, now + self.config.retransmit_timeout);
            }
            (
                Work::Apply {
                    generation,
                    last_seq,
                    bulk_end,
                    claimed,
                    unclaimed,
                },
                ActionResult::Applied {
                    mut ops,
                    applied,
                    refused,
                },
            ) => {
                // A refused op is tried again as the peer sent it: whether to claim it is
                // decided by the role at the retry.
                for (index, owner) in unclaimed {
                    if let Some(SessionOp::Upsert(record)) = ops.get_mut(index) {
                        record.owner = owner;
                    }
                }
                self.stats.records_applied += applied;
                let refused_keys: HashSet<SessionKey> = refused
                    .iter()
                    .filter_map(|(index, _)| ops.get(*index).map(|op| *op.key()))
                    .collect();
                for op in claimed {
                    if !refused_keys.contains(op.key()) {
                        self.outbound.record_change(op, true, now, &mut self.stats);
                    }
                }
                if let Some((first, error)) = refused.first() {
                    self.stats.apply_failures += refused.len() as u64;
                    let key = ops.get(*first).map(|op| op.key().to_string());
                    self.emit(
                        now,
                        Event::ApplyFailed {
                            count: refused.len() as u64,
                            first: format!("{error} ({})", key.unwrap_or_default()),
                        },
                    );
                }
                if generation == self.inbound.generation() {
                    // Refused ops are not acknowledged, and are tried again after a backoff
                    // that doubles while they keep failing.
                    let indices: Vec<usize> = refused.iter().map(|(index, _)| *index).collect();
                    if !self.inbound.record_refusals(ops, &indices) {
                        self.apply_retry_backoff = 1;
                        self.timers.stop(Timer::ApplyRetry);
                    } else if self.timers.get(Timer::ApplyRetry).is_none() {
                        let wait = self.config.retransmit_timeout * self.apply_retry_backoff;
                        self.apply_retry_backoff = (self.apply_retry_backoff * 2).min(MAX_BACKOFF);
                        self.timers.set(Timer::ApplyRetry, now + wait);
                    }
                    let skip = self.config.has_bug(PlantedBug::SkipSweep);
                    if let Some(InboundWork::Sweep { keep, last_seq }) =
                        self.inbound.applied(last_seq, bulk_end, skip)
                    {
                        // A bulk's sweep: the stream of this generation is a synchronization's.
                        if let Some(session) = self.state.session_mut() {
                            session.pending_sweep = Some(PendingSweep {
                                keep,
                                last_seq,
                                generation,
                            });
                        }
                    } else if bulk_end {
                        self.bulk_received(now, 0);
                    }
                }
            }
            (
                Work::Sweep {
                    generation,
                    last_seq,
                },
                ActionResult::Swept(result),
            ) if generation == self.inbound.generation() => {
                let swept = match result {
                    Ok(swept) => swept,
                    Err(error) => {
                        self.apply_failed = true;
                        self.emit(
                            now,
                            Event::ApplyFailed {
                                count: 0,
                                first: format!("sweep failed: {error}"),
                            },
                        );
                        0
                    }
                };
                self.stats.swept += swept;
                self.inbound.swept(last_seq);
                self.bulk_received(now, swept);
            }
            (Work::Digest { peer_digest }, ActionResult::Digested(Ok(ours))) => {
                if !self.state.synchronizing() {
                } else if let Some(theirs) = peer_digest {
                    self.compare_digests(now, theirs, ours);
                } else {
                    let mut frame = Vec::new();
                    DigestView::emit(self.digest_round, &ours, &mut frame);
                    self.digest_round = self.digest_round.wrapping_add(1);
                    self.stats.digests_sent += 1;
                    self.control.push_back(frame);
                }
            }
            (Work::Adopt, ActionResult::Adopted(result)) => match result {
                Ok(adopted) => self.stats.adopted += adopted,
                Err(error) => self.emit(
                    now,
                    Event::ApplyFailed {
                        count: 0,
                        first: format!("adopt failed: {error}"),
                    },
                ),
            },
            // A stale result (the stream restarted meanwhile), or one of another kind than the
            // action (a driver bug): nothing to do.
            _ => {}
        }
        self.drive_backend();
        self.update_role(now);
    }

    // ---- commands ----

    /// Hands the active role to the peer (which must be ready). The peer becomes active once
    /// this node has stepped down; this node then stays standby while the peer is healthy.
    pub fn switchover(&mut self, now: Instant) -> Result<(), CommandError> {
        if self.role != Role::Active {
            return Err(CommandError::NotActive);
        }
        let peer = self.peer.as_ref().ok_or(CommandError::NoPeer)?;
        if !self.peer_holds_ours(peer) {
            return Err(CommandError::PeerNotReady);
        }
        self.yielding = true;
        // The peer learns at once that the role comes on purpose (under VRRP it takes over
        // as soon as this node's adverts give way).
        self.hello_due = true;
        self.heartbeat_due = true;
        self.update_role(now);
        Ok(())
    }

    /// What this node's VRRP instances hear, for the peer: sent over the failover link when it
    /// changes and to each new peer (from 1.3 on).
    pub fn set_vrrp_report(&mut self, report: VrrpReport) {
        if self.vrrp_report.as_ref().is_some_and(|(r, _)| *r == report) {
            return;
        }
        self.vrrp_report = Some((report, false));
        self.send_vrrp_report();
    }

    /// What the takeover mechanism decided (only with [`RoleAuthority::External`]): this node
    /// forwards (active) or not (standby), and why.
    pub fn set_forwarding(&mut self, now: Instant, forwarding: bool, why: &str) {
        let role = if forwarding {
            Role::Active
        } else {
            Role::Standby
        };
        if self.config.role_authority == RoleAuthority::External && role != self.role {
            self.set_role(now, role, Reason::Takeover(why.to_string()));
        }
    }

    /// Leaves the pair on purpose: tells the peer (so it takes over at once) and steps down.
    pub fn shutdown(&mut self, now: Instant) {
        self.leaving = true;
        if self.link.is_some() {
            let mut frame = Vec::new();
            Goodbye {
                reason: GoodbyeReason::Shutdown,
            }
            .emit(&mut frame);
            self.control.push_back(frame);
        }
        if self.role == Role::Active {
            self.set_role(now, Role::Standby, Reason::ShuttingDown);
        }
    }

    // ---- output ----

    /// The next backend action or link command.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next frame to send. Control frames come first; session batches only while the
    /// window allows and `data_ready` says the data path has room (a full bulk queue must not
    /// hold back the hellos behind it).
    pub fn poll_transmit(&mut self, now: Instant, data_ready: bool) -> Option<Transmit> {
        self.link?;
        if let Some(liveness) = &self.liveness
            && (self.hello_due || liveness.hello_due())
        {
            let hello = self.make_hello();
            let urgent = std::mem::take(&mut self.hello_due);
            if let Some(liveness) = &mut self.liveness {
                liveness.set_hello(hello, urgent);
                if let Some(frame) = liveness.poll_transmit(now) {
                    self.control.push_back(frame);
                    self.stats.hellos_sent += 1;
                }
            }
        }
        if let Some(payload) = self.control.pop_front() {
            return Some(Transmit {
                channel: Channel::Control,
                payload,
            });
        }
        let State::Synchronization(session) = &mut self.state else {
            return None;
        };
        if let Some(ack) = self.inbound.take_ack() {
            let mut payload = Vec::new();
            ack.emit(&mut payload);
            return Some(Transmit {
                channel: Channel::Control,
                payload,
            });
        }
        if !data_ready {
            return None;
        }
        if let Some(payload) = session.resend.pop_front() {
            return Some(Transmit {
                channel: Channel::Data,
                payload,
            });
        }
        // Send data only once the peer is in Synchronization too, so it can take it.
        let peer_synchronizing = self
            .peer
            .as_ref()
            .is_some_and(|p| p.hello.state == SyncState::Synchronization);
        if !peer_synchronizing {
            return None;
        }
        let payload = self.outbound.next_batch(
            self.config.max_batch_bytes,
            self.config.max_in_flight,
            &mut self.stats,
        )?;
        self.arm_retransmit(now, false);
        Some(Transmit {
            channel: Channel::Data,
            payload,
        })
    }

    /// With the liveness detached: what our hellos say now, and whether the peer must learn it
    /// at once (hand both to [`Liveness::set_hello`] after every input).
    pub fn poll_hello(&mut self) -> (Hello, bool) {
        (self.make_hello(), std::mem::take(&mut self.hello_due))
    }

    /// Hands the hello schedule and the dead timer to the caller, to run where no bulk work
    /// runs (the daemon: a thread of its own). From then on the caller feeds it the link's
    /// state and the peer's hellos, sends what it polls, passes what
    /// [`poll_hello`](Self::poll_hello) says after every input, and reports its verdict with
    /// [`handle_peer_dead`](Self::handle_peer_dead); the node still reads every hello for what
    /// it says. `None` if already detached.
    pub fn detach_liveness(&mut self) -> Option<Liveness> {
        self.liveness.take()
    }

    /// The hello to send on the heartbeat path, when one is due: every hello interval and at
    /// once on a change of state or role, whether or not the failover link is up. The driver
    /// polls it only if a heartbeat path is configured.
    pub fn poll_heartbeat(&mut self, now: Instant) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.heartbeat_due) {
            return None;
        }
        let mut hello = self.make_hello();
        // No echo: the heartbeat path measures no round trip (its transport checks freshness).
        hello.tx_stamp = now.as_micros().max(1);
        let mut frame = Vec::new();
        hello.emit(&mut frame);
        Some(frame)
    }

    /// The next event (also kept in [`history`](Self::history)).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let liveness = self.liveness.as_ref().and_then(Liveness::poll_timeout);
        [self.timers.next_timeout(), liveness]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- internals ----

    fn emit(&mut self, now: Instant, event: Event) {
        self.history.push(now, event.clone());
        self.events.push_back(event);
    }

    fn take_epoch(&mut self) -> u32 {
        self.next_epoch = self.next_epoch.wrapping_add(1);
        self.next_epoch
    }

    /// Anti-entropy: a bucket whose sums differ in two comparisons in a row, with neither
    /// node's sum changed in between, holds drift that no event reported (a change lost, an
    /// entry changed behind the daemon's back); buckets that keep changing hold sessions on
    /// their way and are left to the stream. Drift is repaired by a resync of the peer's
    /// sessions (bulk sync and sweep).
    fn compare_digests(&mut self, now: Instant, theirs: Box<Digest>, ours: Box<Digest>) {
        let peer_epoch = self.peer.as_ref().map(|p| p.hello.epoch);
        let Some(session) = self.state.session_mut() else {
            return;
        };
        self.stats.digests_compared += 1;
        let drifted = match &session.last_comparison {
            Some((last_theirs, last_ours)) => (0..DIGEST_BUCKETS)
                .filter(|&b| {
                    theirs[b] != ours[b] && last_theirs[b] == theirs[b] && last_ours[b] == ours[b]
                })
                .count(),
            None => 0,
        };
        if drifted == 0 {
            session.last_comparison = Some((theirs, ours));
            return;
        }
        session.last_comparison = None;
        session.resync_requested = peer_epoch;
        self.stats.drift_repairs += 1;
        self.emit(now, Event::DriftFound { buckets: drifted });
        self.hello_due = true;
    }

    /// The peer's waiting digest becomes the one to compare, if one digest interval passed
    /// since the last did; otherwise it waits for that.
    fn promote_peer_digest(&mut self, now: Instant) {
        let Some(session) = self.state.session_mut() else {
            return;
        };
        if now < session.peer_digest_after {
            self.timers
                .set(Timer::PeerDigest, session.peer_digest_after);
            return;
        }
        let Some(digest) = session.peer_digest_waiting.take() else {
            return;
        };
        // One still not compared (the backend was busy) is older than this one.
        if session.peer_digest.replace(digest).is_some() {
            self.stats.digests_dropped += 1;
        }
        session.peer_digest_after = now + self.config.digest_interval;
        self.drive_backend();
    }

    fn compare_settings(&mut self, now: Instant, settings: SettingsView<'_>) {
        let peer: BTreeMap<&str, u64> = settings.entries().collect();
        let local: BTreeMap<&str, u64> = self
            .config
            .settings
            .iter()
            .map(|(n, v)| (n.as_str(), *v))
            .collect();
        let mut differ = Vec::new();
        for name in local.keys().chain(peer.keys()).collect::<BTreeSet<_>>() {
            let (local, peer) = (local.get(name).copied(), peer.get(name).copied());
            if local != peer {
                differ.push(Event::SettingDiffers {
                    name: name.to_string(),
                    local,
                    peer,
                });
            }
        }
        for event in differ {
            self.emit(now, event);
        }
    }

    /// The one place the failover state changes: re-arms the state's timer, starts or stops
    /// the sync streams, and reports exactly one event per real transition.
    fn set_state(&mut self, now: Instant, next: State, reason: Reason) {
        let from = self.state.name();
        let to = next.name();
        if self.state.synchronizing() {
            // The session goes with the state; the next synchronization resends everything
            // both ways anyway.
            self.outbound.stop(now);
            self.inbound.suspend(&mut self.stats);
            self.timers.stop(Timer::RemoveHold);
            self.timers.stop(Timer::Digest);
            self.timers.stop(Timer::PeerDigest);
            self.timers.stop(Timer::Retransmit);
            self.timers.stop(Timer::ResyncBackoff);
        }
        match &next {
            State::Silence { .. } => self
                .timers
                .set(Timer::Silence, now + self.config.silence_timer),
            State::Independence => self.timers.stop(Timer::Silence),
            State::Synchronization(session) => {
                let peer = &session.peer;
                let peer_took_over = self
                    .peer
                    .as_ref()
                    .is_none_or(|p| p.hello.role == Role::Active);
                // Not `peer_heard`: a peer heard and lost again before this first
                // synchronization (a link flap at start) leaves the entries just as they were.
                if std::mem::take(&mut self.unsynchronized_since_start)
                    && self.symmetric()
                    && !peer_took_over
                {
                    // Restarted, and the peer did not take over (it is standby): the entries
                    // found at start, attributed to it, are the sessions this node carried as
                    // the active one. Claimed back before our bulk sync, or each node's sweep
                    // removes the other's copies (the peer's bulk sync does not hold them: to
                    // the peer they are ours).
                    self.adopt = Some((*peer, self.config.node_id));
                }
                self.last_peer = Some(*peer);
                self.peer_heard = true;
                self.timers.stop(Timer::AdoptAlone);
                self.timers.stop(Timer::PeerDigest);
                if !self.config.digest_interval.is_zero() {
                    self.timers
                        .set(Timer::Digest, now + self.config.digest_interval);
                }
                if !self.config.settings.is_empty() {
                    let mut frame = Vec::new();
                    SettingsView::emit(
                        self.config.settings.iter().map(|(n, v)| (n.as_str(), *v)),
                        &mut frame,
                    );
                    self.control.push_back(frame);
                }
                let epoch = self.take_epoch();
                let may_resume = self
                    .common_protocol()
                    .is_some_and(|version| version >= ProtocolVersion::RESUMED_BULK);
                let peer_applied = self.peer.as_ref().and_then(|peer| peer.hello.applied);
                self.outbound
                    .start(epoch, may_resume, peer_applied, &mut self.stats);
                self.inbound.reset(*peer, &mut self.stats);
                self.apply_failed = false;
            }
        }
        self.state = next;
        self.hello_due = true;
        self.heartbeat_due = true;
        self.emit(now, Event::StateChanged { from, to, reason });
        self.drive_backend();
    }

    fn set_role(&mut self, now: Instant, role: Role, reason: Reason) {
        let from = self.role;
        self.role = role;
        self.inbound.set_active(role == Role::Active);
        if from != role {
            // What this node owns changes with its role: a bulk sync of ours that a link loss
            // interrupted no longer describes it. (The peer's interrupted bulk still does: it
            // resumes only if the peer's role did not change.)
            self.outbound.forget_resume();
        }
        self.hello_due = true;
        self.heartbeat_due = true;
        if role == Role::Active {
            self.yielding = false;
            if let Some(peer) = &self.peer {
                if self.peer_handed_over(peer) {
                    // Its deletes were real, and this node now decides what ends.
                    self.inbound.release_all_held();
                } else {
                    // A live peer lost the role by failing (a VRRP fault: its links went
                    // down): its last deletes may be the kernel flushing the sessions this
                    // node now carries.
                    self.inbound.discard_held(now);
                }
                if self.symmetric() {
                    // The active node owns what it forwards: its own expiry and deletes decide
                    // now, and the peer's copies are resent as ours (so they age as a
                    // standby's copies do, and a later failback finds them).
                    self.adopt = Some((peer.node, self.config.node_id));
                    if self.state.synchronizing() {
                        self.restart_outbound();
                    }
                }
            } else {
                // The peer died: its last deletes may be a flush of the sessions this node
                // now carries.
                self.inbound.discard_held(now);
            }
            // Released deletes are queued; what is left is the window of suspect deletes.
            self.arm_remove_hold();
            self.drive_backend();
            if self.peer.is_none()
                && let Some(peer) = self.last_peer
            {
                if self.peer_heard {
                    self.adopt = Some((peer, self.config.node_id));
                    self.drive_backend();
                } else {
                    self.timers
                        .set(Timer::AdoptAlone, now + self.config.adopt_alone_after);
                }
            }
        } else if from == Role::Active
            && self.symmetric()
            && let Some(peer) = self.peer.as_ref().map(|p| p.node).or(self.last_peer)
        {
            // The peer takes over and owns what it forwards: our copies are its sessions now,
            // so the sweep after its next bulk sync removes those it ended. Left ours, a copy
            // whose delete is lost with a stream restart (a resync, a link flap) would stay
            // here forever. Also when the link is down (VRRP moved the role back over the
            // LAN): a standby owning the peer's sessions would send them as its own.
            self.adopt = Some((self.config.node_id, peer));
            self.drive_backend();
        }
        self.emit(
            now,
            Event::RoleChanged {
                from,
                to: role,
                reason,
            },
        );
    }

    fn handle_hello(&mut self, now: Instant, authenticated: NodeId, hello: Hello) {
        self.stats.hellos_received += 1;
        if let Some(liveness) = &mut self.liveness {
            liveness.handle_hello(now, &hello);
        }
        self.compare_timers(now, &hello);
        let compatible = self.check(authenticated, &hello);
        self.loss_reason = None;
        self.peer = Some(PeerView {
            node: authenticated,
            hello,
            heard_at: now,
            compatible: compatible.clone(),
        });
        self.send_vrrp_report();
        match compatible {
            Err(why) => self.incompatible(now, why),
            Ok(()) => {
                self.reported_incompatibility = None;
                if self.state.synchronizing() && hello.state == SyncState::Silence {
                    self.set_state(
                        now,
                        State::Silence { startup: false },
                        Reason::PeerLeftSynchronization(hello.state),
                    );
                }
                self.try_negotiate(now);
                if let Some(session) = self.state.session_mut()
                    && session
                        .resync_requested
                        .is_some_and(|asked| asked != hello.epoch)
                {
                    // The peer's stream restarted: what we asked for is on its way.
                    session.resync_requested = None;
                    self.hello_due = true;
                }
                if hello.flags.has(HelloFlags::RESYNC) {
                    self.answer_resync(hello.resync_epoch);
                }
                if self.applied_for_active_peer
                    && hello.role == Role::Standby
                    && self.role == Role::Active
                    && self.state.synchronizing()
                {
                    // Both were active (a split brain, or VRRP masters on both sides of a cut
                    // LAN), we applied the peer's changes as its own, and it gave way: what it
                    // owned, we carry now, and our whole table is sent again (it may have
                    // applied an older bulk of ours over a change of its own that we hold), so
                    // its table becomes ours.
                    self.applied_for_active_peer = false;
                    self.adopt = Some((authenticated, self.config.node_id));
                    self.restart_outbound();
                }
            }
        }
    }

    /// The peer asks for a new bulk sync of ours (it lost events). Only the epoch it names is
    /// replaced: repeated, late or reordered requests for an epoch already replaced do nothing.
    fn answer_resync(&mut self, epoch: u32) {
        if epoch == self.outbound.epoch() && self.state.synchronizing() {
            self.restart_outbound();
        }
    }

    fn check(&self, authenticated: NodeId, hello: &Hello) -> Result<(), Incompatibility> {
        let claimed = NodeId(hello.node_id);
        if authenticated == self.config.node_id {
            return Err(Incompatibility::SameNodeId);
        }
        if claimed != authenticated {
            return Err(Incompatibility::NodeId {
                authenticated,
                claimed,
            });
        }
        if hello.pair_id != self.config.pair_id {
            return Err(Incompatibility::PairId {
                ours: self.config.pair_id,
                theirs: hello.pair_id,
            });
        }
        if hello.backup_type != self.config.backup_type {
            return Err(Incompatibility::BackupType {
                ours: self.config.backup_type.name(),
                theirs: hello.backup_type.name(),
            });
        }
        Ok(())
    }

    /// Different timers only warn, once per distinct value of the peer's: refusing
    /// Synchronization would not stop a dead timer from expiring (it runs in every state), it
    /// would only stop replication.
    fn compare_timers(&mut self, now: Instant, hello: &Hello) {
        let mismatch = TimerMismatch::between(self.local_timers(), peer_timers(hello));
        if let Some(new) = mismatch
            && mismatch != self.reported_timer_mismatch
        {
            self.emit(now, Event::TimersDiffer(new));
        }
        self.reported_timer_mismatch = mismatch;
    }

    /// Our timers as our hellos carry them (whole milliseconds).
    fn local_timers(&self) -> HelloTimers {
        HelloTimers {
            hello: Duration::from_millis(wire_millis(self.config.hello_interval).into()),
            dead: Duration::from_millis(wire_millis(self.config.dead_interval).into()),
        }
    }

    fn incompatible(&mut self, now: Instant, why: Incompatibility) {
        if self.state.synchronizing() {
            self.set_state(
                now,
                State::Silence { startup: false },
                Reason::Incompatible(why.clone()),
            );
        }
        if self.reported_incompatibility.as_ref() != Some(&why) {
            self.reported_incompatibility = Some(why.clone());
            self.emit(now, Event::NegotiationFailed(why));
        }
    }

    fn try_negotiate(&mut self, now: Instant) {
        if !matches!(self.state, State::Independence) {
            return;
        }
        let Some(peer) = &self.peer else { return };
        if peer.compatible.is_ok() && peer.hello.state != SyncState::Silence {
            let node = peer.node;
            self.set_state(
                now,
                State::Synchronization(SyncSession::new(node, now)),
                Reason::NegotiationSucceeded(node),
            );
        }
    }

    fn peer_lost(&mut self, now: Instant, reason: Reason) {
        self.peer_vrrp_report = None;
        if let Some((_, sent)) = &mut self.vrrp_report {
            *sent = false;
        }
        if let Some(peer) = self.peer.take() {
            self.last_peer = Some(peer.node);
            self.peer_heard = true;
        }
        if self.state.synchronizing() {
            self.set_state(now, State::Silence { startup: false }, reason.clone());
        }
        self.loss_reason = Some(reason);
    }

    /// Queues our VRRP report if the live peer lacks it and reads it (an older one would count
    /// it as unknown).
    fn send_vrrp_report(&mut self) {
        let reads = self
            .common_protocol()
            .is_some_and(|version| version >= ProtocolVersion::VRRP_REPORT);
        if let Some((report, sent)) = &mut self.vrrp_report
            && !*sent
            && reads
            && self.link.is_some()
        {
            let mut frame = Vec::new();
            report.emit(&mut frame);
            self.control.push_back(frame);
            *sent = true;
        }
    }

    fn arm_retransmit(&mut self, now: Instant, restart: bool) {
        if restart && let Some(session) = self.state.session_mut() {
            session.retransmit_backoff = 1;
        }
        if !self.outbound.awaiting_ack() {
            self.timers.stop(Timer::Retransmit);
        } else if restart || !self.timers.is_set(Timer::Retransmit) {
            self.timers
                .set(Timer::Retransmit, now + self.config.retransmit_timeout);
        }
    }

    /// What our hellos say; the liveness stamps them when it sends one.
    fn make_hello(&self) -> Hello {
        let mut flags = 0;
        if self.is_ready() {
            flags |= HelloFlags::READY;
        }
        if self.yielding || self.leaving {
            flags |= HelloFlags::YIELDING;
        }
        if self.config.preempt {
            flags |= HelloFlags::PREEMPT;
        }
        let resync_requested = self.state.session().and_then(|s| s.resync_requested);
        if resync_requested.is_some() {
            flags |= HelloFlags::RESYNC;
        }
        Hello {
            pair_id: self.config.pair_id,
            node_id: self.config.node_id.0,
            priority: self.config.priority,
            backup_type: self.config.backup_type,
            state: self.state.name(),
            role: self.role,
            flags: HelloFlags(flags),
            epoch: self.outbound.epoch(),
            hello_interval_ms: wire_millis(self.config.hello_interval),
            dead_interval_ms: wire_millis(self.config.dead_interval),
            tx_stamp: 0,
            echo_stamp: 0,
            resync_epoch: resync_requested.unwrap_or(0),
            protocol_minor: ProtocolVersion::CURRENT.minor,
            applied: self.inbound.applied_position(),
        }
    }

    fn arm_remove_hold(&mut self) {
        match self.inbound.next_held_due() {
            Some(at) => self.timers.set(Timer::RemoveHold, at),
            None => self.timers.stop(Timer::RemoveHold),
        }
    }

    /// Starts the next backend action if none is outstanding. Order: adopt (takeover), the
    /// sweep that ends a bulk, our dump, then the peer's ops in bounded slices.
    fn drive_backend(&mut self) {
        if self.outstanding.is_some() {
            return;
        }
        let token = Token(self.next_token);
        let (action, work) = if let Some((from, to)) = self.adopt.take() {
            (Action::Adopt { token, from, to }, Work::Adopt)
        } else if let Some(PendingSweep {
            mut keep,
            last_seq,
            generation,
        }) = self
            .state
            .session_mut()
            .and_then(|s| s.pending_sweep.take())
        {
            let owner = self.last_peer.unwrap_or_default();
            // What we changed while apart stays until our bulk has taken it to the peer (we may
            // have stepped down since, so that it is labelled the peer's).
            keep.extend(self.outbound.changed_apart_keys());
            (
                Action::Sweep { token, owner, keep },
                Work::Sweep {
                    generation,
                    last_seq,
                },
            )
        } else if self.outbound.wants_dump()
            && self.state.session().is_some_and(|s| !s.dump_blocked)
        {
            (
                Action::Dump { token },
                Work::Dump {
                    epoch: self.outbound.epoch(),
                },
            )
        } else {
            match self.inbound.next_work(self.config.max_apply_slice) {
                Some(InboundWork::Apply {
                    mut ops,
                    last_seq,
                    bulk_end,
                }) => {
                    if self.role == Role::Active {
                        // What this node changed while apart wins over the peer's state of the
                        // same sessions until the merge is over (docs/ARCHITECTURE.md, "Split
                        // brain"); a node that is standby takes the active one's state.
                        // So does a delete of ours that the peer may still hold (acknowledged on
                        // arrival): its copy of the session predates it (both active, the peer
                        // resends what it adopted at its takeover).
                        let before = ops.len();
                        ops.retain(|op| {
                            let superseded = match op {
                                SessionOp::Upsert(_) => {
                                    self.outbound.peer_may_hold_delete(op.key())
                                }
                                _ => false,
                            };
                            !(superseded || self.outbound.changed_apart(op.key()))
                        });
                        self.stats.peer_changes_superseded += (before - ops.len()) as u64;
                    }
                    let mut claimed = Vec::new();
                    let mut unclaimed = Vec::new();
                    let peer_active = self.peer_active();
                    if self.role == Role::Active && self.symmetric() && peer_active {
                        self.applied_for_active_peer |=
                            ops.iter().any(|op| matches!(op, SessionOp::Upsert(_)));
                    }
                    if self.role == Role::Active && self.symmetric() && !peer_active {
                        // The active node owns what it holds: the peer's changes (made while it
                        // forwarded and reaching us after we took over, or made after a split
                        // brain) are applied as ours. Not while the peer forwards too (both
                        // active, the link up): each would claim and echo the other's changes.
                        for (index, op) in ops.iter_mut().enumerate() {
                            match op {
                                SessionOp::Upsert(record) => {
                                    unclaimed.push((index, record.owner));
                                    record.owner = self.config.node_id;
                                    claimed.push(SessionOp::Upsert(record.clone()));
                                }
                                // Echoed too: the peer may hold a copy again that it took from
                                // our bulk sync before this delete reached us.
                                SessionOp::Remove { key, .. } | SessionOp::RemoveAny { key } => {
                                    claimed.push(SessionOp::RemoveAny { key: *key });
                                }
                            }
                        }
                    }
                    let generation = self.inbound.generation();
                    (
                        Action::Apply { token, ops },
                        Work::Apply {
                            generation,
                            last_seq,
                            bulk_end,
                            claimed,
                            unclaimed,
                        },
                    )
                }
                Some(InboundWork::Sweep { .. }) => return,
                // Digests come after everything received before them is applied.
                None => {
                    let Some(session) = self.state.session_mut() else {
                        return;
                    };
                    if let Some(theirs) = session.peer_digest.take() {
                        let owner = self.last_peer.unwrap_or_default();
                        (
                            Action::Digest { token, owner },
                            Work::Digest {
                                peer_digest: Some(theirs),
                            },
                        )
                    } else if std::mem::take(&mut session.digest_due) {
                        let owner = self.config.node_id;
                        (
                            Action::Digest { token, owner },
                            Work::Digest { peer_digest: None },
                        )
                    } else {
                        return;
                    }
                }
            }
        };
        self.next_token += 1;
        self.outstanding = Some((token, work));
        self.actions.push_back(action);
    }

    fn bulk_received(&mut self, now: Instant, swept: u64) {
        self.stats.bulk_syncs_received += 1;
        self.outbound.peer_bulk_applied();
        let epoch = self.inbound.epoch().unwrap_or_default();
        let records = self.inbound.bulk_records();
        self.hello_due = true;
        self.emit(
            now,
            Event::BulkReceived {
                epoch,
                records,
                swept,
            },
        );
    }

    /// Whether the live peer gave up the active role on purpose, so its last deletes ended
    /// real sessions. Elected roles move between live peers only so (switchover, preemption,
    /// shutdown); under a takeover mechanism the peer says so in its hellos (switchover,
    /// maintenance, shutdown), and otherwise it lost the role by failing.
    fn peer_handed_over(&self, peer: &PeerView) -> bool {
        self.config.role_authority == RoleAuthority::Election
            || peer.hello.flags.has(HelloFlags::YIELDING)
    }

    /// The live peer holds our sessions: it says it is ready, and it has applied our current
    /// stream's bulk sync. Its "ready" alone may describe a stream we have since restarted (a
    /// resync after lost events): what we queued, and what the lost events hid, then reach it
    /// only with the new bulk (simulation seed 17372).
    fn peer_holds_ours(&self, peer: &PeerView) -> bool {
        peer.hello.flags.has(HelloFlags::READY) && self.outbound.bulk_complete()
    }

    /// The peer's VRRP group as its hellos (over the link, or the heartbeat path) describe it,
    /// for the VRRP peer check: under VRRP the peer's role is its group's mastership.
    pub fn vrrp_peer(&self) -> crate::vrrp::PeerView {
        use crate::vrrp::PeerView;
        let Some(hello) = self
            .peer
            .as_ref()
            .or(self.heartbeat.as_ref())
            .map(|peer| &peer.hello)
        else {
            return PeerView::Unheard;
        };
        let flags = hello.flags;
        match hello.role {
            Role::Active => PeerView::Master,
            Role::Standby
                if flags.has(HelloFlags::READY)
                    && flags.has(HelloFlags::PREEMPT)
                    && !flags.has(HelloFlags::YIELDING)
                    && hello.priority > self.config.priority =>
            {
                PeerView::Preempting
            }
            Role::Standby => PeerView::NotMaster,
        }
    }

    /// The live peer says it is active.
    fn peer_active(&self) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|peer| peer.hello.role == Role::Active)
    }

    /// Active/standby: one node forwards at a time, and owns every session.
    fn symmetric(&self) -> bool {
        self.config.backup_type == BackupType::SYMMETRIC
    }

    /// Applies the role rules; see `docs/ARCHITECTURE.md` ("Roles").
    fn update_role(&mut self, now: Instant) {
        if let Some((role, reason)) = self.decide_role() {
            self.set_role(now, role, reason);
        }
    }

    fn decide_role(&self) -> Option<(Role, Reason)> {
        if self.leaving || self.config.role_authority == RoleAuthority::External {
            return None;
        }
        let Some(peer) = &self.peer else {
            if let Some(heard) = &self.heartbeat {
                return self.decide_over_heartbeat(heard);
            }
            if self.role == Role::Active || matches!(self.state, State::Silence { startup: true }) {
                return None;
            }
            return Some((
                Role::Active,
                self.loss_reason.clone().unwrap_or(Reason::NoPeer),
            ));
        };
        let flags = peer.hello.flags;
        let peer_ready = self.peer_holds_ours(peer);
        let peer_yielding = flags.has(HelloFlags::YIELDING);
        let outranked = peer.hello.priority > self.config.priority;
        match (self.role, peer.hello.role) {
            (Role::Active, Role::Active) => {
                let (preferred, how) = self.election(peer);
                (!preferred).then_some((Role::Standby, Reason::Conflict(how)))
            }
            (Role::Active, Role::Standby) => {
                if self.yielding && peer_ready {
                    Some((Role::Standby, Reason::Switchover))
                } else if outranked
                    && peer_ready
                    && !peer_yielding
                    && flags.has(HelloFlags::PREEMPT)
                {
                    Some((Role::Standby, Reason::PreemptedByPeer))
                } else {
                    None
                }
            }
            // The active node hands over first (arm above); the standby takes over only once
            // both are standby, so the two are never active together.
            (Role::Standby, Role::Active) => {
                let planted = self.config.has_bug(PlantedBug::TakeOverBeforeReady)
                    && self.config.preempt
                    && self.config.priority > peer.hello.priority;
                planted.then_some((Role::Active, Reason::Preempted))
            }
            (Role::Standby, Role::Standby) => {
                let (preferred, how) = self.election(peer);
                preferred.then_some((
                    Role::Active,
                    if peer_yielding {
                        Reason::PeerYielded
                    } else {
                        Reason::Elected(how)
                    },
                ))
            }
        }
    }

    /// The failover link is down but the heartbeat path hears the peer: the link's election
    /// between two live nodes, without preemption or switchover (they need the peer's sessions,
    /// which only the link carries). So a cut link alone leaves exactly one node active.
    fn decide_over_heartbeat(&self, heard: &PeerView) -> Option<(Role, Reason)> {
        let (preferred, how) = self.election(heard);
        match (self.role, heard.hello.role) {
            (Role::Active, Role::Active) => {
                (!preferred).then_some((Role::Standby, Reason::ConflictOnHeartbeat(how)))
            }
            // One active already: it stays so.
            (Role::Active, Role::Standby) | (Role::Standby, Role::Active) => None,
            (Role::Standby, Role::Standby) => {
                let startup = matches!(self.state, State::Silence { startup: true });
                (preferred && !startup).then_some((Role::Active, Reason::ElectedOnHeartbeat(how)))
            }
        }
    }

    /// Whether this node is preferred over the peer as the active one, and by which rule.
    fn election(&self, peer: &PeerView) -> (bool, Election) {
        let peer_yielding = peer.hello.flags.has(HelloFlags::YIELDING);
        if self.yielding != peer_yielding {
            return (!self.yielding, Election::PeerYielding);
        }
        let (ours, theirs) = (self.config.priority, peer.hello.priority);
        if ours != theirs {
            return (ours > theirs, Election::Priority { ours, theirs });
        }
        (self.config.node_id < peer.node, Election::LowerNodeId)
    }
}

/// A duration as hellos carry it: whole milliseconds, saturated.
fn wire_millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// The peer's timers from its hello.
fn peer_timers(hello: &Hello) -> HelloTimers {
    HelloTimers {
        hello: Duration::from_millis(hello.hello_interval_ms.into()),
        dead: Duration::from_millis(hello.dead_interval_ms.into()),
    }
}
