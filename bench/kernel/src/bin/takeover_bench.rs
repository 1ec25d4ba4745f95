//! Takeover benchmark in the netns lab of `lab/lab.sh` (issue 5): how long a hard kill of the
//! active firewall interrupts a live TCP stream through the virtual gateway and SNAT, with
//! failoverd's VRRP takeover and with keepalived + conntrackd, and how often each takes over
//! without a reason (false takeovers) while idle and under CPU load.
//!
//! ```sh
//! cargo build --release -p failoverd --bins          # the daemon the failoverd variants run
//! cargo run --release -p failoverd-bench --bin takeover_bench -- --runs 5 --variant all --json
//! cargo run --release -p failoverd-bench --bin takeover_bench -- --variant keepalived-aggressive \
//!     --runs 0 --idle-secs 60 --busy-secs 60        # false takeovers only
//! ```
//!
//! As root; needs `ip`, `nft`, `conntrack`, and for the keepalived variants `keepalived` and
//! `conntrackd`.
//!
//! **A run**: a fresh lab without shared addresses (`lab.sh up --no-shared`, unique prefix); a
//! TCP echo server on 10.0.2.100; the pair started (failoverd: both daemons with `[takeover]
//! mode = "vrrp"` and the lab's instances `lan` 10.0.1.1/24 and `wan` 10.0.2.1/24; keepalived:
//! VRRPv3 with the same instances in one sync group, and conntrackd FTFW over `fo`), waited
//! for until A is master and B ready (failoverd: both synchronized and ready, A's VRRP group
//! master; keepalived: A's notify script done, B's backup script done); a watcher of B's
//! addresses (rtnetlink) started; a TCP stream from the client through the gateway and SNAT to
//! the server, one 8-byte message every `--interval-ms` (1), each echoed; waited for until B
//! holds the stream's connection (failoverd: in B's kernel table; keepalived: in conntrackd's
//! external cache on B); `--pre-kill-ms` (1000) of stream; then the **hard kill** of A: all
//! its links down in one `ip -n A -batch -`, then SIGKILL of every process in A's namespace.
//!
//! Measured from the instant the `ip -batch` returned (every link of A down):
//! - **takeover**: until B holds both virtual addresses (the watcher's timestamp of the last
//!   `RTM_NEWADDR`) *and* B is committed: failoverd's status says role `active` (polled every
//!   millisecond), keepalived's notify script has finished `conntrackd -c` (it stamps the time);
//! - **gap**: the longest time without an echo from 500 ms before the kill until 1 s after the
//!   stream resumed;
//! - **survived**: the stream did not fail (no reset or close) and, after resuming, kept going
//!   for 1 s without a gap over 1 s;
//! - A answers for no virtual address: A has no virtual address on a link that is up (the
//!   kernel keeps IPv4 addresses on a link that is down, and nothing removes them after a
//!   SIGKILL, so A still *lists* them; that is reported as `a_lists_vip`).
//!
//! **Variants**: `failoverd-default` (no `[timers]`, no `advert_interval_ms`: the daemon's
//! defaults), `failoverd-aggressive` (10 ms adverts, hellos every 10 ms, peer dead after 30 ms),
//! `keepalived-default` (advert_int 1 s, keepalived's default), `keepalived-50ms` (0.05 s, a
//! fairer comparison), `keepalived-aggressive` (0.01 s).
//!
//! **False takeovers** (with `--idle-secs`/`--busy-secs` > 0): per variant, a fresh pair left
//! idle for `--idle-secs`, then for `--busy-secs` with the 1 ms stream running and
//! `--busy-procs` (2) CPU-bound processes (killed by PID at the end); counted: every VRRP
//! transition to master on either node (failoverd: the instances' `became_master` counters and
//! role changes seen by polling; keepalived: "Entering MASTER STATE" in its log), and whether
//! A was still the master at the end.
//!
//! Every loop and wait is bounded; labs are torn down when their guard drops (also on a
//! failed run, whose files are kept and printed); SIGINT/SIGTERM stop after the current step.

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

