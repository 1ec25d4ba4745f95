//! The views of a node that `failoverctl` gets (`status`, `peer`, `events`, the session
//! counts), built from the core, the link and the driver's own records. They decide nothing.

use std::collections::BTreeMap;
use std::future::Future;

use failoverd_control::protocol::{
    BackupMode, EventKind, EventList, EventView, FailoverRole, FailoverState, HeartbeatInfo,
    LinkState, NodeInfo, PeerInfo, Replication, SessionCounts, Status, TakeoverStatus,
};
use failoverd_core::{Event, Instant, Reason};
use failoverd_wire::{BackupType, Role, SyncState};
use tokio::sync::oneshot;

use super::{Driver, TABLE_GONE};
use crate::table::TableCounters;
use crate::table_thread::TableCommand;

impl Driver {
    /// `status`, without the session counts and the takeover status, which other tasks fill
    /// in.
    pub(super) fn status(&self) -> Status {
        let now = self.clock.now();
        let node = &self.node;
        let config = node.config();
        let since = node
            .history()
            .iter()
            .rev()
            .find(|e| matches!(e.event, Event::StateChanged { .. }))
            .map_or(Instant::ZERO, |e| e.at);
        let stats = node.stats();
        let link = self.link.stats();
        let mut counters = BTreeMap::new();
        for (name, value) in stats.counters().chain([
            ("link_control_frames_in", link.control.frames_in),
            ("link_control_frames_out", link.control.frames_out),
            ("link_data_frames_in", link.data.frames_in),
            ("link_data_frames_out", link.data.frames_out),
            ("link_data_bytes_in", link.data.bytes_in),
            ("link_data_bytes_out", link.data.bytes_out),
            ("link_rejected_handshakes", link.rejected_handshakes),
            ("link_refused_source", link.refused_source),
            ("link_refused_rate", link.refused_rate),
            ("link_evicted_handshakes", link.evicted_handshakes),
            ("link_log_lines_suppressed", link.log_lines_suppressed),
            ("link_malformed_frames", link.malformed_frames),
            ("link_reconnects", link.reconnects),
            ("link_dial_failures", link.dial_failures),
            ("driver_turn_max_us", self.turns.longest.as_micros() as u64),
            (
                "driver_timer_late_max_us",
                self.turns.timer_late.as_micros() as u64,
            ),
        ]) {
            counters.insert(name.to_string(), value);
        }
        if let Some((sent, pauses, longest)) = self.hellos.read(|liveness| {
            (
                liveness.hellos_sent(),
                liveness.own_pauses(),
                liveness.longest_pause(),
            )
        }) {
            // The hello thread sends them, not the core.
            counters.insert("hellos_sent".to_string(), sent);
            counters.insert("own_pauses".to_string(), pauses);
            counters.insert("own_pause_max_us".to_string(), longest.as_micros() as u64);
        }
        if let Some((sender, _)) = &self.heartbeat {
            let path = sender.stats();
            counters.insert("heartbeat_sent".to_string(), path.sent);
            counters.insert("heartbeat_send_errors".to_string(), path.send_errors);
            counters.insert("heartbeat_accepted".to_string(), path.accepted);
            for (reason, count) in path.dropped {
                counters.insert(format!("heartbeat_dropped_{reason}"), count);
            }
        }
        Status {
            node: NodeInfo {
                name: self.name.clone(),
                node_id: config.node_id,
                fingerprint: self.fingerprint.to_string(),
                pair_id: config.pair_id,
                priority: config.priority,
                backup: backup_view(config.backup_type),
                preempt: config.preempt,
                backend: self.backend.kind(),
            },
            state: state_view(node.state()),
            state_since_ms: (now - since).as_millis() as u64,
            role: role_view(node.role()),
            ready: node.is_ready(),
            not_ready: node
                .not_ready_reasons()
                .iter()
                .map(|r| r.name().to_string())
                .collect(),
            peer: Some(self.peer_info()),
            // Filled in from the session-table thread: see `session_counts`.
            sessions: SessionCounts::default(),
            replication: Replication {
                epoch: u64::from(node.epoch()),
                bulk_sent: node.history().iter().any(
                    |e| matches!(e.event, Event::BulkSent { epoch, .. } if epoch == node.epoch()),
                ),
                bulk_received: node.is_ready(),
                lag_p50_us: stats.lag.quantile(0.5).as_micros() as u64,
                lag_p99_us: stats.lag.quantile(0.99).as_micros() as u64,
                lag_max_us: stats.lag.max().as_micros() as u64,
                lag_samples: stats.lag.count(),
                peer_buffered_bytes: node.peer_buffered_bytes() as u64,
            },
            counters,
            uptime_ms: now.as_nanos() / 1_000_000,
            // Filled in from the VRRP task: see `Takeover::status`.
            takeover: TakeoverStatus::default(),
            heartbeat: self.heartbeat.as_ref().map(|(_, address)| {
                let heard = node.heartbeat_peer();
                HeartbeatInfo {
                    address: address.clone(),
                    state: if heard.is_some() {
                        LinkState::Up
                    } else {
                        LinkState::Down
                    },
                    peer_role: heard.map(|h| role_view(h.role)),
                    peer_state: heard.map(|h| state_view(h.state)),
                    last_heard_ms_ago: heard.map(|h| (now - h.last_heard).as_millis() as u64),
                    holds_standby: node.held_by_heartbeat(),
                }
            }),
        }
    }

