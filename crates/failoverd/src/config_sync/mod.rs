//! Configuration sync in the daemon: the core's [`ConfigSync`] machine wired to the failover
//! link, a worker thread that owns the backends (`worker`), the nftables generation events
//! (`watch`) and `failoverctl config`. The driver owns one [`ConfigSyncHost`] when
//! `config_sync.mode` is not `off`.

mod view;
mod watch;
mod worker;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use failoverd_backends::{FilesBackend, FilesConfig, NftablesBackend, NftablesConfig};
use failoverd_control::config::{Config, ConfigSyncMode, SyncSource};
use failoverd_control::protocol::{ConfigSyncReply, EventKind, Response};
use failoverd_control::transport::Answer;
use failoverd_core::config_sync::{
    ConfigSync, ConfigSyncConfig, ConfigSyncEvent, ElementsConfig, Mode, Part, unit_names,
};
use failoverd_core::{Instant, Node};
use failoverd_link::LinkSender;
use failoverd_wire::{Channel, ConfigVersions, Message, Role, SyncState};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use watch::RulesetChanged;
use worker::{Backends, Job, Worker, WorkerResult};

/// What a unit's content means on the wire and in its hash: raised when a backend's canonical
/// form changes meaning (not its tool's version, which the offer carries apart).
const SCHEMA: u16 = 1;
/// A transfer with no result for this long is sent again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Ruleset commits within this long are read once (a script of many `nft` calls).
const COALESCE: Duration = Duration::from_millis(100);
/// The `nft` processes of our own applies whose generation events are ignored: the latest
/// few (a commit's event arrives after the apply returned, well before the next apply).
const OWN_PIDS: usize = 8;
/// The shortest wait between two reads of the dynamic sets on the source (a read taking long
/// widens it: see `READ_COST_FACTOR`).
const ELEMENTS_INTERVAL: Duration = Duration::from_secs(1);
/// An element's lifetime this much above what the last read predicts is a refresh.
const REFRESH_SLACK: Duration = Duration::from_secs(1);
/// Config-sync events kept for `failoverctl events`.
const HISTORY: usize = 64;

/// The driver's config sync: the machine and its I/O.
pub struct ConfigSyncHost {
    name: String,
    machine: ConfigSync,
    worker: Worker,
    results: mpsc::UnboundedReceiver<WorkerResult>,
    changes: Option<mpsc::UnboundedReceiver<RulesetChanged>>,
    own_pids: VecDeque<u32>,
    source: SyncSource,
    frames: mpsc::UnboundedSender<Vec<u8>>,
    diffs: Vec<(u64, oneshot::Sender<Answer>)>,
    history: VecDeque<(Instant, EventKind, String)>,
    malformed_frames: u64,
}

/// Something for the host from its own I/O.
pub struct HostInput(Input);

enum Input {
    /// A read or apply finished.
    Worker(WorkerResult),
    /// The nftables ruleset changed.
    Ruleset(RulesetChanged),
}

