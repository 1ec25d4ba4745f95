//! A native VRRPv3 speaker (RFC 5798), sans-I/O: the virtual routers of one node, moving
//! together as a group.
//!
//! Every input carries `now`; outputs are polled: adverts to send ([`Group::poll_transmit`]),
//! address work for the adapter ([`Group::poll_action`]) and state changes
//! ([`Group::poll_event`]). The group adds what a firewall pair needs on top of the RFC
//! (docs/TAKEOVER.md):
//!
//! - all instances move together: one becoming master makes all master, one losing to a better
//!   master or failing makes all step down (the others with priority 0, so the peer takes over
//!   on those networks after its skew time instead of three missed adverts);
//! - a backup preempts a lower-priority master only while the failover core says it is ready
//!   (it holds the peer's sessions), for `preempt_delay`, and not after handing over; with no
//!   master at all it takes over at once, ready or not;
//! - tracking lowers every instance's priority, or puts the group in fault (never master);
//! - maintenance: hand over and stay backup;
//! - the peer cross-check (a deviation from RFC 5798 6.4.3, docs/TAKEOVER.md "Threats"): while
//!   the failoverd peer says over the failover link that it is not master, an advert claiming
//!   mastership is not the peer's and is ignored, so a forged one neither takes the group down
//!   nor holds a backup back;
//! - answers to contested claims and priority 0, and the announcements they repeat, are rate
//!   limited, so a flood of forged adverts is not amplified.

mod instance;

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use failoverd_wire::WireError;
use failoverd_wire::vrrp::{Advert, TTL, VrrpPacket};
use failoverd_wire::{VrrpInstanceReport, VrrpReport};

use crate::time::Instant;
pub use instance::{
    DropCounts, DropReason, InstanceConfig, InstanceState, InstanceStats, master_down_interval,
};
use instance::{Heard, Instance};

/// The group's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The virtual routers; at least one.
    pub instances: Vec<InstanceConfig>,
    /// Once ready, how long to wait before preempting a lower-priority master.
    pub preempt_delay: Duration,
    /// Gratuitous ARPs / unsolicited NAs per address on becoming master.
    pub announce_repeat: u32,
    /// Between those.
    pub announce_interval: Duration,
    /// Cross-check adverts with the peer's state from the failover link ([`PeerView`]).
    pub peer_check: bool,
    /// After this many master-down intervals in a row with no master heard on one instance
    /// (while the group follows a master on another network), the failover link decides
    /// which node acts ([`Group::set_peer_report`]); 0: never.
    pub silent_intervals: u32,
}

/// An interface "hears" its network while its received-packet count grew within this long:
/// hosts there (ARP, neighbour discovery, traffic) reach it.
pub const HEARS_WINDOW: Duration = Duration::from_secs(2);

/// A new burst of announcements (a reclaim) begins at least this long after the last
/// announcement, so any window of this length holds at most one burst:
/// [`GroupConfig::announce_repeat`] announcements per address.
pub const ANNOUNCE_WINDOW: Duration = Duration::from_secs(1);

/// What the failover link says about the peer's VRRP group: the role in its authenticated
/// hellos, which follows its group's mastership ([`crate::Node::vrrp_peer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerView {
    /// No failoverd peer is heard (none configured, a keepalived or other router, or the
    /// failoverd peer is dead or cut off): adverts are taken as RFC 5798 says.
    Unheard,
    /// The peer is alive and says its group is not master.
    NotMaster,
    /// The peer is alive and not master yet, but ready, preempting and of a higher priority:
    /// it is about to take over. Its first advert travels the LAN faster than the hello that
    /// says it became master, so adverts are taken as RFC 5798 says (otherwise both would be
    /// master until that hello arrived: two writers of one table at every failback).
    Preempting,
    /// The peer is alive and says its group is master.
    Master,
}

impl PeerView {
    /// Stable name for status and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unheard => "unheard",
            Self::NotMaster => "not-master",
            Self::Preempting => "preempting",
            Self::Master => "master",
        }
    }
}

/// The group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// Not started, or shut down.
    Initialize,
    /// Every instance is backup.
    Backup,
    /// Every instance is master: this node forwards.
    Master,
    /// A tracked object with weight 0 failed: never master.
    Fault,
}

