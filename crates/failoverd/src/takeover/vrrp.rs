//! The VRRP task: drives the core's VRRP group ([`failoverd_core::vrrp::Group`]) with raw
//! sockets, rtnetlink and ARP/NA, and tells the node's driver when this node forwards. It
//! decides nothing itself.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use failoverd_control::config::{VrrpInstanceSection, VrrpSection};
use failoverd_control::protocol::{
    EventKind, Family, VrrpDropsView, VrrpGroupView, VrrpInstanceView, VrrpPeerState, VrrpState,
};
use failoverd_core::TakeoverReason;
use failoverd_core::vrrp::{
    DropCounts, DropReason, Group, GroupConfig, GroupState, InstanceConfig, InstanceState,
    PeerView, VrrpAction, VrrpEvent, VrrpTransmit,
};
use failoverd_core::wire::VrrpReport;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::net::{Announcer, Netlink, Received, VrrpSocket};
use crate::takeover::accept;
use crate::takeover::history::TakeoverHistory;
use crate::takeover::track::{self, Verdict};

/// Received adverts waiting for the task, at most.
const RECEIVED_QUEUE: usize = 256;
/// After a socket error, before the next receive.
const RECV_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);
/// How often the instances' interfaces' received-packet counts are read (whether their
/// networks are alive: `core::vrrp::HEARS_WINDOW`).
const RX_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// What the driver asks of the VRRP task.
pub enum VrrpRequest {
    /// The failover core's readiness (it holds the peer's sessions): gates preemption.
    Ready(bool),
    /// The peer's group as the failover link says: the peer check.
    Peer(PeerView),
    /// What the peer's instances hear, from its last report (`None`: no live peer, or one
    /// that does not report).
    PeerReport(Option<VrrpReport>),
    /// Switchover: hand mastership to the peer.
    HandOver(oneshot::Sender<Result<(), String>>),
    /// Maintenance on or off.
    Maintenance(bool),
    /// The group for status.
    View(oneshot::Sender<VrrpGroupView>),
    /// Leave: priority 0, addresses removed; answered once done.
    Shutdown(oneshot::Sender<()>),
}

/// What the task tells the driver.
#[derive(Debug)]
pub enum VrrpNews {
    /// The group's mastership changed: this node forwards (`master`) or not.
    Forwarding {
        /// Master: this node forwards.
        master: bool,
        /// Why, for the core's role history.
        reason: TakeoverReason,
    },
    /// What the instances hear changed: for the peer, over the failover link.
    Report(VrrpReport),
}

/// The running task's ends.
pub struct VrrpHandle {
    /// Requests to the task.
    pub requests: mpsc::UnboundedSender<VrrpRequest>,
    /// Mastership changes and reports, in order.
    pub news: mpsc::UnboundedReceiver<VrrpNews>,
}

/// One instance's I/O: where it sends from and what it holds.
struct Port {
    interface: String,
    socket: VrrpSocket,
    holder: Holder,
    addresses: Vec<(IpAddr, u8)>,
}

/// Where the virtual addresses live, and with which MAC they are announced.
enum Holder {
    /// On the instance's interface.
    Interface { index: u32, mac: [u8; 6] },
    /// On a macvlan with the virtual MAC (`vmac`), which exists only while this node is master:
    /// a backup's macvlan with the same MAC would receive frames a bridge floods to it.
    Vmac {
        parent: u32,
        name: String,
        mac: [u8; 6],
    },
}

