use failoverd_core::Event;
use failoverd_sim::schedule::{self, Mode};

#[test]
fn trace_seed() {
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    let outcome = schedule::run_inspect(seed, Mode::of_seed(seed), None, |pair| {
        println!(
            "breaches: {:?} split_brain_at {:?}",
            pair.merge_rule_breaches, pair.split_brain_at
        );
        let mut all = Vec::new();
        for n in 0..2 {
            for (at, e) in &pair.nodes[n].events {
                match e {
                    Event::RoleChanged { .. } | Event::StateChanged { .. } => {
                        all.push((*at, n, format!("{e:?}")))
                    }
                    _ => {}
                }
            }
        }
        for n in 0..2 {
            if let Some(g) = pair.nodes[n].vrrp.as_ref() {
                println!("n{n} vrrp stats {:?}", g.instances()[0].stats);
            }
        }
        all.sort_by_key(|x| x.0);
        for (at, n, e) in all {
            println!(
                "{:>8.3} n{n} {}",
                at.as_nanos() as f64 / 1e9,
                &e[..e.len().min(200)]
            );
        }
    });
    println!("faults {:?}", outcome.faults);
}
