//! The config-sync worker: a thread of its own that owns the backends and runs the machine's
//! reads and applies (each `nft` run or tree swap may take a second; the driver never waits).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::thread;
use std::time::{Duration, Instant as WallInstant};

use failoverd_backends::{ConfigBackend, ConfigError, FilesBackend, NftablesBackend, SetElement};
use failoverd_core::config_sync::{
    ActionId, Applied, ApplyFailed, ConfigAction, ElementAction, ElementsRead, Readback,
    UnitContents,
};
use failoverd_wire::{ElementEntry, UnitId, UnitKind};
use tokio::sync::mpsc;
use tracing::warn;

/// What the worker hands back to the driver.
#[derive(Debug)]
pub(super) enum WorkerResult {
    /// A read's result.
    Read {
        /// The action.
        id: ActionId,
        /// Each unit's read-back.
        units: Vec<(UnitId, Readback)>,
    },
    /// An apply's result.
    Applied {
        /// The action.
        id: ActionId,
        /// What the machine is told.
        result: Result<Applied, ApplyFailed>,
        /// The `nft` process that committed it: its generation event is ours, not a change.
        nft_pid: Option<u32>,
    },
    /// A read of the dynamic sets.
    ElementsRead {
        /// The action.
        id: ActionId,
        /// The elements, and how long reading them took.
        read: ElementsRead,
    },
    /// An element apply's result.
    ElementsApplied {
        /// The set and the backend's message, if it failed.
        result: Result<(), String>,
        /// The `nft` processes of its commits (ours, as for `Applied`).
        nft_pids: Vec<u32>,
    },
}

/// Work for the worker thread.
pub(super) enum Job {
    /// A unit read or apply.
    Config(ConfigAction),
    /// A dynamic set read or element apply.
    Elements(ElementAction),
}

/// One backend's units with their content, as `ConfigBackend::apply` takes them.
type Batch = Vec<(String, Option<Vec<u8>>)>;

/// Without a ruleset change, a table is read again at least every this many reads (a lost
/// generation event is reported as a change, so this only bounds what a silent watcher costs).
const FULL_READ_EVERY: u32 = 6;

/// This node's backends, applied in a fixed order: files, then nftables, then the reloads.
pub(super) struct Backends {
    /// `[[config_sync.files]]`, if any.
    pub(super) files: Option<FilesBackend>,
    /// `[config_sync.nftables]`, if any tables.
    pub(super) nftables: Option<NftablesBackend>,
    /// Set by the ruleset watcher on every commit: while it is clear, the tables read last
    /// time are what `nft -s` would print again (counters and expiry are not in the form, and
    /// dynamic sets' elements are left out), so a periodic comparison costs no `nft` run.
    pub(super) ruleset_changed: Option<Arc<AtomicBool>>,
    /// The tables as last read, and the reads served from them since.
    tables_read: BTreeMap<String, Readback>,
    reads_from_cache: u32,
}

impl Backends {
    fn backend(&mut self, kind: UnitKind) -> Option<&mut dyn ConfigBackend> {
        match kind {
            UnitKind::Files => self.files.as_mut().map(|b| b as &mut dyn ConfigBackend),
            UnitKind::Nftables => self.nftables.as_mut().map(|b| b as &mut dyn ConfigBackend),
        }
    }

    /// The version of each backend there is, for the offers.
    pub(super) fn versions(&mut self) -> Result<Vec<(UnitKind, String)>, ConfigError> {
        let mut versions = Vec::new();
        for kind in [UnitKind::Files, UnitKind::Nftables] {
            if let Some(backend) = self.backend(kind) {
                versions.push((kind, backend.version()?));
            }
        }
        Ok(versions)
    }

    /// The backends of this node.
    pub(super) fn new(
        files: Option<FilesBackend>,
        nftables: Option<NftablesBackend>,
        ruleset_changed: Option<Arc<AtomicBool>>,
    ) -> Self {
        Self {
            files,
            nftables,
            ruleset_changed,
            tables_read: BTreeMap::new(),
            reads_from_cache: 0,
        }
    }

