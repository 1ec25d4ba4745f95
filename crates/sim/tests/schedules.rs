//! Randomized fault schedules with invariant checks, and proof that the checks can fail.
//!
//! `FAILOVERD_SIM_SCHEDULES=N` runs N schedules instead of the default 1,000;
//! `FAILOVERD_SIM_SEED=S` replays one seed and prints its faults and violations.

use failoverd_core::PlantedBug;
use failoverd_sim::schedule;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

#[test]
fn randomized_schedules_keep_every_invariant() {
    if let Some(seed) = env_u64("FAILOVERD_SIM_SEED") {
        let outcome = schedule::run(seed, None);
        println!("seed {seed}: faults {:?}", outcome.faults);
        assert!(
            outcome.violations.is_empty(),
            "seed {seed}: {:#?}",
            outcome.violations
        );
        return;
    }
    let count = env_u64("FAILOVERD_SIM_SCHEDULES").unwrap_or(1000);
    let mut failures = Vec::new();
    let mut split_brains = 0;
    for seed in 0..count {
        let outcome = schedule::run(seed, None);
        split_brains += u64::from(outcome.split_brain);
        if !outcome.violations.is_empty() {
            failures.push((seed, outcome.faults, outcome.violations));
        }
    }
    println!(
        "{count} schedules run, {} failed; {split_brains} had a split brain (tables not compared)",
        failures.len()
    );
    for (seed, faults, violations) in failures.iter().take(5) {
        println!(
            "replay with FAILOVERD_SIM_SEED={seed}\n  faults: {faults:?}\n  violations: {violations:#?}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {count} schedules violated invariants (seeds {:?})",
        failures.len(),
        failures.iter().map(|f| f.0).take(20).collect::<Vec<_>>()
    );
}

/// Each planted bug must be caught within the schedules a normal run plays.
fn caught(bug: PlantedBug) -> u64 {
    let limit = env_u64("FAILOVERD_SIM_SCHEDULES").unwrap_or(1000);
    for seed in 0..limit {
        let outcome = schedule::run(seed, Some(bug));
        if !outcome.violations.is_empty() {
            println!("{bug:?} caught by seed {seed}: {}", outcome.violations[0]);
            return seed;
        }
    }
    panic!("{bug:?} was not caught by {limit} schedules: the invariants cannot see it");
}

#[test]
fn planted_ack_before_apply_is_caught() {
    caught(PlantedBug::AckBeforeApply);
}

#[test]
fn planted_skipped_sweep_is_caught() {
    caught(PlantedBug::SkipSweep);
}

#[test]
fn planted_takeover_before_ready_is_caught() {
    caught(PlantedBug::TakeOverBeforeReady);
}