impl GroupState {
    /// Stable name for status and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Initialize => "initialize",
            Self::Backup => "backup",
            Self::Master => "master",
            Self::Fault => "fault",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the group is in its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupReason {
    /// Not started yet.
    NotStarted,
    /// Started: backup (or fault), waiting for a master.
    Started,
    /// A master of higher priority was heard on one instance's network.
    Outranked {
        /// The instance's name.
        instance: String,
        /// The master's address.
        master: IpAddr,
        /// Its priority.
        priority: u8,
    },
    /// No master was heard on one instance's network for the master-down interval.
    MasterDown {
        /// The instance's name.
        instance: String,
    },
    /// A tracked object with weight 0 failed.
    Fault {
        /// What failed, in the trackers' words.
        why: String,
        /// The group was master and stepped down.
        stepped_down: bool,
    },
    /// The tracked objects recovered from a fault.
    Recovered,
    /// Switchover: mastership handed to the peer.
    Switchover,
    /// Maintenance: mastership handed to the peer, and never taken.
    Maintenance,
    /// Leaving: mastership handed over with priority 0.
    ShuttingDown,
    /// Stopped.
    ShutDown,
    /// The peer hears one instance's network, where neither our adverts reach it nor our port
    /// hears anything: the network's hosts are on the peer's side.
    PeerHearsNetwork {
        /// The instance's name.
        instance: String,
    },
}

impl fmt::Display for GroupReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotStarted => f.write_str("not started"),
            Self::Started => f.write_str("started"),
            Self::Outranked {
                instance,
                master,
                priority,
            } => write!(f, "{instance}: master {master} has priority {priority}"),
            Self::MasterDown { instance } => {
                write!(f, "master down timer expired on {instance}")
            }
            Self::Fault {
                why,
                stepped_down: true,
            } => write!(f, "fault: {why}"),
            Self::Fault {
                why,
                stepped_down: false,
            } => f.write_str(why),
            Self::Recovered => f.write_str("tracked objects recovered"),
            Self::Switchover => f.write_str("switchover"),
            Self::Maintenance => f.write_str("maintenance"),
            Self::ShuttingDown => f.write_str("shutting down"),
            Self::ShutDown => f.write_str("shut down"),
            Self::PeerHearsNetwork { instance } => write!(
                f,
                "{instance}: the peer hears that network but none of our adverts, and this \
                 node's port hears nothing"
            ),
        }
    }
}

/// An advert to send: `payload` is the VRRP message (checksum included) for an IP packet from
/// the instance's source to `dst`, TTL 255.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpTransmit {
    /// Index of the instance in [`GroupConfig::instances`].
    pub instance: usize,
    /// The multicast group or a unicast peer.
    pub dst: IpAddr,
    /// The message.
    pub payload: Vec<u8>,
}

/// Work for the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpAction {
    /// Add the instance's virtual addresses (becoming master).
    AddAddresses {
        /// Index of the instance.
        instance: usize,
    },
    /// Remove them (leaving the master role).
    RemoveAddresses {
        /// Index of the instance.
        instance: usize,
    },
    /// Send a gratuitous ARP / unsolicited NA for each of its addresses.
    Announce {
        /// Index of the instance.
        instance: usize,
    },
}

/// A state change, for the daemon (the core's role follows the group) and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VrrpEvent {
    /// The group changed state.
    GroupChanged {
        /// Before.
        from: GroupState,
        /// After.
        to: GroupState,
        /// Why, for the log and status.
        reason: GroupReason,
    },
    /// An advert was dropped; `why` names the check that failed.
    Dropped {
        /// Index of the instance whose socket got it.
        instance: usize,
        /// Its source.
        src: IpAddr,
        /// Which check failed.
        why: String,
    },
}

impl fmt::Display for VrrpEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GroupChanged { from, to, reason } => {
                write!(f, "VRRP group {from} -> {to}: {reason}")
            }
            Self::Dropped { src, why, .. } => write!(f, "VRRP advert from {src} dropped: {why}"),
        }
    }
}

/// One instance as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    /// Its settings.
    pub config: InstanceConfig,
    /// Its state.
    pub state: InstanceState,
    /// Its priority now (configured less the tracking penalty).
    pub priority: u8,
    /// The master last heard (or this node): address and priority.
    pub master: Option<(IpAddr, u8)>,
    /// Its counters.
    pub stats: InstanceStats,
    /// Master-down intervals in a row with no master heard.
    pub silent_for: u32,
}

