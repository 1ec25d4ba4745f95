//! `failoverd demo`: two nodes on loopback with the memory backend and the real failover link
//! (mutual TLS 1.3 with pinned keys). A stream of session creates, updates and deletes runs on
//! the active node; then the active node dies abruptly: its failover link goes silent (packets
//! dropped, no FIN, no RST), then it stops. The standby must notice by missed hellos, take over
//! and hold every session it acknowledged.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant as WallInstant};

use anyhow::{Context, bail};
use failoverd_backends::MemoryBackend;
use failoverd_control::protocol::{Request, Response, Status};
use failoverd_control::transport::Answer;
use failoverd_core::{Event, NodeConfig, Reason};
use failoverd_link::{Identity, LinkConfig};
use failoverd_wire::{NodeId, Role, SessionKey, SyncState};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::driver::{self, ActionKind, NodeRequest, NodeSetup, Observation, ReplicationSnapshot};
use crate::hellos::{HELLO_PRIORITY, HelloPath};
use crate::proxy::Relay;
use crate::table_thread::{self, TableCommand, TableHandle};
use crate::takeover::Takeover;

/// How long before the kill the verdict's looks at the active node's table are taken (the
/// dead interval is added for the look whose sessions the survivor must hold).
const VERDICT_MARGIN: Duration = Duration::from_millis(500);

/// Least share of the sessions present [`VERDICT_MARGIN`] before the kill that the standby
/// must have acknowledged at the kill.
const MIN_ACKNOWLEDGED_SHARE: f64 = 0.9;

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
    /// Sessions on the active node 500 ms before the kill that were still there at the kill.
    pub sessions_500ms_before_kill: u64,
    /// Of those, the ones acknowledged as applied at the kill (the verdict wants at least 90 %).
    pub acknowledged_500ms_before_kill: u64,
    /// Sessions on the active node more than (dead interval + 500 ms) before the kill that were
    /// still there at the kill: whatever the acknowledgements say, the survivor must hold them.
    pub sessions_settled_before_kill: u64,
    /// Of those, the ones missing on the survivor after the takeover (must be 0).
    pub settled_sessions_missing: u64,
    /// From the link going silent to the survivor declaring its peer dead (`null`: never).
    pub detection_ms: Option<f64>,
    /// From the link going silent to the survivor being active and owning the sessions.
    pub takeover_ms: Option<f64>,
    /// The survivor's state changes, with reasons.
    pub states: Vec<StateChange>,
    /// The survivor's role changes, with reasons.
    pub roles: Vec<StateChange>,
    /// Session events the stream generated.
    pub events_generated: u64,
    /// Seconds the stream ran.
    pub stream_seconds: f64,
    /// Peer records the standby applied per second while the stream ran (the stream only: the
    /// sessions created before it are replicated before it starts).
    pub replicated_events_per_sec: f64,
    /// Replication lag of the stream's changes (a change reaching the core to the peer's
    /// acknowledgement of its application, one sample per record sent), median, microseconds,
    /// to within 0.79 % above.
    pub lag_p50_us: u64,
    /// The same, 99th percentile.
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

impl Report {
    /// Why the run failed its promise (empty: it kept it). Checked against the survivor's
    /// table, not only against the acknowledgements: the peer was declared dead, no
    /// acknowledged session is lost or different, at least 90 % of the sessions present
    /// 500 ms before the kill were acknowledged, and none present more than the dead interval
    /// + 500 ms before the kill is missing.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.detection_ms.is_none() {
            failures.push("the survivor never declared its peer dead".to_string());
        }
        if self.sessions_lost > 0 || self.sessions_different > 0 {
            failures.push(format!(
                "{} acknowledged sessions lost, {} different",
                self.sessions_lost, self.sessions_different
            ));
        }
        let needed = (self.sessions_500ms_before_kill as f64 * MIN_ACKNOWLEDGED_SHARE).ceil();
        if (self.acknowledged_500ms_before_kill as f64) < needed {
            failures.push(format!(
                "only {} of the {} sessions present {} ms before the kill were acknowledged (at least {:.0} % needed)",
                self.acknowledged_500ms_before_kill,
                self.sessions_500ms_before_kill,
                VERDICT_MARGIN.as_millis(),
                MIN_ACKNOWLEDGED_SHARE * 100.0
            ));
        }
        if self.settled_sessions_missing > 0 {
            failures.push(format!(
                "{} of the {} sessions present more than {} ms before the kill are missing on the survivor",
                self.settled_sessions_missing,
                self.sessions_settled_before_kill,
                self.dead_interval_ms + VERDICT_MARGIN.as_millis() as u64
            ));
        }
        failures
    }
}

