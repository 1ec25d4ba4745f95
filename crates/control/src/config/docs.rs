//! The documents generated from the key table, and the tests that keep the checked-in copies
//! equal to them: the example file and the reference tables of `README.md` and
//! `crates/control/README.md` (between the `config-keys` markers). After changing the table,
//! regenerate them with `FAILOVERD_BLESS=1 cargo test -p failoverd-control config::docs`.
//!
//! Also here: the checks that the table and the raw structs serde reads agree.

use std::path::{Path, PathBuf};

use super::keys::{Key, Table, TableKind, Value};
use super::table::TABLES;
use super::table::header;
use super::{Config, RawConfig};

const BEGIN: &str = "<!-- config-keys:begin";
const END: &str = "<!-- config-keys:end -->";
const BLESS: &str = "FAILOVERD_BLESS=1 cargo test -p failoverd-control config::docs";

fn crate_file(relative: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    // `crates/control/../../README.md` reads better as `README.md`'s own path in a failure.
    path.canonicalize().unwrap_or(path)
}

/// A key's default, for a table cell.
fn default_cell(value: &Value) -> String {
    match value {
        Value::Required => "required".to_string(),
        Value::Unset => "none".to_string(),
        Value::Key(other) => format!("`{other}`"),
        Value::Found(how) => how.to_string(),
        literal => format!("`{}`", literal.toml().unwrap_or_default()),
    }
}

/// The row of a table that is off unless written (`[routing]`, `[[vrrp.instance]]`), with an
/// empty "allowed" cell when the table has that column.
fn table_row(table: &Table, allowed_column: bool) -> Option<String> {
    let default = match table.kind {
        TableKind::Plain => return None,
        TableKind::Optional => "absent: off",
        TableKind::Array => "none",
    };
    let allowed = if allowed_column { " |" } else { "" };
    Some(format!(
        "| `{}` | {default} |{allowed} {} |",
        header(table.name),
        table.help
    ))
}

fn key_path(key: &Key) -> String {
    format!("`{}`", key.path())
}

/// A key's help, with its range when it is an integer (what operators look up most).
fn summary_meaning(key: &Key) -> String {
    match key.accepts.range() {
        Some(_) => format!("{} Must be {}.", key.help, key.accepts.describe()),
        None => key.help.to_string(),
    }
}

/// The README's table: every key's default and what it does.
fn summary() -> String {
    let mut lines = vec![
        "| key | default | meaning |".to_string(),
        "| --- | --- | --- |".to_string(),
    ];
    for table in TABLES {
        lines.extend(table_row(table, false));
        for key in table.keys {
            lines.push(format!(
                "| {} | {} | {} |",
                key_path(key),
                default_cell(&key.default),
                summary_meaning(key)
            ));
        }
    }
    lines.join("\n") + "\n"
}

/// `crates/control/README.md`'s table: also what each key accepts (as errors say it) and the
/// notes.
fn reference() -> String {
    let mut lines = vec![
        "| key | default | allowed | meaning |".to_string(),
        "| --- | --- | --- | --- |".to_string(),
    ];
    for table in TABLES {
        lines.extend(table_row(table, true));
        for key in table.keys {
            let meaning = [key.help, key.note]
                .iter()
                .filter(|text| !text.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            lines.push(format!(
                "| {} | {} | {} | {meaning} |",
                key_path(key),
                default_cell(&key.default),
                key.accepts.describe()
            ));
        }
    }
    lines.join("\n") + "\n"
}

/// `text` with what lies between the markers replaced by `table`.
fn with_table(text: &str, table: &str) -> Option<String> {
    let begin = text.find(BEGIN)?;
    let body = begin + text[begin..].find('\n')? + 1;
    let end = body + text[body..].find(END)?;
    Some(format!("{}{table}{}", &text[..body], &text[end..]))
}

/// Compares the checked-in file with the generated text, or writes it when blessing.
fn check(path: &Path, generated: &str) {
    let written = std::fs::read_to_string(path).unwrap_or_default();
    if std::env::var_os("FAILOVERD_BLESS").is_some() {
        if written != generated {
            std::fs::write(path, generated).unwrap();
        }
        return;
    }
    if written != generated {
        let first = written
            .lines()
            .zip(generated.lines())
            .find(|(w, g)| w != g)
            .map_or_else(String::new, |(w, g)| {
                format!("\n  written:   {w}\n  generated: {g}")
            });
        panic!(
            "{} differs from what the key table (crates/control/src/config/table/) generates{first}\nregenerate it with {BLESS}",
            path.display()
        );
    }
}

fn check_readme(path: &Path, table: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let generated = with_table(&text, table)
        .unwrap_or_else(|| panic!("{} has no {BEGIN} ... {END} markers", path.display()));
    check(path, &generated);
}

#[test]
fn the_example_file_is_generated() {
    check(
        &crate_file("failoverd.example.toml"),
        &super::example::render(),
    );
}

#[test]
fn the_readme_tables_are_generated() {
    check_readme(&crate_file("../../README.md"), &summary());
    check_readme(&crate_file("README.md"), &reference());
}

#[test]
fn the_drift_check_sees_an_edited_table() {
    let text = format!("intro\n{BEGIN} -->\nold\n{END}\nafter\n");
    assert_eq!(
        with_table(&text, "new\n").unwrap(),
        format!("intro\n{BEGIN} -->\nnew\n{END}\nafter\n")
    );
    assert_eq!(with_table("no markers", "new\n"), None);
}

#[test]
fn every_key_is_in_its_table() {
    for table in TABLES {
        for key in table.keys {
            assert_eq!(key.table, table.name, "{}", key.path());
        }
    }
}

/// The keys serde accepts in `table`, from its "unknown field" error.
fn serde_keys(table: &Table) -> Vec<String> {
    let text = format!("{}\nno_such_key = 1\n", header(table.name));
    let err = match toml::from_str::<RawConfig>(&text) {
        Ok(_) => panic!("{} accepts any key", table.name),
        Err(err) => err.message().to_string(),
    };
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("{}: {err}", table.name))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        // Sub-tables are fields of their parent's raw struct, and tables of their own here.
        .filter(|name| {
            !TABLES
                .iter()
                .any(|t| t.name == format!("{}.{name}", table.name))
        })
        .collect()
}

#[test]
fn serde_reads_exactly_the_keys_of_the_table() {
    for table in TABLES {
        let keys: Vec<&str> = table.keys.iter().map(|key| key.name).collect();
        assert_eq!(serde_keys(table), keys, "[{}]", table.name);
    }
}

#[test]
fn every_default_is_what_a_file_without_the_key_gets() {
    // The example writes every default that is a value; parsing it gives what no key gives.
    let minimal = "[node]\nname = \"fw-a\"\nkey = \"/etc/failoverd/node.pem\"\n[link]\nlisten = \"192.0.2.1:7701\"\npeer = \"192.0.2.2:7701\"\npeer_key = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n";
    let path = Path::new("/etc/failoverd/failoverd.toml");
    let written = Config::parse(Config::example(), path).unwrap();
    let unset = Config::parse(minimal, path).unwrap();
    assert_eq!(written, unset);
}
