//! End to end, in network namespaces (`lab/lab.sh`): who owns a session survives a restart of
//! either daemon and of both (issue 10, finding 3; `docs/CONNTRACK.md`, "Ownership").
//!
//! Two kinds of flows: UDP flows from the client through A while A is active (A's), and UDP
//! flows B makes itself, from its own WAN address to the server (the standby's own traffic:
//! B's). Each kernel records the owner in the entry's mark (the owner stamp), so a restarted
//! daemon finds its own entries as its own: the peer's bulk sync does not mention them, and
//! the sweep that ends it must not delete them. Negative control: flows the peer deleted while
//! a daemon was down come back on neither node.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`); without them the test
//! prints "skipped: ..." and passes, except under `CI=true`, where it fails.

use failoverd_lab as support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use failoverd_control::protocol::Role;
use support::conntrack::{Flow, by_flow};
use support::daemon::{Daemon, DaemonOptions, quiescent, synchronized, wait_synchronized};
use support::lab::{CLIENT4, Ns, SERVER4};
use support::traffic::{UdpServer, create_udp_flows};
use support::{Firewall, Lab, require_root_and_tools, tables, wait_until};

/// B's own WAN address (`lab.sh`: host 3 of the WAN subnet).
const B_WAN4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// Server ports: kept flows, flows A deletes, flows B deletes (all answered), B's own flows
/// (unanswered).
const KEPT: u16 = 6005;
const DELETED_ON_A: u16 = 6006;
const DELETED_ON_B: u16 = 6007;
const B_OWN: u16 = 6008;
const SETTLE: Duration = Duration::from_secs(20);

fn udp_flows(src: impl Into<IpAddr>, ports: std::ops::Range<u16>, to: u16) -> Vec<Flow> {
    let src = src.into();
    ports
        .map(|p| Flow::udp(SocketAddr::new(src, p), SocketAddr::new(SERVER4.into(), to)))
        .collect()
}

/// One datagram per flow from B's own namespace (B's own traffic, not forwarded), until B's
/// table holds them all.
fn create_flows_from_b(lab: &Lab, flows: &[Flow]) {
    let wanted: BTreeSet<Flow> = flows.iter().copied().collect();
    wait_until(
        "B's own flows in B's table",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let present = by_flow(&lab.conntrack(Firewall::B), |f| wanted.contains(f));
            let missing: Vec<&Flow> = wanted.iter().filter(|f| !present.contains_key(f)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            lab.run_in(Ns::B, || {
                for flow in &missing {
                    let src = SocketAddr::new(flow.orig.src, flow.orig.sport);
                    let dst = SocketAddr::new(flow.orig.dst, flow.orig.dport);
                    let socket = UdpSocket::bind(src).unwrap_or_else(|e| panic!("bind {src}: {e}"));
                    let _ = socket.send_to(b"own", dst);
                }
            });
            Err(format!("{} of {} missing", missing.len(), wanted.len()))
        },
    );
}

/// How many of `flows` `fw` holds.
fn held(lab: &Lab, fw: Firewall, flows: &[Flow]) -> usize {
    let wanted: BTreeSet<Flow> = flows.iter().copied().collect();
    by_flow(&lab.conntrack(fw), |f| wanted.contains(f)).len()
}

/// Waits until both kernels hold every one of `flows`.
fn wait_on_both(lab: &Lab, what: &str, flows: &[Flow]) {
    wait_until(
        &format!("{what} ({}) on both nodes", flows.len()),
        SETTLE,
        Duration::from_millis(250),
        || match (held(lab, Firewall::A, flows), held(lab, Firewall::B, flows)) {
            (a, b) if a == flows.len() && b == flows.len() => Ok(()),
            (a, b) => Err(format!("A holds {a}, B holds {b}")),
        },
    );
}

/// Both daemons synchronized with nothing left to send: every bulk sync and sweep is done.
fn wait_settled(a: &mut Daemon, b: &mut Daemon) {
    wait_synchronized(a, b, SETTLE);
    a.wait_for("quiescent", SETTLE, quiescent);
    b.wait_for("quiescent", SETTLE, quiescent);
}

/// `fw`'s stamps of `flows` are all `stamp`.
fn assert_stamps(lab: &Lab, fw: Firewall, flows: &[Flow], stamp: u32) {
    let wanted: BTreeSet<Flow> = flows.iter().copied().collect();
    let table = by_flow(&lab.conntrack(fw), |f| wanted.contains(f));
    let wrong: Vec<_> = table
        .iter()
        .filter(|(_, e)| e.owner_stamp != stamp)
        .map(|(f, e)| format!("{f}: {:#x}", e.owner_stamp))
        .take(3)
        .collect();
    assert!(wrong.is_empty(), "{fw:?}: stamps not {stamp:#x}: {wrong:?}");
}

/// Active/standby: the active claims the standby's own sessions too.
#[test]
fn restarts_keep_the_sessions_each_node_owns() {
    if require_root_and_tools() {
        let (_, peers) = tables::owner_stamps();
        restart_each_then_both(&DaemonOptions::default(), peers);
    }
}

/// Both forward (`pair.backup = "asymmetric"`): nobody claims the other's sessions, so the
/// standby's own sessions are its own until it stops (today's main deletes them at its restart).
#[test]
fn asymmetric_restarts_keep_the_sessions_each_node_owns() {
    if require_root_and_tools() {
        let (own, _) = tables::owner_stamps();
        restart_each_then_both(
            &DaemonOptions::default().pair("backup = \"asymmetric\""),
            own,
        );
    }
}

