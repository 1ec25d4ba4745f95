//! Kernel-to-kernel replication benchmark of the conntrack backend, in the netns lab of
//! `lab/lab.sh` (two firewalls A and B with real kernel conntrack tables, `failoverd` in each).
//!
//! ```sh
//! cargo build --release -p failoverd --bins
//! cargo run --release -p failoverd-bench --bin conntrack_bench -- --json      # as root
//! ```
//!
//! Four measurements, each in a fresh lab, each for every `--flows` size (default 100k and 1M):
//!
//! 1. **standalone**: B's kernel insert rate through a `ConntrackBackend` in B's namespace, no
//!    daemon running: `apply` of N upserts (`sample_record`), then a timed `dump`.
//! 2. **replication**: `failoverd` on A (priority 200) and B (priority 100), synchronized. A
//!    *generator* (a `ConntrackBackend` in A's namespace with a node id of its own) creates N
//!    entries; A's daemon sees them as local activity and replicates them. A *watcher* (a
//!    `ConntrackBackend` in B's namespace, another node id) sees B's daemon write them and
//!    timestamps each arrival. Lag is arrival minus creation, both on this process's monotonic
//!    clock. At the end A's and B's tables are dumped and compared.
//! 3. **overrun**: B's daemon runs with a tiny event buffer; a generator in B's namespace floods
//!    it with new entries until it overruns; measured: from the overrun (B's `backend_overruns`
//!    counter, polled) until A holds every entry of the flood, against B's dump time + 1 s.
//! 4. **bulk**: N entries already in A's kernel, A's daemon running alone; B's daemon starts;
//!    measured: until B reports ready with the peer's bulk sync applied, against 1.2 x the
//!    standalone insert time of N.
//! 5. **aggressive** (not in the default set; `--phase aggressive`): the replication
//!    measurement with hello 10 ms and dead interval 30 ms (`--aggressive-hello-ms`,
//!    `--aggressive-dead-ms`) on both daemons: a burst of N new flows through A as fast as the
//!    generator inserts them (its rate is reported); required: no "peer dead" on either node,
//!    B ready at the end, the tables equal; its time beside the standalone insert time of N
//!    (issue 10, finding 1: such a burst used to livelock B's bulk sync).
//!
//! The flows are `sample_record`s with their timeout raised to two hours (so that nothing
//! expires during a run), minus the two whose IPv4 client lies in the failover link's subnet
//! (which the daemons exclude); the entry's mark is its sample index, which is how the watcher
//! recognises it. Creation times are interpolated within each `apply` chunk of 256. Tables are
//! compared on `failoverd_backends::session::conformance::ComparedFields`.
//!
//! `net.netfilter.nf_conntrack_max` (host-wide) is raised for the run and restored at the end,
//! also on error and on SIGINT/SIGTERM. Labs are torn down (`lab.sh down`) and the daemons this
//! program started are killed by PID when their guards drop. Every wait is bounded.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use failoverd_backends::session::conformance::ComparedFields;
use failoverd_backends::{
    ApplyError, BackendError, ConntrackBackend, ConntrackConfig, SessionBackend, sample_record,
};
use failoverd_control::protocol::{FailoverState, Request, Status};
use failoverd_control::transport;
use failoverd_lab::config::ConfigFile;
use failoverd_lab::lab::LINK_SUBNET;
use failoverd_link::Identity;
use failoverd_wire::{NodeId, SessionOp, SessionRecord};
use serde_json::{Value, json};

/// Kernel-to-kernel replication benchmark of the conntrack backend (run as root).
#[derive(Parser, Debug)]
struct Args {
    /// Table sizes (new flows) to measure; repeatable or comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100_000u32, 1_000_000])]
    flows: Vec<u32>,
    /// Leave out sizes of 1,000,000 flows and more.
    #[arg(long)]
    skip_1m: bool,
    /// Print one JSON object per figure on stdout (the human summary then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Measurements to run; repeatable or comma-separated.
    #[arg(long, value_delimiter = ',', value_enum,
          default_values_t = [Phase::Standalone, Phase::Replication, Phase::Overrun, Phase::Bulk])]
    phase: Vec<Phase>,
    /// Entries the overrun measurement creates on B.
    #[arg(long, default_value_t = 200_000)]
    overrun_flows: u32,
    /// `event_buffer_bytes` of B's daemon in the overrun measurement.
    #[arg(long, default_value_t = 65_536)]
    overrun_buffer: usize,
    /// Hello interval of both daemons in the aggressive measurement, ms.
    #[arg(long, default_value_t = 10)]
    aggressive_hello_ms: u32,
    /// Dead interval of both daemons in the aggressive measurement, ms.
    #[arg(long, default_value_t = 30)]
    aggressive_dead_ms: u32,
    /// `log.level` of the daemons; e.g. `info,failoverd::hellos=trace,failoverd_link=trace`
    /// logs every hello sent, heard and queued into TLS, the drains and full control sockets.
    #[arg(long, default_value = "info")]
    daemon_log_level: String,
    /// The failoverd binary (default: `failoverd` next to this example's directory, i.e.
    /// `target/release/failoverd`).
    #[arg(long)]
    failoverd: Option<PathBuf>,
    /// `lab/lab.sh` (default: the one of this source tree).
    #[arg(long)]
    lab: Option<PathBuf>,
    /// Keep the daemons' configs and logs under this directory (default: a temporary one,
    /// removed at the end).
    #[arg(long)]
    keep: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    Standalone,
    Replication,
    Overrun,
    Bulk,
    Aggressive,
}

/// The node ids of the benchmark's own backends: none is A's or B's daemon's.
const GENERATOR: NodeId = NodeId(0xbe7c_0a01);
const WATCHER: NodeId = NodeId(0xbe7c_0b02);
/// The owner of the standalone inserts: a "peer", as B's daemon applies A's records.
const STANDALONE_PEER: NodeId = NodeId(0xbe7c_0c03);

/// Upserts per `apply` of the standalone insert (the daemon applies the peer's batches in
/// slices of about this size).
const STANDALONE_CHUNK: usize = 1024;
/// Upserts per `apply` of the generators: creation times are interpolated within a chunk.
const GENERATOR_CHUNK: usize = 256;
/// The benchmark's own event sockets: large, so that they never overrun.
const BENCH_EVENT_BUFFER: usize = 128 << 20;
/// What `nf_conntrack_max` is raised to (at least) for the run.
const CONNTRACK_MAX: u64 = 1_500_000;
/// The timeout of every generated entry, seconds: nothing expires during a run.
const BENCH_TIMEOUT_SECS: u32 = 7200;

/// Set by SIGINT / SIGTERM: every loop checks it, so guards drop and the lab is removed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The `nf_conntrack_max` this run set (0: none).
static MAX_SET: AtomicU64 = AtomicU64::new(0);

