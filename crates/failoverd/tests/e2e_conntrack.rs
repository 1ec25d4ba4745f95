//! End to end, in network namespaces (`lab/lab.sh`): a client, two firewalls (A active, B
//! standby) with the lab's nftables ruleset and SNAT to a shared address, a server; real kernel
//! conntrack tables; `failoverd` with the conntrack backend in both firewalls.
//!
//! A takeover here is `lab.sh move-to b`: the virtual gateway and the SNAT address move to B
//! and the client and server forget the old MAC (VRRP's takeover is `e2e_takeover.rs`'s). A
//! connection survives it only if B's kernel already holds its entry: the ruleset accepts new
//! TCP only as a bare SYN and drops unsolicited packets to the firewall, and the first test
//! shows that without failoverd the connection does break.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`); without them each test
//! prints "skipped: ..." and passes, except under `CI=true`, where it fails.

use failoverd_lab as support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use support::conntrack::{Entry, Flow, by_flow};
use support::daemon::{
    Daemon, DaemonOptions, quiescent, replication_counters, synchronized, wait_synchronized,
};
use support::lab::{self, CLIENT4, CLIENT6, LAB_MARK, SERVER4, SERVER6, SNAT6};
use support::traffic::{Probe, TcpConnections, TcpEchoServer, UdpServer, create_udp_flows};
use support::{Firewall, Lab, require_root_and_tools, tables, wait_until};

const ECHO_PORT: u16 = 5000;
/// A message every 10 ms on the TCP probes.
const TCP_INTERVAL: Duration = Duration::from_millis(10);
const POLL: Duration = Duration::from_millis(50);

fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// Both daemons started (A priority 200, B 100) and synchronized.
fn daemons(lab: &Lab, options: &DaemonOptions) -> (Daemon, Daemon) {
    let mut a = lab.spawn_daemon(Firewall::A, options);
    let mut b = lab.spawn_daemon(Firewall::B, options);
    wait_synchronized(&mut a, &mut b, Duration::from_secs(15));
    (a, b)
}

/// `fw`'s entries for the flows of `wanted`.
fn table(lab: &Lab, fw: Firewall, wanted: &BTreeSet<Flow>) -> BTreeMap<Flow, Entry> {
    by_flow(&lab.conntrack(fw), |f| wanted.contains(f))
}

fn entry(lab: &Lab, fw: Firewall, flow: &Flow) -> Option<Entry> {
    table(lab, fw, &BTreeSet::from([*flow])).remove(flow)
}

/// Waits until `fw` holds `flow`'s entry and `check` accepts it.
fn wait_entry(
    lab: &Lab,
    fw: Firewall,
    flow: &Flow,
    within: Duration,
    check: impl Fn(&Entry) -> Result<(), String>,
) -> (Entry, Duration) {
    wait_until(&format!("{fw:?} holds {flow}"), within, POLL, || {
        let entry = entry(lab, fw, flow).ok_or("no entry")?;
        check(&entry).map(|()| entry)
    })
}

/// Waits until B's copies of `flows` equal A's sessions (all of them on A) on the shared field
/// list ([`tables::differences`]); returns how long it took.
fn wait_b_matches_a(lab: &Lab, flows: &BTreeSet<Flow>, within: Duration) -> Duration {
    let keep = |f: &Flow| flows.contains(f);
    let ((), took) = wait_until(
        &format!("B's table equals A's for {} flows", flows.len()),
        within,
        Duration::from_millis(250),
        || {
            let a = tables::select(lab.sessions(Firewall::A), keep);
            if a.len() != flows.len() {
                return Err(format!("A holds {} of the {} flows", a.len(), flows.len()));
            }
            let b = tables::select(lab.sessions(Firewall::B), keep);
            let differences = tables::differences(&a, &b, 5);
            if differences.is_empty() {
                Ok(())
            } else {
                Err(differences.join("\n"))
            }
        },
    );
    took
}

/// The entry is an established connection from the LAN, SNATed and marked by the ruleset.
fn snat_and_mark(entry: &Entry) -> Result<(), String> {
    let snat: IpAddr = lab::snat(entry.orig.src.is_ipv6());
    if entry.reply.dst != snat {
        return Err(format!(
            "reply goes to {}, not {snat}: {entry:?}",
            entry.reply.dst
        ));
    }
    if !entry.snat {
        return Err(format!(
            "no source NAT set up (IPS_SRC_NAT_DONE): {entry:?}"
        ));
    }
    if entry.mark != LAB_MARK {
        return Err(format!("mark {:#x}, not {LAB_MARK:#x}", entry.mark));
    }
    Ok(())
}