/// Why a ready backup would still not preempt, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotPreempting {
    /// The failover core does not hold the peer's sessions yet.
    NotReady,
    /// Ready, but not yet for `preempt_delay`.
    PreemptDelay,
    /// This node handed over (switchover) and stays backup while the peer is master.
    HandedOver,
    /// Maintenance mode.
    Maintenance,
    /// In fault.
    Fault,
}

impl NotPreempting {
    /// Stable name for status and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotReady => "not-ready",
            Self::PreemptDelay => "preempt-delay",
            Self::HandedOver => "handed-over",
            Self::Maintenance => "maintenance",
            Self::Fault => "fault",
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VrrpCommandError {
    /// Only a master can hand over.
    #[error("this node is not the VRRP master")]
    NotMaster,
}

/// The virtual routers of one node.
#[derive(Debug)]
pub struct Group {
    config: GroupConfig,
    instances: Vec<Instance>,
    state: GroupState,
    reason: GroupReason,
    /// The failover core holds the peer's sessions, since this instant.
    ready_since: Option<Instant>,
    /// Handed over on purpose: no preemption until this node is master again.
    handed_over: bool,
    maintenance: bool,
    penalty: u8,
    fault: Option<String>,
    announce_at: Option<Instant>,
    announces_left: u32,
    /// No new burst of announcements before this: [`ANNOUNCE_WINDOW`] after the last one.
    quiet_until: Option<Instant>,
    /// The peer's group, as the failover link says.
    peer: PeerView,
    /// What the peer's instances hear, as its last report over the failover link said.
    peer_report: Option<VrrpReport>,
    transmits: VecDeque<VrrpTransmit>,
    actions: VecDeque<VrrpAction>,
    events: VecDeque<VrrpEvent>,
}

impl Group {
    /// A group in Initialize; [`Group::start`] starts it.
    pub fn new(config: GroupConfig) -> Self {
        let instances = config
            .instances
            .iter()
            .cloned()
            .map(Instance::new)
            .collect();
        Self {
            config,
            instances,
            state: GroupState::Initialize,
            reason: GroupReason::NotStarted,
            ready_since: None,
            handed_over: false,
            maintenance: false,
            penalty: 0,
            fault: None,
            announce_at: None,
            announces_left: 0,
            quiet_until: None,
            peer: PeerView::Unheard,
            peer_report: None,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Every instance starts as backup and waits for a master (RFC 5798 6.4.1); a stale address
    /// left by an earlier run is removed.
    pub fn start(&mut self, now: Instant) {
        for (index, instance) in self.instances.iter_mut().enumerate() {
            instance.start(now);
            self.actions
                .push_back(VrrpAction::RemoveAddresses { instance: index });
        }
        let to = if self.fault.is_some() {
            GroupState::Fault
        } else {
            GroupState::Backup
        };
        self.set_state(to, GroupReason::Started);
    }

    /// The group's state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Why it is in that state.
    pub fn reason(&self) -> &GroupReason {
        &self.reason
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Every instance, for status.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.instances
            .iter()
            .map(|i| InstanceView {
                config: i.config.clone(),
                state: i.state,
                priority: i.priority,
                master: i.master,
                stats: i.stats,
                silent_for: i.silent_for,
            })
            .collect()
    }

    /// The peer's group as last told ([`Group::set_peer`]).
    pub fn peer(&self) -> PeerView {
        self.peer
    }

    /// Whether maintenance mode is on.
    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    /// The tracking penalty and fault, as last set.
    pub fn tracking(&self) -> (u8, Option<&str>) {
        (self.penalty, self.fault.as_deref())
    }

    /// Why this node would not preempt a lower-priority master now, if it would not.
    pub fn not_preempting(&self, now: Instant) -> Option<NotPreempting> {
        if self.fault.is_some() {
            Some(NotPreempting::Fault)
        } else if self.maintenance {
            Some(NotPreempting::Maintenance)
        } else if self.handed_over {
            Some(NotPreempting::HandedOver)
        } else {
            match self.ready_since {
                None => Some(NotPreempting::NotReady),
                Some(since) if now < since + self.config.preempt_delay => {
                    Some(NotPreempting::PreemptDelay)
                }
                Some(_) => None,
            }
        }
    }

    // ---- inputs ----

    /// A packet from instance `index`'s socket: the VRRP message, with the IP source,
    /// destination and TTL it came with. Everything is checked here (RFC 5798 7.1); what fails
    /// is counted and dropped.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        index: usize,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        bytes: &[u8],
    ) {
        let Some(instance) = self.instances.get_mut(index) else {
            return;
        };
        if src == instance.config.source || instance.state == InstanceState::Initialize {
            return;
        }
        let advert = match check(instance, src, dst, ttl, bytes) {
            Ok(Some(advert)) => advert,
            // Another virtual router on the same network: not ours, not an error.
            Ok(None) => {
                instance.stats.other_vrid += 1;
                return;
            }
            Err((reason, why)) => {
                instance.stats.dropped.count(reason);
                self.events.push_back(VrrpEvent::Dropped {
                    instance: index,
                    src,
                    why,
                });
                return;
            }
        };
        if self.contradicted(index, &advert) {
            let instance = &mut self.instances[index];
            instance.stats.peer_contradicted += 1;
            self.events.push_back(VrrpEvent::Dropped {
                instance: index,
                src,
                why: format!(
                    "priority {} contradicts the peer, which says over the failover link that \
                     it is not master",
                    advert.priority
                ),
            });
            instance.ignored = Some((now, src, advert));
            return;
        }
        let instance = &mut self.instances[index];
        instance.stats.adverts_received += 1;
        if advert.addresses != instance.config.addresses {
            instance.stats.address_mismatches += 1;
        }
        self.heard(now, index, src, &advert);
    }

    /// A valid advert that the peer's state does not contradict: RFC 5798 6.4.2 and 6.4.3,
    /// and the group's decisions.
    fn heard(&mut self, now: Instant, index: usize, src: IpAddr, advert: &Advert) {
        let may_preempt = self.not_preempting(now).is_none();
        match self.instances[index].heard(now, src, advert, may_preempt) {
            Heard::Nothing => {}
            Heard::AdvertiseNow => self.answer(now, index),
            Heard::Contested => {
                // A reclaim is an answer and a burst of announcements; a flood of claims gets
                // one per window, the regular adverts do the rest.
                if self.burst_allowed(now) {
                    self.answer(now, index);
                    self.begin_burst(now);
                } else {
                    self.instances[index].stats.answers_limited += 1;
                }
            }
            Heard::Outranked { by, priority } => {
                let instance = self.instances[index].config.name.clone();
                self.step_down(
                    now,
                    GroupState::Backup,
                    GroupReason::Outranked {
                        instance,
                        master: by,
                        priority,
                    },
                    Some(index),
                );
            }
        }
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for index in 0..self.instances.len() {
            let instance = &mut self.instances[index];
            if instance.adver_timer.is_some_and(|at| at <= now) {
                instance.adver_timer = Some(now + instance.config.advert_interval);
                self.advertise(index, None);
            }
            let heard_elsewhere = self.master_heard_elsewhere(index, now);
            let instance = &mut self.instances[index];
            if instance.master_down_timer.is_some_and(|at| at <= now) {
                if self.state == GroupState::Backup && !self.maintenance && !heard_elsewhere {
                    let instance = instance.config.name.clone();
                    self.take_over(now, GroupReason::MasterDown { instance });
                } else {
                    // In fault or maintenance: keep listening, never take over. With a live
                    // master heard on another network, the peer is alive and only this
                    // network lost its adverts: taking over would last until that master's
                    // next advert outranks us there, and then again (a flapping group).
                    instance.master = None;
                    instance.followed_at = None;
                    instance.master_down_timer = Some(now + instance.master_down_interval());
                    instance.silent_for = instance.silent_for.saturating_add(1);
                }
            }
        }
        if self.announce_at.is_some_and(|at| at <= now) {
            self.announce(now);
        }
    }

    /// What the failover link says about the peer's group (used only with
    /// [`GroupConfig::peer_check`]). When the peer stops denying mastership (its hello says it
    /// became master, its first advert having come ahead; or the link is lost before that
    /// hello arrives), the adverts ignored because of the denial are taken now.
    pub fn set_peer(&mut self, now: Instant, peer: PeerView) {
        let denied = self.peer_denies_mastership();
        self.peer = peer;
        if denied && !self.peer_denies_mastership() {
            self.retake_ignored(now);
        }
    }

    /// Takes again the last advert each instance ignored, if within its master-down interval
    /// and no longer contradicted: once the reason it was ignored has lapsed, a master steps
    /// down for it and a backup follows it instead of taking over from a live master too.
    fn retake_ignored(&mut self, now: Instant) {
        for index in 0..self.instances.len() {
            let instance = &mut self.instances[index];
            let recent = instance.master_down_interval();
            let Some((at, src, advert)) = instance.ignored.take() else {
                continue;
            };
            if now >= at + recent {
                continue;
            }
            if self.contradicted(index, &advert) {
                self.instances[index].ignored = Some((at, src, advert));
            } else {
                self.heard(now, index, src, &advert);
            }
        }
    }

    /// The received-packet count of instance `index`'s interface, read periodically (every
    /// advert interval or so): whether the network behind it is alive.
    pub fn handle_port_rx(&mut self, now: Instant, index: usize, rx_packets: u64) {
        let Some(instance) = self.instances.get_mut(index) else {
            return;
        };
        instance.rx = match instance.rx {
            // The first reading tells nothing of the network yet.
            None => Some((rx_packets, None)),
            Some((count, grew)) if count == rx_packets => Some((count, grew)),
            Some(_) => Some((rx_packets, Some(now))),
        };
        self.yield_to_a_hearing_peer(now);
    }

    /// What the peer's instances hear, from its reports over the failover link (`None`: no
    /// live peer, or one that does not report).
    pub fn set_peer_report(&mut self, now: Instant, report: Option<VrrpReport>) {
        self.peer_report = report;
        self.yield_to_a_hearing_peer(now);
    }

    /// What this node's instances hear, for the peer.
    pub fn report(&self, now: Instant) -> VrrpReport {
        VrrpReport {
            instances: (0..self.instances.len())
                .map(|index| {
                    let instance = &self.instances[index];
                    VrrpInstanceReport {
                        vrid: instance.config.vrid,
                        ipv6: instance.config.source.is_ipv6(),
                        // Only a backup that would take over: the master hands over to it.
                        silent: self.silent(index)
                            && self.state == GroupState::Backup
                            && !self.maintenance,
                        hears: self.hears(index, now),
                    }
                })
                .collect(),
        }
    }

    /// The peer's report on instance `index`'s virtual router, if any.
    pub fn peer_report_on(&self, index: usize) -> Option<VrrpInstanceReport> {
        let config = &self.instances[index].config;
        self.peer_report.as_ref().and_then(|report| {
            report
                .instances
                .iter()
                .find(|r| r.vrid == config.vrid && r.ipv6 == config.source.is_ipv6())
                .copied()
        })
    }

    /// Whether instance `index` has heard no master for `silent_intervals` master-down
    /// intervals.
    pub fn silent(&self, index: usize) -> bool {
        self.config.silent_intervals > 0
            && self.instances[index].silent_for >= self.config.silent_intervals
    }

    /// Whether instance `index`'s interface heard its network lately ([`HEARS_WINDOW`]).
    pub fn hears(&self, index: usize, now: Instant) -> bool {
        self.instances[index]
            .rx
            .and_then(|(_, grew)| grew)
            .is_some_and(|grew| now < grew + HEARS_WINDOW)
    }

    /// What the failover core says: whether it holds the peer's sessions. A backup that was
    /// preempting a lower-priority master and no longer may follows it from its last advert,
    /// instead of taking over at a master-down timer that ran while it ignored that master.
    pub fn set_ready(&mut self, now: Instant, ready: bool) {
        match (ready, self.ready_since) {
            (true, None) => self.ready_since = Some(now),
            (false, Some(_)) => {
                self.ready_since = None;
                self.retake_ignored(now);
            }
            _ => {}
        }
    }

    /// The trackers' verdict: a priority penalty, or a fault (never master).
    pub fn set_tracking(&mut self, now: Instant, penalty: u8, fault: Option<String>) {
        self.penalty = penalty;
        for instance in &mut self.instances {
            instance.priority = instance.config.priority.saturating_sub(penalty).max(1);
        }
        let was_fault = self.fault.is_some();
        self.fault = fault.clone();
        match (self.state, fault) {
            (GroupState::Initialize, _) => {}
            (GroupState::Master, Some(why)) => {
                let reason = GroupReason::Fault {
                    why,
                    stepped_down: true,
                };
                self.step_down(now, GroupState::Fault, reason, None)
            }
            (GroupState::Backup, Some(why)) => {
                let reason = GroupReason::Fault {
                    why,
                    stepped_down: false,
                };
                self.set_state(GroupState::Fault, reason)
            }
            (GroupState::Fault, None) if was_fault => {
                self.set_state(GroupState::Backup, GroupReason::Recovered)
            }
            _ => {}
        }
    }

    // ---- commands ----

    /// Switchover: leave the master role with priority 0 (the peer takes over after its skew
    /// time) and stay backup while the peer is master.
    pub fn hand_over(&mut self, now: Instant) -> Result<(), VrrpCommandError> {
        if self.state != GroupState::Master {
            return Err(VrrpCommandError::NotMaster);
        }
        self.handed_over = true;
        self.step_down(now, GroupState::Backup, GroupReason::Switchover, None);
        Ok(())
    }

    /// Maintenance on: hand over if master and never become master; off: back to normal.
    pub fn set_maintenance(&mut self, now: Instant, on: bool) {
        self.maintenance = on;
        if on && self.state == GroupState::Master {
            self.step_down(now, GroupState::Backup, GroupReason::Maintenance, None);
        }
    }

    /// Leaving: a master sends priority 0 and removes its addresses; then nothing runs.
    pub fn shutdown(&mut self, now: Instant) {
        if self.state == GroupState::Master {
            self.step_down(now, GroupState::Backup, GroupReason::ShuttingDown, None);
        }
        for instance in &mut self.instances {
            instance.stop();
        }
        self.announce_at = None;
        self.set_state(GroupState::Initialize, GroupReason::ShutDown);
    }

    // ---- outputs ----

    /// The next advert to send.
    pub fn poll_transmit(&mut self) -> Option<VrrpTransmit> {
        self.transmits.pop_front()
    }

    /// The next address work.
    pub fn poll_action(&mut self) -> Option<VrrpAction> {
        self.actions.pop_front()
    }

    /// The next state change.
    pub fn poll_event(&mut self) -> Option<VrrpEvent> {
        self.events.pop_front()
    }

    /// The earliest timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.instances
            .iter()
            .flat_map(|i| [i.adver_timer, i.master_down_timer])
            .chain([self.announce_at])
            .flatten()
            .min()
    }

