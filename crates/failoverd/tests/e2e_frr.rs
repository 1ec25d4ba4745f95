//! End to end with real FRR (zebra + ospfd) in network namespaces: [`Frr`] moves a router's
//! route to the firewalls' LAN from one firewall to the other by OSPF costs; then two real
//! `failoverd` processes (election mode, `[routing]`) do it as their roles change: a SIGTERM
//! hands over at once, a restarted higher-priority node takes the role back once ready.
//!
//! ```text
//!                 R (10.0.0.1, br0)
//!                 |  bridge br0 in R
//!        +--------+---------+
//!   A eth0 10.0.0.2    B eth0 10.0.0.3
//!   A lan0 10.0.1.2/24 B lan0 10.0.1.3/24   (the same LAN prefix behind both)
//! ```
//!
//! A and B advertise 10.0.1.0/24 (their `lan0`, a passive OSPF interface). R's cost to it is
//! its own interface's cost plus the firewall's `lan0` cost, so the firewall with the lower
//! `lan0` cost (the active one) gets R's traffic; with equal costs R has both as next hops.
//!
//! The namespaces (`frr<pid><n>-r`, `-a`, `-b`) and FRR daemons are the test's own: dropping
//! the [`OspfLab`] kills the daemons (by PID) and deletes the namespaces. The `failoverd`
//! processes are [`support::daemon::Daemon`]s, killed (by PID) when dropped, before the lab.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`), among them `ip`,
//! `vtysh` and FRR's `zebra` and `ospfd` (Debian package `frr`); without them the test prints
//! "skipped: ..." and passes, except under `CI=true`, where it fails.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use failoverd::takeover::frr::Frr;
use failoverd::takeover::history::TakeoverHistory;
use failoverd_control::config::RoutingSection;
use failoverd_control::protocol::{FailoverRole, Request, Status};
use failoverd_link::Identity;
use support::config::ConfigFile;
use support::daemon::{self, Daemon};
use support::{Firewall, require_root_and_tools, tools};

use failoverd_lab as support;

/// The shared segment.
const SEGMENT: &str = "10.0.0.0/24";
/// The LAN behind both firewalls.
const LAN: &str = "10.0.1.0/24";
const R_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const ACTIVE_COST: u16 = 10;
const STANDBY_COST: u16 = 1000;
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// the test

#[test]
fn ospf_cost_moves_the_route_with_the_role() {
    if !require_root_and_tools() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _runtime = runtime.enter();
    let lab = OspfLab::up();

    // Converged with the costs of the config files: R reaches the LAN through both.
    let (_, took) = lab.wait_lan_next_hops(&[A_ADDR, B_ADDR], Duration::from_secs(60));
    println!("OSPF converged (R has both next hops) after {took:?} of waiting");

    let a = Frr::new(&routing(&lab.a), TakeoverHistory::default());
    let b = Frr::new(&routing(&lab.b), TakeoverHistory::default());
    a.start();
    b.start();
    wait_state(&a, "standby");
    wait_state(&b, "standby");
    assert_eq!(lab.a.interface_cost("lan0"), Some(STANDBY_COST));
    assert_eq!(lab.b.interface_cost("lan0"), Some(STANDBY_COST));
    // Both standby: equal costs, both next hops still.
    lab.wait_lan_next_hops(&[A_ADDR, B_ADDR], Duration::from_secs(30));

    a.role_changed(true);
    wait_state(&a, "active");
    assert_eq!(lab.a.interface_cost("lan0"), Some(ACTIVE_COST));
    assert_eq!(lab.a.interface_cost("eth0"), Some(ACTIVE_COST));
    let (_, took) = lab.wait_lan_next_hops(&[A_ADDR], Duration::from_secs(30));
    println!("A active: R's route to {LAN} via A after {took:?}");

    // The takeover: A standby, B active.
    a.role_changed(false);
    b.role_changed(true);
    let (_, took) = lab.wait_lan_next_hops(&[B_ADDR], Duration::from_secs(30));
    println!("roles flipped: R's route to {LAN} moved from A to B in {took:?}");
    wait_state(&a, "standby");
    wait_state(&b, "active");
    assert_eq!(lab.b.interface_cost("lan0"), Some(ACTIVE_COST));
    // R forwards that way too.
    let route = lab.r.ip(&["-4", "route", "get", "10.0.1.9"]);
    assert!(route.contains(&format!("via {B_ADDR} ")), "{route}");

    // And back.
    b.role_changed(false);
    a.role_changed(true);
    let (_, took) = lab.wait_lan_next_hops(&[A_ADDR], Duration::from_secs(30));
    println!("roles flipped back: R's route to {LAN} moved from B to A in {took:?}");
    assert_eq!(a.view().last_error, None);
    assert_eq!(b.view().last_error, None);
}