use failoverd_lab as support;
use support::addrwatch::AddrWatch;
use support::daemon::{Daemon, DaemonOptions, synchronized};
use support::keepalived::{Keepalived, KeepalivedOptions};
use support::lab::{SERVER4, VIPS4};
use support::traffic::{Probe, TcpEchoServer};
use support::{Firewall, HardKill, Lab};

/// Takeover benchmark: failoverd's VRRP takeover against keepalived + conntrackd (run as root).
#[derive(Parser, Debug)]
struct Args {
    /// Runs per variant (each in a fresh lab).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Variants; repeatable or comma-separated.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [VariantArg::All])]
    variant: Vec<VariantArg>,
    /// Print one JSON object per run and per summary on stdout (the human lines go to stderr).
    #[arg(long)]
    json: bool,
    /// Milliseconds between the stream's messages.
    #[arg(long, default_value_t = 1)]
    interval_ms: u64,
    /// Milliseconds of stream, after B holds its connection, before the kill.
    #[arg(long, default_value_t = 1000)]
    pre_kill_ms: u64,
    /// False-takeover phase: seconds of idle pair (0: none).
    #[arg(long, default_value_t = 0)]
    idle_secs: u64,
    /// False-takeover phase: seconds with the stream and CPU load (0: none).
    #[arg(long, default_value_t = 0)]
    busy_secs: u64,
    /// CPU-bound processes during the busy part.
    #[arg(long, default_value_t = 2)]
    busy_procs: usize,
    /// Keep every lab's files (logs, configurations), not only those of failed runs.
    #[arg(long)]
    keep_files: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VariantArg {
    FailoverdDefault,
    FailoverdAggressive,
    KeepalivedDefault,
    #[value(name = "keepalived-50ms")]
    Keepalived50ms,
    KeepalivedAggressive,
    /// Every variant, keepalived's first.
    All,
    /// The keepalived variants.
    Keepalived,
    /// The failoverd variants.
    Failoverd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    FailoverdDefault,
    FailoverdAggressive,
    KeepalivedDefault,
    Keepalived50ms,
    KeepalivedAggressive,
}

const ALL: [Variant; 5] = [
    Variant::KeepalivedDefault,
    Variant::Keepalived50ms,
    Variant::KeepalivedAggressive,
    Variant::FailoverdDefault,
    Variant::FailoverdAggressive,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::FailoverdDefault => "failoverd-default",
            Variant::FailoverdAggressive => "failoverd-aggressive",
            Variant::KeepalivedDefault => "keepalived-default",
            Variant::Keepalived50ms => "keepalived-50ms",
            Variant::KeepalivedAggressive => "keepalived-aggressive",
        }
    }

    fn keepalived(self) -> Option<KeepalivedOptions> {
        let ms = match self {
            Variant::KeepalivedDefault => 1000,
            Variant::Keepalived50ms => 50,
            Variant::KeepalivedAggressive => 10,
            _ => return None,
        };
        Some(KeepalivedOptions {
            advert_int: Duration::from_millis(ms),
        })
    }

    fn failoverd(self) -> Option<DaemonOptions> {
        match self {
            // Nothing about timers: whatever the daemon's defaults are.
            Variant::FailoverdDefault => Some(DaemonOptions::default().default_timers().vrrp(None)),
            Variant::FailoverdAggressive => Some(
                DaemonOptions::default()
                    .default_timers()
                    .hello_dead(10, 30)
                    .vrrp(10),
            ),
            _ => None,
        }
    }

    /// The issue's targets: (takeover, gap), for failoverd's variants.
    fn targets(self) -> Option<(f64, f64)> {
        match self {
            Variant::FailoverdDefault => Some((200.0, 300.0)),
            Variant::FailoverdAggressive => Some((50.0, 100.0)),
            _ => None,
        }
    }

    fn describe(self) -> String {
        match self {
            Variant::FailoverdDefault => "failoverd, VRRP, default timers".into(),
            Variant::FailoverdAggressive => {
                "failoverd, VRRP, 10 ms adverts, hello 10 ms / dead 30 ms".into()
            }
            _ => format!(
                "keepalived VRRPv3 advert_int {} s + conntrackd FTFW",
                support::keepalived::advert_int_text(self.keepalived().unwrap().advert_int)
            ),
        }
    }
}