    // ---- internals ----

    /// A master whose adverts do not reach the peer on one network (a dead switch behind a live
    /// port) while the peer hears that network and this node does not hands the group over:
    /// the network's hosts are on the peer's side. A backup with a dead port, which reports
    /// that it hears nothing, is not followed.
    fn yield_to_a_hearing_peer(&mut self, now: Instant) {
        if self.state != GroupState::Master {
            return;
        }
        let found = (0..self.instances.len()).find(|&index| {
            self.peer_report_on(index)
                .is_some_and(|peer| peer.silent && peer.hears && !self.hears(index, now))
        });
        if let Some(index) = found {
            let instance = self.instances[index].config.name.clone();
            // As after a switchover: no preemption back while the peer is master, or the
            // group would return to the side that cannot reach the network.
            self.handed_over = true;
            self.step_down(
                now,
                GroupState::Backup,
                GroupReason::PeerHearsNetwork { instance },
                None,
            );
        }
    }

    /// Whether an instance other than `index` follows a live master. A master the peer
    /// denies being is none (the peer check): forged adverts on one network do not hold the
    /// group back on the others.
    fn master_heard_elsewhere(&self, index: usize, now: Instant) -> bool {
        !self.peer_denies_mastership()
            && self
                .instances
                .iter()
                .enumerate()
                .any(|(other, i)| other != index && i.follows_live_master(now))
    }

