//! The incumbent in the lab: keepalived (VRRPv3, instances `lan` and `wan` in one sync group)
//! and conntrackd (FTFW over the failover link `fo`, UDP unicast) in both firewalls, configured
//! from the templates in `lab/keepalived/`. The sync group's notify script
//! (`lab/keepalived/notify.sh`, conntrackd's primary-backup.sh sequence) commits conntrackd's
//! external cache on becoming master and stamps every step into a file, so that the benchmark
//! can tell when the commit finished.
//!
//! Every process is started by this module (`ip netns exec`, which executes the program in
//! place: the child's PID is the daemon's), killed by PID when the guard drops, and logs into
//! the lab's directory (`<lab files>/<fw>-keepalived/`). Sockets, lock and PID files are there
//! too, so labs running side by side never share them.

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::conntrack::Flow;
use crate::lab::{Firewall, Lab};
use crate::tools;

/// The programs this module runs (besides the lab's; a part of the tool table, [`tools`]).
pub const TOOLS: &[&str] = &["keepalived", "conntrackd"];

/// The lab's templates and notify script.
pub fn template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/keepalived")
}

/// How the pair is configured.
#[derive(Debug, Clone, Copy)]
pub struct KeepalivedOptions {
    /// `advert_int` of both instances (VRRPv3: centiseconds, so a multiple of 10 ms; keepalived
    /// takes fractional seconds). keepalived's default is 1 s.
    pub advert_int: Duration,
}

impl Default for KeepalivedOptions {
    fn default() -> Self {
        KeepalivedOptions {
            advert_int: Duration::from_secs(1),
        }
    }
}

/// `advert_int` as keepalived reads it: seconds, with up to two decimals (`1`, `0.05`).
pub fn advert_int_text(interval: Duration) -> String {
    let centis = (interval.as_millis() / 10).max(1);
    if centis.is_multiple_of(100) {
        format!("{}", centis / 100)
    } else {
        format!("{}.{:02}", centis / 100, centis % 100)
            .trim_end_matches('0')
            .to_string()
    }
}

/// A line of a notify log: the step and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyEvent {
    /// The step: `primary-start`, `committed`, `primary-done`, ..., `error <what>`.
    pub what: String,
    /// The wall-clock time the script stamped (`CLOCK_REALTIME`, to the nanosecond).
    pub at: SystemTime,
}

struct Node {
    fw: Firewall,
    ns: String,
    dir: PathBuf,
    conntrackd: Option<Child>,
    keepalived: Option<Child>,
}

/// keepalived + conntrackd in A (priority 200) and B (priority 100); both stopped (by PID)
/// when dropped.
pub struct Keepalived {
    nodes: Vec<Node>,
    options: KeepalivedOptions,
}

