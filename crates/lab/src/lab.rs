//! The lab of `lab/lab.sh` as a guard: built by [`Lab::up`], torn down on drop (also when a test
//! panics).

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use failoverd_link::Identity;
use failoverd_wire::SessionRecord;

use crate::conntrack::{self, Entry};
use crate::netns;
use crate::tables;
use crate::tools;

/// The client's IPv4 address (LAN).
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
/// The client's IPv6 address (LAN).
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x10);
/// The server's IPv4 address (WAN). The server has no route to the LAN.
pub const SERVER4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// The server's IPv6 address (WAN), with no route to the LAN either.
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x100);
/// The shared IPv4 SNAT address (WAN), held by the active firewall.
pub const SNAT4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
/// The shared IPv6 SNAT address (WAN), held by the active firewall.
pub const SNAT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
/// The conntrack mark the lab ruleset sets on new connections from the LAN.
pub const LAB_MARK: u32 = 0x2a;
/// The failover link's subnet, which the daemons are told to leave alone.
pub const LINK_SUBNET: &str = "10.0.254.0/30";
/// The virtual gateway (on the firewalls' `lan`).
pub const GATEWAY4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
/// The IPv4 virtual addresses a VRRP speaker moves in the lab: the gateway and the SNAT
/// address, each a /24 on its interface.
pub const VIPS4: [(Ipv4Addr, &str); 2] = [(GATEWAY4, "lan"), (SNAT4, "wan")];
/// Every link of a firewall (what [`Lab::hard_kill`] takes down).
pub const FIREWALL_LINKS: [&str; 3] = ["lan", "wan", "fo"];

/// The client's address in `family`'s.
pub fn client(v6: bool) -> IpAddr {
    if v6 { CLIENT6.into() } else { CLIENT4.into() }
}

/// The server's IPv6 address if `v6`, else its IPv4 one.
pub fn server(v6: bool) -> IpAddr {
    if v6 { SERVER6.into() } else { SERVER4.into() }
}

/// The shared SNAT address of IPv6 if `v6`, else of IPv4.
pub fn snat(v6: bool) -> IpAddr {
    if v6 { SNAT6.into() } else { SNAT4.into() }
}

/// One of the two firewalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    /// Namespace `<prefix>-a`, failover-link address 10.0.254.1.
    A,
    /// Namespace `<prefix>-b`, failover-link address 10.0.254.2.
    B,
}

impl Firewall {
    /// Its lower-case letter, as `lab.sh` and namespace names spell it: `a` or `b`.
    pub fn name(self) -> &'static str {
        match self {
            Firewall::A => "a",
            Firewall::B => "b",
        }
    }

    /// Its peer.
    pub fn other(self) -> Firewall {
        match self {
            Firewall::A => Firewall::B,
            Firewall::B => Firewall::A,
        }
    }

    /// Its failover-link address (the `fo` veth), where failoverd listens.
    pub fn link_addr(self) -> SocketAddr {
        match self {
            Firewall::A => "10.0.254.1:7500".parse().unwrap(),
            Firewall::B => "10.0.254.2:7500".parse().unwrap(),
        }
    }

    fn index(self) -> usize {
        match self {
            Firewall::A => 0,
            Firewall::B => 1,
        }
    }
}

/// A namespace of the lab (the bridge namespaces are left out: nothing runs there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    /// The client's (`<prefix>-client`), on the LAN behind the firewalls.
    Client,
    /// Firewall A's (`<prefix>-a`).
    A,
    /// Firewall B's (`<prefix>-b`).
    B,
    /// The server's (`<prefix>-server`), on the WAN.
    Server,
}

impl From<Firewall> for Ns {
    fn from(fw: Firewall) -> Ns {
        match fw {
            Firewall::A => Ns::A,
            Firewall::B => Ns::B,
        }
    }
}

impl Ns {
    fn suffix(self) -> &'static str {
        match self {
            Ns::Client => "client",
            Ns::A => "a",
            Ns::B => "b",
            Ns::Server => "server",
        }
    }
}

/// `lab/lab.sh` in this repository.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/lab.sh")
}

/// A lab, up; `lab.sh down` when dropped. Daemon files (keys, configs, sockets, logs) live in
/// a temporary directory owned by the lab; each firewall's key is made once, so a daemon
/// restarted with [`Lab::spawn_daemon`] has the same identity.
pub struct Lab {
    prefix: String,
    /// `None` only while dropping.
    files: Option<tempfile::TempDir>,
    /// Keep the files (logs, configurations) when the lab is dropped.
    keep_files: bool,
    identities: [Identity; 2],
}

