//! One virtual router: the RFC 5798 section 6.4 state machine, without the group's decisions
//! (the group decides when a backup becomes master, and moves every instance together).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use failoverd_wire::vrrp::{Advert, MAX_INTERVAL_CS, MULTICAST_V4, MULTICAST_V6};

use crate::time::Instant;

/// One virtual router of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Name for status and logs (`lan`).
    pub name: String,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Configured priority, 1..=254 (255 is for the owner of the addresses, which failoverd
    /// never is: both nodes must be able to hold them).
    pub priority: u8,
    /// How often the master advertises; a multiple of 10 ms (the field counts centiseconds).
    pub advert_interval: Duration,
    /// The virtual addresses (one family).
    pub addresses: Vec<IpAddr>,
    /// This node's primary address on the network: the adverts' source, and the tie-break
    /// between equal priorities (the higher address wins).
    pub source: IpAddr,
    /// Send adverts to these instead of the multicast group, and accept adverts only from them.
    pub unicast_peers: Vec<IpAddr>,
    /// Preempt a lower-priority master (RFC 5798 `Preempt_Mode`), when the group allows it.
    pub preempt: bool,
}

/// `Skew_Time` (RFC 5798 6.1) of a backup of `priority` following adverts every
/// `master_advert_interval`.
fn skew_time(master_advert_interval: Duration, priority: u8) -> Duration {
    master_advert_interval * (256 - u32::from(priority)) / 256
}

/// `Master_Down_Interval` (RFC 5798 6.1): how long a backup of `priority` takes to notice that a
/// master advertising every `master_advert_interval` is gone (three missed adverts and the skew).
pub fn master_down_interval(master_advert_interval: Duration, priority: u8) -> Duration {
    3 * master_advert_interval + skew_time(master_advert_interval, priority)
}

impl InstanceConfig {
    /// Where adverts go.
    pub fn destinations(&self) -> Vec<IpAddr> {
        if !self.unicast_peers.is_empty() {
            return self.unicast_peers.clone();
        }
        vec![match self.source {
            IpAddr::V4(_) => IpAddr::V4(MULTICAST_V4),
            IpAddr::V6(_) => IpAddr::V6(MULTICAST_V6),
        }]
    }

    /// Whether an advert from `src` is a configured unicast peer's. An IPv6 router sends from
    /// its link-local address (RFC 5798 5.1.2.1) even to a peer's global address, and the
    /// configuration names the peer by that global address: then any link-local source stands
    /// for it (TTL 255 already proves it is on the link).
    pub fn is_unicast_peer(&self, src: IpAddr) -> bool {
        let link_local =
            |addr: &IpAddr| matches!(addr, IpAddr::V6(v6) if v6.is_unicast_link_local());
        self.unicast_peers.contains(&src)
            || (link_local(&src) && self.unicast_peers.iter().any(|peer| !link_local(peer)))
    }
}

/// An instance's RFC 5798 state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Not started, or shut down.
    Initialize,
    /// Listening to the master.
    Backup,
    /// Holding the addresses and advertising.
    Master,
}

impl InstanceState {
    /// Stable name for status and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Initialize => "initialize",
            Self::Backup => "backup",
            Self::Master => "master",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an advert means for the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Heard {
    /// Nothing changes state.
    Nothing,
    /// We are master and must answer at once (a leaving master's priority 0 reached us).
    AdvertiseNow,
    /// We are master and another router claims to be master with a lower priority (it missed
    /// our adverts): it steps down at our next advert, but its gratuitous ARPs may have
    /// pointed the neighbours at it, so we advertise and announce at once.
    Contested,
    /// We were master and a better master exists.
    Outranked {
        /// Its address.
        by: IpAddr,
        /// Its priority.
        priority: u8,
    },
}

/// Why a received packet failed the checks of RFC 5798 7.1, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// An IPv4 packet on an IPv6 instance's socket, or the reverse.
    Family,
    /// TTL / hop limit not 255: it was routed, so it comes from off the link.
    Ttl,
    /// Not VRRP version 3.
    Version,
    /// Not an advertisement.
    Type,
    /// Shorter than its header, or not exactly the header and `count` addresses.
    Length,
    /// The checksum over the pseudo-header fails.
    Checksum,
    /// With `unicast_peers`: from another source.
    UnknownPeer,
}