    fn peer_denies_mastership(&self) -> bool {
        self.config.peer_check && self.peer == PeerView::NotMaster
    }

    /// The peer check: the VRID's other router is the failoverd peer, which says it is not
    /// master, so a claim of mastership is not the peer's. A master ignores every advert (an
    /// outranking one would take the group down, a lower one would be contested); a backup
    /// ignores all but priority 0 (a leaving master's, which the peer, no longer master, may
    /// already have said).
    fn contradicted(&self, index: usize, advert: &Advert) -> bool {
        self.peer_denies_mastership()
            && match self.instances[index].state {
                InstanceState::Master => true,
                InstanceState::Backup => advert.priority != 0,
                InstanceState::Initialize => false,
            }
    }

    /// An advert out of turn, at most one per advert interval per instance.
    fn answer(&mut self, now: Instant, index: usize) {
        let instance = &mut self.instances[index];
        let interval = instance.config.advert_interval;
        if instance.answered_at.is_some_and(|at| now < at + interval) {
            instance.stats.answers_limited += 1;
            return;
        }
        instance.answered_at = Some(now);
        self.advertise_now(now, index);
    }

    /// Whether a new burst of announcements may begin.
    fn burst_allowed(&self, now: Instant) -> bool {
        self.quiet_until.is_none_or(|at| now >= at)
    }

