//! End to end, in network namespaces: a dead switch behind a live port (docs/TAKEOVER.md,
//! "One network silent"). The LAN bridge's port towards one firewall is taken out of the
//! bridge: that firewall's link stays up, but nothing crosses it either way. A LAN host keeps
//! sending to the gateway address, as hosts that lost their gateway do.
//!
//! - Behind the master's port (A): the LAN has no gateway, B's LAN instance hears no master but
//!   its port hears the hosts; after `vrrp.silent_intervals` master-down intervals the
//!   failover link moves the group to B. With `silent_intervals = 0` (the control) it never
//!   moves.
//! - Behind the backup's port (B): B reports the silence but hears nothing: nothing moves.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`); without them each test
//! prints "skipped: ..." and passes, except under `CI=true`, where it fails.

use failoverd_lab as support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, DaemonOptions, wait_synchronized};
use support::lab::{CLIENT4, GATEWAY4, Ns};
use support::netns;
use support::vrrp::{group_state, lan};
use support::{Firewall, Lab, require_root_and_tools, wait_until};

const POLL: Duration = Duration::from_millis(20);
/// The default advert interval (50 ms) gives B (priority 100) a master-down interval of
/// 150 ms + 30.5 ms; three of them, the 2 s in which A's port must hear nothing, a 100 ms poll
/// of the packet counts and the handover (B's skew time).
const BOUND: Duration = Duration::from_millis(3 * 181 + 2000 + 100 + 200);

/// A LAN host sending a datagram to the gateway address every 50 ms until dropped.
struct Chatter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Chatter {
    fn start(lab: &Lab) -> Chatter {
        let socket = netns::udp_bind(&lab.ns(Ns::Client), SocketAddr::new(IpAddr::V4(CLIENT4), 0));
        let to = SocketAddr::new(IpAddr::V4(GATEWAY4), 9);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                // Unanswered, or refused while the gateway is unreachable: either way sent.
                let _ = socket.send_to(b"anyone?", to);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Chatter {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Chatter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The lab, both daemons (A master), the chatter; then `dead`'s LAN port is taken out of the
/// LAN's bridge.
fn dead_switch_behind(dead: Firewall, options: &DaemonOptions) -> (Lab, Daemon, Daemon, Chatter) {
    let lab = Lab::up_without_shared();
    let mut a = lab.spawn_daemon(Firewall::A, options);
    let mut b = lab.spawn_daemon(Firewall::B, options);
    wait_synchronized(&mut a, &mut b, Duration::from_secs(15));
    a.wait_for("A is VRRP master", Duration::from_secs(5), |s| {
        group_state(s) == "master"
    });
    let chatter = Chatter::start(&lab);
    // Both ports hear the LAN before the fault.
    for (daemon, name) in [(&mut a, "A"), (&mut b, "B")] {
        daemon.wait_for(
            &format!("{name}'s LAN port hears"),
            Duration::from_secs(3),
            |s| lan(s).port_hears,
        );
    }
    let bridge = format!("{}-lan", lab.prefix());
    let port = format!("fw-{}", dead.name());
    lab.exec(
        Ns::Client,
        &["ip", "-n", &bridge, "link", "set", "dev", &port, "nomaster"],
    );
    (lab, a, b, chatter)
}

#[test]
fn adverts_lost_beyond_the_masters_port_move_the_group() {
    if !require_root_and_tools() {
        return;
    }
    let options = DaemonOptions::default().vrrp(None);
    let (lab, mut a, mut b, _chatter) = dead_switch_behind(Firewall::A, &options);
    let cut = Instant::now();
    let (_, took) = wait_until("the group moves to B", BOUND, POLL, || {
        (lab.holds_vips(Firewall::B) && !lab.holds_any_vip(Firewall::A))
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "A {:?}, B {:?}",
                    lab.addresses(Firewall::A),
                    lab.addresses(Firewall::B)
                )
            })
    });
    println!("a dead switch behind the master's LAN port: the group moved to B after {took:?}");
    let a_status = a.wait_for("A is backup", Duration::from_secs(1), |s| {
        group_state(s) == "backup"
    });
    assert!(
        a_status
            .takeover
            .group
            .as_ref()
            .unwrap()
            .reason
            .contains("the peer hears that network"),
        "{:?}",
        a_status.takeover.group
    );
    let b_lan = lan(&b.wait_for("B is master", Duration::from_secs(1), |s| {
        group_state(s) == "master"
    }));
    assert!(b_lan.port_hears);
    // And it stays there: no flapping back to the side that cannot reach the LAN.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        lab.holds_vips(Firewall::B) && !lab.holds_any_vip(Firewall::A),
        "{:?} after the move",
        cut.elapsed()
    );
    let a_lan = lan(&a.status().unwrap());
    assert!(!a_lan.port_hears && a_lan.silent_for >= 3, "{a_lan:?}");
}

#[test]
fn without_the_silent_rule_a_dead_switch_behind_the_master_strands_the_lan() {
    // The control of the test above: `silent_intervals = 0`.
    if !require_root_and_tools() {
        return;
    }
    let options = DaemonOptions::default()
        .vrrp(None)
        .vrrp_line("silent_intervals = 0");
    let (lab, mut a, b, _chatter) = dead_switch_behind(Firewall::A, &options);
    std::thread::sleep(BOUND + Duration::from_secs(2));
    lab.only_holder(Firewall::A).unwrap();
    assert_eq!(
        group_state(&a.wait_for("A's status", Duration::from_secs(1), |_| true)),
        "master"
    );
    let b_lan = lan(&b.status().unwrap());
    assert!(b_lan.silent_for >= 3 && b_lan.port_hears, "{b_lan:?}");
}

#[test]
fn adverts_lost_beyond_the_backups_port_move_nothing() {
    if !require_root_and_tools() {
        return;
    }
    let options = DaemonOptions::default().vrrp(None);
    let (lab, a, mut b, _chatter) = dead_switch_behind(Firewall::B, &options);
    let started = Instant::now();
    while started.elapsed() < BOUND + Duration::from_secs(2) {
        if let Err(held) = lab.only_holder(Firewall::A) {
            panic!("{:?} after B's port died: {held}", started.elapsed());
        }
        std::thread::sleep(POLL);
    }
    let b_lan = lan(
        &b.wait_for("B reports the silence", Duration::from_secs(1), |s| {
            lan(s).silent_for >= 3
        }),
    );
    assert!(!b_lan.port_hears, "{b_lan:?}");
    let a_lan = lan(&a.status().unwrap());
    assert_eq!(
        (a_lan.peer_silent, a_lan.peer_hears),
        (Some(true), Some(false))
    );
}