impl DropReason {
    /// Every reason, in the order of the checks.
    pub const ALL: [Self; 7] = [
        Self::Family,
        Self::Ttl,
        Self::Version,
        Self::Type,
        Self::Length,
        Self::Checksum,
        Self::UnknownPeer,
    ];

    /// Stable name for status and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Family => "family",
            Self::Ttl => "ttl",
            Self::Version => "version",
            Self::Type => "type",
            Self::Length => "length",
            Self::Checksum => "checksum",
            Self::UnknownPeer => "unknown_peer",
        }
    }
}

/// Packets dropped by the checks, one counter per [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    /// How many were dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// All of them: what status calls `malformed_dropped`.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn count(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }
}

/// Counters of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Adverts sent (each destination counts).
    pub adverts_sent: u64,
    /// Valid adverts for this instance received.
    pub adverts_received: u64,
    /// Packets dropped by the checks, per reason; their total is `malformed_dropped`.
    pub dropped: DropCounts,
    /// Valid adverts for another virtual router on the network (ignored, not an error).
    pub other_vrid: u64,
    /// Valid adverts ignored because the failoverd peer's state, heard over the failover
    /// link, contradicts them (forged, docs/TAKEOVER.md "Threats").
    pub peer_contradicted: u64,
    /// Contested or priority-0 adverts not answered at once (rate limited): their answer is
    /// the next regular advert.
    pub answers_limited: u64,
    /// Valid adverts whose address list differs from ours (RFC 5798 says to log them).
    pub address_mismatches: u64,
    /// Times this instance became master.
    pub became_master: u64,
}

#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) config: InstanceConfig,
    pub(crate) state: InstanceState,
    /// Configured priority less the tracking penalty, at least 1.
    pub(crate) priority: u8,
    /// The master's advertised interval (RFC `Master_Adver_Interval`).
    master_adver_interval: Duration,
    pub(crate) adver_timer: Option<Instant>,
    pub(crate) master_down_timer: Option<Instant>,
    /// The master last heard: address and priority.
    pub(crate) master: Option<(IpAddr, u8)>,
    /// When this backup last accepted a master's advert (and reset its master-down timer);
    /// `None` while it ignores a lower-priority master to preempt it, or after the master left.
    pub(crate) followed_at: Option<Instant>,
    /// When this master last advertised out of turn (answering a priority 0 or a contested
    /// claim): at most once per advert interval, so a flood is not echoed.
    pub(crate) answered_at: Option<Instant>,
    /// The last advert ignored, and when and from whom: because the peer said it was not
    /// master, or to preempt its lower-priority sender. Taken again when that reason lapses
    /// (the peer stops denying; this node may no longer preempt), so a live master is followed
    /// instead of taken over from at the master-down timer.
    pub(crate) ignored: Option<(Instant, IpAddr, Advert)>,
    /// Master-down intervals in a row that ran out with no master heard (the group did not
    /// take over: it follows a master elsewhere, or cannot).
    pub(crate) silent_for: u32,
    /// The interface's received-packet count as last read, and when it last grew (not yet:
    /// `None`).
    pub(crate) rx: Option<(u64, Option<Instant>)>,
    pub(crate) stats: InstanceStats,
}

impl Instance {
    pub(crate) fn new(config: InstanceConfig) -> Self {
        Self {
            priority: config.priority,
            master_adver_interval: config.advert_interval,
            config,
            state: InstanceState::Initialize,
            adver_timer: None,
            master_down_timer: None,
            master: None,
            followed_at: None,
            answered_at: None,
            ignored: None,
            silent_for: 0,
            rx: None,
            stats: InstanceStats::default(),
        }
    }

    /// `Skew_Time`: a lower priority waits longer, so the best backup takes over first.
    pub(crate) fn skew_time(&self) -> Duration {
        skew_time(self.master_adver_interval, self.priority)
    }

