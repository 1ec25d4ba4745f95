//! The config-sync worker: a thread of its own that owns the backends and runs the machine's
//! reads and applies (each `nft` run or tree swap may take a second; the driver never waits).

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::thread;

use failoverd_backends::{ConfigBackend, ConfigError, FilesBackend, NftablesBackend};
use failoverd_core::config_sync::{
    ActionId, Applied, ApplyFailed, ConfigAction, Readback, UnitContents,
};
use failoverd_wire::{UnitId, UnitKind};
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
}

/// One backend's units with their content, as `ConfigBackend::apply` takes them.
type Batch = Vec<(String, Option<Vec<u8>>)>;

/// This node's backends, applied in a fixed order: files, then nftables, then the reloads.
pub(super) struct Backends {
    /// `[[config_sync.files]]`, if any.
    pub(super) files: Option<FilesBackend>,
    /// `[config_sync.nftables]`, if any tables.
    pub(super) nftables: Option<NftablesBackend>,
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

    fn read(&mut self, units: &[UnitId]) -> Vec<(UnitId, Readback)> {
        units
            .iter()
            .map(|unit| {
                let content = match self.backend(unit.kind) {
                    Some(backend) => backend.read(&unit.name).map_err(|err| err.to_string()),
                    None => Err(format!("no {:?} backend on this node", unit.kind)),
                };
                (unit.clone(), content)
            })
            .collect()
    }

    /// Reads what is there (for a rollback), applies per backend in order, reloads the files
    /// units that changed, and reads back.
    fn apply(&mut self, units: UnitContents) -> (Result<Applied, ApplyFailed>, Option<u32>) {
        let ids: Vec<UnitId> = units.iter().map(|(u, _)| u.clone()).collect();
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
        let readback = self.read(&ids);
        (Ok(Applied { previous, readback }), nft_pid)
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

/// The worker's end for the driver.
pub(super) struct Worker {
    actions: std_mpsc::Sender<ConfigAction>,
}

impl Worker {
    /// Starts the worker thread of node `name`; results come on the returned receiver.
    pub(super) fn spawn(
        name: &str,
        mut backends: Backends,
    ) -> std::io::Result<(Self, mpsc::UnboundedReceiver<WorkerResult>)> {
        let (actions, action_rx) = std_mpsc::channel::<ConfigAction>();
        let (results, result_rx) = mpsc::unbounded_channel();
        thread::Builder::new()
            .name(format!("{name}-config"))
            .spawn(move || {
                for action in action_rx {
                    let result = match action {
                        ConfigAction::Read { id, units } => WorkerResult::Read {
                            id,
                            units: backends.read(&units),
                        },
                        ConfigAction::Apply { id, units } => {
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

    /// Queues an action.
    pub(super) fn perform(&self, action: ConfigAction) {
        let _ = self.actions.send(action);
    }
}
