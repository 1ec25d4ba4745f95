//! `failoverd demo`: two nodes on loopback with the memory backend and the real failover link
//! (mutual TLS 1.3 with pinned keys). A stream of session creates, updates and deletes runs on
//! the active node; then the active node dies abruptly: its failover link goes silent (packets
//! dropped, no FIN, no RST), then it stops. The standby must notice by missed hellos, take over
//! and hold every session it acknowledged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant as WallInstant};

use anyhow::{Context, bail};
use failoverd_backends::MemoryBackend;
use failoverd_control::protocol::{Request, Response, Status};
use failoverd_core::{Event, NodeConfig, Reason};
use failoverd_link::{Identity, LinkConfig};
use failoverd_wire::{NodeId, Role, SyncState};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::{self, BackendHandle, Command};
use crate::driver::{self, NodeRequest, NodeSetup, Observation, ReplicationSnapshot};
use crate::proxy::Relay;
use crate::takeover::Takeover;

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Session events per second the stream generates on the active node.
    pub rate: u32,
    /// How long the stream runs before the kill.
    pub duration: Duration,
    /// Sessions created before the stream starts.
    pub sessions: u32,
    /// Hello interval of both nodes.
    pub hello_interval: Duration,
    /// Dead interval of both nodes.
    pub dead_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        let defaults = NodeConfig::default();
        Self {
            rate: 200_000,
            duration: Duration::from_secs(3),
            sessions: 50_000,
            hello_interval: defaults.hello_interval,
            dead_interval: defaults.dead_interval,
        }
    }
}

fn change(at_ms: u64, from: &str, to: &str, reason: &Reason) -> StateChange {
    StateChange {
        at_ms,
        from: from.to_string(),
        to: to.to_string(),
        reason: reason.to_string(),
    }
}

/// One state (or role) change of the surviving node.
#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    /// Milliseconds since the demo started.
    pub at_ms: u64,
    /// Previous state.
    pub from: String,
    /// New state.
    pub to: String,
    /// Why.
    pub reason: String,
}

/// What the demo measured; printed as one JSON object with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Sessions in the active node's table when it was killed.
    pub sessions_on_active_at_kill: u64,
    /// Of those, the ones whose latest state the standby had acknowledged as applied.
    pub sessions_acknowledged_at_kill: u64,
    /// The others: changes still queued or in flight when the link went silent.
    pub sessions_unacknowledged_at_kill: u64,
    /// Sessions in the survivor's table after it took over.
    pub sessions_on_standby_after_takeover: u64,
    /// Acknowledged sessions missing on the survivor after the takeover: must be 0.
    pub sessions_lost: u64,
    /// Acknowledged sessions present on the survivor but with other content (owner aside):
    /// must be 0.
    pub sessions_different: u64,
    /// From the link going silent to the survivor declaring its peer dead.
    pub detection_ms: f64,
    /// From the link going silent to the survivor being active and owning the sessions.
    pub takeover_ms: f64,
    /// The survivor's state changes, with reasons.
    pub states: Vec<StateChange>,
    /// The survivor's role changes, with reasons.
    pub roles: Vec<StateChange>,
    /// Session events the stream generated.
    pub events_generated: u64,
    /// Seconds the stream ran.
    pub stream_seconds: f64,
    /// Peer records the standby applied per second while the stream ran.
    pub replicated_events_per_sec: f64,
    /// Replication lag (change to acknowledgement of its application), median, microseconds.
    pub lag_p50_us: u64,
    /// Replication lag, 99th percentile, microseconds.
    pub lag_p99_us: u64,
    /// Hello interval, milliseconds.
    pub hello_interval_ms: u64,
    /// Dead interval, milliseconds.
    pub dead_interval_ms: u64,
    /// How late a timer (hello, dead, retransmit) ran at most on either node until the kill,
    /// microseconds: the hellos' schedule under the load.
    pub timer_late_max_us: u64,
    /// The longest turn of either node's driver loop until the kill, microseconds.
    pub driver_turn_max_us: u64,
}

/// A node of the demo, seen from the outside.
struct DemoNode {
    name: &'static str,
    requests: mpsc::Sender<NodeRequest>,
    backend: BackendHandle,
    task: tokio::task::JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl DemoNode {
    async fn status(&self) -> anyhow::Result<Status> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(NodeRequest::Control(Request::Status, reply))
            .await
            .context("node stopped")?;
        match rx.await.context("node stopped")? {
            Response::Ok(value) => Ok(serde_json::from_value(value)?),
            Response::Error(error) => bail!("{} status: {error}", self.name),
        }
    }