    /// Whether this backup follows a master heard within the last two of its intervals: one
    /// that is alive, as far as this network tells.
    pub(crate) fn follows_live_master(&self, now: Instant) -> bool {
        self.state == InstanceState::Backup
            && self
                .followed_at
                .is_some_and(|at| now < at + 2 * self.master_adver_interval)
    }

    /// `Master_Down_Interval`: three missed adverts and the skew.
    pub(crate) fn master_down_interval(&self) -> Duration {
        master_down_interval(self.master_adver_interval, self.priority)
    }

    /// The advert this instance sends now (priority 0 when leaving the master role).
    pub(crate) fn advert(&self, priority: u8) -> Advert {
        let cs = (self.config.advert_interval.as_millis() / 10).clamp(1, MAX_INTERVAL_CS.into());
        Advert {
            vrid: self.config.vrid,
            priority,
            max_advert_interval_cs: cs as u16,
            addresses: self.config.addresses.clone(),
        }
    }

    /// Startup in a router that does not own the addresses: backup, waiting for a master.
    pub(crate) fn start(&mut self, now: Instant) {
        self.state = InstanceState::Backup;
        self.master_adver_interval = self.config.advert_interval;
        self.master_down_timer = Some(now + self.master_down_interval());
        self.adver_timer = None;
    }

    pub(crate) fn become_master(&mut self, now: Instant) {
        self.state = InstanceState::Master;
        self.silent_for = 0;
        self.master_down_timer = None;
        self.adver_timer = Some(now + self.config.advert_interval);
        self.master = Some((self.config.source, self.priority));
        self.stats.became_master += 1;
    }

    /// Whether an advert from `src` outranks this instance (RFC 5798 6.4.3: a higher priority,
    /// or an equal one from a higher address).
    pub(crate) fn outranked(&self, src: IpAddr, advert: &Advert) -> bool {
        advert.priority > self.priority
            || (advert.priority == self.priority && src > self.config.source)
    }

    pub(crate) fn become_backup(&mut self, now: Instant) {
        self.state = InstanceState::Backup;
        self.adver_timer = None;
        self.master_down_timer = Some(now + self.master_down_interval());
        if self
            .master
            .is_some_and(|(address, _)| address == self.config.source)
        {
            self.master = None;
        }
    }

    pub(crate) fn stop(&mut self) {
        self.state = InstanceState::Initialize;
        self.adver_timer = None;
        self.master_down_timer = None;
    }

    /// RFC 5798 6.4.2 and 6.4.3 for a valid advert from `src`. `may_preempt`: whether this
    /// backup may take over from a lower-priority master now.
    pub(crate) fn heard(
        &mut self,
        now: Instant,
        src: IpAddr,
        advert: &Advert,
        may_preempt: bool,
    ) -> Heard {
        let interval = Duration::from_millis(10 * u64::from(advert.max_advert_interval_cs.max(1)));
        match self.state {
            InstanceState::Initialize => Heard::Nothing,
            InstanceState::Backup => {
                self.followed_at = None;
                if advert.priority == 0 {
                    // The master leaves: the best backup takes over after its skew alone.
                    self.master = None;
                    self.master_down_timer = Some(now + self.skew_time());
                } else if !(self.config.preempt && may_preempt) || advert.priority >= self.priority
                {
                    self.master_adver_interval = interval;
                    self.master_down_timer = Some(now + self.master_down_interval());
                    self.master = Some((src, advert.priority));
                    self.followed_at = Some(now);
                    self.silent_for = 0;
                    self.ignored = None;
                } else {
                    // Preempting: the lower-priority master is ignored, so the master-down
                    // timer runs out.
                    self.master = Some((src, advert.priority));
                    self.ignored = Some((now, src, advert.clone()));
                }
                Heard::Nothing
            }
            InstanceState::Master => {
                if advert.priority == 0 {
                    Heard::AdvertiseNow
                } else if self.outranked(src, advert) {
                    self.master_adver_interval = interval;
                    self.master = Some((src, advert.priority));
                    Heard::Outranked {
                        by: src,
                        priority: advert.priority,
                    }
                } else {
                    Heard::Contested
                }
            }
        }
    }
}