/// Flows through A and B's own flows survive a restart of B, then of A, then of both; flows the
/// peer ended while a node was down stay gone. `b_own_stamp`: how B's kernel stamps its own
/// flows once A holds them.
fn restart_each_then_both(options: &DaemonOptions, b_own_stamp: u32) {
    let lab = Lab::up();
    for fw in [Firewall::A, Firewall::B] {
        lab.set_sysctl(fw, "net.netfilter.nf_conntrack_udp_timeout", "300");
        lab.set_sysctl(fw, "net.netfilter.nf_conntrack_udp_timeout_stream", "300");
    }
    let ports: Vec<SocketAddr> = [KEPT, DELETED_ON_A, DELETED_ON_B]
        .iter()
        .map(|&p| SocketAddr::new(SERVER4.into(), p))
        .collect();
    let _server = UdpServer::start(&lab, &ports, &ports);
    let mut a = lab.spawn_daemon(Firewall::A, options);
    let mut b = lab.spawn_daemon(Firewall::B, options);
    wait_synchronized(&mut a, &mut b, SETTLE);

    let through_a = udp_flows(CLIENT4, 30000..30200, KEPT);
    let deleted_on_a = udp_flows(CLIENT4, 31000..31050, DELETED_ON_A);
    let deleted_on_b = udp_flows(CLIENT4, 32000..32050, DELETED_ON_B);
    // Unanswered: in symmetric mode the active claims the standby's sessions and sends them
    // back as its own, and a copy claimed before the reply arrived would lack SEEN_REPLY
    // (refused: EBUSY, a failure of its own, not this test's).
    let b_own = udp_flows(B_WAN4, 40000..40100, B_OWN);
    create_udp_flows(
        &lab,
        Firewall::A,
        &[
            through_a.clone(),
            deleted_on_a.clone(),
            deleted_on_b.clone(),
        ]
        .concat(),
    );
    create_flows_from_b(&lab, &b_own);
    let kept = [through_a.clone(), b_own.clone()].concat();
    wait_on_both(&lab, "flows through A and B's own", &kept);
    wait_on_both(
        &lab,
        "flows to be deleted",
        &[deleted_on_a.clone(), deleted_on_b.clone()].concat(),
    );
    wait_settled(&mut a, &mut b);
    // The kernel encoding: B stamps its copies as the peer's; A holds its flows as the active
    // role's, unstamped (B adopts them if A stops). B's own flows are A's once A claimed them
    // (symmetric), else B's: B stamps a change before handing it on, so none that A holds is
    // unstamped (the kill below once caught the last few unstamped, and B's restart swept them
    // as A's).
    assert_stamps(&lab, Firewall::A, &through_a, 0);
    assert_stamps(&lab, Firewall::B, &through_a, tables::owner_stamps().1);
    assert_stamps(&lab, Firewall::B, &b_own, b_own_stamp);

    // The standby restarts; meanwhile A ends some of its flows.
    b.kill9();
    assert_eq!(
        lab.conntrack_delete(Firewall::A, &["-p", "udp", "--orig-port-dst", "6006"]),
        deleted_on_a.len()
    );
    a.wait_for("A notices B is gone", SETTLE, |s| !synchronized(s));
    let mut b = lab.spawn_daemon(Firewall::B, options);
    wait_settled(&mut a, &mut b);
    wait_on_both(
        &lab,
        "after B's restart: flows through A and B's own",
        &kept,
    );
    assert_eq!(held(&lab, Firewall::A, &deleted_on_a), 0);
    assert_eq!(
        held(&lab, Firewall::B, &deleted_on_a),
        0,
        "B keeps flows A ended while B was down"
    );
    println!("B restarted: its own {} flows kept on both", b_own.len());

    // The active restarts: B takes over (and adopts A's sessions), and ends some of them.
    a.kill9();
    b.wait_for("B takes over", SETTLE, |s| s.role == Role::Active);
    // The adoption is done once B holds A's flows as the active role's (unstamped).
    wait_until(
        "B adopts A's flows",
        SETTLE,
        Duration::from_millis(250),
        || {
            let wanted: BTreeSet<Flow> = through_a.iter().copied().collect();
            let table = by_flow(&lab.conntrack(Firewall::B), |f| wanted.contains(f));
            match table.values().filter(|e| e.owner_stamp != 0).count() {
                0 => Ok(()),
                n => Err(format!("{n} not yet")),
            }
        },
    );
    assert_eq!(
        lab.conntrack_delete(Firewall::B, &["-p", "udp", "--orig-port-dst", "6007"]),
        deleted_on_b.len()
    );
    let mut a = lab.spawn_daemon(Firewall::A, options);
    wait_settled(&mut a, &mut b);
    wait_on_both(
        &lab,
        "after A's restart: flows through A and B's own",
        &kept,
    );
    assert_eq!(held(&lab, Firewall::B, &deleted_on_b), 0);
    assert_eq!(
        held(&lab, Firewall::A, &deleted_on_b),
        0,
        "A keeps (or brings back) flows B ended while A was down"
    );
    println!("A restarted: {} flows kept on both", kept.len());

    // Both restart at once.
    a.kill9();
    b.kill9();
    let mut a = lab.spawn_daemon(Firewall::A, options);
    let mut b = lab.spawn_daemon(Firewall::B, options);
    wait_settled(&mut a, &mut b);
    wait_on_both(
        &lab,
        "after both restarted: flows through A and B's own",
        &kept,
    );
    println!("both restarted: {} flows kept on both", kept.len());
}
