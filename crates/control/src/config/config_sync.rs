//! `[config_sync]`, `[config_sync.nftables]` and `[[config_sync.files]]`: which nftables tables
//! and files the pair keeps equal, and how.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use failoverd_wire::{MAX_CONFIG_UNITS, MAX_UNIT_NAME, NodeId, UnitId, UnitKind};
use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::source::Source;
use super::table::{NFT_NAME, NFT_NAME_MAX, config_sync, expected};
use super::values::{RawList, argv, int, line_of, millis, required};
use crate::protocol::ConfigSyncMode;

/// `[config_sync]`: configuration sync over the failover link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSyncSection {
    /// `mode`.
    pub mode: ConfigSyncMode,
    /// `source`: which node is the source in asymmetric mode (ignored in symmetric mode,
    /// where the active node is).
    pub source: SyncSource,
    /// `compare_interval_ms`: how often the nodes compare their units' hashes.
    pub compare_interval: Duration,
    /// `repair_after` (at least 1): comparisons in a row that find a unit differing before
    /// auto mode repairs it.
    pub repair_after: u32,
    /// `max_unit_bytes`: the largest unit sent or accepted, at most
    /// [`failoverd_wire::MAX_UNIT_LEN`].
    pub max_unit_bytes: u32,
    /// `[config_sync.nftables]`.
    pub nftables: NftablesSync,
    /// `[[config_sync.files]]`, in the order written (their apply order).
    pub files: Vec<FilesUnit>,
}

/// `config_sync.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSource {
    /// The node with the higher `node.priority` (equal: the lower node id).
    Priority,
    /// This node (by its id): the daemon knows whether it is this one or the peer.
    Node(NodeId),
}

/// `[config_sync.nftables]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftablesSync {
    /// `tables`: unique, in the order written.
    pub tables: Vec<NftTable>,
    /// `dynamic_sets`: unique, each in one of `tables`.
    pub dynamic_sets: Vec<NftSet>,
    /// `defines`: this node's values of the per-node variables, by name; the values are
    /// distinct.
    pub defines: BTreeMap<String, String>,
}

/// An nftables address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NftFamily {
    /// `ip`.
    Ip,
    /// `ip6`.
    Ip6,
    /// `inet`.
    Inet,
    /// `arp`.
    Arp,
    /// `bridge`.
    Bridge,
    /// `netdev`.
    Netdev,
}

impl NftFamily {
    const ALL: [NftFamily; 6] = [
        Self::Ip,
        Self::Ip6,
        Self::Inet,
        Self::Arp,
        Self::Bridge,
        Self::Netdev,
    ];

    /// The family as `nft` writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Ip6 => "ip6",
            Self::Inet => "inet",
            Self::Arp => "arp",
            Self::Bridge => "bridge",
            Self::Netdev => "netdev",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|family| family.name() == name)
    }
}

/// One synced nftables table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NftTable {
    /// Its family.
    pub family: NftFamily,
    /// Its name.
    pub name: String,
}

impl fmt::Display for NftTable {
    /// `family name`, as `nft` writes it and as the unit is named (`inet filter`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family.name(), self.name)
    }
}

/// A set whose elements are runtime state (`config_sync.nftables.dynamic_sets`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NftSet {
    /// Its table, one of the synced ones.
    pub table: NftTable,
    /// The set's name.
    pub name: String,
}

/// `[[config_sync.files]]`: one file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesUnit {
    /// `path`: absolute and normalized; neither inside nor holding another unit, the
    /// configuration file or the node's key.
    pub path: PathBuf,
    /// `reload`: argv run on the replica after applying; never an empty list.
    pub reload: Option<Vec<String>>,
}