/// Resolves interfaces and addresses, opens the sockets and starts the task.
pub async fn spawn(config: &VrrpSection, history: TakeoverHistory) -> anyhow::Result<VrrpHandle> {
    let netlink = Netlink::connect().context("cannot open rtnetlink")?;
    let announcer =
        Announcer::new().context("cannot open the ARP / neighbour advertisement sockets")?;
    let mut instances = Vec::new();
    let mut ports = Vec::new();
    for instance in &config.instances {
        let (core, port) = open(&netlink, instance)
            .await
            .with_context(|| format!("vrrp instance {:?}", instance.name))?;
        instances.push(core);
        ports.push(port);
    }
    let not_accepting: Vec<IpAddr> = config
        .instances
        .iter()
        .filter(|i| !i.accept)
        .flat_map(|i| i.addresses.iter().map(|net| net.addr()))
        .collect();
    if !not_accepting.is_empty() {
        accept::install(&not_accepting)?;
    }
    let verdicts = track::start(config, &netlink, history.clone()).await?;
    let group = Group::new(GroupConfig {
        instances,
        preempt_delay: config.preempt_delay,
        announce_repeat: config.announce_repeat,
        announce_interval: config.announce_interval,
        peer_check: config.peer_check,
        silent_intervals: config.silent_intervals,
    });
    let (requests, request_rx) = mpsc::unbounded_channel();
    let (news_tx, news) = mpsc::unbounded_channel();
    let rx_counts = poll_rx(
        config
            .instances
            .iter()
            .map(|i| i.interface.clone())
            .collect(),
    )?;
    // Bounded: under a flood the sockets' own buffers drop what the task cannot take.
    let (received_tx, received) = mpsc::channel(RECEIVED_QUEUE);
    let ports: Vec<Arc<Port>> = ports.into_iter().map(Arc::new).collect();
    for (index, port) in ports.iter().enumerate() {
        let (port, received_tx) = (port.clone(), received_tx.clone());
        tokio::spawn(async move {
            loop {
                match port.socket.recv().await {
                    Ok(packet) => {
                        if received_tx.send((index, packet)).await.is_err() {
                            break;
                        }
                    }
                    // A datagram too short for its IP header: dropped.
                    Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                        debug!("VRRP socket of instance {index}: {err}");
                    }
                    Err(err) => {
                        debug!("VRRP socket of instance {index}: {err}");
                        // A socket that keeps failing must not spin.
                        tokio::time::sleep(RECV_ERROR_PAUSE).await;
                    }
                }
            }
        });
    }
    let task = Task {
        clock: Clock::start(),
        group,
        holds: vec![false; ports.len()],
        ports,
        netlink,
        announcer,
        news: news_tx,
        report: None,
        verdicts,
        not_accepting: !not_accepting.is_empty(),
        history,
    };
    tokio::spawn(task.run(request_rx, received, rx_counts));
    Ok(VrrpHandle { requests, news })
}

/// Reads the received-packet count of each interface every [`RX_POLL`], on a connection of
/// its own; `None` where it cannot be read.
fn poll_rx(interfaces: Vec<String>) -> anyhow::Result<watch::Receiver<Vec<Option<u64>>>> {
    let netlink = Netlink::connect().context("cannot open rtnetlink")?;
    let (counts_tx, counts) = watch::channel(Vec::new());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RX_POLL).await;
            let mut read = Vec::with_capacity(interfaces.len());
            for interface in &interfaces {
                read.push(match netlink.link(interface).await {
                    Ok(link) => Some(link.rx_packets),
                    Err(err) => {
                        debug!("{interface}: received-packet count not read: {err:#}");
                        None
                    }
                });
            }
            if counts_tx.send(read).is_err() {
                return;
            }
        }
    });
    Ok(counts)
}

fn action_instance(action: VrrpAction) -> usize {
    match action {
        VrrpAction::AddAddresses { instance }
        | VrrpAction::RemoveAddresses { instance }
        | VrrpAction::Announce { instance } => instance,
    }
}

