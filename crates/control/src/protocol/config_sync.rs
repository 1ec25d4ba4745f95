//! `config-status`, `config-diff` and `config-sync`: configuration sync (`[config_sync]`) as
//! the operator sees it.

use std::collections::BTreeMap;

use failoverd_wire::{ConfigVersions, SyncOutcome, UnitKind, UnitState};
use serde::{Deserialize, Serialize};

names! {
    /// Whether and how this node synchronizes its configuration (`config_sync.mode`).
    pub enum ConfigSyncMode {
        /// No configuration sync.
        Off = "off",
        /// Everything once when synchronization begins, then every change, and drift repaired.
        Auto = "auto",
        /// Everything, on `failoverctl config sync`; drift is reported only.
        Manual = "manual",
    }
}

names! {
    /// This node's part in configuration sync.
    pub enum ConfigSyncPart {
        /// Its configuration is sent to the peer (the active node, or `config_sync.source`).
        Source = "source",
        /// It applies the source's configuration.
        Replica = "replica",
        /// Neither: sync is off, or the pair is not in Synchronization, or both claim the source.
        None = "none",
    }
}

names! {
    /// Where configuration sync stands, as the product family names the statuses.
    pub enum ConfigSyncState {
        /// `config_sync.mode = "off"`.
        Off = "off",
        /// Both nodes claim to be the source; nothing is sent until one stops.
        Conflict = "conflict",
        /// Not in Synchronization, or the peer's offer has not come yet, or a mismatch
        /// (versions) holds it back: the reason says which.
        Waiting = "waiting",
        /// Reading this node's units (or the peer's) before a full sync.
        Preparing = "preparing",
        /// A full sync is under way: every unit is sent, or being applied.
        SynchronizingAll = "synchronizing-all",
        /// Auto mode in step: every change is sent as it happens.
        Auto = "auto",
        /// Manual mode, or auto mode held back (a failed apply, drift left to repair): changes
        /// are not sent until a sync.
        NotAuto = "not-auto",
    }
}

names! {
    /// What kind of unit, which says which backend reads and applies it.
    pub enum ConfigUnitKind {
        /// One nftables table (name: `family name`, e.g. `inet filter`).
        Nftables = "nftables",
        /// One file or directory (name: its absolute path).
        Files = "files",
    }
}

names! {
    /// What a node holds of a unit, as its own read-back says.
    pub enum ConfigUnitState {
        /// The unit does not exist (no such table, no such file).
        Absent = "absent",
        /// The unit exists; its hash is given.
        Present = "present",
        /// It could not be read.
        Unreadable = "unreadable",
    }
}

names! {
    /// How the last sync that included a unit ended.
    pub enum ConfigSyncOutcome {
        /// Every unit applied.
        Applied = "applied",
        /// A unit failed to apply: nothing changed.
        Failed = "failed",
        /// Applied, then undone: the peer's hellos stopped arriving.
        RolledBack = "rolled-back",
        /// Not attempted (a version mismatch, a unit the replica does not name).
        Refused = "refused",
    }
}

/// The answer to `config-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSyncStatus {
    /// `config_sync.mode`.
    pub mode: ConfigSyncMode,
    /// This node's part now.
    pub part: ConfigSyncPart,
    /// Where sync stands.
    pub status: ConfigSyncState,
    /// Why, for people (e.g. "incremental: every change is sent").
    pub reason: String,
    /// What this node's canonical forms depend on.
    pub versions: ConfigVersionsView,
    /// The same of the peer, from its last offer; `None` before one.
    pub peer_versions: Option<ConfigVersionsView>,
    /// Whether the two are the same (sync is refused otherwise); `None` before the peer's
    /// offer.
    pub versions_match: Option<bool>,
    /// Every unit this node's configuration names, in the order they apply (files, then
    /// nftables).
    pub units: Vec<ConfigUnitView>,
    /// What happened so far.
    pub counters: BTreeMap<String, u64>,
}

