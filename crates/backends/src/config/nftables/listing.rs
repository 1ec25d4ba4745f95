//! `nft list table` output: the element lists of its sets and maps, found by walking the lines
//! nft prints (one tab per nesting level, `set NAME {` / `map NAME {` opening an object, a
//! wrapped `elements = { a, b,` ... `c }` list inside it).

/// A piece of a listing: text kept as is, or the element list of a set or map.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    /// The whole `elements = { ... }` lines of set `set`; `items` as printed, in order.
    Elements {
        set: &'a str,
        items: Vec<&'a str>,
    },
}

/// The set or map a line of a table's body opens (`\tset NAME {`), if it opens one.
fn opened_set(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('\t')?;
    let rest = rest
        .strip_prefix("set ")
        .or_else(|| rest.strip_prefix("map "))?;
    rest.trim_end().strip_suffix(" {")
}

/// Brace depth and quoting, fed a listing piece by piece.
#[derive(Default)]
struct Scan {
    depth: u32,
    quoted: bool,
}

impl Scan {
    /// Feeds `text`; returns the index just after the `}` that closes the first brace fed, if
    /// it is in `text`.
    fn feed(&mut self, text: &str) -> Option<usize> {
        for (at, c) in text.char_indices() {
            match c {
                '"' => self.quoted = !self.quoted,
                '{' if !self.quoted => self.depth += 1,
                '}' if !self.quoted => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(at + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// Splits a list's inside at its top-level commas, outside quotes and braces; items trimmed.
pub(super) fn split_top_level(inside: &str, separator: char) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut quoted, mut start) = (0u32, false, 0);
    for (at, c) in inside.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth = depth.saturating_sub(1),
            c if c == separator && !quoted && depth == 0 => {
                items.push(inside[start..at].trim());
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    items.push(inside[start..].trim());
    items.retain(|item| !item.is_empty());
    items
}

/// The listing cut into text and element lists.
fn pieces(listing: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut set: Option<&str> = None;
    let mut text_start = 0;
    let mut at = 0;
    let bytes = listing.len();
    while at < bytes {
        let line_end = listing[at..].find('\n').map_or(bytes, |n| at + n + 1);
        let line = &listing[at..line_end];
        if let Some(name) = opened_set(line) {
            set = Some(name);
        } else if line.trim_end() == "\t}" {
            set = None;
        } else if let (Some(name), Some(open)) = (set, elements_open(line)) {
            // The list runs from its `{` to the matching `}`, over as many lines as it takes.
            let open = at + open;
            let mut scan = Scan::default();
            if let Some(close) = scan.feed(&listing[open..]).map(|n| open + n) {
                if text_start < at {
                    pieces.push(Piece::Text(&listing[text_start..at]));
                }
                pieces.push(Piece::Elements {
                    set: name,
                    items: split_top_level(&listing[open + 1..close - 1], ','),
                });
                at = listing[close..].find('\n').map_or(bytes, |n| close + n + 1);
                text_start = at;
                continue;
            }
        }
        at = line_end;
    }
    if text_start < bytes {
        pieces.push(Piece::Text(&listing[text_start..]));
    }
    pieces
}

/// Where the `{` of an `elements = {` line is.
fn elements_open(line: &str) -> Option<usize> {
    let body = line.trim_start_matches('\t');
    body.starts_with("elements = {")
        .then(|| line.len() - body.len() + "elements = ".len())
}

/// Two tabs: the indent of an object's attributes in a table listing.
const ATTRIBUTE_INDENT: &str = "\t\t";
/// What nft puts before the second and later lines of a wrapped element list.
const CONTINUATION: &str = ",\n\t\t\t     ";

/// The listing with the elements of `dynamic` sets left out, every other set's elements in
/// sorted order, one per line, and the lists in braces inside a line (a rule's anonymous set
/// or map, a chain's devices) sorted too.
///
/// Sorted because the kernel hands out the elements of a hash set in the order of its hash,
/// seeded per set, so two kernels holding the same set may list it in different orders; and
/// because nft orders a list by value, which differs between nodes where a per-node define
/// stands for the value (the listing given has its values replaced by `$name` already).
pub(super) fn canonical(listing: &str, dynamic: &[&str]) -> String {
    let mut out = String::with_capacity(listing.len());
    for piece in pieces(listing) {
        match piece {
            Piece::Text(text) => {
                for line in text.split_inclusive('\n') {
                    sort_inline_lists(line, &mut out);
                }
            }
            Piece::Elements { set, .. } if dynamic.contains(&set) => {}
            Piece::Elements { mut items, .. } => {
                items.sort_unstable();
                out.push_str(ATTRIBUTE_INDENT);
                out.push_str("elements = { ");
                out.push_str(&items.join(CONTINUATION));
                out.push_str(" }\n");
            }
        }
    }
    out
}

/// Appends `line` to `out` with each innermost `{ a, b }` list of the line sorted. Every such
/// list in nft's syntax is a set, a map or a set of devices: unordered.
fn sort_inline_lists(line: &str, out: &mut String) {
    if !line.contains('{') || !line.contains(',') {
        out.push_str(line);
        return;
    }
    let (mut copied, mut open, mut quoted) = (0, None, false);
    for (at, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => open = Some(at),
            '}' if !quoted => {
                let Some(start) = open.take() else {
                    continue;
                };
                let mut items = split_top_level(&line[start + 1..at], ',');
                if items.len() > 1 {
                    items.sort_unstable();
                    out.push_str(&line[copied..=start]);
                    out.push(' ');
                    out.push_str(&items.join(", "));
                    out.push(' ');
                    copied = at;
                }
            }
            _ => {}
        }
    }
    out.push_str(&line[copied..]);
}

/// The elements of set `set` as the listing prints them (none if it lists none).
pub(super) fn elements<'a>(listing: &'a str, set: &str) -> Vec<&'a str> {
    pieces(listing)
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Elements { set: name, items } if name == set => Some(items),
            _ => None,
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As nft v1.0.6 lists a table (with `-s`), a dynamic set's elements included.
    const LISTING: &str = "table inet fw {
\tct helper ftp-std {
\t\ttype \"ftp\" protocol tcp
\t\tl3proto inet
\t}

\tset blocklist {
\t\ttype ipv4_addr
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 10m
\t\telements = { 1.1.1.1 timeout 5m, 2.2.2.2,
\t\t\t     3.3.3.3 }
\t}

\tmap dm {
\t\ttype ipv4_addr . inet_service : verdict
\t\telements = { 5.6.7.8 . 22 comment \"a, b}\" : jump sub,
\t\t\t     1.2.3.4 . 80 : accept }
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr { 10.0.0.2, 10.0.0.1 } drop
\t}
}
";

