//! `failoverd` processes inside the lab's firewall namespaces, driven through their control
//! sockets (the same requests and JSON as `failoverctl --json`).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use failoverd_control::protocol::{FailoverState, Request, Status};
use failoverd_control::transport;
use serde_json::Value;

use crate::config::ConfigFile;
use crate::lab::{Firewall, LINK_SUBNET, Lab};
use crate::tools;

/// What a daemon's configuration file says beyond the lab's fixed parts (names, keys, link
/// addresses, control socket).
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// `node.priority`; default: A 200 (preferred as active), B 100.
    pub priority: Option<u8>,
    /// Lines added to `[pair]` (after `id`), e.g. `backup = "asymmetric"`.
    pub pair: Vec<String>,
    /// Lines added to `[link]`, e.g. `heartbeat_listen = "10.0.1.2:7600"`.
    pub link: Vec<String>,
    /// Lines added to `[sessions]` (after `backend`).
    pub sessions: Vec<String>,
    /// The lines of `[sessions.conntrack]`; default: exclude the failover link's subnet.
    pub conntrack: Vec<String>,
    /// `log.level`.
    pub log_level: String,
    /// The lines of `[timers]`; default `silence_ms = 300` (a short hold-down after start, so
    /// that tests do not wait); empty: no `[timers]` section, the daemon's defaults.
    pub timers: Vec<String>,
    /// VRRP takeover (`[takeover] mode = "vrrp"` and the lab's two instances), see
    /// [`DaemonOptions::vrrp`].
    pub vrrp: Option<VrrpOptions>,
    /// Raw TOML appended to the file as is (whole sections), see [`DaemonOptions::extra`].
    pub extra: Vec<String>,
}

/// The `[takeover]`/`[vrrp]` part of a lab daemon's configuration (docs/TAKEOVER.md): mode
/// `vrrp`, instance `lan` (interface `lan`, VRID 51, 10.0.1.1/24) and `wan` (interface `wan`,
/// VRID 52, 10.0.2.1/24); priorities are `node.priority`'s.
#[derive(Debug, Clone, Default)]
pub struct VrrpOptions {
    /// `vrrp.advert_interval_ms`; `None`: not written (the daemon's default).
    pub advert_interval_ms: Option<u32>,
    /// More lines of `[vrrp]`, e.g. `preempt_delay_ms = 0`.
    pub lines: Vec<String>,
}

/// The lab's VRRP instances: (name, interface, VRID, addresses).
pub const LAB_VRRP_INSTANCES: [(&str, &str, u8, &str); 2] = [
    ("lan", "lan", 51, "10.0.1.1/24"),
    ("wan", "wan", 52, "10.0.2.1/24"),
];

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            priority: None,
            pair: Vec::new(),
            link: Vec::new(),
            sessions: Vec::new(),
            conntrack: vec![format!("exclude = [\"{LINK_SUBNET}\"]")],
            log_level: "info".to_string(),
            timers: vec!["silence_ms = 300".to_string()],
            vrrp: None,
            extra: Vec::new(),
        }
    }
}

impl DaemonOptions {
    /// Adds a line to `[pair]`, e.g. `backup = "asymmetric"`.
    pub fn pair(mut self, line: &str) -> Self {
        self.pair.push(line.to_string());
        self
    }

    /// Adds a line to `[link]`, e.g. `heartbeat_listen = "10.0.1.2:7600"`.
    pub fn link(mut self, line: &str) -> Self {
        self.link.push(line.to_string());
        self
    }

    /// Adds a line to `[sessions]`, e.g. `digest_interval_ms = 1000`.
    pub fn sessions(mut self, line: &str) -> Self {
        self.sessions.push(line.to_string());
        self
    }

    /// Adds a line to `[sessions.conntrack]`, e.g. `protocols = ["tcp", "udp"]`.
    pub fn conntrack(mut self, line: &str) -> Self {
        self.conntrack.push(line.to_string());
        self
    }

    /// VRRP decides the role (`[takeover] mode = "vrrp"`), with the lab's instances `lan` and
    /// `wan` (see [`VrrpOptions`]); `advert_interval_ms`: `Some(ms)` written as
    /// `vrrp.advert_interval_ms`, `None` left to the daemon's default. Start such daemons in
    /// a lab built by [`crate::Lab::up_without_shared`].
    pub fn vrrp(mut self, advert_interval_ms: impl Into<Option<u32>>) -> Self {
        self.vrrp = Some(VrrpOptions {
            advert_interval_ms: advert_interval_ms.into(),
            lines: Vec::new(),
        });
        self
    }

