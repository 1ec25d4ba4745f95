//! Human output: aligned, one fact per column, units on every number. Each function returns
//! the whole text so it can be tested without a terminal.

use std::fmt::Write as _;

mod config_sync;

pub(crate) use config_sync::{config_diff, config_status, config_sync};

use failoverd_control::protocol::{
    EventList, Generated, HeartbeatInfo, MaintenanceDone, PeerInfo, SessionCounts, SessionList,
    SessionView, Status, SwitchoverDone, TakeoverKind, TakeoverStatus, TrackView, TupleView,
    VrrpGroupView, VrrpInstanceView,
};

/// Width of the label column of `status` and `peer`: the longest label and two spaces.
const LABEL: usize = 14;

/// Appends `label` padded to the label column, then `value`.
fn row(out: &mut String, label: &str, value: impl std::fmt::Display) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{label:<LABEL$}{value}");
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// A duration in milliseconds, in the largest unit that keeps it short: `850 ms`, `12.3 s`,
/// `5 min 12 s`, `2 h 05 min`, `3 d 4 h`.
pub(crate) fn millis(ms: u64) -> String {
    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..MINUTE => format!("{:.1} s", ms as f64 / 1000.0),
        MINUTE..HOUR => format!("{} min {} s", ms / MINUTE, ms % MINUTE / 1000),
        HOUR..DAY => format!("{} h {:02} min", ms / HOUR, ms % HOUR / MINUTE),
        _ => format!("{} d {} h", ms / DAY, ms % DAY / HOUR),
    }
}

/// A duration in microseconds: `180 µs`, `2.1 ms`, `1.25 s`.
pub(crate) fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// `failoverctl status`.
pub(crate) fn status(status: &Status) -> String {
    let mut out = String::new();
    let node = &status.node;
    row(
        &mut out,
        "node",
        format_args!(
            "{} ({})  state {} ({})  role {}  ready {}",
            node.name,
            node.node_id,
            status.state.name(),
            millis(status.state_since_ms),
            status.role.name(),
            yes_no(status.ready),
        ),
    );
    if !status.not_ready.is_empty() {
        row(&mut out, "not ready", status.not_ready.join("; "));
    }
    row(
        &mut out,
        "pair",
        format_args!(
            "{}  backup {}  priority {}  preempt {}",
            node.pair_id,
            node.backup,
            node.priority,
            yes_no(node.preempt)
        ),
    );
    row(&mut out, "fingerprint", &node.fingerprint);
    row(&mut out, "uptime", millis(status.uptime_ms));
    match &status.peer {
        Some(peer) => peer_summary(&mut out, peer),
        None => row(&mut out, "peer", "unknown"),
    }
    if let Some(path) = &status.heartbeat {
        heartbeat(&mut out, path);
    }
    takeover(&mut out, &status.takeover);
    let s = &status.sessions;
    row(
        &mut out,
        "sessions",
        format_args!(
            "{} total  {} owned  {} peer-owned  {} pending changes  {} batches in flight  ({} table)",
            s.total,
            s.owned,
            s.peer_owned,
            s.pending_changes,
            s.in_flight_batches,
            status.node.backend
        ),
    );
    let r = &status.replication;
    row(
        &mut out,
        "replication",
        format_args!(
            "epoch {}  bulk sent {}  bulk received {}",
            r.epoch,
            yes_no(r.bulk_sent),
            yes_no(r.bulk_received)
        ),
    );
    if r.lag_samples == 0 {
        row(&mut out, "lag", "no samples yet");
    } else {
        row(
            &mut out,
            "lag",
            format_args!(
                "p50 {}  p99 {}  max {}  ({} samples)",
                micros(r.lag_p50_us),
                micros(r.lag_p99_us),
                micros(r.lag_max_us),
                r.lag_samples
            ),
        );
    }
    // Zero counters are noise: a healthy node has dozens of drop counters at zero.
    let counters: Vec<(&String, &u64)> = status.counters.iter().filter(|(_, v)| **v > 0).collect();
    let name_width = counters.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let value_width = counters
        .iter()
        .map(|(_, v)| v.to_string().len())
        .max()
        .unwrap_or(0);
    for (i, (name, value)) in counters.iter().enumerate() {
        let label = if i == 0 { "counters" } else { "" };
        row(
            &mut out,
            label,
            format_args!("{name:<name_width$}  {value:>value_width$}"),
        );
    }
    out
}

