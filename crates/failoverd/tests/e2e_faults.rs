//! The fault-injection lab: network namespaces, the real kernel, the real daemons (VRRP, the
//! conntrack backend). A seeded schedule of faults (`support::faults`) runs under steady
//! traffic (`support::generator`): kill -9 of the active (A) or the standby (B) at a random
//! moment, restarted after a random delay; failover-link loss (0-30 %) and delay with
//! `tc netem`; a partition of the failover link alone, VRRP still deciding; restart storms.
//!
//! The oracle is the generator's own log and the streams' echoes, not failoverd's
//! acknowledgements. After each fault the pair settles (both synchronized with nothing pending,
//! A master again and the only holder of the addresses); then:
//! - every stream established before the fault survived it: no reset, its longest gap bounded;
//! - the two kernels' tables are equal on the shared field list (`support::tables::differences`:
//!   tuples, NAT, mark, zone, labels, the status bits that are not node-local, TCP state),
//!   but for sessions that ended less than the hold of deletes ago (B applies A's deletes
//!   that late);
//! - every session in both kernels has one owner: exactly one kernel stamps it "the peer's"
//!   (where both do, each node's sweep after the other's bulk sync removes it);
//! - no session lost: every UDP flow the generator saw answered more than
//!   [`REPLICATED_WITHIN`] before the fault is in both tables. Flows answered during a
//!   partition, or while the active's daemon was down, are reported, not counted;
//! - during a partition, B never adds a virtual address (never two holders), seen by the
//!   address watchers.
//!
//! `cargo test` runs a small schedule (4 kills, one fault of each other kind);
//! `FAILOVERD_FAULT_KILLS=60 cargo test --release -p failoverd --test e2e_faults -- --nocapture`
//! runs a long one. Each run prints its seed; `FAILOVERD_FAULT_SEED=N` replays a schedule.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`); without them each test
//! prints "skipped: ..." and passes, except under `CI=true`, where it fails.

use failoverd_lab as support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use failoverd_backends::sample_record;
use failoverd_backends::session::conformance::table_differences;
use failoverd_core::vrrp::master_down_interval;
use failoverd_wire::{NodeId, SessionKey, SessionRecord};
use support::addrwatch::AddrWatch;
use support::conntrack::{self, Flow};
use support::daemon::{Daemon, DaemonOptions, quiescent};
use support::faults::{self, Fault, Rng};
use support::generator::Generator;
use support::lab::{GATEWAY4, VIPS4};
use support::{Firewall, Lab, require_root_and_tools, tables};

/// VRRP adverts every 200 ms: B's Master_Down_Interval is 0.72 s.
const ADVERT_MS: u32 = 200;
const STREAMS: usize = 4;
const STREAM_INTERVAL: Duration = Duration::from_millis(10);
/// A new short flow (UDP and TCP alternately) every 20 ms.
const FLOW_INTERVAL: Duration = Duration::from_millis(20);
/// A session answered this long before a fault has been replicated: losing it counts.
const REPLICATED_WITHIN: Duration = Duration::from_secs(1);
/// The longest gap a stream may have across a fault: a takeover (0.72 s) plus the client's
/// retransmission backoff.
const MAX_GAP: Duration = Duration::from_secs(4);
/// How long the pair may take to settle after a fault.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);
const KILLS_IN_CI: usize = 4;
/// Steady traffic between one fault's checks and the next fault.
const BETWEEN_FAULTS: Duration = Duration::from_secs(2);

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}"))
    })
}

/// The pair under test; a daemon slot is empty while that daemon is killed.
struct Pair {
    options: DaemonOptions,
    a: Option<Daemon>,
    b: Option<Daemon>,
    lab: Lab,
}

impl Pair {
    fn slot(&mut self, fw: Firewall) -> &mut Option<Daemon> {
        match fw {
            Firewall::A => &mut self.a,
            Firewall::B => &mut self.b,
        }
    }

    fn kill(&mut self, fw: Firewall) {
        if let Some(mut daemon) = self.slot(fw).take() {
            daemon.kill9();
        }
    }

