//! `failoverctl config status`, `config diff` and `config sync`.

use std::fmt::Write as _;

use failoverd_control::protocol::{
    ConfigDiff, ConfigSyncOutcome, ConfigSyncReply, ConfigSyncStatus, ConfigUnitState,
    ConfigUnitView, ConfigVersionsView,
};

use super::{columns, row};

/// Hex digits of a hash shown for people: enough to tell versions apart at a glance.
const SHORT_HASH: usize = 12;

/// `failoverctl config status`: mode, part and status, the versions, a row per unit (its hash
/// on each node, last sync and result), each failure's message once, the non-zero counters.
pub(crate) fn config_status(status: &ConfigSyncStatus) -> String {
    let mut out = String::new();
    row(
        &mut out,
        "config sync",
        format_args!(
            "mode {}  part {}  status {} ({})",
            status.mode, status.part, status.status, status.reason
        ),
    );
    row(&mut out, "versions", versions(&status.versions));
    let peer = match (&status.peer_versions, status.versions_match) {
        (None, _) => "peer: no offer heard yet".to_string(),
        (Some(_), Some(true)) => "peer: the same".to_string(),
        (Some(peer), _) => format!(
            "peer: {}  (they differ: nothing is synced until they match)",
            versions(peer)
        ),
    };
    row(&mut out, "", peer);
    if status.units.is_empty() {
        row(&mut out, "units", "none configured");
    }
    let cells: Vec<Vec<String>> = status.units.iter().map(unit_cells).collect();
    for (i, line) in columns(&cells).into_iter().enumerate() {
        row(&mut out, if i == 0 { "units" } else { "" }, line);
    }
    failures(&mut out, &status.units);
    let counters: Vec<(&String, u64)> = status
        .counters
        .iter()
        .map(|(name, value)| (name, *value))
        .filter(|(_, value)| *value > 0)
        .collect();
    let name_width = counters.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let value_width = counters
        .iter()
        .map(|(_, v)| v.to_string().len())
        .max()
        .unwrap_or(0);
    for (i, (name, value)) in counters.iter().enumerate() {
        row(
            &mut out,
            if i == 0 { "counters" } else { "" },
            format_args!("{name:<name_width$}  {value:>value_width$}"),
        );
    }
    out
}

/// A node's versions: failoverd's, the schema, then each backend's.
fn versions(versions: &ConfigVersionsView) -> String {
    let mut text = format!(
        "failoverd {}  schema {}",
        versions.failoverd, versions.schema
    );
    for version in versions.backends.values() {
        let _ = write!(text, "  {version}");
    }
    text
}

/// What a node holds of a unit, in one cell: the short hash, or the state.
fn held(state: Option<ConfigUnitState>, hash: Option<&str>) -> String {
    match (state, hash) {
        (Some(ConfigUnitState::Present), Some(hash)) => hash.chars().take(SHORT_HASH).collect(),
        (Some(state), _) => state.to_string(),
        (None, _) => "unknown".to_string(),
    }
}

fn unit_cells(unit: &ConfigUnitView) -> Vec<String> {
    let last = match (unit.last_sync_unix_ms, unit.last_result) {
        (Some(at), Some(result)) => format!("{result} {}", utc(at)),
        (Some(at), None) => format!("synced {}", utc(at)),
        (None, _) => "never synced".to_string(),
    };
    vec![
        unit.kind.to_string(),
        unit.name.clone(),
        if unit.in_sync { "in sync" } else { "differs" }.to_string(),
        format!(
            "here {}",
            held(Some(unit.local_state), unit.local_hash.as_deref())
        ),
        format!("peer {}", held(unit.peer_state, unit.peer_hash.as_deref())),
        last,
    ]
}

/// Each sync that did not apply, once (a sync spans several units): the unit that failed it,
/// when, and the kernel's or the OS's message, a line per line.
fn failures(out: &mut String, units: &[ConfigUnitView]) {
    let mut shown: Vec<(Option<u64>, &Option<String>, &str)> = Vec::new();
    for unit in units {
        let Some(outcome) = unit
            .last_result
            .filter(|o| *o != ConfigSyncOutcome::Applied)
        else {
            continue;
        };
        let key = (
            unit.last_sync_unix_ms,
            &unit.failed_unit,
            unit.last_message.as_str(),
        );
        if shown.contains(&key) {
            continue;
        }
        shown.push(key);
        let mut line = match &unit.failed_unit {
            Some(failed) => failed.clone(),
            None => format!("{} {}", unit.kind, unit.name),
        };
        if let Some(at) = unit.last_sync_unix_ms {
            let _ = write!(line, " at {}", utc(at));
        }
        row(out, outcome.name(), line);
        for message in unit.last_message.lines() {
            row(out, "", format_args!("  {message}"));
        }
    }
}

/// `failoverctl config diff`: per unit whether it is the same on both nodes, and the unified
/// diff of those that are not.
pub(crate) fn config_diff(diff: &ConfigDiff) -> String {
    let mut out = String::new();
    for unit in &diff.units {
        let name = format!("{} {}", unit.kind, unit.name);
        let here = held(Some(unit.local_state), unit.local_hash.as_deref());
        let peer = held(Some(unit.peer_state), unit.peer_hash.as_deref());
        if unit.diff.is_empty() {
            let _ = writeln!(out, "{name}: the same on both nodes ({here})");
        } else {
            let _ = writeln!(out, "{name}: differs (here {here}, peer {peer})");
            out.push_str(&unit.diff);
            if !unit.diff.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    let differing = diff.units.iter().filter(|u| !u.diff.is_empty()).count();
    let _ = match (diff.units.len(), differing) {
        (0, _) => writeln!(out, "no units configured"),
        (n, 0) => writeln!(out, "no differences: {n} units the same on both nodes"),
        (n, d) => writeln!(out, "{d} of {n} units differ"),
    };
    out
}

/// `failoverctl config sync`: what happens now; a refusal is an error (exit status 1).
pub(crate) fn config_sync(reply: &ConfigSyncReply) -> anyhow::Result<String> {
    if !reply.accepted {
        anyhow::bail!("config sync refused: {}", reply.message);
    }
    Ok(format!("{}\n", reply.message))
}

/// Unix time in milliseconds as a UTC date and time, `2026-12-08 00:01:00 UTC`.
pub(crate) fn utc(unix_ms: u64) -> String {
    const DAY: u64 = 86_400;
    let secs = unix_ms / 1000;
    let (days, time) = (secs / DAY, secs % DAY);
    let (year, month, day) = civil(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

/// The Gregorian date of a day count since 1970-01-01: counted in 400-year eras of 146,097
/// days from 0000-03-01, so that the leap day ends each year.
fn civil(days: u64) -> (u64, u64, u64) {
    // 719,468 days from 0000-03-01 to 1970-01-01.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 153 days in every five.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