/// A node of the demo, seen from the outside.
struct DemoNode {
    name: &'static str,
    requests: mpsc::Sender<NodeRequest>,
    backend: TableHandle,
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
            Answer::Done(Response::Ok(value)) => Ok(serde_json::from_value(value)?),
            Answer::Done(Response::Error(error)) => bail!("{} status: {error}", self.name),
            Answer::Stream(_) => bail!("{} status: a streamed answer", self.name),
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
    let hellos_a = HelloPath::spawn("A", Clock::start())?;
    let hellos_b = HelloPath::spawn("B", Clock::start())?;
    let link_a = failoverd_link::spawn(LinkConfig {
        control_tap: Some(hellos_a.tap()),
        control_priority: Some(HELLO_PRIORITY),
        ..LinkConfig::new(
            loopback,
            relays[1].addr,
            ids[0].clone(),
            ids[1].fingerprint(),
        )
    })?;
    let link_b = failoverd_link::spawn(LinkConfig {
        control_tap: Some(hellos_b.tap()),
        control_priority: Some(HELLO_PRIORITY),
        ..LinkConfig::new(
            loopback,
            relays[0].addr,
            ids[1].clone(),
            ids[0].fingerprint(),
        )
    })?;
    target_a.send_replace(Some(link_a.0.local_addr()));
    target_b.send_replace(Some(link_b.0.local_addr()));

    let (observer_b, mut observations_b) = mpsc::unbounded_channel();
    let a = start_node("A", 200, &ids[0], (link_a, hellos_a), &options, None)?;
    let b = start_node(
        "B",
        100,
        &ids[1],
        (link_b, hellos_b),
        &options,
        Some(observer_b),
    )?;
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
    a.backend.send(TableCommand::Generate {
        count: options.sessions,
        reply,
    });
    let generated = rx
        .await
        .context("node A stopped")?
        .map_err(anyhow::Error::msg)?;
    eprintln!("  {} sessions created on A", generated.created);

    // The stream's figures count the stream only: the sessions created before it are
    // replicated first.
    wait_until(&a, &b, "replication of the sessions created", |a, b| {
        b.sessions.peer_owned >= a.sessions.owned
            && a.sessions.pending_changes == 0
            && a.sessions.in_flight_batches == 0
    })
    .await?;

