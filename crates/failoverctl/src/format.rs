//! Human output: aligned, one fact per column, units on every number. Each function returns
//! the whole text so it can be tested without a terminal.

use std::fmt::Write as _;

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
pub fn millis(ms: u64) -> String {
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
pub fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// `failoverctl status`.
pub fn status(status: &Status) -> String {
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
pub fn peer(peer: &PeerInfo) -> String {
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
pub fn counts(counts: &SessionCounts) -> String {
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
pub fn sessions(list: &SessionList) -> String {
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
pub fn events(list: &EventList) -> String {
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
    for (time, event) in times.iter().zip(&list.events) {
        let _ = writeln!(
            out,
            "{time:>width$}  {:<13}  {}",
            event.kind.name(),
            event.message
        );
    }
    out
}

/// `failoverctl sessions generate`.
pub fn generated(generated: &Generated) -> String {
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
pub fn switchover(done: &SwitchoverDone) -> String {
    format!("{}\n", done.message)
}

/// `failoverctl maintenance on|off`.
pub fn maintenance(done: &MaintenanceDone) -> String {
    format!("{}\n", done.message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use failoverd_control::protocol::{
        BackendKind, BackupMode, EventKind, EventView, FailoverState, Family, HooksView, LinkState,
        NodeId, NodeInfo, Replication, Role, RoutingState, RoutingView, TrackKind, VrrpDropsView,
        VrrpPeerState, VrrpState,
    };

    use super::*;

    fn sample_peer() -> PeerInfo {
        PeerInfo {
            address: "192.0.2.2:7701".into(),
            link: LinkState::Up,
            node_id: Some("2000abcd".into()),
            state: Some(FailoverState::Synchronization),
            role: Some(Role::Standby),
            priority: Some(90),
            ready: Some(true),
            last_hello_ms_ago: Some(12),
            rtt_us: Some(180),
            incompatibility: None,
            protocol: Some("1.1".into()),
            hello_interval_ms: Some(50),
            dead_interval_ms: Some(150),
            timer_mismatch: None,
        }
    }

    fn sample_status() -> Status {
        Status {
            node: NodeInfo {
                name: "fw-a".into(),
                node_id: "1000abcd".into(),
                fingerprint: format!("sha256:{}", "ab".repeat(32)),
                pair_id: 1,
                priority: 100,
                backup: BackupMode::Symmetric,
                preempt: true,
                backend: BackendKind::Memory,
            },
            state: FailoverState::Synchronization,
            state_since_ms: 12_345,
            role: Role::Active,
            ready: true,
            not_ready: vec![],
            peer: Some(sample_peer()),
            sessions: SessionCounts {
                total: 1200,
                owned: 800,
                peer_owned: 400,
                pending_changes: 0,
                in_flight_batches: 1,
            },
            replication: Replication {
                epoch: 3,
                bulk_sent: true,
                bulk_received: true,
                lag_p50_us: 120,
                lag_p99_us: 800,
                lag_max_us: 2100,
                lag_samples: 1234,
                peer_buffered_bytes: 0,
            },
            counters: BTreeMap::from([
                ("hellos_sent".to_string(), 1234),
                ("batches_received".to_string(), 12),
                ("malformed_frames".to_string(), 0),
            ]),
            uptime_ms: 3_723_000,
            takeover: TakeoverStatus::default(),
            heartbeat: None,
        }
    }

    fn sample_instance() -> VrrpInstanceView {
        VrrpInstanceView {
            name: "lan".into(),
            interface: "lan".into(),
            vrid: 51,
            family: Family::Ipv4,
            state: VrrpState::Master,
            priority: 200,
            configured_priority: 200,
            advert_interval_ms: 50,
            master_address: Some("10.0.1.2".into()),
            master_priority: Some(200),
            addresses: vec!["10.0.1.1/24".into()],
            holds_addresses: true,
            unicast_peers: vec![],
            adverts_sent: 123,
            adverts_received: 4,
            malformed_dropped: 0,
            became_master: 1,
            port_hears: true,
            ..VrrpInstanceView::default()
        }
    }

    fn sample_takeover() -> TakeoverStatus {
        TakeoverStatus {
            mode: TakeoverKind::Vrrp,
            group: Some(VrrpGroupView {
                state: VrrpState::Master,
                reason: "master down timer expired on lan".into(),
                ready_to_preempt: true,
                not_preempting: None,
                maintenance: false,
                peer_check: true,
                peer: VrrpPeerState::NotMaster,
                silent_intervals: 3,
                priority_penalty: 0,
                fault: None,
                instances: vec![
                    sample_instance(),
                    VrrpInstanceView {
                        name: "lan6".into(),
                        vrid: 7,
                        family: Family::Ipv6,
                        master_address: Some("fe80::2".into()),
                        addresses: vec!["fe80::1/64".into(), "2001:db8::1/64".into()],
                        adverts_sent: 1,
                        ..sample_instance()
                    },
                ],
                tracks: vec![
                    TrackView {
                        kind: TrackKind::Interface,
                        name: "wan".into(),
                        up: true,
                        weight: 0,
                    },
                    TrackView {
                        kind: TrackKind::Route,
                        name: "0.0.0.0/0".into(),
                        up: true,
                        weight: 50,
                    },
                ],
            }),
            routing: Some(RoutingView {
                state: RoutingState::Active,
                last_error: None,
            }),
            hooks: Some(HooksView {
                last: Some("on_active exited 0 after 12 ms".into()),
            }),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(millis(0), "0 ms");
        assert_eq!(millis(850), "850 ms");
        assert_eq!(millis(12_345), "12.3 s");
        assert_eq!(millis(312_000), "5 min 12 s");
        assert_eq!(millis(7_500_000), "2 h 05 min");
        assert_eq!(millis(3 * 86_400_000 + 4 * 3_600_000), "3 d 4 h");
        assert_eq!(micros(180), "180 µs");
        assert_eq!(micros(2100), "2.1 ms");
        assert_eq!(micros(1_250_000), "1.25 s");
    }

    #[test]
    fn status_is_aligned_and_skips_zero_counters() {
        let text = status(&sample_status());
        let expected = format!(
            "\
node          fw-a (1000abcd)  state synchronization (12.3 s)  role active  ready yes
pair          1  backup symmetric  priority 100  preempt yes
fingerprint   sha256:{}
uptime        1 h 02 min
peer          192.0.2.2:7701  link up  node 2000abcd  state synchronization  role standby  priority 90  ready yes
              last hello 12 ms ago  rtt 180 µs
sessions      1200 total  800 owned  400 peer-owned  0 pending changes  1 batches in flight  (memory table)
replication   epoch 3  bulk sent yes  bulk received yes
lag           p50 120 µs  p99 800 µs  max 2.1 ms  (1234 samples)
counters      batches_received    12
              hellos_sent       1234
",
            "ab".repeat(32)
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn status_of_a_lonely_node() {
        let mut s = sample_status();
        s.state = FailoverState::Independence;
        s.ready = false;
        s.not_ready = vec!["no bulk sync from the peer yet".into()];
        s.peer = Some(PeerInfo {
            link: LinkState::Down,
            node_id: None,
            state: None,
            role: None,
            priority: None,
            ready: None,
            last_hello_ms_ago: None,
            rtt_us: None,
            incompatibility: Some("peer is in pair 2, we are in pair 1".into()),
            ..sample_peer()
        });
        s.replication.lag_samples = 0;
        s.counters.clear();
        let text = status(&s);
        assert!(
            text.contains("ready no\nnot ready     no bulk sync from the peer yet\n"),
            "{text}"
        );
        assert!(text.contains("\npeer          192.0.2.2:7701  link down\n              incompatible: peer is in pair 2"), "{text}");
        assert!(text.contains("\nlag           no samples yet\n"), "{text}");
        assert!(!text.contains("counters"), "{text}");
    }

    #[test]
    fn status_shows_the_heartbeat_path_and_why_it_holds_the_node_standby() {
        let mut s = sample_status();
        s.role = Role::Standby;
        s.heartbeat = Some(HeartbeatInfo {
            address: "198.51.100.2:7702".into(),
            state: LinkState::Up,
            peer_role: Some(Role::Active),
            peer_state: Some(FailoverState::Independence),
            last_heard_ms_ago: Some(20),
            holds_standby: true,
        });
        let text = status(&s);
        assert!(
            text.contains("rtt 180 µs\nheartbeat     198.51.100.2:7702  up  peer active  state independence  last heard 20 ms ago\n              standby: the failover link is down but the peer is heard on the heartbeat path\nsessions"),
            "{text}"
        );
    }

    #[test]
    fn status_with_vrrp() {
        let mut s = sample_status();
        s.takeover = sample_takeover();
        let text = status(&s);
        let block = "\
takeover      vrrp  group master (master down timer expired on lan)
              ready to preempt yes  maintenance off  priority penalty 0  peer check on (peer not-master)  silent networks: the link decides after 3 intervals
instances     lan   on lan  vrid 51  ipv4  master  priority 200  master 10.0.1.2 (200)  holds 10.0.1.1/24                adverts every 50 ms: 123 sent 4 received 0 malformed  port hears
              lan6  on lan  vrid 7   ipv6  master  priority 200  master fe80::2 (200)   holds fe80::1/64 2001:db8::1/64  adverts every 50 ms: 1 sent 4 received 0 malformed    port hears
tracks        interface  wan        up  fault while down
              route      0.0.0.0/0  up  priority -50 while down
routing       FRR active
hooks         on_active exited 0 after 12 ms
";
        // After the peer, before the sessions.
        assert!(
            text.contains(&format!("rtt 180 µs\n{block}sessions      1200 total")),
            "{text}"
        );
    }

    #[test]
    fn status_with_vrrp_held_back() {
        let mut s = sample_status();
        let mut takeover = sample_takeover();
        let group = takeover.group.as_mut().unwrap();
        group.state = VrrpState::Backup;
        group.reason = "maintenance on".into();
        group.ready_to_preempt = false;
        group.not_preempting = Some("the peer's sessions are not all here yet".into());
        group.maintenance = true;
        group.peer_check = false;
        group.priority_penalty = 50;
        group.fault = Some("interface wan is down".into());
        group.tracks.truncate(1);
        group.tracks[0].up = false;
        group.instances = vec![VrrpInstanceView {
            state: VrrpState::Backup,
            priority: 150,
            master_address: None,
            master_priority: None,
            addresses: (1..=5).map(|i| format!("10.0.1.{i}/24")).collect(),
            holds_addresses: false,
            unicast_peers: vec!["10.0.1.3".into()],
            malformed_dropped: 3,
            dropped: VrrpDropsView {
                ttl: 2,
                unknown_peer: 1,
                ..VrrpDropsView::default()
            },
            answers_limited: 40,
            port_hears: false,
            silent_for: 4,
            peer_silent: Some(false),
            peer_hears: Some(true),
            ..sample_instance()
        }];
        takeover.routing = Some(RoutingView {
            state: RoutingState::Standby,
            last_error: Some("vtysh exited 1".into()),
        });
        takeover.hooks = Some(HooksView { last: None });
        s.takeover = takeover;
        let text = status(&s);
        let block = "\
takeover      vrrp  group backup (maintenance on)
              ready to preempt no  maintenance on  priority penalty 50  peer check off  silent networks: the link decides after 3 intervals
              not preempting: the peer's sessions are not all here yet
              fault: interface wan is down
instances     lan  on lan  vrid 51  ipv4  backup  priority 150 (200 configured)  master unknown  not holding 10.0.1.1/24 10.0.1.2/24 +3 more  adverts every 50 ms: 123 sent 4 received 3 malformed  port hears nothing, no master for 4 intervals; peer: hears a master or is master, port hears  2 TTL, 1 unknown peer, 40 answers limited  unicast to 10.0.1.3
tracks        interface  wan  down  fault while down
routing       FRR standby  last error: vtysh exited 1
hooks         none run yet
";
        assert!(text.contains(block), "{text}");
    }

    #[test]
    fn status_of_election_with_routing() {
        let mut s = sample_status();
        assert!(!status(&s).contains("takeover"));
        s.takeover.routing = Some(RoutingView {
            state: RoutingState::Active,
            last_error: None,
        });
        let text = status(&s);
        assert!(
            text.contains("\ntakeover      election\nrouting       FRR active\nsessions "),
            "{text}"
        );
    }

    #[test]
    fn peer_rows() {
        let mut p = sample_peer();
        p.rtt_us = None;
        assert_eq!(
            peer(&p),
            "\
address       192.0.2.2:7701
link          up
node          2000abcd
state         synchronization
role          standby
priority      90
ready         yes
last hello    12 ms ago
rtt           -
protocol      1.1
hello         50 ms
dead          150 ms
"
        );
    }

    #[test]
    fn timer_mismatch_shows_in_peer_and_status() {
        let warning = "hello timers differ: hello 50 ms, dead 150 ms here, hello 200 ms, dead 600 ms on the peer";
        let mut p = sample_peer();
        p.hello_interval_ms = Some(200);
        p.dead_interval_ms = Some(600);
        p.timer_mismatch = Some(warning.into());
        let text = peer(&p);
        assert!(
            text.contains(&format!(
                "hello         200 ms\ndead          600 ms\ntimers        {warning}\n"
            )),
            "{text}"
        );
        let mut s = sample_status();
        s.peer = Some(p);
        let text = status(&s);
        assert!(
            text.contains(&format!("rtt 180 µs\n              warning: {warning}\n")),
            "{text}"
        );
        s.peer = Some(sample_peer());
        assert!(
            !status(&s).contains("warning"),
            "no warning without a mismatch"
        );
    }

    #[test]
    fn session_table() {
        let view =
            |proto: &str, local: bool, src: &str, dst: &str, state: Option<&str>| SessionView {
                proto: proto.to_string().try_into().unwrap(),
                family: Family::Ipv4,
                orig: TupleView {
                    src: src.parse().unwrap(),
                    dst: dst.parse().unwrap(),
                    sport: 40000,
                    dport: 80,
                },
                reply: TupleView {
                    src: dst.parse().unwrap(),
                    dst: src.parse().unwrap(),
                    sport: 80,
                    dport: 40000,
                },
                owner: NodeId(if local { 0x1000_abcd } else { 0x2000_abcd }),
                local,
                zone: 0,
                mark: 0,
                status: 0,
                timeout: 120,
                tcp_state: state.map(Into::into),
                helper: None,
                labels: None,
            };
        let mut list = SessionList {
            total: 10,
            matched: 2,
            sessions: vec![
                view("tcp", true, "10.0.0.1", "192.0.2.80", Some("ESTABLISHED")),
                view("udp", false, "2001:db8::1", "2001:db8::2", None),
            ],
        };
        assert_eq!(
            sessions(&list),
            "\
PROTO  ORIGINAL                                 REPLY                                    OWNER     STATE        TIMEOUT
tcp    10.0.0.1:40000 -> 192.0.2.80:80          192.0.2.80:80 -> 10.0.0.1:40000          local     ESTABLISHED  120 s
udp    [2001:db8::1]:40000 -> [2001:db8::2]:80  [2001:db8::2]:80 -> [2001:db8::1]:40000  2000abcd  -            120 s
2 of 2 matching sessions (10 in the table)
"
        );
        list.matched = 5;
        list.sessions[1].mark = 16;
        list.sessions[1].helper = Some("ftp".into());
        let text = sessions(&list);
        assert!(text.contains("TIMEOUT  EXTRA\n"), "{text}");
        assert!(text.contains("120 s    mark 0x10 helper ftp\n"), "{text}");
        assert!(
            text.ends_with("2 of 5 matching sessions (10 in the table); --limit 0 shows all\n")
        );
        list.sessions.clear();
        assert_eq!(sessions(&list), "no matching sessions (10 in the table)\n");
    }

    #[test]
    fn event_lines() {
        let event = |at_ms, kind, message: &str| EventView {
            at_ms,
            kind,
            from: None,
            to: None,
            reason: None,
            message: message.into(),
        };
        let list = EventList {
            events: vec![
                event(
                    1_000,
                    EventKind::State,
                    "state silence -> independence: silence timer expired",
                ),
                event(
                    12_345,
                    EventKind::BulkReceived,
                    "bulk sync of 10 peer sessions applied",
                ),
            ],
        };
        assert_eq!(
            events(&list),
            " 1.000 s  state          state silence -> independence: silence timer expired\n\
             12.345 s  bulk-received  bulk sync of 10 peer sessions applied\n"
        );
        assert_eq!(events(&EventList { events: vec![] }), "no events\n");
    }

    #[test]
    fn small_outputs() {
        let c = SessionCounts {
            total: 1200,
            owned: 800,
            peer_owned: 400,
            pending_changes: 0,
            in_flight_batches: 0,
        };
        assert_eq!(
            counts(&c),
            "total              1200\nowned               800\npeer-owned          400\n\
             pending changes       0\nin-flight batches     0\n"
        );
        let g = Generated {
            created: 10,
            table_full: 0,
        };
        assert_eq!(generated(&g), "created 10 sessions\n");
        let g = Generated {
            created: 8,
            table_full: 2,
        };
        assert_eq!(
            generated(&g),
            "created 8 sessions; 2 not created: the table is full\n"
        );
        let done = SwitchoverDone {
            message: "handed over".into(),
        };
        assert_eq!(switchover(&done), "handed over\n");
        let done = MaintenanceDone {
            message: "maintenance on".into(),
        };
        assert_eq!(maintenance(&done), "maintenance on\n");
    }
}