/// The `[routing]` section for `router`'s FRR.
fn routing(router: &Router) -> RoutingSection {
    RoutingSection {
        vtysh: router.vtysh_prefix(),
        ospf_interfaces: vec!["lan0".into(), "eth0".into()],
        ospf6_interfaces: Vec::new(),
        active_cost: ACTIVE_COST,
        standby_cost: STANDBY_COST,
        timeout: Duration::from_secs(10),
    }
}

fn wait_state(frr: &Frr, state: &str) {
    wait_until(
        &format!("routing state {state}"),
        Duration::from_secs(20),
        || {
            let view = frr.view();
            if view.state == state {
                Ok(())
            } else {
                Err(format!("{view:?}"))
            }
        },
    );
}

#[test]
fn failoverd_moves_the_ospf_route_with_the_role() {
    if !require_root_and_tools() {
        return;
    }
    let lab = OspfLab::up();
    // Declared after the lab: the daemons are killed, then their files removed, then the lab.
    let files = tempfile::tempdir().unwrap();
    let [node_a, node_b] = FailoverdNode::pair(&lab, files.path());
    let (_, took) = lab.wait_lan_next_hops(&[A_ADDR, B_ADDR], Duration::from_secs(60));
    println!("OSPF converged (R has both next hops) after {took:?} of waiting");

    let started = Instant::now();
    let mut a = node_a.spawn();
    let mut b = node_b.spawn();
    daemon::wait_synchronized(&mut a, &mut b, Duration::from_secs(30));
    wait_role(&mut a, FailoverRole::Active);
    wait_role(&mut b, FailoverRole::Standby);
    lab.wait_lan_next_hops(&[A_ADDR], Duration::from_secs(30));
    println!(
        "failoverd started: A active, R's route to {LAN} via A {:?} after the start",
        started.elapsed()
    );

    // A graceful stop: A becomes standby, sets its standby cost, says goodbye; B takes over.
    let stopping = Instant::now();
    sigterm(&a);
    lab.wait_lan_next_hops(&[B_ADDR], Duration::from_secs(30));
    println!(
        "SIGTERM to A's failoverd: R's route to {LAN} moved to B {:?} after the signal",
        stopping.elapsed()
    );
    let exit = wait_exit(&mut a);
    assert!(exit.success(), "graceful exit: {exit}");
    assert_eq!(
        lab.a.interface_cost("lan0"),
        Some(STANDBY_COST),
        "A left standby"
    );
    wait_role(&mut b, FailoverRole::Active);
    let events = b.call(Request::Events { limit: None }).unwrap();
    assert!(
        events.to_string().contains("peer left (goodbye)"),
        "B took over because told, not by timeout: {events}"
    );

    // A again: it synchronizes and, ready, preempts (priority 200 over 100).
    let restarted = Instant::now();
    a = node_a.spawn();
    a.wait_for(
        "synchronization",
        Duration::from_secs(30),
        daemon::synchronized,
    );
    let statuses = [
        wait_role(&mut a, FailoverRole::Active),
        wait_role(&mut b, FailoverRole::Standby),
    ];
    lab.wait_lan_next_hops(&[A_ADDR], Duration::from_secs(30));
    println!(
        "A's failoverd restarted: R's route to {LAN} back via A {:?} after the start",
        restarted.elapsed()
    );
    for status in statuses {
        assert_eq!(status.takeover.routing.unwrap().last_error, None);
    }
}

/// One firewall's `failoverd`: its namespace, its directory (key, configuration, control
/// socket, log) and its configuration file.
struct FailoverdNode {
    fw: Firewall,
    netns: String,
    dir: PathBuf,
    config: String,
}

