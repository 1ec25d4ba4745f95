//! What the backend serves, checked once: the tables, the dynamic sets, the per-node defines and
//! the command that runs `nft`.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::ConfigError;

/// The nftables backend's configuration, as the daemon's config file gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftablesConfig {
    /// The synced tables, each `"family name"` (e.g. `"inet filter"`).
    pub tables: Vec<String>,
    /// Sets whose elements are runtime state, each `"family table set"`: their elements are
    /// left out of the canonical form and kept across an apply. Their table must be synced.
    pub dynamic_sets: Vec<String>,
    /// This node's values, by name: where a value appears in a synced table the canonical form
    /// holds `$name` instead, and an apply defines `name` as this node's value. A value is
    /// written as `nft` lists it (a string with its quotes: `"\"eth0\""`), and replaced where
    /// it stands as a whole token outside quoted strings: a value that also occurs where it
    /// is not meant (another rule's address, a chain's name) is replaced there too.
    pub defines: BTreeMap<String, String>,
    /// The program and leading arguments that run `nft` (default `["nft"]`; e.g.
    /// `["ip", "netns", "exec", "fw", "nft"]` for another network namespace).
    pub command: Vec<String>,
}

impl Default for NftablesConfig {
    fn default() -> Self {
        Self {
            tables: Vec::new(),
            dynamic_sets: Vec::new(),
            defines: BTreeMap::new(),
            command: vec!["nft".to_owned()],
        }
    }
}

/// An nftables address family (nft(8), "ADDRESS FAMILIES").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Family {
    Ip,
    Ip6,
    Inet,
    Arp,
    Bridge,
    Netdev,
}

impl Family {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "ip" => Self::Ip,
            "ip6" => Self::Ip6,
            "inet" => Self::Inet,
            "arp" => Self::Arp,
            "bridge" => Self::Bridge,
            "netdev" => Self::Netdev,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Ip6 => "ip6",
            Self::Inet => "inet",
            Self::Arp => "arp",
            Self::Bridge => "bridge",
            Self::Netdev => "netdev",
        }
    }
}

/// A table: its family and name, printed `family name` as nft takes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Table {
    pub family: Family,
    pub name: String,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family.as_str(), self.name)
    }
}

impl Table {
    /// Parses `family name`; the error says what is wrong.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [family, name] = words[..] else {
            return Err("not \"family name\"".to_owned());
        };
        let family = Family::parse(family).ok_or_else(|| {
            format!("unknown family {family:?} (ip, ip6, inet, arp, bridge or netdev)")
        })?;
        check_identifier(name)?;
        Ok(Self {
            family,
            name: name.to_owned(),
        })
    }
}

/// A set or map of a table, printed `family table set` as nft takes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SetName {
    pub table: Table,
    pub name: String,
}

impl fmt::Display for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.table, self.name)
    }
}

impl SetName {
    /// Parses `family table set`; the error says what is wrong.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [family, table, name] = words[..] else {
            return Err("not \"family table set\"".to_owned());
        };
        let table = Table::parse(&format!("{family} {table}"))?;
        check_identifier(name)?;
        Ok(Self {
            table,
            name: name.to_owned(),
        })
    }
}

/// `NFT_NAME_MAXLEN` (`include/uapi/linux/netfilter/nf_tables.h`) less the terminating NUL.
const MAX_NAME: usize = 255;

/// A name as nft's scanner reads an identifier unquoted (`identifier` in `src/scanner.l`), so
/// that it can be written into a script as is.
fn check_identifier(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok
        || name.len() > MAX_NAME
        || !chars.all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
    {
        return Err(format!(
            "{name:?} is not a name nft reads unquoted (a letter or _, then letters, digits, \
             _ - . /; at most {MAX_NAME} bytes)"
        ));
    }
    Ok(())
}

/// A per-node value: `$name` in the canonical form, `value` in this node's kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Define {
    pub name: String,
    pub value: String,
}

/// The configuration, checked.
#[derive(Debug, Clone)]
pub(super) struct Checked {
    pub tables: Vec<Table>,
    pub sets: Vec<SetName>,
    pub defines: Vec<Define>,
    pub command: Vec<String>,
}

fn refused(unit: impl fmt::Display, why: impl Into<String>) -> ConfigError {
    ConfigError::Refused {
        unit: unit.to_string(),
        why: why.into(),
    }
}

impl Checked {
    pub(super) fn new(config: NftablesConfig) -> Result<Self, ConfigError> {
        if config.command.is_empty() || config.command.iter().any(String::is_empty) {
            return Err(refused(
                "command",
                "the command that runs nft is empty or has an empty argument",
            ));
        }
        let mut tables: Vec<Table> = Vec::new();
        for text in &config.tables {
            let table = Table::parse(text).map_err(|why| refused(text, why))?;
            if tables.contains(&table) {
                return Err(refused(text, "table listed twice"));
            }
            tables.push(table);
        }
        let mut sets: Vec<SetName> = Vec::new();
        for text in &config.dynamic_sets {
            let set = SetName::parse(text).map_err(|why| refused(text, why))?;
            if !tables.contains(&set.table) {
                return Err(refused(
                    text,
                    format!("dynamic set of table {}, which is not synced", set.table),
                ));
            }
            if sets.contains(&set) {
                return Err(refused(text, "dynamic set listed twice"));
            }
            sets.push(set);
        }
        let defines = check_defines(config.defines)?;
        Ok(Self {
            tables,
            sets,
            defines,
            command: config.command,
        })
    }

