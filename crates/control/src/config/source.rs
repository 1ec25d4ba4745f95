//! Error locations: turning byte spans and serde's errors into located [`ConfigError`]s.

use std::ops::Range;
use std::path::Path;

use super::ConfigError;
use super::table::{allowed_keys, expected};

/// The text being parsed and its path: turns byte spans into located errors.
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl Source<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    pub(super) fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        let line = before.matches('\n').count() + 1;
        (line, before[line_start..].chars().count() + 1)
    }

    /// The value at `span` as written in the file, shortened to its first line and 40
    /// characters so an error stays one readable line.
    pub(super) fn value_text(&self, span: &Range<usize>) -> String {
        let raw = self.text.get(span.clone()).unwrap_or("");
        let first_line = raw.lines().next().unwrap_or("");
        let mut short: String = first_line.chars().take(40).collect();
        if short.len() < raw.len() {
            short.push_str("...");
        }
        short
    }

    pub(super) fn error(
        &self,
        span: &Range<usize>,
        key: Option<String>,
        value: Option<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_column(span.start);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            key,
            value,
            problem: problem.into(),
        }
    }

    /// An error about the value of `table.key` at `span`.
    pub(super) fn bad_value(
        &self,
        table: &str,
        key: &str,
        span: &Range<usize>,
        problem: impl Into<String>,
    ) -> ConfigError {
        self.error(
            span,
            Some(format!("{table}.{key}")),
            Some(self.value_text(span)),
            problem,
        )
    }

    /// A required key that is absent; located at its table's header, or the top of the file
    /// when the whole table is missing.
    pub(super) fn missing(
        &self,
        table: &str,
        key: &str,
        table_span: Option<&Range<usize>>,
    ) -> ConfigError {
        self.error(
            table_span.unwrap_or(&(0..0)),
            Some(format!("{table}.{key}")),
            None,
            format!("missing required key: {}", expected(table, key)),
        )
    }

    /// Turns a serde/TOML error into a located one. serde's message does not say which table
    /// the key is in, so the key is found by re-parsing the document with spans and looking
    /// for the key or value at the error's span.
    pub(super) fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let document = match toml::de::DeTable::parse(self.text) {
            Ok(document) => document,
            // Not TOML at all: the parser's own message is the best there is.
            Err(syntax) => {
                let span = syntax.span().unwrap_or(0..0);
                let mut problem = format!("invalid TOML: {}", syntax.message().trim_end());
                let at = self.value_text(&span);
                if !at.trim().is_empty() {
                    problem.push_str(&format!(" (at {at})"));
                }
                return self.error(&span, None, None, problem);
            }
        };
        let Some(found) = find_key(document.get_ref(), &span, &[]) else {
            return self.error(&span, None, None, err.message().trim_end());
        };
        let (table, key) = match found.path.split_last() {
            Some((key, table)) => (table.join("."), key.clone()),
            None => (String::new(), String::new()),
        };
        let dotted = found.path.join(".");
        if err.message().starts_with("unknown field") {
            let problem = if table.is_empty() {
                format!("unknown table; {}", allowed_keys(""))
            } else {
                format!("unknown key; {}", allowed_keys(&table))
            };
            return self.error(&found.key_span, Some(dotted), None, problem);
        }
        let what = if table.is_empty() {
            "a table".to_string()
        } else {
            expected(&table, &key)
        };
        let value = Some(self.value_text(&found.value_span));
        self.error(
            &found.value_span,
            Some(dotted),
            value,
            format!("must be {what}"),
        )
    }
}

/// A key found at an error's span.
struct FoundKey {
    path: Vec<String>,
    key_span: Range<usize>,
    value_span: Range<usize>,
}

/// The innermost key whose name or value is at `span`.
fn find_key(
    table: &toml::de::DeTable<'_>,
    span: &Range<usize>,
    prefix: &[String],
) -> Option<FoundKey> {
    for (key, value) in table {
        let mut path = prefix.to_vec();
        path.push(key.get_ref().to_string());
        let here = || FoundKey {
            path: path.clone(),
            key_span: key.span(),
            value_span: value.span(),
        };
        if key.span() == *span {
            return Some(here());
        }
        let value_span = value.span();
        let inside = value_span.start <= span.start && span.end <= value_span.end;
        // Tables written as `[header]` sections do not cover their keys' spans, so every
        // sub-table is searched, not only the ones whose span contains the error.
        if let toml::de::DeValue::Table(inner) = value.get_ref()
            && let Some(found) = find_key(inner, span, &path)
        {
            return Some(found);
        }
        // The same for each table of an array of tables (`[[vrrp.instance]]`); the key path
        // has no index, the line tells which one.
        if let toml::de::DeValue::Array(items) = value.get_ref() {
            for item in items.iter() {
                if let toml::de::DeValue::Table(inner) = item.get_ref()
                    && let Some(found) = find_key(inner, span, &path)
                {
                    return Some(found);
                }
            }
        }
        if inside {
            return Some(here());
        }
    }
    None
}
