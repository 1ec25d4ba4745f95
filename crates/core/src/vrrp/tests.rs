//! The VRRP state machine on a virtual clock: two groups (nodes A and B) joined by a perfect
//! network.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use failoverd_wire::vrrp::{Advert, MULTICAST_V4};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, last))
}

fn wan(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, last))
}

/// An advert of virtual router `vrid` for the LAN's gateway, from `src` to `dst`.
fn advert(src: IpAddr, dst: IpAddr, vrid: u8, priority: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    Advert {
        vrid,
        priority,
        max_advert_interval_cs: 10,
        addresses: vec![addr(1)],
    }
    .emit(src, dst, &mut bytes);
    bytes
}

fn config(host: u8, priority: u8) -> GroupConfig {
    GroupConfig {
        instances: vec![
            InstanceConfig {
                name: "lan".into(),
                vrid: 51,
                priority,
                advert_interval: 100 * MS,
                addresses: vec![addr(1)],
                source: addr(host),
                unicast_peers: vec![],
                preempt: true,
            },
            InstanceConfig {
                name: "wan".into(),
                vrid: 52,
                priority,
                advert_interval: 100 * MS,
                addresses: vec![wan(1)],
                source: wan(host),
                unicast_peers: vec![],
                preempt: true,
            },
        ],
        preempt_delay: Duration::ZERO,
        announce_repeat: 2,
        announce_interval: 50 * MS,
        peer_check: true,
        silent_intervals: 3,
    }
}

/// Two nodes; `down[n]` is a dead node (it sends and hears nothing); `cut[i]` drops the
/// adverts of instance `i` both ways (one network lost between the nodes); `deaf[n]`: node
/// `n` hears nothing (it is stalled, or its receive path is broken) but still sends.
struct Net {
    nodes: [Group; 2],
    now: Instant,
    down: [bool; 2],
    cut: [bool; 2],
    deaf: [bool; 2],
    /// (time, node, event)
    log: Vec<(Instant, usize, VrrpEvent)>,
    /// Per node: which instances hold their addresses.
    holds: [[bool; 2]; 2],
    announces: [u32; 2],
    /// (time, node, instance) of every announcement.
    announced: Vec<(Instant, usize, usize)>,
    /// The failover link is up: each node knows whether the other's group is master.
    link: bool,
    /// Per node and instance: whether hosts on the network reach its port (its received-packet
    /// count grows).
    port_alive: [[bool; 2]; 2],
    rx: [[u64; 2]; 2],
}

impl Net {
    fn new(a: GroupConfig, b: GroupConfig) -> Self {
        let mut net = Self {
            nodes: [Group::new(a), Group::new(b)],
            now: Instant::ZERO,
            down: [false; 2],
            cut: [false; 2],
            deaf: [false; 2],
            log: Vec::new(),
            holds: [[false; 2]; 2],
            announces: [0; 2],
            announced: Vec::new(),
            link: false,
            port_alive: [[true; 2]; 2],
            rx: [[0; 2]; 2],
        };
        for node in &mut net.nodes {
            node.set_ready(Instant::ZERO, true);
            node.start(Instant::ZERO);
        }
        net.deliver();
        net
    }

    /// What each node's failover link says about the other (instantly, in this model).
    fn tell_peers(&mut self) {
        for n in 0..2 {
            let peer = if self.link && !self.down[1 - n] {
                if self.nodes[1 - n].state() == GroupState::Master {
                    PeerView::Master
                } else {
                    PeerView::NotMaster
                }
            } else {
                PeerView::Unheard
            };
            let now = self.now;
            self.nodes[n].set_peer(now, peer);
        }
    }

