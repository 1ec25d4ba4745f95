//! The kernel's connection-tracking table as the daemon runs it: opened from the config file,
//! with the start-up checks an operator needs to hear about.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use failoverd_backends::{
    BackendError, ConntrackBackend, ConntrackConfig, OwnerMark, SessionBackend,
};
use failoverd_control::config::{Config, IpNet};
use failoverd_control::protocol::BackendKind;
use failoverd_core::ReplicationFilter;
use failoverd_wire::NodeId;
use tracing::{info, warn};

use crate::table::{Counts, Table};

/// Opens the kernel table with the config's filter ([`replication_filter`]), and returns it with the kernel
/// settings the two nodes should share, to compare with the peer's at negotiation (a smaller
/// table or stricter TCP tracking on the standby breaks a takeover).
pub fn open_conntrack(
    config: &Config,
    local: NodeId,
    peer: Option<NodeId>,
) -> anyhow::Result<(ConntrackBackend, Vec<(String, u64)>)> {
    let settings = &config.sessions.conntrack;
    let table = ConntrackBackend::open(
        ConntrackConfig {
            event_buffer_bytes: settings.event_buffer_bytes,
            peer_entry_timeout_secs: settings.peer_entry_timeout_secs,
            owner_mark: OwnerMark::new(settings.owner_mark)
                .context("sessions.conntrack.owner_mark")?,
            filter: replication_filter(config),
        },
        local,
        peer,
    )
    .context("cannot open the kernel's conntrack table (failoverd needs CAP_NET_ADMIN)")?;
    if let Some((was, now)) = table.events_sysctl_changed() {
        warn!(
            was,
            now,
            "net.netfilter.nf_conntrack_events was {was}: the kernel reported no conntrack events, set it to {now}"
        );
    }
    let kernel = ConntrackBackend::kernel_settings();
    if kernel.contains(&("nf_conntrack_events", Some(2))) {
        info!(
            "net.netfilter.nf_conntrack_events is 2: entries created while no listener ran report \
             no later events; the bulk sync at start and the digest comparison cover them, and 1 \
             (set at boot) avoids the gap"
        );
    }
    let shown: Vec<String> = kernel
        .iter()
        .map(|(name, value)| match value {
            Some(value) => format!("{name}={value}"),
            None => format!("{name}=absent"),
        })
        .collect();
    info!(settings = %shown.join(" "), "kernel conntrack settings");
    warn_of_masquerade();
    let shared = kernel
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), value?)))
        .collect();
    Ok((table, shared))
}

/// The sessions the kernel table replicates, from the config: the backend applies it to local
/// changes, the core to the peer's ops. The failover link's own addresses are never
/// replicated: its connections are this node's, not the pair's.
pub fn replication_filter(config: &Config) -> ReplicationFilter {
    let settings = &config.sessions.conntrack;
    let mut exclude = settings.exclude.clone();
    for address in [config.link.listen.ip(), config.link.peer.ip()] {
        if !address.is_unspecified() {
            exclude.push(IpNet::from(address));
        }
    }
    ReplicationFilter {
        zones: settings.zones.clone(),
        protocols: settings.protocols.clone(),
        include: settings.include.clone(),
        exclude,
    }
}

/// Masquerade translates to each node's own address, so a replicated translation points at an
/// address the peer does not have: say so at start (SNAT to a shared address instead).
fn warn_of_masquerade() {
    let Ok(output) = Command::new("nft").args(["-j", "list", "ruleset"]).output() else {
        return;
    };
    if !output.status.success() {
        return;
    }
    let ruleset = String::from_utf8_lossy(&output.stdout);
    if ruleset.contains("\"masquerade\"") {
        warn!(
            "the nftables ruleset uses masquerade: a masqueraded session replicated to the peer keeps \
             this node's own address, which the peer does not hold, so it breaks at takeover; \
             SNAT to an address that moves with the active role instead"
        );
    }
}

impl Table for ConntrackBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Conntrack
    }

    fn counts(&mut self) -> Result<Counts, BackendError> {
        let total = self.count()? as u64;
        let stats = self.stats();
        Ok(Counts {
            total,
            owned: total.saturating_sub(stats.peer_entries),
            counters: vec![
                ("events_in", stats.events_in),
                ("events_own", stats.events_own),
                ("events_filtered", stats.events_filtered),
                ("batches_out", stats.batches),
                ("ops_out", stats.ops_out),
                ("apply_errors", stats.apply_errors),
                ("overruns", stats.overruns),
                ("dumps", stats.dumps),
                ("refreshed", stats.refreshed),
                ("status_kept", stats.status_kept),
            ],
        })
    }

    fn set_active(&mut self, active: bool) -> Result<(), BackendError> {
        ConntrackBackend::set_active(self, active)
    }

    fn upkeep_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(
            u64::from(self.config().peer_entry_timeout_secs) / 3,
        ))
    }

    fn upkeep(&mut self) -> Result<usize, BackendError> {
        self.refresh_peer_entries()
    }
}