/// How the traffic moves, in `status`: nothing for a plain election node; the VRRP group,
/// FRR and hooks when there are any.
fn takeover(out: &mut String, takeover: &TakeoverStatus) {
    if takeover.mode == TakeoverKind::Election
        && takeover.group.is_none()
        && takeover.routing.is_none()
        && takeover.hooks.is_none()
    {
        return;
    }
    match &takeover.group {
        Some(group) => vrrp_group(out, takeover.mode, group),
        None => row(out, "takeover", takeover.mode),
    }
    if let Some(routing) = &takeover.routing {
        let mut line = format!("FRR {}", routing.state);
        if let Some(err) = &routing.last_error {
            let _ = write!(line, "  last error: {err}");
        }
        row(out, "routing", line);
    }
    if let Some(hooks) = &takeover.hooks {
        row(
            out,
            "hooks",
            hooks.last.as_deref().unwrap_or("none run yet"),
        );
    }
}

/// The VRRP group: its state and why, preemption, then a row per instance and per tracker.
fn vrrp_group(out: &mut String, mode: TakeoverKind, group: &VrrpGroupView) {
    row(
        out,
        "takeover",
        format_args!("{mode}  group {} ({})", group.state, group.reason),
    );
    row(
        out,
        "",
        format_args!(
            "ready to preempt {}  maintenance {}  priority penalty {}  peer check {}  {}",
            yes_no(group.ready_to_preempt),
            if group.maintenance { "on" } else { "off" },
            group.priority_penalty,
            if group.peer_check {
                format!("on (peer {})", group.peer)
            } else {
                "off".to_string()
            },
            match group.silent_intervals {
                0 => "silent networks: ignored".to_string(),
                k => format!("silent networks: the link decides after {k} intervals"),
            }
        ),
    );
    if let Some(why) = &group.not_preempting {
        row(out, "", format_args!("not preempting: {why}"));
    }
    if let Some(fault) = &group.fault {
        row(out, "", format_args!("fault: {fault}"));
    }
    let instances: Vec<Vec<String>> = group.instances.iter().map(instance_cells).collect();
    for (i, line) in columns(&instances).into_iter().enumerate() {
        row(out, if i == 0 { "instances" } else { "" }, line);
    }
    let tracks: Vec<Vec<String>> = group.tracks.iter().map(track_cells).collect();
    for (i, line) in columns(&tracks).into_iter().enumerate() {
        row(out, if i == 0 { "tracks" } else { "" }, line);
    }
}

/// At most this many virtual addresses are listed on an instance's row.
const SHOWN_ADDRESSES: usize = 3;

fn instance_cells(instance: &VrrpInstanceView) -> Vec<String> {
    let priority = if instance.priority == instance.configured_priority {
        format!("priority {}", instance.priority)
    } else {
        format!(
            "priority {} ({} configured)",
            instance.priority, instance.configured_priority
        )
    };
    let master = match (&instance.master_address, instance.master_priority) {
        (Some(address), Some(priority)) => format!("master {address} ({priority})"),
        (Some(address), None) => format!("master {address}"),
        (None, _) => "master unknown".to_string(),
    };
    let mut addresses = if instance.addresses.len() > SHOWN_ADDRESSES {
        let shown = SHOWN_ADDRESSES - 1;
        format!(
            "{} +{} more",
            instance.addresses[..shown].join(" "),
            instance.addresses.len() - shown
        )
    } else {
        instance.addresses.join(" ")
    };
    addresses.insert_str(
        0,
        if instance.holds_addresses {
            "holds "
        } else {
            "not holding "
        },
    );
    let unicast = if instance.unicast_peers.is_empty() {
        String::new()
    } else {
        format!("unicast to {}", instance.unicast_peers.join(" "))
    };
    vec![
        instance.name.clone(),
        format!("on {}", instance.interface),
        format!("vrid {}", instance.vrid),
        instance.family.to_string(),
        instance.state.to_string(),
        priority,
        master,
        addresses,
        format!(
            "adverts every {}: {} sent {} received {} malformed",
            millis(instance.advert_interval_ms),
            instance.adverts_sent,
            instance.adverts_received,
            instance.malformed_dropped
        ),
        network(instance),
        suspicious(instance),
        unicast,
    ]
}

/// Whether the network behind the instance's port is alive, whether a master is heard on it,
/// and what the peer reports of it.
fn network(instance: &VrrpInstanceView) -> String {
    let mut text = format!(
        "port {}",
        if instance.port_hears {
            "hears"
        } else {
            "hears nothing"
        }
    );
    if instance.silent_for > 0 {
        let _ = write!(text, ", no master for {} intervals", instance.silent_for);
    }
    if let (Some(silent), Some(hears)) = (instance.peer_silent, instance.peer_hears) {
        let _ = write!(
            text,
            "; peer: {}, port {}",
            if silent {
                "no master"
            } else {
                "hears a master or is master"
            },
            if hears { "hears" } else { "hears nothing" }
        );
    }
    text
}

