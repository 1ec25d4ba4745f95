//! The nftables backend: whole tables as configuration units, read with `nft -s list table`
//! and applied in one `nft -f -` transaction, so a failed apply changes nothing (the kernel
//! commits a transaction whole or not at all).
//!
//! # Canonical form
//!
//! [`read`](NftablesBackend::read) returns `nft -s list table F N` (stateless: no handles,
//! counter values or expiry times) with three changes:
//!
//! - each per-node define's value is replaced by `$name`, so nodes whose values differ read
//!   the same form: the hash and the diff compare this form;
//! - the elements of the configured dynamic sets are left out (runtime state, see below);
//! - every other set's and map's elements are sorted, one per line (the kernel lists a hash
//!   set in the order of its per-set seeded hash), and so are the lists in braces within a
//!   line (nft orders them by value, and a `$name` stands for different values).
//!
//! Applying the form and reading it back gives the same bytes.
//!
//! # Apply
//!
//! [`apply`](NftablesBackend::apply) runs one script: per unit `table F N` and `delete table F
//! N` (so an absent table is no error and whatever only this node had disappears), then the
//! `define`s the contents use, with this node's values, then each content, then the elements
//! this node's dynamic sets held just before, with what is left of their timeouts. A content
//! must be its unit's `table F N { ... }` block and nothing else.
//!
//! # Dynamic sets
//!
//! Elements that the packet path adds (`add @blocklist { ip saddr timeout 10m }`) produce no
//! netlink event on the kernels tested (6.18): a daemon learns them by reading the sets
//! ([`read_elements`](NftablesBackend::read_elements)) at an interval and replicates them with
//! [`add_elements`](NftablesBackend::add_elements) and
//! [`delete_elements`](NftablesBackend::delete_elements). Elements the packet path adds between the
//! read and the commit of an apply are lost with the old set.
//!
//! # Change notices
//!
//! [`NftablesWatcher`] hears of every commit in its namespace with the committing process's
//! PID; [`last_apply_pid`](NftablesBackend::last_apply_pid) tells the backend's own commits
//! apart.

mod command;
mod config;
mod defines;
mod element;
mod listing;
mod script;
#[cfg(test)]
mod tests;
mod watcher;

use std::collections::HashSet;

use failoverd_wire::UnitKind;

use self::command::Output;
use self::config::{Checked, SetName, Table};
use self::script::{Part, Script};
use super::{ConfigBackend, ConfigError};

pub use self::config::NftablesConfig;
pub use self::element::SetElement;
pub use self::watcher::{Generation, NftablesChange, NftablesWatcher, NftablesWatcherStats};

/// Elements per `add element` line of a script: nft reads any length, but an error points at a
/// line, and shorter lines keep its excerpt readable.
const ELEMENTS_PER_LINE: usize = 1000;

/// nft's message for a table or set that does not exist (`strerror(ENOENT)`).
const NO_SUCH: &str = "No such file or directory";

/// nftables tables as configuration units (`UnitKind::Nftables`, unit names `family name`).
#[derive(Debug)]
pub struct NftablesBackend {
    config: Checked,
    last_apply_pid: Option<u32>,
    elements_dropped: u64,
}

