//! Randomized, seeded fault schedules: every (mode, seed) is one reproducible run.

use std::time::Duration;

use failoverd_backends::ApplyError;
use failoverd_core::config_sync::{
    ConfigSyncEvent, ConfigSyncStats, Mode as ConfigMode, SyncStatus,
};
use failoverd_core::{Instant, NodeConfig, RoleAuthority, Stats};
use failoverd_wire::{NodeId, Role};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

mod config;

pub use config::{Change, ConfigFault, ConfigPlan, plan as config_plan};

use crate::link::{LinkFaults, LinkModel};
use crate::mutant::Mutant;
use crate::pair::Pair;

/// What a schedule runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// What the daemon ships with the election: the stream link (TLS over TCP) and
    /// `reliable_link = true`; faults include resets, stalls, apply refusals, table limits.
    Stream,
    /// The stream link with VRRP deciding the role: one `vrrp::Group` per node, adverts over
    /// a LAN of its own that partitions apart from the failover link.
    StreamVrrp,
    /// The lossy, duplicating, reordering datagram link without `reliable_link`; its
    /// schedules are those of the first simulator, seed for seed (regression seeds replay).
    Datagram,
    /// [`Mode::Stream`]'s schedules, seed for seed, with the election's heartbeat path beside
    /// the failover link (never cut): a partition of the link alone is no split brain. Not
    /// dealt out by [`Mode::of_seed`]; run by its own test.
    StreamHeartbeat,
}

impl Mode {
    /// Every mode, in the order [`Mode::of_seed`] deals them out.
    pub const ALL: [Mode; 3] = [Mode::Stream, Mode::StreamVrrp, Mode::Datagram];

    /// The mode a seed of a randomized run plays: every mode gets its share.
    pub fn of_seed(seed: u64) -> Self {
        Self::ALL[(seed % Self::ALL.len() as u64) as usize]
    }
}

/// One fault the schedule injects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// The link drops everything for a while.
    Partition(Duration),
    /// The node dies silently, and restarts (empty) after `down`.
    #[allow(missing_docs)]
    Crash { node: Who, down: Duration },
    /// The node shuts down gracefully, and restarts after `down`.
    #[allow(missing_docs)]
    Shutdown { node: Who, down: Duration },
    /// The node's backend loses its queued change events.
    LoseEvents(Who),
    /// The operator moves the active role.
    Switchover,
    /// The link loses a share `loss` of its frames for `length` (datagram link).
    #[allow(missing_docs)]
    LossBurst { loss: f64, length: Duration },
    /// The transport connections reset: what is in flight is lost, the pair redials (stream).
    Reset,
    /// The LAN the VRRP adverts cross loses everything for a while (the failover link does
    /// not).
    LanPartition(Duration),
    /// The connections deliver nothing for `length`, then all they hold, in order (stream).
    Stall(Duration),
    /// The node's table refuses the next `ops` ops it is asked to apply (ENOMEM).
    #[allow(missing_docs)]
    RefuseApplies { node: Who, ops: usize },
    /// The node's table is full `headroom` entries from now, for `length`
    /// (`nf_conntrack_max`).
    #[allow(missing_docs)]
    TableLimit {
        node: Who,
        headroom: usize,
        length: Duration,
    },
}

/// Which node a fault hits, chosen when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Whichever node is active then.
    Active,
    /// Whichever node is standby then.
    Standby,
}

/// The outcome of one schedule.
#[derive(Debug)]
pub struct Outcome {
    /// The seed that replays it.
    pub seed: u64,
    /// Invariant violations (empty when the run passed).
    pub violations: Vec<String>,
    /// What was injected, for the report.
    pub faults: Vec<(Duration, Fault)>,
    /// Sessions on the nodes at the end.
    pub sessions: [usize; 2],
    /// Both nodes were active at some point (a split brain); the settled tables were compared
    /// all the same.
    pub split_brain: bool,
    /// Breaches of the split-brain merge rule (not violations: see
    /// [`Pair::strict_merge_rule`]).
    pub merge_rule_breaches: usize,
    /// Both nodes' counters at the end: every run of a seed ends with the same.
    pub stats: [Stats; 2],
    /// What config sync did, in the seeds that run it ([`config_plan`]).
    pub config: Option<ConfigOutcome>,
}

