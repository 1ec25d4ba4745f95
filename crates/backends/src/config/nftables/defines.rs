//! Per-node values: this node's values become `$name` in the canonical form, and an apply
//! defines the names it uses as this node's values.

use super::config::Define;

/// Whether `c` continues a token: a value found inside a longer token (`10.0.0.1` in
/// `10.0.0.10`, `lan` in `$lan2`) is not that value. A superset of what nft's scanner takes
/// into an identifier (`src/scanner.l`), so `$name` never runs into the text after it.
fn continues_token(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-./:\\$@".contains(c)
}

/// `text` with each define's value, where it stands as a whole token outside a quoted string
/// (or is the whole quoted string, for a value written with its quotes), replaced by `$name`.
///
/// Values never contain one another (see `config::check_defines`), so at most one matches at
/// any position.
pub(super) fn substitute(text: &str, defines: &[Define]) -> String {
    if defines.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    let mut previous: Option<char> = None;
    let mut at = 0;
    while let Some(c) = text[at..].chars().next() {
        if !quoted && !previous.is_some_and(continues_token) {
            let rest = &text[at..];
            let found = defines.iter().find(|d| {
                rest.starts_with(&d.value)
                    && !rest[d.value.len()..]
                        .chars()
                        .next()
                        .is_some_and(continues_token)
            });
            if let Some(define) = found {
                out.push('$');
                out.push_str(&define.name);
                at += define.value.len();
                previous = define.value.chars().last();
                continue;
            }
        }
        if c == '"' {
            quoted = !quoted;
        }
        out.push(c);
        previous = Some(c);
        at += c.len_utf8();
    }
    out
}

/// The defines `content` refers to (`$name` outside quoted strings), in the order given.
pub(super) fn used<'a>(content: &str, defines: &'a [Define]) -> Vec<&'a Define> {
    let mut names = Vec::new();
    let mut quoted = false;
    let mut chars = content.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '$' if !quoted => {
                let start = at + 1;
                let mut end = start;
                while let Some(&(i, next)) = chars.peek() {
                    if !continues_token(next) || next == '$' {
                        break;
                    }
                    end = i + next.len_utf8();
                    chars.next();
                }
                names.push(&content[start..end]);
            }
            _ => {}
        }
    }
    defines
        .iter()
        .filter(|d| names.contains(&d.name.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defines(pairs: &[(&str, &str)]) -> Vec<Define> {
        pairs
            .iter()
            .map(|(name, value)| Define {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect()
    }

    #[test]
    fn whole_tokens_are_replaced() {
        let d = defines(&[
            ("pool", "10.0.0.1"),
            ("lan", "\"eth0\""),
            ("net", "fd00::1"),
        ]);
        let text = "ip saddr 10.0.0.1 oifname \"eth0\" snat to 10.0.0.1\n\
                    ip saddr 10.0.0.10 ip daddr 10.0.0.1/24 ip6 saddr fd00::1 comment \"10.0.0.1\"\n\
                    iifname \"eth0.5\" ip daddr { 10.0.0.1, 10.0.0.1-10.0.0.3 }";
        assert_eq!(
            substitute(text, &d),
            "ip saddr $pool oifname $lan snat to $pool\n\
             ip saddr 10.0.0.10 ip daddr 10.0.0.1/24 ip6 saddr $net comment \"10.0.0.1\"\n\
             iifname \"eth0.5\" ip daddr { $pool, 10.0.0.1-10.0.0.3 }"
        );
        assert_eq!(substitute(text, &[]), text);
    }

    #[test]
    fn names_used_outside_quotes() {
        let d = defines(&[("pool", "1"), ("pool2", "2"), ("lan", "3"), ("x", "4")]);
        let names: Vec<&str> = used("snat to $pool2; iifname $lan comment \"$x\" $pool.5", &d)
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names, ["pool2", "lan"]);
    }
}