    fn deliver(&mut self) {
        loop {
            self.tell_peers();
            let mut moved = false;
            for from in 0..2 {
                while let Some(t) = self.nodes[from].poll_transmit() {
                    moved = true;
                    if self.down[from]
                        || self.down[1 - from]
                        || self.cut[t.instance]
                        || self.deaf[1 - from]
                    {
                        continue;
                    }
                    let src = self.nodes[from].config().instances[t.instance].source;
                    let now = self.now;
                    self.nodes[1 - from]
                        .handle_packet(now, t.instance, src, t.dst, 255, &t.payload);
                }
                while let Some(action) = self.nodes[from].poll_action() {
                    moved = true;
                    match action {
                        VrrpAction::AddAddresses { instance } => self.holds[from][instance] = true,
                        VrrpAction::RemoveAddresses { instance } => {
                            self.holds[from][instance] = false
                        }
                        VrrpAction::Announce { instance } => {
                            self.announces[from] += 1;
                            self.announced.push((self.now, from, instance));
                        }
                    }
                }
                while let Some(event) = self.nodes[from].poll_event() {
                    moved = true;
                    self.log.push((self.now, from, event));
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances to `until`, firing every timer on the way, in order.
    fn run_until(&mut self, until: Instant) {
        loop {
            let next = (0..2)
                .filter(|&n| !self.down[n])
                .filter_map(|n| self.nodes[n].poll_timeout())
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    self.tell_peers();
                    for n in 0..2 {
                        if !self.down[n] {
                            self.nodes[n].handle_timeout(self.now);
                        }
                    }
                    self.deliver();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// [`Net::run_for`] with the daemon's periodic work every 100 ms: each port's
    /// received-packet count read, and (with the link) each node's report sent to the other.
    fn run_polling(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.run_for(100 * MS);
            let now = self.now;
            for n in 0..2 {
                for i in 0..2 {
                    if self.port_alive[n][i] {
                        self.rx[n][i] += 1;
                    }
                    self.nodes[n].handle_port_rx(now, i, self.rx[n][i]);
                }
            }
            for n in 0..2 {
                let report =
                    (self.link && !self.down[1 - n]).then(|| self.nodes[1 - n].report(now));
                self.nodes[n].set_peer_report(now, report);
            }
            self.deliver();
        }
    }

    /// A host on instance `instance`'s network sends a valid advert with the pair's VRID at
    /// `priority` every `every` for `during`; both nodes hear it.
    fn forge(&mut self, instance: usize, priority: u8, every: Duration, during: Duration) {
        let src = [addr(9), wan(9)][instance];
        let dst = IpAddr::V4(MULTICAST_V4);
        let mut bytes = Vec::new();
        Advert {
            vrid: self.nodes[0].config().instances[instance].vrid,
            priority,
            max_advert_interval_cs: 10,
            addresses: self.nodes[0].config().instances[instance].addresses.clone(),
        }
        .emit(src, dst, &mut bytes);
        let end = self.now + during;
        while self.now < end {
            self.run_for(every);
            for n in 0..2 {
                if !self.down[n] {
                    let now = self.now;
                    self.nodes[n].handle_packet(now, instance, src, dst, 255, &bytes);
                }
            }
            self.deliver();
        }
    }

    fn states(&self) -> [GroupState; 2] {
        [self.nodes[0].state(), self.nodes[1].state()]
    }

    fn became_master_at(&self, node: usize) -> Option<Instant> {
        self.log.iter().rev().find_map(|(at, n, e)| {
            matches!(e, VrrpEvent::GroupChanged { to: GroupState::Master, .. } if *n == node)
                .then_some(*at)
        })
    }
}

fn settled(a: u8, b: u8) -> Net {
    let mut net = Net::new(config(2, a), config(3, b));
    net.run_for(2000 * MS);
    net
}

#[test]
fn timers_follow_the_rfc() {
    let instance = Instance::new(config(2, 100).instances[0].clone());
    // Skew_Time = (256 - 100) * 100 ms / 256; Master_Down_Interval = 3 * 100 ms + skew.
    assert_eq!(instance.skew_time(), Duration::from_nanos(60_937_500));
    assert_eq!(
        instance.master_down_interval(),
        Duration::from_nanos(360_937_500)
    );
}

#[test]
fn higher_priority_is_elected_after_its_master_down_interval() {
    let net = settled(200, 100);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    // A's master-down interval at priority 200: 300 ms + 56 * 100 / 256 ms.
    assert_eq!(
        net.became_master_at(0),
        Some(Instant::ZERO + Duration::from_micros(321_875))
    );
    assert_eq!(net.holds, [[true, true], [false, false]]);
    assert_eq!(net.announces[0], 2 * 2, "two announcements per instance");
}

#[test]
fn equal_priorities_elect_the_higher_address() {
    let net = settled(100, 100);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
}

#[test]
fn backup_takes_over_one_master_down_interval_after_the_last_advert() {
    let mut net = settled(200, 100);
    let last_advert = net.now;
    net.down[0] = true;
    net.run_for(1000 * MS);
    assert_eq!(net.nodes[1].state(), GroupState::Master);
    let took = net.became_master_at(1).unwrap() - last_advert;
    // The last advert was at most one interval before the kill; B waits 3 * 100 ms + 60.9 ms.
    assert!(
        took >= 260 * MS && took <= 361 * MS,
        "took over after {took:?}"
    );
}

#[test]
fn priority_zero_hands_over_after_the_skew_time() {
    let mut net = settled(200, 100);
    let at = net.now;
    net.nodes[0].hand_over(at).unwrap();
    net.deliver();
    assert_eq!(
        net.holds[0],
        [false, false],
        "A dropped its addresses at once"
    );
    net.run_for(100 * MS);
    assert_eq!(
        net.became_master_at(1),
        Some(at + Duration::from_nanos(60_937_500))
    );
    // A handed over: it does not preempt back although its priority is higher.
    net.run_for(3000 * MS);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
    assert_eq!(
        net.nodes[0].not_preempting(net.now),
        Some(NotPreempting::HandedOver)
    );
    // When B fails, A takes over again, and preempts again afterwards.
    net.down[1] = true;
    net.run_for(1000 * MS);
    assert_eq!(net.nodes[0].state(), GroupState::Master);
    assert_eq!(net.nodes[0].not_preempting(net.now), None);
}

#[test]
fn a_backup_that_is_not_ready_never_preempts() {
    let mut net = Net::new(config(2, 100), config(3, 200));
    net.nodes[1].set_ready(Instant::ZERO, false);
    net.run_for(2000 * MS);
    // Nobody was master: B took over although not ready, then A listened.
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);

    // Failback: B (higher priority) returns and finds A master; not ready, it waits.
    let mut net = Net::new(config(2, 100), config(3, 200));
    net.down[1] = true;
    net.run_for(2000 * MS);
    assert_eq!(net.nodes[0].state(), GroupState::Master);
    net.down[1] = false;
    net.nodes[1] = Group::new(config(3, 200));
    net.nodes[1].start(net.now);
    net.run_for(5000 * MS);
    assert_eq!(
        net.states(),
        [GroupState::Master, GroupState::Backup],
        "B is not ready: it must not preempt"
    );
    assert_eq!(
        net.nodes[1].not_preempting(net.now),
        Some(NotPreempting::NotReady)
    );
    let ready_at = net.now;
    net.nodes[1].set_ready(ready_at, true);
    net.run_for(1000 * MS);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
    let took = net.became_master_at(1).unwrap() - ready_at;
    // It ignores A's adverts from then on: A's last accepted advert was at most one interval
    // before, and the master-down interval at priority 200 is 321.9 ms.
    assert!(took <= 322 * MS, "preempted {took:?} after becoming ready");
}

#[test]
fn preempt_delay_counts_from_readiness() {
    let mut a = config(2, 100);
    let mut b = config(3, 200);
    b.preempt_delay = 2000 * MS;
    a.preempt_delay = 2000 * MS;
    let mut net = Net::new(a, b.clone());
    net.down[1] = true;
    net.run_for(1000 * MS);
    net.down[1] = false;
    net.nodes[1] = Group::new(b);
    net.nodes[1].start(net.now);
    let ready_at = net.now;
    net.nodes[1].set_ready(ready_at, true);
    net.run_for(1900 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    assert_eq!(
        net.nodes[1].not_preempting(net.now),
        Some(NotPreempting::PreemptDelay)
    );
    net.run_for(1000 * MS);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
}

#[test]
fn nopreempt_keeps_the_current_master() {
    let mut b = config(3, 200);
    for instance in &mut b.instances {
        instance.preempt = false;
    }
    let mut net = Net::new(config(2, 100), b.clone());
    net.down[1] = true;
    net.run_for(1000 * MS);
    net.down[1] = false;
    net.nodes[1] = Group::new(b);
    net.nodes[1].set_ready(net.now, true);
    net.nodes[1].start(net.now);
    net.run_for(5000 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
}

#[test]
fn one_lost_network_moves_the_whole_group() {
    let mut net = settled(200, 100);
    // A's LAN interface fails (a tracked interface, weight 0): A's group goes to fault and
    // steps down on both networks with priority 0, and B takes both over.
    let fault_at = net.now;
    net.nodes[0].set_tracking(fault_at, 0, Some("interface lan down".into()));
    net.deliver();
    assert_eq!(net.nodes[0].state(), GroupState::Fault);
    assert_eq!(net.holds[0], [false, false]);
    net.run_for(200 * MS);
    assert_eq!(net.nodes[1].state(), GroupState::Master);
    assert_eq!(net.holds[1], [true, true]);
    // Priority 0 from A: B took over after the skew, not three intervals.
    let took = net.became_master_at(1).unwrap() - fault_at;
    assert!(took <= 61 * MS, "{took:?}");
    // In fault A never takes over, even with no master.
    net.down[1] = true;
    net.run_for(2000 * MS);
    assert_eq!(net.nodes[0].state(), GroupState::Fault);
    // Recovered: backup, then master (B is gone).
    net.nodes[0].set_tracking(net.now, 0, None);
    net.run_for(1000 * MS);
    assert_eq!(net.nodes[0].state(), GroupState::Master);
}

#[test]
fn an_outranked_instance_takes_its_group_down() {
    let mut net = settled(200, 100);
    // B's priority rises above A's on its own: B preempts on both networks; when A's first
    // instance hears the better master, all of A's step down together.
    for instance in &mut net.nodes[1].instances {
        instance.priority = 250;
    }
    net.run_for(1000 * MS);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
    assert_eq!(net.holds, [[false, false], [true, true]]);
}

#[test]
fn a_tracking_penalty_lets_the_peer_preempt() {
    let mut net = settled(200, 150);
    net.nodes[0].set_tracking(net.now, 60, None);
    net.run_for(1000 * MS);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
    assert_eq!(net.nodes[0].instances()[0].priority, 140);
}

#[test]
fn maintenance_hands_over_and_stays_backup() {
    let mut net = settled(200, 100);
    net.nodes[0].set_maintenance(net.now, true);
    net.run_for(500 * MS);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
    net.down[1] = true;
    net.run_for(2000 * MS);
    assert_eq!(
        net.nodes[0].state(),
        GroupState::Backup,
        "maintenance: never master"
    );
    net.nodes[0].set_maintenance(net.now, false);
    net.run_for(1000 * MS);
    assert_eq!(net.nodes[0].state(), GroupState::Master);
}

#[test]
fn shutdown_sends_priority_zero() {
    let mut net = settled(200, 100);
    let at = net.now;
    net.nodes[0].shutdown(at);
    net.deliver();
    net.down[0] = true;
    net.run_for(200 * MS);
    assert_eq!(
        net.became_master_at(1),
        Some(at + Duration::from_nanos(60_937_500))
    );
    assert_eq!(net.holds[0], [false, false]);
}

#[test]
fn malformed_adverts_are_counted_and_dropped() {
    let mut net = settled(200, 100);
    let now = net.now;
    let src = addr(3);
    let dst = IpAddr::V4(MULTICAST_V4);
    let good = advert(src, dst, 51, 254);
    let node = &mut net.nodes[0];
    node.handle_packet(now, 0, src, dst, 254, &good);
    let mut bad_sum = good.clone();
    bad_sum[6] ^= 1;
    node.handle_packet(now, 0, src, dst, 255, &bad_sum);
    node.handle_packet(now, 0, src, dst, 255, &good[..9]);
    node.handle_packet(now, 0, wan(3), dst, 255, &good);
    assert_eq!(node.instances()[0].stats.dropped.total(), 4);
    assert_eq!(node.state(), GroupState::Master, "none of them counted");
    // Another virtual router on the same network is ignored without counting.
    let other = advert(src, dst, 99, 254);
    node.handle_packet(now, 0, src, dst, 255, &other);
    assert_eq!(node.instances()[0].stats.dropped.total(), 4);
    let mut version = good.clone();
    version[0] = 0x21;
    node.handle_packet(now, 0, src, dst, 255, &version);
    let mut kind = good.clone();
    kind[0] = 0x32;
    node.handle_packet(now, 0, src, dst, 255, &kind);
    node.handle_packet(now, 0, "fe80::3".parse().unwrap(), dst, 255, &good);
    let stats = node.instances()[0].stats;
    let counts: Vec<u64> = DropReason::ALL
        .iter()
        .map(|&r| stats.dropped.get(r))
        .collect();
    // family, TTL, version, type, length, checksum (twice: also from another source),
    // unknown peer: one counter per reason.
    assert_eq!(counts, [1, 1, 1, 1, 1, 2, 0]);
    assert_eq!(stats.dropped.total(), 7);
    assert_eq!(stats.other_vrid, 1);
    // The valid one outranks A.
    node.handle_packet(now, 0, src, dst, 255, &good);
    assert_eq!(node.state(), GroupState::Backup);
}

#[test]
fn unicast_peers_only() {
    let mut a = config(2, 200);
    a.instances[0].unicast_peers = vec![addr(3)];
    let mut net = Net::new(a, config(3, 100));
    net.run_for(1000 * MS);
    let src = addr(9);
    let dst = addr(2);
    let advert = advert(src, dst, 51, 254);
    net.nodes[0].handle_packet(net.now, 0, src, dst, 255, &advert);
    assert_eq!(net.nodes[0].instances()[0].stats.dropped.total(), 1);
    assert_eq!(
        net.nodes[0].instances()[0]
            .stats
            .dropped
            .get(DropReason::UnknownPeer),
        1
    );
    assert_eq!(net.nodes[0].state(), GroupState::Master);
    let dests = net.nodes[0].config().instances[0].destinations();
    assert_eq!(dests, vec![addr(3)]);
}

#[test]
fn adverts_lost_on_one_network_do_not_flap_the_group() {
    let mut net = settled(200, 100);
    net.cut[1] = true;
    net.run_for(5000 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    let changes = net
        .log
        .iter()
        .filter(|(_, n, e)| *n == 1 && matches!(e, VrrpEvent::GroupChanged { .. }))
        .count();
    assert_eq!(
        changes, 1,
        "B only went from initialize to backup: {:?}",
        net.log
    );
}

#[test]
fn preemption_is_not_held_back_by_the_master_it_ignores() {
    let mut net = Net::new(config(2, 100), config(3, 200));
    net.down[1] = true;
    net.run_for(1000 * MS);
    net.down[1] = false;
    net.nodes[1] = Group::new(config(3, 200));
    net.nodes[1].start(net.now);
    net.run_for(1000 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    net.nodes[1].set_ready(net.now, true);
    net.run_for(1000 * MS);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
}

/// A backup that was preempting and stops being ready before its master-down timer runs out
/// follows the master it ignored instead of taking over (simulation seed 17083: the failover
/// link was cut 120 ms after readiness, and the node took over not ready 1 ms after losing
/// it). The control: staying ready, the same backup preempts.
#[test]
fn a_backup_no_longer_ready_stops_preempting_at_once() {
    for stays_ready in [false, true] {
        let mut net = Net::new(config(2, 100), config(3, 200));
        net.down[1] = true;
        net.run_for(1000 * MS);
        net.down[1] = false;
        net.nodes[1] = Group::new(config(3, 200));
        net.nodes[1].start(net.now);
        net.run_for(1000 * MS);
        let followed = net.nodes[1].instances[0].followed_at.unwrap();
        net.nodes[1].set_ready(net.now, true);
        // After A's last advert before B's master-down timer (321.9 ms after the last advert
        // B followed) runs out: nothing from A resets it in between.
        net.run_until(followed + 310 * MS);
        assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
        if !stays_ready {
            net.nodes[1].set_ready(net.now, false);
        }
        net.run_for(1000 * MS);
        let expected = if stays_ready {
            [GroupState::Backup, GroupState::Master]
        } else {
            [GroupState::Master, GroupState::Backup]
        };
        assert_eq!(net.states(), expected, "stays ready: {stays_ready}");
    }
}

#[test]
fn a_dead_master_is_replaced_at_the_first_master_down_timer() {
    let mut net = settled(200, 100);
    let killed = net.now;
    net.down[0] = true;
    net.run_for(1000 * MS);
    let took = net.became_master_at(1).unwrap() - killed;
    // The last adverts (both networks, same phase) were at most one interval before the kill.
    assert!(took <= 361 * MS, "took over {took:?} after the kill");
}

#[test]
fn a_master_contested_by_a_lower_priority_router_reclaims_the_neighbours() {
    let mut net = settled(200, 100);
    // B misses A's adverts long enough to become master (a scheduling stall, a lost burst): it
    // announces itself, and the neighbours follow it. A hears B's lower-priority adverts.
    let announced = net.announces[0];
    net.deaf[1] = true;
    net.run_for(500 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Master]);
    assert!(
        net.announces[0] > announced,
        "A announced its addresses again, so the neighbours leave B"
    );
    net.deaf[1] = false;
    let healed = net.now;
    net.run_for(200 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    let b_down = net
        .log
        .iter()
        .find_map(|(at, n, e)| {
            (*n == 1
                && *at >= healed
                && matches!(
                    e,
                    VrrpEvent::GroupChanged {
                        to: GroupState::Backup,
                        ..
                    }
                ))
            .then_some(*at)
        })
        .unwrap();
    assert!(
        b_down - healed <= 100 * MS,
        "B stepped down {:?} after",
        b_down - healed
    );
}

/// IPv6 unicast to the peers' global addresses: each node's adverts leave from its link-local
/// source (RFC 5798 5.1.2.1), which no configuration names, and elect as multicast does.
#[test]
fn ipv6_unicast_peers_by_global_address() {
    let v6 = |net: u16, host: u16| IpAddr::from([net, 0xdb8, 0, 0, 0, 0, 0, host]);
    let node = |host: u16, priority: u8, peers: &dyn Fn(u16) -> Vec<IpAddr>| {
        let mut config = config(0, priority);
        for (net, instance) in config.instances.iter_mut().enumerate() {
            let net = 0x2001 + net as u16;
            instance.addresses = vec![IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1])];
            instance.source = IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, host]);
            instance.unicast_peers = peers(net);
        }
        config
    };
    let by_global = |other: u16| move |net: u16| vec![v6(net, other)];
    let mut net = Net::new(node(2, 200, &by_global(3)), node(3, 100, &by_global(2)));
    net.run_for(1000 * MS);
    assert_eq!(net.nodes[0].state(), GroupState::Master);
    assert_eq!(net.nodes[1].state(), GroupState::Backup, "B hears A");
    assert_eq!(net.nodes[1].instances()[0].stats.dropped.total(), 0);
    // The control: peers named only by link-local addresses accept no other link-local source.
    let elsewhere = |_: u16| vec![IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 9])];
    let mut net = Net::new(node(2, 200, &elsewhere), node(3, 100, &elsewhere));
    net.run_for(1000 * MS);
    assert_eq!(net.nodes[1].state(), GroupState::Master, "B hears no peer");
    let dropped = net.nodes[1].instances()[0].stats.dropped;
    assert!(dropped.get(DropReason::UnknownPeer) > 0, "{dropped:?}");
}

/// A and B settled with A master, the failover link up, and the peer check as given.
fn checked(check: bool) -> Net {
    let (mut a, mut b) = (config(2, 200), config(3, 100));
    a.peer_check = check;
    b.peer_check = check;
    let mut net = Net::new(a, b);
    net.link = true;
    net.run_for(2000 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    net
}

#[test]
fn a_forged_priority_255_advert_does_not_take_a_checked_group_down() {
    let mut net = checked(true);
    net.forge(0, 255, MS, 2000 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    assert_eq!(
        net.holds,
        [[true, true], [false, false]],
        "A keeps every address"
    );
    let stats = net.nodes[0].instances()[0].stats;
    assert!(stats.peer_contradicted >= 1999, "{stats:?}");
    assert_eq!(net.nodes[0].instances()[1].stats.peer_contradicted, 0);
    assert_eq!(stats.dropped.total(), 0, "valid adverts are not malformed");
}

#[test]
fn without_the_peer_check_a_forged_advert_takes_the_group_down() {
    // The control of the test above: the same flood, the check off.
    let mut net = checked(false);
    net.forge(0, 255, MS, 2000 * MS);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Backup]);
    assert_eq!(
        net.holds,
        [[false, false], [false, false]],
        "no node forwards"
    );
    // And with the check on but the failover link down (a keepalived peer, say): RFC 5798.
    let mut net = checked(true);
    net.link = false;
    net.forge(0, 255, MS, 2000 * MS);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Backup]);
}

