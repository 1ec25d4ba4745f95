//! The driver: one task owns the core and wires it to the failover link, the session-table
//! thread, control requests and the clock. It decides nothing itself. The views it answers
//! `failoverctl` with are built in `status`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use failoverd_control::protocol::{
    MaintenanceDone, Request, Response, SessionList, SwitchoverDone,
};
use failoverd_control::transport::Answer;
use failoverd_core::{
    Action, Channel, CommandError, Event, Instant, LagHistogram, Node, NodeConfig,
};
use failoverd_link::{
    Fingerprint, HeartbeatEvents, HeartbeatSender, LinkEvent, LinkEvents, LinkSender,
};
use failoverd_wire::{NodeId, Role, SessionKey, SessionRecord};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config_sync::{ConfigSyncHost, HostInput};
use crate::hellos::{self, HelloPath, PeerDead};
use crate::table_thread::{self, TableCommand, TableHandle};
use crate::takeover::{Takeover, TakeoverNews};

mod status;

/// Link events kept for `failoverctl events` (the core keeps its own history).
const LINK_HISTORY: usize = 64;

/// Session batches built per turn of the driver loop at most (a batch is up to 64 KiB, some 400
/// records): bounds a turn, so timers, control frames and requests never wait behind a whole
/// window of batches.
const DATA_FRAMES_PER_TURN: usize = 8;

/// Everything one node needs.
pub struct NodeSetup {
    /// Name for logs and status.
    pub name: String,
    /// The core's settings.
    pub core: NodeConfig,
    /// Our key's fingerprint.
    pub fingerprint: Fingerprint,
    /// The peer's failover-link address (for status).
    pub peer_address: String,
    /// The failover link, already spawned.
    pub link: (LinkSender, LinkEvents),
    /// The session table's thread, already spawned.
    pub backend: (
        TableHandle,
        mpsc::UnboundedReceiver<table_thread::TableEvent>,
    ),
    /// What moves the traffic (VRRP, FRR, hooks), already started.
    pub takeover: Takeover,
    /// The hello thread, already started; its tap is on the link.
    pub hellos: HelloPath,
    /// The heartbeat path (`link.heartbeat_listen`), already spawned, if configured.
    pub heartbeat: Option<HeartbeatSetup>,
    /// Configuration sync, unless `config_sync.mode` is `off`.
    pub config_sync: Option<ConfigSyncHost>,
}

/// The heartbeat path: a second path for the hellos beside the failover link.
pub struct HeartbeatSetup {
    /// Sends our hellos.
    pub sender: HeartbeatSender,
    /// The peer's hellos, authenticated as a pinned key and fresh.
    pub events: HeartbeatEvents,
    /// The peer's heartbeat address (for status).
    pub address: String,
}

/// A request to a running node.
pub enum NodeRequest {
    /// A `failoverctl` request.
    Control(Request, oneshot::Sender<Answer>),
    /// The node's sessions and which of them the peer has applied (the demo's measurement).
    Replication(oneshot::Sender<ReplicationSnapshot>),
}

/// What the demo measures on the active node at the kill.
#[derive(Debug)]
pub struct ReplicationSnapshot {
    /// Every session in the table.
    pub sessions: Vec<SessionRecord>,
    /// The sessions this node owns whose latest state the peer has acknowledged as applied.
    pub acknowledged: Vec<SessionKey>,
    /// The replication lag of every stream record so far.
    pub lag: LagHistogram,
}

/// What a node reports to an observer (the demo): core events and its counters, as they happen.
#[derive(Debug, Clone)]
pub enum Observation {
    /// A core event, with the node's clock.
    Event(Instant, Event),
    /// A backend action finished, with the node's clock.
    ActionDone(Instant, ActionKind),
}

/// Which backend action finished (the demo waits for the adoption at takeover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// The table dumped (for a bulk sync).
    Dump,
    /// The peer's changes applied.
    Apply,
    /// Stale peer entries removed.
    Sweep,
    /// The peer's entries adopted at takeover.
    Adopt,
    /// A digest of the table computed.
    Digest,
}

type SendFuture = Pin<Box<dyn Future<Output = Result<(), failoverd_link::LinkError>> + Send>>;