impl FailoverdNode {
    /// A and B of `lab`, each with a new key pair and pinning the other's, files under `root`.
    fn pair(lab: &OspfLab, root: &Path) -> [FailoverdNode; 2] {
        let keys = [Identity::generate(), Identity::generate()];
        [(Firewall::A, 0), (Firewall::B, 1)].map(|(fw, me)| {
            let dir = root.join(fw.name());
            fs::create_dir_all(&dir).unwrap();
            let key = dir.join("node.pem");
            fs::write(&key, keys[me].to_pem()).unwrap();
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
            let peer_key = keys[1 - me].fingerprint().to_string();
            let router = if fw == Firewall::A { &lab.a } else { &lab.b };
            FailoverdNode {
                fw,
                netns: router.netns.name().to_string(),
                config: failoverd_config(fw, router, &peer_key, &dir),
                dir,
            }
        })
    }

    /// Starts `failoverd` in its namespace.
    fn spawn(&self) -> Daemon {
        Daemon::spawn(&self.netns, self.fw, &self.dir, &self.config)
    }
}

/// `fw`'s configuration file: election mode, memory sessions, A preferred (200 over 100), the
/// failover link over the segment, `[routing]` for `router`'s FRR; its files in `dir`.
fn failoverd_config(fw: Firewall, router: &Router, peer_key: &str, dir: &Path) -> String {
    let (priority, listen, peer) = match fw {
        Firewall::A => (200, A_ADDR, B_ADDR),
        Firewall::B => (100, B_ADDR, A_ADDR),
    };
    let routing = routing(router);
    let mut file = ConfigFile::new(
        fw.name(),
        priority,
        format!("{listen}:7500"),
        format!("{peer}:7500"),
        format!("\"{peer_key}\""),
        dir.join("failoverd.sock"),
    );
    file.link.push("reconnect_max_ms = 500".to_string());
    file.timers.push("silence_ms = 300".to_string());
    file.backend = Some("memory".to_string());
    file.extra.push(format!(
        "[routing]\nvtysh = {vtysh:?}\nospf_interfaces = {interfaces:?}\nactive_cost = {active}\n\
         standby_cost = {standby}\ntimeout_ms = {timeout}\n",
        vtysh = routing.vtysh,
        interfaces = routing.ospf_interfaces,
        active = routing.active_cost,
        standby = routing.standby_cost,
        timeout = routing.timeout.as_millis(),
    ));
    file.render(file!())
}

/// Waits until `daemon` has `role` and FRR the cost of that role.
fn wait_role(daemon: &mut Daemon, role: FailoverRole) -> Status {
    let what = format!("{} with its OSPF cost set", role.name());
    daemon.wait_for(&what, Duration::from_secs(30), |status| {
        status.role == role
            && (status.takeover.routing.as_ref()).is_some_and(|r| r.state == role.name())
    })
}