/// A TCP probe through A, checked: echoes come back, the server sees the SNAT address, A's
/// entry carries the NAT and the mark.
fn tcp_probe_through_a(lab: &Lab, server: &TcpEchoServer) -> (Probe, Entry) {
    let probe = Probe::tcp(lab, server.addr, TCP_INTERVAL);
    probe
        .wait_echo_from(20, Duration::from_secs(5))
        .expect("the stream works through A");
    let snat = lab::snat(server.addr.is_ipv6());
    let peers = server.peers();
    assert!(
        peers.len() == 1 && peers[0].ip() == snat,
        "the server sees only the SNAT address {snat}: {peers:?}"
    );
    let (on_a, _) = wait_entry(
        lab,
        Firewall::A,
        &probe.flow(),
        Duration::from_secs(2),
        |e| {
            snat_and_mark(e)?;
            if e.tcp_state.as_deref() != Some("ESTABLISHED") {
                return Err(format!("state {:?}", e.tcp_state));
            }
            Ok(())
        },
    );
    assert_eq!(on_a.reply.dport, peers[0].port(), "the server sees A's NAT");
    (probe, on_a)
}

/// Moves to B and waits for the probe to get an echo of a message sent after the move; returns
/// (first echo after the move, longest time without an echo around the move).
fn move_and_measure(lab: &Lab, probe: &Probe, within: Duration) -> (Duration, Duration) {
    let before = Instant::now();
    lab.move_to(Firewall::B);
    let moved = Instant::now();
    let seq = probe.sent();
    let resumed = probe
        .wait_echo_from(seq, within)
        .unwrap_or_else(|why| panic!("the flow did not continue through B: {why}"));
    (
        resumed.saturating_duration_since(moved),
        probe.longest_gap(before - Duration::from_millis(200), resumed),
    )
}

// ---------------------------------------------------------------------------------------------

/// The control: without failoverd, B has no entry and the connection stops at the move; moved
/// back to A it recovers, so what B lacked is the state, nothing else.
#[test]
fn tcp_connection_breaks_without_failoverd() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    let server = TcpEchoServer::start(&lab, sock(SERVER4, ECHO_PORT));
    let (probe, _) = tcp_probe_through_a(&lab, &server);
    assert!(entry(&lab, Firewall::B, &probe.flow()).is_none());

    lab.move_to(Firewall::B);
    let seq = probe.sent();
    let outcome = probe.wait_echo_from(seq, Duration::from_secs(4));
    assert!(
        outcome.is_err(),
        "the connection must not continue through B without its state, but an echo came back"
    );
    println!("through B without failoverd: {}", outcome.unwrap_err());
    let on_b = entry(&lab, Firewall::B, &probe.flow());
    assert!(
        on_b.is_none(),
        "B never accepted the mid-stream connection: {on_b:?}"
    );

    // Positive control: back to A, which still holds the entry, the stream resumes (at the
    // client's next retransmission, seconds later after the backoff).
    lab.move_to(Firewall::A);
    let back = Instant::now();
    if probe.failure().is_none() {
        let resumed = probe
            .wait_echo_from(seq, Duration::from_secs(12))
            .expect("the stream resumes through A");
        println!(
            "back through A: resumed after {:?}",
            resumed.saturating_duration_since(back)
        );
    } else {
        println!("the connection was reset: {:?}", probe.failure());
    }
}

#[test]
fn tcp_connection_survives_move_with_failoverd() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    let (mut a, mut b) = daemons(&lab, &DaemonOptions::default());
    let server = TcpEchoServer::start(&lab, sock(SERVER4, ECHO_PORT));
    let (probe, _) = tcp_probe_through_a(&lab, &server);
    let took = wait_b_matches_a(
        &lab,
        &BTreeSet::from([probe.flow()]),
        Duration::from_secs(10),
    );
    println!("B's copy equal to A's entry within {took:?}");

    let (first, gap) = move_and_measure(&lab, &probe, Duration::from_secs(8));
    println!(
        "through B: first echo {first:?} after the move; longest gap in the stream {gap:?} \
         (a message every {TCP_INTERVAL:?})"
    );
    probe
        .wait_echo_from(probe.sent(), Duration::from_secs(2))
        .expect("the stream keeps going through B");
    assert_eq!(probe.failure(), None);
    for daemon in [&mut a, &mut b] {
        daemon.wait_for("still synchronized", Duration::from_secs(2), synchronized);
    }
}