    /// Adds a line to `[vrrp]` (after [`DaemonOptions::vrrp`], which it needs).
    pub fn vrrp_line(mut self, line: &str) -> Self {
        self.vrrp
            .as_mut()
            .expect("DaemonOptions::vrrp before vrrp_line")
            .lines
            .push(line.to_string());
        self
    }

    /// Sets `timers.hello_interval_ms` and `timers.dead_interval_ms` (keeps the other lines of
    /// `[timers]`).
    pub fn hello_dead(mut self, hello_ms: u32, dead_ms: u32) -> Self {
        self.timers
            .retain(|l| !l.starts_with("hello_interval_ms") && !l.starts_with("dead_interval_ms"));
        self.timers.push(format!("hello_interval_ms = {hello_ms}"));
        self.timers.push(format!("dead_interval_ms = {dead_ms}"));
        self
    }

    /// Adds a line to `[timers]`, e.g. `silence_ms = 100`.
    pub fn timer(mut self, line: &str) -> Self {
        self.timers.push(line.to_string());
        self
    }

    /// No `[timers]` section at all: every timer is the daemon's default.
    pub fn default_timers(mut self) -> Self {
        self.timers.clear();
        self
    }

    /// Appends raw TOML to the file (whole sections, e.g. `"[hooks]\non_active = [...]"`).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push(toml.to_string());
        self
    }

    /// `fw`'s `node.priority`: the one set, else A 200, B 100.
    pub fn priority_of(&self, fw: Firewall) -> u8 {
        self.priority.unwrap_or(match fw {
            Firewall::A => 200,
            Firewall::B => 100,
        })
    }

    /// The configuration file of `fw`'s daemon, whose files are in `dir`.
    pub fn render(&self, fw: Firewall, peer_key: &str, dir: &Path) -> String {
        let mut file = ConfigFile::new(
            fw.name(),
            self.priority_of(fw),
            fw.link_addr(),
            fw.other().link_addr(),
            format!("\"{peer_key}\""),
            dir.join("failoverd.sock"),
        );
        file.pair = self.pair.clone();
        file.link = [&["reconnect_max_ms = 500".to_string()], &self.link[..]].concat();
        file.timers = self.timers.clone();
        file.backend = Some("conntrack".to_string());
        file.sessions = self.sessions.clone();
        file.conntrack = self.conntrack.clone();
        file.log_level = self.log_level.clone();
        if let Some(vrrp) = &self.vrrp {
            let mut text = String::from("[takeover]\nmode = \"vrrp\"\n\n[vrrp]\n");
            if let Some(ms) = vrrp.advert_interval_ms {
                text.push_str(&format!("advert_interval_ms = {ms}\n"));
            }
            for line in &vrrp.lines {
                text.push_str(line);
                text.push('\n');
            }
            for (name, interface, vrid, address) in LAB_VRRP_INSTANCES {
                text.push_str(&format!(
                    "\n[[vrrp.instance]]\nname = \"{name}\"\ninterface = \"{interface}\"\n\
                     vrid = {vrid}\naddresses = [\"{address}\"]\n"
                ));
            }
            file.extra.push(text);
        }
        file.extra.extend(self.extra.iter().cloned());
        file.render("crates/lab/src/daemon.rs")
    }
}

impl Lab {
    /// Starts `failoverd` inside `fw`'s namespace (`ip netns exec`), with a configuration
    /// written from `options`; the link listens on `fw`'s failover-link address and dials the
    /// other firewall's. Killed when the returned guard is dropped.
    pub fn spawn_daemon(&self, fw: Firewall, options: &DaemonOptions) -> Daemon {
        let dir = self.daemon_dir(fw);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("node.pem");
        if !key.exists() {
            std::fs::write(&key, self.identity(fw).to_pem()).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let peer_key = self.identity(fw.other()).fingerprint();
        let config = options.render(fw, &peer_key.to_string(), &dir);
        Daemon::spawn(&self.ns(fw), fw, &dir, &config)
    }
}

/// The `failoverd` binary: `$FAILOVERD_BIN`, else `failoverd` in the running program's directory
/// or the one above it (a benchmark runs from `target/<profile>/`, a test from
/// `target/<profile>/deps/`; Cargo builds the daemon into `target/<profile>/` for the daemon's
/// own tests).
pub fn failoverd_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FAILOVERD_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the running program's path");
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("failoverd");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "no failoverd binary near {} (build it: cargo build --release -p failoverd --bins, or \
         set FAILOVERD_BIN)",
        exe.display()
    );
}

