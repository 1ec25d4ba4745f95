//! Interop, in network namespaces: failoverd's VRRP speaker and keepalived as the two routers of
//! the same virtual routers (VRRPv3, VRIDs 51 and 52, the lab's addresses), each way round. The
//! backup hears the master's adverts, never do both hold an address, and failover works both
//! ways. failoverd has no failover-link peer here, so it is never ready: it takes over only
//! when no master is left, and never preempts keepalived.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`), among them `ip`, `nft`,
//! `conntrack` and `keepalived`; without them each test prints "skipped: ..." and passes,
//! except under `CI=true`, where it fails.

use failoverd_lab as support;

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use failoverd_control::protocol::Status;
use support::daemon::{Daemon, DaemonOptions};
use support::keepalived::{advert_int_text, spawn};
use support::lab::VIPS4;
use support::{Firewall, Lab, require_root_and_tools, tools, wait_until};

const ADVERT: Duration = Duration::from_millis(50);

/// keepalived alone (no conntrackd) in `fw`, with the lab's two instances in one sync group.
struct Keepalived {
    child: Child,
    dir: std::path::PathBuf,
}

impl Keepalived {
    fn start(lab: &Lab, fw: Firewall, priority: u8) -> Keepalived {
        let dir = lab
            .files_dir()
            .join(format!("{}-interop-keepalived", fw.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let advert = advert_int_text(ADVERT);
        let instance = |name: &str, vrid: u8, vip: &str| {
            format!(
                "vrrp_instance {name} {{\n state BACKUP\n interface {name}\n \
                 virtual_router_id {vrid}\n priority {priority}\n advert_int {advert}\n \
                 virtual_ipaddress {{\n  {vip} dev {name}\n }}\n}}\n"
            )
        };
        let conf = format!(
            "global_defs {{\n router_id {}\n vrrp_version 3\n}}\n\
             vrrp_sync_group lab {{\n group {{\n  lan\n  wan\n }}\n}}\n{}{}",
            fw.name(),
            instance("lan", 51, "10.0.1.1/24"),
            instance("wan", 52, "10.0.2.1/24"),
        );
        std::fs::write(dir.join("keepalived.conf"), conf).unwrap();
        let file = |name: &str| dir.join(name).display().to_string();
        let child = spawn(
            &lab.ns(fw),
            &[
                "keepalived",
                "--dont-fork",
                "--log-console",
                "--no-syslog",
                "--vrrp",
                "--use-file",
                &file("keepalived.conf"),
                "--pid",
                &file("keepalived.pid"),
                "--vrrp_pid",
                &file("vrrp.pid"),
            ],
            &dir.join("keepalived.log"),
        );
        Keepalived { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default()
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// failoverd in `fw` with VRRP (default timers but 50 ms adverts, like keepalived's here).
fn failoverd(lab: &Lab, fw: Firewall) -> Daemon {
    lab.spawn_daemon(fw, &DaemonOptions::default().vrrp(50))
}

fn group(status: &Status) -> (String, u64, Option<String>) {
    let group = status.takeover.group.as_ref().expect("a VRRP group");
    let lan = &group.instances[0];
    (
        group.state.to_string(),
        lan.adverts_received,
        lan.master_address.clone(),
    )
}

/// Which firewalls hold a virtual address on an interface that is up.
fn holders(lab: &Lab) -> Vec<Firewall> {
    [Firewall::A, Firewall::B]
        .into_iter()
        .filter(|&fw| {
            let up = lab.exec(fw, &["ip", "-o", "addr", "show", "up"]);
            VIPS4
                .iter()
                .any(|(vip, _)| up.contains(&format!("inet {vip}/")))
        })
        .collect()
}

/// Samples the holders every 10 ms until finished, and fails if both ever held an address.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Sampler {
    fn start(lab: &Lab) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let prefix = lab.prefix().to_string();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = 0;
            while !flag.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                let held: Vec<&str> = ["a", "b"]
                    .into_iter()
                    .filter(|fw| {
                        let out = tools::command("ip")
                            .args(["-n", &format!("{prefix}-{fw}"), "-o", "addr", "show", "up"])
                            .output()
                            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                            .unwrap_or_default();
                        VIPS4
                            .iter()
                            .any(|(vip, _)| out.contains(&format!("inet {vip}/")))
                    })
                    .collect();
                assert!(held.len() < 2, "both firewalls hold a virtual address");
                samples += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().unwrap().join() {
            Ok(samples) => samples,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn wait_holder(lab: &Lab, fw: Firewall, what: &str) {
    wait_until(
        what,
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let now = holders(lab);
            (now == [fw])
                .then_some(())
                .ok_or_else(|| format!("held by {now:?}"))
        },
    );
}

/// failoverd master (A, 200), keepalived backup (B, 100): B hears A and stays backup; A dies,
/// keepalived takes over; A returns and, not ready, does not preempt but hears B; B dies, A
/// takes over.
#[test]
fn failoverd_master_keepalived_backup() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let sampler = Sampler::start(&lab);
    let mut a = failoverd(&lab, Firewall::A);
    a.wait_for("A is master", Duration::from_secs(10), |s| {
        group(s).0 == "master"
    });
    wait_holder(&lab, Firewall::A, "A holds the addresses");
    let keepalived = Keepalived::start(&lab, Firewall::B, 100);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(holders(&lab), [Firewall::A], "keepalived stays backup");
    assert!(
        keepalived.log().contains("(lan) Entering BACKUP STATE")
            && !keepalived.log().contains("Entering MASTER STATE"),
        "keepalived: {}",
        keepalived.log()
    );

    lab.hard_kill(Firewall::A, &[a.pid().expect("A runs")]);
    drop(a);
    wait_holder(&lab, Firewall::B, "keepalived takes over");
    // The killed daemon left its addresses behind: the restarted one removes them before the
    // links come back.
    let mut a = failoverd(&lab, Firewall::A);
    a.wait_for("A is in fault", Duration::from_secs(5), |s| {
        group(s).0 == "fault"
    });
    for link in ["lan", "wan", "fo"] {
        lab.exec(Firewall::A, &["ip", "link", "set", "dev", link, "up"]);
    }
    let status = a.wait_for("A hears keepalived", Duration::from_secs(5), |s| {
        let (state, heard, master) = group(s);
        state == "backup" && heard > 10 && master.as_deref() == Some("10.0.1.3")
    });
    assert!(!status.ready, "A has no session peer: never ready");
    assert_eq!(
        holders(&lab),
        [Firewall::B],
        "A does not preempt while not ready"
    );

    lab.hard_kill_all(Firewall::B);
    drop(keepalived);
    a.wait_for("A takes over", Duration::from_secs(5), |s| {
        group(s).0 == "master"
    });
    wait_holder(&lab, Firewall::A, "A holds the addresses again");
    println!("{} samples, never two holders", sampler.finish());
}

/// keepalived master (A, 200), failoverd backup (B, 100): B hears keepalived's adverts (and
/// their checksum, which covers the pseudo-header); A dies, B takes over.
#[test]
fn keepalived_master_failoverd_backup() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let sampler = Sampler::start(&lab);
    let keepalived = Keepalived::start(&lab, Firewall::A, 200);
    wait_holder(&lab, Firewall::A, "keepalived becomes master");
    let mut b = failoverd(&lab, Firewall::B);
    let status = b.wait_for("B hears keepalived", Duration::from_secs(5), |s| {
        let (state, heard, master) = group(s);
        state == "backup" && heard > 10 && master.as_deref() == Some("10.0.1.2")
    });
    let lan = &status.takeover.group.as_ref().unwrap().instances[0];
    assert_eq!(
        (lan.master_priority, lan.malformed_dropped),
        (Some(200), 0),
        "keepalived's adverts pass every check"
    );
    assert_eq!(holders(&lab), [Firewall::A]);

    let kill = lab.hard_kill_all(Firewall::A);
    drop(keepalived);
    b.wait_for("B takes over", Duration::from_secs(5), |s| {
        group(s).0 == "master"
    });
    wait_holder(&lab, Firewall::B, "B holds the addresses");
    println!(
        "B took over {:?} after keepalived's death; {} samples, never two holders",
        kill.links_down.elapsed(),
        sampler.finish()
    );
}