#[test]
fn flows_replicate_with_tuples_nat_and_mark() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    // No UDP entry may time out during the test (unreplied UDP: 30 s by default).
    for fw in [Firewall::A, Firewall::B] {
        lab.set_sysctl(fw, "net.netfilter.nf_conntrack_udp_timeout", "300");
    }
    let options = DaemonOptions::default()
        .conntrack(r#"protocols = ["tcp", "udp"]"#)
        .conntrack("event_buffer_bytes = 16777216");
    let (mut a, mut b) = daemons(&lab, &options);

    let ports: Vec<SocketAddr> = (6001..=6004).map(|p| sock(SERVER4, p)).collect();
    let _udp_server = UdpServer::start(&lab, &ports, &ports[..2]);
    let warm = Probe::udp(&lab, 19999, ports[0], POLL);
    warm.wait_echo_from(0, Duration::from_secs(5))
        .expect("UDP through A (neighbour caches warm)");
    drop(warm);
    let b_before = b.status().expect("B's status");

    let udp: Vec<Flow> = (0..8000u16)
        .map(|i| Flow::udp(sock(CLIENT4, 20000 + i), ports[usize::from(i) % 4]))
        .collect();
    let started = Instant::now();
    let tcp = TcpConnections::open(&lab, sock(SERVER4, 7001), 2000);
    create_udp_flows(&lab, Firewall::A, &udp);
    let flows: BTreeSet<Flow> = udp.iter().copied().chain(tcp.flows()).collect();
    assert_eq!((flows.len(), tcp.accepted()), (10_000, 2000));
    let on_a = table(&lab, Firewall::A, &flows);
    assert_eq!(on_a.len(), 10_000, "every flow on A");
    for entry in on_a.values() {
        snat_and_mark(entry).unwrap_or_else(|e| panic!("on A: {e}"));
    }
    let made = started.elapsed();

    let took = wait_b_matches_a(&lab, &flows, Duration::from_secs(20));
    println!(
        "10000 flows (8000 UDP, 2000 TCP) made on A in {made:?}; B's table equal to A's \
         {took:?} later"
    );

    // Local activity on A: delete the 2000 UDP flows to port 6003; they go from B too.
    let deleted = lab.conntrack_delete(Firewall::A, &["-p", "udp", "--orig-port-dst", "6003"]);
    assert_eq!(deleted, 2000);
    let remaining: BTreeSet<Flow> = flows
        .iter()
        .filter(|f| f.orig.dport != 6003)
        .copied()
        .collect();
    let (_, took) = wait_until(
        "the deleted flows gone from B",
        Duration::from_secs(15),
        Duration::from_millis(250),
        || {
            let left = table(&lab, Firewall::B, &flows)
                .keys()
                .filter(|f| f.orig.dport == 6003)
                .count();
            if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} of them still on B"))
            }
        },
    );
    println!("2000 deletions on A reached B's table in {took:?}");
    wait_b_matches_a(&lab, &remaining, Duration::from_secs(5));

    // No ping-pong: once both are quiescent nothing moves without traffic, and B never sent
    // back what it installed.
    let quiet = [
        a.wait_for("quiescent", Duration::from_secs(10), quiescent),
        b.wait_for("quiescent", Duration::from_secs(10), quiescent),
    ];
    let tables = [
        table(&lab, Firewall::A, &flows).len(),
        table(&lab, Firewall::B, &flows).len(),
    ];
    std::thread::sleep(Duration::from_secs(2));
    let later = [a.status().unwrap(), b.status().unwrap()];
    for (before, after) in quiet.iter().zip(&later) {
        assert_eq!(
            replication_counters(before),
            replication_counters(after),
            "{}: replication counters moved without traffic",
            after.node.name
        );
        assert_eq!(before.sessions.total, after.sessions.total);
    }
    assert_eq!(
        [
            table(&lab, Firewall::A, &flows).len(),
            table(&lab, Firewall::B, &flows).len()
        ],
        tables,
        "kernel tables stable"
    );
    assert_eq!(tables, [remaining.len(); 2]);
    let counter = |s: &failoverd_control::protocol::Status, name: &str| {
        s.counters.get(name).copied().unwrap_or(0)
    };
    let echoed = counter(&later[1], "records_sent") - counter(&b_before, "records_sent");
    assert!(
        echoed < 100,
        "B sent {echoed} records while only A had traffic: it echoes what it installs"
    );
    assert!(later[0].sessions.owned >= remaining.len() as u64);
    assert!(later[1].sessions.peer_owned >= remaining.len() as u64);
    println!(
        "quiescent: A owns {}, B holds {} of A's; B sent {echoed} records",
        later[0].sessions.owned, later[1].sessions.peer_owned
    );
}

