//! Configuration sync: the source's configured units (nftables tables, files) made the
//! replica's, over the failover link, as a sans-I/O machine beside the [`crate::Node`].
//!
//! - Only in Synchronization ([`ConfigSync::set_link`]); the daemon says which part this node
//!   plays ([`Part`]). Both nodes read their units and send an offer (versions, source claim,
//!   each unit's hash); the source compares.
//! - Auto mode sends every unit that differs once when synchronization begins (a rejoin with
//!   equal hashes sends nothing), then every change the source notices
//!   ([`ConfigSync::local_changed`]). A unit that differs while the source did not change it
//!   is drift: repaired after [`ConfigSyncConfig::repair_after`] comparisons in auto mode,
//!   reported only in manual mode. The replica never sends its units back.
//! - The replica applies a transfer only if it names every unit, the versions match and each
//!   unit's content hashes to what was announced; it answers with the hash of its own
//!   read-back after applying, never of what it received. If it loses the failover link
//!   within [`ConfigSyncConfig::confirm_window`] of an apply, it puts the previous units back
//!   and will not apply that content again until the source changes it.
//! - A sync that failed, was refused or rolled back is not sent again until the source's unit
//!   changes, or on a manual full sync.
//!
//! Dynamic set elements are runtime state, replicated apart from the units (see `elements`,
//! [`ConfigSync::with_elements`]).
//!
//! Transfers are a header and chunks in order (see `transfer`); a gap aborts one, and the
//! source sends it again after [`ConfigSyncConfig::retry_after`].

mod elements;
mod transfer;
mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use failoverd_wire::{
    ConfigOffer, ConfigSyncMessage, ConfigVersions, SyncOutcome, SyncResult, TransferHeader,
    TransferPurpose, UnitId, UnitState,
};

use crate::time::Instant;
use elements::ElementSync;
use transfer::{Assembly, ChunkError, messages};

pub use elements::{ElementAction, ElementsConfig, ElementsRead, READ_COST_FACTOR};
pub use transfer::{state_of, unit_hash};
pub use types::{
    ActionId, Applied, ApplyFailed, ConfigAction, ConfigSyncConfig, ConfigSyncEvent,
    ConfigSyncStats, Diff, Mode, Part, Readback, StatusReason, SyncStatus, UnitContents,
    UnitResult, UnitView, unit_names,
};

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefused {
    /// The pair is not in Synchronization.
    #[error("the pair is not in synchronization")]
    NotSynchronized,
    /// Only the source sends.
    #[error("this node is not the configuration source")]
    NotSource,
    /// No comparable peer: the reason says why.
    #[error("the peer cannot take a sync now: {0}")]
    PeerNotReady(StatusReason),
    /// A transfer or a diff is on its way.
    #[error("a transfer is on its way; try again when it ends")]
    Busy,
}

/// The peer's latest offer.
#[derive(Debug)]
struct PeerOffer {
    versions: ConfigVersions,
    source: bool,
    auto: bool,
    units: BTreeMap<UnitId, UnitState>,
}

/// What this node knows of one of its units beyond its read-back.
#[derive(Debug, Default)]
struct UnitMeta {
    /// The source's state last seen equal on the replica.
    acked: Option<UnitState>,
    /// A state whose sync failed, was refused or rolled back: not sent again while the unit
    /// holds it.
    blocked: Option<UnitState>,
    /// Comparisons in a row that found the replica different while the source was unchanged.
    drift: u32,
    last_sync: Option<Instant>,
    last_result: Option<UnitResult>,
}

/// A transfer sent and not yet answered.
#[derive(Debug)]
struct Outgoing {
    transfer: u64,
    full: bool,
    units: Vec<(UnitId, UnitState)>,
    sent_at: Instant,
}

/// An apply under way on the replica.
#[derive(Debug)]
enum Applying {
    Sync { transfer: u64, units: Vec<UnitId> },
    Restore { units: Vec<UnitId> },
}

/// An applied sync that a lost link within the window undoes.
#[derive(Debug)]
struct Confirming {
    until: Instant,
    previous: UnitContents,
}

/// A `config diff` under way.
#[derive(Debug)]
struct DiffPending {
    request: u64,
    deadline: Instant,
    local: Option<Vec<(UnitId, Readback)>>,
    peer: Option<Vec<(UnitId, Readback)>>,
    incoming: Option<Assembly>,
}

