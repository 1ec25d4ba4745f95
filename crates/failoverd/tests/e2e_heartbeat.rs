//! End to end, in network namespaces: election mode (no VRRP) with the heartbeat path over the
//! lab's LAN (`link.heartbeat_listen`/`heartbeat_peer`). The failover link (`fo`) is cut while
//! both daemons run: exactly one stays active for the whole cut, and without the heartbeat path
//! (the control) both become active. Then the active is killed with -9: the standby takes over
//! once both paths are silent for the dead interval.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`); without them each test
//! prints "skipped: ..." and passes, except under `CI=true`, where it fails.

use failoverd_lab as support;

use std::time::{Duration, Instant};

use failoverd_control::protocol::{EventKind, EventList, LinkState, Request, Role, Status};
use support::daemon::{Daemon, DaemonOptions, wait_synchronized};
use support::{Firewall, Lab, require_root_and_tools};

/// The default dead interval (the lab's daemons keep the default hello and dead intervals).
const DEAD: Duration = Duration::from_millis(150);
const CUT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(10);

/// The heartbeat path on the LAN: A listens on its LAN address, B on its own.
fn with_heartbeat(fw: Firewall) -> DaemonOptions {
    let (own, peer) = match fw {
        Firewall::A => ("10.0.1.2", "10.0.1.3"),
        Firewall::B => ("10.0.1.3", "10.0.1.2"),
    };
    DaemonOptions::default()
        .link(&format!("heartbeat_listen = \"{own}:7600\""))
        .link(&format!("heartbeat_peer = \"{peer}:7600\""))
}

/// Starts both daemons and waits until A is active and B a ready standby.
fn pair(lab: &Lab, heartbeat_path: bool) -> (Daemon, Daemon) {
    let options = |fw| {
        if heartbeat_path {
            with_heartbeat(fw)
        } else {
            DaemonOptions::default()
        }
    };
    let mut a = lab.spawn_daemon(Firewall::A, &options(Firewall::A));
    let mut b = lab.spawn_daemon(Firewall::B, &options(Firewall::B));
    wait_synchronized(&mut a, &mut b, Duration::from_secs(20));
    a.wait_for("active", Duration::from_secs(5), |s| s.role == Role::Active);
    if heartbeat_path {
        for daemon in [&mut a, &mut b] {
            daemon.wait_for(
                "the peer heard on the heartbeat path",
                Duration::from_secs(5),
                |s| {
                    s.heartbeat
                        .as_ref()
                        .is_some_and(|h| h.state == LinkState::Up)
                },
            );
        }
    }
    (a, b)
}

/// Cuts the failover link: its veth down on A's side (both ends lose carrier; nothing closes
/// the TCP connections, each side notices missed hellos).
fn cut_failover_link(lab: &Lab) {
    lab.exec(Firewall::A, &["ip", "link", "set", "dev", "fo", "down"]);
}

fn role(daemon: &Daemon) -> Option<Role> {
    daemon.status().map(|s| s.role)
}

/// Polls both nodes' roles (`failoverctl status --json`'s) for `duration`: the most active at
/// once, and the last statuses.
fn most_active(a: &Daemon, b: &Daemon, duration: Duration) -> (usize, Status, Status) {
    let started = Instant::now();
    let mut most = 0;
    loop {
        let (sa, sb) = (
            a.status().expect("A answers"),
            b.status().expect("B answers"),
        );
        let active = [&sa, &sb].iter().filter(|s| s.role == Role::Active).count();
        most = most.max(active);
        if started.elapsed() >= duration {
            return (most, sa, sb);
        }
        std::thread::sleep(POLL);
    }
}

#[test]
fn a_cut_failover_link_leaves_exactly_one_active_with_the_heartbeat_path() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    let (mut a, mut b) = pair(&lab, true);
    cut_failover_link(&lab);
    let (most, sa, sb) = most_active(&a, &b, CUT);
    assert_eq!(
        most,
        1,
        "both active during the cut:\nA {sa:?}\nB {sb:?}\nA's log:\n{}\nB's log:\n{}",
        a.log(),
        b.log()
    );
    assert_eq!((sa.role, sb.role), (Role::Active, Role::Standby));
    let path = sb.heartbeat.as_ref().expect("B shows its heartbeat path");
    assert_eq!(path.state, LinkState::Up);
    assert_eq!(path.peer_role, Some(Role::Active));
    assert!(path.holds_standby, "B says why it stays standby: {path:?}");
    assert_eq!(
        sb.peer.as_ref().map(|p| p.link),
        Some(LinkState::Down),
        "the failover link is down"
    );
    assert!(sb.counters.get("heartbeat_accepted").copied().unwrap_or(0) > 0);

    // The active dies: both paths fall silent, and B takes over in the dead interval.
    let killed = Instant::now();
    a.kill9();
    let status = b.wait_for("B active", Duration::from_secs(5), |s| {
        s.role == Role::Active
    });
    let observed = killed.elapsed();
    let path = status.heartbeat.as_ref().expect("heartbeat path");
    assert_eq!(path.state, LinkState::Down);
    let events: EventList =
        serde_json::from_value(b.call(Request::Events { limit: None }).expect("B's events"))
            .expect("an event list");
    let reason = events
        .events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::Role && e.to.as_deref() == Some("active"))
        .and_then(|e| e.reason.clone())
        .expect("B's takeover event");
    assert!(reason.starts_with("peer dead: no hello for"), "{reason}");
    println!(
        "takeover after kill -9 with the failover link cut: observed after {observed:?} (dead interval {DEAD:?}, status polled every 50 ms)"
    );
    // What B measured itself: no hello on either path for about the dead interval.
    let silent_ms: u64 = reason
        .split("no hello for ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .expect("the silence in the reason");
    assert!(
        silent_ms >= DEAD.as_millis() as u64 && silent_ms < 2 * DEAD.as_millis() as u64,
        "{reason}"
    );
}

#[test]
fn control_a_cut_failover_link_without_the_heartbeat_path_makes_both_active() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    let (a, b) = pair(&lab, false);
    assert!(b.status().expect("B").heartbeat.is_none());
    cut_failover_link(&lab);
    let (most, sa, sb) = most_active(&a, &b, CUT);
    assert_eq!(most, 2, "A {sa:?}\nB {sb:?}");
    assert_eq!(role(&b), Some(Role::Active));
}