impl NftablesBackend {
    /// A backend for `config`, refused with the reason if the config is wrong: an unknown
    /// family, a table or set listed twice, a dynamic set of a table not synced, an empty or
    /// duplicate define value, or a define value that contains another's (an overlap: the
    /// canonical form could not tell which was meant).
    pub fn new(config: NftablesConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            config: Checked::new(config)?,
            last_apply_pid: None,
            elements_dropped: 0,
        })
    }

    /// The PID of the `nft` process of the last transaction this backend committed (an
    /// [`apply`](ConfigBackend::apply) or [`add_elements`](Self::add_elements)): the kernel
    /// names it in that commit's generation event ([`Generation::pid`]).
    pub fn last_apply_pid(&self) -> Option<u32> {
        self.last_apply_pid
    }

    /// Elements of dynamic sets an apply could not keep because the recreated set refused them
    /// (its type or flags changed); the apply went ahead without them.
    pub fn elements_dropped(&self) -> u64 {
        self.elements_dropped
    }

    /// The elements of dynamic set `set` (`family table set`) with their remaining timeouts;
    /// none if the set or its table does not exist.
    pub fn read_elements(&mut self, set: &str) -> Result<Vec<SetElement>, ConfigError> {
        let set = self.config.set(set)?;
        self.elements_of(&set)
    }

    /// Adds `elements` to dynamic set `set` (`family table set`) in one transaction, each with
    /// its timeout and expiry; an element the set holds already is replaced (its expiry, its
    /// value in a map). Expired elements are skipped. All or nothing; refused if an element's
    /// text is not one element (it comes from the peer: no `;`, braces or unpaired quotes).
    pub fn add_elements(&mut self, set: &str, elements: &[SetElement]) -> Result<(), ConfigError> {
        let name = self.config.set(set)?;
        for element in elements {
            element.check().map_err(|why| refused(set, why))?;
        }
        let live: Vec<&SetElement> = elements.iter().filter(|e| !e.expired()).collect();
        if live.is_empty() {
            return Ok(());
        }
        self.commit_against_present(set, &name, |present| {
            let mut script = Script::default();
            let replaced: Vec<&str> = live
                .iter()
                .map(|e| e.key.as_str())
                .filter(|key| present.contains(key))
                .collect();
            push_deletes(&mut script, &name, &replaced);
            push_elements(&mut script, 0, &name, &live);
            Some(script)
        })
    }

    /// Deletes the elements of `keys` that dynamic set `set` (`family table set`) holds, in
    /// one transaction; a key it does not hold (expired, never added) is no error. Refused if
    /// a key's text is not one element's key (it comes from the peer).
    pub fn delete_elements(&mut self, set: &str, keys: &[String]) -> Result<(), ConfigError> {
        let name = self.config.set(set)?;
        for key in keys {
            let element = SetElement {
                key: key.clone(),
                value: None,
                timeout: None,
                expires: None,
                comment: None,
            };
            element.check().map_err(|why| refused(set, why))?;
        }
        self.commit_against_present(set, &name, |present| {
            let held: Vec<&str> = keys
                .iter()
                .map(String::as_str)
                .filter(|key| present.contains(key))
                .collect();
            if held.is_empty() {
                return None;
            }
            let mut script = Script::default();
            push_deletes(&mut script, &name, &held);
            Some(script)
        })
    }

    /// Commits the script `build` makes from the keys set `name` holds now (`None`: nothing to
    /// commit), reading them again and trying once more if the commit fails: an element
    /// present when read may expire before the commit, and deleting it then fails.
    fn commit_against_present(
        &mut self,
        set: &str,
        name: &SetName,
        mut build: impl FnMut(&HashSet<&str>) -> Option<Script>,
    ) -> Result<(), ConfigError> {
        let mut last = None;
        for _ in 0..2 {
            let present = self.elements_of(name)?;
            let present: HashSet<&str> = present.iter().map(|e| e.key.as_str()).collect();
            let Some(script) = build(&present) else {
                return Ok(());
            };
            let output = self.commit(&script)?;
            if output.success {
                return Ok(());
            }
            last = Some(output.message());
        }
        Err(ConfigError::Apply {
            unit: set.to_owned(),
            message: last.unwrap_or_default(),
        })
    }

    fn nft(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, ConfigError> {
        command::run(&self.config.command, args, stdin)
    }

    /// Runs `script` as one transaction, keeping the PID of a run that committed.
    fn commit(&mut self, script: &Script) -> Result<Output, ConfigError> {
        let output = self.nft(&["-f", "-"], Some(script.text().as_bytes()))?;
        if output.success {
            self.last_apply_pid = Some(output.pid);
        }
        Ok(output)
    }

    fn elements_of(&self, set: &SetName) -> Result<Vec<SetElement>, ConfigError> {
        let family = set.table.to_string();
        let mut args: Vec<&str> = vec!["list", "set"];
        args.extend(family.split(' '));
        args.push(&set.name);
        let output = self.nft(&args, None)?;
        if !output.success {
            if output.stderr.contains(NO_SUCH) {
                return Ok(Vec::new());
            }
            return Err(ConfigError::Read {
                unit: set.to_string(),
                message: output.message(),
            });
        }
        listing::elements(&output.stdout, &set.name)
            .into_iter()
            .map(SetElement::parse)
            .collect::<Result<_, _>>()
            .map_err(|message| ConfigError::Read {
                unit: set.to_string(),
                message,
            })
    }

    /// The script that recreates `planned`'s tables, with `kept` elements or without.
    fn script(&self, planned: &[Planned<'_>], with_elements: bool) -> Script {
        let mut script = Script::default();
        for (i, unit) in planned.iter().enumerate() {
            script.push(
                Part::Unit(i),
                &format!("table {0}\ndelete table {0}", unit.table),
            );
        }
        let mut used: Vec<&config::Define> = Vec::new();
        for content in planned.iter().filter_map(|u| u.content) {
            for define in defines::used(content, &self.config.defines) {
                if !used.contains(&define) {
                    used.push(define);
                }
            }
        }
        if !used.is_empty() {
            let lines: Vec<String> = used
                .iter()
                .map(|d| format!("define {} = {}", d.name, d.value))
                .collect();
            script.push(Part::Unit(0), &lines.join("\n"));
        }
        for (i, unit) in planned.iter().enumerate() {
            let Some(content) = unit.content else {
                continue;
            };
            script.push(Part::Unit(i), content);
            if with_elements {
                for (set, elements) in &unit.kept {
                    let live: Vec<&SetElement> = elements.iter().filter(|e| !e.expired()).collect();
                    push_elements(&mut script, i, set, &live);
                }
            }
        }
        script
    }
}

/// One unit of an apply.
struct Planned<'a> {
    table: Table,
    content: Option<&'a str>,
    /// The elements its dynamic sets held just before, for the sets its content declares.
    kept: Vec<(SetName, Vec<SetElement>)>,
}