#[test]
fn restart_of_standby_daemon_converges() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    for fw in [Firewall::A, Firewall::B] {
        lab.set_sysctl(fw, "net.netfilter.nf_conntrack_udp_timeout", "300");
    }
    let options = DaemonOptions::default();
    let (mut a, mut b) = daemons(&lab, &options);
    let ports: Vec<SocketAddr> = (6005..=6007).map(|p| sock(SERVER4, p)).collect();
    // Replies on 6005 and 6007: those entries are seen-reply, the 6006 ones unreplied.
    let _udp_server = UdpServer::start(&lab, &ports, &[ports[0], ports[2]]);
    let warm = Probe::udp(&lab, 19999, ports[0], POLL);
    warm.wait_echo_from(0, Duration::from_secs(5))
        .expect("UDP through A");
    drop(warm);

    let udp = |first: u16, to: SocketAddr| -> Vec<Flow> {
        (first..first + 1000)
            .map(|p| Flow::udp(sock(CLIENT4, p), to))
            .collect()
    };
    let kept = udp(30000, ports[2]);
    let doomed = udp(31000, ports[1]);
    let tcp = TcpConnections::open(&lab, sock(SERVER4, 7002), 200);
    create_udp_flows(&lab, Firewall::A, &[kept.clone(), doomed.clone()].concat());
    let before: BTreeSet<Flow> = kept
        .iter()
        .chain(&doomed)
        .copied()
        .chain(tcp.flows())
        .collect();
    wait_b_matches_a(&lab, &before, Duration::from_secs(15));

    // B's daemon dies; A goes on: 1000 new flows, 1000 deleted.
    b.kill9();
    let fresh = udp(32000, ports[0]);
    create_udp_flows(&lab, Firewall::A, &fresh);
    let deleted = lab.conntrack_delete(Firewall::A, &["-p", "udp", "--orig-port-dst", "6006"]);
    assert_eq!(deleted, 1000);
    let doomed: BTreeSet<Flow> = doomed.into_iter().collect();
    let stale = table(&lab, Firewall::B, &doomed).len();
    assert_eq!(
        stale, 1000,
        "without its daemon B's kernel keeps the entries deleted on A"
    );
    a.wait_for("A notices B is gone", Duration::from_secs(5), |s| {
        !synchronized(s)
    });

    let restarted = Instant::now();
    let mut b = lab.spawn_daemon(Firewall::B, &options);
    wait_synchronized(&mut a, &mut b, Duration::from_secs(15));
    let wanted: BTreeSet<Flow> = kept
        .iter()
        .chain(&fresh)
        .copied()
        .chain(tcp.flows())
        .collect();
    wait_b_matches_a(&lab, &wanted, Duration::from_secs(20));
    let (_, _) = wait_until(
        "the stale entries gone from B",
        Duration::from_secs(10),
        Duration::from_millis(250),
        || match table(&lab, Firewall::B, &doomed).len() {
            0 => Ok(()),
            n => Err(format!("{n} stale entries on B")),
        },
    );
    println!(
        "B restarted: {} flows equal to A's (the shared field list), {stale} stale ones gone, \
         {:?} after the restart",
        wanted.len(),
        restarted.elapsed()
    );
    let on_a = table(&lab, Firewall::A, &wanted);
    assert!(on_a.values().all(|e| snat_and_mark(e).is_ok()));
}