    let lag_before_stream = a.snapshot().await?.lag;
    let generator = Generator::start(a.backend.clone(), options.rate);
    let stream_started = WallInstant::now();
    let applied_before = counter(&b.status().await?, "records_applied");
    // Two looks at the active node's table before the kill, judged against the survivor
    // whatever the acknowledgements say: one the standby must have (older than the dead
    // interval + 500 ms), and one it should mostly have acknowledged (500 ms old).
    let settled_margin = options.dead_interval + VERDICT_MARGIN;
    let stream_end = stream_started + options.duration;
    let mut settled: Option<(WallInstant, ReplicationSnapshot)> = None;
    let mut recent: Option<(WallInstant, ReplicationSnapshot)> = None;
    let mut next_progress = stream_started;
    loop {
        let now = WallInstant::now();
        if settled.is_none() && now + settled_margin >= stream_end {
            settled = Some((now, a.snapshot().await?));
        } else if recent.is_none() && now + VERDICT_MARGIN >= stream_end {
            recent = Some((now, a.snapshot().await?));
        }
        // The kill comes no sooner than each margin after the look was taken.
        let due = [(&settled, settled_margin), (&recent, VERDICT_MARGIN)]
            .iter()
            .map(|(look, margin)| look.as_ref().map(|(at, _)| *at + *margin))
            .collect::<Option<Vec<_>>>()
            .and_then(|dues| dues.into_iter().max());
        if due.is_some_and(|due| now >= due.max(stream_end)) {
            break;
        }
        if now >= next_progress {
            next_progress += Duration::from_millis(500);
            progress(&a, &b, stream_started, applied_before).await?;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (settled, recent) = (
        settled.expect("taken before the loop ends").1,
        recent.expect("taken before the loop ends").1,
    );
    let status_a = a.status().await?;
    let status_b = b.status().await?;
    if status_b.role != failoverd_control::protocol::FailoverRole::Standby {
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
            Observation::ActionDone(_, ActionKind::Adopt) if active.is_some() => {
                took_over = Some(at)
            }
            _ => {}
        }
    }
    let after = b.snapshot().await?;
    let survivor: HashMap<_, _> = after.sessions.iter().map(|r| (r.key, r)).collect();
    let before: HashMap<_, _> = at_kill.sessions.iter().map(|r| (r.key, r)).collect();
    let stream_lag = at_kill.lag.since(&lag_before_stream);
    let at_kill_keys: HashSet<_> = at_kill.sessions.iter().map(|r| r.key).collect();
    let acknowledged: HashSet<_> = at_kill.acknowledged.iter().copied().collect();
    let still_there = |look: &ReplicationSnapshot| -> Vec<SessionKey> {
        look.sessions
            .iter()
            .map(|r| r.key)
            .filter(|key| at_kill_keys.contains(key))
            .collect()
    };
    let recent = still_there(&recent);
    let settled = still_there(&settled);
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
    let ms = |at: Option<WallInstant>| at.map(|at| at.duration_since(killed).as_secs_f64() * 1e3);
    Ok(Report {
        sessions_on_active_at_kill: at_kill.sessions.len() as u64,
        sessions_acknowledged_at_kill: at_kill.acknowledged.len() as u64,
        sessions_unacknowledged_at_kill: (at_kill.sessions.len() - at_kill.acknowledged.len())
            as u64,
        sessions_on_standby_after_takeover: after.sessions.len() as u64,
        sessions_lost: lost,
        sessions_different: different,
        sessions_500ms_before_kill: recent.len() as u64,
        acknowledged_500ms_before_kill: recent
            .iter()
            .filter(|key| acknowledged.contains(key))
            .count() as u64,
        sessions_settled_before_kill: settled.len() as u64,
        settled_sessions_missing: settled
            .iter()
            .filter(|key| !survivor.contains_key(key))
            .count() as u64,
        detection_ms: ms(detected),
        takeover_ms: ms(took_over),
        states,
        roles,
        events_generated,
        stream_seconds,
        replicated_events_per_sec: applied as f64 / stream_seconds,
        lag_p50_us: micros(stream_lag.quantile(0.5)),
        lag_p99_us: micros(stream_lag.quantile(0.99)),
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
    (link, hellos): (
        (failoverd_link::LinkSender, failoverd_link::LinkEvents),
        HelloPath,
    ),
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
    let (backend, events) = table_thread::spawn(name, MemoryBackend::new(node_id))?;
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
        hellos,
        heartbeat: None,
        config_sync: None,
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

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
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

    fn start(backend: TableHandle, rate: u32) -> Self {
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
                backend.send(TableCommand::Traffic {
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
    let ms = |value: Option<f64>| value.map_or("never".to_string(), |ms| format!("{ms:.0} ms"));
    out.push_str(&format!(
        "takeover: peer declared dead after {} (hello {} ms, dead interval {} ms), active with all sessions after {}\n",
        ms(report.detection_ms),
        report.hello_interval_ms,
        report.dead_interval_ms,
        ms(report.takeover_ms)
    ));
    out.push_str(&format!(
        "before the kill: {} of {} sessions present {} ms before were acknowledged; {} of {} present {} ms before are missing on the survivor\n",
        report.acknowledged_500ms_before_kill,
        report.sessions_500ms_before_kill,
        VERDICT_MARGIN.as_millis(),
        report.settled_sessions_missing,
        report.sessions_settled_before_kill,
        report.dead_interval_ms + VERDICT_MARGIN.as_millis() as u64
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that kept its promise.
    fn kept() -> Report {
        Report {
            sessions_on_active_at_kill: 1_000,
            sessions_acknowledged_at_kill: 950,
            sessions_unacknowledged_at_kill: 50,
            sessions_on_standby_after_takeover: 1_000,
            sessions_lost: 0,
            sessions_different: 0,
            sessions_500ms_before_kill: 900,
            acknowledged_500ms_before_kill: 810,
            sessions_settled_before_kill: 800,
            settled_sessions_missing: 0,
            detection_ms: Some(140.0),
            takeover_ms: Some(142.0),
            states: Vec::new(),
            roles: Vec::new(),
            events_generated: 10_000,
            stream_seconds: 1.0,
            replicated_events_per_sec: 10_000.0,
            lag_p50_us: 100,
            lag_p99_us: 1_000,
            hello_interval_ms: 50,
            dead_interval_ms: 150,
            timer_late_max_us: 0,
            driver_turn_max_us: 0,
        }
    }

    #[test]
    fn the_verdict_fails_each_broken_promise_and_passes_a_kept_one() {
        assert_eq!(kept().failures(), Vec::<String>::new());
        type Breaks = fn(&mut Report);
        let broken: [(&str, Breaks); 5] = [
            ("never declared", |r| r.detection_ms = None),
            ("acknowledged sessions lost", |r| r.sessions_lost = 1),
            ("1 different", |r| r.sessions_different = 1),
            ("only 809 of the 900", |r| {
                r.acknowledged_500ms_before_kill = 809
            }),
            ("1 of the 800 sessions present more than 650 ms", |r| {
                r.settled_sessions_missing = 1
            }),
        ];
        for (expected, breaks) in broken {
            let mut report = kept();
            breaks(&mut report);
            let failures = report.failures();
            assert_eq!(failures.len(), 1, "{expected}: {failures:?}");
            assert!(failures[0].contains(expected), "{expected}: {failures:?}");
        }
    }

    /// The key paths of the demo's JSON object, sorted, one per line (`states[].from` for a key
    /// of the objects in the array `states`).
    fn json_key_paths(report: &serde_json::Value) -> String {
        let mut paths = Vec::new();
        for (key, value) in report.as_object().expect("an object") {
            paths.push(key.clone());
            if let Some(first) = value.as_array().and_then(|items| items.first()) {
                let item = first.as_object().expect("an array of objects");
                paths.extend(item.keys().map(|inner| format!("{key}[].{inner}")));
            }
        }
        paths.sort();
        paths.iter().map(|path| format!("{path}\n")).collect()
    }

    #[test]
    fn a_null_detection_is_null_in_the_json() {
        let report = Report {
            detection_ms: None,
            ..kept()
        };
        let json = serde_json::to_value(&report).expect("serializes");
        assert!(json["detection_ms"].is_null());
        assert_eq!(json["takeover_ms"], 142.0);
    }

    /// A short real run (TLS link on loopback, memory backend): the verdict holds, and the
    /// stream's rate counts the stream only (the sessions created before it are more than the
    /// stream could replicate in its second at this rate).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_demo_keeps_its_promise_and_counts_only_the_stream() {
        let options = Options {
            rate: 5_000,
            duration: Duration::from_secs(1),
            sessions: 20_000,
            ..Options::default()
        };
        let report = run(options).await.expect("the demo runs");
        assert_eq!(report.failures(), Vec::<String>::new(), "{report:#?}");
        assert_eq!(
            json_key_paths(&serde_json::to_value(&report).expect("serializes")),
            include_str!("../tests/golden/demo-json-keys.txt"),
            "`failoverd demo --json` is a documented contract: its keys changed"
        );
        for change in report.states.iter().chain(&report.roles) {
            for name in [&change.from, &change.to] {
                assert!(
                    [
                        "silence",
                        "independence",
                        "synchronization",
                        "standby",
                        "active"
                    ]
                    .contains(&name.as_str()),
                    "an unknown state or role name {name:?} in the demo's JSON"
                );
            }
        }
        assert!(report.sessions_settled_before_kill > 15_000, "{report:#?}");
        let generated_per_sec = report.events_generated as f64 / report.stream_seconds;
        assert!(
            report.replicated_events_per_sec <= generated_per_sec * 1.1,
            "replicated {} events/s of a stream of {generated_per_sec:.0}/s: pre-created sessions counted",
            report.replicated_events_per_sec
        );
    }
}