/// What a node's canonical forms depend on: two nodes compare units only when these are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersionsView {
    /// failoverd's version (e.g. `0.1.0`).
    pub failoverd: String,
    /// The config-sync schema.
    pub schema: u16,
    /// Per unit kind (`nftables`, `files`), the version of what reads it (e.g. `nftables
    /// v1.0.9`).
    pub backends: BTreeMap<ConfigUnitKind, String>,
}

/// One unit in `config-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigUnitView {
    /// Which backend.
    pub kind: ConfigUnitKind,
    /// The table (`inet filter`) or the path.
    pub name: String,
    /// What this node holds.
    pub local_state: ConfigUnitState,
    /// SHA-256 of this node's canonical form, 64 hex digits; `None` unless present.
    pub local_hash: Option<String>,
    /// What the peer holds, from its last offer or sync result; `None` before one.
    pub peer_state: Option<ConfigUnitState>,
    /// SHA-256 of the peer's canonical form; `None` unless present.
    pub peer_hash: Option<String>,
    /// Both nodes hold the same (both absent, or both present with one hash).
    pub in_sync: bool,
    /// When the last sync that included the unit ended, Unix time in milliseconds; `None`
    /// before one.
    pub last_sync_unix_ms: Option<u64>,
    /// How it ended; `None` before one.
    pub last_result: Option<ConfigSyncOutcome>,
    /// The kernel's or the OS's message of that sync (empty when applied).
    #[serde(default)]
    pub last_message: String,
    /// The unit that failed it (`kind name`, possibly another unit than this one); `None`
    /// when none did.
    #[serde(default)]
    pub failed_unit: Option<String>,
}

/// The answer to `config-diff`: the difference between the nodes' read-backs, per unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDiff {
    /// Every unit this node's configuration names, in apply order.
    pub units: Vec<ConfigUnitDiff>,
}

/// One unit in `config-diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigUnitDiff {
    /// Which backend.
    pub kind: ConfigUnitKind,
    /// The table (`inet filter`) or the path.
    pub name: String,
    /// What this node holds.
    pub local_state: ConfigUnitState,
    /// SHA-256 of this node's read-back; `None` unless present.
    pub local_hash: Option<String>,
    /// What the peer holds.
    pub peer_state: ConfigUnitState,
    /// SHA-256 of the peer's read-back; `None` unless present.
    pub peer_hash: Option<String>,
    /// A unified diff from this node's read-back to the peer's
    /// ([`unified_diff`](crate::protocol::unified_diff)); empty when they are equal.
    pub diff: String,
}

/// The answer to `config-sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSyncReply {
    /// Whether a full sync was started.
    pub accepted: bool,
    /// What happens now, or why it was refused (e.g. "this node is not the configuration
    /// source: the active node is").
    pub message: String,
}

impl ConfigDiff {
    /// Whether every unit is the same on both nodes.
    pub fn is_empty(&self) -> bool {
        self.units.iter().all(|unit| unit.diff.is_empty())
    }
}

impl From<UnitKind> for ConfigUnitKind {
    fn from(kind: UnitKind) -> Self {
        match kind {
            UnitKind::Nftables => Self::Nftables,
            UnitKind::Files => Self::Files,
        }
    }
}

impl From<SyncOutcome> for ConfigSyncOutcome {
    fn from(outcome: SyncOutcome) -> Self {
        match outcome {
            SyncOutcome::Applied => Self::Applied,
            SyncOutcome::Failed => Self::Failed,
            SyncOutcome::RolledBack => Self::RolledBack,
            SyncOutcome::Refused => Self::Refused,
        }
    }
}

impl From<&ConfigVersions> for ConfigVersionsView {
    fn from(versions: &ConfigVersions) -> Self {
        Self {
            failoverd: versions.failoverd.clone(),
            schema: versions.schema,
            backends: versions
                .backends
                .iter()
                .map(|(kind, version)| ((*kind).into(), version.clone()))
                .collect(),
        }
    }
}