/// What shows an attack, only where non-zero: drops per reason, adverts the peer
/// contradicts, answers held back.
fn suspicious(instance: &VrrpInstanceView) -> String {
    let d = &instance.dropped;
    [
        ("family", d.family),
        ("TTL", d.ttl),
        ("version", d.version),
        ("type", d.kind),
        ("length", d.length),
        ("checksum", d.checksum),
        ("unknown peer", d.unknown_peer),
        ("contradicted by the peer", instance.peer_contradicted),
        ("answers limited", instance.answers_limited),
    ]
    .into_iter()
    .filter(|&(_, n)| n > 0)
    .map(|(what, n)| format!("{n} {what}"))
    .collect::<Vec<_>>()
    .join(", ")
}

fn track_cells(track: &TrackView) -> Vec<String> {
    vec![
        track.kind.to_string(),
        track.name.clone(),
        if track.up { "up" } else { "down" }.to_string(),
        if track.weight == 0 {
            "fault while down".to_string()
        } else {
            format!("priority -{} while down", track.weight)
        },
    ]
}

/// Rows of cells as lines with every column padded to its widest cell, two spaces apart.
fn columns(rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                let _ = write!(line, "{cell:<width$}  ");
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// The heartbeat path in one row of `status`, and why it holds this node standby.
fn heartbeat(out: &mut String, path: &HeartbeatInfo) {
    let mut line = format!("{}  {}", path.address, path.state.name());
    if let Some(role) = path.peer_role {
        let _ = write!(line, "  peer {}", role.name());
    }
    if let Some(state) = path.peer_state {
        let _ = write!(line, "  state {}", state.name());
    }
    if let Some(ago) = path.last_heard_ms_ago {
        let _ = write!(line, "  last heard {} ago", millis(ago));
    }
    row(out, "heartbeat", line);
    if path.holds_standby {
        row(
            out,
            "",
            "standby: the failover link is down but the peer is heard on the heartbeat path",
        );
    }
}

/// The peer in two rows of `status`: what is known, then timing and problems.
fn peer_summary(out: &mut String, peer: &PeerInfo) {
    let mut line = format!("{}  link {}", peer.address, peer.link.name());
    if let Some(id) = &peer.node_id {
        let _ = write!(line, "  node {id}");
    }
    if let Some(state) = peer.state {
        let _ = write!(line, "  state {}", state.name());
    }
    if let Some(role) = peer.role {
        let _ = write!(line, "  role {}", role.name());
    }
    if let Some(priority) = peer.priority {
        let _ = write!(line, "  priority {priority}");
    }
    if let Some(ready) = peer.ready {
        let _ = write!(line, "  ready {}", yes_no(ready));
    }
    row(out, "peer", line);
    let mut timing = Vec::new();
    if let Some(ago) = peer.last_hello_ms_ago {
        timing.push(format!("last hello {} ago", millis(ago)));
    }
    if let Some(rtt) = peer.rtt_us {
        timing.push(format!("rtt {}", micros(rtt)));
    }
    if !timing.is_empty() {
        row(out, "", timing.join("  "));
    }
    if let Some(why) = &peer.incompatibility {
        row(out, "", format_args!("incompatible: {why}"));
    }
    if let Some(warning) = &peer.timer_mismatch {
        row(out, "", format_args!("warning: {warning}"));
    }
}

/// `failoverctl peer`: one fact per row; "-" for what the peer has not reported yet.
pub(crate) fn peer(peer: &PeerInfo) -> String {
    fn or_dash(value: Option<impl ToString>) -> String {
        value.map_or_else(|| "-".to_string(), |v| v.to_string())
    }
    let mut out = String::new();
    row(&mut out, "address", &peer.address);
    row(&mut out, "link", peer.link.name());
    row(&mut out, "node", or_dash(peer.node_id.as_ref()));
    row(&mut out, "state", or_dash(peer.state.map(|s| s.name())));
    row(&mut out, "role", or_dash(peer.role.map(|r| r.name())));
    row(&mut out, "priority", or_dash(peer.priority));
    row(&mut out, "ready", or_dash(peer.ready.map(yes_no)));
    let ago = peer
        .last_hello_ms_ago
        .map(|ms| format!("{} ago", millis(ms)));
    row(&mut out, "last hello", or_dash(ago));
    row(&mut out, "rtt", or_dash(peer.rtt_us.map(micros)));
    row(&mut out, "protocol", or_dash(peer.protocol.as_ref()));
    row(
        &mut out,
        "hello",
        or_dash(peer.hello_interval_ms.map(millis)),
    );
    row(&mut out, "dead", or_dash(peer.dead_interval_ms.map(millis)));
    if let Some(why) = &peer.incompatibility {
        row(&mut out, "incompatible", why);
    }
    if let Some(warning) = &peer.timer_mismatch {
        row(&mut out, "timers", warning);
    }
    out
}

/// `failoverctl sessions count`.
pub(crate) fn counts(counts: &SessionCounts) -> String {
    let rows = [
        ("total", counts.total),
        ("owned", counts.owned),
        ("peer-owned", counts.peer_owned),
        ("pending changes", counts.pending_changes),
        ("in-flight batches", counts.in_flight_batches),
    ];
    let width = rows
        .iter()
        .map(|(_, v)| v.to_string().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<19}{value:>width$}");
    }
    out
}