/// One node's config-sync machine.
#[derive(Debug)]
pub struct ConfigSync {
    config: ConfigSyncConfig,
    /// This node's part while in Synchronization.
    part: Option<Part>,
    linked_at: Instant,
    status: SyncStatus,
    reason: StatusReason,
    /// The latest read-back of each unit, with its state (hashed once, when read).
    local: BTreeMap<UnitId, (Readback, UnitState)>,
    /// Whether `local` was read since the link came up.
    fresh: bool,
    revision: u64,
    peer: Option<PeerOffer>,
    meta: BTreeMap<UnitId, UnitMeta>,
    reading: Option<ActionId>,
    read_again: bool,
    read_due: Option<Instant>,
    next_compare: Option<Instant>,
    /// Whether the first sync of this link was decided.
    initial_done: bool,
    /// No transfer before this (after a refusal).
    hold_until: Option<Instant>,
    outgoing: Option<Outgoing>,
    incoming: Option<Assembly>,
    applying: Option<(ActionId, Applying)>,
    /// A complete transfer waiting for the apply under way.
    ready: Option<(u64, UnitContents)>,
    confirming: Option<Confirming>,
    /// States rolled back: not applied again.
    rolled_back: BTreeMap<UnitId, UnitState>,
    /// The peer's readback requests, answered after the next read.
    readback_requests: Vec<u64>,
    diff: Option<DiffPending>,
    next_id: u64,
    transmits: VecDeque<ConfigSyncMessage>,
    actions: VecDeque<ConfigAction>,
    events: VecDeque<ConfigSyncEvent>,
    stats: ConfigSyncStats,
    /// Dynamic set elements (see `elements`).
    elements: ElementSync,
}

impl ConfigSync {
    /// A machine for `config`, not linked.
    pub fn new(mut config: ConfigSyncConfig) -> Self {
        config.units.sort();
        config.units.dedup();
        let meta = config
            .units
            .iter()
            .map(|u| (u.clone(), UnitMeta::default()))
            .collect();
        Self {
            next_id: config.seed,
            config,
            part: None,
            linked_at: Instant::ZERO,
            status: SyncStatus::Waiting,
            reason: StatusReason::NotSynchronized,
            local: BTreeMap::new(),
            fresh: false,
            revision: 0,
            peer: None,
            meta,
            reading: None,
            read_again: false,
            read_due: None,
            next_compare: None,
            initial_done: false,
            hold_until: None,
            outgoing: None,
            incoming: None,
            applying: None,
            ready: None,
            confirming: None,
            rolled_back: BTreeMap::new(),
            readback_requests: Vec::new(),
            diff: None,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: ConfigSyncStats::default(),
            elements: ElementSync::default(),
        }
    }

    // ---- inputs ----

    /// This node's part while the pair is in Synchronization, `None` otherwise. Called on
    /// every change of state or role.
    pub fn set_link(&mut self, now: Instant, part: Option<Part>) {
        let was = self.part;
        self.part = part;
        if was != part {
            self.elements.reset();
        }
        match (was, part) {
            (Some(_), None) => {
                self.peer = None;
                self.outgoing = None;
                self.incoming = None;
                self.ready = None;
                self.readback_requests.clear();
                self.next_compare = None;
                if let Some(diff) = self.diff.take() {
                    self.events.push_back(ConfigSyncEvent::DiffFailed {
                        request: diff.request,
                        reason: "the pair left synchronization".into(),
                    });
                }
                if self.confirming.as_ref().is_some_and(|c| now < c.until) {
                    self.roll_back();
                }
                self.confirming = None;
            }
            (None, Some(_)) => {
                self.linked_at = now;
                self.fresh = false;
                self.initial_done = false;
                self.next_compare = Some(now + self.config.compare_interval);
                self.request_read();
            }
            (Some(a), Some(b)) if a != b => {
                // A takeover: what was on its way, or received and waiting behind an apply,
                // belongs to the old parts (simulation finding 2).
                self.outgoing = None;
                self.incoming = None;
                self.ready = None;
                self.initial_done = false;
                self.send_offer();
            }
            _ => {}
        }
        self.step(now);
    }

    /// The source's units may have changed (an nftables generation, a file event): they are
    /// read once the burst is over.
    pub fn local_changed(&mut self, now: Instant) {
        if self.read_due.is_none() {
            self.read_due = Some(now + self.config.coalesce);
        }
    }

    /// A message from the peer.
    pub fn handle_message(&mut self, now: Instant, message: ConfigSyncMessage) {
        if self.part.is_none() {
            self.stats.unexpected_messages += 1;
            return;
        }
        match message {
            ConfigSyncMessage::Offer(offer) => self.handle_offer(offer),
            ConfigSyncMessage::Transfer(header) => self.handle_transfer(header),
            ConfigSyncMessage::Chunk(chunk) => self.handle_chunk(chunk),
            ConfigSyncMessage::Result(result) => self.handle_result(now, result),
            ConfigSyncMessage::ReadbackRequest { request, .. } => {
                self.readback_requests.push(request);
                self.request_read();
            }
            ConfigSyncMessage::Elements(elements) => self.receive_elements(elements),
        }
        self.start_ready_apply();
        self.step(now);
    }

