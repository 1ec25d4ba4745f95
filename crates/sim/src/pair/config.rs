//! Configuration sync in the simulation: each node's [`ConfigSync`] machine beside its core, an
//! in-memory "kernel" of units that can refuse applies or store them in another form, and the
//! config-sync frames over the failover link, as the daemon wires them.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use failoverd_core::config_sync::{
    Applied, ApplyFailed, ConfigAction, ConfigSync, ConfigSyncConfig, ConfigSyncEvent, Part,
    Readback, UnitContents,
};
use failoverd_core::{Channel, Instant};
use failoverd_wire::{
    ConfigSyncMessage, Frame, Message, MessageKind, Role, SyncState, TransferPurpose, UnitId,
};
use rand::Rng;

use super::Pair;
use crate::mutant::Mutant;

/// What [`Kernel::rewrites`] adds to every unit it is made to hold: a kernel that stores
/// what it is given in another canonical form than the source's.
const REWRITTEN: &[u8] = b"\n# stored in this kernel's own form\n";

/// One node's units as its kernel (nftables) or filesystem holds them, and its faults.
#[derive(Debug, Default)]
pub struct Kernel {
    /// Each unit's canonical content; a unit not in the map is absent.
    pub units: BTreeMap<UnitId, Vec<u8>>,
    /// The next this many applies fail (the kernel refuses the transaction): nothing changes.
    pub refuse_applies: usize,
    /// Content holding this text fails to apply here (a feature this kernel lacks).
    pub lacks: Option<String>,
    /// Applies succeed but store the content in another form (its read-back differs).
    pub rewrites: bool,
}

impl Kernel {
    fn read(&self, units: &[UnitId]) -> Vec<(UnitId, Readback)> {
        units
            .iter()
            .map(|u| (u.clone(), Ok(self.units.get(u).cloned())))
            .collect()
    }

    /// One transaction: every unit as given, or nothing and the refusal.
    fn apply(&mut self, units: &UnitContents) -> Result<(), ApplyFailed> {
        if self.refuse_applies > 0 {
            self.refuse_applies -= 1;
            return Err(ApplyFailed {
                unit: units.first().map(|(u, _)| u.clone()),
                message: "Error: Could not process rule: Cannot allocate memory".into(),
            });
        }
        if let Some(feature) = &self.lacks
            && let Some((unit, _)) = units.iter().find(|(_, content)| {
                content
                    .as_deref()
                    .is_some_and(|c| c.windows(feature.len()).any(|w| w == feature.as_bytes()))
            })
        {
            return Err(ApplyFailed {
                unit: Some(unit.clone()),
                message: format!(
                    "Error: Could not process rule: No such file or directory ({feature})"
                ),
            });
        }
        for (unit, content) in units {
            match content {
                Some(bytes) => {
                    let mut stored = bytes.clone();
                    if self.rewrites {
                        stored.extend_from_slice(REWRITTEN);
                    }
                    self.units.insert(unit.clone(), stored);
                }
                None => {
                    self.units.remove(unit);
                }
            }
        }
        Ok(())
    }
}

/// One node's config sync: its machine, its kernel, and what the harness observed of it.
#[derive(Debug)]
pub struct ConfigNode {
    /// The machine (a new one after a restart: it keeps nothing across one).
    pub machine: ConfigSync,
    /// The units it reads and applies; they outlive a restart (they are on disk).
    pub kernel: Kernel,
    /// Every event with its time, across restarts.
    pub events: Vec<(Instant, ConfigSyncEvent)>,
    /// Sync transfers this node's machine sent (retransmissions included).
    pub transfers_sent: u64,
    config: ConfigSyncConfig,
    /// Reads and applies in order, the first completing at `due`.
    work: VecDeque<ConfigAction>,
    due: Option<Instant>,
    /// Fingerprints of every unit content handed to the machine (reads and read-backs): what
    /// the peer may apply of this node's.
    pub(super) handed: HashSet<(UnitId, Option<u64>)>,
    /// After a sync apply: until when a lost link restores what it replaced, and that.
    pub(super) restorable: Option<(Instant, UnitContents)>,
}

impl ConfigNode {
    fn new(config: ConfigSyncConfig, kernel: Kernel) -> Self {
        Self {
            machine: ConfigSync::new(config.clone()),
            kernel,
            events: Vec::new(),
            transfers_sent: 0,
            config,
            work: VecDeque::new(),
            due: None,
            handed: HashSet::new(),
            restorable: None,
        }
    }

    /// The units this node's configuration names.
    pub fn named(&self) -> &[UnitId] {
        &self.config.units
    }

    /// When the next timer or piece of work is due.
    pub(super) fn next_event(&self) -> Option<Instant> {
        [self.machine.poll_timeout(), self.due]
            .into_iter()
            .flatten()
            .min()
    }