fn tuple(t: &TupleView) -> String {
    let endpoint = |addr: std::net::IpAddr, port: u16| match addr {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
    };
    format!(
        "{} -> {}",
        endpoint(t.src, t.sport),
        endpoint(t.dst, t.dport)
    )
}

/// What a session has beyond the common columns, or "" when nothing.
fn extras(s: &SessionView) -> String {
    let mut parts = Vec::new();
    if s.zone != 0 {
        parts.push(format!("zone {}", s.zone));
    }
    if s.mark != 0 {
        parts.push(format!("mark {:#x}", s.mark));
    }
    if let Some(helper) = &s.helper {
        parts.push(format!("helper {helper}"));
    }
    if let Some(labels) = &s.labels {
        parts.push(format!("labels {labels}"));
    }
    parts.join(" ")
}

/// `failoverctl sessions list`: a table with a column per fact, widths fitted to the content.
pub(crate) fn sessions(list: &SessionList) -> String {
    let mut out = String::new();
    if list.sessions.is_empty() {
        let _ = writeln!(out, "no matching sessions ({} in the table)", list.total);
        return out;
    }
    let mut rows = vec![[
        "PROTO".to_string(),
        "ORIGINAL".to_string(),
        "REPLY".to_string(),
        "OWNER".to_string(),
        "STATE".to_string(),
        "TIMEOUT".to_string(),
        "EXTRA".to_string(),
    ]];
    for s in &list.sessions {
        rows.push([
            s.proto.to_string(),
            tuple(&s.orig),
            tuple(&s.reply),
            if s.local {
                "local".to_string()
            } else {
                s.owner.to_string()
            },
            s.tcp_state.clone().unwrap_or_else(|| "-".to_string()),
            format!("{} s", s.timeout),
            extras(s),
        ]);
    }
    let mut widths = [0; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // The extras column is left out when no session has any.
    let columns = if rows.iter().skip(1).all(|row| row[6].is_empty()) {
        6
    } else {
        7
    };
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let shown = list.sessions.len();
    let _ = write!(
        out,
        "{shown} of {} matching sessions ({} in the table)",
        list.matched, list.total
    );
    if shown < list.matched {
        out.push_str("; --limit 0 shows all");
    }
    out.push('\n');
    out
}

/// `failoverctl events`: time since the daemon started, kind, message.
pub(crate) fn events(list: &EventList) -> String {
    let mut out = String::new();
    if list.events.is_empty() {
        out.push_str("no events\n");
        return out;
    }
    let times: Vec<String> = list
        .events
        .iter()
        .map(|e| format!("{}.{:03} s", e.at_ms / 1000, e.at_ms % 1000))
        .collect();
    let width = times.iter().map(String::len).max().unwrap_or(0);
    // At least the width of the longest kind before config sync's, so that lists without
    // those keep their layout.
    let kind_width = list
        .events
        .iter()
        .map(|e| e.kind.name().len())
        .max()
        .unwrap_or(0)
        .max(13);
    for (time, event) in times.iter().zip(&list.events) {
        let _ = writeln!(
            out,
            "{time:>width$}  {:<kind_width$}  {}",
            event.kind.name(),
            event.message
        );
    }
    out
}

/// `failoverctl sessions generate`.
pub(crate) fn generated(generated: &Generated) -> String {
    let mut out = format!("created {} sessions", generated.created);
    if generated.table_full > 0 {
        let _ = write!(
            out,
            "; {} not created: the table is full",
            generated.table_full
        );
    }
    out.push('\n');
    out
}

/// `failoverctl switchover`.
pub(crate) fn switchover(done: &SwitchoverDone) -> String {
    format!("{}\n", done.message)
}

/// `failoverctl maintenance on|off`.
pub(crate) fn maintenance(done: &MaintenanceDone) -> String {
    format!("{}\n", done.message)
}

#[cfg(test)]
mod tests;