#[test]
fn a_peer_that_is_master_is_not_contradicted() {
    // B is deaf for a while and becomes master too; once it hears A again, A's adverts outrank
    // it even with the check on: the peer says it is master, so the RFC decides.
    let mut net = checked(true);
    net.deaf[1] = true;
    net.run_for(500 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Master]);
    net.deaf[1] = false;
    net.run_for(200 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    assert_eq!(net.nodes[1].instances()[0].stats.peer_contradicted, 0);
}

/// A hands over for maintenance while a host on the WAN forges the pair's VRID at 255.
fn maintenance_under_forged_wan_adverts(check: bool) -> Net {
    let mut net = checked(check);
    let now = net.now;
    net.nodes[0].set_maintenance(now, true);
    net.deliver();
    net.forge(1, 255, MS, 2000 * MS);
    net
}

#[test]
fn forged_adverts_on_another_network_do_not_hold_a_checked_backup_back() {
    let net = maintenance_under_forged_wan_adverts(true);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
    assert_eq!(net.holds[1], [true, true]);
}

#[test]
fn without_the_peer_check_forged_adverts_elsewhere_leave_no_master() {
    // The control: the forged master on the WAN is "heard elsewhere" and is followed there.
    let net = maintenance_under_forged_wan_adverts(false);
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Backup]);
    assert_eq!(net.holds, [[false, false], [false, false]]);
}