/// The core's view of an instance, and its socket.
async fn open(
    netlink: &Netlink,
    instance: &VrrpInstanceSection,
) -> anyhow::Result<(InstanceConfig, Port)> {
    let link = netlink.link(&instance.interface).await?;
    let ipv6 = instance.is_ipv6();
    let source = match instance.source {
        Some(source) => source,
        None => netlink
            .addresses(link.index)
            .await?
            .into_iter()
            .map(|(address, _)| address)
            .find(|address| match address {
                IpAddr::V4(_) => !ipv6,
                IpAddr::V6(a) => ipv6 && a.is_unicast_link_local(),
            })
            .with_context(|| {
                format!(
                    "interface {} has no {} address to send adverts from (set `source`)",
                    instance.interface,
                    if ipv6 { "IPv6 link-local" } else { "IPv4" }
                )
            })?,
    };
    let holder = if instance.vmac {
        if ipv6 {
            bail!("vmac is supported for IPv4 instances only");
        }
        // Only the macvlan answers ARP for the virtual address (with the virtual MAC): the
        // parent replies only for its own addresses.
        let arp_ignore = format!("/proc/sys/net/ipv4/conf/{}/arp_ignore", instance.interface);
        std::fs::write(&arp_ignore, "1").with_context(|| format!("cannot write {arp_ignore}"))?;
        Holder::Vmac {
            parent: link.index,
            name: format!("vrrp.{}", instance.vrid),
            mac: [0x00, 0x00, 0x5e, 0x00, 0x01, instance.vrid],
        }
    } else {
        Holder::Interface {
            index: link.index,
            mac: link.mac,
        }
    };
    let multicast = instance.unicast_peers.is_empty();
    let socket = VrrpSocket::open(&instance.interface, link.index, source, multicast)
        .with_context(|| format!("cannot open a VRRP socket on {}", instance.interface))?;
    let core = InstanceConfig {
        name: instance.name.clone(),
        vrid: instance.vrid,
        priority: instance.priority,
        advert_interval: instance.advert_interval,
        addresses: instance.addresses.iter().map(|net| net.addr()).collect(),
        source,
        unicast_peers: instance.unicast_peers.clone(),
        preempt: instance.preempt,
    };
    let port = Port {
        interface: instance.interface.clone(),
        socket,
        holder,
        addresses: instance
            .addresses
            .iter()
            .map(|net| (net.addr(), net.prefix_len()))
            .collect(),
    };
    Ok((core, port))
}

struct Task {
    clock: Clock,
    group: Group,
    ports: Vec<Arc<Port>>,
    /// Per instance: whether its addresses are on the interface now.
    holds: Vec<bool>,
    netlink: Netlink,
    announcer: Announcer,
    news: mpsc::UnboundedSender<VrrpNews>,
    /// The report last sent.
    report: Option<VrrpReport>,
    verdicts: watch::Receiver<Verdict>,
    /// The accept-mode table is installed (some instance has `accept = false`).
    not_accepting: bool,
    history: TakeoverHistory,
}