/// What config sync did in one schedule.
#[derive(Debug)]
pub struct ConfigOutcome {
    /// Auto or manual.
    pub mode: ConfigMode,
    /// Both machines' counters at the end (of the machine since its node's last restart).
    pub stats: [ConfigSyncStats; 2],
    /// Times a node found both nodes claiming the source (a conflict).
    pub conflicts: usize,
}

/// The configuration of both nodes for a seed.
fn configs(rng: &mut SmallRng) -> [NodeConfig; 2] {
    let (pa, pb) = [(200, 100), (100, 200), (100, 100)][rng.random_range(0..3)];
    let preempt = rng.random_bool(0.8);
    let fast = rng.random_bool(0.3);
    let base = NodeConfig {
        pair_id: 7,
        preempt,
        hello_interval: Duration::from_millis(if fast { 10 } else { 50 }),
        dead_interval: Duration::from_millis(if fast { 40 } else { 150 }),
        silence_timer: Duration::from_millis(rng.random_range(200..1000)),
        max_batch_bytes: [2048, 16 * 1024, 64 * 1024][rng.random_range(0..3)],
        max_in_flight: [2, 16, 128][rng.random_range(0..3)],
        max_apply_slice: [10, 4096][rng.random_range(0..2)],
        // Several digest rounds per schedule, so anti-entropy runs under every fault.
        digest_interval: Duration::from_secs(1),
        seed: rng.random(),
        ..NodeConfig::default()
    };
    [
        NodeConfig {
            node_id: NodeId(0x1000_0001),
            priority: pa,
            ..base.clone()
        },
        NodeConfig {
            node_id: NodeId(0x2000_0002),
            priority: pb,
            ..base
        },
    ]
}

fn random_who(rng: &mut SmallRng) -> Who {
    if rng.random_bool(0.7) {
        Who::Active
    } else {
        Who::Standby
    }
}

fn random_fault(rng: &mut SmallRng) -> Fault {
    let who = random_who(rng);
    let down = Duration::from_millis(rng.random_range(100..3000));
    match rng.random_range(0..6) {
        0 => Fault::Partition(Duration::from_millis(rng.random_range(50..2500))),
        1 => Fault::Crash { node: who, down },
        2 => Fault::Shutdown { node: who, down },
        3 => Fault::LoseEvents(who),
        4 => Fault::Switchover,
        _ => Fault::LossBurst {
            loss: rng.random_range(0.2..0.7),
            length: Duration::from_millis(rng.random_range(50..1000)),
        },
    }
}

/// A fault of the stream link's schedules: those of the datagram link that a TCP connection
/// can suffer, resets and stalls instead of loss, and the backend's refusals.
fn random_stream_fault(rng: &mut SmallRng, vrrp: bool) -> Fault {
    let who = random_who(rng);
    let down = Duration::from_millis(rng.random_range(100..3000));
    let length = Duration::from_millis(rng.random_range(50..2500));
    match rng.random_range(0..if vrrp { 10 } else { 9 }) {
        9 => Fault::LanPartition(length),
        0 => Fault::Partition(length),
        1 => Fault::Crash { node: who, down },
        2 => Fault::Shutdown { node: who, down },
        3 => Fault::LoseEvents(who),
        4 => Fault::Switchover,
        5 => Fault::Reset,
        6 => Fault::Stall(length / 4),
        7 => Fault::RefuseApplies {
            node: who,
            ops: rng.random_range(1..200),
        },
        _ => Fault::TableLimit {
            node: who,
            headroom: rng.random_range(0..50),
            length,
        },
    }
}

/// The live node that has role `who` now, if one does.
fn target(pair: &Pair, who: Who) -> Option<usize> {
    let want = if who == Who::Active {
        Role::Active
    } else {
        Role::Standby
    };
    (0..2).find(|&i| pair.nodes[i].alive && pair.nodes[i].core.role() == want)
}