#[test]
fn a_flood_of_lower_priority_claims_is_not_amplified() {
    // RFC behaviour (no peer heard): every claim is contested, but answered at most once per
    // advert interval, and the announcements repeat at most `announce_repeat` times a window.
    let mut net = settled(200, 100);
    let start = net.now;
    let sent = net.nodes[0].instances()[0].stats.adverts_sent;
    net.forge(0, 1, MS, 3000 * MS);
    net.forge(0, 0, MS, 1000 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    let stats = net.nodes[0].instances()[0].stats;
    // 4 s of 100 ms adverts, and at most one answer per interval besides.
    assert!(stats.adverts_sent - sent <= 2 * 40 + 2, "{stats:?}");
    assert!(stats.answers_limited >= 3900, "{stats:?}");
    let repeat = net.nodes[0].config().announce_repeat as usize;
    for instance in 0..2 {
        let times: Vec<Instant> = net
            .announced
            .iter()
            .filter(|(at, n, i)| *n == 0 && *i == instance && *at >= start)
            .map(|(at, ..)| *at)
            .collect();
        assert!(!times.is_empty(), "A did reclaim its neighbours");
        for (k, &first) in times.iter().enumerate() {
            let in_window = times[k..]
                .iter()
                .take_while(|&&t| t < first + ANNOUNCE_WINDOW)
                .count();
            assert!(
                in_window <= repeat,
                "{in_window} announcements within a window: {times:?}"
            );
        }
    }
}

/// A (master) and B settled with the link up; then LAN adverts stop between them and only
/// `hearing`'s LAN port still hears the network's hosts (a dead switch behind the other's
/// live port). Returns when B became master, if it did within 10 s.
fn lan_lost_behind(hearing: usize, silent_intervals: u32) -> (Net, Option<Duration>) {
    lan_lost_behind_with(hearing, silent_intervals, |_| {})
}

/// [`lan_lost_behind`], with `setup` done to the settled pair before the fault.
fn lan_lost_behind_with(
    hearing: usize,
    silent_intervals: u32,
    setup: impl FnOnce(&mut Net),
) -> (Net, Option<Duration>) {
    let (mut a, mut b) = (config(2, 200), config(3, 100));
    a.silent_intervals = silent_intervals;
    b.silent_intervals = silent_intervals;
    let mut net = Net::new(a, b);
    net.link = true;
    net.run_polling(2000 * MS);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    setup(&mut net);
    let cut = net.now;
    net.cut[0] = true;
    net.port_alive[1 - hearing][0] = false;
    net.run_polling(10_000 * MS);
    let moved = net.became_master_at(1).map(|at| at - cut);
    (net, moved)
}

#[test]
fn adverts_lost_beyond_the_masters_port_move_the_group() {
    let (net, moved) = lan_lost_behind(1, 3);
    let moved = moved.expect("B took over");
    // B silent for 3 master-down intervals (3 x 361 ms), A's port silent for the hearing
    // window (2 s), and a poll (100 ms) at most.
    assert!(moved <= HEARS_WINDOW + 300 * MS, "moved after {moved:?}");
    assert_eq!(net.states(), [GroupState::Backup, GroupState::Master]);
    assert_eq!(net.holds, [[false, false], [true, true]]);
    let changes = net
        .log
        .iter()
        .filter(|(_, _, e)| matches!(e, VrrpEvent::GroupChanged { .. }))
        .count();
    // Each: initialize -> backup, A backup -> master, then A master -> backup and B
    // backup -> master once: no flapping in the 10 s.
    assert_eq!(changes, 5, "{:?}", net.log);
}

#[test]
fn without_the_silent_rule_a_dead_switch_behind_the_master_strands_the_network() {
    // The control: the same fault, silent_intervals = 0 (the rule off): B follows A's WAN
    // adverts and never takes over.
    let (net, moved) = lan_lost_behind(1, 0);
    assert_eq!(moved, None);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
}

#[test]
fn adverts_lost_beyond_the_backups_port_move_nothing() {
    let (net, moved) = lan_lost_behind(0, 3);
    assert_eq!(moved, None, "{:?}", net.log);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    assert_eq!(net.holds, [[true, true], [false, false]]);
    assert!(net.nodes[1].silent(0), "B reports the silence");
    assert!(
        !net.nodes[1].hears(0, net.now),
        "and that its port hears nothing"
    );
}

#[test]
fn a_peer_that_would_not_take_over_is_not_handed_the_group() {
    // B in maintenance never becomes master: its silence is not reported, and A keeps the
    // group (a stranded LAN is no worse than no gateway anywhere).
    let (net, moved) = lan_lost_behind_with(1, 3, |net| {
        let now = net.now;
        net.nodes[1].set_maintenance(now, true);
    });
    assert_eq!(moved, None, "{:?}", net.log);
    assert_eq!(net.states(), [GroupState::Master, GroupState::Backup]);
    assert!(net.nodes[1].silent(0) && net.nodes[1].hears(0, net.now));
    assert_eq!(
        net.nodes[0].peer_report_on(0).map(|r| r.silent),
        Some(false)
    );
}

#[test]
fn the_peers_advert_ahead_of_its_hello_counts_once_the_hello_arrives() {
    // B became master (it preempts at 250, say) and its advert reaches A before its hello
    // saying so: A ignores it, then steps down as soon as the hello tells it was the peer's,
    // not at B's next advert.
    let mut net = checked(true);
    let now = net.now;
    let src = addr(3);
    let dst = IpAddr::V4(MULTICAST_V4);
    let bytes = advert(src, dst, 51, 250);
    let a = &mut net.nodes[0];
    assert_eq!(a.peer(), PeerView::NotMaster);
    a.handle_packet(now, 0, src, dst, 255, &bytes);
    assert_eq!(a.state(), GroupState::Master, "contradicted for now");
    a.set_peer(now + 2 * MS, PeerView::Master);
    assert_eq!(a.state(), GroupState::Backup);
    assert_eq!(a.instances()[0].master, Some((src, 250)));
    // An outranking advert long past (a forger's, say) does not count when the peer later
    // becomes master.
    let mut net = checked(true);
    let now = net.now;
    net.nodes[0].handle_packet(now, 0, src, dst, 255, &bytes);
    net.nodes[0].set_peer(now + 1000 * MS, PeerView::Master);
    assert_eq!(net.nodes[0].state(), GroupState::Master);
}

/// B restarted (priority 200, not ready: it must follow any master); A took over at 100
/// meanwhile, and its first advert reaches B before its hello saying it is master. B ignores it
/// for now; then the failover link says `later` about A, and B's master-down timer (321.9 ms)
/// runs out at 330 ms. Returns B.
fn backup_told_after_contradicted_adverts(later: PeerView) -> Group {
    let mut b = Group::new(config(3, 200));
    b.set_peer(Instant::ZERO, PeerView::NotMaster);
    b.start(Instant::ZERO);
    let at = Instant::ZERO + 300 * MS;
    let dst = IpAddr::V4(MULTICAST_V4);
    for (index, src) in [(0, addr(2)), (1, wan(2))] {
        let mut bytes = Vec::new();
        Advert {
            vrid: b.config().instances[index].vrid,
            priority: 100,
            max_advert_interval_cs: 10,
            addresses: b.config().instances[index].addresses.clone(),
        }
        .emit(src, dst, &mut bytes);
        b.handle_packet(at, index, src, dst, 255, &bytes);
    }
    assert_eq!(b.instances()[0].stats.peer_contradicted, 1);
    b.set_peer(at + 2 * MS, later);
    b.handle_timeout(Instant::ZERO + 330 * MS);
    b
}

#[test]
fn a_backup_follows_the_peers_advert_ahead_of_its_hello_once_the_hello_arrives() {
    // B follows A when the hello arrives instead of taking over too (simulation seed 2611).
    let b = backup_told_after_contradicted_adverts(PeerView::Master);
    assert_eq!(b.state(), GroupState::Backup);
    assert_eq!(b.instances()[0].master, Some((addr(2), 100)));
}

#[test]
fn a_backup_follows_the_adverts_it_ignored_once_the_failover_link_is_lost() {
    // The link is cut before A's hello saying it is master arrives: nothing denies A's
    // mastership any more, so B follows the advert it ignored instead of taking over from a
    // live master it cannot preempt (simulation seed 16480: a switchover, then a cut link).
    let b = backup_told_after_contradicted_adverts(PeerView::Unheard);
    assert_eq!(b.state(), GroupState::Backup);
    assert_eq!(b.instances()[0].master, Some((addr(2), 100)));
    // The control: a peer that still denies mastership keeps the advert ignored.
    let b = backup_told_after_contradicted_adverts(PeerView::NotMaster);
    assert_eq!(b.state(), GroupState::Master);
}

/// The peer check lets a failback through: a peer that is ready, preempting and of higher
/// priority is about to take over, and its first advert comes ahead of the hello that says it
/// did; the master steps down for that advert at once instead of staying master too until the
/// hello arrives (two writers of one table at every failback). The control: a peer that only
/// says it is not master is contradicted, as a forger would be.
#[test]
fn a_preempting_peer_is_followed_before_its_hello_says_master() {
    let mut net = checked(true);
    let now = net.now;
    let (src, dst) = (addr(3), IpAddr::V4(MULTICAST_V4));
    let bytes = advert(src, dst, 51, 250);
    let a = &mut net.nodes[0];
    a.set_peer(now, PeerView::NotMaster);
    a.handle_packet(now, 0, src, dst, 255, &bytes);
    assert_eq!(a.state(), GroupState::Master, "contradicted");
    a.set_peer(now, PeerView::Preempting);
    a.handle_packet(now, 0, src, dst, 255, &bytes);
    assert_eq!(
        a.state(),
        GroupState::Backup,
        "A follows the preempting peer"
    );
}