    async fn snapshot(&self) -> anyhow::Result<ReplicationSnapshot> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(NodeRequest::Replication(reply))
            .await
            .context("node stopped")?;
        rx.await.context("node stopped")
    }
}

/// Runs the demo; progress goes to stderr.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    let started = WallInstant::now();
    let ids = [Identity::generate(), Identity::generate()];
    let (target_a, target_a_rx) = watch::channel(None);
    let (target_b, target_b_rx) = watch::channel(None);
    // Every byte between the nodes crosses a relay: to A through relay_a, to B through relay_b.
    let relays = [
        Relay::start(target_a_rx).await?,
        Relay::start(target_b_rx).await?,
    ];
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let link_a = failoverd_link::spawn(LinkConfig::new(
        loopback,
        relays[1].addr,
        ids[0].clone(),
        ids[1].fingerprint(),
    ))?;
    let link_b = failoverd_link::spawn(LinkConfig::new(
        loopback,
        relays[0].addr,
        ids[1].clone(),
        ids[0].fingerprint(),
    ))?;
    target_a.send_replace(Some(link_a.0.local_addr()));
    target_b.send_replace(Some(link_b.0.local_addr()));

    let (observer_b, mut observations_b) = mpsc::unbounded_channel();
    let a = start_node("A", 200, &ids[0], link_a, &options, None)?;
    let b = start_node("B", 100, &ids[1], link_b, &options, Some(observer_b))?;
    // Stamp the survivor's events with wall time as they happen.
    let (stamped_tx, mut stamped) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(observation) = observations_b.recv().await {
            let _ = stamped_tx.send((WallInstant::now(), observation));
        }
    });

    eprintln!(
        "failoverd demo: node A (priority 200) and node B (priority 100) on loopback, memory backend, TLS 1.3 failover link"
    );
    wait_until(&a, &b, "negotiation and bulk sync", |a, b| {
        a.state == failoverd_control::protocol::FailoverState::Synchronization && b.ready && a.ready
    })
    .await?;
    let (reply, rx) = oneshot::channel();
    a.backend.send(Command::Generate {
        count: options.sessions,
        reply,
    });
    let generated = rx
        .await
        .context("node A stopped")?
        .map_err(anyhow::Error::msg)?;
    eprintln!("  {} sessions created on A", generated.created);

    let generator = Generator::start(a.backend.clone(), options.rate);
    let stream_started = WallInstant::now();
    let applied_before = counter(&b.status().await?, "records_applied");
    let mut next_progress = stream_started;
    while stream_started.elapsed() < options.duration {
        if WallInstant::now() >= next_progress {
            next_progress += Duration::from_millis(500);
            progress(&a, &b, stream_started, applied_before).await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status_a = a.status().await?;
    let status_b = b.status().await?;
    if status_b.role != failoverd_control::protocol::Role::Standby {
        bail!(
            "node B took over before the kill (a false failover: the load starved the hellos); its states: {}",
            states_so_far(&mut stamped)
        );
    }

    // The kill: the link goes silent first, then the node stops.
    let killed = WallInstant::now();
    for relay in &relays {
        relay.silence();
    }
    let stream_seconds = stream_started.elapsed().as_secs_f64();
    let events_generated = generator.stop().await;
    let at_kill = a.snapshot().await?;
    a.task.abort();
    let applied = counter(&status_b, "records_applied") - applied_before;
    eprintln!(
        "  A killed after {stream_seconds:.1} s of traffic: its link went silent, then it stopped ({} sessions, {} acknowledged by B)",
        at_kill.sessions.len(),
        at_kill.acknowledged.len()
    );

    let mut states = Vec::new();
    let mut roles = Vec::new();
    let mut detected = None;
    let mut active = None;
    let mut took_over = None;
    let mut independent = false;
    // Until the survivor took over, and then left Silence again (the seed's diagram, whole).
    let deadline = killed + Duration::from_secs(10);
    while took_over.is_none() || !independent {
        let timeout = deadline.saturating_duration_since(WallInstant::now());
        let Ok(Some((at, observation))) = tokio::time::timeout(timeout, stamped.recv()).await
        else {
            bail!("node B did not take over and leave silence within 10 s of the kill");
        };
        let at_ms = at.duration_since(started).as_millis() as u64;
        match observation {
            Observation::Event(_, Event::StateChanged { from, to, reason }) => {
                if at >= killed
                    && from == SyncState::Synchronization
                    && matches!(reason, Reason::PeerDead(_))
                {
                    detected.get_or_insert(at);
                }
                independent |= detected.is_some() && to == SyncState::Independence;
                states.push(change(at_ms, from.name(), to.name(), &reason));
            }
            Observation::Event(_, Event::RoleChanged { from, to, reason }) => {
                if at >= killed && to == Role::Active {
                    active = Some(at);
                }
                roles.push(change(at_ms, from.name(), to.name(), &reason));
            }
            Observation::ActionDone(_, "adopt") if active.is_some() => took_over = Some(at),
            _ => {}
        }
    }
    let after = b.snapshot().await?;
    let survivor: HashMap<_, _> = after.sessions.iter().map(|r| (r.key, r)).collect();
    let before: HashMap<_, _> = at_kill.sessions.iter().map(|r| (r.key, r)).collect();
    let mut lost = 0;
    let mut different = 0;
    for key in &at_kill.acknowledged {
        match survivor.get(key) {
            None => lost += 1,
            Some(copy)
                if failoverd_wire::SessionRecord {
                    owner: before[key].owner,
                    ..(*copy).clone()
                } != *before[key] =>
            {
                different += 1
            }
            Some(_) => {}
        }
    }
    if let Some(stop) = b.stop {
        let _ = stop.send(());
    }
    let _ = b.task.await;
    let ms = |at: Option<WallInstant>| {
        at.map_or(f64::NAN, |at| at.duration_since(killed).as_secs_f64() * 1e3)
    };
    Ok(Report {
        sessions_on_active_at_kill: at_kill.sessions.len() as u64,
        sessions_acknowledged_at_kill: at_kill.acknowledged.len() as u64,
        sessions_unacknowledged_at_kill: (at_kill.sessions.len() - at_kill.acknowledged.len())
            as u64,
        sessions_on_standby_after_takeover: after.sessions.len() as u64,
        sessions_lost: lost,
        sessions_different: different,
        detection_ms: ms(detected),
        takeover_ms: ms(took_over),
        states,
        roles,
        events_generated,
        stream_seconds,
        replicated_events_per_sec: applied as f64 / stream_seconds,
        lag_p50_us: status_a.replication.lag_p50_us,
        lag_p99_us: status_a.replication.lag_p99_us,
        hello_interval_ms: options.hello_interval.as_millis() as u64,
        dead_interval_ms: options.dead_interval.as_millis() as u64,
        timer_late_max_us: counter(&status_a, "driver_timer_late_max_us")
            .max(counter(&status_b, "driver_timer_late_max_us")),
        driver_turn_max_us: counter(&status_a, "driver_turn_max_us")
            .max(counter(&status_b, "driver_turn_max_us")),
    })
}

fn start_node(
    name: &'static str,
    priority: u8,
    identity: &Identity,
    link: (failoverd_link::LinkSender, failoverd_link::LinkEvents),
    options: &Options,
    observer: Option<mpsc::UnboundedSender<Observation>>,
) -> anyhow::Result<DemoNode> {
    let node_id = NodeId(identity.fingerprint().node_id());
    let core = NodeConfig {
        node_id,
        priority,
        hello_interval: options.hello_interval,
        dead_interval: options.dead_interval,
        seed: u64::from(node_id.0),
        reliable_link: true,
        ..NodeConfig::default()
    };
    core.validate()?;
    let peer_address = link.0.local_addr().to_string();
    let (backend, events) = backend::spawn(name, MemoryBackend::new(node_id))?;
    let (requests, request_rx) = mpsc::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let setup = NodeSetup {
        name: name.to_string(),
        core,
        fingerprint: identity.fingerprint(),
        peer_address,
        link,
        backend: (backend.clone(), events),
        takeover: Takeover::default(),
    };
    let task = tokio::spawn(driver::run(setup, request_rx, observer, async {
        let _ = stopped.await;
    }));
    Ok(DemoNode {
        name,
        requests,
        backend,
        task,
        stop: Some(stop),
    })
}

async fn wait_until(
    a: &DemoNode,
    b: &DemoNode,
    what: &str,
    done: impl Fn(&Status, &Status) -> bool,
) -> anyhow::Result<()> {
    let started = WallInstant::now();
    loop {
        let (sa, sb) = (a.status().await?, b.status().await?);
        if done(&sa, &sb) {
            eprintln!(
                "  {what}: done after {:.1} s (A {} {}, B {} {})",
                started.elapsed().as_secs_f64(),
                sa.state.name(),
                sa.role.name(),
                sb.state.name(),
                sb.role.name()
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(15) {
            bail!(
                "{what} did not finish within 15 s (A {} {}, B {} {})",
                sa.state.name(),
                sa.role.name(),
                sb.state.name(),
                sb.role.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn progress(
    a: &DemoNode,
    b: &DemoNode,
    since: WallInstant,
    applied_before: u64,
) -> anyhow::Result<()> {
    let (sa, sb) = (a.status().await?, b.status().await?);
    let elapsed = since.elapsed().as_secs_f64().max(1e-3);
    let applied = counter(&sb, "records_applied") - applied_before;
    eprintln!(
        "  {elapsed:4.1} s  A {} {} {:>7} sessions | B {} {} {:>7} sessions | replicated {:>7.0}/s, lag p99 {} us",
        sa.role.name(),
        sa.state.name(),
        sa.sessions.total,
        sb.role.name(),
        sb.state.name(),
        sb.sessions.total,
        applied as f64 / elapsed,
        sa.replication.lag_p99_us
    );
    Ok(())
}

/// The survivor's state changes observed so far, for an error message.
fn states_so_far(stamped: &mut mpsc::UnboundedReceiver<(WallInstant, Observation)>) -> String {
    let mut changes = Vec::new();
    while let Ok((_, observation)) = stamped.try_recv() {
        if let Observation::Event(
            _,
            event @ (Event::StateChanged { .. } | Event::RoleChanged { .. }),
        ) = observation
        {
            changes.push(event.to_string());
        }
    }
    changes.join("; ")
}

fn counter(status: &Status, name: &str) -> u64 {
    status.counters.get(name).copied().unwrap_or(0)
}

/// The demo's traffic: every millisecond, what is due at the rate, as creates, updates and
/// deletes (4:4:2, so the table grows, then creates and deletes balance at 100,000 more
/// sessions). A chunk waits for the previous one to be applied: a rate above what the node
/// takes is reported as what it took.
struct Generator {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl Generator {
    const TABLE: u64 = 100_000;

    fn start(backend: BackendHandle, rate: u32) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let started = WallInstant::now();
            let mut sent = 0u64;
            let mut live = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = &mut stopped => return sent,
                    _ = tick.tick() => {}
                }
                // Catch up to the rate, so a late tick does not lower it, but never by more than
                // 10 ms of traffic at once: a rate the node cannot take is not made up later.
                let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                let n = due.saturating_sub(sent).min(u64::from(rate / 100).max(1));
                if n == 0 {
                    continue;
                }
                let creates = n * 4 / 10;
                let mut deletes = n * 2 / 10;
                if live + creates > Self::TABLE {
                    deletes = creates;
                }
                let updates = n - creates - deletes;
                live = live + creates - deletes.min(live + creates);
                let (done, applied) = oneshot::channel();
                let (creates, updates, deletes) = (creates as u32, updates as u32, deletes as u32);
                backend.send(Command::Traffic {
                    creates,
                    updates,
                    deletes,
                    done,
                });
                sent += n;
                // Backpressure: past what the node takes, the rate is what it takes. A stop is
                // not held up by it (the node may be waiting for a peer that just died).
                tokio::select! {
                    _ = &mut stopped => return sent,
                    applied = applied => if applied.is_err() {
                        return sent;
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// Stops the stream; returns how many events it generated.
    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

/// The human summary.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "stream: {} session events in {:.1} s, replicated to the standby at {:.0} events/s, lag p50 {} us, p99 {} us\n",
        report.events_generated,
        report.stream_seconds,
        report.replicated_events_per_sec,
        report.lag_p50_us,
        report.lag_p99_us
    ));
    out.push_str(&format!(
        "under the load: timers at most {:.1} ms late, longest driver turn {:.1} ms\n",
        report.timer_late_max_us as f64 / 1e3,
        report.driver_turn_max_us as f64 / 1e3
    ));
    out.push_str(&format!(
        "at the kill: {} sessions on the active node, {} acknowledged as applied by the standby, {} not yet\n",
        report.sessions_on_active_at_kill, report.sessions_acknowledged_at_kill, report.sessions_unacknowledged_at_kill
    ));
    out.push_str(&format!(
        "takeover: peer declared dead after {:.0} ms (hello {} ms, dead interval {} ms), active with all sessions after {:.0} ms\n",
        report.detection_ms, report.hello_interval_ms, report.dead_interval_ms, report.takeover_ms
    ));
    out.push_str(&format!(
        "after the takeover: {} sessions on the survivor; acknowledged sessions lost: {}, different: {}\n",
        report.sessions_on_standby_after_takeover, report.sessions_lost, report.sessions_different
    ));
    for (what, changes) in [("states", &report.states), ("roles", &report.roles)] {
        out.push_str(&format!("survivor's {what}:\n"));
        for change in changes {
            out.push_str(&format!(
                "  {:>6} ms  {} -> {}: {}\n",
                change.at_ms, change.from, change.to, change.reason
            ));
        }
    }
    out.trim_end().to_string()
}
