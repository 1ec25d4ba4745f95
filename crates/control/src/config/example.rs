//! The example file, generated from the key table: every table and key with its help, what it
//! accepts and its default. `crates/control/failoverd.example.toml` is a copy that a test keeps
//! equal to it.

use super::keys::{Key, Table, TableKind, Value};
use super::table::TABLES;
use super::table::header;

/// Comment lines are wrapped to this many characters.
const WIDTH: usize = 100;

const PREAMBLE: &str = "\
# failoverd configuration: /etc/failoverd/failoverd.toml
# Every key, with its default: keys marked \"Required\" have none. A line that starts with # and
# no space is a setting to uncomment: keys that are off unless set, and sections that are off
# unless written (their values are examples).
";

/// The whole example file.
pub(super) fn render() -> String {
    let mut out = String::from(PREAMBLE);
    for table in TABLES {
        out.push('\n');
        comment(&mut out, table.help);
        let commented = table.kind != TableKind::Plain;
        let hash = if commented { "#" } else { "" };
        out.push_str(&format!("{hash}{}\n", header(table.name)));
        for key in table.keys {
            render_key(&mut out, table, key);
        }
    }
    out
}

/// A key's comment and its line.
fn render_key(out: &mut String, table: &Table, key: &Key) {
    let mut help = key.help.to_string();
    match key.default {
        Value::Required => help.push_str(" Required."),
        Value::Key(other) => help.push_str(&format!(" Default: the value of {other}.")),
        Value::Found(how) => help.push_str(&format!(" Default: {how}.")),
        _ => {}
    }
    help.push_str(&format!(" Must be {}.", key.accepts.describe()));
    comment(out, &help);
    comment(out, key.note);
    let commented = table.kind != TableKind::Plain
        || matches!(key.default, Value::Unset | Value::Key(_) | Value::Found(_));
    // A key that is written shows its default; one to uncomment shows its example value.
    // Invariant: every key has one or the other (a test renders them all).
    let example = key.example.map(str::to_string);
    let (first, second) = if commented {
        (example, key.default.toml())
    } else {
        (key.default.toml(), example)
    };
    let value = first
        .or(second)
        .unwrap_or_else(|| panic!("{} has neither a default nor an example", key.path()));
    let hash = if commented { "#" } else { "" };
    out.push_str(&format!("{hash}{} = {value}\n", key.name));
}

/// `text` as `# ` lines of at most [`WIDTH`] characters (a longer word gets a line of its own).
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
}
