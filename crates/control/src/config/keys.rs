//! What a key is: its path, what it accepts, its default and its help. The keys themselves are
//! in [`table`](super::table), written once; everything that describes or checks a key reads
//! them: the validation's ranges and defaults, the "must be ..." of every error, the example file
//! and the reference tables of the READMEs.

use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::Error as ValueError;

/// One table of the file (`[name]`, or `[[name]]` for an array of tables).
pub(crate) struct Table {
    /// The dotted name (`sessions.conntrack`).
    pub name: &'static str,
    /// Whether the file writes it and what its absence means.
    pub kind: TableKind,
    /// What the table is for, in sentences; "" when its keys say it all.
    pub help: &'static str,
    /// Its keys, in the order errors list them.
    pub keys: &'static [Key],
}

/// How a table appears in a file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableKind {
    /// A table whose keys have defaults, or whose required keys must be written.
    Plain,
    /// A table whose presence turns a feature on (`[routing]`): the example shows it commented.
    Optional,
    /// An array of tables (`[[vrrp.instance]]`): none by default; the example shows one
    /// commented.
    Array,
}

/// One key of a table.
#[derive(Clone, Copy)]
pub(crate) struct Key {
    /// The table's dotted name.
    pub table: &'static str,
    /// The key's name in its table.
    pub name: &'static str,
    /// What the key accepts: the text after "must be" in errors.
    pub accepts: Accepts,
    /// Its value when the file does not set it.
    pub default: Value,
    /// What it does, in one sentence.
    pub help: &'static str,
    /// More about it, or "".
    pub note: &'static str,
    /// The value the example file shows when it cannot show the default (a required key, or one
    /// with no default), as TOML.
    pub example: Option<&'static str>,
}