fn variants(args: &[VariantArg]) -> Vec<Variant> {
    let mut out = Vec::new();
    for arg in args {
        let add: Vec<Variant> = match arg {
            VariantArg::All => ALL.to_vec(),
            VariantArg::Keepalived => ALL[..3].to_vec(),
            VariantArg::Failoverd => ALL[3..].to_vec(),
            VariantArg::FailoverdDefault => vec![Variant::FailoverdDefault],
            VariantArg::FailoverdAggressive => vec![Variant::FailoverdAggressive],
            VariantArg::KeepalivedDefault => vec![Variant::KeepalivedDefault],
            VariantArg::Keepalived50ms => vec![Variant::Keepalived50ms],
            VariantArg::KeepalivedAggressive => vec![Variant::KeepalivedAggressive],
        };
        for v in add {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

const ECHO_PORT: u16 = 5000;
/// The false-takeover phase's idle + busy seconds at most (within the traffic threads' life).
const MAX_PHASE_SECS: u64 = 900;

fn main() {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("takeover_bench: must run as root (network namespaces, daemons inside them)");
        std::process::exit(2);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let chosen = variants(&args.variant);
    let mut missing = Vec::new();
    for tool in support::TOOLS {
        if !on_path(tool) {
            missing.push(tool.to_string());
        }
    }
    if chosen.iter().any(|v| v.keepalived().is_some()) {
        for tool in support::keepalived::TOOLS {
            if !on_path(tool) {
                missing.push(tool.to_string());
            }
        }
    }
    if args.idle_secs + args.busy_secs > MAX_PHASE_SECS {
        eprintln!(
            "takeover_bench: --idle-secs + --busy-secs must be at most {MAX_PHASE_SECS} (the \
             lab's traffic threads live at most {:?})",
            support::traffic::MAX_LIFETIME
        );
        std::process::exit(2);
    }
    if !missing.is_empty() {
        eprintln!("takeover_bench: missing tools: {}", missing.join(", "));
        std::process::exit(2);
    }
    if chosen.iter().any(|v| v.failoverd().is_some()) {
        // Panics with how to build it when there is none.
        let bin = support::daemon::failoverd_bin();
        eprintln!("failoverd: {}", bin.display());
    }
    // A panic in a run is reported as that run's failure; keep the default hook's message
    // short (the run's record carries it).
    let mut all_ok = true;
    let mut summaries = Vec::new();
    for &variant in &chosen {
        if stopped() {
            break;
        }
        eprintln!("== {} ({})", variant.name(), variant.describe());
        let mut runs = Vec::new();
        for run in 0..args.runs {
            if stopped() {
                break;
            }
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| one_run(&args, variant)));
            let record = match result {
                Ok(record) => record,
                Err(panic) => RunRecord::failed(panic_text(&panic)),
            };
            emit(
                &args,
                &record.json(variant, run),
                &record.line(variant, run),
            );
            runs.push(record);
        }
        if !runs.is_empty() {
            let (summary, line, ok) = summarize(variant, &runs);
            all_ok &= ok;
            emit(&args, &summary, &line);
            summaries.push(line);
        }
        if (args.idle_secs > 0 || args.busy_secs > 0) && !stopped() {
            let result =
                std::panic::catch_unwind(AssertUnwindSafe(|| false_takeovers(&args, variant)));
            let (value, line, ok) = match result {
                Ok(v) => v,
                Err(panic) => {
                    let why = panic_text(&panic);
                    (
                        json!({"variant": variant.name(), "phase": "false_takeovers",
                               "error": why}),
                        format!("{}: false-takeover phase failed: {why}", variant.name()),
                        false,
                    )
                }
            };
            all_ok &= ok;
            emit(&args, &value, &line);
            summaries.push(line);
        }
    }
    eprintln!("\n== summary");
    for line in &summaries {
        eprintln!("{line}");
    }
    if stopped() {
        eprintln!("interrupted");
        std::process::exit(130);
    }
    std::process::exit(if all_ok { 0 } else { 1 });
}

fn emit(args: &Args, value: &Value, line: &str) {
    if args.json {
        println!("{value}");
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "panic".to_string()
    };
    // The first lines say what; the rest (logs) went to stderr with the panic message.
    text.lines().take(3).collect::<Vec<_>>().join(" | ")
}

// ---------------------------------------------------------------------------------------------
// One run

#[derive(Debug, Default)]
struct RunRecord {
    /// Kill (links down) -> B holds both virtual addresses and is committed/active.
    takeover_ms: Option<f64>,
    /// Kill -> B holds both virtual addresses.
    vips_ms: Option<f64>,
    /// Kill -> B committed (keepalived: notify script's `conntrackd -c` done; failoverd: role
    /// active seen).
    committed_ms: Option<f64>,
    /// Longest time without an echo around the kill.
    gap_ms: Option<f64>,
    /// Kill -> first echo after it.
    resumed_ms: Option<f64>,
    survived: bool,
    /// A still had a virtual address on a link that is up.
    a_answers_vip: Option<bool>,
    /// A still lists a virtual address (on its downed links).
    a_lists_vip: Option<bool>,
    /// How long `ip -batch` took.
    links_down_ms: Option<f64>,
    /// Extra figures (e.g. B's takeover reason).
    notes: Vec<String>,
    error: Option<String>,
    prefix: String,
}

impl RunRecord {
    fn failed(why: String) -> RunRecord {
        RunRecord {
            error: Some(why),
            ..RunRecord::default()
        }
    }

    fn ok(&self) -> bool {
        self.error.is_none() && self.survived && self.a_answers_vip == Some(false)
    }

    fn json(&self, variant: Variant, run: usize) -> Value {
        json!({
            "variant": variant.name(), "run": run, "lab": self.prefix,
            "takeover_ms": self.takeover_ms, "vips_ms": self.vips_ms,
            "committed_ms": self.committed_ms, "gap_ms": self.gap_ms,
            "resumed_ms": self.resumed_ms, "survived": self.survived,
            "a_answers_vip": self.a_answers_vip, "a_lists_vip": self.a_lists_vip,
            "links_down_ms": self.links_down_ms, "notes": self.notes, "error": self.error,
        })
    }

    fn line(&self, variant: Variant, run: usize) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let mut line = format!(
            "{} run {run}: takeover {} ms (VIPs {} ms, committed {} ms), gap {} ms, resumed {} \
             ms, survived {}, A answers for a VIP: {}",
            variant.name(),
            f(self.takeover_ms),
            f(self.vips_ms),
            f(self.committed_ms),
            f(self.gap_ms),
            f(self.resumed_ms),
            self.survived,
            self.a_answers_vip.map_or("-".into(), |b| b.to_string()),
        );
        if !self.notes.is_empty() {
            line.push_str(&format!(" [{}]", self.notes.join("; ")));
        }
        if let Some(e) = &self.error {
            line.push_str(&format!(" ERROR: {e}"));
        }
        line
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn vips() -> Vec<IpAddr> {
    VIPS4.iter().map(|(a, _)| IpAddr::V4(*a)).collect()
}

/// The pair under test (the daemons boxed: a `Daemon` holds its own runtime).
enum Pair {
    Failoverd { a: Box<Daemon>, b: Box<Daemon> },
    Keepalived(Keepalived),
}

fn start_pair(lab: &Lab, variant: Variant) -> Pair {
    if let Some(options) = variant.keepalived() {
        let mut pair = Keepalived::start(lab, options);
        // Both start as backup: A becomes master after its master-down timer (3.x adverts).
        pair.wait_a_master(lab, Duration::from_secs(30));
        return Pair::Keepalived(pair);
    }
    let options = variant.failoverd().unwrap();
    let mut a = lab.spawn_daemon(Firewall::A, &options);
    let mut b = lab.spawn_daemon(Firewall::B, &options);
    a.wait_for("synchronization", Duration::from_secs(30), synchronized);
    b.wait_for("synchronization", Duration::from_secs(30), synchronized);
    wait_failoverd_a_master(lab, &a, &b, Duration::from_secs(30));
    Pair::Failoverd {
        a: Box::new(a),
        b: Box::new(b),
    }
}

/// The VRRP group state in a failoverd status (`takeover.group.state`).
fn group_state(status: &Value) -> Option<&str> {
    status.pointer("/takeover/group/state")?.as_str()
}

fn role(status: &Value) -> Option<&str> {
    status.get("role")?.as_str()
}

/// The sum of the instances' `became_master` counters.
fn became_master(status: &Value) -> u64 {
    status
        .pointer("/takeover/group/instances")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|i| i.get("became_master").and_then(Value::as_u64))
                .sum()
        })
        .unwrap_or(0)
}