impl Keepalived {
    /// Starts conntrackd in A and B, waits until both answer on their UNIX sockets, then
    /// keepalived in A and B (both in state BACKUP; A wins the election on priority once its
    /// master-down timer expires). Use a lab without shared addresses
    /// ([`Lab::up_without_shared`]).
    pub fn start(lab: &Lab, options: KeepalivedOptions) -> Keepalived {
        let templates = template_dir();
        let read = |name: &str| {
            std::fs::read_to_string(templates.join(name))
                .unwrap_or_else(|e| panic!("{}: {e}", templates.join(name).display()))
        };
        let (keepalived_in, conntrackd_in) =
            (read("keepalived.conf.in"), read("conntrackd.conf.in"));
        let notify = templates
            .join("notify.sh")
            .canonicalize()
            .expect("lab/keepalived/notify.sh");
        let mut pair = Keepalived {
            nodes: Vec::new(),
            options,
        };
        for fw in [Firewall::A, Firewall::B] {
            let dir = lab.files_dir().join(format!("{}-keepalived", fw.name()));
            std::fs::create_dir_all(&dir).unwrap();
            let (local, peer) = match fw {
                Firewall::A => ("10.0.254.1", "10.0.254.2"),
                Firewall::B => ("10.0.254.2", "10.0.254.1"),
            };
            let conntrackd_conf = dir.join("conntrackd.conf");
            std::fs::write(
                &conntrackd_conf,
                conntrackd_in
                    .replace("@FO_LOCAL@", local)
                    .replace("@FO_PEER@", peer)
                    .replace("@DIR@", &dir.display().to_string()),
            )
            .unwrap();
            let priority = match fw {
                Firewall::A => 200,
                Firewall::B => 100,
            };
            std::fs::write(
                dir.join("keepalived.conf"),
                keepalived_in
                    .replace("@NODE@", fw.name())
                    .replace("@PRIORITY@", &priority.to_string())
                    .replace("@ADVERT_INT@", &advert_int_text(options.advert_int))
                    .replace(
                        "@NOTIFY@",
                        &format!(
                            "{} {} {}",
                            notify.display(),
                            conntrackd_conf.display(),
                            dir.join("notify.log").display()
                        ),
                    ),
            )
            .unwrap();
            pair.nodes.push(Node {
                fw,
                ns: lab.ns(fw),
                dir,
                conntrackd: None,
                keepalived: None,
            });
        }
        for node in &mut pair.nodes {
            node.conntrackd = Some(spawn(
                &node.ns,
                &[
                    "conntrackd",
                    "-C",
                    &node.dir.join("conntrackd.conf").display().to_string(),
                ],
                &node.dir.join("conntrackd.out"),
            ));
        }
        for fw in [Firewall::A, Firewall::B] {
            let started = Instant::now();
            loop {
                let out = pair.conntrackd(lab, fw, &["-s"]);
                if out.status.success() {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "conntrackd in {} does not answer: {}\n{}",
                    lab.ns(fw),
                    String::from_utf8_lossy(&out.stderr),
                    pair.tail(fw, "conntrackd.out", 20)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for node in &mut pair.nodes {
            let d = |name: &str| node.dir.join(name).display().to_string();
            node.keepalived = Some(spawn(
                &node.ns,
                &[
                    "keepalived",
                    "--dont-fork",
                    "--log-console",
                    "--log-detail",
                    "--no-syslog",
                    "--vrrp",
                    "--use-file",
                    &d("keepalived.conf"),
                    "--pid",
                    &d("keepalived.pid"),
                    "--vrrp_pid",
                    &d("vrrp.pid"),
                    "--checkers_pid",
                    &d("checkers.pid"),
                ],
                &node.dir.join("keepalived.log"),
            ));
        }
        pair
    }

    /// The options both instances were started with.
    pub fn options(&self) -> KeepalivedOptions {
        self.options
    }

    fn node(&self, fw: Firewall) -> &Node {
        self.nodes.iter().find(|n| n.fw == fw).unwrap()
    }

    /// `fw`'s directory: configurations, logs, sockets, PID files.
    pub fn dir(&self, fw: Firewall) -> &Path {
        &self.node(fw).dir
    }

    /// `conntrackd -C <fw's conf> ARGS` inside `fw`'s namespace.
    pub fn conntrackd(&self, lab: &Lab, fw: Firewall, args: &[&str]) -> Output {
        let conf = self.dir(fw).join("conntrackd.conf").display().to_string();
        let mut all = vec!["conntrackd", "-C", &conf];
        all.extend_from_slice(args);
        lab.try_exec(fw, &all)
    }

    /// conntrackd's external cache on `fw` (`-e`): the peer's entries, as text.
    pub fn external_cache(&self, lab: &Lab, fw: Firewall) -> String {
        String::from_utf8_lossy(&self.conntrackd(lab, fw, &["-e"]).stdout).into_owned()
    }

    /// Whether `fw`'s external cache holds `flow`.
    pub fn has_cached(&self, lab: &Lab, fw: Firewall, flow: &Flow) -> bool {
        let needle = format!(
            "src={} dst={} sport={} dport={}",
            flow.orig.src, flow.orig.dst, flow.orig.sport, flow.orig.dport
        );
        self.external_cache(lab, fw).contains(&needle)
    }

    /// The steps `fw`'s notify script stamped, in order.
    pub fn notify_events(&self, fw: Firewall) -> Vec<NotifyEvent> {
        let text = std::fs::read_to_string(self.dir(fw).join("notify.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (what, ns) = line.rsplit_once(' ')?;
                let ns: u64 = ns.parse().ok()?;
                Some(NotifyEvent {
                    what: what.to_string(),
                    at: UNIX_EPOCH + Duration::from_nanos(ns),
                })
            })
            .collect()
    }

    /// When `fw`'s notify script first stamped `what` at or after `since`.
    pub fn notified(&self, fw: Firewall, what: &str, since: SystemTime) -> Option<SystemTime> {
        self.notify_events(fw)
            .into_iter()
            .find(|e| e.what == what && e.at >= since)
            .map(|e| e.at)
    }

    /// keepalived's log of `fw` (console output).
    pub fn log(&self, fw: Firewall) -> String {
        std::fs::read_to_string(self.dir(fw).join("keepalived.log")).unwrap_or_default()
    }

    /// The last `lines` lines of one of `fw`'s files.
    pub fn tail(&self, fw: Firewall, file: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir(fw).join(file)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How often `fw`'s sync group entered each state so far, from its log: (master, backup,
    /// fault) entries of instance `lan` (the group moves together).
    pub fn transitions(&self, fw: Firewall) -> (usize, usize, usize) {
        let log = self.log(fw);
        let count = |state: &str| {
            log.lines()
                .filter(|l| l.contains(&format!("(lan) Entering {state} STATE")))
                .count()
        };
        (count("MASTER"), count("BACKUP"), count("FAULT"))
    }

    /// The PIDs of `fw`'s keepalived (parent) and conntrackd, as started.
    pub fn pids(&self, fw: Firewall) -> Vec<u32> {
        let node = self.node(fw);
        [&node.keepalived, &node.conntrackd]
            .into_iter()
            .flatten()
            .map(Child::id)
            .collect()
    }

    /// Waits until A is master with everything done (holds both virtual addresses, its notify
    /// script finished `primary`) and B is backup (holds neither, its notify script finished
    /// `backup`); panics with the logs when not within `within`.
    pub fn wait_a_master(&mut self, lab: &Lab, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            self.check_running(lab);
            let done = |fw, what: &str| self.notify_events(fw).iter().any(|e| e.what == what);
            let a = lab.holds_vips(Firewall::A) && done(Firewall::A, "primary-done");
            let b = !lab.holds_any_vip(Firewall::B) && done(Firewall::B, "backup-done");
            if a && b {
                return started.elapsed();
            }
            if started.elapsed() > within {
                panic!(
                    "keepalived: A not master / B not backup within {within:?} (A holds VIPs: \
                     {}, B holds one: {})\n{}",
                    lab.holds_vips(Firewall::A),
                    lab.holds_any_vip(Firewall::B),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `fw`'s external cache holds `flow` (conntrackd replicated it).
    pub fn wait_cached(&self, lab: &Lab, fw: Firewall, flow: &Flow, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.has_cached(lab, fw, flow) {
                return started.elapsed();
            }
            if started.elapsed() > within {
                panic!(
                    "conntrackd on {fw:?}: {flow} not in the external cache within {within:?}; \
                     cache:\n{}\n{}",
                    self.external_cache(lab, fw),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics (with the logs) if a daemon this guard started has exited.
    pub fn check_running(&mut self, lab: &Lab) {
        let mut dead = Vec::new();
        for node in &mut self.nodes {
            for (name, child) in [
                ("conntrackd", &mut node.conntrackd),
                ("keepalived", &mut node.keepalived),
            ] {
                if let Some(c) = child
                    && let Ok(Some(status)) = c.try_wait()
                {
                    dead.push(format!("{name} in {} exited ({status})", lab.ns(node.fw)));
                }
            }
        }
        if !dead.is_empty() {
            panic!("{}\n{}", dead.join("; "), self.diagnostics());
        }
    }

    /// The tails of every log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            for file in ["keepalived.log", "conntrackd.out", "notify.log"] {
                text.push_str(&format!(
                    "---- {} {file} ({}):\n{}\n",
                    node.fw.name(),
                    node.dir.display(),
                    self.tail(node.fw, file, 25)
                ));
            }
        }
        text
    }

    /// The virtual addresses as `IpAddr`s.
    pub fn vips() -> Vec<IpAddr> {
        crate::lab::VIPS4
            .iter()
            .map(|(a, _)| IpAddr::V4(*a))
            .collect()
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            // keepalived: TERM to the parent, which stops its VRRP child and removes its
            // addresses; a bounded wait, then KILL of both (the child's PID from its PID file,
            // only while it is still a process of this lab's namespace).
            let vrrp_child = std::fs::read_to_string(node.dir.join("vrrp.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(child) = &mut node.keepalived {
                signal(child.id(), libc::SIGTERM);
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(2) {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if let Some(pid) = vrrp_child
                && ns_pids(&node.ns).contains(&pid)
            {
                signal(pid, libc::SIGKILL);
            }
            for child in [node.keepalived.take(), node.conntrackd.take()]
                .into_iter()
                .flatten()
            {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Starts `args` inside namespace `ns` (`ip netns exec`), output appended to `log`.
pub fn spawn(ns: &str, args: &[&str], log: &Path) -> Child {
    let file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let (program, args) = args.split_first().expect("a program to run");
    tools::netns_exec(ns, program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} {program} {args:?}: {e}"))
}

fn ns_pids(ns: &str) -> Vec<u32> {
    tools::command("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill(2) with a positive PID has no memory effects.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}
