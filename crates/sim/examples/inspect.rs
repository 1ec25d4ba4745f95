//! Replays one schedule and prints both nodes' events and where their tables differ.
//! `cargo run -p failoverd-sim --example inspect -- <seed> [stream|vrrp|datagram|heartbeat]` (the mode
//! defaults to the one the randomized run gives the seed).

use failoverd_sim::schedule::{self, Mode};

fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("usage: inspect <seed> [stream|vrrp|datagram|heartbeat]");
    let mode = match std::env::args().nth(2).as_deref() {
        None => Mode::of_seed(seed),
        Some("stream") => Mode::Stream,
        Some("vrrp") => Mode::StreamVrrp,
        Some("datagram") => Mode::Datagram,
        Some("heartbeat") => Mode::StreamHeartbeat,
        Some(other) => panic!("unknown mode {other}"),
    };
    println!("seed {seed}, mode {mode:?}");
    let outcome = schedule::run_inspect(seed, mode, None, |pair| {
        for (i, node) in pair.nodes.iter().enumerate() {
            println!(
                "node {i} ({}): {:?} {:?} ready={} table={}",
                node.id(),
                node.core.state(),
                node.core.role(),
                node.core.is_ready(),
                node.table.len()
            );
            for (at, event) in &node.events {
                println!("  {:>9.3}s {event}", at.as_nanos() as f64 / 1e9);
            }
        }
        if std::env::var_os("TRACE_ALL").is_some() {
            for (at, node, line) in pair.trace.iter().flatten() {
                let line: String = line.chars().take(110).collect();
                println!("  {:>9.3}s node {node}: {line}", at.as_nanos() as f64 / 1e9);
            }
        }
        for (i, config) in pair.config.iter().enumerate() {
            let Some(config) = config else { continue };
            let (status, reason) = config.machine.status();
            println!("node {i} config sync: {status} ({reason})");
            for (unit, content) in &config.kernel.units {
                let hash = failoverd_core::config_sync::unit_hash(content).0;
                println!(
                    "  holds {}: {} bytes, {:02x?}",
                    unit.name,
                    content.len(),
                    &hash[..4]
                );
            }
            let short = |state: Option<failoverd_wire::UnitState>| match state {
                Some(failoverd_wire::UnitState::Present(hash)) => format!("{:02x?}", &hash.0[..4]),
                other => format!("{other:?}"),
            };
            for view in config.machine.units() {
                println!(
                    "  sees {}: here {}, peer {}, last {:?}",
                    view.id.name,
                    short(view.local),
                    short(view.peer),
                    view.last_result.map(|r| (r.outcome, r.message))
                );
            }
            for (at, event) in &config.events {
                println!("  {:>9.3}s {event:?}", at.as_nanos() as f64 / 1e9);
            }
        }
        if let Ok(needle) = std::env::var("GREP") {
            for (at, node, line) in pair
                .trace
                .iter()
                .flatten()
                .filter(|(_, _, l)| l.contains(&needle))
            {
                let i = line.find(&needle).unwrap_or(0);
                println!(
                    "  {:>9.3}s node {node}: {} ... {}",
                    at.as_nanos() as f64 / 1e9,
                    &line[..line.len().min(60)],
                    &line[i.saturating_sub(120)..(i + 60).min(line.len())]
                );
            }
        }
        let print_trace = |key: &failoverd_wire::SessionKey| {
            let needle = format!("{:?}", key.orig);
            for (at, node, line) in pair
                .trace
                .iter()
                .flatten()
                .filter(|(_, _, l)| l.contains(&needle))
            {
                let line: String = line.chars().take(140).collect();
                println!("  {:>9.3}s node {node}: {line}", at.as_nanos() as f64 / 1e9);
            }
        };
        for breach in &pair.merge_rule_breaches {
            println!("merge-rule breach: {breach}");
        }
        for (x, node) in pair.nodes.iter().enumerate() {
            let mut back: Vec<_> = node
                .split_changes
                .iter()
                .filter(|(key, (change, _))| {
                    *change == failoverd_sim::SplitChange::Deleted
                        && !pair.nodes[1 - x].split_changes.contains_key(key)
                        && pair.nodes.iter().any(|n| n.table.get(key).is_some())
                })
                .map(|(key, (_, at))| (*key, *at))
                .collect();
            back.sort();
            for (key, at) in back {
                println!(
                    "node {x} deleted {key} apart at {:.3}s and it is back; its trace:",
                    at.as_nanos() as f64 / 1e9
                );
                print_trace(&key);
            }
        }
        for x in 0..2 {
            let (a, b) = (&pair.nodes[x], &pair.nodes[1 - x]);
            for stale in b
                .table
                .iter()
                .filter(|r| r.owner == a.id() && a.table.get(&r.key).is_none())
            {
                println!(
                    "node {}'s copy of node {x}'s {} is stale; its trace:",
                    1 - x,
                    stale.key
                );
                print_trace(&stale.key);
            }
            for record in a.owned() {
                let key = record.key;
                let mentions = |line: &str| line.contains(&format!("{:?}", key.orig));
                match b.table.get(&record.key) {
                    None => {
                        println!(
                            "node {x}'s {} is missing on the peer; its trace:",
                            record.key
                        );
                        for (at, node, line) in
                            pair.trace.iter().flatten().filter(|(_, _, l)| mentions(l))
                        {
                            let line: String = line.chars().take(160).collect();
                            println!("  {:>9.3}s node {node}: {line}", at.as_nanos() as f64 / 1e9);
                        }
                    }
                    Some(copy) if copy != &record => println!(
                        "node {x}'s {} differs on the peer: owner {} vs {}",
                        record.key, record.owner, copy.owner
                    ),
                    Some(_) => {}
                }
            }
        }
    });
    println!(
        "faults: {:?}\nviolations: {:#?}",
        outcome.faults, outcome.violations
    );
}