/// Fails on SIGINT / SIGTERM; on the main thread (which stays in the initial namespace) also when
/// someone else changed `nf_conntrack_max` during the run: the figures would be meaningless.
fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    let set = MAX_SET.load(Ordering::Relaxed);
    if set != 0 && std::thread::current().name() == Some("main") {
        let now = read_sysctl("nf_conntrack_max");
        ensure!(
            now == Some(set),
            "net.netfilter.nf_conntrack_max changed to {now:?} during the run (this run set \
             {set}): another program uses this host-wide limit; run the benchmark alone"
        );
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "conntrack_bench: must run as root (it creates network namespaces, starts failoverd \
             with the conntrack backend and raises net.netfilter.nf_conntrack_max)"
        );
        std::process::exit(2);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    match run(&args) {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(error) => {
            eprintln!("conntrack_bench: error: {error:#}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run

struct Bench<'a> {
    args: &'a Args,
    failoverd: PathBuf,
    lab_sh: PathBuf,
    labs: AtomicUsize,
    /// Standalone insert seconds per size, for the ratios.
    standalone: BTreeMap<u32, Standalone>,
    /// Every figure, in order: (JSON, human line).
    figures: Vec<(Value, String)>,
    /// Targets: (what, met).
    targets: Vec<(String, bool)>,
}

#[derive(Debug, Clone, Copy)]
struct Standalone {
    insert_secs: f64,
    rate: f64,
}

fn run(args: &Args) -> Result<bool> {
    let mut flows: Vec<u32> = args
        .flows
        .iter()
        .copied()
        .filter(|&n| !(args.skip_1m && n >= 1_000_000))
        .collect();
    flows.dedup();
    ensure!(
        flows.iter().all(|&n| n > 0 && n < 1 << 22),
        "--flows: each size must be in 1..4194304 (sample_record's distinct keys)"
    );
    ensure!(!flows.is_empty(), "no table size left to measure");
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("the benchmark's directory")?;
    let failoverd = args
        .failoverd
        .clone()
        .unwrap_or_else(|| exe_dir.join("failoverd"));
    ensure!(
        failoverd.is_file(),
        "{} not found: build it first (cargo build --release -p failoverd --bins, with the same \
         CARGO_TARGET_DIR) or pass --failoverd",
        failoverd.display()
    );
    let lab_sh = args
        .lab
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/lab.sh"));
    ensure!(
        lab_sh.is_file(),
        "{} not found (pass --lab)",
        lab_sh.display()
    );
    for tool in ["ip", "nft", "bash"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ensure!(found, "`{tool}` is not on PATH (the lab needs it)");
    }

    let _max = ConntrackMax::raise(CONNTRACK_MAX)?;
    let mut bench = Bench {
        args,
        failoverd,
        lab_sh,
        labs: AtomicUsize::new(0),
        standalone: BTreeMap::new(),
        figures: Vec::new(),
        targets: Vec::new(),
    };
    progress(&format!(
        "host: {} cpus, nf_conntrack_max {} (raised for the run), nf_conntrack_buckets {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        read_sysctl("nf_conntrack_max").unwrap_or(0),
        read_sysctl("nf_conntrack_buckets").unwrap_or(0),
    ));
    let phases = &args.phase;
    if phases.contains(&Phase::Standalone) {
        for &n in &flows {
            bench.standalone(n)?;
        }
    }
    if phases.contains(&Phase::Replication) {
        for &n in &flows {
            bench.replication_with(n, None)?;
        }
    }
    if phases.contains(&Phase::Overrun) {
        bench.overrun(args.overrun_flows, args.overrun_buffer)?;
    }
    if phases.contains(&Phase::Bulk) {
        for &n in &flows {
            bench.bulk(n)?;
        }
    }
    if phases.contains(&Phase::Aggressive) {
        let timers = Timers {
            hello_ms: args.aggressive_hello_ms,
            dead_ms: args.aggressive_dead_ms,
        };
        for &n in &flows {
            bench.replication_with(n, Some(timers))?;
        }
    }
    Ok(bench.summary())
}

impl Bench<'_> {
    fn lab(&self) -> Result<Lab> {
        let n = self.labs.fetch_add(1, Ordering::Relaxed);
        Lab::up(
            &self.lab_sh,
            &format!("cb{}n{n}", std::process::id()),
            self.args.keep.as_deref(),
        )
    }

    fn figure(&mut self, value: Value, human: String) {
        if self.args.json {
            println!("{value}");
            let _ = std::io::stdout().flush();
        }
        progress(&human);
        self.figures.push((value, human));
    }

    fn target(&mut self, what: String, met: bool) {
        progress(&format!(
            "target {}: {what}",
            if met { "MET" } else { "NOT MET" }
        ));
        self.targets.push((what, met));
    }

    /// Prints the summary; true if every target was met.
    fn summary(&self) -> bool {
        let mut out = String::new();
        out.push_str("\n==== conntrack_bench summary ====\n");
        for (_, human) in &self.figures {
            out.push_str(human);
            out.push('\n');
        }
        out.push_str("targets:\n");
        for (what, met) in &self.targets {
            out.push_str(&format!(
                "  [{}] {what}\n",
                if *met { "met" } else { "NOT MET" }
            ));
        }
        if self.args.json {
            eprint!("{out}");
        } else {
            print!("{out}");
        }
        self.targets.iter().all(|(_, met)| *met)
    }

    // -----------------------------------------------------------------------------------------
    // 1. standalone

    fn standalone(&mut self, n: u32) -> Result<()> {
        let flows = flow_indices(n);
        progress(&format!(
            "standalone: {n} upserts into B's kernel, no daemon"
        ));
        let lab = self.lab()?;
        let ns = lab.ns("b");
        let stop = AtomicBool::new(false);
        let progress_count = AtomicUsize::new(0);
        let (generated, count, table) = std::thread::scope(|s| {
            let worker = in_ns(s, &ns, "standalone", || {
                let mut backend = open_backend(STANDALONE_PEER, None, BENCH_EVENT_BUFFER)?;
                let generated = generate(
                    &mut backend,
                    STANDALONE_PEER,
                    &flows,
                    STANDALONE_CHUNK,
                    Instant::now(),
                    false,
                    &stop,
                    &progress_count,
                )?;
                let count = backend.count()?;
                let table = dump_table(&mut backend, &flows)?;
                Ok((generated, count, table))
            });
            join_watching(worker, &stop, &[&progress_count], n as usize, "inserted")
        })?;
        drop(lab);
        ensure!(
            generated.failed == 0,
            "standalone: {} of {n} upserts failed; first: {}",
            generated.failed,
            generated.first_error.unwrap_or_default()
        );
        let rate = n as f64 / generated.apply_secs;
        self.standalone.insert(
            n,
            Standalone {
                insert_secs: generated.apply_secs,
                rate,
            },
        );
        let value = json!({
            "figure": "standalone_insert",
            "flows": n,
            "insert_secs": round3(generated.apply_secs),
            "wall_secs": round3(generated.wall_secs()),
            "entries_per_sec": rate.round(),
            "chunk": STANDALONE_CHUNK,
            "count_after": count,
            "present_after": table.present,
            "dump_secs": round3(table.secs),
            "dump_entries_per_sec": (table.total as f64 / table.secs).round(),
            "dump_total": table.total,
        });
        let human = format!(
            "standalone {n}: insert {rate:.0} entries/s ({:.2} s, apply() only; wall {:.2} s), \
             dump {:.0} entries/s ({:.2} s for {})",
            generated.apply_secs,
            generated.wall_secs(),
            table.total as f64 / table.secs,
            table.secs,
            table.total
        );
        self.figure(value, human);
        ensure!(
            table.present == n as usize,
            "standalone: only {} of {n} entries are in B's table after the inserts",
            table.present
        );
        Ok(())
    }

    /// Options of a daemon: defaults but for the log level asked for.
    fn daemon_options(&self) -> DaemonOptions {
        DaemonOptions {
            event_buffer_bytes: None,
            timers: None,
            log_level: self.args.daemon_log_level.clone(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // 2. replication

    /// The replication measurement; with `timers`, the aggressive one (its own figure and
    /// targets).
    fn replication_with(&mut self, n: u32, timers: Option<Timers>) -> Result<()> {
        let flows = flow_indices(n);
        let name = match timers {
            None => "replication",
            Some(_) => "aggressive",
        };
        progress(&format!(
            "{name}: {n} new flows on A, replicated to B by the daemons{}",
            timers.map_or(String::new(), |t| format!(
                " (hello {} ms, dead {} ms)",
                t.hello_ms, t.dead_ms
            ))
        ));
        let lab = self.lab()?;
        let options = DaemonOptions {
            timers,
            ..self.daemon_options()
        };
        let mut a = Daemon::spawn(&self.failoverd, &lab, Fw::A, &options)?;
        let mut b = Daemon::spawn(&self.failoverd, &lab, Fw::B, &options)?;
        let sync_secs = wait_synchronized(&mut a, &mut b, Duration::from_secs(30))?;
        progress(&format!("  daemons synchronized after {sync_secs:.2} s"));
        let (ns_a, ns_b) = (lab.ns("a"), lab.ns("b"));
        let sig = Signals::default();
        let base = Instant::now();
        let cpu_before = (a.cpu(), b.cpu(), process_cpu_secs());
        let mut cpu_after = None;
        // Aggressive phase: `Some(seconds after every flow arrived)` once B was ready, `Some(None)`
        // if it never was within the bound.
        let mut b_ready: Option<Option<f64>> = None;
        let (generated, watched, table_a, table_b, drained_secs) = std::thread::scope(|s| {
            let generator = in_ns(s, &ns_a, "generator", || generator_job(&sig, &flows, base));
            let watcher = in_ns(s, &ns_b, "watcher", || watcher_job(&sig, &flows, base));
            let result = (|| -> Result<f64> {
                let handles: [&dyn Finished; 2] = [&generator, &watcher];
                wait_for_flags(&[&sig.generator_ready, &sig.watcher_ready], &handles)?;
                sig.go.store(true, Ordering::SeqCst);
                let drained = wait_arrivals(n, &sig, &handles, &mut [&mut a, &mut b])?;
                cpu_after = Some((a.cpu(), b.cpu(), process_cpu_secs(), base.elapsed()));
                if timers.is_some() {
                    // Every flow arrived; the standby must also be ready to take over.
                    let ready = b.wait_for("ready", Duration::from_secs(60), |s| {
                        s.ready && s.state == FailoverState::Synchronization
                    });
                    b_ready = Some(ready.map(|(_, after)| after.as_secs_f64()).ok());
                }
                sig.dump.store(true, Ordering::SeqCst);
                Ok(drained)
            })();
            if result.is_err() {
                sig.stop.store(true, Ordering::SeqCst);
            }
            let generator = join(generator);
            let watcher = join(watcher);
            let drained = result?;
            let (generated, table_a) = generator?;
            let (watched, table_b) = watcher?;
            Ok::<_, anyhow::Error>((generated, watched, table_a, table_b, drained))
        })?;
        let status_a = a.status().ok();
        let status_b = b.status().ok();
        let incidents = json!({ "a": a.incidents(), "b": b.incidents() });
        let logs = (a.log_tail(5), b.log_tail(5));
        drop((a, b, lab));

        let cpu = cpu_after
            .as_ref()
            .map(|(a_after, b_after, me_after, window)| {
                json!({
                    "window_secs": round3(window.as_secs_f64()),
                    "a_daemon": cpu_diff(&cpu_before.0, a_after),
                    "b_daemon": cpu_diff(&cpu_before.1, b_after),
                    "bench_process_secs": round3(me_after - cpu_before.2),
                })
            });
        let cpu_human = cpu_after.as_ref().map_or(String::new(), |(a_after, b_after, me_after, window)| {
            format!(
                "\n    cpu over {:.1} s: A's daemon {} s, B's daemon {} s, generator + watcher {:.1} s",
                window.as_secs_f64(),
                cpu_brief(&cpu_before.0, a_after),
                cpu_brief(&cpu_before.1, b_after),
                me_after - cpu_before.2,
            )
        });
        let lags = Lags::of(&generated.created_ns, &watched.arrival_ns);
        let gen_rate = n as f64 / generated.wall_secs();
        let first_created = generated.started_ns;
        let last_arrival = lags.last_arrival_ns;
        let end_to_end_secs = (last_arrival.saturating_sub(first_created)) as f64 / 1e9;
        let replicated_rate = lags.arrived as f64 / end_to_end_secs.max(1e-9);
        let last_flow_ms = lags.last_flow_ms;
        let tail_ms = last_arrival.saturating_sub(generated.finished_ns) as f64 / 1e6;
        let compare = compare_tables(&table_a, &table_b);
        let standalone = self.standalone.get(&n).copied();
        let ratio = standalone.map(|s| replicated_rate / s.rate);
        // The pair kept up with the generator: its rate is a lower bound of the pair's.
        let generator_limited = tail_ms <= 0.1 * generated.wall_secs() * 1000.0 + 100.0;
        if let Some(timers) = timers {
            let count = |node: &str, what: &str| incidents[node][what].as_u64().unwrap_or(0);
            let (dead_a, dead_b) = (count("a", "peer_dead"), count("b", "peer_dead"));
            let ready_after = b_ready.flatten();
            let value = json!({
                "figure": "aggressive_burst",
                "flows": n,
                "hello_ms": timers.hello_ms,
                "dead_ms": timers.dead_ms,
                "generator_entries_per_sec": gen_rate.round(),
                "generator_secs": round3(generated.wall_secs()),
                "generator_failed": generated.failed,
                "end_to_end_secs": round3(end_to_end_secs),
                "replicated_entries_per_sec": replicated_rate.round(),
                "standalone_insert_secs": standalone.map(|s| round3(s.insert_secs)),
                "peer_dead_a": dead_a,
                "peer_dead_b": dead_b,
                "b_ready": ready_after.is_some(),
                "b_ready_secs_after_last_arrival": ready_after.map(round3),
                "arrived": lags.arrived,
                "on_a": compare.on_a,
                "on_b": compare.on_b,
                "lost": compare.lost,
                "different": compare.different,
                "daemon_a": status_a.as_ref().map(status_summary),
                "daemon_b": status_b.as_ref().map(status_summary),
                "daemon_log_incidents": incidents.clone(),
                "cpu_secs": cpu,
            });
            let human = format!(
                "aggressive {n} (hello {} ms, dead {} ms): generator {gen_rate:.0}/s ({:.2} s); \
                 every flow on B {end_to_end_secs:.2} s after the first was created{}; \
                 false peer dead: A {dead_a}, B {dead_b}; B ready: {}; on A {}, on B {}, \
                 lost {}, different {}{cpu_human}",
                timers.hello_ms,
                timers.dead_ms,
                generated.wall_secs(),
                standalone.map_or(String::new(), |s| format!(
                    " (standalone insert of {n}: {:.2} s)",
                    s.insert_secs
                )),
                ready_after.map_or("no".to_string(), |secs| format!(
                    "yes, {secs:.2} s after the last arrival"
                )),
                compare.on_a,
                compare.on_b,
                compare.lost,
                compare.different,
            );
            self.figure(
                value,
                format!("{human}\n    daemon log incidents: {incidents}"),
            );
            self.target(
                format!("aggressive {n}: no false peer dead (A {dead_a}, B {dead_b})"),
                dead_a == 0 && dead_b == 0,
            );
            self.target(
                format!("aggressive {n}: the standby ends ready"),
                ready_after.is_some(),
            );
            self.target(
                format!(
                    "aggressive {n}: tables equal (on A {}, on B {}, lost {}, different {})",
                    compare.on_a, compare.on_b, compare.lost, compare.different
                ),
                compare.on_a == n as usize && compare.lost == 0 && compare.different == 0,
            );
            return Ok(());
        }
        let value = json!({
            "figure": "replication",
            "generator_limited": generator_limited,
            "flows": n,
            "generator_entries_per_sec": gen_rate.round(),
            "generator_secs": round3(generated.wall_secs()),
            "generator_failed": generated.failed,
            "replicated_entries_per_sec": replicated_rate.round(),
            "arrival_window_entries_per_sec":
                (lags.arrived as f64 / ((last_arrival - lags.first_arrival_ns) as f64 / 1e9).max(1e-9)).round(),
            "end_to_end_secs": round3(end_to_end_secs),
            "arrived": lags.arrived,
            "lag_p50_ms": round3(lags.p50_ms),
            "lag_p99_ms": round3(lags.p99_ms),
            "lag_max_ms": round3(lags.max_ms),
            "last_flow_lag_ms": last_flow_ms.map(round3),
            "tail_after_generator_ms": round3(tail_ms),
            "drained_wait_secs": round3(drained_secs),
            "watcher_overruns": watched.overruns,
            "watcher_unmatched_events": watched.unmatched,
            "on_a": compare.on_a,
            "on_b": compare.on_b,
            "lost": compare.lost,
            "different": compare.different,
            "standalone_entries_per_sec": standalone.map(|s| s.rate.round()),
            "ratio_to_standalone": ratio.map(round3),
            "dump_a_secs": round3(table_a.secs),
            "dump_b_secs": round3(table_b.secs),
            "daemon_a": status_a.as_ref().map(status_summary),
            "daemon_b": status_b.as_ref().map(status_summary),
            "daemon_log_incidents": incidents.clone(),
            "cpu_secs": cpu,
        });
        let human = format!(
            "replication {n}: generator {gen_rate:.0}/s ({:.2} s); replicated {replicated_rate:.0}/s \
             end to end ({:.2} s){}; lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; last flow {} ms, \
             last arrival {tail_ms:.0} ms after the generator finished; arrived {}/{n}; on A {}, on B {}, \
             lost {}, different {}{}{cpu_human}",
            generated.wall_secs(),
            end_to_end_secs,
            ratio.map_or(String::new(), |r| format!(
                " = {:.0} % of standalone",
                r * 100.0
            )),
            lags.p50_ms,
            lags.p99_ms,
            lags.max_ms,
            last_flow_ms.map_or("n/a".into(), |ms| format!("{ms:.1}")),
            lags.arrived,
            compare.on_a,
            compare.on_b,
            compare.lost,
            compare.different,
            if generator_limited {
                "\n    the pair kept up with the generator (last arrival within 10 % of the generation time after it)"
            } else {
                ""
            },
        );
        self.figure(
            value,
            format!("{human}\n    daemon log incidents: {incidents}"),
        );
        if watched.overruns > 0 {
            progress(&format!(
                "  WARNING: the watcher overran {} times: some arrivals were not timestamped",
                watched.overruns
            ));
        }
        if status_a.is_none() || status_b.is_none() {
            progress(&format!(
                "  a daemon did not answer at the end; logs:\n{}\n{}",
                logs.0, logs.1
            ));
        }
        self.target(
            format!("replication {n}: entries lost = 0 (lost {})", compare.lost),
            compare.lost == 0 && compare.on_a == n as usize,
        );
        if let Some(ratio) = ratio {
            self.target(
                format!(
                    "replication {n}: replicated rate >= 80 % of standalone insert ({:.0} %, generator {gen_rate:.0}/s)",
                    ratio * 100.0
                ),
                ratio >= 0.8,
            );
        }
        if n <= 100_000 {
            self.target(
                format!(
                    "replication {n}: last flow on B <= 100 ms after its creation ({})",
                    last_flow_ms.map_or("never arrived".into(), |ms| format!("{ms:.1} ms"))
                ),
                last_flow_ms.is_some_and(|ms| ms <= 100.0),
            );
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // 3. overrun

    fn overrun(&mut self, n: u32, buffer: usize) -> Result<()> {
        let flows = flow_indices(n);
        progress(&format!(
            "overrun: B's daemon with event_buffer_bytes = {buffer}, {n} new flows on B"
        ));
        let lab = self.lab()?;
        let mut a = Daemon::spawn(&self.failoverd, &lab, Fw::A, &self.daemon_options())?;
        let b_options = DaemonOptions {
            event_buffer_bytes: Some(buffer),
            ..self.daemon_options()
        };
        let mut b = Daemon::spawn(&self.failoverd, &lab, Fw::B, &b_options)?;
        wait_synchronized(&mut a, &mut b, Duration::from_secs(30))?;
        let overruns_before = b
            .status()?
            .counters
            .get("backend_overruns")
            .copied()
            .unwrap_or(0);
        let (ns_a, ns_b) = (lab.ns("a"), lab.ns("b"));
        let sig = Signals::default();
        let base = Instant::now();
        let first_overrun_ns = AtomicU64::new(u64::MAX);
        let last_overrun_ns = AtomicU64::new(u64::MAX);
        let overruns_seen = AtomicU64::new(0);
        let b_socket = b.socket.clone();
        let (generated, watched, table_b, table_a) = std::thread::scope(|s| {
            let generator = in_ns(s, &ns_b, "flood", || generator_job(&sig, &flows, base));
            let watcher = in_ns(s, &ns_a, "watcher", || watcher_job(&sig, &flows, base));
            // B's overrun counter, polled every 10 ms until the end.
            let poller = s.spawn(|| -> Result<()> {
                let control = Control::new(&b_socket)?;
                let deadline = Instant::now() + Duration::from_secs(900);
                let mut last = overruns_before;
                while !sig.stop.load(Ordering::SeqCst) && !sig.dump.load(Ordering::SeqCst) {
                    ensure!(Instant::now() < deadline, "overrun poller: out of time");
                    if let Ok(status) = control.status() {
                        let now = base.elapsed().as_nanos() as u64;
                        let overruns = status
                            .counters
                            .get("backend_overruns")
                            .copied()
                            .unwrap_or(0);
                        if overruns > last {
                            let _ = first_overrun_ns.compare_exchange(
                                u64::MAX,
                                now,
                                Ordering::SeqCst,
                                Ordering::SeqCst,
                            );
                            last_overrun_ns.store(now, Ordering::SeqCst);
                            overruns_seen.store(overruns - overruns_before, Ordering::SeqCst);
                            last = overruns;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            });
            let result = (|| -> Result<()> {
                let handles: [&dyn Finished; 2] = [&generator, &watcher];
                wait_for_flags(&[&sig.generator_ready, &sig.watcher_ready], &handles)?;
                sig.go.store(true, Ordering::SeqCst);
                wait_arrivals(n, &sig, &handles, &mut [&mut a, &mut b])?;
                // A last look at the counter: an overrun may be counted after the arrivals.
                std::thread::sleep(Duration::from_millis(50));
                sig.dump.store(true, Ordering::SeqCst);
                Ok(())
            })();
            if result.is_err() {
                sig.stop.store(true, Ordering::SeqCst);
            }
            let generator = join(generator);
            let watcher = join(watcher);
            let poller = poller
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the overrun poller panicked")));
            result?;
            poller?;
            let (generated, table_b) = generator?;
            let (watched, table_a) = watcher?;
            Ok::<_, anyhow::Error>((generated, watched, table_b, table_a))
        })?;
        let status_b = b.status().ok();
        let incidents = json!({ "a": a.incidents(), "b": b.incidents() });
        let overrun_log: Vec<String> = b
            .log()
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("overrun") || l.contains("resync") || l.contains("lost")
            })
            .take(6)
            .map(str::to_string)
            .collect();
        drop((a, b, lab));

        let lags = Lags::of(&generated.created_ns, &watched.arrival_ns);
        let gen_rate = n as f64 / generated.wall_secs();
        let compare = compare_tables(&table_b, &table_a);
        let first_overrun = first_overrun_ns.load(Ordering::SeqCst);
        let last_overrun = last_overrun_ns.load(Ordering::SeqCst);
        let overran = first_overrun != u64::MAX;
        let recovery_ms =
            overran.then(|| lags.last_arrival_ns.saturating_sub(first_overrun) as f64 / 1e6);
        let from_last_overrun_ms =
            overran.then(|| lags.last_arrival_ns.saturating_sub(last_overrun) as f64 / 1e6);
        let after_flood_ms =
            lags.last_arrival_ns.saturating_sub(generated.finished_ns) as f64 / 1e6;
        let bound_ms = table_b.secs * 1000.0 + 1000.0;
        let value = json!({
            "figure": "overrun_recovery",
            "flows": n,
            "event_buffer_bytes": buffer,
            "generator_entries_per_sec": gen_rate.round(),
            "generator_secs": round3(generated.wall_secs()),
            "overruns": overruns_seen.load(Ordering::SeqCst),
            "first_overrun_ms": overran.then(|| round3(first_overrun as f64 / 1e6 - generated.started_ns as f64 / 1e6)),
            "recovery_ms": recovery_ms.map(round3),
            "recovery_from_last_overrun_ms": from_last_overrun_ms.map(round3),
            "after_flood_end_ms": round3(after_flood_ms),
            "dump_b_secs": round3(table_b.secs),
            "dump_b_total": table_b.total,
            "bound_ms": round3(bound_ms),
            "arrived_on_a": lags.arrived,
            "lag_p50_ms": round3(lags.p50_ms),
            "lag_p99_ms": round3(lags.p99_ms),
            "on_b": compare.on_a,
            "on_a": compare.on_b,
            "lost": compare.lost,
            "different": compare.different,
            "daemon_b": status_b.as_ref().map(status_summary),
            "daemon_log_incidents": incidents.clone(),
            "b_log_overrun_lines": overrun_log,
        });
        let human = format!(
            "overrun {n} (B's event buffer {buffer} B): flood {gen_rate:.0}/s ({:.2} s); {} overrun(s), \
             first {}; A holds all of B's entries {} after the first overrun ({} after the last, \
             {after_flood_ms:.0} ms after the flood ended); B's dump {:.0} ms, bound {bound_ms:.0} ms; \
             lost {}, different {}",
            generated.wall_secs(),
            overruns_seen.load(Ordering::SeqCst),
            if overran {
                format!(
                    "{:.0} ms into the flood",
                    (first_overrun as f64 - generated.started_ns as f64) / 1e6
                )
            } else {
                "never".into()
            },
            recovery_ms.map_or("n/a".into(), |ms| format!("{ms:.0} ms")),
            from_last_overrun_ms.map_or("n/a".into(), |ms| format!("{ms:.0} ms")),
            table_b.secs * 1000.0,
            compare.lost,
            compare.different,
        );
        self.figure(
            value,
            format!("{human}\n    daemon log incidents: {incidents}"),
        );
        self.target(
            format!(
                "overrun: B's daemon overran ({} overrun(s) counted)",
                overruns_seen.load(Ordering::SeqCst)
            ),
            overran,
        );
        // Judged from the last overrun: the flood goes on after the first, and each overrun
        // restarts the resynchronisation; the last one's is the one that completes.
        if let Some(ms) = from_last_overrun_ms {
            self.target(
                format!(
                    "overrun: A equals B again within B's dump time + 1 s of the (last) overrun \
                     ({ms:.0} ms <= {bound_ms:.0} ms; {} from the first)",
                    recovery_ms.map_or("n/a".into(), |ms| format!("{ms:.0} ms"))
                ),
                ms <= bound_ms,
            );
        }
        self.target(
            format!("overrun: entries lost = 0 (lost {})", compare.lost),
            compare.lost == 0 && compare.on_a == n as usize,
        );
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // 4. bulk sync

    fn bulk(&mut self, n: u32) -> Result<()> {
        let flows = flow_indices(n);
        progress(&format!(
            "bulk: A's daemon alone with {n} entries it created, then B's daemon starts"
        ));
        let lab = self.lab()?;
        let (ns_a, ns_b) = (lab.ns("a"), lab.ns("b"));
        // A's daemon first, so that it sees the entries being created and owns them (a daemon
        // that starts with entries in its table takes them as the peer's, see the backend's
        // docs).
        let mut a = Daemon::spawn(&self.failoverd, &lab, Fw::A, &self.daemon_options())?;
        a.wait_for(
            "working alone (independence)",
            Duration::from_secs(30),
            |s| s.state == FailoverState::Independence,
        )?;
        let sig = Signals::default();
        let base = Instant::now();
        let mut b_slot: Option<Daemon> = None;
        let mut timing = None;
        let (prefill, table_a) = std::thread::scope(|s| {
            let generator = in_ns(s, &ns_a, "prefill", || {
                let mut backend = open_backend(GENERATOR, None, BENCH_EVENT_BUFFER)?;
                let generated = generate(
                    &mut backend,
                    GENERATOR,
                    &flows,
                    STANDALONE_CHUNK,
                    base,
                    false,
                    &sig.stop,
                    &sig.created,
                )?;
                sig.generated.store(true, Ordering::SeqCst);
                wait_flag(&sig.dump, &sig.stop, Duration::from_secs(900))?;
                let table = dump_table(&mut backend, &flows)?;
                Ok((generated, table))
            });
            let result = (|| -> Result<()> {
                let handles: [&dyn Finished; 1] = [&generator];
                wait_for_flags(&[&sig.generated], &handles)?;
                // A has read the creates (or overran and re-read its table).
                let (_, a_caught_up) = a.wait_for(
                    "reading the new entries",
                    Duration::from_secs(60) + per_flow(n, 10_000),
                    |s| {
                        let counter = |name: &str| s.counters.get(name).copied().unwrap_or(0);
                        s.sessions.owned >= u64::from(n)
                            && (counter("backend_events_in") >= u64::from(n)
                                || counter("backend_overruns") > 0)
                    },
                )?;
                let a_status = a.status()?;
                let b = b_slot.insert(Daemon::spawn(
                    &self.failoverd,
                    &lab,
                    Fw::B,
                    &self.daemon_options(),
                )?);
                let (_, answering) = b.wait_for("answering", Duration::from_secs(60), |_| true)?;
                let (status, ready) = b.wait_for(
                    "ready with the peer's bulk sync",
                    Duration::from_secs(60) + per_flow(n, 10_000),
                    |s| {
                        s.ready
                            && s.replication.bulk_received
                            && s.state == FailoverState::Synchronization
                    },
                )?;
                timing = Some((a_caught_up, a_status, answering, ready, status));
                sig.dump.store(true, Ordering::SeqCst);
                Ok(())
            })();
            if result.is_err() {
                sig.stop.store(true, Ordering::SeqCst);
            }
            let generator = join(generator);
            result?;
            generator
        })?;
        // B's table, from a backend of B's namespace.
        let table_b = std::thread::scope(|s| {
            let dumper = in_ns(s, &ns_b, "dump-b", || {
                let mut backend = open_backend(WATCHER, None, BENCH_EVENT_BUFFER)?;
                dump_table(&mut backend, &flows)
            });
            join(dumper)
        })?;
        let (a_caught_up, a_status, answering, ready, status) =
            timing.context("bulk: no timing")?;
        let status_a = a.status().ok();
        let incidents = json!({
            "a": a.incidents(),
            "b": b_slot.as_ref().map(Daemon::incidents),
        });
        drop((a, b_slot, lab));

        let compare = compare_tables(&table_a, &table_b);
        let standalone = self
            .standalone
            .get(&n)
            .copied()
            .map(|s| (s.insert_secs, "standalone insert into B"))
            .unwrap_or((prefill.apply_secs, "this run's insert into A"));
        let bound = 1.2 * standalone.0;
        let secs = ready.as_secs_f64();
        let value = json!({
            "figure": "bulk_sync",
            "flows": n,
            "prefill_entries_per_sec": (n as f64 / prefill.wall_secs()).round(),
            "a_caught_up_secs_after_prefill": round3(a_caught_up.as_secs_f64()),
            "a_before_b": status_summary(&a_status),
            "b_answering_secs": round3(answering.as_secs_f64()),
            "b_ready_secs": round3(secs),
            // Within b_ready_secs: from negotiation (state synchronization) to ready, i.e. the
            // bulk transfer and apply; the rest is start-up and the silence timer (300 ms).
            "b_synchronization_to_ready_secs": round3(status.state_since_ms as f64 / 1000.0),
            "b_ready_entries_per_sec": (n as f64 / secs).round(),
            "standalone_insert_secs": round3(standalone.0),
            "standalone_source": standalone.1,
            "bound_secs": round3(bound),
            "on_a": compare.on_a,
            "on_b": compare.on_b,
            "lost": compare.lost,
            "different": compare.different,
            "daemon_a": status_a.as_ref().map(status_summary),
            "daemon_b": status_summary(&status),
            "daemon_log_incidents": incidents.clone(),
        });
        let human = format!(
            "bulk {n}: B ready with A's {} sessions {secs:.2} s after its start ({:.0} entries/s; \
             answering after {:.2} s, negotiated to ready {:.2} s); 1.2 x {} ({:.2} s) = \
             {bound:.2} s; prefill {:.0}/s; on B {}, lost {}, different {}",
            a_status.sessions.owned,
            n as f64 / secs,
            answering.as_secs_f64(),
            status.state_since_ms as f64 / 1000.0,
            standalone.1,
            standalone.0,
            n as f64 / prefill.wall_secs(),
            compare.on_b,
            compare.lost,
            compare.different,
        );
        self.figure(
            value,
            format!("{human}\n    daemon log incidents: {incidents}"),
        );
        self.target(
            format!("bulk {n}: B ready within 1.2 x the insert time ({secs:.2} s <= {bound:.2} s)"),
            secs <= bound,
        );
        self.target(
            format!("bulk {n}: entries lost = 0 (lost {})", compare.lost),
            compare.lost == 0 && compare.on_a == n as usize,
        );
        Ok(())
    }
}

fn per_flow(n: u32, per_sec: u32) -> Duration {
    Duration::from_secs_f64(n as f64 / per_sec as f64)
}

// ---------------------------------------------------------------------------------------------
// Generator, watcher, dumps

/// What the benchmark's threads and the main thread tell each other.
#[derive(Default)]
struct Signals {
    generator_ready: AtomicBool,
    watcher_ready: AtomicBool,
    go: AtomicBool,
    generated: AtomicBool,
    dump: AtomicBool,
    stop: AtomicBool,
    created: AtomicUsize,
    arrived: AtomicUsize,
}

/// The generator's thread: creates `flows` as local activity once `go` is set, then dumps them
/// once `dump` is set.
fn generator_job(sig: &Signals, flows: &[u32], base: Instant) -> Result<(Generated, Table)> {
    let mut backend = open_backend(GENERATOR, None, BENCH_EVENT_BUFFER)?;
    sig.generator_ready.store(true, Ordering::SeqCst);
    wait_flag(&sig.go, &sig.stop, Duration::from_secs(60))?;
    let generated = generate(
        &mut backend,
        GENERATOR,
        flows,
        GENERATOR_CHUNK,
        base,
        true,
        &sig.stop,
        &sig.created,
    )?;
    sig.generated.store(true, Ordering::SeqCst);
    wait_flag(&sig.dump, &sig.stop, Duration::from_secs(900))?;
    let table = dump_table(&mut backend, flows)?;
    Ok((generated, table))
}

/// The watcher's thread: timestamps each flow's arrival in the other kernel, then dumps them
/// once `dump` is set.
fn watcher_job(sig: &Signals, flows: &[u32], base: Instant) -> Result<(Watched, Table)> {
    let mut backend = open_backend(WATCHER, None, BENCH_EVENT_BUFFER)?;
    sig.watcher_ready.store(true, Ordering::SeqCst);
    let watched = watch(&mut backend, flows, base, sig, Duration::from_secs(900))?;
    wait_flag(&sig.dump, &sig.stop, Duration::from_secs(900))?;
    let table = dump_table(&mut backend, flows)?;
    Ok((watched, table))
}

fn open_backend(
    local: NodeId,
    peer: Option<NodeId>,
    event_buffer_bytes: usize,
) -> Result<ConntrackBackend> {
    ConntrackBackend::open(
        ConntrackConfig {
            event_buffer_bytes,
            peer_entry_timeout_secs: 3600,
            ..ConntrackConfig::default()
        },
        local,
        peer,
    )
    .context("ConntrackBackend::open")
}

struct Generated {
    /// Offsets from the run's base instant, nanoseconds.
    started_ns: u64,
    finished_ns: u64,
    /// Seconds spent inside `apply`.
    apply_secs: f64,
    /// Creation time of each flow (ns from base), interpolated within its chunk; empty unless
    /// asked for.
    created_ns: Vec<u64>,
    failed: usize,
    first_error: Option<String>,
}

impl Generated {
    fn wall_secs(&self) -> f64 {
        (self.finished_ns - self.started_ns) as f64 / 1e9
    }
}

/// Upserts `sample_record(i, owner)` for every `i` of `flows` (see [`flow_indices`]), in chunks
/// of `chunk`.
#[allow(clippy::too_many_arguments)]
fn generate(
    backend: &mut ConntrackBackend,
    owner: NodeId,
    flows: &[u32],
    chunk: usize,
    base: Instant,
    stamps: bool,
    stop: &AtomicBool,
    created: &AtomicUsize,
) -> Result<Generated> {
    let n = flows.len() as u32;
    let deadline = Instant::now() + Duration::from_secs(120) + per_flow(n, 5_000);
    let mut created_ns = if stamps {
        vec![0; mark_limit(flows) as usize]
    } else {
        Vec::new()
    };
    let mut ops = Vec::with_capacity(chunk);
    let mut apply = Duration::ZERO;
    let (mut failed, mut first_error) = (0, None);
    let started = Instant::now();
    let mut next = 0u32;
    while next < n {
        if stop.load(Ordering::SeqCst) {
            bail!("generator stopped");
        }
        check_interrupted()?;
        ensure!(
            Instant::now() < deadline,
            "generator: out of time at {next} of {n}"
        );
        let end = n.min(next + chunk as u32);
        let slice = &flows[next as usize..end as usize];
        ops.clear();
        ops.extend(
            slice
                .iter()
                .map(|&i| SessionOp::Upsert(bench_record(i, owner))),
        );
        let before = Instant::now();
        let report = backend.apply(&ops);
        let after = Instant::now();
        apply += after - before;
        if let Some((index, error)) = report.failed.first() {
            failed += report.failed.len();
            first_error.get_or_insert_with(|| format!("flow {}: {error}", next as usize + index));
            if report
                .failed
                .iter()
                .any(|(_, e)| *e == ApplyError::TableFull)
            {
                bail!(
                    "the kernel table is full (nf_conntrack_max) after {next} flows: {}",
                    first_error.unwrap_or_default()
                );
            }
        }
        if stamps {
            let (t0, t1) = (
                (before - base).as_nanos() as u64,
                (after - base).as_nanos() as u64,
            );
            let len = (end - next) as u64;
            for (j, &i) in slice.iter().enumerate() {
                created_ns[i as usize] = t0 + (t1 - t0) * (j as u64 + 1) / len;
            }
        }
        next = end;
        created.store(next as usize, Ordering::Relaxed);
    }
    let finished = Instant::now();
    Ok(Generated {
        started_ns: (started - base).as_nanos() as u64,
        finished_ns: (finished - base).as_nanos() as u64,
        apply_secs: apply.as_secs_f64(),
        created_ns,
        failed,
        first_error,
    })
}

struct Watched {
    /// Arrival of each flow (ns from base); `u64::MAX` if it never arrived.
    arrival_ns: Vec<u64>,
    overruns: u64,
    unmatched: u64,
}

/// Polls `backend`'s changes until all `n` sample flows have arrived (or the main thread says
/// stop), timestamping the first arrival of each.
fn watch(
    backend: &mut ConntrackBackend,
    flows: &[u32],
    base: Instant,
    sig: &Signals,
    within: Duration,
) -> Result<Watched> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let deadline = Instant::now() + within;
    let n = flows.len() as u32;
    let limit = mark_limit(flows);
    let mut arrival_ns = vec![u64::MAX; limit as usize];
    let (mut arrived, mut overruns, mut unmatched) = (0usize, 0u64, 0u64);
    let mut changes = Vec::with_capacity(4096);
    while arrived < n as usize
        && !sig.stop.load(Ordering::SeqCst)
        && !sig.dump.load(Ordering::SeqCst)
    {
        check_interrupted()?;
        ensure!(
            Instant::now() < deadline,
            "watcher: out of time at {arrived} of {n}"
        );
        changes.clear();
        match backend.poll_changes(&mut changes, 4096) {
            Ok(0) => {
                let changed = backend.changed();
                runtime.block_on(async {
                    let _ = tokio::time::timeout(Duration::from_millis(20), changed).await;
                });
                continue;
            }
            Ok(_) => {}
            Err(BackendError::Overrun { .. }) => {
                overruns += 1;
                continue;
            }
            Err(error) => return Err(error).context("watcher: poll_changes"),
        }
        let now = base.elapsed().as_nanos() as u64;
        for op in &changes {
            let SessionOp::Upsert(record) = op else {
                continue;
            };
            if is_sample(record, limit) {
                let slot = &mut arrival_ns[record.mark as usize];
                if *slot == u64::MAX {
                    *slot = now;
                    arrived += 1;
                }
            } else {
                unmatched += 1;
            }
        }
        sig.arrived.store(arrived, Ordering::Relaxed);
    }
    Ok(Watched {
        arrival_ns,
        overruns,
        unmatched,
    })
}

/// Whether `record` is `sample_record(record.mark, _)` for a mark below `limit`.
fn is_sample(record: &SessionRecord, limit: u32) -> bool {
    record.mark < limit && sample_record(record.mark, GENERATOR).key == record.key
}

/// The first `n` indices of `sample_record` that the daemons replicate: the few whose IPv4
/// client address falls in the failover link's subnet (10.0.254.0/30, which the daemons are
/// told to exclude, as the e2e tests do) are skipped.
fn flow_indices(n: u32) -> Vec<u32> {
    let in_link = |address: &std::net::IpAddr| match address {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            (a, b, c) == (10, 0, 254) && d < 4
        }
        std::net::IpAddr::V6(_) => false,
    };
    (0..1u32 << 22)
        .filter(|&i| {
            let key = sample_record(i, GENERATOR).key;
            !in_link(&key.orig.src) && !in_link(&key.orig.dst)
        })
        .take(n as usize)
        .collect()
}

/// `sample_record(i, owner)` with a timeout of [`BENCH_TIMEOUT_SECS`]: the sample's ICMP (30 s)
/// and UDP (120 s) entries would expire during a run of a million flows, and their deletes would
/// be replicated in the middle of the measurement.
fn bench_record(i: u32, owner: NodeId) -> SessionRecord {
    let mut record = sample_record(i, owner);
    record.timeout_secs = BENCH_TIMEOUT_SECS;
    record
}

/// One past the largest mark of `flows` (marks are sample indices).
fn mark_limit(flows: &[u32]) -> u32 {
    flows.last().map_or(0, |&i| i + 1)
}

/// A dump, reduced to the sample flows: for each, a hash of what must be equal on both nodes
/// (key, reply tuple, mark), 0 if absent.
struct Table {
    signature: Vec<u64>,
    present: usize,
    total: usize,
    secs: f64,
}

fn dump_table(backend: &mut ConntrackBackend, flows: &[u32]) -> Result<Table> {
    let limit = mark_limit(flows);
    check_interrupted()?;
    let started = Instant::now();
    let records = backend.dump().context("dump")?;
    let secs = started.elapsed().as_secs_f64();
    let mut signature = vec![0u64; limit as usize];
    let mut present = 0;
    for record in &records {
        if is_sample(record, limit) {
            let mut hasher = std::hash::DefaultHasher::new();
            ComparedFields::of(record).hash(&mut hasher);
            let slot = &mut signature[record.mark as usize];
            if *slot == 0 {
                present += 1;
            }
            *slot = hasher.finish() | 1;
        }
    }
    Ok(Table {
        signature,
        present,
        total: records.len(),
        secs,
    })
}

struct Comparison {
    on_a: usize,
    on_b: usize,
    /// On the source, missing on the copy.
    lost: usize,
    /// On both, different on the compared fields.
    different: usize,
}

fn compare_tables(source: &Table, copy: &Table) -> Comparison {
    let (mut lost, mut different) = (0, 0);
    for (s, c) in source.signature.iter().zip(&copy.signature) {
        match (*s, *c) {
            (0, _) => {}
            (_, 0) => lost += 1,
            (s, c) if s != c => different += 1,
            _ => {}
        }
    }
    Comparison {
        on_a: source.present,
        on_b: copy.present,
        lost,
        different,
    }
}

struct Lags {
    arrived: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    first_arrival_ns: u64,
    last_arrival_ns: u64,
    /// The lag of the last flow created, if it arrived.
    last_flow_ms: Option<f64>,
}

impl Lags {
    fn of(created_ns: &[u64], arrival_ns: &[u64]) -> Lags {
        let mut lags: Vec<u64> = Vec::with_capacity(arrival_ns.len());
        let (mut first, mut last) = (u64::MAX, 0);
        for (&c, &a) in created_ns.iter().zip(arrival_ns) {
            if a == u64::MAX {
                continue;
            }
            lags.push(a.saturating_sub(c));
            first = first.min(a);
            last = last.max(a);
        }
        lags.sort_unstable();
        let pick = |q: f64| -> f64 {
            if lags.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * lags.len() as f64).ceil() as usize).clamp(1, lags.len());
            lags[rank - 1] as f64 / 1e6
        };
        let last_flow_ms = match (created_ns.last(), arrival_ns.last()) {
            (Some(&c), Some(&a)) if a != u64::MAX => Some(a.saturating_sub(c) as f64 / 1e6),
            _ => None,
        };
        Lags {
            arrived: lags.len(),
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
            first_arrival_ns: if first == u64::MAX { 0 } else { first },
            last_arrival_ns: last,
            last_flow_ms,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Threads in namespaces, bounded waits

/// Runs `f` on a scoped thread that first enters network namespace `ns`; the thread's sockets
/// (and the threads it spawns, such as a backend's event reader) belong to that namespace.
fn in_ns<'scope, 'env, T: Send + 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    ns: &str,
    name: &str,
    f: impl FnOnce() -> Result<T> + Send + 'scope,
) -> ScopedJoinHandle<'scope, Result<T>> {
    let ns = ns.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn_scoped(scope, move || {
            enter_netns(&ns)?;
            f()
        })
        .expect("spawn a thread")
}

fn enter_netns(ns: &str) -> Result<()> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("open {path}"))?;
    // SAFETY: `file` is an open namespace descriptor for the whole call; CLONE_NEWNET changes
    // only the calling thread's network namespace, and this thread was made for that.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

trait Finished {
    fn finished(&self) -> bool;
}

impl<T> Finished for ScopedJoinHandle<'_, T> {
    fn finished(&self) -> bool {
        self.is_finished()
    }
}

fn join<T>(handle: ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    let name = handle.thread().name().unwrap_or("thread").to_string();
    handle
        .join()
        .unwrap_or_else(|_| Err(anyhow!("the {name} thread panicked")))
        .with_context(|| format!("the {name} thread"))
}

/// Joins `worker`, printing progress (`counters[0]` of `of`) every few seconds.
fn join_watching<T>(
    worker: ScopedJoinHandle<'_, Result<T>>,
    stop: &AtomicBool,
    counters: &[&AtomicUsize],
    of: usize,
    what: &str,
) -> Result<T> {
    let mut last = Instant::now();
    let mut failure = None;
    while !worker.is_finished() {
        if let Err(error) = check_interrupted() {
            stop.store(true, Ordering::SeqCst);
            failure.get_or_insert(error);
        }
        if last.elapsed() >= Duration::from_secs(3) {
            progress(&format!(
                "  {what} {} of {of}",
                counters[0].load(Ordering::Relaxed)
            ));
            last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let result = join(worker);
    match failure {
        Some(error) => Err(error),
        None => result,
    }
}

/// Waits (bounded) until `flag` is set; fails if `stop` is set first.
fn wait_flag(flag: &AtomicBool, stop: &AtomicBool, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while !flag.load(Ordering::SeqCst) {
        ensure!(!stop.load(Ordering::SeqCst), "stopped");
        check_interrupted()?;
        ensure!(Instant::now() < deadline, "not signalled within {within:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Waits until every flag is set; fails if a worker ends first (it failed).
fn wait_for_flags(flags: &[&AtomicBool], workers: &[&dyn Finished]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120) + per_flow(4 << 20, 20_000);
    while !flags.iter().all(|f| f.load(Ordering::SeqCst)) {
        check_interrupted()?;
        ensure!(
            !workers.iter().any(|w| w.finished()),
            "a worker thread ended early"
        );
        ensure!(Instant::now() < deadline, "workers not ready in time");
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Waits until the watcher has seen all `n` flows (after the generator is done, with a stall
/// limit); returns how long it waited after the generator finished. Fails if a worker ends
/// early or a daemon exits.
fn wait_arrivals(
    n: u32,
    sig: &Signals,
    workers: &[&dyn Finished],
    daemons: &mut [&mut Daemon],
) -> Result<f64> {
    const STALL: Duration = Duration::from_secs(20);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60) + per_flow(n, 2_000);
    let mut generated_at = None;
    let (mut last_count, mut last_change) = (0, Instant::now());
    let mut last_report = Instant::now();
    loop {
        check_interrupted()?;
        let arrived = sig.arrived.load(Ordering::Relaxed);
        if arrived >= n as usize {
            break;
        }
        if generated_at.is_none() && sig.generated.load(Ordering::SeqCst) {
            generated_at = Some(Instant::now());
        }
        ensure!(
            !workers.iter().any(|w| w.finished()),
            "a worker thread ended early (arrived {arrived} of {n})"
        );
        for daemon in daemons.iter_mut() {
            if let Some(exit) = daemon.exited() {
                bail!(
                    "{} exited ({exit}) during the run; its log ends:\n{}",
                    daemon.name,
                    daemon.log_tail(30)
                );
            }
        }
        let created = sig.created.load(Ordering::Relaxed);
        if arrived != last_count || created != n as usize {
            (last_count, last_change) = (arrived, Instant::now());
        }
        if last_change.elapsed() > STALL {
            bail!(
                "no new arrival for {STALL:?}: {arrived} of {n} arrived ({created} created);\n{}",
                daemons
                    .iter()
                    .map(|d| format!("{}: {}\n{}", d.name, d.status_line(), d.log_tail(10)))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        ensure!(
            Instant::now() < deadline,
            "out of time: {arrived} of {n} arrived ({created} created)"
        );
        if last_report.elapsed() >= Duration::from_secs(3) {
            progress(&format!("  created {created}, arrived {arrived} of {n}"));
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(generated_at.map_or(0.0, |t| t.elapsed().as_secs_f64()))
}

// ---------------------------------------------------------------------------------------------
// The lab and the daemons

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fw {
    A,
    B,
}

impl Fw {
    fn name(self) -> &'static str {
        match self {
            Fw::A => "a",
            Fw::B => "b",
        }
    }
    fn link(self) -> &'static str {
        match self {
            Fw::A => "10.0.254.1:7500",
            Fw::B => "10.0.254.2:7500",
        }
    }
    fn other(self) -> Fw {
        match self {
            Fw::A => Fw::B,
            Fw::B => Fw::A,
        }
    }
    fn index(self) -> usize {
        match self {
            Fw::A => 0,
            Fw::B => 1,
        }
    }
}

/// A lab of `lab.sh`, up; `lab.sh down` when dropped.
struct Lab {
    script: PathBuf,
    prefix: String,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    identities: [Identity; 2],
}

impl Lab {
    fn up(script: &Path, prefix: &str, keep: Option<&Path>) -> Result<Lab> {
        let (dir, temp) = match keep {
            Some(keep) => (keep.join(prefix), None),
            None => {
                let temp = tempfile::tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        std::fs::create_dir_all(&dir)?;
        // The guard exists before the lab does: a failing `up` is torn down too.
        let lab = Lab {
            script: script.to_path_buf(),
            prefix: prefix.to_string(),
            dir,
            _temp: temp,
            identities: [Identity::generate(), Identity::generate()],
        };
        let out = Command::new("bash")
            .arg(script)
            .args(["up", prefix])
            .output()
            .context("run lab.sh up")?;
        ensure!(
            out.status.success(),
            "lab.sh up {prefix} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(lab)
    }

    fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        match Command::new("bash")
            .arg(&self.script)
            .args(["down", &self.prefix])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "lab.sh down {}: {}",
                self.prefix,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(error) => eprintln!("lab.sh down {}: {error}", self.prefix),
        }
    }
}

#[derive(Debug, Clone)]
struct DaemonOptions {
    event_buffer_bytes: Option<usize>,
    timers: Option<Timers>,
    log_level: String,
}

/// Hello and dead interval of a daemon, ms.
#[derive(Debug, Clone, Copy)]
struct Timers {
    hello_ms: u32,
    dead_ms: u32,
}

/// The control socket, with a runtime to talk to it.
struct Control {
    socket: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Control {
    fn new(socket: &Path) -> Result<Control> {
        Ok(Control {
            socket: socket.to_path_buf(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    fn status(&self) -> Result<Status> {
        let value = self
            .runtime
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    transport::request(&self.socket, &Request::Status),
                )
                .await
            })
            .map_err(|_| anyhow!("no answer within 5 s"))??;
        Ok(serde_json::from_value(value)?)
    }
}

/// A `failoverd` process in a firewall's namespace; killed by PID when dropped.
struct Daemon {
    name: String,
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    control: Control,
}

impl Daemon {
    fn spawn(binary: &Path, lab: &Lab, fw: Fw, options: &DaemonOptions) -> Result<Daemon> {
        let dir = lab.dir.join(fw.name());
        std::fs::create_dir_all(&dir)?;
        let key = dir.join("node.pem");
        if !key.exists() {
            std::fs::write(&key, lab.identities[fw.index()].to_pem())?;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        }
        let peer_key = lab.identities[fw.other().index()].fingerprint();
        let socket = dir.join("failoverd.sock");
        let mut file = ConfigFile::new(
            fw.name(),
            if fw == Fw::A { 200 } else { 100 },
            fw.link(),
            fw.other().link(),
            format!("\"{peer_key}\""),
            socket.clone(),
        );
        file.link.push("reconnect_max_ms = 500".to_string());
        file.timers.push("silence_ms = 300".to_string());
        if let Some(timers) = options.timers {
            file.timers
                .push(format!("hello_interval_ms = {}", timers.hello_ms));
            file.timers
                .push(format!("dead_interval_ms = {}", timers.dead_ms));
        }
        file.backend = Some("conntrack".to_string());
        if let Some(bytes) = options.event_buffer_bytes {
            file.conntrack.push(format!("event_buffer_bytes = {bytes}"));
        }
        file.conntrack
            .push(format!("exclude = [\"{LINK_SUBNET}\"]"));
        file.log_level = options.log_level.clone();
        let config = file.render(file!());
        let path = dir.join("failoverd.toml");
        std::fs::write(&path, config)?;
        let _ = std::fs::remove_file(&socket);
        let log = dir.join("failoverd.log");
        let mut file = OpenOptions::new().create(true).append(true).open(&log)?;
        writeln!(file, "---- conntrack_bench: start in {}", lab.ns(fw.name()))?;
        // `ip netns exec` executes the daemon in place: the child's PID is the daemon's.
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(fw.name())])
            .arg(binary)
            .arg("--config")
            .arg(&path)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("start failoverd")?;
        Ok(Daemon {
            name: format!("failoverd {}", fw.name().to_uppercase()),
            child: Some(child),
            control: Control::new(&socket)?,
            socket,
            log,
        })
    }

    fn status(&self) -> Result<Status> {
        self.control.status()
    }

    fn status_line(&self) -> String {
        match self.status() {
            Ok(s) => status_summary(&s).to_string(),
            Err(e) => format!("no status: {e}"),
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the daemon's log says went wrong with the pair: "peer dead" verdicts, link losses,
    /// overruns.
    fn incidents(&self) -> Value {
        let log = self.log();
        let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
        // "hello thread paused: it ran N.N ms late; ...", one line per pause.
        let pauses_ms: Vec<f64> = log
            .lines()
            .filter_map(|l| l.split("hello thread paused: it ran ").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse().ok())
            .collect();
        json!({
            "peer_dead": count("peer dead"),
            "own_pauses_ms": pauses_ms,
            "link_down": count("failoverd::driver: failover link down"),
            "overrun_resyncs": count("backend lost change events"),
            "hellos_withheld": count("hellos withheld"),
        })
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls the status until `done` holds (bounded); returns it and the time it took.
    fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&Status) -> bool,
    ) -> Result<(Status, Duration)> {
        let started = Instant::now();
        loop {
            check_interrupted()?;
            if let Some(exit) = self.exited() {
                bail!(
                    "{}: exited ({exit}) while waiting for {what}; log:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            let status = self.status();
            if let Ok(status) = &status
                && done(status)
            {
                return Ok((status.clone(), started.elapsed()));
            }
            if started.elapsed() > within {
                bail!(
                    "{}: {what} did not happen within {within:?}; last status: {}\nlog:\n{}",
                    self.name,
                    match &status {
                        Ok(s) => status_summary(s).to_string(),
                        Err(e) => e.to_string(),
                    },
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU seconds per thread name.
    fn cpu(&self) -> BTreeMap<String, f64> {
        self.child
            .as_ref()
            .map(|c| threads_cpu_secs(c.id()))
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM by PID, a bounded wait, then SIGKILL.
        // SAFETY: kill has no memory-safety preconditions; the PID is our unreaped child's.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        for _ in 0..60 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn wait_synchronized(a: &mut Daemon, b: &mut Daemon, within: Duration) -> Result<f64> {
    let synchronized = |s: &Status| s.state == FailoverState::Synchronization && s.ready;
    let (_, da) = a.wait_for("synchronization", within, synchronized)?;
    let (_, db) = b.wait_for("synchronization", within, synchronized)?;
    Ok(da.max(db).as_secs_f64())
}

/// The status fields worth keeping beside a figure.
fn status_summary(s: &Status) -> Value {
    let pick = |names: &[&str]| -> Value {
        names
            .iter()
            .filter_map(|&n| s.counters.get(n).map(|v| (n.to_string(), json!(v))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "state": s.state.name(),
        "ready": s.ready,
        "sessions": { "total": s.sessions.total, "owned": s.sessions.owned,
                      "peer_owned": s.sessions.peer_owned, "pending": s.sessions.pending_changes,
                      "in_flight": s.sessions.in_flight_batches },
        "replication": { "bulk_sent": s.replication.bulk_sent,
                         "bulk_received": s.replication.bulk_received,
                         "lag_p50_us": s.replication.lag_p50_us,
                         "lag_p99_us": s.replication.lag_p99_us,
                         "lag_max_us": s.replication.lag_max_us },
        "counters": pick(&["records_sent", "records_received", "records_applied", "batches_sent",
                           "retransmits", "bulk_syncs_sent", "bulk_syncs_received", "changes_lost",
                           "apply_failures", "backend_events_in", "backend_events_own",
                           "backend_overruns", "backend_apply_errors", "backend_dumps", "driver_turn_max_us", "driver_timer_late_max_us",
                           "own_pauses", "own_pause_max_us"]),
    })
}

// ---------------------------------------------------------------------------------------------
// Host: sysctl guard, CPU accounting, output

/// `nf_conntrack_max` raised for the run and restored when dropped (host-wide: only the initial
/// namespace may write it; the main thread never leaves it).
///
/// Another program may have lowered it (the project's tests no longer do: they fill their own
/// namespaces): a value below the kernel's usual minimum is taken as such a change and the run
/// refuses to start, and at the end the old value is written back only if the value is still
/// the one this run set. SIGINT and SIGTERM end the run through the same drop
/// ([`check_interrupted`]).
struct ConntrackMax {
    /// (the value found, the value written)
    changed: Option<(u64, u64)>,
}

const MAX_PATH: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// Below this, `nf_conntrack_max` was lowered by someone (the kernel's default is at least
/// 65536 on any machine with 1 GiB or more).
const MAX_PLAUSIBLE_MIN: u64 = 65_536;

impl ConntrackMax {
    fn raise(to: u64) -> Result<ConntrackMax> {
        let old = read_sysctl("nf_conntrack_max")
            .context("read net.netfilter.nf_conntrack_max (is nf_conntrack loaded?)")?;
        ensure!(
            old >= MAX_PLAUSIBLE_MIN,
            "net.netfilter.nf_conntrack_max is {old}: another program has lowered this \
             host-wide limit; run the benchmark when it is done"
        );
        if old >= to {
            return Ok(ConntrackMax { changed: None });
        }
        std::fs::write(MAX_PATH, format!("{to}\n")).context("raise nf_conntrack_max")?;
        progress(&format!(
            "nf_conntrack_max {old} -> {to} (restored at the end)"
        ));
        Ok(ConntrackMax {
            changed: Some((old, to)),
        })
    }
}

impl Drop for ConntrackMax {
    fn drop(&mut self) {
        let Some((old, set)) = self.changed else {
            return;
        };
        match read_sysctl("nf_conntrack_max") {
            Some(now) if now == set => match std::fs::write(MAX_PATH, format!("{old}\n")) {
                Ok(()) => progress(&format!("nf_conntrack_max restored to {old}")),
                Err(e) => {
                    eprintln!("conntrack_bench: could not restore nf_conntrack_max to {old}: {e}")
                }
            },
            now => eprintln!(
                "conntrack_bench: nf_conntrack_max is {now:?}, not the {set} this run set: someone \
                 else changed it meanwhile; left alone (it was {old} before the run)"
            ),
        }
    }
}

fn read_sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime of a `stat` line, seconds, and the comm field.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the comm: state is field 3, utime 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / clock_ticks()))
}

/// CPU seconds of each live thread of `pid`, summed by thread name.
fn threads_cpu_secs(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("stat"))
            && let Some((comm, secs)) = parse_stat(&stat)
        {
            *out.entry(comm).or_insert(0.0) += secs;
        }
    }
    out
}

/// CPU seconds of this process (dead threads included).
fn process_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0.0, |(_, secs)| secs)
}

fn cpu_diff(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Value {
    let mut diff: Vec<(String, f64)> = after
        .iter()
        .map(|(name, secs)| {
            (
                name.clone(),
                secs - before.get(name).copied().unwrap_or(0.0),
            )
        })
        .filter(|(_, secs)| *secs >= 0.01)
        .collect();
    diff.sort_by(|x, y| y.1.total_cmp(&x.1));
    let total: f64 = diff.iter().map(|(_, s)| s).sum();
    let mut map = serde_json::Map::new();
    map.insert("total".into(), json!(round3(total)));
    for (name, secs) in diff {
        map.insert(name, json!(round3(secs)));
    }
    map.into()
}

/// "total (top thread: secs, next: secs)" of a daemon's CPU between two snapshots.
fn cpu_brief(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut diff: Vec<(&String, f64)> = after
        .iter()
        .map(|(name, secs)| (name, secs - before.get(name).copied().unwrap_or(0.0)))
        .collect();
    diff.sort_by(|x, y| y.1.total_cmp(&x.1));
    let total: f64 = diff.iter().map(|(_, s)| s).sum();
    let top: Vec<String> = diff
        .iter()
        .take(3)
        .filter(|(_, s)| *s >= 0.05)
        .map(|(name, s)| format!("{name} {s:.1}"))
        .collect();
    format!("{total:.1} ({})", top.join(", "))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn progress(line: &str) {
    eprintln!("{line}");
}