    fn read(&mut self, units: &[UnitId]) -> Vec<(UnitId, Readback)> {
        // Cleared before reading: a commit during the read sets it again.
        let unchanged = self
            .ruleset_changed
            .as_ref()
            .is_some_and(|changed| !changed.swap(false, Ordering::SeqCst))
            && self.reads_from_cache < FULL_READ_EVERY;
        if unchanged {
            self.reads_from_cache += 1;
        } else {
            self.reads_from_cache = 0;
            self.tables_read.clear();
        }
        units
            .iter()
            .map(|unit| {
                let cached = (unit.kind == UnitKind::Nftables)
                    .then(|| self.tables_read.get(&unit.name).cloned())
                    .flatten();
                let content = match (cached, self.backend(unit.kind)) {
                    (Some(content), _) => content,
                    (None, Some(backend)) => {
                        backend.read(&unit.name).map_err(|err| err.to_string())
                    }
                    (None, None) => Err(format!("no {:?} backend on this node", unit.kind)),
                };
                if unit.kind == UnitKind::Nftables {
                    self.tables_read.insert(unit.name.clone(), content.clone());
                }
                (unit.clone(), content)
            })
            .collect()
    }

    /// Reads what is there (for a rollback), applies per backend in order, reloads the files
    /// units that changed, and reads back.
    fn apply(&mut self, units: UnitContents) -> (Result<Applied, ApplyFailed>, Option<u32>) {
        let ids: Vec<UnitId> = units.iter().map(|(u, _)| u.clone()).collect();
        // What this apply reads, before and after, is the kernel's, not what was read before
        // (its own commit's event may come after the read-back).
        self.tables_read.clear();
        let mut previous = Vec::with_capacity(units.len());
        for (unit, content) in self.read(&ids) {
            match content {
                Ok(content) => previous.push((unit, content)),
                Err(message) => {
                    return (
                        Err(ApplyFailed {
                            unit: Some(unit),
                            message: format!("reading it before applying: {message}"),
                        }),
                        None,
                    );
                }
            }
        }
        let mut by_kind: BTreeMap<UnitKind, Batch> = BTreeMap::new();
        for (unit, content) in units {
            by_kind
                .entry(unit.kind)
                .or_default()
                .push((unit.name, content));
        }
        let mut nft_pid = None;
        let mut done: Vec<(UnitKind, Batch)> = Vec::new();
        for kind in [UnitKind::Files, UnitKind::Nftables] {
            let Some(batch) = by_kind.remove(&kind) else {
                continue;
            };
            let Some(backend) = self.backend(kind) else {
                return (
                    Err(ApplyFailed {
                        unit: None,
                        message: format!("no {kind:?} backend on this node"),
                    }),
                    nft_pid,
                );
            };
            let result = backend.apply(&batch);
            if kind == UnitKind::Nftables {
                nft_pid = self.nftables.as_ref().and_then(|b| b.last_apply_pid());
            }
            if let Err(err) = result {
                // What applied before (files, when nftables failed) is put back: all or nothing.
                self.undo(&done, &previous);
                let unit = failed_unit(&err, kind);
                return (
                    Err(ApplyFailed {
                        unit,
                        message: err.to_string(),
                    }),
                    nft_pid,
                );
            }
            done.push((kind, batch));
        }
        if let Err((name, err)) = self.reload(&done) {
            // The service refused the new files: everything goes back as it was (and the
            // service is reloaded with it), nothing half applied.
            self.undo(&done, &previous);
            let _ = self.reload(&done);
            return (
                Err(ApplyFailed {
                    unit: Some(UnitId {
                        kind: UnitKind::Files,
                        name,
                    }),
                    message: err.to_string(),
                }),
                nft_pid,
            );
        }
        self.tables_read.clear();
        let readback = self.read(&ids);
        (Ok(Applied { previous, readback }), nft_pid)
    }

    /// Reads each dynamic set's elements, timing the whole read.
    fn read_elements(&mut self, sets: &[String]) -> ElementsRead {
        let started = WallInstant::now();
        let sets = sets
            .iter()
            .map(|set| {
                let elements = match &mut self.nftables {
                    Some(nft) => nft
                        .read_elements(set)
                        .map(|elements| elements.iter().map(entry).collect())
                        .map_err(|err| err.to_string()),
                    None => Err("no nftables backend on this node".into()),
                };
                (set.clone(), elements)
            })
            .collect();
        ElementsRead {
            sets,
            took: started.elapsed(),
        }
    }