impl Task {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<VrrpRequest>,
        mut received: mpsc::Receiver<(usize, Received)>,
        mut rx_counts: watch::Receiver<Vec<Option<u64>>>,
    ) {
        let now = self.clock.now();
        let verdict = self.verdicts.borrow_and_update().clone();
        self.group.set_tracking(now, verdict.penalty, verdict.fault);
        self.group.start(now);
        loop {
            self.flush().await;
            let deadline = self.group.poll_timeout().map(|at| self.clock.deadline(at));
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = sleep => self.group.handle_timeout(self.clock.now()),
                Some((index, packet)) = received.recv() => {
                    self.group.handle_packet(
                        self.clock.now(),
                        index,
                        packet.src,
                        packet.dst,
                        packet.ttl,
                        &packet.payload,
                    );
                }
                Ok(()) = rx_counts.changed() => {
                    let now = self.clock.now();
                    let counts = rx_counts.borrow_and_update().clone();
                    for (index, count) in counts.into_iter().enumerate() {
                        if let Some(count) = count {
                            self.group.handle_port_rx(now, index, count);
                        }
                    }
                }
                Ok(()) = self.verdicts.changed() => {
                    let verdict = self.verdicts.borrow_and_update().clone();
                    self.group.set_tracking(self.clock.now(), verdict.penalty, verdict.fault);
                }
                request = requests.recv() => match request {
                    Some(VrrpRequest::Shutdown(done)) => {
                        self.group.shutdown(self.clock.now());
                        self.flush().await;
                        if self.not_accepting && let Err(err) = accept::remove() {
                            warn!("{err:#}");
                        }
                        let _ = done.send(());
                        return;
                    }
                    Some(request) => self.request(request),
                    // The driver is gone without a shutdown: leave the same way.
                    None => {
                        self.group.shutdown(self.clock.now());
                        self.flush().await;
                        return;
                    }
                },
            }
        }
    }

    fn request(&mut self, request: VrrpRequest) {
        let now = self.clock.now();
        match request {
            VrrpRequest::Ready(ready) => self.group.set_ready(now, ready),
            VrrpRequest::Peer(peer) => self.group.set_peer(now, peer),
            VrrpRequest::PeerReport(report) => self.group.set_peer_report(now, report),
            VrrpRequest::HandOver(reply) => {
                let _ = reply.send(self.group.hand_over(now).map_err(|e| e.to_string()));
            }
            VrrpRequest::Maintenance(on) => self.group.set_maintenance(now, on),
            VrrpRequest::View(reply) => {
                let _ = reply.send(self.view());
            }
            VrrpRequest::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    /// Adverts first (they are what the peer waits for), then the addresses and their
    /// announcements, then the events, then the report if it changed.
    async fn flush(&mut self) {
        while let Some(VrrpTransmit {
            instance,
            dst,
            payload,
        }) = self.group.poll_transmit()
        {
            if let Err(err) = self.ports[instance].socket.send(dst, &payload) {
                debug!("VRRP advert to {dst} not sent: {err}");
            }
        }
        while let Some(action) = self.group.poll_action() {
            self.act(action).await;
        }
        while let Some(event) = self.group.poll_event() {
            match &event {
                VrrpEvent::GroupChanged { from, to, reason } => {
                    info!("{event}");
                    self.history.record(EventKind::Vrrp, event.to_string());
                    let master = *to == GroupState::Master;
                    if master != (*from == GroupState::Master) {
                        let _ = self.news.send(VrrpNews::Forwarding {
                            master,
                            reason: TakeoverReason::Vrrp {
                                to: *to,
                                why: reason.clone(),
                            },
                        });
                    }
                }
                VrrpEvent::Dropped { .. } => debug!("{event}"),
            }
        }
        let report = self.group.report(self.clock.now());
        if self.report.as_ref() != Some(&report) {
            self.report = Some(report.clone());
            let _ = self.news.send(VrrpNews::Report(report));
        }
    }

    async fn act(&mut self, action: VrrpAction) {
        let port = self.ports[action_instance(action)].clone();
        let result = match action {
            VrrpAction::AddAddresses { instance } => {
                let added = self.add_addresses(&port).await;
                self.holds[instance] = added.is_ok();
                added
            }
            VrrpAction::RemoveAddresses { instance } => {
                self.holds[instance] = false;
                self.remove_addresses(&port).await
            }
            VrrpAction::Announce { .. } => {
                self.announce(&port).await;
                Ok(())
            }
        };
        if let Err(err) = result {
            warn!("VRRP instance on {}: {err:#}", port.interface);
        }
    }

    /// The interface that is to hold the addresses, and its MAC; a vmac is created.
    async fn make_holder(&self, port: &Port) -> anyhow::Result<(u32, [u8; 6])> {
        match &port.holder {
            Holder::Interface { index, mac } => Ok((*index, *mac)),
            Holder::Vmac { parent, name, mac } => {
                let index = self.netlink.create_macvlan(*parent, name, *mac).await?;
                // IPv4 only: an IPv6 link-local derived from the shared MAC would collide.
                let ipv6 = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
                std::fs::write(&ipv6, "1").with_context(|| format!("cannot write {ipv6}"))?;
                Ok((index, *mac))
            }
        }
    }

    /// The interface holding the addresses now, and its MAC (none: no vmac exists).
    async fn holder(&self, port: &Port) -> Option<(u32, [u8; 6])> {
        match &port.holder {
            Holder::Interface { index, mac } => Some((*index, *mac)),
            Holder::Vmac { name, mac, .. } => {
                self.netlink.link(name).await.ok().map(|l| (l.index, *mac))
            }
        }
    }

    async fn add_addresses(&self, port: &Port) -> anyhow::Result<()> {
        let (index, _) = self.make_holder(port).await?;
        for &(address, prefix) in &port.addresses {
            self.netlink
                .add_address(index, address, prefix)
                .await
                .with_context(|| format!("cannot add virtual address {address}/{prefix}"))?;
        }
        Ok(())
    }

    async fn remove_addresses(&self, port: &Port) -> anyhow::Result<()> {
        let Some((index, _)) = self.holder(port).await else {
            return Ok(());
        };
        if let Holder::Vmac { .. } = port.holder {
            return self.netlink.delete_link(index).await;
        }
        for &(address, prefix) in &port.addresses {
            self.netlink
                .remove_address(index, address, prefix)
                .await
                .with_context(|| format!("cannot remove virtual address {address}/{prefix}"))?;
        }
        Ok(())
    }

    async fn announce(&self, port: &Port) {
        let Some((index, mac)) = self.holder(port).await else {
            return;
        };
        for &(address, _) in &port.addresses {
            if let Err(err) = self.announcer.announce(index, mac, address, true) {
                debug!("announcement of {address} not sent: {err}");
            }
        }
    }

    fn view(&self) -> VrrpGroupView {
        let now = self.clock.now();
        let (penalty, fault) = self.group.tracking();
        let not_preempting = self.group.not_preempting(now);
        VrrpGroupView {
            state: group_state_view(self.group.state()),
            reason: self.group.reason().to_string(),
            ready_to_preempt: not_preempting.is_none(),
            not_preempting: not_preempting.map(|n| n.name().to_string()),
            maintenance: self.group.maintenance(),
            peer_check: self.group.config().peer_check,
            peer: peer_view(self.group.peer()),
            silent_intervals: self.group.config().silent_intervals,
            priority_penalty: penalty,
            fault: fault.map(str::to_string),
            instances: self
                .group
                .instances()
                .into_iter()
                .zip(&self.ports)
                .zip(&self.holds)
                .enumerate()
                .map(|(index, ((instance, port), holds))| VrrpInstanceView {
                    name: instance.config.name.clone(),
                    interface: port.interface.clone(),
                    vrid: instance.config.vrid,
                    family: Family::of(instance.config.source),
                    state: instance_state_view(instance.state),
                    priority: instance.priority,
                    configured_priority: instance.config.priority,
                    advert_interval_ms: instance.config.advert_interval.as_millis() as u64,
                    master_address: instance.master.map(|(a, _)| a.to_string()),
                    master_priority: instance.master.map(|(_, p)| p),
                    addresses: port
                        .addresses
                        .iter()
                        .map(|(a, p)| format!("{a}/{p}"))
                        .collect(),
                    holds_addresses: *holds,
                    unicast_peers: instance
                        .config
                        .unicast_peers
                        .iter()
                        .map(IpAddr::to_string)
                        .collect(),
                    adverts_sent: instance.stats.adverts_sent,
                    adverts_received: instance.stats.adverts_received,
                    malformed_dropped: instance.stats.dropped.total(),
                    dropped: drops_view(&instance.stats.dropped),
                    other_vrid: instance.stats.other_vrid,
                    peer_contradicted: instance.stats.peer_contradicted,
                    answers_limited: instance.stats.answers_limited,
                    silent_for: instance.silent_for,
                    port_hears: self.group.hears(index, now),
                    peer_silent: self.group.peer_report_on(index).map(|r| r.silent),
                    peer_hears: self.group.peer_report_on(index).map(|r| r.hears),
                    became_master: instance.stats.became_master,
                })
                .collect(),
            tracks: self.verdicts.borrow().tracks.clone(),
        }
    }
}

fn drops_view(dropped: &DropCounts) -> VrrpDropsView {
    VrrpDropsView {
        family: dropped.get(DropReason::Family),
        ttl: dropped.get(DropReason::Ttl),
        version: dropped.get(DropReason::Version),
        kind: dropped.get(DropReason::Type),
        length: dropped.get(DropReason::Length),
        checksum: dropped.get(DropReason::Checksum),
        unknown_peer: dropped.get(DropReason::UnknownPeer),
    }
}

fn group_state_view(state: GroupState) -> VrrpState {
    match state {
        GroupState::Initialize => VrrpState::Initialize,
        GroupState::Backup => VrrpState::Backup,
        GroupState::Master => VrrpState::Master,
        GroupState::Fault => VrrpState::Fault,
    }
}

fn instance_state_view(state: InstanceState) -> VrrpState {
    match state {
        InstanceState::Initialize => VrrpState::Initialize,
        InstanceState::Backup => VrrpState::Backup,
        InstanceState::Master => VrrpState::Master,
    }
}

fn peer_view(peer: PeerView) -> VrrpPeerState {
    match peer {
        PeerView::Unheard => VrrpPeerState::Unheard,
        PeerView::NotMaster => VrrpPeerState::NotMaster,
        PeerView::Preempting => VrrpPeerState::Preempting,
        PeerView::Master => VrrpPeerState::Master,
    }
}
