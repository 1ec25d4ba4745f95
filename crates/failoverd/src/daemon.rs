//! `failoverd` with a config file: load and check everything, then wire the node and serve
//! `failoverctl` until SIGTERM or SIGINT.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use failoverd_backends::MemoryBackend;
use failoverd_control::config::{
    BackendKind, BackupMode, Config, LogFormat, SyncSource, TakeoverKind,
};
use failoverd_control::transport;
use failoverd_core::{NodeConfig, ReplicationFilter, RoleAuthority};
use failoverd_link::{HeartbeatConfig, Identity, LinkConfig};
use failoverd_wire::NodeId;
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::clock::Clock;
use crate::config_sync::ConfigSyncHost;
use crate::driver::{self, HeartbeatSetup, NodeRequest, NodeSetup};
use crate::hellos::HelloPath;
use crate::takeover::Takeover;
use crate::{kernel, table_thread};

/// Runs the daemon described by the config file at `path`.
pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_logging(&config)?;
    let identity = Identity::load(&config.node.key)?;
    let fingerprint = identity.fingerprint();
    let pins = config.link.peer_key;
    if pins.accepts(&fingerprint) {
        anyhow::bail!(
            "{}: link.peer_key is this node's own key ({fingerprint}); it must be the peer's",
            path.display()
        );
    }
    let mut core = core_config(&config, NodeId(fingerprint.node_id()));
    // The first pin is the peer's current key (the second, while rotating, its next one).
    core.peer = Some(NodeId(pins.first().node_id()));
    core.validate()
        .with_context(|| format!("{}: invalid settings", path.display()))?;
    if let SyncSource::Node(id) = config.config_sync.source
        && Some(id) != core.peer
        && id != core.node_id
    {
        anyhow::bail!(
            "{}: config_sync.source = \"{id}\" is neither this node ({}) nor the peer ({})",
            path.display(),
            core.node_id,
            NodeId(pins.first().node_id())
        );
    }

    let hellos = HelloPath::spawn(&config.node.name, Clock::start())?;
    let heartbeat = match config.link.heartbeat {
        Some(path) => {
            let (sender, events) = failoverd_link::spawn_heartbeat(HeartbeatConfig {
                listen: path.listen,
                peer: path.peer,
                identity: identity.clone(),
                pins,
                max_age: config.timers.dead_interval,
            })?;
            Some(HeartbeatSetup {
                sender,
                events,
                address: path.peer.to_string(),
            })
        }
        None => None,
    };
    let link = failoverd_link::spawn(LinkConfig {
        reconnect_min: config.link.reconnect_min,
        reconnect_max: config.link.reconnect_max,
        control_tap: Some(hellos.tap()),
        control_priority: Some(crate::hellos::HELLO_PRIORITY),
        ..LinkConfig::new(config.link.listen, config.link.peer, identity, pins)
    })?;
    let backend = match config.sessions.backend {
        BackendKind::Memory => {
            table_thread::spawn(&config.node.name, MemoryBackend::new(core.node_id))?
        }
        BackendKind::Conntrack => {
            let (table, settings) = kernel::open_conntrack(&config, core.node_id, core.peer)?;
            core.settings = settings;
            table_thread::spawn(&config.node.name, table)?
        }
    };
    let takeover = Takeover::start(&config).await?;
    let config_sync = ConfigSyncHost::open(&config, path, link.0.clone(), seed())?;
    let group = match &config.control.group {
        Some(name) => Some(
            transport::group_id(name)
                .with_context(|| format!("{}: control.group {name:?}", path.display()))?,
        ),
        None => None,
    };
    let access = transport::Access::new(group);
    let listener = transport::bind(&config.control.socket)?;
    info!(
        node = %config.node.name,
        node_id = %core.node_id,
        %fingerprint,
        listen = %config.link.listen,
        peer = %config.link.peer,
        control = %config.control.socket.display(),
        "failoverd started"
    );

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = stop.send(true);
    });
    let (requests, request_rx) = mpsc::channel(64);
    let (control, mut control_rx) = mpsc::channel(64);
    tokio::spawn(transport::serve(
        listener,
        control,
        access,
        until(stopped.clone()),
    ));
    tokio::spawn(async move {
        while let Some((request, reply)) = control_rx.recv().await {
            if requests
                .send(NodeRequest::Control(request, reply))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let setup = NodeSetup {
        name: config.node.name.clone(),
        core,
        fingerprint,
        peer_address: config.link.peer.to_string(),
        link,
        backend,
        takeover,
        hellos,
        heartbeat,
        config_sync,
    };
    driver::run(setup, request_rx, None, until(stopped)).await;
    let _ = std::fs::remove_file(&config.control.socket);
    Ok(())
}

/// The core's settings from the config file.
pub fn core_config(config: &Config, node_id: NodeId) -> NodeConfig {
    NodeConfig {
        node_id,
        pair_id: config.pair.id,
        priority: config.node.priority,
        backup_type: match config.pair.backup {
            BackupMode::Symmetric => failoverd_wire::BackupType::SYMMETRIC,
            BackupMode::Asymmetric => failoverd_wire::BackupType::ASYMMETRIC,
        },
        preempt: config.node.preempt,
        role_authority: match config.takeover.mode {
            TakeoverKind::Election => RoleAuthority::Election,
            TakeoverKind::Vrrp => RoleAuthority::External,
        },
        hello_interval: config.timers.hello_interval,
        dead_interval: config.timers.dead_interval,
        silence_timer: config.timers.silence,
        remove_hold: remove_hold(config),
        digest_interval: config.sessions.digest_interval,
        filter: replication_filter(config),
        max_peer_buffer: config.sessions.peer_buffer,
        seed: seed(),
        reliable_link: true,
        ..NodeConfig::default()
    }
}

/// What this node replicates, applied to the peer's ops too: the kernel table's filter; the
/// memory table (the demo, trying it out) replicates everything.
fn replication_filter(config: &Config) -> ReplicationFilter {
    match config.sessions.backend {
        BackendKind::Conntrack => kernel::replication_filter(config),
        BackendKind::Memory => ReplicationFilter::default(),
    }
}

/// A failing peer's last deletes wait until the role authority would have moved the role:
/// twice its detection time, the dead interval with elected roles, the longest
/// `Master_Down_Interval` of the VRRP instances with VRRP (the failover link's dead interval
/// does not move the role then).
fn remove_hold(config: &Config) -> Duration {
    let detection = match config.takeover.mode {
        TakeoverKind::Election => config.timers.dead_interval,
        TakeoverKind::Vrrp => config
            .vrrp
            .instances
            .iter()
            .map(|i| failoverd_core::vrrp::master_down_interval(i.advert_interval, i.priority))
            .max()
            .unwrap_or(config.timers.dead_interval),
    };
    2 * detection
}

/// Epochs must differ across restarts; the clock is a good enough source for that.
fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("log.level {:?} is not a valid filter", config.log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|err| anyhow::anyhow!("cannot set up logging: {err}"))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves once `stopped` turns true.
async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