impl ConfigUnitState {
    /// A node's state of a unit as the failover link carries it: the state and, when
    /// present, its hash in hex.
    pub fn of(state: UnitState) -> (Self, Option<String>) {
        match state {
            UnitState::Absent => (Self::Absent, None),
            UnitState::Present(hash) => (Self::Present, Some(hash_hex(&hash.0))),
            UnitState::Unreadable => (Self::Unreadable, None),
        }
    }
}

/// A unit's hash as the protocol writes it: 64 lower-case hex digits.
pub fn hash_hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Lines of context around each change in [`unified_diff`].
const CONTEXT: usize = 3;

/// The unified diff from `old` to `new` (each a unit's canonical form; `None`: absent),
/// labelled `old_label` and `new_label` in its header; empty when they are equal. Content
/// that is not UTF-8 (a files unit's archive) is not shown: one line says that it differs.
pub fn unified_diff(
    old_label: &str,
    old: Option<&[u8]>,
    new_label: &str,
    new: Option<&[u8]>,
) -> String {
    if old == new {
        return String::new();
    }
    let (Ok(old_text), Ok(new_text)) = (
        std::str::from_utf8(old.unwrap_or_default()),
        std::str::from_utf8(new.unwrap_or_default()),
    ) else {
        return format!("binary content differs between {old_label} and {new_label}\n");
    };
    // An absent unit reads as empty, labelled as absent so that it differs from an empty one.
    let label = |label: &str, content: Option<&[u8]>| match content {
        Some(_) => label.to_string(),
        None => format!("{label} (absent)"),
    };
    let mut text = similar::TextDiff::from_lines(old_text, new_text)
        .unified_diff()
        .context_radius(CONTEXT)
        .header(&label(old_label, old), &label(new_label, new))
        .to_string();
    if text.is_empty() {
        // Present and empty on one side, absent on the other: no line differs.
        text = format!(
            "--- {}\n+++ {}\n",
            label(old_label, old),
            label(new_label, new)
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_stable() {
        let cases = [
            (
                json!(ConfigSyncState::SynchronizingAll),
                "synchronizing-all",
            ),
            (json!(ConfigSyncState::NotAuto), "not-auto"),
            (json!(ConfigSyncOutcome::RolledBack), "rolled-back"),
            (json!(ConfigSyncPart::None), "none"),
            (json!(ConfigUnitKind::Nftables), "nftables"),
        ];
        for (value, name) in cases {
            assert_eq!(value, json!(name));
        }
        let versions = ConfigVersionsView {
            failoverd: "0.1.0".into(),
            schema: 1,
            backends: BTreeMap::from([(ConfigUnitKind::Nftables, "nftables v1.0.9".into())]),
        };
        let value = json!({"failoverd": "0.1.0", "schema": 1,
            "backends": {"nftables": "nftables v1.0.9"}});
        assert_eq!(serde_json::to_value(&versions).unwrap(), value);
        assert_eq!(
            serde_json::from_value::<ConfigVersionsView>(value).unwrap(),
            versions
        );
        let unknown = json!({"failoverd": "0.1.0", "schema": 1, "backends": {"iptables": "x"}});
        assert!(serde_json::from_value::<ConfigVersionsView>(unknown).is_err());
    }

    #[test]
    fn the_wire_types_map_to_the_protocol_ones() {
        let versions = ConfigVersions {
            failoverd: "0.1.0".into(),
            schema: 2,
            backends: vec![
                (UnitKind::Files, "files 1".into()),
                (UnitKind::Nftables, "nftables v1.1.1".into()),
            ],
        };
        assert_eq!(
            serde_json::to_value(ConfigVersionsView::from(&versions)).unwrap(),
            json!({"failoverd": "0.1.0", "schema": 2,
                "backends": {"files": "files 1", "nftables": "nftables v1.1.1"}})
        );
        let mut hash = [0u8; 32];
        hash[0] = 0x5f;
        let (state, hex) = ConfigUnitState::of(UnitState::Present(failoverd_wire::UnitHash(hash)));
        assert_eq!(state, ConfigUnitState::Present);
        assert!(hex.unwrap().starts_with("5f00"));
        assert_eq!(
            ConfigUnitState::of(UnitState::Absent),
            (ConfigUnitState::Absent, None)
        );
        assert_eq!(
            ConfigUnitState::of(UnitState::Unreadable),
            (ConfigUnitState::Unreadable, None)
        );
        for (wire, name) in [
            (SyncOutcome::Applied, "applied"),
            (SyncOutcome::Failed, "failed"),
            (SyncOutcome::RolledBack, "rolled-back"),
            (SyncOutcome::Refused, "refused"),
        ] {
            assert_eq!(ConfigSyncOutcome::from(wire), name);
        }
        assert_eq!(ConfigUnitKind::from(UnitKind::Files), "files");
        assert_eq!(ConfigUnitKind::from(UnitKind::Nftables), "nftables");
    }

    #[test]
    fn hashes_are_lower_case_hex() {
        let mut hash = [0u8; 32];
        hash[0] = 0xab;
        hash[31] = 0x0f;
        let hex = hash_hex(&hash);
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("ab00") && hex.ends_with("000f"), "{hex}");
    }

    const OLD: &str = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established accept\n\t\ttcp dport 22 accept\n\t}\n}\n";

    #[test]
    fn a_changed_rule_is_a_unified_diff() {
        let new = OLD.replace("tcp dport 22 accept", "tcp dport { 22, 443 } accept");
        let diff = unified_diff(
            "fw-a (this node)",
            Some(OLD.as_bytes()),
            "fw-b (peer)",
            Some(new.as_bytes()),
        );
        assert_eq!(
            diff,
            "--- fw-a (this node)\n+++ fw-b (peer)\n@@ -2,6 +2,6 @@\n \tchain input {\n \t\ttype filter hook input priority filter; policy drop;\n \t\tct state established accept\n-\t\ttcp dport 22 accept\n+\t\ttcp dport { 22, 443 } accept\n \t}\n }\n"
        );
    }

    #[test]
    fn equal_content_has_no_diff() {
        let same = Some(OLD.as_bytes());
        assert_eq!(unified_diff("a", same, "b", same), "");
        assert_eq!(unified_diff("a", None, "b", None), "");
    }

    #[test]
    fn an_absent_unit_is_labelled() {
        let diff = unified_diff("a", None, "b", Some(b"x\n"));
        assert_eq!(diff, "--- a (absent)\n+++ b\n@@ -0,0 +1 @@\n+x\n");
        // Absent against empty: no line differs, but they are not the same.
        assert_eq!(
            unified_diff("a", Some(b""), "b", None),
            "--- a\n+++ b (absent)\n"
        );
    }

    #[test]
    fn binary_content_is_not_shown() {
        let diff = unified_diff("a", Some(&[0xff, 0x00]), "b", Some(b"text\n"));
        assert_eq!(diff, "binary content differs between a and b\n");
    }

    #[test]
    fn a_diff_is_empty_when_every_unit_is() {
        let unit = ConfigUnitDiff {
            kind: ConfigUnitKind::Files,
            name: "/etc/hosts".into(),
            local_state: ConfigUnitState::Absent,
            local_hash: None,
            peer_state: ConfigUnitState::Absent,
            peer_hash: None,
            diff: String::new(),
        };
        let mut diff = ConfigDiff {
            units: vec![unit.clone(), unit],
        };
        assert!(diff.is_empty());
        diff.units[1].diff = "--- a\n+++ b\n".into();
        assert!(!diff.is_empty());
    }
}
