//! The fault lab's faults: a seeded schedule ([`schedule`]) of kills, an impaired or cut
//! failover link (`tc netem` on both ends of the `fo` veth) and restart storms, for
//! `tests/e2e_faults.rs`.

use std::fmt;
use std::time::Duration;

use crate::lab::{Firewall, Lab};

/// A small seeded generator (SplitMix64): the same seed gives the same schedule.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator whose draws `seed` fixes.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next draw, uniform over all of `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high]`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// A duration of whole milliseconds, uniform in `[low, high]` ms.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.between(low, high))
    }

    /// True or false, each half the time.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// One fault; each starts from a settled pair (A master and active, B backup, both
/// synchronized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of `node`'s daemon `after` the fault's start (a random moment under traffic),
    /// restarted `down_for` later. Its kernel, links and addresses stay as they were.
    Kill {
        /// The firewall whose daemon is killed.
        node: Firewall,
        /// From the fault's start to the kill.
        after: Duration,
        /// From the kill to the restart.
        down_for: Duration,
    },
    /// `tc netem` on both ends of the failover link for `lasting`.
    ImpairedLink {
        /// Share of the packets each end drops, in percent (0..=100).
        loss_percent: u8,
        /// Added to every packet each end sends (none where netem is missing).
        delay: Duration,
        /// How long the link stays impaired.
        lasting: Duration,
    },
    /// The failover link alone drops everything for `lasting` (100 % loss on both ends: no
    /// carrier change), VRRP still deciding over the LAN and WAN.
    Partition {
        /// How long the link stays cut.
        lasting: Duration,
    },
    /// `restarts` quick kill-and-restart cycles of `node`, `gap` between each kill and its
    /// restart and between a restart and the next kill.
    RestartStorm {
        /// The firewall whose daemon restarts.
        node: Firewall,
        /// How many kill-and-restart cycles.
        restarts: u8,
        /// Between each kill and its restart, and between a restart and the next kill.
        gap: Duration,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill {
                node,
                after,
                down_for,
            } => write!(f, "kill -9 of {node:?} after {after:?}, down {down_for:?}"),
            Fault::ImpairedLink {
                loss_percent,
                delay,
                lasting,
            } => write!(
                f,
                "failover link {loss_percent}% loss, {delay:?} delay for {lasting:?}"
            ),
            Fault::Partition { lasting } => write!(f, "failover link cut for {lasting:?}"),
            Fault::RestartStorm {
                node,
                restarts,
                gap,
            } => write!(f, "{restarts} restarts of {node:?}, {gap:?} apart"),
        }
    }
}

/// `kills` kills (of A, the active, or B, the standby, at random) and, for every 10 kills or
/// part of it, one impaired link, one partition and one restart storm, shuffled.
pub fn schedule(rng: &mut Rng, kills: usize) -> Vec<Fault> {
    let mut faults: Vec<Fault> = (0..kills)
        .map(|_| Fault::Kill {
            node: if rng.coin() { Firewall::A } else { Firewall::B },
            after: rng.millis(0, 1000),
            down_for: rng.millis(100, 2000),
        })
        .collect();
    for _ in 0..kills.div_ceil(10).max(1) {
        faults.push(Fault::ImpairedLink {
            loss_percent: rng.between(0, 30) as u8,
            delay: rng.millis(0, 50),
            lasting: rng.millis(2000, 4000),
        });
        faults.push(Fault::Partition {
            lasting: rng.millis(1500, 3000),
        });
        faults.push(Fault::RestartStorm {
            node: if rng.coin() { Firewall::A } else { Firewall::B },
            restarts: rng.between(3, 5) as u8,
            gap: rng.millis(100, 400),
        });
    }
    // Fisher-Yates.
    for i in (1..faults.len()).rev() {
        let j = rng.between(0, i as u64) as usize;
        faults.swap(i, j);
    }
    faults
}

/// The nftables table that drops the failover link's packets (a partition; loss where the
/// kernel has no netem).
const DROP_TABLE: &str = "failoverd_faults";

/// How [`impair_link`] impaired the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impairment {
    /// `tc netem`: loss and delay.
    Netem,
    /// The kernel has no `sch_netem` (`CONFIG_NET_SCH_NETEM` unset): the loss is made by
    /// nftables (`numgen random`) and there is no delay.
    NftablesLossOnly,
}

/// `loss_percent` loss and `delay` on the failover link: `tc netem` on both ends of the `fo`
/// veth, or where the kernel has no netem, loss alone with nftables ([`Impairment`]).
pub fn impair_link(lab: &Lab, loss_percent: u8, delay: Duration) -> Impairment {
    let loss = format!("{loss_percent}%");
    let delay = format!("{}ms", delay.as_millis());
    for fw in [Firewall::A, Firewall::B] {
        let out = lab.try_exec(
            fw,
            &[
                "tc", "qdisc", "replace", "dev", "fo", "root", "netem", "loss", &loss, "delay",
                &delay,
            ],
        );
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                why.contains("qdisc kind is unknown"),
                "{}: tc netem on fo: {why}",
                lab.ns(fw)
            );
            drop_on_link(lab, Some(loss_percent));
            return Impairment::NftablesLossOnly;
        }
    }
    Impairment::Netem
}

/// Cuts the failover link alone: both ends drop every packet they send on it (no carrier
/// change, as a cable cut behind a switch).
pub fn cut_link(lab: &Lab) {
    drop_on_link(lab, None);
}

/// An nftables output rule on `fo` in both firewalls dropping `percent` of the packets (all
/// when `None`): each direction loses that share once.
fn drop_on_link(lab: &Lab, percent: Option<u8>) {
    let matching = percent.map_or(String::new(), |p| format!("numgen random mod 100 < {p} "));
    let script = format!(
        "add table inet {DROP_TABLE}; \
         add chain inet {DROP_TABLE} out {{ type filter hook output priority -10; }}; \
         add rule inet {DROP_TABLE} out oifname \"fo\" {matching}drop"
    );
    for fw in [Firewall::A, Firewall::B] {
        lab.exec(fw, &["nft", &script]);
    }
}

/// Removes what [`impair_link`] and [`cut_link`] added (nothing if there is none).
pub fn restore_link(lab: &Lab) {
    for fw in [Firewall::A, Firewall::B] {
        lab.try_exec(fw, &["tc", "qdisc", "del", "dev", "fo", "root"]);
        lab.try_exec(fw, &["nft", "delete", "table", "inet", DROP_TABLE]);
    }
}