impl ConfigSyncHost {
    /// The host for `config` (loaded from `config_path`), or `None` with `config_sync.mode =
    /// "off"`. Its frames go to the peer on `link`'s data connection.
    pub fn open(
        config: &Config,
        config_path: &Path,
        link: LinkSender,
        seed: u64,
    ) -> anyhow::Result<Option<Self>> {
        let section = &config.config_sync;
        let mode = match section.mode {
            ConfigSyncMode::Off => return Ok(None),
            ConfigSyncMode::Auto => Mode::Auto,
            ConfigSyncMode::Manual => Mode::Manual,
        };
        let files = if section.files.is_empty() {
            None
        } else {
            let units = section
                .files
                .iter()
                .map(|unit| failoverd_backends::FilesUnit {
                    path: unit.path.clone(),
                    reload: unit.reload.clone(),
                })
                .collect();
            let protected = vec![config_path.to_path_buf(), config.node.key.clone()];
            Some(FilesBackend::new(FilesConfig { units, protected }).context("config_sync.files")?)
        };
        let dynamic_sets: Vec<String> = section
            .nftables
            .dynamic_sets
            .iter()
            .map(|set| format!("{} {}", set.table, set.name))
            .collect();
        let nftables = if section.nftables.tables.is_empty() {
            None
        } else {
            let nft = &section.nftables;
            Some(
                NftablesBackend::new(NftablesConfig {
                    tables: nft.tables.iter().map(ToString::to_string).collect(),
                    dynamic_sets: dynamic_sets.clone(),
                    defines: nft.defines.clone(),
                    ..NftablesConfig::default()
                })
                .context("config_sync.nftables")?,
            )
        };
        // Starts set: the first read is a real one.
        let ruleset_changed = nftables.is_some().then(|| Arc::new(AtomicBool::new(true)));
        let mut backends = Backends::new(files, nftables, ruleset_changed.clone());
        let versions = ConfigVersions {
            failoverd: env!("CARGO_PKG_VERSION").to_string(),
            schema: SCHEMA,
            backends: backends.versions().context("config_sync")?,
        };
        let (worker, results) = Worker::spawn(&config.node.name, backends)?;
        let changes = match ruleset_changed {
            Some(changed) => {
                Some(watch::spawn(changed).context("config_sync: watching the nftables ruleset")?)
            }
            None => None,
        };
        let (frames, mut frame_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        // One task sends them in order on the data connection, waiting for room as session
        // batches do; a frame lost with the link is sent again by the machine.
        tokio::spawn(async move {
            while let Some(frame) = frame_rx.recv().await {
                let _ = link.send_async(Channel::Data, frame).await;
            }
        });
        let mut machine = ConfigSync::new(ConfigSyncConfig {
            mode,
            units: section.units(),
            versions,
            compare_interval: section.compare_interval,
            repair_after: section.repair_after,
            max_unit_bytes: section.max_unit_bytes,
            confirm_window: confirm_window(config.timers.dead_interval),
            retry_after: RETRY_AFTER,
            coalesce: COALESCE,
            seed,
        });
        if !dynamic_sets.is_empty() {
            machine = machine.with_elements(ElementsConfig {
                sets: dynamic_sets,
                interval: ELEMENTS_INTERVAL,
                refresh_slack: REFRESH_SLACK,
            });
        }
        Ok(Some(Self {
            name: config.node.name.clone(),
            machine,
            worker,
            results,
            changes,
            own_pids: VecDeque::new(),
            source: section.source,
            frames,
            diffs: Vec::new(),
            history: VecDeque::new(),
            malformed_frames: 0,
        }))
    }

    /// The next input from the host's own I/O.
    pub async fn next_input(&mut self) -> Option<HostInput> {
        let changes = async {
            match &mut self.changes {
                Some(changes) => changes.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(result) = self.results.recv() => Some(HostInput(Input::Worker(result))),
            Some(change) = changes => Some(HostInput(Input::Ruleset(change))),
            else => None,
        }
    }

    /// Handles an input from [`next_input`](Self::next_input).
    pub fn handle_input(&mut self, now: Instant, input: HostInput) {
        match input.0 {
            Input::Worker(WorkerResult::Read { id, units }) => {
                self.machine.handle_read(now, id, units);
            }
            Input::Worker(WorkerResult::Applied {
                id,
                result,
                nft_pid,
            }) => {
                self.own_commit(nft_pid);
                self.machine.handle_applied(now, id, result);
            }
            Input::Worker(WorkerResult::ElementsRead { id, read }) => {
                self.machine.handle_elements(now, id, read);
            }
            Input::Worker(WorkerResult::ElementsApplied { result, nft_pids }) => {
                for pid in nft_pids {
                    self.own_commit(Some(pid));
                }
                if let Err(message) = &result {
                    warn!(node = %self.name, "config sync: applying set elements: {message}");
                }
                self.machine.handle_elements_applied(result);
            }
            Input::Ruleset(RulesetChanged { pid }) => {
                if !pid.is_some_and(|pid| self.own_pids.contains(&pid)) {
                    self.machine.local_changed(now);
                }
            }
        }
    }

    /// Notes our own `nft` commit, whose generation event is no change.
    fn own_commit(&mut self, nft_pid: Option<u32>) {
        if let Some(pid) = nft_pid
            && !self.own_pids.contains(&pid)
        {
            if self.own_pids.len() == OWN_PIDS {
                self.own_pids.pop_front();
            }
            self.own_pids.push_back(pid);
        }
    }

    /// This node's part, from the node's state and role (and, in asymmetric mode, the
    /// configured source): told to the machine when it changes.
    pub fn follow(&mut self, now: Instant, node: &Node) {
        let part = (node.state() == SyncState::Synchronization).then(|| self.part(node));
        if part != self.machine.part() {
            self.machine.set_link(now, part);
        }
    }

    fn part(&self, node: &Node) -> Part {
        let config = node.config();
        let is_source = if config.backup_type == failoverd_wire::BackupType::ASYMMETRIC {
            match self.source {
                SyncSource::Node(id) => id == config.node_id,
                SyncSource::Priority => node.peer().is_none_or(|peer| {
                    (config.priority, std::cmp::Reverse(config.node_id))
                        > (peer.priority, std::cmp::Reverse(peer.node_id))
                }),
            }
        } else {
            node.role() == Role::Active
        };
        if is_source {
            Part::Source
        } else {
            Part::Replica
        }
    }

    /// A config-sync frame from the peer.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) {
        match Message::parse(bytes) {
            Ok(Message::ConfigSync(view)) => self.machine.handle_message(now, view.message()),
            _ => self.malformed_frames += 1,
        }
    }

    /// Runs the machine's timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.machine.poll_timeout().is_some_and(|at| at <= now) {
            self.machine.handle_timeout(now);
        }
    }

    /// The machine's next timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.machine.poll_timeout()
    }

    /// Hands the machine's outputs over: frames to the link, work to the worker, events to
    /// the log, the history and waiting `config diff`s.
    pub fn flush(&mut self, now: Instant) {
        while let Some(message) = self.machine.poll_transmit() {
            let mut frame = Vec::new();
            message.emit(&mut frame);
            let _ = self.frames.send(frame);
        }
        while let Some(action) = self.machine.poll_action() {
            self.worker.perform(Job::Config(action));
        }
        while let Some(action) = self.machine.poll_element_action() {
            self.worker.perform(Job::Elements(action));
        }
        while let Some(event) = self.machine.poll_event() {
            self.on_event(now, event);
        }
    }

    fn on_event(&mut self, now: Instant, event: ConfigSyncEvent) {
        let node = &self.name;
        let (kind, message) = match event {
            ConfigSyncEvent::DiffReady(diff) => {
                if let Some(at) = self.diffs.iter().position(|(r, _)| *r == diff.request) {
                    let (_, reply) = self.diffs.swap_remove(at);
                    let answer = view::diff(&diff, &self.name);
                    let _ = reply.send(Response::ok(&answer).into());
                }
                return;
            }
            ConfigSyncEvent::DiffFailed { request, reason } => {
                if let Some(at) = self.diffs.iter().position(|(r, _)| *r == request) {
                    let (_, reply) = self.diffs.swap_remove(at);
                    let _ = reply.send(Response::error(format!("config diff: {reason}")).into());
                }
                return;
            }
            ConfigSyncEvent::StatusChanged { from, to, reason } => (
                EventKind::ConfigStatus,
                format!("config sync {from} -> {to}: {reason}"),
            ),
            ConfigSyncEvent::Sent { full, units } => (
                EventKind::ConfigSent,
                format!(
                    "config sync: sent {} ({})",
                    unit_names(&units),
                    if full { "full" } else { "incremental" }
                ),
            ),
            ConfigSyncEvent::Applied { units } => (
                EventKind::ConfigApplied,
                format!("config sync: applied {}", unit_names(&units)),
            ),
            ConfigSyncEvent::Failed { unit, message } => (
                EventKind::ConfigFailed,
                match unit {
                    Some(unit) => format!("config sync failed on {}: {message}", unit.name),
                    None => format!("config sync failed: {message}"),
                },
            ),
            ConfigSyncEvent::Refused { reason } => (
                EventKind::ConfigFailed,
                format!("config sync refused: {reason}"),
            ),
            ConfigSyncEvent::RolledBack { units } => (
                EventKind::ConfigFailed,
                format!(
                    "config sync rolled back {}: the failover link was lost after applying",
                    unit_names(&units)
                ),
            ),
            ConfigSyncEvent::Drift { units, repairing } => (
                EventKind::ConfigDrift,
                format!(
                    "config sync: {} differ from the source's{}",
                    unit_names(&units),
                    if repairing { "; repairing" } else { "" }
                ),
            ),
        };
        match kind {
            EventKind::ConfigFailed | EventKind::ConfigDrift => warn!(%node, "{message}"),
            _ => info!(%node, "{message}"),
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((now, kind, message));
    }

    /// `failoverctl config status`.
    pub fn status(&self, now: Instant) -> failoverd_control::protocol::ConfigSyncStatus {
        view::status(&self.machine, now, self.malformed_frames)
    }

    /// `failoverctl config diff`: answered once the peer's read-back is here.
    pub fn request_diff(&mut self, now: Instant, reply: oneshot::Sender<Answer>) {
        match self.machine.request_diff(now) {
            Ok(request) => self.diffs.push((request, reply)),
            Err(refused) => {
                let _ = reply.send(Response::error(format!("config diff: {refused}")).into());
            }
        }
    }

    /// `failoverctl config sync`.
    pub fn request_sync(&mut self, now: Instant) -> ConfigSyncReply {
        match self.machine.request_full_sync(now) {
            Ok(()) => ConfigSyncReply {
                accepted: true,
                message: "full sync started: every unit both nodes name is sent".into(),
            },
            Err(refused) => ConfigSyncReply {
                accepted: false,
                message: refused.to_string(),
            },
        }
    }

    /// Config-sync events for `failoverctl events`.
    pub fn history(&self) -> impl Iterator<Item = &(Instant, EventKind, String)> {
        self.history.iter()
    }
}

/// A failover link lost this soon after an apply rolls it back: the peer is declared dead one
/// dead interval after the new rules cut its hellos, plus the time to notice.
fn confirm_window(dead_interval: Duration) -> Duration {
    3 * dead_interval
}
