//! Set elements as runtime state: parsed from what nft lists, written back as nft takes them.

use std::fmt;
use std::time::Duration;

use super::listing::split_top_level;

/// One element of a dynamic set or map, with its remaining lifetime: what
/// [`read_elements`](super::NftablesBackend::read_elements) reports and
/// [`add_elements`](super::NftablesBackend::add_elements) writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetElement {
    /// The key as nft prints it: `10.0.0.1`, `10.0.0.1 . 80`, `10.0.0.0/24`.
    pub key: String,
    /// A map element's value as nft prints it (`accept`, `jump sub`); `None` in a set.
    pub value: Option<String>,
    /// The element's own timeout; `None`: the set's default, or none. nft lists a timeout
    /// only where it differs from the set's.
    pub timeout: Option<Duration>,
    /// How long until it expires; `None`: never.
    pub expires: Option<Duration>,
    /// Its comment, without the quotes.
    pub comment: Option<String>,
}

impl SetElement {
    /// Parses one element as `nft list set` prints it (`1.2.3.4 . 80 timeout 1h expires
    /// 59m59s968ms comment "x" : accept`); a counter's values are runtime statistics, left out.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let tokens = split_top_level(text, ' ');
        let (key_tokens, value) = match tokens.iter().position(|t| *t == ":") {
            Some(at) => (&tokens[..at], Some(tokens[at + 1..].join(" "))),
            None => (&tokens[..], None),
        };
        let mut element = Self {
            key: String::new(),
            value: value.filter(|v| !v.is_empty()),
            timeout: None,
            expires: None,
            comment: None,
        };
        let mut key = Vec::new();
        let mut rest = key_tokens.iter();
        while let Some(&token) = rest.next() {
            let mut argument = || {
                rest.next()
                    .copied()
                    .ok_or_else(|| format!("{token} without a value in element {text:?}"))
            };
            match token {
                "timeout" => element.timeout = Some(parse_duration(argument()?)?),
                "expires" => element.expires = Some(parse_duration(argument()?)?),
                "comment" => {
                    let quoted = argument()?;
                    let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"'));
                    element.comment = Some(inner.unwrap_or(quoted).to_owned());
                }
                "counter" => {
                    // `counter packets N bytes M`: statistics of this kernel.
                    while rest
                        .clone()
                        .next()
                        .is_some_and(|t| *t == "packets" || *t == "bytes")
                    {
                        rest.next();
                        rest.next();
                    }
                }
                _ => key.push(token),
            }
        }
        if key.is_empty() {
            return Err(format!("element {text:?} has no key"));
        }
        element.key = key.join(" ");
        Ok(element)
    }

    /// The element as `add element` takes it, with its own timeout and what is left of it.
    /// An expiry beyond the element's own timeout is cut to it (the kernel refuses it: ERANGE).
    pub(super) fn to_nft(&self) -> String {
        let mut out = self.key.clone();
        if let Some(timeout) = self.timeout {
            out.push_str(&format!(" timeout {}", NftDuration(timeout)));
        }
        if let Some(expires) = self.expires {
            let expires = self.timeout.map_or(expires, |t| expires.min(t));
            out.push_str(&format!(" expires {}", NftDuration(expires)));
        }
        if let Some(comment) = &self.comment {
            out.push_str(&format!(" comment \"{comment}\""));
        }
        if let Some(value) = &self.value {
            out.push_str(" : ");
            out.push_str(value);
        }
        out
    }

    /// Checks that the element's text can be written into a script as one element and nothing
    /// else: elements come from the peer, and a key such as `1.1.1.1 }; flush ruleset; add
    /// element ... {` would otherwise run as commands of this node's transaction.
    pub(super) fn check(&self) -> Result<(), String> {
        let texts = [Some(&self.key), self.value.as_ref()];
        for text in texts.into_iter().flatten() {
            let unquoted: String = text.split('"').step_by(2).collect();
            if text.is_empty()
                || text.matches('"').count() % 2 != 0
                || text.chars().any(char::is_control)
                || unquoted.contains(|c| ";{},#".contains(c))
            {
                return Err(format!("{text:?} is not one element's key or value"));
            }
        }
        if let Some(comment) = &self.comment
            && (comment.contains('"') || comment.chars().any(char::is_control))
        {
            return Err(format!("{comment:?} is not an element's comment"));
        }
        Ok(())
    }

    /// Whether it has expired (nft may list an element in its last millisecond).
    pub(super) fn expired(&self) -> bool {
        self.expires.is_some_and(|e| e.as_millis() == 0)
    }
}

