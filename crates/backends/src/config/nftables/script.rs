//! The one `nft -f -` script of an apply: which of its lines belong to which unit, so that nft's
//! error (`/dev/stdin:LINE:COL: Error: ...`) names the unit, and the check that a unit's
//! content is its own table's block and nothing else.

use std::ops::Range;

use super::config::Table;

/// What a range of script lines does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The recreation of unit `n` (or the defines, counted with the first unit).
    Unit(usize),
    /// The re-added elements of unit `n`'s dynamic sets.
    Elements(usize),
}

/// A script being built.
#[derive(Debug, Default)]
pub(super) struct Script {
    text: String,
    lines: usize,
    parts: Vec<(Range<usize>, Part)>,
}

impl Script {
    /// Appends `text` as lines of `part`.
    pub(super) fn push(&mut self, part: Part, text: &str) {
        let first = self.lines + 1;
        self.text.push_str(text);
        if !text.ends_with('\n') {
            self.text.push('\n');
        }
        self.lines += text.lines().count().max(1);
        self.parts.push((first..self.lines + 1, part));
    }

    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// The part nft's error message points at, if it names a line of the script.
    pub(super) fn blame(&self, message: &str) -> Option<Part> {
        let line: usize = message
            .split("/dev/stdin:")
            .nth(1)?
            .split(':')
            .next()?
            .parse()
            .ok()?;
        self.parts
            .iter()
            .find(|(lines, _)| lines.contains(&line))
            .map(|(_, part)| *part)
    }
}

/// Checks that `content` is `table FAMILY NAME { ... }` for `table` and nothing else (comments
/// and blanks aside), with no `include`: content from the peer must not reach beyond the table
/// this node's config names, nor into this node's files.
pub(super) fn check_content(table: &Table, content: &str) -> Result<(), String> {
    let words = Words::new(content);
    let mut outside = Vec::new();
    let mut depth = 0u32;
    let mut closed = false;
    for word in words {
        match word {
            Word::Open => {
                if closed {
                    return Err("more than one block".to_owned());
                }
                depth += 1;
            }
            Word::Close => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "a `}` closes nothing".to_owned())?;
                closed |= depth == 0;
            }
            Word::Text("include") => return Err("`include` is not allowed".to_owned()),
            Word::Text(text) if depth == 0 => {
                if closed {
                    return Err(format!("{text:?} after the table's block"));
                }
                outside.push(text);
            }
            Word::Text(_) => {}
        }
    }
    if !closed || depth != 0 {
        return Err("not one complete `table ... { ... }` block".to_owned());
    }
    match outside[..] {
        ["table", family, name]
            if Table::parse(&format!("{family} {name}")).as_ref() == Ok(table) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "content is not the block of table {table}: it starts {:?}",
            outside.join(" ")
        )),
    }
}

/// Whether `content` (one table's block) declares set or map `set` (`set NAME {`, `map NAME
/// {`), which is all the re-adding of elements needs to know: a wrong guess costs a retry
/// without the elements (see `apply`).
pub(super) fn declares_set(content: &str, set: &str) -> bool {
    let words: Vec<Word<'_>> = Words::new(content).collect();
    words.windows(3).any(
        |w| matches!(w, [Word::Text("set" | "map"), Word::Text(name), Word::Open] if *name == set),
    )
}

/// A word of nft input, outside comments; a quoted string is one word.
#[derive(Debug, PartialEq, Eq)]
enum Word<'a> {
    Open,
    Close,
    Text(&'a str),
}

struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        Self { rest: text }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        loop {
            self.rest = self
                .rest
                .trim_start_matches(|c: char| c.is_whitespace() || c == ';');
            if let Some(comment) = self.rest.strip_prefix('#') {
                self.rest = comment.find('\n').map_or("", |n| &comment[n..]);
                continue;
            }
            break;
        }
        let mut chars = self.rest.chars();
        let word = match chars.next()? {
            '{' => {
                self.rest = &self.rest[1..];
                return Some(Word::Open);
            }
            '}' => {
                self.rest = &self.rest[1..];
                return Some(Word::Close);
            }
            '"' => {
                let end = self.rest[1..].find('"').map_or(self.rest.len(), |n| n + 2);
                &self.rest[..end]
            }
            _ => {
                let end = self
                    .rest
                    .find(|c: char| c.is_whitespace() || "{};\"#".contains(c))
                    .unwrap_or(self.rest.len());
                &self.rest[..end]
            }
        };
        self.rest = &self.rest[word.len()..];
        Some(Word::Text(word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_blamed_on_their_unit() {
        let mut script = Script::default();
        script.push(
            Part::Unit(0),
            "table ip a\ndelete table ip a\ntable ip a {\n}",
        );
        script.push(Part::Elements(0), "add element ip a s { 1.1.1.1 }\n");
        script.push(Part::Unit(1), "table ip b\n");
        assert_eq!(script.text().lines().count(), 6);
        let at = |line: usize| script.blame(&format!("/dev/stdin:{line}:3-8: Error: x"));
        assert_eq!(at(4), Some(Part::Unit(0)));
        assert_eq!(at(5), Some(Part::Elements(0)));
        assert_eq!(at(6), Some(Part::Unit(1)));
        assert_eq!(at(7), None);
        assert_eq!(script.blame("Error: Could not process rule"), None);
    }

    #[test]
    fn sets_declared_in_content() {
        let content = "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t}\n\tmap  m{type x : y; }\n}";
        assert!(declares_set(content, "s"));
        assert!(declares_set(content, "m"));
        assert!(!declares_set(content, "t"));
        assert!(!declares_set(content, "type"));
        assert!(!declares_set(
            "table ip t { chain c { ip saddr @s drop } }",
            "s"
        ));
    }

    #[test]
    fn content_is_the_units_table_only() {
        let table = Table::parse("inet fw").unwrap();
        let ok = "# synced\ntable inet fw {\n\tchain c {\n\t\tcomment \"}{ include\" # }\n\t}\n}\n";
        assert_eq!(check_content(&table, ok), Ok(()));
        for bad in [
            "table inet other { }",
            "table ip fw { }",
            "table inet fw { } table ip x { }",
            "table inet fw { }; flush ruleset",
            "flush ruleset; table inet fw { }",
            "table inet fw { include \"/etc/x\" }",
            "table inet fw { chain c {",
            "table inet fw }",
            "",
        ] {
            assert!(check_content(&table, bad).is_err(), "accepted {bad:?}");
        }
    }
}
