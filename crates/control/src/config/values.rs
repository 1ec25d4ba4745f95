//! Readers of single values shared by the sections: integers within their key's range,
//! names, interfaces, command lines, networks and addresses.

use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::ConfigError;
use super::keys::Key;
use super::source::Source;
use super::table::INTERFACE;
use super::table::expected;

/// A list as written in the file: the whole list's span and each element's.
pub(super) type RawList = Spanned<Vec<Spanned<String>>>;

/// An integer after its range check, with where it came from (`None`: the default).
pub(super) struct Int {
    pub value: i64,
    pub span: Option<Range<usize>>,
    key: &'static Key,
}

impl Int {
    /// An error about a relation between two keys, located at this one.
    pub(super) fn relation_error(&self, source: &Source<'_>, problem: String) -> ConfigError {
        match &self.span {
            Some(span) => source.bad_value(self.key.table, self.key.name, span, problem),
            // Both keys hold their defaults: cannot happen, the defaults are consistent.
            None => source.error(&(0..0), Some(self.key.path()), None, problem),
        }
    }
}

/// Which of two related keys to blame: the first one if the file sets it, otherwise the
/// second (the first then holds its default, so the second is what the operator changed).
pub(super) fn blame<'a>(first: &'a Int, second: &'a Int) -> &'a Int {
    if first.span.is_none() && second.span.is_some() {
        second
    } else {
        first
    }
}

/// Reads an optional integer key; absent, it is the key's default.
pub(super) fn int(
    source: &Source<'_>,
    key: &'static Key,
    raw: Option<&Spanned<i64>>,
) -> Result<Int, ConfigError> {
    int_or(source, key, raw, key.default_int())
}

/// Reads an optional integer key whose default is not its own (another key's value); a
/// required one is read with `Some`.
pub(super) fn int_or(
    source: &Source<'_>,
    key: &'static Key,
    raw: Option<&Spanned<i64>>,
    default: i64,
) -> Result<Int, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Int {
            value: default,
            span: None,
            key,
        });
    };
    let range = key.range();
    let value = *raw.get_ref();
    let problem = if value < range.lowest() {
        format!("must be at least {}", range.lowest())
    } else if value > range.max {
        format!("must be at most {}", range.max)
    } else if range.zero_is_off && value != 0 && value < range.min {
        format!("must be {}", key.accepts.describe())
    } else if let Some((step, why)) = range.step.filter(|(step, _)| value % step != 0) {
        format!("must be a multiple of {step} ({why})")
    } else {
        return Ok(Int {
            value,
            span: Some(raw.span()),
            key,
        });
    };
    Err(source.bad_value(key.table, key.name, &raw.span(), problem))
}

pub(super) fn millis(value: i64) -> Duration {
    // Invariant: `int` checked that the value is positive.
    Duration::from_millis(value.unsigned_abs())
}

pub(super) fn non_empty_path(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &Spanned<String>,
) -> Result<PathBuf, ConfigError> {
    if raw.get_ref().is_empty() {
        return Err(source.bad_value(
            table,
            key,
            &raw.span(),
            format!("must be {}, not empty", expected(table, key)),
        ));
    }
    Ok(PathBuf::from(raw.get_ref()))
}

/// The line of a span, to point from one error at a related key elsewhere in the file.
pub(super) fn line_of(source: &Source<'_>, span: &Range<usize>) -> usize {
    source.line_column(span.start).0
}

/// A required key of an element of an array of tables (or of a table), located at the
/// element's header when absent.
pub(super) fn required<T>(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: Option<Spanned<T>>,
    table_span: &Range<usize>,
) -> Result<Spanned<T>, ConfigError> {
    raw.ok_or_else(|| source.missing(table, key, Some(table_span)))
}