/// `delete element` lines for `keys` of set `name`, a bounded number per line.
fn push_deletes(script: &mut Script, name: &SetName, keys: &[&str]) {
    for chunk in keys.chunks(ELEMENTS_PER_LINE) {
        script.push(
            Part::Elements(0),
            &format!("delete element {name} {{ {} }}", chunk.join(", ")),
        );
    }
}

/// Appends `add element` lines for `elements` of `set`, blamed on unit `unit`.
fn push_elements(script: &mut Script, unit: usize, set: &SetName, elements: &[&SetElement]) {
    for chunk in elements.chunks(ELEMENTS_PER_LINE) {
        let texts: Vec<String> = chunk.iter().map(|e| e.to_nft()).collect();
        script.push(
            Part::Elements(unit),
            &format!("add element {set} {{ {} }}", texts.join(", ")),
        );
    }
}

fn refused(unit: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Refused {
        unit: unit.to_owned(),
        why: why.into(),
    }
}

impl ConfigBackend for NftablesBackend {
    fn kind(&self) -> UnitKind {
        UnitKind::Nftables
    }

    /// `nftables vX.Y.Z` from `nft --version`: the listing's format is nft's.
    fn version(&mut self) -> Result<String, ConfigError> {
        let output = self.nft(&["--version"], None)?;
        let words: Vec<&str> = output.stdout.split_whitespace().take(2).collect();
        match words[..] {
            [name, version] if output.success && version.starts_with('v') => {
                Ok(format!("{name} {version}"))
            }
            _ => Err(ConfigError::Tool {
                tool: self.config.command.join(" "),
                message: format!("no version in {:?}: {}", output.stdout, output.message()),
            }),
        }
    }

    fn read(&mut self, unit: &str) -> Result<Option<Vec<u8>>, ConfigError> {
        let table = self.config.table(unit)?;
        let family = table.to_string();
        let mut args = vec!["-s", "list", "table"];
        args.extend(family.split(' '));
        let output = self.nft(&args, None)?;
        if !output.success {
            if output.stderr.contains(NO_SUCH) {
                return Ok(None);
            }
            return Err(ConfigError::Read {
                unit: unit.to_owned(),
                message: output.message(),
            });
        }
        let dynamic: Vec<&str> = self
            .config
            .sets_of(&table)
            .map(|set| set.name.as_str())
            .collect();
        // Substituted first: the sorting must see `$name`, the same on every node, not the
        // values, which sort differently.
        let substituted = defines::substitute(&output.stdout, &self.config.defines);
        Ok(Some(
            listing::canonical(&substituted, &dynamic).into_bytes(),
        ))
    }

    fn apply(&mut self, units: &[(String, Option<Vec<u8>>)]) -> Result<(), ConfigError> {
        let mut planned: Vec<Planned<'_>> = Vec::with_capacity(units.len());
        for (unit, content) in units {
            let table = self.config.table(unit)?;
            if planned.iter().any(|p| p.table == table) {
                return Err(refused(unit, "given twice in one apply"));
            }
            let content = match content {
                None => None,
                Some(bytes) => {
                    let text = std::str::from_utf8(bytes)
                        .map_err(|_| refused(unit, "the content is not UTF-8"))?;
                    script::check_content(&table, text).map_err(|why| refused(unit, why))?;
                    Some(text)
                }
            };
            planned.push(Planned {
                table,
                content,
                kept: Vec::new(),
            });
        }
        if planned.is_empty() {
            return Ok(());
        }
        for unit in &mut planned {
            let Some(content) = unit.content else {
                continue;
            };
            let sets: Vec<SetName> = self
                .config
                .sets_of(&unit.table)
                .filter(|set| script::declares_set(content, &set.name))
                .cloned()
                .collect();
            for set in sets {
                let elements = self.elements_of(&set)?;
                if !elements.is_empty() {
                    unit.kept.push((set, elements));
                }
            }
        }
        let failed = |script: &Script, output: &Output| {
            let part = script.blame(&output.stderr);
            let unit = match part {
                Some(Part::Unit(i) | Part::Elements(i)) => i,
                None => 0,
            };
            (
                part,
                ConfigError::Apply {
                    unit: units[unit].0.clone(),
                    message: output.message(),
                },
            )
        };
        let script = self.script(&planned, true);
        let output = self.commit(&script)?;
        if output.success {
            return Ok(());
        }
        let (part, error) = failed(&script, &output);
        let has_elements = planned.iter().any(|u| !u.kept.is_empty());
        if !has_elements || matches!(part, Some(Part::Unit(_))) {
            return Err(error);
        }
        // The elements were refused (or nft did not say where): the recreated set no longer
        // takes them. Apply the content alone.
        let script = self.script(&planned, false);
        let output = self.commit(&script)?;
        if !output.success {
            return Err(failed(&script, &output).1);
        }
        self.elements_dropped += planned
            .iter()
            .flat_map(|u| &u.kept)
            .map(|(_, elements)| elements.len() as u64)
            .sum::<u64>();
        Ok(())
    }
}