    /// A crash or shutdown: reads and applies under way never happen (an apply is one
    /// transaction), and the machine is gone; the units stay.
    pub(super) fn stop(&mut self) {
        self.work.clear();
        self.due = None;
        self.restorable = None;
    }

    /// A restart: a new machine (its ids seeded apart from the old one's), the same units.
    pub(super) fn restart(&mut self, restarts: u64) {
        let mut config = self.config.clone();
        config.seed = config.seed.wrapping_add(restarts << 40);
        self.machine = ConfigSync::new(config);
        self.stop();
    }

    fn note_handed(&mut self, units: &[(UnitId, Readback)]) {
        for (unit, content) in units {
            if let Ok(content) = content {
                self.handed
                    .insert((unit.clone(), content.as_deref().map(fingerprint)));
            }
        }
    }
}

/// A cheap, deterministic fingerprint of a unit's content (the harness's bookkeeping only).
pub(super) fn fingerprint(content: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    content.hash(&mut hasher);
    hasher.finish()
}

/// Whether `bytes` is a config-sync frame (which the daemon hands to the machine, not the
/// core).
fn is_config_frame(bytes: &[u8]) -> bool {
    Frame::new_checked(bytes).is_ok_and(|f| f.kind() == MessageKind::ConfigSync)
}

impl Pair {
    /// Gives each node a config-sync machine with `configs[i]` and `kernels[i]` (the units it
    /// holds at start), as `[config_sync]` does in the daemon.
    pub fn enable_config_sync(&mut self, configs: [ConfigSyncConfig; 2], kernels: [Kernel; 2]) {
        let [a, b] = configs;
        let [ka, kb] = kernels;
        self.config = [Some(ConfigNode::new(a, ka)), Some(ConfigNode::new(b, kb))];
        for i in 0..2 {
            self.flush_config(i);
        }
    }

    /// The operator changes unit `unit` on node `i` (`None`: removes it); the node's watcher
    /// notices it.
    pub fn edit_unit(&mut self, i: usize, unit: &UnitId, content: Option<Vec<u8>>) {
        let now = self.now;
        let alive = self.nodes[i].alive;
        let Some(node) = self.config[i].as_mut() else {
            return;
        };
        match content {
            Some(content) => node.kernel.units.insert(unit.clone(), content),
            None => node.kernel.units.remove(unit),
        };
        if alive {
            node.machine.local_changed(now);
        }
        self.flush_config(i);
    }

    /// `failoverctl config sync` on node `i`: whether the machine took it.
    pub fn request_config_sync(&mut self, i: usize) -> bool {
        let now = self.now;
        if !self.nodes[i].alive {
            return false;
        }
        let Some(node) = self.config[i].as_mut() else {
            return false;
        };
        let taken = node.machine.request_full_sync(now).is_ok();
        self.flush_config(i);
        taken
    }

    /// The part the daemon gives node `i`'s machine: in Synchronization, the source if it is
    /// active, the replica if standby (symmetric mode); otherwise none.
    pub fn config_part(&self, i: usize) -> Option<Part> {
        let core = &self.nodes[i].core;
        (self.nodes[i].alive && core.state() == SyncState::Synchronization).then(|| {
            if core.role() == Role::Active {
                Part::Source
            } else {
                Part::Replica
            }
        })
    }

    /// A config-sync frame for node `to`, decoded as the daemon does.
    pub(super) fn deliver_config(&mut self, to: usize, bytes: &[u8]) -> bool {
        if self.config[to].is_none() || !is_config_frame(bytes) {
            return false;
        }
        let message = match Message::parse(bytes) {
            Ok(Message::ConfigSync(view)) => view.message(),
            other => {
                self.violate(format!(
                    "node {to}: a config-sync frame does not parse: {other:?}"
                ));
                return true;
            }
        };
        if let Some(trace) = &mut self.trace {
            trace.push((self.now, to, format!("receive {}", describe(&message))));
        }
        let now = self.now;
        if let Some(node) = self.config[to].as_mut() {
            node.machine.handle_message(now, message);
        }
        self.flush_config(to);
        true
    }

    /// Runs node `i`'s config timers and completes its due work.
    pub(super) fn config_due(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.config[i].as_mut() else {
            return;
        };
        if node.machine.poll_timeout().is_some_and(|t| t <= now) {
            node.machine.handle_timeout(now);
        }
        if node.due.is_some_and(|t| t <= now) {
            self.complete_config_work(i);
        }
        self.flush_config(i);
    }