    fn begin_burst(&mut self, now: Instant) {
        self.announces_left = self.config.announce_repeat;
        self.announce(now);
    }

    fn take_over(&mut self, now: Instant, reason: GroupReason) {
        self.handed_over = false;
        for index in 0..self.instances.len() {
            self.instances[index].become_master(now);
            self.advertise(index, None);
            self.actions
                .push_back(VrrpAction::AddAddresses { instance: index });
        }
        self.begin_burst(now);
        self.set_state(GroupState::Master, reason);
    }

    /// Every master instance becomes backup and removes its addresses; all but `outranked`
    /// (which lost to a better master on its network) first send priority 0.
    fn step_down(
        &mut self,
        now: Instant,
        to: GroupState,
        reason: GroupReason,
        outranked: Option<usize>,
    ) {
        for index in 0..self.instances.len() {
            if self.instances[index].state != InstanceState::Master {
                continue;
            }
            if outranked != Some(index) {
                self.advertise(index, Some(0));
            }
            self.instances[index].become_backup(now);
            self.actions
                .push_back(VrrpAction::RemoveAddresses { instance: index });
        }
        self.announce_at = None;
        self.set_state(to, reason);
    }

    fn advertise_now(&mut self, now: Instant, index: usize) {
        self.advertise(index, None);
        let interval = self.instances[index].config.advert_interval;
        self.instances[index].adver_timer = Some(now + interval);
    }