    /// The result of [`ConfigAction::Read`].
    pub fn handle_read(&mut self, now: Instant, id: ActionId, units: Vec<(UnitId, Readback)>) {
        if self.reading != Some(id) {
            return;
        }
        self.reading = None;
        self.store_readback(units);
        self.fresh = true;
        if self.part.is_some() {
            self.send_offer();
            for request in std::mem::take(&mut self.readback_requests) {
                self.send_readback(request);
            }
            if let Some(diff) = &mut self.diff
                && diff.local.is_none()
            {
                diff.local = Some(
                    self.local
                        .iter()
                        .map(|(k, (v, _))| (k.clone(), v.clone()))
                        .collect(),
                );
            }
            self.finish_diff();
        }
        if std::mem::take(&mut self.read_again) {
            self.request_read();
        }
        self.step(now);
    }

    /// The result of [`ConfigAction::Apply`].
    pub fn handle_applied(
        &mut self,
        now: Instant,
        id: ActionId,
        result: Result<Applied, ApplyFailed>,
    ) {
        let Some((expected, applying)) = self.applying.take() else {
            return;
        };
        if expected != id {
            self.applying = Some((expected, applying));
            return;
        }
        match (applying, result) {
            (Applying::Sync { transfer, units }, Ok(applied)) => {
                self.store_readback(applied.readback);
                self.stats.units_received += units.len() as u64;
                for unit in &units {
                    let meta = self.meta.entry(unit.clone()).or_default();
                    meta.last_sync = Some(now);
                    meta.last_result = Some(UnitResult {
                        outcome: SyncOutcome::Applied,
                        message: String::new(),
                        at: now,
                    });
                }
                self.events.push_back(ConfigSyncEvent::Applied {
                    units: units.clone(),
                });
                self.send_result(transfer, SyncOutcome::Applied, None, String::new());
                if !self.config.confirm_window.is_zero() {
                    self.confirming = Some(Confirming {
                        until: now + self.config.confirm_window,
                        previous: applied.previous,
                    });
                }
            }
            (Applying::Sync { transfer, units }, Err(failed)) => {
                self.stats.applies_failed += 1;
                let index = failed
                    .unit
                    .as_ref()
                    .and_then(|f| units.iter().position(|u| u == f))
                    .map(|i| i as u16);
                self.note_result(&units, SyncOutcome::Failed, &failed.message, now);
                self.events.push_back(ConfigSyncEvent::Failed {
                    unit: failed.unit,
                    message: failed.message.clone(),
                });
                self.send_result(transfer, SyncOutcome::Failed, index, failed.message);
            }
            (Applying::Restore { units }, Ok(applied)) => {
                self.store_readback(applied.readback);
                self.stats.rollbacks += 1;
                self.note_result(
                    &units,
                    SyncOutcome::RolledBack,
                    "the failover link was lost after applying",
                    now,
                );
                self.events.push_back(ConfigSyncEvent::RolledBack { units });
            }
            (Applying::Restore { .. }, Err(failed)) => {
                self.stats.applies_failed += 1;
                self.events.push_back(ConfigSyncEvent::Failed {
                    unit: failed.unit,
                    message: format!("rolling back: {}", failed.message),
                });
            }
        }
        self.start_ready_apply();
        self.step(now);
    }

    /// `config sync`: every unit both nodes name, now, whatever failed before.
    pub fn request_full_sync(&mut self, now: Instant) -> Result<(), CommandRefused> {
        match self.part {
            None => return Err(CommandRefused::NotSynchronized),
            Some(Part::Replica) => return Err(CommandRefused::NotSource),
            Some(Part::Source) => {}
        }
        if self.outgoing.is_some() {
            return Err(CommandRefused::Busy);
        }
        if !matches!(
            self.status,
            SyncStatus::Auto | SyncStatus::NotAuto | SyncStatus::SynchronizingAll
        ) {
            return Err(CommandRefused::PeerNotReady(self.reason.clone()));
        }
        for meta in self.meta.values_mut() {
            meta.blocked = None;
        }
        let units = self.sendable(|_, _| true);
        self.send(now, true, units);
        self.step(now);
        Ok(())
    }