fn wait_failoverd_a_master(lab: &Lab, a: &Daemon, b: &Daemon, within: Duration) {
    let started = Instant::now();
    loop {
        let (sa, sb) = (a.status_json(), b.status_json());
        let a_master = sa
            .as_ref()
            .is_some_and(|s| group_state(s) == Some("master") && role(s) == Some("active"));
        let b_backup = sb.as_ref().is_some_and(|s| {
            group_state(s).is_some_and(|g| g != "master") && role(s) == Some("standby")
        });
        if a_master && b_backup && lab.holds_vips(Firewall::A) && !lab.holds_any_vip(Firewall::B) {
            return;
        }
        if started.elapsed() > within {
            panic!(
                "failoverd: A not VRRP master with the VIPs / B not backup within {within:?}; \
                 A: {}; B: {}",
                sa.map_or("no status".into(), |s| s
                    .get("takeover")
                    .cloned()
                    .unwrap_or(Value::Null)
                    .to_string()),
                sb.map_or("no status".into(), |s| s
                    .get("takeover")
                    .cloned()
                    .unwrap_or(Value::Null)
                    .to_string()),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn one_run(args: &Args, variant: Variant) -> RunRecord {
    let mut lab = Lab::up_without_shared();
    if args.keep_files {
        lab.keep_files();
    }
    let mut record = RunRecord {
        prefix: lab.prefix().to_string(),
        ..RunRecord::default()
    };
    // Keep the files of a failed run: a guard that is disarmed at the end.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        measure(args, variant, &lab, &mut record);
    }));
    if let Err(panic) = result {
        record.error = Some(panic_text(&panic));
    }
    if !record.ok() {
        lab.keep_files();
    }
    record
}

fn measure(args: &Args, variant: Variant, lab: &Lab, record: &mut RunRecord) {
    let server = TcpEchoServer::start(lab, SocketAddr::new(SERVER4.into(), ECHO_PORT));
    let mut pair = start_pair(lab, variant);
    let watch = AddrWatch::start(lab, Firewall::B);
    let probe = Probe::tcp(
        lab,
        server.addr,
        Duration::from_millis(args.interval_ms.max(1)),
    );
    probe
        .wait_echo_from(20, Duration::from_secs(5))
        .expect("the stream works through A");
    let flow = probe.flow();
    match &pair {
        Pair::Keepalived(k) => {
            k.wait_cached(lab, Firewall::B, &flow, Duration::from_secs(10));
        }
        Pair::Failoverd { .. } => {
            support::wait_until(
                "B's kernel holds the stream's connection",
                Duration::from_secs(10),
                Duration::from_millis(20),
                || {
                    let on_b = lab.conntrack(Firewall::B);
                    if on_b
                        .iter()
                        .any(|e| e.orig == flow.orig && e.proto == flow.proto)
                    {
                        Ok(())
                    } else {
                        Err(format!("{} entries on B, not this one", on_b.len()))
                    }
                },
            );
        }
    }
    assert!(!stopped(), "interrupted");
    std::thread::sleep(Duration::from_millis(args.pre_kill_ms));
    if let Some(failure) = probe.failure() {
        panic!("the stream failed before the kill: {failure}");
    }
    let vip_list = vips();

    // The hard kill.
    let kill: HardKill = lab.hard_kill_all(Firewall::A);
    let t0 = kill.links_down;
    record.links_down_ms = Some(ms(kill.links_down - kill.started));

    // Committed/active on B.
    let committed: Result<Instant, String> = match &mut pair {
        Pair::Failoverd { b, .. } => wait_active(b, Duration::from_secs(30)),
        Pair::Keepalived(k) => {
            let since = kill.links_down_wall - (kill.links_down - kill.started);
            let started = Instant::now();
            loop {
                if let Some(at) = k.notified(Firewall::B, "committed", since) {
                    break Ok(kill.instant_of(at));
                }
                if started.elapsed() > Duration::from_secs(30) {
                    break Err(format!(
                        "B's notify script never committed within 30 s\n{}",
                        k.diagnostics()
                    ));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    };
    let vips_at = watch.wait_all_added(&vip_list, kill.started, Duration::from_secs(30));
    match &vips_at {
        Ok(at) => record.vips_ms = Some(ms(at.saturating_duration_since(t0))),
        Err(e) => record.notes.push(format!("VIPs on B: {e}")),
    }
    match &committed {
        Ok(at) => record.committed_ms = Some(ms(at.saturating_duration_since(t0))),
        Err(e) => record.notes.push(format!("commit on B: {e}")),
    }
    if let (Ok(v), Ok(c)) = (&vips_at, &committed) {
        record.takeover_ms = Some(ms((*v).max(*c).saturating_duration_since(t0)));
    }

    // The stream.
    let survival = probe.wait_survives(
        t0,
        Duration::from_secs(1),
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    match survival {
        Ok(resumed) => {
            record.survived = true;
            record.resumed_ms = Some(ms(resumed.saturating_duration_since(t0)));
            let (gap, _) = probe.longest_gap_at(
                t0 - Duration::from_millis(500),
                resumed + Duration::from_secs(1),
            );
            record.gap_ms = Some(ms(gap));
        }
        Err(why) => {
            record.survived = false;
            record.notes.push(format!("stream: {why}"));
            let (gap, _) = probe.longest_gap_at(t0 - Duration::from_millis(500), Instant::now());
            record.gap_ms = Some(ms(gap));
        }
    }

    // A answers for no virtual address (its links are down); it may still list them.
    let held = lab.addresses(Firewall::A);
    let up = lab.exec(Firewall::A, &["ip", "-o", "link", "show", "up"]);
    let up_links: Vec<&str> = up
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or(""))
        .collect();
    let lists: Vec<&(String, IpAddr, u8)> = held
        .iter()
        .filter(|(_, a, _)| vip_list.contains(a))
        .collect();
    record.a_lists_vip = Some(!lists.is_empty());
    record.a_answers_vip = Some(
        lists
            .iter()
            .any(|(dev, _, _)| up_links.contains(&dev.as_str())),
    );
    assert!(
        lab.holds_vips(Firewall::B),
        "B does not hold both virtual addresses at the end"
    );

    if let Pair::Failoverd { b, .. } = &pair
        && let Some(status) = b.status_json()
        && let Some(reason) = status
            .pointer("/takeover/group/reason")
            .and_then(Value::as_str)
    {
        record.notes.push(format!("B: {reason}"));
    }
    if let Err(e) = committed {
        panic!("{e}");
    }
    if let Err(e) = vips_at {
        panic!("{e}");
    }
    drop(probe);
    drop(watch);
    drop(pair);
    drop(server);
}

/// Polls `b`'s status every millisecond until its role is active; returns when that was seen.
fn wait_active(b: &mut Daemon, within: Duration) -> Result<Instant, String> {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < within {
        if let Some(status) = b.status_json() {
            if role(&status) == Some("active") {
                return Ok(Instant::now());
            }
            last = Some(status);
        }
        if let Some(exit) = b.exited() {
            return Err(format!(
                "B's failoverd exited ({exit}):\n{}",
                tail(&b.log(), 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(format!(
        "B not active within {within:?}; last status {}\n{}",
        last.map_or("none".into(), |s| s.to_string()),
        tail(&b.log(), 30)
    ))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Summaries

fn stats(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some((v[0], median, v[v.len() - 1]))
}

fn stats_json(values: &[f64]) -> Value {
    match stats(values) {
        Some((min, median, max)) => json!({"min": min, "median": median, "max": max,
                                           "n": values.len()}),
        None => Value::Null,
    }
}

fn stats_text(values: &[f64]) -> String {
    match stats(values) {
        Some((min, median, max)) => format!("{min:.1}/{median:.1}/{max:.1}"),
        None => "-".into(),
    }
}

/// (JSON, line, all runs fine and targets met).
fn summarize(variant: Variant, runs: &[RunRecord]) -> (Value, String, bool) {
    let takeover: Vec<f64> = runs.iter().filter_map(|r| r.takeover_ms).collect();
    let gap: Vec<f64> = runs.iter().filter_map(|r| r.gap_ms).collect();
    let vips: Vec<f64> = runs.iter().filter_map(|r| r.vips_ms).collect();
    let committed: Vec<f64> = runs.iter().filter_map(|r| r.committed_ms).collect();
    let survived = runs.iter().filter(|r| r.survived).count();
    let fine = runs.iter().filter(|r| r.ok()).count();
    let mut ok = fine == runs.len();
    let mut target_text = String::new();
    let mut target_json = Value::Null;
    if let Some((t_max, g_max)) = variant.targets() {
        let t_met = takeover.len() == runs.len() && takeover.iter().all(|&t| t <= t_max);
        let g_met = gap.len() == runs.len() && gap.iter().all(|&g| g <= g_max);
        ok &= t_met && g_met;
        target_text = format!(
            "; targets: takeover <= {t_max} ms {}, gap <= {g_max} ms {}",
            if t_met { "met" } else { "NOT met" },
            if g_met { "met" } else { "NOT met" }
        );
        target_json = json!({"takeover_ms": t_max, "takeover_met": t_met,
                             "gap_ms": g_max, "gap_met": g_met});
    }
    let value = json!({
        "variant": variant.name(), "summary": true, "description": variant.describe(),
        "runs": runs.len(), "survived": survived, "fine": fine,
        "takeover_ms": stats_json(&takeover), "gap_ms": stats_json(&gap),
        "vips_ms": stats_json(&vips), "committed_ms": stats_json(&committed),
        "targets": target_json,
    });
    let line = format!(
        "{} ({}): {} runs, {} survived, {} fine; takeover min/median/max {} ms, gap {} ms \
         (VIPs on B {} ms, committed {} ms){target_text}",
        variant.name(),
        variant.describe(),
        runs.len(),
        survived,
        fine,
        stats_text(&takeover),
        stats_text(&gap),
        stats_text(&vips),
        stats_text(&committed),
    );
    (value, line, ok)
}

// ---------------------------------------------------------------------------------------------
// False takeovers

/// Counts of transitions to master so far: (A, B).
fn masters(pair: &Pair) -> (u64, u64) {
    match pair {
        Pair::Keepalived(k) => (
            k.transitions(Firewall::A).0 as u64,
            k.transitions(Firewall::B).0 as u64,
        ),
        Pair::Failoverd { a, b } => {
            let count = |d: &Daemon, fw: Firewall| {
                let status = d
                    .status_json()
                    .unwrap_or_else(|| panic!("failoverd on {fw:?}: no status"));
                assert!(
                    status.pointer("/takeover/group/instances").is_some(),
                    "failoverd on {fw:?}: no takeover.group.instances in the status: {status}"
                );
                became_master(&status)
            };
            (count(a, Firewall::A), count(b, Firewall::B))
        }
    }
}

/// Whether A is master and B is not, right now; for failoverd from the status, for
/// keepalived from the addresses.
fn a_is_master(lab: &Lab, pair: &Pair) -> bool {
    match pair {
        Pair::Keepalived(_) => lab.holds_vips(Firewall::A) && !lab.holds_any_vip(Firewall::B),
        Pair::Failoverd { a, b } => {
            a.status_json().as_ref().and_then(role) == Some("active")
                && b.status_json().as_ref().and_then(role) == Some("standby")
        }
    }
}

/// Watches for `secs`, sampling every 100 ms; returns (samples where A was not the only
/// master, transitions to master on A and on B during the interval).
fn watch_phase(lab: &Lab, pair: &Pair, secs: u64) -> (u64, u64, u64) {
    let (a0, b0) = masters(pair);
    let started = Instant::now();
    let mut bad_samples = 0;
    while started.elapsed() < Duration::from_secs(secs) && !stopped() {
        if !a_is_master(lab, pair) {
            bad_samples += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (a1, b1) = masters(pair);
    (bad_samples, a1.saturating_sub(a0), b1.saturating_sub(b0))
}

/// CPU-bound processes (`sh -c 'while :; do :; done'`), killed by PID when dropped.
struct Load(Vec<Child>);

impl Load {
    fn start(n: usize) -> Load {
        Load(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("start a busy process")
                })
                .collect(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// (JSON, line, no false takeover).
fn false_takeovers(args: &Args, variant: Variant) -> (Value, String, bool) {
    let mut lab = Lab::up_without_shared();
    if args.keep_files {
        lab.keep_files();
    }
    let server = TcpEchoServer::start(&lab, SocketAddr::new(SERVER4.into(), ECHO_PORT));
    let pair = start_pair(&lab, variant);
    // A became master once on the way up, B never: if these counts do not say so, the counting
    // is broken and zero false takeovers would mean nothing.
    let at_start = masters(&pair);
    assert!(
        at_start.0 >= 1 && at_start.1 == 0,
        "transitions to master after start: A {}, B {} (expected A >= 1, B 0)",
        at_start.0,
        at_start.1
    );
    let (idle_bad, idle_a, idle_b) = watch_phase(&lab, &pair, args.idle_secs);
    let mut busy = (0, 0, 0);
    let mut stream_ok = None;
    let mut busy_gap = None;
    if args.busy_secs > 0 && !stopped() {
        let probe = Probe::tcp(
            &lab,
            server.addr,
            Duration::from_millis(args.interval_ms.max(1)),
        );
        let from = Instant::now();
        let load = Load::start(args.busy_procs);
        busy = watch_phase(&lab, &pair, args.busy_secs);
        drop(load);
        let to = Instant::now();
        stream_ok = Some(probe.failure().is_none());
        busy_gap = Some(ms(probe.longest_gap_at(from, to).0));
    }
    let a_master_at_end = a_is_master(&lab, &pair);
    let false_count = idle_b + busy.2 + idle_a + busy.1;
    let ok = false_count == 0 && a_master_at_end && idle_bad + busy.0 == 0;
    if !ok {
        lab.keep_files();
    }
    let value = json!({
        "variant": variant.name(), "phase": "false_takeovers",
        "idle_secs": args.idle_secs, "busy_secs": args.busy_secs, "busy_procs": args.busy_procs,
        "idle": {"became_master_a": idle_a, "became_master_b": idle_b,
                 "samples_a_not_sole_master": idle_bad},
        "busy": {"became_master_a": busy.1, "became_master_b": busy.2,
                 "samples_a_not_sole_master": busy.0, "stream_ok": stream_ok,
                 "stream_longest_gap_ms": busy_gap},
        "a_master_at_end": a_master_at_end, "lab": lab.prefix(),
        "became_master_at_start": {"a": at_start.0, "b": at_start.1},
    });
    let line = format!(
        "{}: false takeovers: idle {} s: B became master {idle_b}x, A {idle_a}x, {idle_bad} \
         samples with A not sole master; busy {} s ({} CPU hogs + 1 ms stream): B {}x, A {}x, \
         {} samples; stream ok: {}, longest gap {} ms; A master at the end: {a_master_at_end}",
        variant.name(),
        args.idle_secs,
        args.busy_secs,
        args.busy_procs,
        busy.2,
        busy.1,
        busy.0,
        stream_ok.map_or("-".into(), |b| b.to_string()),
        busy_gap.map_or("-".into(), |g| format!("{g:.1}")),
    );
    drop(pair);
    drop(server);
    (value, line, ok)
}