/// SIGTERM to `daemon`'s process, by PID (`ip netns exec` executes failoverd in place).
#[allow(unsafe_code)] // kill: libc has no safe wrapper.
fn sigterm(daemon: &Daemon) {
    let pid = daemon.pid().expect("running");
    // SAFETY: kill has no memory-safety preconditions; the PID is our unreaped child's.
    let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(
        sent,
        0,
        "kill -TERM {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// Waits until `daemon`'s process has exited; returns how.
fn wait_exit(daemon: &mut Daemon) -> ExitStatus {
    wait_until("failoverd exiting", Duration::from_secs(15), || {
        daemon.exited().ok_or_else(|| "still running".to_string())
    })
    .0
}

// ---------------------------------------------------------------------------------------------
// the lab: reusable set-up

/// [`support::wait_until`], polling every [`POLL`].
pub fn wait_until<T>(
    what: &str,
    within: Duration,
    probe: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    support::wait_until(what, within, POLL, probe)
}

/// Runs `program` with `args`; panics with its output if it fails. Returns its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let output = tools::command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{program} {args:?}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A network namespace of the test's own, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up.
    pub fn new(name: &str) -> Netns {
        run("ip", &["netns", "add", name]);
        let netns = Netns {
            name: name.to_string(),
        };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <name> args...`; panics if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let deleted = tools::command("ip")
            .args(["netns", "delete", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !deleted.is_ok_and(|status| status.success()) {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}

/// An FRR daemon the test started, killed (by PID) and reaped on drop.
#[derive(Debug)]
pub struct FrrDaemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl FrrDaemon {
    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FrrDaemon {
    fn drop(&mut self) {
        // `ip netns exec` execs the daemon: the child's PID is the daemon's.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log()
            );
        }
    }
}

/// One router: a namespace running zebra and ospfd, with its own config files, pid files and
/// vty sockets in `dir`.
#[derive(Debug)]
pub struct Router {
    /// Declared before the namespace: the daemons stop before it is deleted.
    daemons: Vec<FrrDaemon>,
    netns: Netns,
    dir: PathBuf,
}

impl Router {
    /// A namespace `netns_name` (not yet running FRR) whose FRR files go to `dir`.
    pub fn new(netns_name: &str, dir: &Path) -> Router {
        let netns = Netns::new(netns_name);
        fs::create_dir_all(dir).unwrap();
        Router {
            daemons: Vec::new(),
            netns,
            dir: dir.to_path_buf(),
        }
    }

    /// `ip -n <its namespace> args...`.
    pub fn ip(&self, args: &[&str]) -> String {
        self.netns.ip(args)
    }

    /// Starts zebra, then ospfd with `ospfd_conf`, as user frr (FRR's privileges need its vty
    /// group), and waits for their vty sockets.
    pub fn start_frr(&mut self, ospfd_conf: &str) {
        let hostname = self.netns.name().to_string();
        fs::write(
            self.dir.join("zebra.conf"),
            format!("hostname {hostname}\n"),
        )
        .unwrap();
        fs::write(self.dir.join("ospfd.conf"), ospfd_conf).unwrap();
        run("chown", &["-R", "frr:frr", &self.dir.display().to_string()]);
        for name in ["zebra", "ospfd"] {
            self.spawn_daemon(name);
            let socket = self.dir.join(format!("{name}.vty"));
            wait_until(
                &format!("{hostname}: {name}'s vty socket"),
                Duration::from_secs(20),
                || {
                    if socket.exists() {
                        Ok(())
                    } else {
                        Err(self.daemons.last().map(FrrDaemon::log).unwrap_or_default())
                    }
                },
            );
        }
    }

    fn spawn_daemon(&mut self, name: &'static str) {
        let dir = &self.dir;
        let path = |file: String| dir.join(file).display().to_string();
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(dir.join(format!("{name}.out"))).unwrap();
        let child = tools::netns_exec(self.netns.name(), name)
            .args(["-f", &path(format!("{name}.conf"))])
            .args(["-i", &path(format!("{name}.pid"))])
            .args(["-z", &path("zserv.api".into())])
            .args(["--vty_socket", &dir.display().to_string()])
            // No TCP vty.
            .args(["-P", "0"])
            .args(["-u", "frr", "-g", "frr"])
            .arg(format!("--log=file:{}", log.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {name}: {error}"));
        self.daemons.push(FrrDaemon { name, child, log });
    }

    /// The argv prefix that reaches this router's FRR (`[routing] vtysh`).
    pub fn vtysh_prefix(&self) -> Vec<String> {
        vec![
            "vtysh".into(),
            "--vty_socket".into(),
            self.dir.display().to_string(),
        ]
    }

    /// `vtysh -c command` on this router; panics if it fails.
    pub fn vtysh(&self, command: &str) -> String {
        let prefix = self.vtysh_prefix();
        let mut args: Vec<&str> = prefix[1..].iter().map(String::as_str).collect();
        args.extend(["-c", command]);
        run(&prefix[0], &args)
    }

    /// The `ip ospf cost` of `interface` in the running config (`None`: the default).
    pub fn interface_cost(&self, interface: &str) -> Option<u16> {
        let config = self.vtysh("show running-config");
        let mut inside = false;
        for line in config.lines() {
            if let Some(name) = line.strip_prefix("interface ") {
                inside = name.trim() == interface;
            } else if inside && let Some(cost) = line.trim().strip_prefix("ip ospf cost ") {
                return cost.trim().parse().ok();
            }
        }
        None
    }
}

/// `ospfd.conf` for a router: hello 1 s, dead 3 s on `ospf_interfaces`; `passive` interfaces;
/// `networks` in area 0; and no LSA or SPF throttling to speak of (a functional test).
pub fn ospfd_conf(
    router_id: Ipv4Addr,
    networks: &[&str],
    ospf_interfaces: &[&str],
    passive: &[&str],
) -> String {
    let mut conf = String::new();
    for interface in ospf_interfaces {
        conf.push_str(&format!(
            "interface {interface}\n ip ospf hello-interval 1\n ip ospf dead-interval 3\n \
             ip ospf retransmit-interval 1\nexit\n"
        ));
    }
    for interface in passive {
        conf.push_str(&format!("interface {interface}\n ip ospf passive\nexit\n"));
    }
    conf.push_str(&format!(
        "router ospf\n ospf router-id {router_id}\n timers throttle spf 0 50 1000\n \
         timers throttle lsa all 0\n timers lsa min-arrival 0\n"
    ));
    for network in networks {
        conf.push_str(&format!(" network {network} area 0\n"));
    }
    conf.push_str("exit\n");
    conf
}

/// Three namespaces (router R, firewalls A and B) on one segment (a bridge in R), each
/// firewall with the LAN on `lan0` (one end of a veth pair inside the firewall), all running
/// zebra + ospfd. Dropped: daemons killed, namespaces deleted, files removed.
#[derive(Debug)]
pub struct OspfLab {
    /// Router R.
    pub r: Router,
    /// Firewall A.
    pub a: Router,
    /// Firewall B.
    pub b: Router,
    /// Declared last: removed after the daemons stopped.
    _files: tempfile::TempDir,
}

impl OspfLab {
    /// Builds the lab with FRR's daemons; does not wait for OSPF.
    pub fn up() -> OspfLab {
        static LABS: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "frr{}{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let files = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .unwrap();
        // The daemons run as frr: let them reach their directories.
        run("chmod", &["755", &files.path().display().to_string()]);
        let router =
            |name: &str| Router::new(&format!("{prefix}-{name}"), &files.path().join(name));
        let mut r = router("r");
        let mut a = router("a");
        let mut b = router("b");

        r.ip(&["link", "add", "br0", "type", "bridge"]);
        r.ip(&["link", "set", "br0", "up"]);
        r.ip(&["addr", "add", &format!("{R_ADDR}/24"), "dev", "br0"]);
        for (fw, port, addr, lan) in [
            (&a, "fw-a", A_ADDR, "10.0.1.2/24"),
            (&b, "fw-b", B_ADDR, "10.0.1.3/24"),
        ] {
            fw.ip(&[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                r.netns.name(),
            ]);
            r.ip(&["link", "set", port, "master", "br0", "up"]);
            fw.ip(&["link", "set", "eth0", "up"]);
            fw.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            // The LAN: a veth pair inside the firewall, so that lan0 has a carrier.
            fw.ip(&[
                "link",
                "add",
                "lan0",
                "type",
                "veth",
                "peer",
                "name",
                "lan0-peer",
            ]);
            fw.ip(&["link", "set", "lan0-peer", "up"]);
            fw.ip(&["link", "set", "lan0", "up"]);
            fw.ip(&["addr", "add", lan, "dev", "lan0"]);
        }

        r.start_frr(&ospfd_conf(R_ADDR, &[SEGMENT], &["br0"], &[]));
        for (fw, id) in [(&mut a, A_ADDR), (&mut b, B_ADDR)] {
            fw.start_frr(&ospfd_conf(id, &[SEGMENT, LAN], &["eth0"], &["lan0"]));
        }
        OspfLab {
            r,
            a,
            b,
            _files: files,
        }
    }

    /// R's next hops to [`LAN`] from OSPF, sorted.
    pub fn lan_next_hops(&self) -> Vec<Ipv4Addr> {
        let routes = self.r.ip(&["-4", "route", "show", LAN, "proto", "ospf"]);
        let mut hops: Vec<Ipv4Addr> = routes
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|pair| pair[0] == "via")
            .filter_map(|pair| pair[1].parse().ok())
            .collect();
        hops.sort();
        hops
    }

    /// Waits until R's next hops to [`LAN`] are exactly `hops` (sorted).
    pub fn wait_lan_next_hops(
        &self,
        hops: &[Ipv4Addr],
        within: Duration,
    ) -> (Vec<Ipv4Addr>, Duration) {
        wait_until(&format!("R's route to {LAN} via {hops:?}"), within, || {
            let now = self.lan_next_hops();
            if now == hops {
                Ok(now)
            } else {
                Err(format!("via {now:?}"))
            }
        })
    }
}