    #[test]
    fn element_lists_are_found_across_lines_and_quotes() {
        assert_eq!(
            elements(LISTING, "blocklist"),
            ["1.1.1.1 timeout 5m", "2.2.2.2", "3.3.3.3"]
        );
        assert_eq!(
            elements(LISTING, "dm"),
            [
                "5.6.7.8 . 22 comment \"a, b}\" : jump sub",
                "1.2.3.4 . 80 : accept"
            ]
        );
        assert!(elements(LISTING, "input").is_empty());
    }

    #[test]
    fn canonical_drops_dynamic_elements_and_sorts_the_rest() {
        let form = canonical(LISTING, &["blocklist"]);
        assert!(!form.contains("1.1.1.1"), "{form}");
        assert!(form.contains("\t\ttimeout 10m\n\t}\n\n\tmap dm"), "{form}");
        assert!(form.contains(
            "\t\telements = { 1.2.3.4 . 80 : accept,\n\t\t\t     5.6.7.8 . 22 comment \"a, b}\" : jump sub }\n\t}\n"
        ), "{form}");
        // A rule's anonymous set is sorted in its line.
        assert!(
            form.contains("\t\tip saddr { 10.0.0.1, 10.0.0.2 } drop\n"),
            "{form}"
        );
        // A fixpoint, and nothing dropped without a dynamic set.
        assert_eq!(canonical(&form, &["blocklist"]), form);
        let kept = canonical(LISTING, &[]);
        assert!(kept.contains("\t\telements = { 1.1.1.1 timeout 5m,\n\t\t\t     2.2.2.2,"));
        // One more line break, in place of ", ".
        assert_eq!(kept.len(), LISTING.len() + CONTINUATION.len() - 2, "{kept}");
    }

    #[test]
    fn lists_inside_a_line_are_sorted() {
        let sorted = |line: &str| {
            let mut out = String::new();
            sort_inline_lists(line, &mut out);
            out
        };
        assert_eq!(
            sorted("\t\tip saddr { $pool, 10.0.0.15 } tcp dport vmap { 80 : drop, 22 : accept }\n"),
            "\t\tip saddr { $pool, 10.0.0.15 } tcp dport vmap { 22 : accept, 80 : drop }\n"
        );
        assert_eq!(
            sorted("\t\tiifname { \"b{,}\", \"a\" } comment \"{ z, y }\"\n"),
            "\t\tiifname { \"a\", \"b{,}\" } comment \"{ z, y }\"\n"
        );
        for kept in [
            "\tchain input {\n",
            "\t\tadd @s { ip saddr timeout 1m }\n",
            "\t}\n",
        ] {
            assert_eq!(sorted(kept), kept);
        }
    }

    #[test]
    fn top_level_split_keeps_quotes_and_braces() {
        assert_eq!(
            split_top_level(" a , \"b, c\", { d, e } ,", ','),
            ["a", "\"b, c\"", "{ d, e }"]
        );
    }
}