    /// Keeps node `i`'s part as the daemon does, then drains its machine: actions into the
    /// work queue, messages onto the link, events into the log, each checked.
    pub(super) fn flush_config(&mut self, i: usize) {
        if self.config[i].is_none() || !self.nodes[i].alive {
            return;
        }
        let now = self.now;
        let proper = self.config_part(i);
        let mutant = self.mutant;
        let connected = self.nodes[i].connected;
        let Some(node) = self.config[i].as_mut() else {
            return;
        };
        // The mutant follows the state only: a role change within Synchronization is missed.
        let given = match (mutant, node.machine.part(), proper) {
            (Some(Mutant::PartIgnoresRole), Some(held), Some(_)) => Some(held),
            _ => proper,
        };
        if node.machine.part() != given {
            node.machine.set_link(now, given);
        }
        let mut actions = Vec::new();
        let mut messages = Vec::new();
        let mut events = Vec::new();
        loop {
            let before = actions.len() + messages.len() + events.len();
            actions.extend(std::iter::from_fn(|| node.machine.poll_action()));
            messages.extend(std::iter::from_fn(|| node.machine.poll_transmit()));
            events.extend(std::iter::from_fn(|| node.machine.poll_event()));
            if actions.len() + messages.len() + events.len() == before {
                break;
            }
        }
        let status = node.machine.status().0;
        for action in actions {
            self.check_config_action(i, &action);
            let node = self.config[i].as_mut().expect("checked above");
            node.work.push_back(action);
        }
        for message in messages {
            self.check_config_message(i, &message, status);
            if let ConfigSyncMessage::Transfer(header) = &message
                && header.purpose != TransferPurpose::Readback
                && let Some(node) = self.config[i].as_mut()
            {
                node.transfers_sent += 1;
            }
            if let Some(trace) = &mut self.trace {
                trace.push((now, i, format!("send {}", describe(&message))));
            }
            if connected {
                let mut bytes = Vec::new();
                message.emit(&mut bytes);
                self.link
                    .send(now, 1 - i, Channel::Data, bytes, &mut self.config_rng);
            }
        }
        for event in events {
            self.check_config_event(i, &event);
            let node = self.config[i].as_mut().expect("checked above");
            node.events.push((now, event));
        }
        self.schedule_config_work(i);
    }

    fn schedule_config_work(&mut self, i: usize) {
        let (min, max) = self.config_latency;
        let latency = min + (max.saturating_sub(min)).mul_f64(self.config_rng.random::<f64>());
        let now = self.now;
        if let Some(node) = self.config[i].as_mut()
            && node.due.is_none()
            && !node.work.is_empty()
        {
            node.due = Some(now + latency);
        }
    }

    /// The first queued read or apply takes effect now.
    fn complete_config_work(&mut self, i: usize) {
        let now = self.now;
        let mutant = self.mutant;
        let Some(node) = self.config[i].as_mut() else {
            return;
        };
        node.due = None;
        let Some(action) = node.work.pop_front() else {
            return;
        };
        if let Some(trace) = &mut self.trace {
            trace.push((now, i, format!("perform {}", describe_action(&action))));
        }
        match action {
            ConfigAction::Read { id, units } => {
                let read = node.kernel.read(&units);
                node.note_handed(&read);
                node.machine.handle_read(now, id, read);
            }
            ConfigAction::Apply { id, units } => {
                let ids: Vec<UnitId> = units.iter().map(|(u, _)| u.clone()).collect();
                let previous: UnitContents = ids
                    .iter()
                    .map(|u| (u.clone(), node.kernel.units.get(u).cloned()))
                    .collect();
                let result = node.kernel.apply(&units).map(|()| {
                    let readback = match mutant {
                        // The planted bug: the replica reports what it was sent, not what
                        // its kernel holds.
                        Some(Mutant::ReadbackIsReceived) => units
                            .iter()
                            .map(|(u, c)| (u.clone(), Ok(c.clone())))
                            .collect(),
                        _ => node.kernel.read(&ids),
                    };
                    Applied { previous, readback }
                });
                if let Ok(applied) = &result {
                    node.note_handed(&applied.readback);
                    node.restorable =
                        Some((now + node.config.confirm_window, applied.previous.clone()));
                }
                node.machine.handle_applied(now, id, result);
            }
        }
    }
}

/// A config-sync message, for the trace.
fn describe(message: &ConfigSyncMessage) -> String {
    match message {
        ConfigSyncMessage::Chunk(chunk) => format!(
            "config chunk transfer {} unit {} at {} ({} bytes)",
            chunk.transfer,
            chunk.unit,
            chunk.offset,
            chunk.data.len()
        ),
        other => format!("config {other:?}"),
    }
}

fn describe_action(action: &ConfigAction) -> String {
    match action {
        ConfigAction::Read { units, .. } => format!("config read of {} units", units.len()),
        ConfigAction::Apply { units, .. } => format!(
            "config apply of {:?}",
            units
                .iter()
                .map(|(u, c)| (&u.name, c.as_ref().map(Vec::len)))
                .collect::<Vec<_>>()
        ),
    }
}

/// How long a config read or apply takes at first ([`Pair::config_latency`]): a small `nft`
/// transaction, or a few files.
pub(super) const LATENCY: (Duration, Duration) =
    (Duration::from_micros(500), Duration::from_millis(20));