    /// The table `unit` names, if it is synced.
    pub(super) fn table(&self, unit: &str) -> Result<Table, ConfigError> {
        let table = Table::parse(unit).map_err(|why| refused(unit, why))?;
        if !self.tables.contains(&table) {
            return Err(refused(unit, "not a synced table of this node"));
        }
        Ok(table)
    }

    /// The dynamic set `set` names, if it is configured.
    pub(super) fn set(&self, set: &str) -> Result<SetName, ConfigError> {
        let parsed = SetName::parse(set).map_err(|why| refused(set, why))?;
        if !self.sets.contains(&parsed) {
            return Err(refused(set, "not a dynamic set of this node"));
        }
        Ok(parsed)
    }

    /// The dynamic sets of `table`.
    pub(super) fn sets_of<'a>(&'a self, table: &'a Table) -> impl Iterator<Item = &'a SetName> {
        self.sets.iter().filter(move |set| set.table == *table)
    }
}

/// Checks names and values: a value in no other (or the substitution could not tell them
/// apart), none empty, none twice.
fn check_defines(defines: BTreeMap<String, String>) -> Result<Vec<Define>, ConfigError> {
    let defines: Vec<Define> = defines
        .into_iter()
        .map(|(name, value)| Define { name, value })
        .collect();
    for define in &defines {
        let unit = format!("define {}", define.name);
        let mut chars = define.name.chars();
        let name_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(refused(
                unit,
                "a name is a letter or _, then letters, digits or _",
            ));
        }
        if define.value.trim().is_empty() {
            return Err(refused(unit, "empty value"));
        }
        if define.value.trim() != define.value || define.value.chars().any(char::is_control) {
            return Err(refused(
                unit,
                "a value has no leading or trailing blanks and no control characters",
            ));
        }
        if define.value.matches('"').count() % 2 != 0 {
            return Err(refused(unit, "a value's quotes come in pairs"));
        }
    }
    for (i, a) in defines.iter().enumerate() {
        for b in &defines[i + 1..] {
            if a.value == b.value {
                return Err(refused(
                    format!("define {}", b.name),
                    format!("same value as define {}: {:?}", a.name, a.value),
                ));
            }
            let (outer, inner) = if a.value.contains(&b.value) {
                (a, b)
            } else if b.value.contains(&a.value) {
                (b, a)
            } else {
                continue;
            };
            return Err(refused(
                format!("define {}", outer.name),
                format!(
                    "overlap: its value {:?} contains the value of define {} ({:?})",
                    outer.value, inner.name, inner.value
                ),
            ));
        }
    }
    Ok(defines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tables: &[&str], sets: &[&str], defines: &[(&str, &str)]) -> NftablesConfig {
        NftablesConfig {
            tables: tables.iter().map(|t| t.to_string()).collect(),
            dynamic_sets: sets.iter().map(|t| t.to_string()).collect(),
            defines: defines
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..NftablesConfig::default()
        }
    }

    fn why(config: NftablesConfig) -> String {
        match Checked::new(config) {
            Err(ConfigError::Refused { unit, why }) => format!("{unit}: {why}"),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_valid_config_is_taken() {
        let checked = Checked::new(config(
            &["inet fw", "ip  nat"],
            &["inet fw blocklist"],
            &[("pool", "10.0.0.1"), ("lan", "\"eth0\"")],
        ))
        .unwrap();
        assert_eq!(checked.tables[1].to_string(), "ip nat");
        assert_eq!(checked.sets[0].to_string(), "inet fw blocklist");
        assert_eq!(checked.table("ip nat").unwrap(), checked.tables[1]);
        assert!(matches!(
            checked.table("ip6 nat"),
            Err(ConfigError::Refused { .. })
        ));
        assert!(checked.set("inet fw blocklist").is_ok());
        assert!(checked.set("inet fw other").is_err());
    }

    #[test]
    fn bad_tables_are_refused() {
        assert!(why(config(&["inte fw"], &[], &[])).contains("unknown family \"inte\""));
        assert!(why(config(&["inet"], &[], &[])).contains("not \"family name\""));
        assert!(why(config(&["inet fw", "inet  fw"], &[], &[])).contains("listed twice"));
        assert!(why(config(&["inet f{w"], &[], &[])).contains("unquoted"));
        assert!(why(config(&["inet fw"], &["ip fw s"], &[])).contains("not synced"));
    }

    #[test]
    fn bad_defines_are_refused() {
        let t = &["inet fw"];
        assert!(why(config(t, &[], &[("a", " ")])).contains("empty value"));
        assert!(why(config(t, &[], &[("a", "1"), ("b", "1")])).contains("same value"));
        let overlap = why(config(t, &[], &[("a", "10.0.0.1"), ("b", "10.0.0.10")]));
        assert!(
            overlap.starts_with("define b: overlap") && overlap.contains("define a"),
            "{overlap}"
        );
        assert!(why(config(t, &[], &[("a-b", "1")])).contains("a name is"));
        assert!(why(config(t, &[], &[("a", "1\n}")])).contains("control"));
        assert!(why(config(t, &[], &[("a", "\"eth0")])).contains("pairs"));
        let mut empty = config(t, &[], &[]);
        empty.command.clear();
        assert!(why(empty).starts_with("command"));
    }
}