/// A `failoverd` process in a namespace; killed (SIGKILL, by PID) and reaped when dropped.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- {}: last lines of its log\n{}",
                self.name,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

impl Daemon {
    /// Writes `config` to `dir/failoverd.toml` and runs `failoverd --config` on it inside
    /// namespace `ns` (`ip netns exec` executes the daemon in place: the child's PID is the
    /// daemon's). Its standard error goes to `dir/failoverd.log`, appended across restarts.
    pub fn spawn(ns: &str, fw: Firewall, dir: &Path, config: &str) -> Daemon {
        let path = dir.join("failoverd.toml");
        std::fs::write(&path, config).unwrap();
        let socket = dir.join("failoverd.sock");
        let _ = std::fs::remove_file(&socket);
        let log = dir.join("failoverd.log");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writeln!(file, "---- start in {ns}").unwrap();
        let child = tools::command("ip")
            .args(["netns", "exec", ns])
            .arg(failoverd_bin())
            .arg("--config")
            .arg(&path)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start failoverd");
        Daemon {
            name: format!("failoverd {} ({ns})", fw.name().to_uppercase()),
            child: Some(child),
            socket,
            log,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// The daemon's PID (`ip netns exec` runs it in place); `None` once killed or seen exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap; nothing if it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Its standard error so far, across restarts; empty if the log cannot be read.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `request` on the control socket and returns the response's `data`; an error after
    /// 5 s without an answer.
    pub fn call(&self, request: Request) -> Result<Value, String> {
        self.runtime
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    transport::request(&self.socket, &request),
                )
                .await
            })
            .map_err(|_| "no answer within 5 s".to_string())?
            .map_err(|e| e.to_string())
    }

    /// The status as the daemon sent it (JSON), with parts the typed [`Status`] may not model
    /// yet (e.g. `takeover`).
    pub fn status_json(&self) -> Option<Value> {
        self.call(Request::Status).ok()
    }

    /// The status; `None` when the daemon does not answer. Panics if it is not a [`Status`].
    pub fn status(&self) -> Option<Status> {
        self.call(Request::Status)
            .ok()
            .map(|v| serde_json::from_value(v).expect("a Status"))
    }

    /// Polls the status until `done` holds, for at most `within`; panics (with the log) when
    /// the daemon exits or the time is up.
    pub fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&Status) -> bool,
    ) -> Status {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.exited() {
                self.child = None;
                panic!(
                    "{}: exited ({exit}) while waiting for {what}\nlog:\n{}",
                    self.name,
                    self.log()
                );
            }
            let status = self.status();
            if let Some(status) = &status
                && done(status)
            {
                return status.clone();
            }
            if started.elapsed() > within {
                panic!(
                    "{}: {what} did not happen within {within:?}; last status {status:?}\nlog:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until the daemon is up: it has answered a status request.
    pub fn wait_running(&mut self, within: Duration) -> Status {
        self.wait_for("answering on its control socket", within, |_| true)
    }
}

/// In Synchronization and ready to take over (holds the peer's sessions).
pub fn synchronized(status: &Status) -> bool {
    status.state == FailoverState::Synchronization && status.ready
}

/// Every local change sent and acknowledged.
pub fn quiescent(status: &Status) -> bool {
    synchronized(status)
        && status.sessions.pending_changes == 0
        && status.sessions.in_flight_batches == 0
}

/// Waits until both daemons are synchronized.
pub fn wait_synchronized(a: &mut Daemon, b: &mut Daemon, within: Duration) {
    a.wait_for("synchronization", within, synchronized);
    b.wait_for("synchronization", within, synchronized);
}

/// Counters that count replicated records: if the standby sent back what it installed, or the
/// two nodes kept bouncing changes, these would keep growing without traffic.
pub const REPLICATION_COUNTERS: &[&str] = &[
    "batches_sent",
    "batches_received",
    "records_sent",
    "records_received",
    "records_applied",
    "retransmits",
    "bulk_syncs_sent",
    "bulk_syncs_received",
    "changes_lost",
    "apply_failures",
];

/// The [`REPLICATION_COUNTERS`] of a status (0 for a counter it does not report).
pub fn replication_counters(status: &Status) -> Vec<(&'static str, u64)> {
    REPLICATION_COUNTERS
        .iter()
        .map(|&name| (name, status.counters.get(name).copied().unwrap_or(0)))
        .collect()
}