/// What a key accepts.
#[derive(Clone, Copy)]
pub(crate) enum Accepts {
    /// An integer within a range, described from it.
    Int(Range),
    /// An integer within a range whose description says more than the range (a bit mask).
    Mask(Range, &'static str),
    /// A name of 1 to `max` characters; `charset` says which ones (or "").
    Name {
        /// The longest name, in characters.
        max: usize,
        /// The characters allowed, after a colon in the description; "" for any.
        charset: &'static str,
    },
    /// Anything else, described in words.
    Text(&'static str),
}

/// An inclusive integer range and how to say it.
#[derive(Clone, Copy)]
pub(crate) struct Range {
    pub min: i64,
    pub max: i64,
    /// The unit, said before the range ("milliseconds"); "" for a count.
    pub unit: &'static str,
    /// Values must be multiples of this, for the reason given.
    pub step: Option<(i64, &'static str)>,
    /// 0 is also allowed, below `min`, and turns the feature off.
    pub zero_is_off: bool,
    /// What the smallest value means ("fault: never master"), or "".
    pub min_means: &'static str,
    /// A relation to another key, said after the range ("at least hello_interval_ms"), or "".
    pub relation: &'static str,
}

/// A default value.
#[derive(Clone, Copy)]
pub(crate) enum Value {
    /// The key must be written.
    Required,
    /// Not set: the feature the key configures is off.
    Unset,
    Int(i64),
    /// An integer written in hexadecimal (a bit mask).
    Hex(i64),
    Bool(bool),
    Str(&'static str),
    /// A list of strings (`[]`, `["vtysh"]`).
    List(&'static [&'static str]),
    /// The value of another key (`node.priority`).
    Key(&'static str),
    /// Found at run time, described in words.
    Found(&'static str),
}

impl Range {
    /// `min..=max`, a plain count.
    pub(super) const fn new(min: i64, max: i64) -> Self {
        Self {
            min,
            max,
            unit: "",
            step: None,
            zero_is_off: false,
            min_means: "",
            relation: "",
        }
    }

    pub(super) const fn unit(self, unit: &'static str) -> Self {
        Self { unit, ..self }
    }

    pub(super) const fn ms(self) -> Self {
        self.unit("milliseconds")
    }

    pub(super) const fn step(self, step: i64, why: &'static str) -> Self {
        Self {
            step: Some((step, why)),
            ..self
        }
    }

    pub(super) const fn zero_is_off(self) -> Self {
        Self {
            zero_is_off: true,
            ..self
        }
    }

    pub(super) const fn min_means(self, min_means: &'static str) -> Self {
        Self { min_means, ..self }
    }

    pub(super) const fn relation(self, relation: &'static str) -> Self {
        Self { relation, ..self }
    }

    /// The smallest value accepted at all (0 when it turns the feature off).
    pub(super) fn lowest(&self) -> i64 {
        if self.zero_is_off { 0 } else { self.min }
    }

    /// The range in words, as errors say it after "must be".
    pub(super) fn describe(&self) -> String {
        let (min, max) = (self.min, self.max);
        let mut text = String::new();
        if !self.unit.is_empty() {
            text.push_str(&format!("{}, ", self.unit));
        }
        text.push_str(&match (self.step, self.zero_is_off, self.min_means) {
            (Some((step, _)), _, _) => format!("a multiple of {step} from {min} to {max}"),
            (None, true, _) => format!("0 (off) or an integer from {min} to {max}"),
            (None, false, "") => format!("an integer from {min} to {max}"),
            (None, false, means) => format!("an integer from {min} ({means}) to {max}"),
        });
        if !self.relation.is_empty() {
            text.push_str(&format!(", {}", self.relation));
        }
        text
    }
}

impl Accepts {
    /// What the key accepts in words, as errors say it after "must be".
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Int(range) => range.describe(),
            Self::Mask(_, text) | Self::Text(text) => text.to_string(),
            Self::Name { max, charset: "" } => format!("a name of 1 to {max} characters"),
            Self::Name { max, charset } => format!("a name of 1 to {max} characters: {charset}"),
        }
    }

    /// The range of an integer key.
    pub(super) fn range(&self) -> Option<&Range> {
        match self {
            Self::Int(range) | Self::Mask(range, _) => Some(range),
            Self::Name { .. } | Self::Text(_) => None,
        }
    }
}

impl Value {
    /// The value as TOML, when it is one.
    pub(super) fn toml(&self) -> Option<String> {
        match *self {
            Self::Int(value) => Some(value.to_string()),
            Self::Hex(value) => Some(format!("{value:#x}")),
            Self::Bool(value) => Some(value.to_string()),
            Self::Str(text) => Some(format!("{text:?}")),
            Self::List(items) => {
                let items: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
                Some(format!("[{}]", items.join(", ")))
            }
            Self::Required | Self::Unset | Self::Key(_) | Self::Found(_) => None,
        }
    }
}

impl Key {
    /// A key with what it accepts, its default and its help; no note and no example value.
    pub(super) const fn new(
        table: &'static str,
        name: &'static str,
        accepts: Accepts,
        default: Value,
        help: &'static str,
    ) -> Self {
        Self {
            table,
            name,
            accepts,
            default,
            help,
            note: "",
            example: None,
        }
    }

    pub(super) const fn note(self, note: &'static str) -> Self {
        Self { note, ..self }
    }

    pub(super) const fn example(self, example: &'static str) -> Self {
        Self {
            example: Some(example),
            ..self
        }
    }

    /// `table.key`.
    pub(super) fn path(&self) -> String {
        format!("{}.{}", self.table, self.name)
    }

    /// The key's integer range. Invariant: only integer keys are read as integers (every one
    /// is read by the tests).
    pub(super) fn range(&self) -> &Range {
        self.accepts
            .range()
            .unwrap_or_else(|| panic!("{} is not an integer key", self.path()))
    }

    /// The longest name a name key accepts. Invariant: only name keys are read as names.
    pub(super) fn max_chars(&self) -> usize {
        match self.accepts {
            Accepts::Name { max, .. } => max,
            _ => panic!("{} is not a name key", self.path()),
        }
    }

    /// The integer default. Invariant: only keys with an integer default are read without one
    /// given by the caller.
    pub(super) fn default_int(&self) -> i64 {
        match self.default {
            Value::Int(value) | Value::Hex(value) => value,
            _ => panic!("{} has no integer default", self.path()),
        }
    }

    /// The boolean default. Invariant as for [`default_int`](Self::default_int).
    pub(super) fn default_bool(&self) -> bool {
        match self.default {
            Value::Bool(value) => value,
            _ => panic!("{} has no boolean default", self.path()),
        }
    }

    /// The string default. Invariant as for [`default_int`](Self::default_int).
    pub(super) fn default_str(&self) -> &'static str {
        match self.default {
            Value::Str(text) => text,
            _ => panic!("{} has no string default", self.path()),
        }
    }

    /// The list default. Invariant as for [`default_int`](Self::default_int).
    pub(super) fn default_list(&self) -> Vec<String> {
        match self.default {
            Value::List(items) => items.iter().map(|item| item.to_string()).collect(),
            _ => panic!("{} has no list default", self.path()),
        }
    }

    /// The default of a key whose value is a name of an enum (`"memory"`), read as serde reads
    /// the file. Invariant: the table's default is one of the names (the example file, which
    /// writes every default, parses).
    pub(super) fn default_enum<T: for<'de> Deserialize<'de>>(&self) -> T {
        T::deserialize(self.default_str().into_deserializer())
            .unwrap_or_else(|err: ValueError| panic!("{}: {err}", self.path()))
    }
}