#[test]
fn udp_flow_outlives_stream_timeout_and_survives_move() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    const STREAM_TIMEOUT: &str = "net.netfilter.nf_conntrack_udp_timeout_stream";
    const UNREPLIED_TIMEOUT: &str = "net.netfilter.nf_conntrack_udp_timeout";
    let host = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream")
        .unwrap_or_default();
    for fw in [Firewall::A, Firewall::B] {
        lab.set_sysctl(fw, STREAM_TIMEOUT, "3");
        lab.set_sysctl(fw, UNREPLIED_TIMEOUT, "3");
        assert_eq!(lab.sysctl(fw, STREAM_TIMEOUT), "3");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream")
            .unwrap_or_default(),
        host,
        "the sysctl is per network namespace: the host's is unchanged"
    );
    let (mut a, mut b) = daemons(&lab, &DaemonOptions::default());
    let to = sock(SERVER4, 6001);
    let server = UdpServer::start(&lab, &[to], &[to]);
    let probe = Probe::udp(&lab, 40000, to, Duration::from_millis(200));
    probe
        .wait_echo_from(0, Duration::from_secs(5))
        .expect("UDP through A");
    let flow = probe.flow();

    // More than twice the stream timeout: B must hold the entry all along, although B's kernel
    // sees none of the flow's packets.
    let (first_on_b, _) = wait_entry(
        &lab,
        Firewall::B,
        &flow,
        Duration::from_secs(5),
        snat_and_mark,
    );
    let kept = Instant::now();
    let mut checks = 0;
    while kept.elapsed() < Duration::from_secs(7) {
        let on_a = entry(&lab, Firewall::A, &flow).expect("A holds the live flow");
        assert!(on_a.timeout <= 3, "A uses the lowered timeout: {on_a:?}");
        let on_b = entry(&lab, Firewall::B, &flow);
        assert!(
            on_b.is_some(),
            "B lost the entry {:?} after it was first there ({first_on_b:?})",
            kept.elapsed()
        );
        checks += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let on_a = entry(&lab, Firewall::A, &flow).unwrap();
    assert!(on_a.has_flag("ASSURED"), "a UDP stream by now: {on_a:?}");
    let on_b = entry(&lab, Firewall::B, &flow).expect("B holds the flow after 7 s");
    let only_flow = |f: &Flow| *f == flow;
    let differences = tables::differences(
        &tables::select(lab.sessions(Firewall::A), only_flow),
        &tables::select(lab.sessions(Firewall::B), only_flow),
        1,
    );
    assert!(
        differences.is_empty(),
        "B's copy differs from A's entry:\n{}",
        differences.join("\n")
    );
    println!("B held the entry for 7 s ({checks} checks) with a 3 s stream timeout: {on_b:?}");

    let (first, gap) = move_and_measure(&lab, &probe, Duration::from_secs(3));
    println!("through B: first reply {first:?} after the move, longest gap {gap:?}");
    // The entry B used is the one it held (not a new one made by the first packet).
    let after = entry(&lab, Firewall::B, &flow).expect("B holds the flow");
    assert_eq!(
        (after.id, after.reply),
        (on_b.id, on_b.reply),
        "B used the replicated entry"
    );
    assert_eq!(
        server.peers().len(),
        1,
        "the server saw one peer: {:?}",
        server.peers()
    );
    for daemon in [&mut a, &mut b] {
        daemon.wait_for("still synchronized", Duration::from_secs(2), synchronized);
    }
}

#[test]
fn standby_delete_of_peer_entry_keeps_owner_session() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    let (mut a, _b) = daemons(&lab, &DaemonOptions::default());
    let server = TcpEchoServer::start(&lab, sock(SERVER4, ECHO_PORT));
    let (probe, on_a) = tcp_probe_through_a(&lab, &server);
    let flow = probe.flow();
    wait_entry(
        &lab,
        Firewall::B,
        &flow,
        Duration::from_secs(10),
        |_| Ok(()),
    );

    delete_copy_on_b(&lab, &flow);
    let deleted_at = Instant::now();
    let seq = probe.sent();
    // For 1.5 s A keeps its entry, the same one, and the connection keeps working through it.
    let mut checks = 0;
    while deleted_at.elapsed() < Duration::from_millis(1500) {
        let now_on_a = entry(&lab, Firewall::A, &flow).expect("A keeps the owner's entry");
        assert_eq!(now_on_a.id, on_a.id, "the same entry on A");
        checks += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    probe
        .wait_echo_from(seq + 50, Duration::from_secs(2))
        .expect("the connection keeps working through A");
    assert_eq!(probe.failure(), None);
    a.wait_for("A still synchronized", Duration::from_secs(2), synchronized);
    println!(
        "B's copy deleted; A kept its entry ({checks} checks) and the stream ({} echoes)",
        probe.echoes()
    );
}