    /// The table's counts and counters come from the session-table thread, the queue's from
    /// the core; the future resolves without the driver waiting for it.
    pub(super) fn session_counts(
        &self,
    ) -> impl Future<Output = Result<(SessionCounts, TableCounters), String>> + use<> {
        let (tx, rx) = oneshot::channel();
        self.backend.send(TableCommand::Counts { reply: tx });
        let pending_changes = self.node.pending_changes() as u64;
        let in_flight_batches = self.node.in_flight_batches() as u64;
        async move {
            let counts = rx.await.map_err(|_| TABLE_GONE.to_string())??;
            let sessions = SessionCounts {
                total: counts.total,
                owned: counts.owned,
                peer_owned: counts.total - counts.owned,
                pending_changes,
                in_flight_batches,
            };
            Ok((sessions, counts.counters))
        }
    }

    /// `peer`: what the hellos said, and the link.
    pub(super) fn peer_info(&self) -> PeerInfo {
        let now = self.clock.now();
        let peer = self.node.peer();
        PeerInfo {
            address: self.peer_address.clone(),
            link: if self.link_up {
                LinkState::Up
            } else {
                LinkState::Down
            },
            node_id: peer.as_ref().map(|p| p.node_id),
            state: peer.as_ref().map(|p| state_view(p.state)),
            role: peer.as_ref().map(|p| role_view(p.role)),
            priority: peer.as_ref().map(|p| p.priority),
            ready: peer.as_ref().map(|p| p.ready),
            last_hello_ms_ago: peer
                .as_ref()
                .map(|p| (now - p.last_heard).as_millis() as u64),
            rtt_us: self
                .hellos
                .read(|liveness| liveness.rtt())
                .flatten()
                .or(self.node.link_rtt())
                .map(|rtt| rtt.as_micros() as u64),
            protocol: peer.as_ref().map(|p| p.protocol.to_string()),
            hello_interval_ms: peer.as_ref().map(|p| p.timers.hello.as_millis() as u64),
            dead_interval_ms: peer.as_ref().map(|p| p.timers.dead.as_millis() as u64),
            timer_mismatch: peer
                .as_ref()
                .and_then(|p| p.timer_mismatch)
                .map(|m| m.to_string()),
            incompatibility: peer.and_then(|p| p.incompatibility).map(|i| i.to_string()),
        }
    }

    /// `events`: the core's, the link's and the takeover parts', oldest first, the newest
    /// `limit`.
    pub(super) fn events(&self, limit: Option<usize>) -> EventList {
        let mut events: Vec<EventView> = self
            .node
            .history()
            .iter()
            .map(|entry| event_view(entry.at, &entry.event))
            .chain(self.link_history.iter().map(|(at, message)| EventView {
                at_ms: at.as_nanos() / 1_000_000,
                kind: EventKind::Link,
                from: None,
                to: None,
                reason: None,
                message: message.clone(),
            }))
            .chain(self.config_sync.iter().flat_map(|host| host.history()).map(
                |(at, kind, message)| EventView {
                    at_ms: at.as_nanos() / 1_000_000,
                    kind: *kind,
                    from: None,
                    to: None,
                    reason: None,
                    message: message.clone(),
                },
            ))
            .chain(self.takeover.history().into_iter().map(|entry| EventView {
                at_ms: self.clock.at(entry.at).as_nanos() / 1_000_000,
                kind: entry.kind,
                from: None,
                to: None,
                reason: None,
                message: entry.message,
            }))
            .collect();
        events.sort_by_key(|e| e.at_ms);
        let keep = limit.unwrap_or(events.len()).min(events.len());
        EventList {
            events: events.split_off(events.len() - keep),
        }
    }
}

fn state_view(state: SyncState) -> FailoverState {
    match state {
        SyncState::Silence => FailoverState::Silence,
        SyncState::Independence => FailoverState::Independence,
        SyncState::Synchronization => FailoverState::Synchronization,
    }
}

/// The node's own backup type: the configuration allows the two known ones only.
fn backup_view(backup: BackupType) -> BackupMode {
    if backup == BackupType::ASYMMETRIC {
        BackupMode::Asymmetric
    } else {
        BackupMode::Symmetric
    }
}

fn role_view(role: Role) -> FailoverRole {
    match role {
        Role::Active => FailoverRole::Active,
        Role::Standby => FailoverRole::Standby,
    }
}

/// An event as `failoverctl events` shows it.
fn event_view(at: Instant, event: &Event) -> EventView {
    let (kind, from, to, reason) = match event {
        Event::StateChanged { from, to, reason } => (
            EventKind::State,
            Some(from.name().to_string()),
            Some(to.name().to_string()),
            Some(reason),
        ),
        Event::RoleChanged { from, to, reason } => (
            EventKind::Role,
            Some(from.name().to_string()),
            Some(to.name().to_string()),
            Some(reason),
        ),
        Event::NegotiationFailed(_) => (EventKind::Negotiation, None, None, None),
        Event::BulkSent { .. } => (EventKind::BulkSent, None, None, None),
        Event::BulkReceived { .. } => (EventKind::BulkReceived, None, None, None),
        Event::ChangesLost => (EventKind::ChangesLost, None, None, None),
        Event::ApplyFailed { .. } => (EventKind::ApplyFailed, None, None, None),
        Event::SettingDiffers { .. } => (EventKind::SettingDiffers, None, None, None),
        Event::TimersDiffer(_) => (EventKind::TimersDiffer, None, None, None),
        Event::DriftFound { .. } => (EventKind::Drift, None, None, None),
        Event::HeartbeatPath { .. } => (EventKind::Heartbeat, None, None, None),
    };
    EventView {
        at_ms: at.as_nanos() / 1_000_000,
        kind,
        from,
        to,
        reason: reason.map(Reason::to_string),
        message: event.to_string(),
    }
}