/// Runs one node until `shutdown` resolves, then says goodbye to the peer and returns.
pub async fn run(
    setup: NodeSetup,
    mut requests: mpsc::Receiver<NodeRequest>,
    observer: Option<mpsc::UnboundedSender<Observation>>,
    shutdown: impl Future<Output = ()>,
) {
    let NodeSetup {
        name,
        core,
        fingerprint,
        peer_address,
        link: (link, mut link_events),
        backend: (backend, mut backend_events),
        takeover,
        hellos,
        heartbeat,
        config_sync,
    } = setup;
    let clock = hellos.clock();
    let mut node = Node::new(core, clock.now());
    let (dead, mut dead_verdicts) = mpsc::unbounded_channel();
    if let Some(liveness) = node.detach_liveness() {
        hellos.install(
            liveness.with_stall_limit(hellos::STALL_LIMIT),
            link.clone(),
            dead,
        );
    }
    let (heartbeat, mut heartbeat_events) = match heartbeat {
        Some(h) => (Some((h.sender, h.address)), Some(h.events)),
        None => (None, None),
    };
    let mut driver = Driver {
        node,
        hellos,
        clock,
        name,
        fingerprint,
        peer_address,
        link,
        backend,
        takeover,
        heartbeat,
        observer,
        link_up: false,
        links: 0,
        early_verdict: None,
        link_history: VecDeque::new(),
        snapshot_waiters: VecDeque::new(),
        blocked_data: None,
        owed_credit: 0,
        turns: Turns::default(),
        config_sync,
    };
    tokio::pin!(shutdown);
    loop {
        // Timers first, on every turn: a hello is at most one bounded turn late, whatever
        // else is ready.
        driver.run_timers();
        let more_data = driver.flush();
        driver.grant_credit();
        let ready = driver.node.is_ready();
        driver.takeover.set_ready(ready);
        driver.takeover.set_vrrp_peer(driver.node.vrrp_peer());
        driver
            .takeover
            .set_peer_report(driver.node.peer_vrrp_report());
        driver.hand_hello_over();
        driver.turns.end();
        let deadline = [
            driver.node.poll_timeout(),
            driver
                .config_sync
                .as_ref()
                .and_then(ConfigSyncHost::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| driver.clock.deadline(at));
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // Not biased: under load every source is ready all the time, and a fixed order would
        // starve the last ones (status requests behind session data). Each branch does a
        // bounded amount of work.
        // Each branch begins the turn before it handles its input: a turn is the handling of
        // one input plus the timers and outputs that follow, never the wait.
        tokio::select! {
            () = &mut shutdown => break,
            () = sleep => driver.begin_turn(),
            Some(event) = link_events.recv() => {
                driver.begin_turn();
                driver.on_link(event);
            }
            Some((key, hello)) = next_heartbeat(&mut heartbeat_events) => {
                driver.begin_turn();
                // The path authenticated the sender as one of the pinned keys.
                let peer = NodeId(key.node_id());
                driver.node.handle_heartbeat(driver.clock.now(), peer, &hello);
            }
            sent = async { driver.blocked_data.as_mut().expect("guarded").await }, if driver.blocked_data.is_some() => {
                driver.begin_turn();
                driver.blocked_data = None;
                if let Err(err) = sent {
                    tracing::debug!(node = %driver.name, "data frame not sent: {err}");
                }
            }
            Some(event) = backend_events.recv() => {
                driver.begin_turn();
                driver.on_backend(event);
            }
            Some(request) = requests.recv() => {
                driver.begin_turn();
                driver.on_request(request);
            }
            Some(news) = driver.takeover.news() => {
                driver.begin_turn();
                match news {
                    TakeoverNews::Forwarding(master, reason) => {
                        driver.node.set_forwarding(driver.clock.now(), master, reason);
                    }
                    TakeoverNews::Report(report) => driver.node.set_vrrp_report(report),
                }
            }
            Some(verdict) = dead_verdicts.recv() => {
                driver.begin_turn();
                driver.on_peer_dead(verdict);
            }
            Some(input) = next_config_input(&mut driver.config_sync) => {
                driver.begin_turn();
                if let Some(host) = &mut driver.config_sync {
                    host.handle_input(driver.clock.now(), input);
                }
            }
            () = std::future::ready(()), if more_data => driver.begin_turn(),
        }
    }
    // No hello after the goodbye: the peer would take it for a node coming back.
    driver.hellos.stop();
    driver.node.shutdown(driver.clock.now());
    driver.flush();
    driver.takeover.shutdown().await;
    // The goodbye is queued on the control connection; give the writer a moment to send it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    info!(node = %driver.name, "stopped");
}

struct Driver {
    node: Node,
    hellos: HelloPath,
    clock: Clock,
    name: String,
    fingerprint: Fingerprint,
    peer_address: String,
    link: LinkSender,
    backend: TableHandle,
    takeover: Takeover,
    /// The heartbeat path's sender and the peer's address.
    heartbeat: Option<(HeartbeatSender, String)>,
    observer: Option<mpsc::UnboundedSender<Observation>>,
    link_up: bool,
    /// Link-ups handled, counted as the hello path counts them.
    links: u64,
    /// A verdict about a link whose `Up` this loop has not handled yet (the hello path hears
    /// of the link first).
    early_verdict: Option<PeerDead>,
    link_history: VecDeque<(Instant, String)>,
    snapshot_waiters: VecDeque<oneshot::Sender<ReplicationSnapshot>>,
    /// A data frame waiting for room on the data connection; session batches wait with it,
    /// control frames do not.
    blocked_data: Option<SendFuture>,
    /// Permits of the backend's change credit used and not yet granted back: held while the
    /// core has enough changes queued.
    owed_credit: usize,
    /// How promptly the loop runs (status counters).
    turns: Turns,
    config_sync: Option<ConfigSyncHost>,
}

/// The loop's own latency: the longest turn and the latest timer, since the start.
#[derive(Default)]
struct Turns {
    started: Option<std::time::Instant>,
    longest: Duration,
    timer_late: Duration,
}

impl Turns {
    fn start(&mut self) {
        self.started = Some(std::time::Instant::now());
    }

    fn end(&mut self) {
        if let Some(started) = self.started.take() {
            self.longest = self.longest.max(started.elapsed());
        }
    }
}

impl Driver {
    /// An input arrived: the turn that handles it starts (the hello thread knows the node is
    /// busy from now on).
    fn begin_turn(&mut self) {
        self.turns.start();
        let now = self.clock.now();
        self.hellos
            .update(false, |liveness| liveness.set_busy_since(Some(now)));
    }

    /// Runs the core's expired timers.
    fn run_timers(&mut self) {
        let now = self.clock.now();
        if let Some(at) = self.node.poll_timeout()
            && at <= now
        {
            self.turns.timer_late = self.turns.timer_late.max(now - at);
            self.node.handle_timeout(now);
        }
        if let Some(host) = &mut self.config_sync {
            host.handle_timeout(now);
        }
    }

    /// Tells the hello thread what our hellos say now (at once if the peer must learn it at
    /// once), and that this turn is over.
    fn hand_hello_over(&mut self) {
        let (hello, urgent) = self.node.poll_hello();
        self.hellos.update(urgent, |liveness| {
            liveness.set_hello(hello, urgent);
            liveness.set_busy_since(None);
        });
    }

    /// The hello thread heard nothing from the peer for the dead interval: on the current
    /// link it counts, on a link still to come it waits for that link, on an older one it is
    /// stale.
    fn on_peer_dead(&mut self, verdict: PeerDead) {
        if verdict.link > self.links {
            self.early_verdict = Some(verdict);
        } else if verdict.link == self.links && self.link_up {
            self.node.handle_peer_dead(self.clock.now(), verdict.silent);
        }
    }

    /// Gives the session-table thread its change credit back once the core wants more changes.
    fn grant_credit(&mut self) {
        if self.owed_credit > 0 && self.node.wants_local_changes() {
            self.backend.grant(std::mem::take(&mut self.owed_credit));
        }
    }

    /// Hands the outputs of the core to whom they concern: every action, control frame and
    /// event, and up to [`DATA_FRAMES_PER_TURN`] session batches. True if it stopped at that
    /// bound (more batches may be ready).
    fn flush(&mut self) -> bool {
        let now = self.clock.now();
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::ResetLink => self.link.close(),
                action => {
                    self.backend.send(TableCommand::Perform(action));
                }
            }
        }
        let mut data_frames = 0;
        loop {
            let data_ready = self.blocked_data.is_none() && data_frames < DATA_FRAMES_PER_TURN;
            let Some(transmit) = self.node.poll_transmit(now, data_ready) else {
                break;
            };
            if transmit.channel == Channel::Data {
                data_frames += 1;
            }
            match transmit.channel {
                // Hellos and acks never wait: if the link is down or its control queue is full,
                // dropping is right (hellos repeat, a lost ack is probed for).
                Channel::Control => {
                    if let Err(err) = self.link.send(transmit.channel, transmit.payload) {
                        tracing::debug!(node = %self.name, "control frame dropped: {err}");
                    }
                }
                // Batches wait for room on the data connection, one at a time; meanwhile the
                // core holds the rest back (`data_ready` false) and control keeps flowing.
                Channel::Data => {
                    let link = self.link.clone();
                    let mut send: SendFuture = Box::pin(async move {
                        link.send_async(transmit.channel, transmit.payload).await
                    });
                    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
                    if send.as_mut().poll(&mut context).is_pending() {
                        self.blocked_data = Some(send);
                    }
                }
            }
        }
        if let Some((sender, _)) = &self.heartbeat {
            while let Some(hello) = self.node.poll_heartbeat(now) {
                sender.send(hello);
            }
        }
        if let Some(host) = &mut self.config_sync {
            host.follow(now, &self.node);
            host.flush(now);
        }
        while let Some(event) = self.node.poll_event() {
            self.log(&event);
            if let Event::RoleChanged { from, to, reason } = &event {
                self.takeover.role_changed(*from, *to, &reason.to_string());
                self.backend
                    .send(TableCommand::SetActive(*to == failoverd_wire::Role::Active));
            }
            if let Some(observer) = &self.observer {
                let _ = observer.send(Observation::Event(now, event));
            }
        }
        data_frames == DATA_FRAMES_PER_TURN && self.blocked_data.is_none()
    }

    fn log(&self, event: &Event) {
        let node = &self.name;
        match event {
            Event::NegotiationFailed(_)
            | Event::ApplyFailed { .. }
            | Event::ChangesLost
            | Event::SettingDiffers { .. }
            | Event::DriftFound { .. }
            | Event::HeartbeatPath { up: false } => {
                warn!(%node, "{event}")
            }
            _ => info!(%node, "{event}"),
        }
    }

    fn on_link(&mut self, event: LinkEvent) {
        let now = self.clock.now();
        match event {
            LinkEvent::Up { peer, remote } => {
                self.link_up = true;
                self.links += 1;
                self.record_link(now, format!("failover link up to {remote} ({peer})"));
                self.node.handle_link_up(now, NodeId(peer.node_id()));
                if let Some(verdict) = self.early_verdict.take() {
                    self.on_peer_dead(verdict);
                }
            }
            LinkEvent::Frame { bytes, .. } => match &mut self.config_sync {
                Some(host) if is_config_sync(&bytes) => host.handle_frame(now, &bytes),
                _ => self.node.handle_frame(now, &bytes),
            },
            LinkEvent::Down { reason } => {
                self.link_up = false;
                self.record_link(now, format!("failover link down: {reason}"));
                self.node.handle_link_down(now, &reason);
            }
            LinkEvent::Rejected { remote, reason } => {
                // The link logged it already (coalesced: one line per source and kind per 10 s, and
                // only those lines come here): keep it in the history without a second line.
                self.push_link_history(now, format!("rejected connection from {remote}: {reason}"));
            }
        }
    }

    fn record_link(&mut self, now: Instant, message: String) {
        info!(node = %self.name, "{message}");
        self.push_link_history(now, message);
    }

    fn push_link_history(&mut self, now: Instant, message: String) {
        if self.link_history.len() == LINK_HISTORY {
            self.link_history.pop_front();
        }
        self.link_history.push_back((now, message));
    }

    fn on_backend(&mut self, event: table_thread::TableEvent) {
        let now = self.clock.now();
        match event {
            table_thread::TableEvent::Done(token, result) => {
                let kind = match &result {
                    failoverd_core::ActionResult::Dumped(_) => ActionKind::Dump,
                    failoverd_core::ActionResult::Applied { .. } => ActionKind::Apply,
                    failoverd_core::ActionResult::Swept(_) => ActionKind::Sweep,
                    failoverd_core::ActionResult::Adopted(_) => ActionKind::Adopt,
                    failoverd_core::ActionResult::Digested(_) => ActionKind::Digest,
                };
                self.node.handle_action_done(now, token, result);
                if let Some(observer) = &self.observer {
                    let _ = observer.send(Observation::ActionDone(now, kind));
                }
            }
            table_thread::TableEvent::Changes { ops, credited } => {
                self.node.handle_local_changes(now, ops);
                self.owed_credit += usize::from(credited);
            }
            table_thread::TableEvent::ChangesLost { credited } => {
                self.node.handle_changes_lost(now);
                self.owed_credit += usize::from(credited);
            }
            table_thread::TableEvent::Snapshot(sessions) => {
                if let Some(waiter) = self.snapshot_waiters.pop_front() {
                    let local = self.node.config().node_id;
                    let acknowledged = sessions
                        .iter()
                        .filter(|r| r.owner == local && self.node.is_replicated(&r.key))
                        .map(|r| r.key)
                        .collect();
                    let _ = waiter.send(ReplicationSnapshot {
                        sessions,
                        acknowledged,
                        lag: self.node.stats().lag.clone(),
                    });
                }
            }
        }
    }

    fn on_request(&mut self, request: NodeRequest) {
        match request {
            NodeRequest::Replication(reply) => {
                self.snapshot_waiters.push_back(reply);
                self.backend.send(TableCommand::Snapshot);
            }
            NodeRequest::Control(request, reply) => self.control(request, reply),
        }
    }

    fn control(&mut self, request: Request, reply: oneshot::Sender<Answer>) {
        match request {
            Request::Status => {
                let mut status = self.status();
                let counts = self.session_counts();
                let takeover = self.takeover.status();
                tokio::spawn(async move {
                    status.takeover = takeover.await;
                    if let Ok((counts, counters)) = counts.await {
                        status.sessions = counts;
                        for (name, value) in counters {
                            status.counters.insert(format!("backend_{name}"), value);
                        }
                    }
                    answer(reply, Response::ok(&status));
                });
            }
            Request::Peer => {
                let peer = self.peer_info();
                answer(reply, Response::ok(&peer));
            }
            Request::Sessions {
                filter,
                limit: None,
            } => {
                // The whole table: dumped on the table's thread, turned into JSON elsewhere
                // and streamed to the client a piece at a time.
                let (tx, rx) = oneshot::channel();
                self.backend.send(TableCommand::Records { reply: tx });
                let local = self.node.config().node_id;
                tokio::spawn(async move {
                    match rx.await {
                        Ok(Ok(records)) => {
                            let (pieces, stream) = mpsc::channel(4);
                            tokio::task::spawn_blocking(move || {
                                SessionList::write_json(&records, &filter, local, |piece| {
                                    pieces.blocking_send(piece).is_ok()
                                });
                            });
                            let _ = reply.send(Answer::Stream(stream));
                        }
                        Ok(Err(error)) => answer(reply, Response::error(error)),
                        Err(_) => answer(reply, Response::error(TABLE_GONE)),
                    }
                });
            }
            Request::Sessions { filter, limit } => {
                let (tx, rx) = oneshot::channel();
                self.backend.send(TableCommand::List {
                    filter,
                    limit,
                    reply: tx,
                });
                answer_later(rx, reply);
            }
            Request::SessionsCount => {
                let counts = self.session_counts();
                tokio::spawn(async move {
                    let response = match counts.await {
                        Ok((counts, _)) => Response::ok(&counts),
                        Err(error) => Response::error(error),
                    };
                    answer(reply, response);
                });
            }
            Request::SessionsGenerate { count } => {
                let (tx, rx) = oneshot::channel();
                self.backend
                    .send(TableCommand::Generate { count, reply: tx });
                answer_later(rx, reply);
            }
            Request::ConfigStatus => match &self.config_sync {
                Some(host) => answer(reply, Response::ok(&host.status(self.clock.now()))),
                None => answer(reply, Response::error(CONFIG_SYNC_OFF)),
            },
            Request::ConfigDiff => match &mut self.config_sync {
                Some(host) => host.request_diff(self.clock.now(), reply),
                None => answer(reply, Response::error(CONFIG_SYNC_OFF)),
            },
            Request::ConfigSync => match &mut self.config_sync {
                Some(host) => answer(reply, Response::ok(&host.request_sync(self.clock.now()))),
                None => answer(reply, Response::error(CONFIG_SYNC_OFF)),
            },
            Request::Events { limit } => {
                answer(reply, Response::ok(&self.events(limit)));
            }
            Request::Switchover => {
                if let Err(err) = self.node.switchover(self.clock.now()) {
                    answer(reply, Response::error(err.to_string()));
                    return;
                }
                let handed_over = self.takeover.hand_over();
                tokio::spawn(async move {
                    let response = match handed_over.await {
                        Ok(()) => Response::ok(&SwitchoverDone {
                            message: "handing the active role to the peer".to_string(),
                        }),
                        Err(err) => Response::error(err),
                    };
                    answer(reply, response);
                });
            }
            Request::Maintenance { on } => {
                let peer_ready = self.node.peer().is_some_and(|p| p.ready);
                let active = self.node.role() == Role::Active;
                let response = if on && active && !peer_ready {
                    Err(CommandError::PeerNotReady.to_string())
                } else {
                    self.takeover.set_maintenance(on).and_then(|()| {
                        // A handover on purpose: the peer applies our last deletes.
                        if on && active {
                            self.node
                                .switchover(self.clock.now())
                                .map_err(|err| err.to_string())
                        } else {
                            Ok(())
                        }
                    })
                };
                answer(
                    reply,
                    match response {
                        Ok(()) => Response::ok(&MaintenanceDone {
                            message: if on {
                                "maintenance on: handing over if master, then staying backup"
                            } else {
                                "maintenance off"
                            }
                            .to_string(),
                        }),
                        Err(err) => Response::error(err),
                    },
                );
            }
        }
    }
}