#[test]
fn ipv6_flows_replicate() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    let (_a, _b) = daemons(&lab, &DaemonOptions::default());
    let server = TcpEchoServer::start(&lab, sock(SERVER6, ECHO_PORT));
    let (probe, _) = tcp_probe_through_a(&lab, &server);
    let to = sock(SERVER6, 6001);
    let _udp_server = UdpServer::start(&lab, &[to], &[to]);
    let udp: Vec<Flow> = (20000..20100)
        .map(|p| Flow::udp(sock(CLIENT6, p), to))
        .collect();
    create_udp_flows(&lab, Firewall::A, &udp);
    let flows: BTreeSet<Flow> = udp.iter().copied().chain([probe.flow()]).collect();
    let took = wait_b_matches_a(&lab, &flows, Duration::from_secs(10));
    let on_a = table(&lab, Firewall::A, &flows);
    for entry in on_a.values() {
        assert_eq!(entry.family, "ipv6");
        assert_eq!(entry.reply.dst, IpAddr::from(SNAT6), "SNAT to {SNAT6}");
        assert_eq!(entry.mark, LAB_MARK);
    }
    println!(
        "{} IPv6 flows on B {took:?} after they were on A",
        on_a.len()
    );

    let (first, gap) = move_and_measure(&lab, &probe, Duration::from_secs(8));
    println!("IPv6 TCP through B: first echo {first:?} after the move, longest gap {gap:?}");
}

/// Anti-entropy: B's copy of a live session, deleted behind the daemons' backs (the delete on
/// the standby is not replicated, and no event tells A), comes back from the digest comparison.
#[test]
fn anti_entropy_restores_a_copy_deleted_on_the_standby() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    let options = DaemonOptions::default().sessions("digest_interval_ms = 1000");
    let (_a, b) = daemons(&lab, &options);
    let server = TcpEchoServer::start(&lab, sock(SERVER4, ECHO_PORT));
    let (probe, _on_a) = tcp_probe_through_a(&lab, &server);
    let flow = probe.flow();
    wait_entry(
        &lab,
        Firewall::B,
        &flow,
        Duration::from_secs(10),
        |_| Ok(()),
    );
    delete_copy_on_b(&lab, &flow);
    let deleted_at = Instant::now();
    // Two digest rounds find it; the resync writes it back.
    wait_entry(
        &lab,
        Firewall::B,
        &flow,
        Duration::from_secs(10),
        |_| Ok(()),
    );
    let repaired_in = deleted_at.elapsed();
    let status = b.status().expect("B's status");
    assert!(
        status.counters["drift_repairs"] >= 1,
        "{:?}",
        status.counters
    );
    assert_eq!(probe.failure(), None);
    println!("B's deleted copy restored by anti-entropy in {repaired_in:?}");
}

/// Conntrack settings that should match are compared at negotiation, and a difference is an
/// event (and a warning in the log) on both nodes.
#[test]
fn differing_conntrack_settings_are_reported() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    lab.set_sysctl(Firewall::B, "net.netfilter.nf_conntrack_tcp_loose", "0");
    let (a, b) = daemons(&lab, &DaemonOptions::default());
    for daemon in [&a, &b] {
        let events = daemon
            .call(failoverd_control::protocol::Request::Events { limit: None })
            .expect("events");
        let text = events.to_string();
        assert!(
            text.contains("setting-differs") && text.contains("nf_conntrack_tcp_loose"),
            "{text}"
        );
        assert!(
            !text.contains("nf_conntrack_max"),
            "equal settings are not reported: {text}"
        );
    }
}

/// Deletes B's copy of the probe connection `flow` (client to the echo port) behind the daemons'
/// backs, as an operator's `conntrack -D` would.
fn delete_copy_on_b(lab: &Lab, flow: &Flow) {
    let sport = flow.orig.sport.to_string();
    let deleted = lab.conntrack_delete(
        Firewall::B,
        &[
            "-p",
            "tcp",
            "--orig-src",
            &CLIENT4.to_string(),
            "--orig-port-src",
            &sport,
            "--orig-port-dst",
            &ECHO_PORT.to_string(),
        ],
    );
    assert_eq!(deleted, 1, "B's copy deleted");
}
