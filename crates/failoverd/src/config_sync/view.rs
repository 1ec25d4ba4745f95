//! What `failoverctl config` shows: the machine's state in the control protocol's types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failoverd_backends::config::files::archive::ArchiveView;
use failoverd_control::protocol::{
    ConfigDiff, ConfigSyncMode, ConfigSyncPart, ConfigSyncState, ConfigSyncStatus, ConfigUnitDiff,
    ConfigUnitKind, ConfigUnitState, ConfigUnitView, ConfigVersionsView, unified_diff,
};
use failoverd_core::Instant;
use failoverd_core::config_sync::{ConfigSync, Diff, Mode, Part, Readback, SyncStatus, state_of};
use failoverd_wire::{SyncOutcome, UnitKind, UnitState};

/// Milliseconds since the Unix epoch of the core's `at`, `now` being the core's present.
fn unix_ms(now: Instant, at: Instant) -> u64 {
    let since = SystemTime::now()
        .checked_sub(now - at)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or(Duration::ZERO);
    since.as_millis() as u64
}

/// `config status`.
pub(super) fn status(
    machine: &ConfigSync,
    now: Instant,
    malformed_frames: u64,
) -> ConfigSyncStatus {
    let (status, reason) = machine.status();
    let versions: ConfigVersionsView = machine.versions().into();
    let peer_versions: Option<ConfigVersionsView> = machine.peer_versions().map(Into::into);
    let mut counters: std::collections::BTreeMap<String, u64> = machine
        .stats()
        .counters()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    counters.insert("malformed_frames".into(), malformed_frames);
    ConfigSyncStatus {
        mode: match machine.mode() {
            Mode::Auto => ConfigSyncMode::Auto,
            Mode::Manual => ConfigSyncMode::Manual,
        },
        part: match machine.part() {
            Some(Part::Source) => ConfigSyncPart::Source,
            Some(Part::Replica) => ConfigSyncPart::Replica,
            None => ConfigSyncPart::None,
        },
        status: match status {
            SyncStatus::Waiting => ConfigSyncState::Waiting,
            SyncStatus::Conflict => ConfigSyncState::Conflict,
            SyncStatus::Preparing => ConfigSyncState::Preparing,
            SyncStatus::SynchronizingAll => ConfigSyncState::SynchronizingAll,
            SyncStatus::Auto => ConfigSyncState::Auto,
            SyncStatus::NotAuto => ConfigSyncState::NotAuto,
        },
        reason: reason.to_string(),
        versions_match: peer_versions.as_ref().map(|peer| *peer == versions),
        versions,
        peer_versions,
        units: machine
            .units()
            .into_iter()
            .map(|unit| {
                let (local_state, local_hash) =
                    ConfigUnitState::of(unit.local.unwrap_or(UnitState::Unreadable));
                let (peer_state, peer_hash) = match unit.peer.map(ConfigUnitState::of) {
                    Some((state, hash)) => (Some(state), hash),
                    None => (None, None),
                };
                let failed = unit
                    .last_result
                    .as_ref()
                    .is_some_and(|r| r.outcome != SyncOutcome::Applied);
                ConfigUnitView {
                    kind: unit.id.kind.into(),
                    in_sync: unit.local.is_some() && unit.local == unit.peer,
                    last_sync_unix_ms: unit.last_sync.map(|at| unix_ms(now, at)),
                    last_result: unit.last_result.as_ref().map(|r| r.outcome.into()),
                    last_message: unit
                        .last_result
                        .as_ref()
                        .map(|r| r.message.clone())
                        .unwrap_or_default(),
                    failed_unit: failed.then(|| {
                        format!(
                            "{} {}",
                            ConfigUnitKind::from(unit.id.kind).name(),
                            unit.id.name
                        )
                    }),
                    name: unit.id.name,
                    local_state,
                    local_hash,
                    peer_state,
                    peer_hash,
                }
            })
            .collect(),
        counters,
    }
}

/// `config diff` from both nodes' read-backs.
pub(super) fn diff(diff: &Diff, node: &str) -> ConfigDiff {
    let units = diff
        .units
        .iter()
        .map(|(id, ours, theirs)| {
            let theirs = theirs
                .clone()
                .unwrap_or_else(|| Err("the peer does not name this unit".into()));
            let (local_state, local_hash) = ConfigUnitState::of(state_of(ours));
            let (peer_state, peer_hash) = ConfigUnitState::of(state_of(&theirs));
            let text = |content: &Readback| match content {
                Ok(Some(bytes)) if id.kind == UnitKind::Files => Ok(Some(
                    ArchiveView::new_checked(bytes)
                        .map(|archive| archive.render().into_bytes())
                        .unwrap_or_else(|_| bytes.clone()),
                )),
                other => other.clone(),
            };
            let (ours_text, theirs_text) = (text(ours), text(&theirs));
            let diff = match (&ours_text, &theirs_text) {
                (Ok(a), Ok(b)) => unified_diff(
                    &format!("{node} (this node) {}", id.name),
                    a.as_deref(),
                    &format!("peer {}", id.name),
                    b.as_deref(),
                ),
                (Err(err), _) => format!("cannot read {} on this node: {err}\n", id.name),
                (_, Err(err)) => format!("cannot read {} on the peer: {err}\n", id.name),
            };
            ConfigUnitDiff {
                kind: id.kind.into(),
                name: id.name.clone(),
                local_state,
                local_hash,
                peer_state,
                peer_hash,
                diff,
            }
        })
        .collect();
    ConfigDiff { units }
}