/// A duration as nft writes it: `1d2h3m4s5ms`, zero parts left out.
struct NftDuration(Duration);

impl fmt::Display for NftDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0ms");
        }
        for (unit, per) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms >= per {
                write!(f, "{}{unit}", ms / per)?;
                ms %= per;
            }
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

/// Parses nft's `1d2h3m4s5ms` (any of the parts, in that order).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration");
    let mut ms: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let letters = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let per = match &rest[..letters] {
            "d" => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1000,
            "ms" => 1,
            _ => return Err(bad()),
        };
        ms = number
            .checked_mul(per)
            .and_then(|n| ms.checked_add(n))
            .ok_or_else(bad)?;
        rest = &rest[letters..];
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn elements_as_nft_lists_them() {
        let e = SetElement::parse(
            "5.6.7.8 . 22 timeout 2m expires 1m59s968ms comment \"a, b}\" : jump sub",
        )
        .unwrap();
        assert_eq!(
            e,
            SetElement {
                key: "5.6.7.8 . 22".into(),
                value: Some("jump sub".into()),
                timeout: Some(2 * MIN),
                expires: Some(MIN + Duration::from_millis(59_968)),
                comment: Some("a, b}".into()),
            }
        );
        assert_eq!(
            e.to_nft(),
            "5.6.7.8 . 22 timeout 2m expires 1m59s968ms comment \"a, b}\" : jump sub"
        );
        let counted =
            SetElement::parse("9.9.9.9 counter packets 3 bytes 180 expires 1d2h").unwrap();
        assert_eq!(counted.key, "9.9.9.9");
        assert_eq!(counted.expires, Some(Duration::from_secs(26 * 3600)));
        assert_eq!(counted.to_nft(), "9.9.9.9 expires 1d2h");
        let plain = SetElement::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            (plain.value, plain.timeout, plain.expires),
            (None, None, None)
        );
    }

    #[test]
    fn an_expiry_beyond_the_timeout_is_cut() {
        let mut e = SetElement::parse("1.1.1.1 timeout 1h").unwrap();
        e.expires = Some(70 * MIN);
        assert_eq!(e.to_nft(), "1.1.1.1 timeout 1h expires 1h");
    }

    #[test]
    fn only_one_element_passes_the_check() {
        let ok = SetElement::parse("\"eth0\" . 10.0.0.1 comment \"x; y\" : jump sub").unwrap();
        assert_eq!(ok.check(), Ok(()));
        for key in [
            "1.1.1.1 }; flush ruleset; add element ip t s { 2.2.2.2",
            "1.1.1.1, 2.2.2.2",
            "\"a",
            "a\nb",
            "a # b",
        ] {
            let mut bad = ok.clone();
            bad.key = key.into();
            assert!(bad.check().is_err(), "{key:?} passed");
        }
        let mut bad = ok.clone();
        bad.comment = Some("x\" } ; flush ruleset".into());
        assert!(bad.check().is_err());
        let mut bad = ok;
        bad.value = Some("accept }".into());
        assert!(bad.check().is_err());
    }

    #[test]
    fn bad_elements_are_errors() {
        assert!(SetElement::parse("1.1.1.1 timeout").is_err());
        assert!(SetElement::parse("1.1.1.1 expires 5x").is_err());
        assert!(SetElement::parse("1.1.1.1 expires m").is_err());
        assert!(SetElement::parse("timeout 1m").is_err());
        assert_eq!(
            parse_duration("1d1h1m1s1ms"),
            Ok(Duration::from_millis(90_061_001))
        );
    }
}