/// A name of 1 to the key's most characters from `[A-Za-z0-9_-]` (and `.` when `dot`).
pub(super) fn simple_name(
    source: &Source<'_>,
    key: &Key,
    raw: &Spanned<String>,
    dot: bool,
) -> Result<String, ConfigError> {
    let name = raw.get_ref();
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dot && c == '.');
    if name.is_empty() || name.chars().count() > key.max_chars() || !name.chars().all(allowed) {
        return Err(source.bad_value(
            key.table,
            key.name,
            &raw.span(),
            format!("must be {}", key.accepts.describe()),
        ));
    }
    Ok(name.clone())
}

/// A Linux interface name: what the kernel's `dev_valid_name` accepts.
pub(super) fn interface_name(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &Spanned<String>,
) -> Result<String, ConfigError> {
    let name = raw.get_ref();
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if !valid {
        return Err(source.bad_value(table, key, &raw.span(), format!("must be {INTERFACE}")));
    }
    Ok(name.clone())
}

/// A list of interface names, without repeats.
pub(super) fn interface_list(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: Option<&RawList>,
) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    for raw in raw.map_or(&[][..], |list| list.get_ref()) {
        let name = interface_name(source, table, key, raw)?;
        if names.contains(&name) {
            return Err(source.bad_value(table, key, &raw.span(), "is listed twice"));
        }
        names.push(name);
    }
    Ok(names)
}

/// A command line: argv, run without a shell.
pub(super) fn argv(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &RawList,
) -> Result<Vec<String>, ConfigError> {
    let Some(program) = raw.get_ref().first() else {
        return Err(source.bad_value(
            table,
            key,
            &raw.span(),
            format!("must not be empty: must be {}", expected(table, key)),
        ));
    };
    if program.get_ref().is_empty() {
        return Err(source.bad_value(
            table,
            key,
            &program.span(),
            "the program (the first element) must not be empty",
        ));
    }
    if let Some(bad) = raw
        .get_ref()
        .iter()
        .find(|arg| arg.get_ref().contains('\0'))
    {
        return Err(source.bad_value(table, key, &bad.span(), "must not contain NUL characters"));
    }
    Ok(raw
        .get_ref()
        .iter()
        .map(|arg| arg.get_ref().clone())
        .collect())
}

/// An IP network (`"10.0.1.1/24"`).
pub(super) fn ip_net(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &Spanned<String>,
) -> Result<IpNet, ConfigError> {
    raw.get_ref().parse::<IpNet>().map_err(|_| {
        source.bad_value(
            table,
            key,
            &raw.span(),
            format!(
                "not a network (address/prefix length); must be {}",
                expected(table, key)
            ),
        )
    })
}

/// "IPv4" or "IPv6", for messages.
pub(super) fn family_name(ipv6: bool) -> &'static str {
    if ipv6 { "IPv6" } else { "IPv4" }
}

/// An address a VRRP peer or source can have: of the instance's family and unicast.
pub(super) fn peer_address(
    source: &Source<'_>,
    table: &str,
    key: &str,
    raw: &Spanned<String>,
    ipv6: bool,
) -> Result<IpAddr, ConfigError> {
    let bad = |problem: String| source.bad_value(table, key, &raw.span(), problem);
    let addr: IpAddr = raw.get_ref().parse().map_err(|_| {
        bad(format!(
            "not an IP address (host names are not resolved); must be {}",
            expected(table, key)
        ))
    })?;
    if addr.is_ipv6() != ipv6 {
        return Err(bad(format!(
            "is {} but the instance's addresses are {}; must be {}",
            family_name(addr.is_ipv6()),
            family_name(ipv6),
            expected(table, key)
        )));
    }
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() || is_broadcast(addr) {
        return Err(bad("must be a unicast address".to_string()));
    }
    Ok(addr)
}

pub(super) fn is_broadcast(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(v4) if v4.is_broadcast())
}

/// IPv6 link-local unicast, fe80::/10.
pub(super) fn is_link_local_v6(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(v6) if v6.is_unicast_link_local())
}