    fn advertise(&mut self, index: usize, priority: Option<u8>) {
        let instance = &mut self.instances[index];
        let advert = instance.advert(priority.unwrap_or(instance.priority));
        for dst in instance.config.destinations() {
            let mut payload = Vec::new();
            advert.emit(instance.config.source, dst, &mut payload);
            instance.stats.adverts_sent += 1;
            self.transmits.push_back(VrrpTransmit {
                instance: index,
                dst,
                payload,
            });
        }
    }

    fn announce(&mut self, now: Instant) {
        if self.announces_left == 0 {
            self.announce_at = None;
            return;
        }
        self.announces_left -= 1;
        self.quiet_until = Some(now + ANNOUNCE_WINDOW);
        for index in 0..self.instances.len() {
            self.actions
                .push_back(VrrpAction::Announce { instance: index });
        }
        self.announce_at = (self.announces_left > 0).then_some(now + self.config.announce_interval);
    }

    fn set_state(&mut self, to: GroupState, reason: GroupReason) {
        let from = self.state;
        self.state = to;
        self.reason = reason.clone();
        if from != to {
            self.events
                .push_back(VrrpEvent::GroupChanged { from, to, reason });
        }
    }
}

/// RFC 5798 7.1: the checks of a received advert, cheapest first. `Ok(None)`: valid, for
/// another virtual router.
fn check(
    instance: &Instance,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    bytes: &[u8],
) -> Result<Option<Advert>, (DropReason, String)> {
    if src.is_ipv6() != instance.config.source.is_ipv6() {
        return Err((DropReason::Family, "wrong address family".to_string()));
    }
    if ttl != TTL {
        return Err((DropReason::Ttl, format!("TTL {ttl}, not {TTL}")));
    }
    let packet = VrrpPacket::new_checked(bytes, src.is_ipv6()).map_err(|err| {
        let reason = match err {
            WireError::UnsupportedVersion(_) => DropReason::Version,
            WireError::Malformed(_) => DropReason::Type,
            _ => DropReason::Length,
        };
        (reason, err.to_string())
    })?;
    if !packet.checksum_ok(src, dst) {
        return Err((DropReason::Checksum, "bad checksum".to_string()));
    }
    if packet.vrid() != instance.config.vrid {
        return Ok(None);
    }
    if !instance.config.unicast_peers.is_empty() && !instance.config.is_unicast_peer(src) {
        return Err((
            DropReason::UnknownPeer,
            "source is not a configured unicast peer".to_string(),
        ));
    }
    Ok(Some(Advert::parse(&packet)))
}

#[cfg(test)]
mod tests;