/// Whether a frame is config sync's (the node's otherwise, which counts what it cannot read).
fn is_config_sync(bytes: &[u8]) -> bool {
    failoverd_wire::Frame::new_checked(bytes)
        .is_ok_and(|frame| frame.kind() == failoverd_wire::MessageKind::ConfigSync)
}

/// The next input of config sync's own I/O; never, without config sync.
async fn next_config_input(host: &mut Option<ConfigSyncHost>) -> Option<HostInput> {
    match host {
        Some(host) => host.next_input().await,
        None => std::future::pending().await,
    }
}

/// The next hello from the heartbeat path, with the key that signed it; never, without one.
async fn next_heartbeat(events: &mut Option<HeartbeatEvents>) -> Option<(Fingerprint, Vec<u8>)> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

fn answer_later<T: serde::Serialize + Send + 'static>(
    rx: oneshot::Receiver<Result<T, String>>,
    reply: oneshot::Sender<Answer>,
) {
    tokio::spawn(async move {
        let response = match rx.await {
            Ok(Ok(value)) => Response::ok(&value),
            Ok(Err(error)) => Response::error(error),
            Err(_) => Response::error(TABLE_GONE),
        };
        answer(reply, response);
    });
}

/// The answer to `failoverctl config` without config sync.
const CONFIG_SYNC_OFF: &str = "config sync is off on this node (config_sync.mode)";

/// The answer when the table's thread is gone.
const TABLE_GONE: &str = "the session table is not available";

/// Sends a whole response (a client that left does not matter).
fn answer(reply: oneshot::Sender<Answer>, response: Response) {
    let _ = reply.send(response.into());
}