    /// Deletes `removes`, then adds `adds` to `set`; the first failure stops.
    fn apply_elements(
        &mut self,
        set: &str,
        adds: &[ElementEntry],
        removes: &[String],
    ) -> (Result<(), String>, Vec<u32>) {
        let Some(nft) = &mut self.nftables else {
            return (Err("no nftables backend on this node".into()), Vec::new());
        };
        let adds: Vec<SetElement> = adds.iter().map(set_element).collect();
        let mut pids = Vec::new();
        let mut result = Ok(());
        if !removes.is_empty() {
            result = nft.delete_elements(set, removes);
            pids.extend(nft.last_apply_pid());
        }
        if result.is_ok() && !adds.is_empty() {
            result = nft.add_elements(set, &adds);
            pids.extend(nft.last_apply_pid());
        }
        (result.map_err(|err| format!("{set}: {err}")), pids)
    }

    /// Runs the reload command of every files unit applied, in order; the first failure
    /// stops.
    fn reload(&self, done: &[(UnitKind, Batch)]) -> Result<(), (String, ConfigError)> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        for (kind, batch) in done {
            if *kind != UnitKind::Files {
                continue;
            }
            for (name, _) in batch {
                files.reload(name).map_err(|err| (name.clone(), err))?;
            }
        }
        Ok(())
    }

    /// Puts back what an apply that failed later changed.
    fn undo(&mut self, done: &[(UnitKind, Batch)], previous: &[(UnitId, Option<Vec<u8>>)]) {
        for (kind, batch) in done {
            let restore: Batch = batch
                .iter()
                .filter_map(|(name, _)| {
                    previous
                        .iter()
                        .find(|(u, _)| u.kind == *kind && u.name == *name)
                        .map(|(_, content)| (name.clone(), content.clone()))
                })
                .collect();
            if let Some(backend) = self.backend(*kind)
                && let Err(err) = backend.apply(&restore)
            {
                warn!("config sync: putting back {kind:?} units after a failed apply: {err}");
            }
        }
    }
}

fn failed_unit(err: &ConfigError, kind: UnitKind) -> Option<UnitId> {
    let name = match err {
        ConfigError::Refused { unit, .. }
        | ConfigError::Read { unit, .. }
        | ConfigError::Apply { unit, .. } => unit.clone(),
        ConfigError::Tool { .. } => return None,
    };
    Some(UnitId { kind, name })
}

/// An element as the wire carries it.
fn entry(element: &SetElement) -> ElementEntry {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    ElementEntry {
        key: element.key.clone(),
        value: element.value.clone(),
        comment: element.comment.clone(),
        timeout_ms: element.timeout.map(ms),
        expires_ms: element.expires.map(ms),
    }
}

/// An element from the wire, as the backend writes it.
fn set_element(entry: &ElementEntry) -> SetElement {
    SetElement {
        key: entry.key.clone(),
        value: entry.value.clone(),
        timeout: entry.timeout_ms.map(Duration::from_millis),
        expires: entry.expires_ms.map(Duration::from_millis),
        comment: entry.comment.clone(),
    }
}

/// The worker's end for the driver.
pub(super) struct Worker {
    actions: std_mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the worker thread of node `name`; results come on the returned receiver.
    pub(super) fn spawn(
        name: &str,
        mut backends: Backends,
    ) -> std::io::Result<(Self, mpsc::UnboundedReceiver<WorkerResult>)> {
        let (actions, action_rx) = std_mpsc::channel::<Job>();
        let (results, result_rx) = mpsc::unbounded_channel();
        thread::Builder::new()
            .name(format!("{name}-config"))
            .spawn(move || {
                for action in action_rx {
                    let result = match action {
                        Job::Config(ConfigAction::Read { id, units }) => WorkerResult::Read {
                            id,
                            units: backends.read(&units),
                        },
                        Job::Elements(ElementAction::Read { id, sets }) => {
                            WorkerResult::ElementsRead {
                                id,
                                read: backends.read_elements(&sets),
                            }
                        }
                        Job::Elements(ElementAction::Apply { set, adds, removes }) => {
                            let (result, nft_pids) = backends.apply_elements(&set, &adds, &removes);
                            WorkerResult::ElementsApplied { result, nft_pids }
                        }
                        Job::Config(ConfigAction::Apply { id, units }) => {
                            let (result, nft_pid) = backends.apply(units);
                            WorkerResult::Applied {
                                id,
                                result,
                                nft_pid,
                            }
                        }
                    };
                    if results.send(result).is_err() {
                        return;
                    }
                }
            })?;
        Ok((Self { actions }, result_rx))
    }

    /// Queues a job.
    pub(super) fn perform(&self, job: Job) {
        let _ = self.actions.send(job);
    }
}