/// How [`Lab::up_with`] builds the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabOptions {
    /// A holds the shared addresses (virtual gateway, SNAT address) after `up`; when false,
    /// neither firewall does (`lab.sh up --no-shared`): a VRRP speaker adds them.
    pub shared_on_a: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions { shared_on_a: true }
    }
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Builds a lab with a prefix unique to this process and lab: `fo<pid>x<n>`; A holds the
    /// shared addresses.
    pub fn up() -> Lab {
        Lab::up_with(LabOptions::default())
    }

    /// Builds a lab whose shared addresses are on neither firewall, for a VRRP speaker
    /// (failoverd's or keepalived) to add.
    pub fn up_without_shared() -> Lab {
        Lab::up_with(LabOptions { shared_on_a: false })
    }

    /// Builds a lab as `options` say, with a prefix unique to this process and lab (see
    /// [`Lab::up`]); panics if `lab.sh up` fails. The process's first lab first removes those
    /// that dead test processes left behind.
    pub fn up_with(options: LabOptions) -> Lab {
        static STALE: Once = Once::new();
        STALE.call_once(remove_stale_labs);
        let prefix = format!(
            "fo{}x{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let mut args = vec!["up"];
        if !options.shared_on_a {
            args.push("--no-shared");
        }
        args.push(&prefix);
        let out = lab_sh(&args);
        assert!(
            out.status.success(),
            "lab.sh {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Lab {
            prefix,
            files: Some(tempfile::tempdir().expect("a temporary directory")),
            keep_files: false,
            identities: [Identity::generate(), Identity::generate()],
        }
    }

    /// The lab's temporary directory (daemon files, logs).
    pub fn files_dir(&self) -> &Path {
        self.files.as_ref().expect("the lab's files").path()
    }

    /// Keeps the lab's files (see [`Lab::files_dir`]) when it is dropped, e.g. to read the
    /// logs of a failed run.
    pub fn keep_files(&mut self) {
        self.keep_files = true;
    }

    /// The prefix of its namespaces' names, e.g. `fo123x0`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of a lab namespace, e.g. `fo123x0-client`.
    pub fn ns(&self, ns: impl Into<Ns>) -> String {
        format!("{}-{}", self.prefix, ns.into().suffix())
    }

    /// Runs `f` on a thread inside namespace `ns` (to create sockets there).
    pub fn run_in<T: Send>(&self, ns: impl Into<Ns>, f: impl FnOnce() -> T + Send) -> T {
        netns::run_in(&self.ns(ns), f)
    }

    /// Runs `args` inside `ns` (`ip netns exec`); whatever its exit status.
    pub fn try_exec(&self, ns: impl Into<Ns>, args: &[&str]) -> Output {
        let ns = self.ns(ns);
        let (program, args) = args.split_first().expect("a program to run");
        tools::netns_exec(&ns, program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {ns} {program} {args:?}: {e}"))
    }

    /// Runs `args` inside `ns` and returns its standard output; panics if it fails.
    pub fn exec(&self, ns: impl Into<Ns>, args: &[&str]) -> String {
        let ns = ns.into();
        let out = self.try_exec(ns, args);
        assert!(
            out.status.success(),
            "{}: {args:?} failed ({}): {}",
            self.ns(ns),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Sets a sysctl inside `ns` (network sysctls are per namespace).
    pub fn set_sysctl(&self, ns: impl Into<Ns>, key: &str, value: &str) {
        self.exec(ns, &["sysctl", "-qw", &format!("{key}={value}")]);
    }

    /// The value of sysctl `key` inside `ns`, trimmed; panics if it cannot be read.
    pub fn sysctl(&self, ns: impl Into<Ns>, key: &str) -> String {
        self.exec(ns, &["sysctl", "-n", key]).trim().to_string()
    }

    /// Moves the virtual gateway and the SNAT address to `to` (`lab.sh move-to`); the client
    /// and the server forget the old owner's MAC address.
    pub fn move_to(&self, to: Firewall) {
        let out = lab_sh(&["move-to", to.name(), &self.prefix]);
        assert!(
            out.status.success(),
            "lab.sh move-to {} {} failed: {}",
            to.name(),
            self.prefix,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The PIDs of every process whose network namespace is `ns` (`ip netns pids`).
    pub fn ns_pids(&self, ns: impl Into<Ns>) -> Vec<u32> {
        let ns = self.ns(ns);
        let out = tools::command("ip")
            .args(["netns", "pids", &ns])
            .output()
            .unwrap_or_else(|e| panic!("ip netns pids {ns}: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect()
    }

    /// The hard kill of a firewall: all its links ([`FIREWALL_LINKS`]) down in one
    /// `ip -n NS -batch -`, then SIGKILL of `pids` (by PID; the daemons running in its
    /// namespace, e.g. from [`Lab::ns_pids`]). When `pids` are all of the namespace's processes
    /// and some of them forked after the listing, use [`Lab::hard_kill_all`]. Panics if the
    /// links could not be taken down.
    pub fn hard_kill(&self, fw: Firewall, pids: &[u32]) -> HardKill {
        let ns = self.ns(fw);
        let batch: String = FIREWALL_LINKS
            .iter()
            .map(|link| format!("link set dev {link} down\n"))
            .collect();
        let mut child = tools::command("ip")
            .args(["-n", &ns, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("ip -n {ns} -batch -: {e}"));
        let started = Instant::now();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(batch.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let links_down = Instant::now();
        let links_down_wall = SystemTime::now();
        assert!(
            out.status.success(),
            "{ns}: ip -batch (links down) failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        for &pid in pids {
            sigkill(pid);
        }
        HardKill {
            started,
            links_down,
            links_down_wall,
            killed: Instant::now(),
            pids: pids.to_vec(),
        }
    }

    /// [`Lab::hard_kill`] of every process in `fw`'s namespace, then again of whatever still
    /// runs there (a process forked meanwhile, e.g. a notify script), for at most 1 s; panics
    /// if something survives that.
    pub fn hard_kill_all(&self, fw: Firewall) -> HardKill {
        let mut kill = self.hard_kill(fw, &self.ns_pids(fw));
        let started = Instant::now();
        loop {
            // Zombies (our own children, not reaped yet) are dead already.
            let left: Vec<u32> = self
                .ns_pids(fw)
                .into_iter()
                .filter(|&pid| !is_zombie(pid))
                .collect();
            if left.is_empty() {
                return kill;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{}: processes {left:?} survive SIGKILL",
                self.ns(fw)
            );
            for &pid in &left {
                sigkill(pid);
                if !kill.pids.contains(&pid) {
                    kill.pids.push(pid);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `fw`'s addresses: (interface, address, prefix length), from `ip -o addr show`.
    pub fn addresses(&self, fw: Firewall) -> Vec<(String, IpAddr, u8)> {
        let text = self.exec(fw, &["ip", "-o", "addr", "show"]);
        let mut found = Vec::new();
        for line in text.lines() {
            // "3: lan    inet 10.0.1.1/24 scope global secondary lan\ ..."
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(dev) = words.get(1) else { continue };
            let dev = dev.split('@').next().unwrap_or(dev);
            for pair in words.windows(2) {
                if pair[0] == "inet" || pair[0] == "inet6" {
                    let (addr, len) = pair[1].split_once('/').unwrap_or((pair[1], "128"));
                    if let (Ok(addr), Ok(len)) = (addr.parse(), len.parse()) {
                        found.push((dev.to_string(), addr, len));
                    }
                }
            }
        }
        found
    }

    /// Whether `fw` holds `addr` on any interface.
    pub fn holds_address(&self, fw: Firewall, addr: impl Into<IpAddr>) -> bool {
        let addr = addr.into();
        self.addresses(fw).iter().any(|(_, a, _)| *a == addr)
    }

    /// Whether `fw` holds every address of [`VIPS4`], each on its interface.
    pub fn holds_vips(&self, fw: Firewall) -> bool {
        let held = self.addresses(fw);
        VIPS4.iter().all(|(vip, dev)| {
            held.iter()
                .any(|(d, a, _)| d == dev && *a == IpAddr::V4(*vip))
        })
    }

    /// Whether `fw` holds any address of [`VIPS4`].
    pub fn holds_any_vip(&self, fw: Firewall) -> bool {
        let held = self.addresses(fw);
        VIPS4
            .iter()
            .any(|(vip, _)| held.iter().any(|(_, a, _)| *a == IpAddr::V4(*vip)))
    }

    /// `fw` holds every address of [`VIPS4`] and the other firewall none; else what each holds.
    pub fn only_holder(&self, fw: Firewall) -> Result<(), String> {
        let other = match fw {
            Firewall::A => Firewall::B,
            Firewall::B => Firewall::A,
        };
        if self.holds_vips(fw) && !self.holds_any_vip(other) {
            return Ok(());
        }
        Err(format!(
            "{fw:?} {:?}, {other:?} {:?}",
            self.addresses(fw),
            self.addresses(other)
        ))
    }

    /// `fw`'s kernel conntrack table (both families), with [`Entry::snat`] set.
    pub fn conntrack(&self, fw: Firewall) -> Vec<Entry> {
        let list = |extra: &[&str]| {
            let mut args = vec!["conntrack", "-L", "-o", "extended,id"];
            args.extend_from_slice(extra);
            let text = self.exec(fw, &args);
            conntrack::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", self.ns(fw)))
        };
        // All first, then the NAT ones: an entry made in between is not in the first list.
        let mut entries = list(&[]);
        let snat: std::collections::HashSet<Option<u32>> =
            list(&["--src-nat"]).into_iter().map(|e| e.id).collect();
        for entry in &mut entries {
            entry.snat = entry.id.is_some() && snat.contains(&entry.id);
        }
        entries
    }

    /// `fw`'s kernel conntrack table as failoverd's backend reads it, for comparing tables
    /// ([`tables::read`]).
    pub fn sessions(&self, fw: Firewall) -> Vec<SessionRecord> {
        tables::read(&self.ns(fw))
    }

    /// `conntrack -D ARGS` in `fw`'s namespace; the number of entries deleted (0 when none
    /// matched).
    pub fn conntrack_delete(&self, fw: Firewall, args: &[&str]) -> usize {
        let mut all = vec!["conntrack", "-D"];
        all.extend_from_slice(args);
        let out = self.try_exec(fw, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // "conntrack v1.4.7 (conntrack-tools): 2000 flow entries have been deleted."
        let deleted = stderr
            .split("): ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        match deleted {
            Some(n) => n,
            None => panic!("{}: {all:?}: {}: {stderr}", self.ns(fw), out.status),
        }
    }

    /// The directory of `fw`'s daemon files.
    pub fn daemon_dir(&self, fw: Firewall) -> PathBuf {
        self.files_dir().join(fw.name())
    }

    /// `fw`'s node identity (its key pair; the peer pins its fingerprint).
    pub(crate) fn identity(&self, fw: Firewall) -> &Identity {
        &self.identities[fw.index()]
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep_files
            && let Some(files) = self.files.take()
        {
            eprintln!(
                "lab {}: files kept in {}",
                self.prefix,
                files.keep().display()
            );
        }
        let out = lab_sh(&["down", &self.prefix]);
        if !out.status.success() {
            eprintln!(
                "lab.sh down {}: {}",
                self.prefix,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// What [`Lab::hard_kill`] did, and when.
#[derive(Debug, Clone)]
pub struct HardKill {
    /// When the `ip -batch` that takes the links down was started.
    pub started: Instant,
    /// When it returned: every link of the firewall is down. Takeover times count from here.
    pub links_down: Instant,
    /// [`HardKill::links_down`] on the wall clock, to compare with timestamps written by other
    /// processes (e.g. keepalived's notify script).
    pub links_down_wall: SystemTime,
    /// When the last SIGKILL was sent.
    pub killed: Instant,
    /// The processes sent SIGKILL.
    pub pids: Vec<u32>,
}

impl HardKill {
    /// The wall-clock time `at` as an instant of this process's monotonic clock (both clocks
    /// are read at [`HardKill::links_down`]; the wall clock is not stepped during a run).
    pub fn instant_of(&self, at: SystemTime) -> Instant {
        match at.duration_since(self.links_down_wall) {
            Ok(after) => self.links_down + after,
            Err(before) => self.links_down - before.duration(),
        }
    }
}

/// SIGKILL to `pid`; nothing if it is gone.
fn sigkill(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid > 0 {
        // SAFETY: kill(2) with a positive PID and a valid signal has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Whether `pid` is a zombie (dead, not reaped) or gone.
fn is_zombie(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

fn lab_sh(args: &[&str]) -> Output {
    tools::command("bash")
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("bash lab.sh {args:?}: {e}"))
}

/// Labs left by test processes that died without dropping them (`fo<pid>x<n>-*` whose process
/// is gone): removed, so that they do not pile up. Labs of live processes are left alone.
fn remove_stale_labs() {
    let Ok(out) = tools::command("ip").args(["netns", "list"]).output() else {
        return;
    };
    let mut stale = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some((prefix, _)) = name.split_once('-') else {
            continue;
        };
        let Some((pid, n)) = prefix
            .strip_prefix("fo")
            .and_then(|rest| rest.split_once('x'))
        else {
            continue;
        };
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if numeric(pid)
            && numeric(n)
            && pid != std::process::id().to_string()
            && !Path::new("/proc").join(pid).exists()
        {
            stale.insert(prefix.to_string());
        }
    }
    for prefix in stale {
        eprintln!("removing stale lab {prefix}");
        let _ = lab_sh(&["down", &prefix]);
    }
}
