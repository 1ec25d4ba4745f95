//! The config-sync part of a schedule: whether the seed runs config sync (half of them), in
//! which mode, the units each node names and holds, and what happens to them: the source's
//! units change, the standby's drift, kernels refuse applies, lack a feature or store what
//! they apply in another form, the operator runs `config sync`.
//!
//! It draws from a generator of its own, so the rest of a seed's schedule is the same with or
//! without it.

use std::time::Duration;

use failoverd_core::config_sync::{ConfigSyncConfig, Mode};
use failoverd_wire::{ConfigVersions, UnitId, UnitKind};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::Who;
use crate::pair::{Kernel, Pair};

/// A feature one kernel may lack: content using it fails to apply there.
const FEATURE: &str = "flowtable";

/// Above one chunk ([`failoverd_wire::MAX_CHUNK_LEN`]): its transfer takes several frames.
const BIG_UNIT: usize = 300 * 1024;

/// What happens to the configuration at one point of a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConfigFault {
    /// The operator changes unit `unit` on the active node (the source).
    #[allow(missing_docs)]
    Edit { unit: usize, change: Change },
    /// Someone changes unit `unit` on the standby: drift, never sent back.
    #[allow(missing_docs)]
    Drift { unit: usize, revision: u32 },
    /// The node's kernel refuses its next `count` applies.
    #[allow(missing_docs)]
    RefuseApplies { node: Who, count: usize },
    /// The operator runs `config sync` on the active node.
    FullSync,
}

/// How an edit changes a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// New content: this revision, large (several chunks) or not.
    #[allow(missing_docs)]
    Content { revision: u32, big: bool },
    /// The unit is removed (a table deleted, a file removed).
    Remove,
    /// New content using a feature the other node's kernel may lack.
    Unsupported(u32),
}

/// A seed's config sync.
#[derive(Debug)]
pub struct ConfigPlan {
    /// Auto or manual.
    pub mode: Mode,
    /// Each node's machine settings.
    pub configs: [ConfigSyncConfig; 2],
    /// What happens, when.
    pub faults: Vec<(Duration, ConfigFault)>,
    /// The units each node holds at start.
    kernels: [Vec<(usize, u32)>; 2],
    /// The node whose kernel lacks [`FEATURE`], if one does.
    lacking: Option<usize>,
    /// The node whose kernel stores what it applies in another form, if one does.
    rewriting: Option<usize>,
}

fn unit(index: usize) -> UnitId {
    let (kind, name) = [
        (UnitKind::Nftables, "inet filter"),
        (UnitKind::Nftables, "ip nat"),
        (UnitKind::Files, "/etc/failoverd-sim/hosts"),
        // Named by one node only: never synced.
        (UnitKind::Nftables, "inet local"),
    ][index];
    UnitId {
        kind,
        name: name.to_owned(),
    }
}

/// A unit's canonical content at `revision`.
fn content(index: usize, revision: u32, big: bool, feature: bool) -> Vec<u8> {
    let id = unit(index);
    let mut text = format!("# {} revision {revision}\n", id.name);
    if feature {
        text.push_str(&format!(
            "{FEATURE} f{revision} {{ hook ingress priority 0; }}\n"
        ));
    }
    for rule in 0..(revision % 5) {
        text.push_str(&format!(
            "add rule {} input tcp dport {rule} accept\n",
            id.name
        ));
    }
    let mut bytes = text.into_bytes();
    if big {
        bytes.resize(BIG_UNIT, b'#');
    }
    bytes
}