    fn restart(&mut self, fw: Firewall) {
        let daemon = self.lab.spawn_daemon(fw, &self.options);
        *self.slot(fw) = Some(daemon);
    }

    /// Waits until both are synchronized with nothing pending, A is VRRP master and active,
    /// and only A holds the virtual addresses; how long it took, or what was missing.
    fn settle(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let why = self.unsettled();
            let Some(why) = why else {
                return Ok(started.elapsed());
            };
            if started.elapsed() > SETTLE_WITHIN {
                return Err(format!("not settled within {SETTLE_WITHIN:?}: {why}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn unsettled(&mut self) -> Option<String> {
        for fw in [Firewall::A, Firewall::B] {
            let daemon = self.slot(fw).as_mut()?;
            if let Some(exit) = daemon.exited() {
                return Some(format!("{fw:?}'s daemon exited: {exit}"));
            }
            let Some(status) = daemon.status() else {
                return Some(format!("{fw:?} does not answer"));
            };
            if !quiescent(&status) {
                return Some(format!(
                    "{fw:?} is not quiescent: {:?}, ready {}",
                    status.state, status.ready
                ));
            }
            let master = status
                .takeover
                .group
                .as_ref()
                .is_some_and(|g| g.state == "master");
            if master != (fw == Firewall::A) {
                return Some(format!("{fw:?}: VRRP master {master}"));
            }
        }
        (!self.lab.holds_vips(Firewall::A) || self.lab.holds_any_vip(Firewall::B))
            .then(|| "A is not the only holder of the addresses".to_string())
    }
}

/// What a run measured, and every violation of the oracle.
#[derive(Debug, Default)]
struct Report {
    faults: usize,
    kills: usize,
    /// Times B added the virtual gateway (it took over).
    takeovers: usize,
    streams_survived: usize,
    longest_gap: Duration,
    sessions_checked: usize,
    sessions_lost: usize,
    /// Answered during a partition or while the active's daemon was down: not counted.
    sessions_during_faults: usize,
    sessions_during_faults_lost: usize,
    during_faults_missing_example: Option<String>,
    flows: usize,
    flows_failed: usize,
    violations: Vec<String>,
}

/// Starts the lab, the pair and the traffic, runs `faults` in order, checks after each; stops at
/// the first fault the pair does not settle from.
fn run(options: DaemonOptions, faults: &[Fault]) -> Report {
    let lab = Lab::up_without_shared();
    for fw in [Firewall::A, Firewall::B] {
        // Every answered UDP flow stays in the tables for the whole run. Both timeouts: a new
        // flow that reuses an earlier flow's source port (thousands of flows from one client
        // do) is a later packet on an answered entry, which the kernel gives the stream
        // timeout; with the default 120 s such entries expired mid-run on both firewalls.
        for timeout in [
            "nf_conntrack_udp_timeout",
            "nf_conntrack_udp_timeout_stream",
        ] {
            lab.set_sysctl(fw, &format!("net.netfilter.{timeout}"), "3600");
        }
    }
    let mut pair = Pair {
        options,
        a: None,
        b: None,
        lab,
    };
    pair.restart(Firewall::A);
    pair.restart(Firewall::B);
    let mut report = Report::default();
    if let Err(why) = pair.settle() {
        report
            .violations
            .push(format!("the pair never settled: {why}"));
        pair.lab.keep_files();
        return report;
    }
    let watches = [
        AddrWatch::start(&pair.lab, Firewall::A),
        AddrWatch::start(&pair.lab, Firewall::B),
    ];
    let generator = Generator::start(&pair.lab, STREAMS, STREAM_INTERVAL, FLOW_INTERVAL);
    // Traffic whose sessions count at the first fault (answered more than REPLICATED_WITHIN
    // before it), as between faults.
    std::thread::sleep(BETWEEN_FAULTS);
    let table_max = MaxWatch::start();
    // Windows whose sessions are reported, not counted: (from, to).
    let mut excused: Vec<(Instant, Instant)> = Vec::new();
    for (i, fault) in faults.iter().enumerate() {
        // Wall-clock time, to find the fault in the daemons' logs.
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        println!("fault {i} (at {:.3}): {fault}", at.as_secs_f64());
        let active_killed = matches!(
            fault,
            Fault::Kill {
                node: Firewall::A,
                ..
            } | Fault::RestartStorm {
                node: Firewall::A,
                ..
            }
        );
        let started = Instant::now();
        let excuse_from = started - REPLICATED_WITHIN;
        let mut partition = None;
        match *fault {
            Fault::Kill {
                node,
                after,
                down_for,
            } => {
                std::thread::sleep(after);
                pair.kill(node);
                report.kills += 1;
                std::thread::sleep(down_for);
                pair.restart(node);
            }
            Fault::ImpairedLink {
                loss_percent,
                delay,
                lasting,
            } => {
                let how = faults::impair_link(&pair.lab, loss_percent, delay);
                if how == faults::Impairment::NftablesLossOnly {
                    println!("  this kernel has no netem: loss by nftables, no delay");
                }
                std::thread::sleep(lasting);
                faults::restore_link(&pair.lab);
            }
            Fault::Partition { lasting } => {
                faults::cut_link(&pair.lab);
                let cut = Instant::now();
                std::thread::sleep(lasting);
                faults::restore_link(&pair.lab);
                partition = Some(cut);
            }
            Fault::RestartStorm {
                node,
                restarts,
                gap,
            } => {
                for _ in 0..restarts {
                    pair.kill(node);
                    report.kills += 1;
                    std::thread::sleep(gap);
                    pair.restart(node);
                    std::thread::sleep(gap);
                }
            }
        }
        let settled = pair.settle();
        report.faults += 1;
        if let Some(changes) = table_max.changes() {
            // Host-wide (not per namespace): another process on this machine changed it.
            report.violations.push(format!(
                "fault {i}: nf_conntrack_max changed during the run (host-wide; not this test; \
                 a full table refuses replicated entries and evicts unassured ones): {changes}"
            ));
        }
        let settled_at = Instant::now();
        if active_killed || partition.is_some() {
            excused.push((excuse_from, settled_at));
        }
        if let Some(cut) = partition {
            for (fw, watch) in [Firewall::B].into_iter().zip(&watches[1..]) {
                let added: Vec<_> = watch
                    .events()
                    .into_iter()
                    .filter(|e| {
                        e.added
                            && e.at >= cut
                            && VIPS4.iter().any(|(vip, _)| IpAddr::V4(*vip) == e.addr)
                    })
                    .collect();
                if !added.is_empty() {
                    report.violations.push(format!(
                        "fault {i} ({fault}): {fw:?} added {added:?} while A held the addresses"
                    ));
                }
            }
        }
        if let Err(why) = settled {
            report
                .violations
                .push(format!("fault {i} ({fault}): {why}"));
            break;
        }
        check(&pair, &generator, started, &excused, &mut report, i, fault);
        println!(
            "  settled; so far {} kills, longest gap {:?}, {} answered UDP sessions checked, {} \
             lost, {} violations",
            report.kills,
            report.longest_gap,
            report.sessions_checked,
            report.sessions_lost,
            report.violations.len()
        );
        generator.resume();
        // Traffic whose sessions count at the next fault.
        std::thread::sleep(BETWEEN_FAULTS);
    }
    report.takeovers = watches[1]
        .events()
        .iter()
        .filter(|e| e.added && e.addr == IpAddr::V4(GATEWAY4))
        .count();
    let flows = generator.flows();
    report.flows = flows.len();
    report.flows_failed = flows.iter().filter(|f| f.failure.is_some()).count();
    report.streams_survived = generator
        .streams
        .iter()
        .filter(|s| s.failure().is_none())
        .count();
    if report.violations.is_empty() {
        // The logs go with the lab unless something is wrong.
        return report;
    }
    pair.lab.keep_files();
    report
}

/// The host-wide conntrack table limit (the one conntrack setting no namespace has its own of).
fn conntrack_max() -> String {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .map_or_else(|e| format!("unreadable ({e})"), |v| v.trim().to_string())
}

/// Watches [`conntrack_max`] every 10 ms for the whole run: another process on a shared
/// machine may lower it for a moment, and a full table evicts sessions on both nodes.
struct MaxWatch {
    first: String,
    changes: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MaxWatch {
    fn start() -> MaxWatch {
        use std::sync::atomic::Ordering;
        let first = conntrack_max();
        let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, halt, mut last) = (changes.clone(), stop.clone(), first.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let now = conntrack_max();
                if now != last {
                    seen.lock().unwrap().push((Instant::now(), now.clone()));
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        MaxWatch {
            first,
            changes,
            stop,
            thread: Some(thread),
        }
    }

    /// The changes since the last call, if there were any.
    fn changes(&self) -> Option<String> {
        let changes = std::mem::take(&mut *self.changes.lock().unwrap());
        let started = Instant::now();
        (!changes.is_empty()).then(|| {
            let steps: Vec<String> = changes
                .iter()
                .map(|(at, value)| format!("{value} ({:?} ago)", started - *at))
                .collect();
            format!("at start {}; {}", self.first, steps.join(" -> "))
        })
    }
}

impl Drop for MaxWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The oracle after fault `i`, which started at `started`: streams, tables, sessions.
fn check(
    pair: &Pair,
    generator: &Generator,
    started: Instant,
    excused: &[(Instant, Instant)],
    report: &mut Report,
    i: usize,
    fault: &Fault,
) {
    let mut violation = |what: String| {
        report
            .violations
            .push(format!("fault {i} ({fault}): {what}"))
    };
    for (n, stream) in generator.streams.iter().enumerate() {
        let seq = stream.sent();
        if let Err(why) = stream.wait_echo_from(seq, Duration::from_secs(5)) {
            violation(format!("stream {n} ({}): {why}", stream.flow()));
            continue;
        }
        let gap = stream.longest_gap(started, Instant::now());
        report.longest_gap = report.longest_gap.max(gap);
        if gap > MAX_GAP {
            violation(format!("stream {n} ({}): a gap of {gap:?}", stream.flow()));
        }
    }

    // The tables, with no new flow under way (the two listings are not taken at one instant)
    // and once the last changes have been applied. The failover link's own connection is
    // each node's (excluded from replication). Sessions still end meanwhile (the short flows'
    // TIME_WAIT entries expire two minutes after they closed), and the standby applies the
    // active node's deletes only after the hold: a difference counts if the same session
    // still differs once a hold has passed.
    generator.pause();
    let lab = &pair.lab;
    let link_subnet = |ip: IpAddr| matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [10, 0, 254]);
    let replicated = |f: &Flow| !link_subnet(f.orig.src) && !link_subnet(f.orig.dst);
    let read = || {
        (
            tables::select(lab.sessions(Firewall::A), replicated),
            tables::select(lab.sessions(Firewall::B), replicated),
        )
    };
    let differing = |a: &[SessionRecord], b: &[SessionRecord]| -> BTreeSet<SessionKey> {
        let found = table_differences(a, b);
        [found.only_in_a, found.only_in_b, found.different]
            .into_iter()
            .flatten()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut table_a, mut table_b) = read();
    let mut earlier = differing(&table_a, &table_b);
    let persisting = loop {
        if earlier.is_empty() {
            break earlier;
        }
        std::thread::sleep(deletes_applied_within(&pair.options));
        (table_a, table_b) = read();
        let now = differing(&table_a, &table_b);
        let persisting: BTreeSet<SessionKey> = now.intersection(&earlier).copied().collect();
        if persisting.is_empty() || Instant::now() > deadline {
            break persisting;
        }
        earlier = now;
    };
    if !persisting.is_empty() {
        let only = |table: &[SessionRecord]| -> Vec<SessionRecord> {
            table
                .iter()
                .filter(|r| persisting.contains(&r.key))
                .cloned()
                .collect()
        };
        let differences = tables::differences(&only(&table_a), &only(&table_b), 5);
        violation(format!(
            "the tables differ (B against A), for longer than the hold of deletes:\n{}",
            differences.join("\n")
        ));
    }
    let owners_differ = owners_not_mirrored(lab, replicated);
    if !owners_differ.is_empty() {
        violation(format!(
            "{} sessions have no single owner (A's stamp, B's stamp), e.g. {:?}",
            owners_differ.len(),
            &owners_differ[..owners_differ.len().min(3)]
        ));
    }
    let flows = |table: &[SessionRecord]| -> BTreeSet<Flow> {
        table.iter().filter_map(|r| tables::flow(&r.key)).collect()
    };
    let (table_a, table_b) = (flows(&table_a), flows(&table_b));

    let answered_before = started - REPLICATED_WITHIN;
    let is_excused = |at: Instant| excused.iter().any(|&(from, to)| at >= from && at <= to);
    let mut lost: Vec<Flow> = Vec::new();
    let (mut checked, mut during, mut during_lost) = (0, BTreeSet::new(), 0);
    for record in generator.flows() {
        let (Some(flow), Some(at)) = (record.flow, record.answered) else {
            continue;
        };
        if flow.proto != "udp" || at > answered_before {
            continue;
        }
        let present = table_a.contains(&flow) && table_b.contains(&flow);
        if is_excused(at) {
            during.insert(flow);
            if !present {
                during_lost += 1;
                report.during_faults_missing_example = Some(format!(
                    "{flow} (on A {}, on B {})",
                    table_a.contains(&flow),
                    table_b.contains(&flow)
                ));
            }
        } else {
            checked += 1;
            if !present {
                lost.push(flow);
            }
        }
    }
    report.sessions_checked = checked;
    report.sessions_during_faults = during.len();
    report.sessions_during_faults_lost = during_lost;
    report.sessions_lost = lost.len();
    if !lost.is_empty() {
        violation(format!(
            "{} of {checked} answered UDP sessions lost, e.g. {} (on A {}, on B {})",
            lost.len(),
            lost[0],
            table_a.contains(&lost[0]),
            table_b.contains(&lost[0])
        ));
    }
}

/// How long after the active node (A) ended a session the standby (B) may still hold it: B
/// holds A's deletes for twice its VRRP `Master_Down_Interval` (the daemon's hold of deletes),
/// and a second more covers applying them.
fn deletes_applied_within(options: &DaemonOptions) -> Duration {
    let advert = Duration::from_millis(ADVERT_MS.into());
    2 * master_down_interval(advert, options.priority_of(Firewall::B)) + Duration::from_secs(1)
}

/// The sessions in both kernels that exactly one kernel does not stamp "the peer's" (the owner's
/// entry is stamped "this node's", or unstamped on the active node: `docs/CONNTRACK.md`,
/// "Ownership"). Where both say "the peer's", each node's sweep after the other's bulk sync
/// removes a session neither node replicates again. Each with A's and B's stamp.
fn owners_not_mirrored(lab: &Lab, keep: impl Fn(&Flow) -> bool) -> Vec<(Flow, String, String)> {
    let (local, peer) = tables::owner_stamps();
    let name = |stamp: u32| match stamp {
        s if s == local => "own",
        s if s == peer => "peer's",
        0 => "unstamped",
        _ => "both",
    };
    let a = conntrack::by_flow(&lab.conntrack(Firewall::A), &keep);
    let b = conntrack::by_flow(&lab.conntrack(Firewall::B), &keep);
    a.iter()
        .filter_map(|(flow, in_a)| {
            let in_b = b.get(flow)?;
            let known = |stamp: u32| stamp == 0 || stamp == local || stamp == peer;
            let one_owner = known(in_a.owner_stamp)
                && known(in_b.owner_stamp)
                && ((in_a.owner_stamp == peer) != (in_b.owner_stamp == peer));
            (!one_owner).then(|| {
                (
                    *flow,
                    name(in_a.owner_stamp).to_string(),
                    name(in_b.owner_stamp).to_string(),
                )
            })
        })
        .collect()
}

fn vrrp_options() -> DaemonOptions {
    DaemonOptions::default().vrrp(ADVERT_MS)
}

fn print(report: &Report, seed: u64, took: Duration) {
    println!(
        "seed {seed}: {} faults ({} kills), {} takeovers, {}/{STREAMS} streams survived, longest \
         gap {:?}; {} answered UDP sessions checked, {} lost; {} answered during a partition or \
         while the active's daemon was down (not counted), {} of them missing{}; {} short flows, \
         {} failed; {took:?}",
        report.faults,
        report.kills,
        report.takeovers,
        report.streams_survived,
        report.longest_gap,
        report.sessions_checked,
        report.sessions_lost,
        report.sessions_during_faults,
        report.sessions_during_faults_lost,
        report
            .during_faults_missing_example
            .as_ref()
            .map_or(String::new(), |e| format!(", e.g. {e}")),
        report.flows,
        report.flows_failed,
    );
}

/// The seeded schedule under traffic: every stream survives, the tables end equal, no answered
/// session is lost, a partition never makes two holders.
#[test]
fn faults_under_traffic_lose_no_stream_and_no_session() {
    if !require_root_and_tools() {
        return;
    }
    let seed = env_number("FAILOVERD_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let kills = env_number("FAILOVERD_FAULT_KILLS").map_or(KILLS_IN_CI, |k| k as usize);
    println!("FAILOVERD_FAULT_SEED={seed} FAILOVERD_FAULT_KILLS={kills}");
    let schedule = faults::schedule(&mut Rng::new(seed), kills);
    let started = Instant::now();
    let report = run(vrrp_options(), &schedule);
    print(&report, seed, started.elapsed());
    assert!(
        report.violations.is_empty(),
        "seed {seed} (replay: FAILOVERD_FAULT_SEED={seed} FAILOVERD_FAULT_KILLS={kills}):\n{}",
        report.violations.join("\n")
    );
    assert_eq!(report.faults, schedule.len());
    assert_eq!(report.streams_survived, STREAMS);
}

/// The control: the same oracle on a pair that replicates nothing of the traffic (ICMP only)
/// sees the kill of the active: the streams stall past the bound (B has no entry for them
/// until A returns), the tables differ and the answered sessions are missing on B.
#[test]
fn the_oracle_sees_a_pair_that_does_not_replicate() {
    if !require_root_and_tools() {
        return;
    }
    let options = vrrp_options().conntrack(r#"protocols = ["icmp"]"#);
    let report = run(
        options,
        &[Fault::Kill {
            node: Firewall::A,
            after: Duration::ZERO,
            down_for: MAX_GAP + Duration::from_secs(2),
        }],
    );
    print(&report, 0, Duration::ZERO);
    let all = report.violations.join("\n");
    assert!(all.contains("a gap of"), "the streams' gap is seen: {all}");
    assert!(
        all.contains("the tables differ"),
        "the tables' difference is seen: {all}"
    );
    assert!(
        all.contains("sessions lost"),
        "the lost sessions are seen: {all}"
    );
}

/// The owner check of the oracle sees a session both kernels stamp "the peer's" (each node's
/// sweep would remove it), and nothing in sessions stamped as their owner's and the peer's copy.
#[test]
fn the_oracle_sees_a_session_with_no_single_owner() {
    if !require_root_and_tools() {
        return;
    }
    const NODE_A: NodeId = NodeId(1);
    const NODE_B: NodeId = NodeId(2);
    let lab = Lab::up();
    // TCP and UDP, IPv4 and IPv6 (`sample_record`): A's own, and B's copies.
    let records: Vec<SessionRecord> = (0..4).map(|i| sample_record(i, NODE_A)).collect();
    let (mirrored, both_peers) = records.split_at(2);
    tables::write(&lab, Firewall::A, NODE_A, mirrored);
    tables::write(&lab, Firewall::B, NODE_B, mirrored);
    // Copies on both sides: A writes them as if they were B's.
    tables::write(&lab, Firewall::A, NODE_B, both_peers);
    tables::write(&lab, Firewall::B, NODE_B, both_peers);
    let found: BTreeSet<Flow> = owners_not_mirrored(&lab, |_| true)
        .into_iter()
        .map(|(flow, in_a, in_b)| {
            assert_eq!((in_a.as_str(), in_b.as_str()), ("peer's", "peer's"));
            flow
        })
        .collect();
    let expected: BTreeSet<Flow> = both_peers
        .iter()
        .map(|r| tables::flow(&r.key).expect("a TCP or UDP flow"))
        .collect();
    assert_eq!(found, expected);
}