/// Runs the schedule of `seed` in the mode [`Mode::of_seed`] gives it, optionally with a
/// mutant planted in the harness, and checks every invariant.
pub fn run(seed: u64, mutant: Option<Mutant>) -> Outcome {
    run_mode(seed, Mode::of_seed(seed), mutant)
}

/// Runs the schedule of `seed` in `mode`.
pub fn run_mode(seed: u64, mode: Mode, mutant: Option<Mutant>) -> Outcome {
    run_inspect(seed, mode, mutant, |_| {})
}

/// [`run_mode`], then hands the settled pair to `inspect` (for debugging a failing seed).
pub fn run_inspect(
    seed: u64,
    mode: Mode,
    mutant: Option<Mutant>,
    inspect: impl FnOnce(&Pair),
) -> Outcome {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut configs = configs(&mut rng);
    let model = match mode {
        Mode::Stream | Mode::StreamVrrp | Mode::StreamHeartbeat => {
            for config in &mut configs {
                config.reliable_link = true;
                if mode == Mode::StreamVrrp {
                    config.role_authority = RoleAuthority::External;
                }
            }
            LinkModel::Stream
        }
        Mode::Datagram => LinkModel::Datagram,
    };
    let advert_interval = configs[0].hello_interval;
    let faults = LinkFaults {
        loss: if rng.random_bool(0.5) {
            0.0
        } else {
            rng.random_range(0.0..0.08)
        },
        duplicate: if rng.random_bool(0.7) {
            0.0
        } else {
            rng.random_range(0.0..0.05)
        },
        delay: Duration::from_micros(rng.random_range(50..2000)),
        jitter: Duration::from_micros(rng.random_range(0..3000)),
    };
    let silence = configs[0].silence_timer;
    let config_plan = config::plan(seed, configs[0].dead_interval);
    let mut pair = Pair::with_link(configs, model, faults, rng.random());
    pair.mutant = mutant;
    match mode {
        Mode::StreamVrrp => pair.enable_vrrp(advert_interval),
        Mode::StreamHeartbeat => pair.enable_heartbeat(),
        Mode::Stream | Mode::Datagram => {}
    }
    if std::env::var_os("FAILOVERD_SIM_TRACE").is_some() {
        pair.trace = Some(Vec::new());
    }
    let config_mode = config_plan.as_ref().map(|plan| plan.mode);
    let mut config_player = config_plan.map(|plan| config::Player::start(plan, &mut pair));
    let length = Duration::from_millis(rng.random_range(3000..8000));
    let mut schedule: Vec<(Duration, Fault)> = (0..rng.random_range(1..=4))
        .map(|_| {
            (
                Duration::from_millis(rng.random_range(300..length.as_millis() as u64)),
                match mode {
                    Mode::Stream | Mode::StreamHeartbeat => random_stream_fault(&mut rng, false),
                    Mode::StreamVrrp => random_stream_fault(&mut rng, true),
                    Mode::Datagram => random_fault(&mut rng),
                },
            )
        })
        .collect();
    schedule.sort_by_key(|(at, _)| *at);
    let mut restarts: Vec<(Instant, usize)> = Vec::new();
    let mut heal_at: Vec<Instant> = Vec::new();
    let mut lan_heal_at: Vec<Instant> = Vec::new();
    // When a node's table limit is lifted; a restart (a new, empty table) lifts it too.
    let mut unlimit_at: Vec<(Instant, usize)> = Vec::new();
    let mut next_fault = 0;
    let end = Instant::ZERO + length;
    let traffic_gap = Duration::from_micros(rng.random_range(500..10_000));

    while pair.now < end {
        pair.run_for(traffic_gap.mul_f64(rng.random_range(0.5..1.5)));
        pair.traffic_step();
        let now = pair.now;
        if let Some(player) = &mut config_player {
            player.step(&mut pair, now - Instant::ZERO);
        }
        restarts.retain(|&(at, node)| {
            if at <= now {
                pair.restart(node);
                false
            } else {
                true
            }
        });
        unlimit_at.retain(|&(at, node)| {
            if at <= now {
                pair.nodes[node].table.set_capacity_limit(None);
                false
            } else {
                true
            }
        });
        lan_heal_at.retain(|&at| {
            if at <= now {
                pair.set_lan_partitioned(false);
                false
            } else {
                true
            }
        });
        heal_at.retain(|&at| {
            if at <= now {
                pair.set_partitioned(false);
                pair.link.faults = faults;
                false
            } else {
                true
            }
        });
        while next_fault < schedule.len() && Instant::ZERO + schedule[next_fault].0 <= now {
            let fault = schedule[next_fault].1;
            next_fault += 1;
            match fault {
                Fault::Partition(length) => {
                    pair.set_partitioned(true);
                    heal_at.push(now + length);
                }
                Fault::Crash { node, down } | Fault::Shutdown { node, down } => {
                    if let Some(i) = target(&pair, node) {
                        if matches!(fault, Fault::Crash { .. }) {
                            pair.crash(i);
                        } else {
                            pair.shutdown(i);
                        }
                        restarts.push((now + down, i));
                    }
                }
                Fault::LoseEvents(node) => {
                    if let Some(i) = target(&pair, node) {
                        pair.lose_events(i);
                        // Traffic ends sessions on the active node; the first delete's event
                        // is lost with the overrun, and the peer learns of it only through the
                        // resync (and its sweep).
                        if node == Who::Active {
                            for _ in 0..3 {
                                pair.delete_random(i);
                            }
                        }
                    }
                }
                Fault::Switchover => {
                    if let Some(i) = target(&pair, Who::Active) {
                        pair.switchover(i);
                    }
                }
                Fault::LossBurst { loss, length } => {
                    pair.link.faults.loss = loss;
                    heal_at.push(now + length);
                }
                Fault::Reset => pair.reset_link("connection reset (injected)"),
                Fault::LanPartition(length) => {
                    pair.set_lan_partitioned(true);
                    lan_heal_at.push(now + length);
                }
                Fault::Stall(length) => pair.link.stall(now + length),
                Fault::RefuseApplies { node, ops } => {
                    if let Some(i) = target(&pair, node) {
                        pair.nodes[i]
                            .table
                            .refuse_next_ops(ops, ApplyError::TableFull);
                    }
                }
                Fault::TableLimit {
                    node,
                    headroom,
                    length,
                } => {
                    if let Some(i) = target(&pair, node) {
                        let limit = pair.nodes[i].table.len() + headroom;
                        pair.nodes[i].table.set_capacity_limit(Some(limit));
                        unlimit_at.push((now + length, i));
                    }
                }
            }
        }
    }

    // Heal everything, let the pair settle without traffic, then demand a mirrored pair.
    pair.set_partitioned(false);
    pair.set_lan_partitioned(false);
    pair.link.faults = LinkFaults {
        loss: 0.0,
        duplicate: 0.0,
        ..faults
    };
    for i in 0..2 {
        pair.restart(i);
        pair.nodes[i].table.set_capacity_limit(None);
        pair.nodes[i]
            .table
            .refuse_next_ops(0, ApplyError::TableFull);
    }
    let settle = 2 * silence + Duration::from_secs(3);
    match config_player {
        Some(player) => player.settle(&mut pair, settle),
        None => pair.run_for(settle),
    }
    pair.check_settled();
    inspect(&pair);
    let config = config_mode.map(|mode| ConfigOutcome {
        mode,
        stats: [0, 1].map(|i| {
            pair.config[i]
                .as_ref()
                .map(|c| c.machine.stats().clone())
                .unwrap_or_default()
        }),
        conflicts: [0, 1]
            .iter()
            .filter_map(|&i| pair.config[i].as_ref())
            .flat_map(|c| &c.events)
            .filter(|(_, e)| {
                matches!(
                    e,
                    ConfigSyncEvent::StatusChanged {
                        to: SyncStatus::Conflict,
                        ..
                    }
                )
            })
            .count(),
    });
    Outcome {
        seed,
        violations: std::mem::take(&mut pair.violations),
        faults: schedule,
        sessions: [pair.nodes[0].table.len(), pair.nodes[1].table.len()],
        split_brain: pair.split_brain_at.is_some(),
        merge_rule_breaches: pair.merge_rule_breaches.len(),
        stats: [0, 1].map(|i| pair.nodes[i].core.stats().clone()),
        config,
    }
}
