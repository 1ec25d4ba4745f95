//! Configuration sync in the lab: the `[config_sync]` sections of a daemon's file
//! ([`ConfigSyncOptions`]), and the requests of `failoverctl config status|diff|sync --json` and
//! `failoverctl events --json`, answered as the control protocol's types.

use std::time::{Duration, Instant};

use failoverd_control::protocol::{
    ConfigDiff, ConfigSyncReply, ConfigSyncStatus, ConfigUnitView, EventKind, EventList, EventView,
    Request,
};
use serde_json::Value;

use crate::daemon::{Daemon, DaemonOptions};

/// How often [`Daemon::wait_config`] asks.
const POLL: Duration = Duration::from_millis(50);

/// `[config_sync]` and `[config_sync.nftables]` of one node's file.
#[derive(Debug, Clone)]
pub struct ConfigSyncOptions {
    /// `mode`: `"auto"`, `"manual"` or `"off"`.
    pub mode: String,
    /// `nftables.tables`, each `"family name"`.
    pub tables: Vec<String>,
    /// `compare_interval_ms`; `None`: not written (the daemon's default).
    pub compare_interval_ms: Option<u32>,
    /// `repair_after`; `None`: not written.
    pub repair_after: Option<u32>,
    /// `max_unit_bytes`; `None`: not written.
    pub max_unit_bytes: Option<u32>,
    /// `nftables.defines`: this node's values, by name.
    pub defines: Vec<(String, String)>,
}

impl ConfigSyncOptions {
    /// Mode `mode` for the nftables tables `tables` (each `"family name"`), every other key
    /// left to the daemon's default.
    pub fn new(mode: &str, tables: &[&str]) -> Self {
        ConfigSyncOptions {
            mode: mode.to_string(),
            tables: tables.iter().map(ToString::to_string).collect(),
            compare_interval_ms: None,
            repair_after: None,
            max_unit_bytes: None,
            defines: Vec::new(),
        }
    }

    /// Sets `compare_interval_ms`.
    pub fn compare_interval_ms(mut self, ms: u32) -> Self {
        self.compare_interval_ms = Some(ms);
        self
    }

    /// Sets `repair_after`.
    pub fn repair_after(mut self, comparisons: u32) -> Self {
        self.repair_after = Some(comparisons);
        self
    }

    /// Sets `max_unit_bytes`.
    pub fn max_unit_bytes(mut self, bytes: u32) -> Self {
        self.max_unit_bytes = Some(bytes);
        self
    }

    /// Adds a per-node define, `name = "value"`.
    pub fn define(mut self, name: &str, value: &str) -> Self {
        self.defines.push((name.to_string(), value.to_string()));
        self
    }

    /// The sections as TOML.
    pub fn toml(&self) -> String {
        let quoted = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut text = format!("[config_sync]\nmode = {}\n", quoted(&self.mode));
        for (key, value) in [
            ("compare_interval_ms", self.compare_interval_ms),
            ("repair_after", self.repair_after),
            ("max_unit_bytes", self.max_unit_bytes),
        ] {
            if let Some(value) = value {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        let tables: Vec<String> = self.tables.iter().map(|t| quoted(t)).collect();
        text.push_str(&format!(
            "\n[config_sync.nftables]\ntables = [{}]\n",
            tables.join(", ")
        ));
        if !self.defines.is_empty() {
            let defines: Vec<String> = self
                .defines
                .iter()
                .map(|(name, value)| format!("{name} = {}", quoted(value)))
                .collect();
            text.push_str(&format!("defines = {{ {} }}\n", defines.join(", ")));
        }
        text
    }
}

impl DaemonOptions {
    /// Adds the config-sync sections of `sync` to the file.
    pub fn config_sync(self, sync: &ConfigSyncOptions) -> Self {
        self.extra(&sync.toml())
    }
}

impl Daemon {
    /// Sends `request` and reads the answer with `parse`; an error when the daemon does not
    /// answer, refuses, or answers with something else.
    fn typed<T>(
        &self,
        request: Request,
        parse: fn(Value) -> serde_json::Result<T>,
    ) -> Result<T, String> {
        let value = self.call(request)?;
        parse(value.clone()).map_err(|e| format!("{e} in the answer {value}"))
    }

    /// `failoverctl config status --json`.
    pub fn config_status(&self) -> Result<ConfigSyncStatus, String> {
        self.typed(Request::ConfigStatus, serde_json::from_value)
    }

    /// `failoverctl config diff --json`.
    pub fn config_diff(&self) -> Result<ConfigDiff, String> {
        self.typed(Request::ConfigDiff, serde_json::from_value)
    }

    /// `failoverctl config sync --json`.
    pub fn config_sync(&self) -> Result<ConfigSyncReply, String> {
        self.typed(Request::ConfigSync, serde_json::from_value)
    }

    /// `failoverctl events --json`: the whole history, oldest first; panics when the daemon
    /// does not answer.
    pub fn events(&self) -> Vec<EventView> {
        self.typed::<EventList>(Request::Events { limit: None }, serde_json::from_value)
            .unwrap_or_else(|e| panic!("events: {e}"))
            .events
    }

    /// The events of these kinds, oldest first.
    pub fn events_of(&self, kinds: &[EventKind]) -> Vec<EventView> {
        self.events()
            .into_iter()
            .filter(|e| kinds.contains(&e.kind))
            .collect()
    }

    /// Polls `config status` until `done` accepts it, for at most `within`; panics with
    /// `what`, the last status or error, the last `Err` of `done`, and the log when the
    /// daemon exits or the time is up.
    pub fn wait_config(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&ConfigSyncStatus) -> Result<(), String>,
    ) -> ConfigSyncStatus {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.exited() {
                panic!(
                    "exited ({exit}) while waiting for {what}\nlog:\n{}",
                    self.log()
                );
            }
            let last = match self.config_status() {
                Ok(status) => match done(&status) {
                    Ok(()) => return status,
                    Err(why) => format!("{why}; status {status:#?}"),
                },
                Err(e) => e,
            };
            if started.elapsed() > within {
                panic!(
                    "{what}: not within {within:?}; last: {last}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The unit named `name` (`"inet filter"`, or a path) of `status`.
pub fn unit<'a>(status: &'a ConfigSyncStatus, name: &str) -> Result<&'a ConfigUnitView, String> {
    status
        .units
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(|| format!("no unit {name:?}"))
}

/// Both nodes hold the same of every unit, as this node's status says: each unit `in_sync`,
/// with the peer's hash equal to this node's.
pub fn units_in_sync(status: &ConfigSyncStatus) -> Result<(), String> {
    for u in &status.units {
        if !u.in_sync || u.peer_state != Some(u.local_state) || u.local_hash != u.peer_hash {
            return Err(format!(
                "unit {} not in sync: here {:?} {:?}, peer {:?} {:?}",
                u.name, u.local_state, u.local_hash, u.peer_state, u.peer_hash
            ));
        }
    }
    Ok(())
}