/// The seed's config sync, or `None` (half the seeds). `dead_interval`: the nodes'.
pub fn plan(seed: u64, dead_interval: Duration) -> Option<ConfigPlan> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_c0f1_6000_0013);
    if !rng.random_bool(0.5) {
        return None;
    }
    let mode = if rng.random_bool(0.5) {
        Mode::Auto
    } else {
        Mode::Manual
    };
    let versions = ConfigVersions {
        failoverd: "0.1.0".into(),
        schema: 1,
        backends: vec![(UnitKind::Nftables, "nftables v1.0.9".into())],
    };
    let ms = |rng: &mut SmallRng, low: u64, high: u64| {
        Duration::from_millis(rng.random_range(low..high))
    };
    let base = ConfigSyncConfig {
        mode,
        units: (0..3).map(unit).collect(),
        versions,
        compare_interval: ms(&mut rng, 200, 600),
        repair_after: rng.random_range(1..=3),
        max_unit_bytes: 1 << 20,
        // As the daemon sets it: the peer declared dead, plus the time to notice.
        confirm_window: 3 * dead_interval,
        retry_after: ms(&mut rng, 300, 1500),
        coalesce: ms(&mut rng, 10, 100),
        seed: 0,
    };
    let mut configs = [base.clone(), base];
    // Sometimes one node names a unit the other does not.
    if rng.random_bool(0.3) {
        configs[rng.random_range(0..2)].units.push(unit(3));
    }
    for (i, config) in configs.iter_mut().enumerate() {
        config.seed = rng.random::<u64>() ^ ((i as u64) << 60);
    }
    // At start the nodes hold the same units (a rejoin sends nothing) or not.
    let same = rng.random_bool(0.4);
    let kernels = [0, 1].map(|node| {
        (0..4)
            .filter(|_| rng.random_bool(0.8))
            .map(|u| (u, if same { 0 } else { node as u32 * 100 }))
            .collect()
    });
    let lacking = rng.random_bool(0.5).then(|| rng.random_range(0..2));
    let rewriting = rng.random_bool(0.25).then(|| rng.random_range(0..2));
    let big = rng.random_bool(0.2);
    let mut revision = 1000;
    let mut faults: Vec<_> = (0..rng.random_range(2..12))
        .map(|_| {
            let at = ms(&mut rng, 300, 8000);
            revision += 1;
            let who = if rng.random_bool(0.5) {
                Who::Active
            } else {
                Who::Standby
            };
            let unit = rng.random_range(0..3);
            let fault = match rng.random_range(0..20) {
                0..8 => ConfigFault::Edit {
                    unit,
                    change: Change::Content {
                        revision,
                        big: big && unit == 0,
                    },
                },
                8 => ConfigFault::Edit {
                    unit,
                    change: Change::Remove,
                },
                9 => ConfigFault::Edit {
                    unit,
                    change: Change::Unsupported(revision),
                },
                10..13 => ConfigFault::Drift { unit, revision },
                13..16 => ConfigFault::RefuseApplies {
                    node: who,
                    count: rng.random_range(1..3),
                },
                _ => ConfigFault::FullSync,
            };
            (at, fault)
        })
        .collect();
    faults.sort_by_key(|(at, _)| *at);
    Some(ConfigPlan {
        mode,
        configs,
        faults,
        kernels,
        lacking,
        rewriting,
    })
}

/// Plays a [`ConfigPlan`] on a pair.
#[derive(Debug)]
pub(super) struct Player {
    plan: ConfigPlan,
    next: usize,
}

impl Player {
    /// Gives the pair's nodes their config sync.
    pub(super) fn start(plan: ConfigPlan, pair: &mut Pair) -> Self {
        let kernels = [0, 1].map(|node| Kernel {
            units: plan.kernels[node]
                .iter()
                .map(|&(u, revision)| (unit(u), content(u, revision, false, false)))
                .collect(),
            lacks: (plan.lacking == Some(node)).then(|| FEATURE.to_owned()),
            rewrites: plan.rewriting == Some(node),
            ..Kernel::default()
        });
        pair.enable_config_sync(plan.configs.clone(), kernels);
        Self { plan, next: 0 }
    }

    /// Applies what is due by `elapsed` into the schedule.
    pub(super) fn step(&mut self, pair: &mut Pair, elapsed: Duration) {
        while let Some(&(at, fault)) = self.plan.faults.get(self.next)
            && at <= elapsed
        {
            self.next += 1;
            let node = |who: Who| super::target(pair, who);
            match fault {
                ConfigFault::Edit { unit: u, change } => {
                    let Some(i) = node(Who::Active) else { continue };
                    let new = match change {
                        Change::Content { revision, big } => Some(content(u, revision, big, false)),
                        Change::Remove => None,
                        Change::Unsupported(revision) => Some(content(u, revision, false, true)),
                    };
                    pair.edit_unit(i, &unit(u), new);
                }
                ConfigFault::Drift { unit: u, revision } => {
                    let Some(i) = node(Who::Standby) else {
                        continue;
                    };
                    pair.edit_unit(i, &unit(u), Some(content(u, revision, false, false)));
                }
                ConfigFault::RefuseApplies { node: who, count } => {
                    if let Some(i) = node(who) {
                        kernel(pair, i).refuse_applies = count;
                    }
                }
                ConfigFault::FullSync => {
                    if let Some(i) = node(Who::Active) {
                        pair.request_config_sync(i);
                    }
                }
            }
        }
    }

    /// Lets the pair settle as the schedule does (`settle`), with the kernels' refusals
    /// over; in manual mode the operator runs `config sync` a second before the end. Then
    /// checks the settled units.
    pub(super) fn settle(self, pair: &mut Pair, settle: Duration) {
        for i in 0..2 {
            kernel(pair, i).refuse_applies = 0;
        }
        // A transfer (a header, then its chunks) completes only if its frames arrive in order
        // (as the daemon's TCP link delivers them): the datagram link stops reordering, or a
        // retransmission might never arrive whole.
        pair.link.faults.jitter = Duration::ZERO;
        if self.plan.mode == Mode::Manual {
            pair.run_for(settle.saturating_sub(Duration::from_secs(1)));
            // A sync on its way (a retransmission) refuses a second one: try again.
            for _ in 0..20 {
                match super::target(pair, Who::Active) {
                    Some(i) if pair.request_config_sync(i) => break,
                    _ => pair.run_for(Duration::from_millis(100)),
                }
            }
            pair.run_for(Duration::from_secs(1));
        } else {
            pair.run_for(settle);
        }
        pair.check_config_settled();
    }
}

fn kernel(pair: &mut Pair, i: usize) -> &mut Kernel {
    &mut pair.config[i]
        .as_mut()
        .expect("the player enabled config sync")
        .kernel
}