impl ConfigSyncSection {
    /// Every unit, in the order they apply: the files units as written, then the nftables
    /// tables as written.
    pub fn units(&self) -> Vec<UnitId> {
        let files = self.files.iter().map(|unit| UnitId {
            kind: UnitKind::Files,
            // Invariant: the path came from the file's text, so it is UTF-8.
            name: unit.path.to_string_lossy().into_owned(),
        });
        let tables = self.nftables.tables.iter().map(|table| UnitId {
            kind: UnitKind::Nftables,
            name: table.to_string(),
        });
        files.chain(tables).collect()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfigSync {
    mode: Option<Spanned<ConfigSyncMode>>,
    source: Option<Spanned<String>>,
    compare_interval_ms: Option<Spanned<i64>>,
    repair_after: Option<Spanned<i64>>,
    max_unit_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    nftables: RawNftables,
    #[serde(default)]
    files: Vec<Spanned<RawFilesUnit>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNftables {
    tables: Option<RawList>,
    dynamic_sets: Option<RawList>,
    // Values of any type, so that a wrong one is reported with the define's name.
    defines: Option<BTreeMap<String, Spanned<toml::Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilesUnit {
    path: Option<Spanned<String>>,
    reload: Option<RawList>,
}

/// The paths no files unit may be, hold or lie in: the daemon's own configuration and key.
pub(super) struct Protected<'a> {
    pub config: &'a Path,
    pub key: &'a Path,
}

const NFT: &str = "config_sync.nftables";
const FILES: &str = "config_sync.files";

impl RawConfigSync {
    pub(super) fn validate(
        self,
        source: &Source<'_>,
        protected: &Protected<'_>,
    ) -> Result<ConfigSyncSection, ConfigError> {
        let mode = self
            .mode
            .as_ref()
            .map_or_else(|| config_sync::MODE.default_enum(), |mode| *mode.get_ref());
        let sync_source = match &self.source {
            Some(raw) => sync_source(source, raw)?,
            None => SyncSource::Priority,
        };
        let compare = int(
            source,
            &config_sync::COMPARE_INTERVAL_MS,
            self.compare_interval_ms.as_ref(),
        )?;
        let repair = int(
            source,
            &config_sync::REPAIR_AFTER,
            self.repair_after.as_ref(),
        )?;
        let max_unit = int(
            source,
            &config_sync::MAX_UNIT_BYTES,
            self.max_unit_bytes.as_ref(),
        )?;
        let tables_span = self.nftables.tables.as_ref().map(Spanned::span);
        let nftables = self.nftables.validate(source)?;
        let mut files: Vec<FilesUnit> = Vec::new();
        let mut spans: Vec<Range<usize>> = Vec::new();
        for raw in self.files {
            let span = raw.span();
            let raw = raw.into_inner();
            let path = required(source, FILES, "path", raw.path, &span)?;
            let checked = unit_path(source, &path, protected, &files, &spans)?;
            let reload = raw
                .reload
                .as_ref()
                .map(|raw| argv(source, FILES, "reload", raw))
                .transpose()?;
            files.push(FilesUnit {
                path: checked,
                reload,
            });
            spans.push(path.span());
        }
        let units = files.len() + nftables.tables.len();
        if units > MAX_CONFIG_UNITS {
            // At the last unit written: a files unit's path, else the list of tables.
            let (key, span) = match (spans.last(), tables_span) {
                (Some(span), _) => (format!("{FILES}.path"), span.clone()),
                (None, span) => (format!("{NFT}.tables"), span.unwrap_or(0..0)),
            };
            return Err(source.error(
                &span,
                Some(key),
                None,
                format!(
                    "{units} units ({} files, {} nftables tables); at most {MAX_CONFIG_UNITS} are synced",
                    files.len(),
                    nftables.tables.len()
                ),
            ));
        }
        if mode != ConfigSyncMode::Off
            && units == 0
            && let Some(span) = &self.mode
        {
            return Err(source.bad_value(
                "config_sync",
                "mode",
                &span.span(),
                "there is nothing to sync: list tables in config_sync.nftables.tables or add a [[config_sync.files]], or set mode = \"off\"",
            ));
        }
        Ok(ConfigSyncSection {
            mode,
            source: sync_source,
            compare_interval: millis(compare.value),
            // Invariant: `int` checked the ranges.
            repair_after: repair.value as u32,
            max_unit_bytes: max_unit.value as u32,
            nftables,
            files,
        })
    }
}

/// `config_sync.source`: `"priority"` or 8 hex digits.
fn sync_source(source: &Source<'_>, raw: &Spanned<String>) -> Result<SyncSource, ConfigError> {
    let text = raw.get_ref();
    if text == "priority" {
        return Ok(SyncSource::Priority);
    }
    match u32::from_str_radix(text, 16) {
        Ok(id) if text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(SyncSource::Node(NodeId(id)))
        }
        _ => Err(source.bad_value(
            "config_sync",
            "source",
            &raw.span(),
            format!("must be {}", expected("config_sync", "source")),
        )),
    }
}

/// An nftables identifier: what `nft` reads unquoted.
fn nft_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first = chars.next();
    name.chars().count() <= NFT_NAME_MAX
        && first.is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Splits `text` at single spaces into exactly `N` words.
fn words<const N: usize>(text: &str) -> Option<[&str; N]> {
    let words: Vec<&str> = text.split(' ').collect();
    words.try_into().ok()
}

impl RawNftables {
    fn validate(self, source: &Source<'_>) -> Result<NftablesSync, ConfigError> {
        let mut tables: Vec<NftTable> = Vec::new();
        for raw in self.tables.as_ref().map_or(&[][..], |list| list.get_ref()) {
            let table = nft_table(source, "tables", raw, raw.get_ref())?;
            if tables.contains(&table) {
                return Err(source.bad_value(NFT, "tables", &raw.span(), "is listed twice"));
            }
            tables.push(table);
        }
        let mut dynamic_sets: Vec<NftSet> = Vec::new();
        for raw in self
            .dynamic_sets
            .as_ref()
            .map_or(&[][..], |list| list.get_ref())
        {
            let bad = |problem: String| source.bad_value(NFT, "dynamic_sets", &raw.span(), problem);
            let Some([family, table, name]) = words::<3>(raw.get_ref()) else {
                return Err(bad(
                    "must be \"family table set\", one space apart, e.g. \"inet filter blocklist\""
                        .to_string(),
                ));
            };
            let table = nft_table(source, "dynamic_sets", raw, &format!("{family} {table}"))?;
            if !nft_name(name) {
                return Err(bad(format!("the set's name must be {NFT_NAME}")));
            }
            if !tables.contains(&table) {
                return Err(bad(format!(
                    "table {table} is not in config_sync.nftables.tables: a dynamic set must be in a synced table"
                )));
            }
            let set = NftSet {
                table,
                name: name.to_string(),
            };
            if dynamic_sets.contains(&set) {
                return Err(bad("is listed twice".to_string()));
            }
            dynamic_sets.push(set);
        }
        let mut defines: BTreeMap<String, String> = BTreeMap::new();
        for (name, raw) in self.defines.unwrap_or_default() {
            let key = format!("defines.{name}");
            let bad = |problem: String| source.bad_value(NFT, &key, &raw.span(), problem);
            if !nft_name(&name) {
                return Err(bad(format!("the variable's name must be {NFT_NAME}")));
            }
            let Some(value) = raw.get_ref().as_str() else {
                return Err(bad(format!("must be text: {}", expected(NFT, "defines"))));
            };
            if value.trim().is_empty() || value.chars().any(char::is_control) {
                return Err(bad(
                    "must be non-empty text without control characters".to_string()
                ));
            }
            if let Some((other, _)) = defines.iter().find(|(_, v)| *v == value) {
                return Err(bad(format!(
                    "{other} has this value too; values must be distinct: the synced text is compared with each value put back as its name"
                )));
            }
            defines.insert(name, value.to_string());
        }
        Ok(NftablesSync {
            tables,
            dynamic_sets,
            defines,
        })
    }
}

/// A `"family name"` of `key`, checked; `text` is what is read (part of the value at `raw`).
fn nft_table(
    source: &Source<'_>,
    key: &str,
    raw: &Spanned<String>,
    text: &str,
) -> Result<NftTable, ConfigError> {
    let bad = |problem: String| source.bad_value(NFT, key, &raw.span(), problem);
    let Some([family, name]) = words::<2>(text) else {
        return Err(bad(
            "must be \"family name\", one space apart, e.g. \"inet filter\"".to_string(),
        ));
    };
    let Some(family) = NftFamily::from_name(family) else {
        return Err(bad(format!(
            "{family:?} is not an nftables family: must be ip, ip6, inet, arp, bridge or netdev"
        )));
    };
    if !nft_name(name) {
        return Err(bad(format!("the table's name must be {NFT_NAME}")));
    }
    Ok(NftTable {
        family,
        name: name.to_string(),
    })
}

/// A files unit's path: absolute, normalized, short enough for the failover link, and apart
/// from every other unit and from the daemon's own files.
fn unit_path(
    source: &Source<'_>,
    raw: &Spanned<String>,
    protected: &Protected<'_>,
    others: &[FilesUnit],
    spans: &[Range<usize>],
) -> Result<PathBuf, ConfigError> {
    let text = raw.get_ref();
    let bad = |problem: String| source.bad_value(FILES, "path", &raw.span(), problem);
    if !text.starts_with('/') {
        return Err(bad(format!(
            "is not absolute: must be {}",
            expected(FILES, "path")
        )));
    }
    if text == "/" {
        return Err(bad("must not be / (the whole file system)".to_string()));
    }
    let normalized = !text.ends_with('/')
        && text[1..]
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !normalized {
        return Err(bad(format!(
            "is not normalized: must be {}",
            expected(FILES, "path")
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(bad("must not contain control characters".to_string()));
    }
    if text.len() > MAX_UNIT_NAME {
        return Err(bad(format!(
            "is {} bytes long; a unit's name is at most {MAX_UNIT_NAME} bytes",
            text.len()
        )));
    }
    let path = PathBuf::from(text);
    for (what, file) in [
        ("this configuration file", protected.config),
        ("node.key, the node's key", protected.key),
    ] {
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        if file.starts_with(&path) {
            return Err(bad(format!(
                "{} {what} ({}): the daemon's own files are never synced",
                if file == path { "is" } else { "holds" },
                file.display()
            )));
        }
    }
    for (other, span) in others.iter().zip(spans) {
        let relation = if other.path == path {
            "is also"
        } else if path.starts_with(&other.path) {
            "is inside"
        } else if other.path.starts_with(&path) {
            "holds"
        } else {
            continue;
        };
        return Err(bad(format!(
            "{relation} the unit on line {} ({}); units must not overlap",
            line_of(source, span),
            other.path.display()
        )));
    }
    Ok(path)
}