    /// `config diff`: asks the peer for its read-back and reads this node's; the answer is a
    /// [`ConfigSyncEvent::DiffReady`] with the request id returned (or `DiffFailed`).
    pub fn request_diff(&mut self, now: Instant) -> Result<u64, CommandRefused> {
        if self.part.is_none() {
            return Err(CommandRefused::NotSynchronized);
        }
        if self.diff.is_some() {
            return Err(CommandRefused::Busy);
        }
        let request = self.next_id();
        self.diff = Some(DiffPending {
            request,
            deadline: now + self.config.retry_after,
            local: None,
            peer: None,
            incoming: None,
        });
        self.transmits
            .push_back(ConfigSyncMessage::ReadbackRequest {
                request,
                units: self.config.units.clone(),
            });
        self.request_read();
        Ok(request)
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.read_due.is_some_and(|at| at <= now) {
            self.read_due = None;
            self.request_read();
        }
        if self.next_compare.is_some_and(|at| at <= now) {
            self.next_compare = Some(now + self.config.compare_interval);
            self.request_read();
        }
        if self.confirming.as_ref().is_some_and(|c| c.until <= now) {
            self.confirming = None;
        }
        if self.hold_until.is_some_and(|at| at <= now) {
            self.hold_until = None;
        }
        if let Some(diff) = &self.diff
            && diff.deadline <= now
        {
            let request = diff.request;
            self.diff = None;
            self.events.push_back(ConfigSyncEvent::DiffFailed {
                request,
                reason: "the peer's read-back did not arrive in time".into(),
            });
        }
        if let Some(out) = &self.outgoing
            && out.sent_at + self.config.retry_after <= now
        {
            let full = out.full;
            let units = out.units.iter().map(|(id, _)| id.clone()).collect();
            self.outgoing = None;
            // Only to a replica that takes it: not in a conflict, nor to a peer whose
            // versions differ now (simulation finding 1).
            if self.comparable_replica() {
                self.stats.transfers_resent += 1;
                self.send(now, full, units);
            }
        }
        self.step(now);
    }

    // ---- outputs ----

    /// The next message for the peer.
    pub fn poll_transmit(&mut self) -> Option<ConfigSyncMessage> {
        self.transmits.pop_front()
    }

    /// The next read or apply for the daemon.
    pub fn poll_action(&mut self) -> Option<ConfigAction> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConfigSyncEvent> {
        self.events.pop_front()
    }

    /// The earliest timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let silent_check = (self.part.is_some() && self.peer.is_none())
            .then(|| self.linked_at + self.config.compare_interval)
            .filter(|_| self.reason != StatusReason::PeerSilent);
        [
            self.read_due,
            self.next_compare,
            self.hold_until,
            silent_check,
            self.confirming.as_ref().map(|c| c.until),
            self.diff.as_ref().map(|d| d.deadline),
            self.outgoing
                .as_ref()
                .map(|o| o.sent_at + self.config.retry_after),
            self.elements.timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- status ----

    /// The status and why.
    pub fn status(&self) -> (SyncStatus, &StatusReason) {
        (self.status, &self.reason)
    }

    /// This node's part, while in Synchronization.
    pub fn part(&self) -> Option<Part> {
        self.part
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// The peer's versions, once it offered.
    pub fn peer_versions(&self) -> Option<&ConfigVersions> {
        self.peer.as_ref().map(|p| &p.versions)
    }

    /// This node's versions.
    pub fn versions(&self) -> &ConfigVersions {
        &self.config.versions
    }

    /// Every unit this node names.
    pub fn units(&self) -> Vec<UnitView> {
        self.config
            .units
            .iter()
            .map(|id| {
                let meta = self.meta.get(id);
                UnitView {
                    id: id.clone(),
                    local: self.local_state(id),
                    peer: self.peer.as_ref().and_then(|p| p.units.get(id).copied()),
                    last_sync: meta.and_then(|m| m.last_sync),
                    last_result: meta.and_then(|m| m.last_result.clone()),
                }
            })
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> &ConfigSyncStats {
        &self.stats
    }

    // ---- internals ----

    fn next_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn request_read(&mut self) {
        if self.reading.is_some() {
            self.read_again = true;
            return;
        }
        let id = ActionId(self.next_id());
        self.reading = Some(id);
        self.actions.push_back(ConfigAction::Read {
            id,
            units: self.config.units.clone(),
        });
    }

    fn store_readback(&mut self, units: Vec<(UnitId, Readback)>) {
        let mut changed = false;
        for (id, content) in units {
            let Some(meta) = self.meta.get_mut(&id) else {
                continue;
            };
            let state = state_of(&content);
            if self.local.get(&id).map(|(_, known)| *known) != Some(state) {
                changed = true;
                // The unit changed: whatever failed before is tried again, even if it comes
                // back to content that failed (simulation finding 3).
                meta.blocked = None;
            }
            self.local.insert(id, (content, state));
        }
        if changed {
            self.revision += 1;
        }
    }

    /// This node is the source and the peer a replica whose units compare with ours.
    fn comparable_replica(&self) -> bool {
        self.part == Some(Part::Source) && self.peer_comparable_as(false)
    }

    /// This node is the replica of a source whose units compare with ours.
    fn comparable_source(&self) -> bool {
        self.part == Some(Part::Replica) && self.peer_comparable_as(true)
    }

    /// The peer offered, claiming the source or not as `source` says, with our versions.
    fn peer_comparable_as(&self, source: bool) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|p| p.source == source && p.versions == self.config.versions)
    }

    fn local_state(&self, id: &UnitId) -> Option<UnitState> {
        self.local.get(id).map(|(_, state)| *state)
    }

    fn send_offer(&mut self) {
        if !self.fresh || self.part.is_none() {
            return;
        }
        let units = self
            .config
            .units
            .iter()
            .filter_map(|id| Some((id.clone(), self.local_state(id)?)))
            .collect();
        self.stats.offers_sent += 1;
        self.transmits
            .push_back(ConfigSyncMessage::Offer(ConfigOffer {
                versions: self.config.versions.clone(),
                source: self.part == Some(Part::Source),
                auto: self.config.mode == Mode::Auto,
                revision: self.revision,
                units,
            }));
    }

    fn handle_offer(&mut self, offer: ConfigOffer) {
        self.stats.offers_received += 1;
        if offer.versions != self.config.versions {
            self.stats.refused_version += 1;
        }
        let is_source = self.part == Some(Part::Source);
        if is_source && offer.source {
            self.stats.conflicts += 1;
        }
        let comparable = is_source && !offer.source && offer.versions == self.config.versions;
        self.peer = Some(PeerOffer {
            versions: offer.versions,
            source: offer.source,
            auto: offer.auto,
            units: offer.units.into_iter().collect(),
        });
        if comparable && self.fresh {
            self.compare();
        }
    }

    /// The source compares the peer's offer with its own units: equal units are acked, units
    /// that differ while the source did not change them drift.
    fn compare(&mut self) {
        let Some(peer) = &self.peer else { return };
        self.stats.comparisons += 1;
        let mut drifting = Vec::new();
        for (id, meta) in &mut self.meta {
            let (Some(ours), Some(theirs)) = (
                self.local.get(id).map(|(_, state)| *state),
                peer.units.get(id).copied(),
            ) else {
                continue;
            };
            if ours == theirs {
                meta.acked = Some(ours);
                meta.drift = 0;
            } else if meta.acked == Some(ours) {
                meta.drift += 1;
                if meta.drift == 1 {
                    self.stats.drift_detected += 1;
                }
                if meta.drift == self.config.repair_after {
                    drifting.push(id.clone());
                }
            }
        }
        if !drifting.is_empty() {
            self.events.push_back(ConfigSyncEvent::Drift {
                units: drifting,
                repairing: self.config.mode == Mode::Auto,
            });
        }
    }

    fn handle_transfer(&mut self, header: TransferHeader) {
        if header.purpose == TransferPurpose::Readback {
            match &mut self.diff {
                Some(diff) if diff.request == header.request => {
                    let assembly = Assembly::new(header);
                    diff.incoming = Some(assembly);
                    self.finish_diff();
                }
                _ => self.stats.unexpected_messages += 1,
            }
            return;
        }
        if let Err(reason) = self.acceptable(&header) {
            self.events.push_back(ConfigSyncEvent::Refused {
                reason: reason.clone(),
            });
            self.send_result(header.transfer, SyncOutcome::Refused, None, reason);
            return;
        }
        let rolled_back = !self.rolled_back.is_empty()
            && header
                .units
                .iter()
                .all(|u| self.rolled_back.get(&u.id) == Some(&u.state));
        if rolled_back {
            self.send_result(
                header.transfer,
                SyncOutcome::RolledBack,
                None,
                "rolled back before (the failover link was lost after applying it); not \
                 applied again until the source changes it"
                    .into(),
            );
            return;
        }
        self.incoming = Some(Assembly::new(header));
        self.finish_incoming();
    }

    /// Whether the replica takes a sync transfer.
    fn acceptable(&mut self, header: &TransferHeader) -> Result<(), String> {
        if self.part != Some(Part::Replica) {
            self.stats.unexpected_messages += 1;
            return Err("this node is not the replica".into());
        }
        match &self.peer {
            None => return Err("no offer from the source yet".into()),
            Some(peer) if !peer.source => {
                return Err("the sender does not claim to be the source".into());
            }
            Some(peer) if peer.versions != self.config.versions => {
                self.stats.refused_version += 1;
                return Err(StatusReason::VersionMismatch {
                    ours: self.config.versions.clone(),
                    theirs: peer.versions.clone(),
                }
                .to_string());
            }
            Some(_) => {}
        }
        for unit in &header.units {
            if !self.meta.contains_key(&unit.id) {
                self.stats.refused_unit += 1;
                return Err(format!(
                    "unit {} is not in this node's configuration",
                    unit.id.name
                ));
            }
            if unit.len > self.config.max_unit_bytes {
                self.stats.refused_unit += 1;
                return Err(format!(
                    "unit {}: {} bytes exceed max_unit_bytes ({})",
                    unit.id.name, unit.len, self.config.max_unit_bytes
                ));
            }
            if unit.state == UnitState::Unreadable {
                return Err(format!("unit {} is unreadable on the source", unit.id.name));
            }
        }
        Ok(())
    }

    fn handle_chunk(&mut self, chunk: failoverd_wire::Chunk) {
        if let Some(diff) = &mut self.diff
            && let Some(assembly) = &mut diff.incoming
            && assembly.header.transfer == chunk.transfer
        {
            if assembly.take(&chunk).is_err() {
                self.stats.chunks_dropped += 1;
            }
            self.finish_diff();
            return;
        }
        let Some(assembly) = &mut self.incoming else {
            self.stats.chunks_dropped += 1;
            return;
        };
        match assembly.take(&chunk) {
            Ok(()) => self.finish_incoming(),
            Err(ChunkError::Stray) => self.stats.chunks_dropped += 1,
            Err(ChunkError::Gap) => {
                // The source sends the transfer again when no result comes.
                self.stats.chunks_dropped += 1;
                self.incoming = None;
            }
        }
    }

    fn finish_incoming(&mut self) {
        if !self.incoming.as_ref().is_some_and(Assembly::is_complete) {
            return;
        }
        let Some(assembly) = self.incoming.take() else {
            return;
        };
        let transfer = assembly.header.transfer;
        match assembly.finish() {
            Ok(units) => {
                // `acceptable` refused units the source could not read.
                let units = units
                    .into_iter()
                    .filter_map(|(id, content)| Some((id, content.ok()?)))
                    .collect();
                self.ready = Some((transfer, units));
            }
            Err(unit) => {
                self.stats.transfers_corrupt += 1;
                self.send_result(
                    transfer,
                    SyncOutcome::Refused,
                    None,
                    format!("the content of {} does not match its hash", unit.name),
                );
            }
        }
    }

    fn start_ready_apply(&mut self) {
        if self.applying.is_some() {
            return;
        }
        let Some((transfer, units)) = self.ready.take() else {
            return;
        };
        let id = ActionId(self.next_id());
        self.applying = Some((
            id,
            Applying::Sync {
                transfer,
                units: units.iter().map(|(u, _)| u.clone()).collect(),
            },
        ));
        self.actions.push_back(ConfigAction::Apply { id, units });
    }

    fn roll_back(&mut self) {
        let Some(confirming) = self.confirming.take() else {
            return;
        };
        let units: Vec<UnitId> = confirming.previous.iter().map(|(u, _)| u.clone()).collect();
        for unit in &units {
            if let Some(state) = self.local_state(unit) {
                self.rolled_back.insert(unit.clone(), state);
            }
        }
        let id = ActionId(self.next_id());
        self.applying = Some((id, Applying::Restore { units }));
        self.actions.push_back(ConfigAction::Apply {
            id,
            units: confirming.previous,
        });
    }

    fn handle_result(&mut self, now: Instant, result: SyncResult) {
        let Some(out) = self.outgoing.take_if(|out| out.transfer == result.transfer) else {
            self.stats.unexpected_messages += 1;
            return;
        };
        if let Some(peer) = &mut self.peer {
            peer.units.extend(result.readback.iter().cloned());
        }
        let units: Vec<UnitId> = out.units.iter().map(|(u, _)| u.clone()).collect();
        match result.outcome {
            SyncOutcome::Applied => {
                for (id, sent) in &out.units {
                    let theirs = self.peer.as_ref().and_then(|p| p.units.get(id).copied());
                    let meta = self.meta.entry(id.clone()).or_default();
                    if theirs == Some(*sent) {
                        if meta.drift >= self.config.repair_after {
                            self.stats.drift_repaired += 1;
                        }
                        meta.acked = Some(*sent);
                        meta.drift = 0;
                        meta.last_sync = Some(now);
                        meta.last_result = Some(UnitResult {
                            outcome: SyncOutcome::Applied,
                            message: String::new(),
                            at: now,
                        });
                    } else {
                        meta.blocked = Some(*sent);
                        meta.last_result = Some(UnitResult {
                            outcome: SyncOutcome::Failed,
                            message: "applied, but the peer's read-back differs from what \
                                      was sent"
                                .into(),
                            at: now,
                        });
                    }
                }
            }
            SyncOutcome::Refused => {
                self.hold_until = Some(now + self.config.retry_after);
                self.note_result(&units, result.outcome, &result.reason, now);
                self.events.push_back(ConfigSyncEvent::Refused {
                    reason: result.reason,
                });
            }
            SyncOutcome::Failed | SyncOutcome::RolledBack => {
                for (id, sent) in &out.units {
                    self.meta.entry(id.clone()).or_default().blocked = Some(*sent);
                }
                self.note_result(&units, result.outcome, &result.reason, now);
                let unit = result
                    .failed_unit
                    .and_then(|i| units.get(usize::from(i)).cloned());
                self.events.push_back(match result.outcome {
                    SyncOutcome::RolledBack => ConfigSyncEvent::RolledBack { units },
                    _ => ConfigSyncEvent::Failed {
                        unit,
                        message: result.reason,
                    },
                });
            }
        }
    }

    fn note_result(&mut self, units: &[UnitId], outcome: SyncOutcome, message: &str, now: Instant) {
        for unit in units {
            self.meta.entry(unit.clone()).or_default().last_result = Some(UnitResult {
                outcome,
                message: message.to_owned(),
                at: now,
            });
        }
    }

    fn send_result(
        &mut self,
        transfer: u64,
        outcome: SyncOutcome,
        failed_unit: Option<u16>,
        reason: String,
    ) {
        let readback = self
            .config
            .units
            .iter()
            .filter_map(|id| Some((id.clone(), self.local_state(id)?)))
            .collect();
        self.transmits
            .push_back(ConfigSyncMessage::Result(SyncResult {
                transfer,
                outcome,
                failed_unit,
                reason,
                readback,
            }));
    }

    fn send_readback(&mut self, request: u64) {
        let transfer = self.next_id();
        let units: Vec<(UnitId, Option<&[u8]>)> = self
            .local
            .iter()
            .filter_map(|(id, (content, _))| match content {
                Ok(content) => Some((id.clone(), content.as_deref())),
                Err(_) => None,
            })
            .collect();
        self.transmits.extend(messages(
            transfer,
            TransferPurpose::Readback,
            request,
            &units,
        ));
    }

    fn finish_diff(&mut self) {
        let Some(diff) = &mut self.diff else { return };
        if diff.incoming.as_ref().is_some_and(Assembly::is_complete)
            && let Some(assembly) = diff.incoming.take()
        {
            diff.peer = Some(assembly.finish().unwrap_or_default());
        }
        let (Some(local), Some(peer)) = (&diff.local, &diff.peer) else {
            return;
        };
        let units = local
            .iter()
            .map(|(id, ours)| {
                let theirs = peer.iter().find(|(p, _)| p == id).map(|(_, c)| c.clone());
                (id.clone(), ours.clone(), theirs)
            })
            .collect();
        let request = diff.request;
        self.diff = None;
        self.events
            .push_back(ConfigSyncEvent::DiffReady(Diff { request, units }));
    }

    /// The units both nodes name that this node can send and `wanted` picks.
    fn sendable(&self, wanted: impl Fn(&UnitId, &UnitMeta) -> bool) -> Vec<UnitId> {
        let Some(peer) = &self.peer else {
            return Vec::new();
        };
        self.meta
            .iter()
            .filter(|(id, meta)| {
                peer.units.contains_key(*id)
                    && self.local.get(*id).is_some_and(|(c, _)| c.is_ok())
                    && wanted(id, meta)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn send(&mut self, now: Instant, full: bool, units: Vec<UnitId>) {
        if units.is_empty() {
            return;
        }
        let transfer = self.next_id();
        let mut contents: Vec<(UnitId, Option<&[u8]>)> = Vec::with_capacity(units.len());
        let mut sent = Vec::with_capacity(units.len());
        for id in &units {
            if let Some((Ok(content), state)) = self.local.get(id) {
                contents.push((id.clone(), content.as_deref()));
                sent.push((id.clone(), *state));
            }
        }
        let purpose = if full {
            TransferPurpose::FullSync
        } else {
            TransferPurpose::Incremental
        };
        self.transmits
            .extend(messages(transfer, purpose, 0, &contents));
        self.stats.units_sent += units.len() as u64;
        if full {
            self.stats.full_syncs += 1;
        } else {
            self.stats.incremental_syncs += 1;
        }
        self.outgoing = Some(Outgoing {
            transfer,
            full,
            units: sent,
            sent_at: now,
        });
        self.events.push_back(ConfigSyncEvent::Sent { full, units });
    }

    /// Decides what to do next and the status that says so.
    fn step(&mut self, now: Instant) {
        let (status, reason) = self.decide(now);
        self.step_elements(now);
        if (status, &reason) != (self.status, &self.reason) {
            self.events.push_back(ConfigSyncEvent::StatusChanged {
                from: self.status,
                to: status,
                reason: reason.clone(),
            });
            self.status = status;
            self.reason = reason;
        }
    }

    fn decide(&mut self, now: Instant) -> (SyncStatus, StatusReason) {
        let Some(part) = self.part else {
            return (SyncStatus::Waiting, StatusReason::NotSynchronized);
        };
        if !self.fresh {
            return (SyncStatus::Preparing, StatusReason::ReadingUnits);
        }
        let Some(peer) = &self.peer else {
            return if now >= self.linked_at + self.config.compare_interval {
                (SyncStatus::Waiting, StatusReason::PeerSilent)
            } else {
                (SyncStatus::Preparing, StatusReason::AwaitingPeerOffer)
            };
        };
        if peer.versions != self.config.versions {
            let reason = StatusReason::VersionMismatch {
                ours: self.config.versions.clone(),
                theirs: peer.versions.clone(),
            };
            return (SyncStatus::Waiting, reason);
        }
        let mode_status = |auto: bool| {
            if auto {
                SyncStatus::Auto
            } else {
                SyncStatus::NotAuto
            }
        };
        match (part, peer.source) {
            (Part::Source, true) => (SyncStatus::Conflict, StatusReason::BothSources),
            (Part::Replica, false) => (SyncStatus::Waiting, StatusReason::NoSource),
            (Part::Replica, true) => (mode_status(peer.auto), self.comparison()),
            (Part::Source, false) => {
                if self.config.mode == Mode::Auto && self.outgoing.is_none() {
                    self.auto_send(now);
                }
                match &self.outgoing {
                    Some(out) => {
                        let status = if out.full {
                            SyncStatus::SynchronizingAll
                        } else {
                            mode_status(self.config.mode == Mode::Auto)
                        };
                        (
                            status,
                            StatusReason::Sending {
                                units: out.units.len(),
                            },
                        )
                    }
                    None => (
                        mode_status(self.config.mode == Mode::Auto),
                        self.comparison(),
                    ),
                }
            }
        }
    }

    /// Auto mode on the source: everything that differs once per link, then changes and
    /// repairs.
    fn auto_send(&mut self, now: Instant) {
        if self.hold_until.is_some_and(|at| now < at) {
            return;
        }
        let differs = |this: &Self, id: &UnitId, meta: &UnitMeta| {
            let ours = this.local_state(id);
            let theirs = this.peer.as_ref().and_then(|p| p.units.get(id).copied());
            ours != theirs && meta.blocked != ours
        };
        if !self.initial_done {
            self.initial_done = true;
            let units = self.sendable(|id, meta| differs(self, id, meta));
            self.send(now, true, units);
            return;
        }
        let repair_after = self.config.repair_after;
        let units = self.sendable(|id, meta| {
            differs(self, id, meta)
                && (meta.acked != self.local_state(id) || meta.drift >= repair_after)
        });
        self.send(now, false, units);
    }

    /// The reason for a settled status: a failure or rollback still in force, the units that
    /// differ, or none.
    fn comparison(&self) -> StatusReason {
        let Some(peer) = &self.peer else {
            return StatusReason::AwaitingPeerOffer;
        };
        let differ: Vec<UnitId> = self
            .config
            .units
            .iter()
            .filter(|id| {
                peer.units.contains_key(*id) && self.local_state(id) != peer.units.get(*id).copied()
            })
            .cloned()
            .collect();
        if differ.is_empty() {
            return if self.part == Some(Part::Replica) && peer.auto {
                StatusReason::Following
            } else {
                StatusReason::InSync
            };
        }
        let last = differ
            .iter()
            .filter_map(|id| Some((id, self.meta.get(id)?.last_result.as_ref()?)))
            .max_by_key(|(_, r)| r.at);
        match last {
            Some((id, result)) if result.outcome == SyncOutcome::RolledBack => {
                StatusReason::RolledBack {
                    units: vec![id.clone()],
                }
            }
            Some((id, result)) if result.outcome != SyncOutcome::Applied => StatusReason::Failed {
                unit: Some(id.clone()),
                message: result.message.clone(),
            },
            _ => StatusReason::Differ { units: differ },
        }
    }
}
