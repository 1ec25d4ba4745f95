//! End to end, in network namespaces: failoverd's own VRRP moves the gateway and SNAT addresses
//! (docs/TAKEOVER.md), with the conntrack backend replicating the sessions. The lab is built
//! without the shared addresses (`lab.sh up --no-shared`): the VRRP speakers add them.
//!
//! The kill is abrupt: all of the active firewall's links down in one `ip -batch`, then
//! SIGKILL of everything in its namespace.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`); without them each test
//! prints "skipped: ..." and passes, except under `CI=true`, where it fails.

use failoverd_lab as support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use failoverd_control::protocol::Request;
use support::conntrack::by_flow;
use support::daemon::{Daemon, DaemonOptions, wait_synchronized};
use support::lab::Ns;
use support::lab::{SERVER4, SERVER6, SNAT6, VIPS4};
use support::traffic::{Probe, TcpEchoServer};
use support::vrrp::{group_state, is_master, vrrp_pair, vrrp_pair_with};
use support::{Firewall, Lab, require_root_and_tools, wait_until};

const ECHO_PORT: u16 = 5000;
/// A message every 10 ms on the TCP probes.
const TCP_INTERVAL: Duration = Duration::from_millis(10);
const POLL: Duration = Duration::from_millis(20);
const LINKS: [&str; 3] = ["lan", "wan", "fo"];

fn server_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SERVER4), ECHO_PORT)
}

/// A TCP stream through the virtual gateway and SNAT, echoing; waits until `fw` holds its
/// entry (replicated from the active firewall when `fw` is the standby).
fn stream(lab: &Lab, server: &TcpEchoServer, replicated_to: Option<Firewall>) -> Probe {
    let probe = Probe::tcp(lab, server.addr, TCP_INTERVAL);
    probe
        .wait_echo_from(20, Duration::from_secs(5))
        .expect("the stream works");
    if let Some(fw) = replicated_to {
        let flow = probe.flow();
        wait_until(
            &format!("{fw:?} holds the stream's entry"),
            Duration::from_secs(5),
            POLL,
            || {
                by_flow(&lab.conntrack(fw), |f| *f == flow)
                    .into_values()
                    .next()
                    .ok_or_else(|| "no entry".to_string())
            },
        );
    }
    probe
}

/// A lab with the VRRP pair (A master) and a TCP stream through the gateway and SNAT whose
/// entry B holds. Fields drop in order: the stream, the server, the daemons, then the lab;
/// bind every field when destructuring (a field left to `..` is dropped at once).
struct Streaming {
    probe: Probe,
    _server: TcpEchoServer,
    a: Daemon,
    b: Daemon,
    lab: Lab,
}

fn streaming(options: &DaemonOptions) -> Streaming {
    let lab = Lab::up_without_shared();
    let (a, b) = vrrp_pair(&lab, options);
    let server = TcpEchoServer::start(&lab, server_addr());
    let probe = stream(&lab, &server, Some(Firewall::B));
    Streaming {
        probe,
        _server: server,
        a,
        b,
        lab,
    }
}

/// Waits for an echo of a message sent from now on; returns when it came.
fn resumes(probe: &Probe, within: Duration, what: &str) -> Instant {
    let seq = probe.sent();
    probe
        .wait_echo_from(seq, within)
        .unwrap_or_else(|why| panic!("{what}: the stream did not continue: {why}"))
}

/// `[takeover]` and the lab's two instances, each with one more line.
fn instances(lan: &str, wan: &str) -> String {
    format!(
        "[takeover]\nmode = \"vrrp\"\n\n\
         [[vrrp.instance]]\nname = \"lan\"\ninterface = \"lan\"\nvrid = 51\n\
         addresses = [\"10.0.1.1/24\"]\n{lan}\n\n\
         [[vrrp.instance]]\nname = \"wan\"\ninterface = \"wan\"\nvrid = 52\n\
         addresses = [\"10.0.2.1/24\"]\n{wan}\n"
    )
}

fn links_up(lab: &Lab, fw: Firewall) {
    for link in LINKS {
        lab.exec(fw, &["ip", "link", "set", "dev", link, "up"]);
    }
}

/// The takeover, the TCP stream across it, and the failback: A (active) is killed, B takes
/// over with the stream's state; A returns, resynchronizes, and takes mastership back only
/// once ready; the streams opened before and after the first takeover both survive.
#[test]
fn vrrp_takeover_keeps_tcp_streams_and_fails_back() {
    if !require_root_and_tools() {
        return;
    }
    let options = DaemonOptions::default().vrrp(None);
    let Streaming {
        probe: before,
        _server: server,
        a: _a,
        mut b,
        lab,
    } = streaming(&options);

    let kill = lab.hard_kill_all(Firewall::A);
    let (_, took) = wait_until(
        "B takes over",
        Duration::from_secs(5),
        Duration::from_millis(2),
        || {
            lab.holds_vips(Firewall::B)
                .then_some(())
                .ok_or_else(|| "B does not hold the addresses".to_string())
        },
    );
    let resumed = resumes(&before, Duration::from_secs(5), "after the takeover");
    let gap = before.longest_gap(kill.links_down - Duration::from_millis(100), resumed);
    println!(
        "B holds the addresses {took:?} after the kill (polled every 2 ms); longest gap in the \
         stream {gap:?} (a message every {TCP_INTERVAL:?})"
    );
    b.wait_for("B is active", Duration::from_secs(2), |s| {
        is_master(s) && s.role == failoverd_control::protocol::Role::Active
    });
    let after = stream(&lab, &server, None);

    // A returns: its daemon first, with its links still down (it removes the addresses an
    // abrupt death left behind, and is in fault), then its links.
    let mut a = lab.spawn_daemon(Firewall::A, &options);
    a.wait_for("A is in fault", Duration::from_secs(5), |s| {
        group_state(s) == "fault"
    });
    assert!(
        !lab.holds_any_vip(Firewall::A),
        "the returning A holds no virtual address: {:?}",
        lab.addresses(Firewall::A)
    );
    links_up(&lab, Firewall::A);
    wait_synchronized(&mut a, &mut b, Duration::from_secs(15));
    a.wait_for("A takes mastership back", Duration::from_secs(10), |s| {
        is_master(s) && s.ready
    });
    let events = a
        .call(Request::Events { limit: None })
        .expect("A's events")
        .to_string();
    let master_at = events
        .find("role standby -> active")
        .expect("A became active");
    let ready_at = events.find(": ready").expect("A became ready");
    assert!(
        ready_at < master_at,
        "A took over only once ready: {events}"
    );
    wait_until(
        "only A holds the addresses",
        Duration::from_secs(5),
        POLL,
        || lab.only_holder(Firewall::A),
    );
    for (name, probe) in [
        ("opened before the takeover", &before),
        ("opened after it", &after),
    ] {
        resumes(
            probe,
            Duration::from_secs(5),
            &format!("failback, stream {name}"),
        );
        assert_eq!(probe.failure(), None, "stream {name}");
    }
}

/// The control: the same takeover without the stream's session (TCP is left out of the
/// replication: VRRP moves the addresses, nothing carries the kernel's state) loses the stream.
#[test]
fn vrrp_takeover_without_session_sync_loses_the_stream() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let options = DaemonOptions::default()
        .vrrp(None)
        .conntrack(r#"protocols = ["udp"]"#);
    let (_a, _b) = vrrp_pair(&lab, &options);
    let server = TcpEchoServer::start(&lab, server_addr());
    let probe = stream(&lab, &server, None);
    lab.hard_kill_all(Firewall::A);
    wait_until("B takes over", Duration::from_secs(5), POLL, || {
        lab.holds_vips(Firewall::B)
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    let seq = probe.sent();
    let outcome = probe.wait_echo_from(seq, Duration::from_secs(4));
    assert!(
        outcome.is_err(),
        "without B holding the session the stream must stop, but it continued"
    );
}

/// `failoverctl switchover` moves mastership on purpose: the stream keeps going, with at most
/// about one retransmission of gap; A stays backup while B is healthy. Maintenance on B then
/// hands back to A and keeps B backup even when A is killed.
#[test]
fn switchover_and_maintenance_hand_over_cleanly() {
    if !require_root_and_tools() {
        return;
    }
    let Streaming {
        probe,
        _server,
        mut a,
        mut b,
        lab,
    } = streaming(&DaemonOptions::default().vrrp(None));

    let asked = Instant::now();
    a.call(Request::Switchover).expect("switchover on A");
    b.wait_for("B is master", Duration::from_secs(3), is_master);
    let resumed = resumes(&probe, Duration::from_secs(3), "after the switchover");
    let gap = probe.longest_gap(asked - Duration::from_millis(100), resumed);
    println!("switchover: longest gap in the stream {gap:?}");
    assert!(gap < Duration::from_secs(1), "gap {gap:?}");
    assert!(lab.holds_vips(Firewall::B) && !lab.holds_any_vip(Firewall::A));
    std::thread::sleep(Duration::from_secs(1));
    let a_status = a.status().expect("A's status");
    assert_eq!(group_state(&a_status), "backup", "A does not preempt back");
    assert_eq!(
        a_status
            .takeover
            .group
            .as_ref()
            .unwrap()
            .not_preempting
            .as_deref(),
        Some("handed-over")
    );

    b.call(Request::Maintenance { on: true })
        .expect("maintenance on B");
    a.wait_for("A is master again", Duration::from_secs(3), is_master);
    resumes(&probe, Duration::from_secs(3), "after maintenance");
    let b_status = b.status().expect("B's status");
    assert!(b_status.takeover.group.as_ref().unwrap().maintenance);
    drop(a);
    lab.hard_kill_all(Firewall::A);
    std::thread::sleep(Duration::from_secs(1));
    let b_status = b.status().expect("B's status");
    assert_eq!(
        group_state(&b_status),
        "backup",
        "in maintenance B never takes over"
    );
    assert!(!lab.holds_any_vip(Firewall::B));
    b.call(Request::Maintenance { on: false })
        .expect("maintenance off on B");
    b.wait_for("B takes over", Duration::from_secs(3), is_master);
    b.wait_for("B is active", Duration::from_secs(2), |s| {
        s.role == failoverd_control::protocol::Role::Active
    });
}

/// Unicast peers (networks without multicast): the adverts go to the configured peer only, and
/// election and takeover work as with multicast.
#[test]
fn unicast_peers_elect_and_take_over() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let unicast = |host: u8| {
        DaemonOptions::default().extra(&instances(
            &format!("unicast_peers = [\"10.0.1.{host}\"]"),
            &format!("unicast_peers = [\"10.0.2.{host}\"]"),
        ))
    };
    let mut a = lab.spawn_daemon(Firewall::A, &unicast(3));
    let mut b = lab.spawn_daemon(Firewall::B, &unicast(2));
    wait_synchronized(&mut a, &mut b, Duration::from_secs(15));
    a.wait_for("A is master", Duration::from_secs(5), is_master);
    let b_status = b.wait_for("B hears A's unicast adverts", Duration::from_secs(5), |s| {
        s.takeover.group.as_ref().is_some_and(|g| {
            g.state == "backup"
                && g.instances.iter().all(|i| {
                    i.adverts_received > 5
                        && i.master_address.as_deref()
                            == Some(if i.name == "lan" {
                                "10.0.1.2"
                            } else {
                                "10.0.2.2"
                            })
                        && i.unicast_peers.len() == 1
                })
        })
    });
    println!("B: {:?}", b_status.takeover.group);
    let server = TcpEchoServer::start(&lab, server_addr());
    let probe = stream(&lab, &server, Some(Firewall::B));
    lab.hard_kill_all(Firewall::A);
    b.wait_for("B takes over", Duration::from_secs(3), is_master);
    resumes(&probe, Duration::from_secs(5), "after the unicast takeover");
    assert!(
        VIPS4
            .iter()
            .all(|(vip, _)| lab.holds_address(Firewall::B, *vip))
    );
}

/// IPv6 (RFC 5798 with IPv6 done right): the instances' first virtual address is link-local,
/// the addresses are usable at once (no duplicate address detection), and the new master's
/// unsolicited neighbour advertisements (override flag) move the client's and the server's
/// neighbour entries: an IPv6 TCP stream survives the kill.
#[test]
fn ipv6_vrrp_takeover_keeps_a_tcp_stream() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let options = DaemonOptions::default().vrrp(None).extra(
        "[[vrrp.instance]]\nname = \"lan6\"\ninterface = \"lan\"\nvrid = 61\n\
         addresses = [\"fe80::1/64\", \"fd00:1::1/64\"]\n\n\
         [[vrrp.instance]]\nname = \"wan6\"\ninterface = \"wan\"\nvrid = 62\n\
         addresses = [\"fe80::1/64\", \"fd00:2::1/64\"]\n",
    );
    let (_a, b) = vrrp_pair(&lab, &options);
    let b_status = b.status().expect("B's status");
    let group = b_status.takeover.group.expect("a VRRP group");
    for instance in group.instances.iter().filter(|i| i.family == "ipv6") {
        let master = instance.master_address.as_deref().unwrap_or_default();
        assert!(
            master.starts_with("fe80:"),
            "{}: IPv6 adverts come from A's link-local address, not {master:?}",
            instance.name
        );
    }
    let server = TcpEchoServer::start(&lab, SocketAddr::new(IpAddr::V6(SERVER6), ECHO_PORT));
    let probe = stream(&lab, &server, Some(Firewall::B));
    let kill = lab.hard_kill_all(Firewall::A);
    let resumed = resumes(&probe, Duration::from_secs(5), "after the IPv6 takeover");
    println!(
        "IPv6: longest gap in the stream {:?}",
        probe.longest_gap(kill.links_down - Duration::from_millis(100), resumed)
    );
    let gateway6: std::net::Ipv6Addr = "fd00:1::1".parse().unwrap();
    for vip in [gateway6, SNAT6] {
        assert!(lab.holds_address(Firewall::B, vip), "B holds {vip}");
    }
    let tentative = lab.exec(Firewall::B, &["ip", "-6", "addr", "show", "tentative"]);
    assert!(
        tentative.trim().is_empty(),
        "nothing tentative on B: {tentative}"
    );
}

/// IPv6 unicast to the peers' global addresses, as imported keepalived configurations have it:
/// the adverts leave from the link-local source, reach the peer's global address, elect one
/// master, and the backup takes over when it dies. (Each node became master while the sockets
/// were bound to their link-local source.)
#[test]
fn ipv6_unicast_to_global_peers_elect_and_take_over() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let options = |peer: u8| {
        DaemonOptions::default().vrrp(None).extra(&format!(
            "[[vrrp.instance]]\nname = \"lan6\"\ninterface = \"lan\"\nvrid = 61\n\
             addresses = [\"fe80::1/64\", \"fd00:1::1/64\"]\nunicast_peers = [\"fd00:1::{peer}\"]\n\n\
             [[vrrp.instance]]\nname = \"wan6\"\ninterface = \"wan\"\nvrid = 62\n\
             addresses = [\"fe80::1/64\", \"fd00:2::1/64\"]\nunicast_peers = [\"fd00:2::{peer}\"]\n"
        ))
    };
    let (_a, mut b) = vrrp_pair_with(&lab, &options(3), &options(2));
    let b_status = b.wait_for("B hears A's unicast adverts", Duration::from_secs(5), |s| {
        s.takeover.group.as_ref().is_some_and(|g| {
            g.state == "backup"
                && g.instances.iter().filter(|i| i.family == "ipv6").all(|i| {
                    i.adverts_received > 5
                        && i.malformed_dropped == 0
                        && i.master_address
                            .as_deref()
                            .is_some_and(|m| m.starts_with("fe80:"))
                })
        })
    });
    println!("B: {:?}", b_status.takeover.group);
    let server = TcpEchoServer::start(&lab, SocketAddr::new(IpAddr::V6(SERVER6), ECHO_PORT));
    let probe = stream(&lab, &server, Some(Firewall::B));
    lab.hard_kill_all(Firewall::A);
    b.wait_for("B takes over", Duration::from_secs(3), is_master);
    resumes(
        &probe,
        Duration::from_secs(5),
        "after the IPv6 unicast takeover",
    );
    let gateway6: std::net::Ipv6Addr = "fd00:1::1".parse().unwrap();
    for vip in [gateway6, SNAT6] {
        assert!(lab.holds_address(Firewall::B, vip), "B holds {vip}");
    }
}

/// One failed member moves the group: A's WAN link goes down (A is otherwise healthy), A's
/// group goes to fault and steps down on the LAN too with priority 0, B takes both over and
/// the stream continues through B. When the link returns, A resynchronizes and preempts back.
#[test]
fn a_failed_member_moves_the_whole_group() {
    if !require_root_and_tools() {
        return;
    }
    let Streaming {
        probe,
        _server,
        mut a,
        mut b,
        lab,
    } = streaming(&DaemonOptions::default().vrrp(None));

    let failed = Instant::now();
    lab.exec(Firewall::A, &["ip", "link", "set", "dev", "wan", "down"]);
    b.wait_for("B is master", Duration::from_secs(3), is_master);
    let resumed = resumes(&probe, Duration::from_secs(5), "after A's WAN failed");
    println!(
        "A's WAN down: B master, longest gap in the stream {:?}",
        probe.longest_gap(failed - Duration::from_millis(100), resumed)
    );
    let a_status = a.wait_for("A is in fault", Duration::from_secs(2), |s| {
        group_state(s) == "fault"
    });
    assert_eq!(
        a_status.takeover.group.unwrap().fault.as_deref(),
        Some("interface wan is down")
    );
    assert!(!lab.holds_any_vip(Firewall::A) && lab.holds_vips(Firewall::B));
    let events = a
        .call(Request::Events { limit: None })
        .expect("A's events")
        .to_string();
    for (kind, message) in [
        ("track", "tracked interface wan is down"),
        (
            "vrrp",
            "VRRP group master -> fault: fault: interface wan is down",
        ),
    ] {
        assert!(
            events.contains(&format!(r#""kind":"{kind}""#)) && events.contains(message),
            "A's events show {kind}: {message}: {events}"
        );
    }

    lab.exec(Firewall::A, &["ip", "link", "set", "dev", "wan", "up"]);
    a.wait_for("A preempts back once ready", Duration::from_secs(10), |s| {
        is_master(s) && s.ready
    });
    resumes(&probe, Duration::from_secs(5), "after A's return");
}

/// A tracked script (on A only) lowers the priority by its weight: failing on A (200 - 150 = 50), it lets
/// B (100) preempt; succeeding again, A preempts back.
#[test]
fn a_failing_track_script_lowers_the_priority() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let flag = lab.files_dir().join("upstream-ok");
    std::fs::write(&flag, "").unwrap();
    let plain = DaemonOptions::default().vrrp(None);
    let tracked = plain.clone().extra(&format!(
        "[[vrrp.track_script]]\nname = \"upstream\"\ncommand = [\"/usr/bin/test\", \"-e\", \"{}\"]\n\
         interval_ms = 100\nfall = 2\nrise = 2\nweight = 150\n",
        flag.display()
    ));
    let (mut a, mut b) = vrrp_pair_with(&lab, &tracked, &plain);
    std::fs::remove_file(&flag).unwrap();
    b.wait_for("B preempts", Duration::from_secs(5), is_master);
    let a_status = a.wait_for("A is backup", Duration::from_secs(2), |s| {
        group_state(s) == "backup"
    });
    let group = a_status.takeover.group.unwrap();
    assert_eq!(group.priority_penalty, 150);
    assert_eq!(group.instances[0].priority, 50);
    std::fs::write(&flag, "").unwrap();
    a.wait_for("A preempts back", Duration::from_secs(5), is_master);
}

/// Accept mode: with `accept = false` the master forwards through the gateway address but does
/// not answer packets addressed to it (a ping); with the default `accept = true` it does.
#[test]
fn accept_mode_off_drops_packets_to_the_virtual_address() {
    if !require_root_and_tools() {
        return;
    }
    let ping = |lab: &Lab| {
        lab.try_exec(Ns::Client, &["ping", "-c", "1", "-W", "1", "10.0.1.1"])
            .status
            .success()
    };
    let lab = Lab::up_without_shared();
    let accepting = vrrp_pair(&lab, &DaemonOptions::default().vrrp(None));
    assert!(ping(&lab), "accept mode on: the master answers 10.0.1.1");
    drop(accepting);
    drop(lab);

    let lab = Lab::up_without_shared();
    let options = DaemonOptions::default().extra(&instances("accept = false", ""));
    let _pair = vrrp_pair(&lab, &options);
    assert!(
        !ping(&lab),
        "accept mode off: the master does not answer 10.0.1.1"
    );
    let server = TcpEchoServer::start(&lab, server_addr());
    stream(&lab, &server, None);
}

/// Virtual MAC: the gateway address lives on a macvlan with 00:00:5e:00:01:<vrid>, the client
/// resolves it to that MAC, and after a takeover the MAC is the same.
#[test]
fn vmac_keeps_the_gateway_mac_across_a_takeover() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let options = DaemonOptions::default().extra(&instances("vmac = true", ""));
    let mut a = lab.spawn_daemon(Firewall::A, &options);
    let mut b = lab.spawn_daemon(Firewall::B, &options);
    wait_synchronized(&mut a, &mut b, Duration::from_secs(15));
    a.wait_for("A is VRRP master", Duration::from_secs(5), is_master);
    let vmac = "00:00:5e:00:01:33";
    let macvlan = |fw| lab.try_exec(fw, &["ip", "-o", "link", "show", "vrrp.51"]);
    assert!(
        !macvlan(Firewall::B).status.success(),
        "no macvlan on the backup"
    );
    let link = String::from_utf8_lossy(&macvlan(Firewall::A).stdout).into_owned();
    assert!(link.contains(vmac), "A's macvlan: {link}");
    let gateway_mac = |lab: &Lab| {
        // Whatever the ping's fate (the lab's ruleset names `lan`), ARP resolves the gateway.
        lab.try_exec(Ns::Client, &["ping", "-c", "1", "-W", "1", "10.0.1.1"]);
        lab.exec(Ns::Client, &["ip", "neigh", "show", "10.0.1.1"])
    };
    assert!(gateway_mac(&lab).contains(vmac), "{}", gateway_mac(&lab));
    lab.hard_kill_all(Firewall::A);
    b.wait_for("B takes over", Duration::from_secs(5), is_master);
    let on_b = lab.exec(Firewall::B, &["ip", "-o", "addr", "show", "dev", "vrrp.51"]);
    assert!(on_b.contains("10.0.1.1/24"), "on B's macvlan: {on_b}");
    assert!(gateway_mac(&lab).contains(vmac));
}

/// A tracked route with weight 0: while A has no route to 10.9.0.0/16, A is in fault and B is
/// master; once the route exists, A recovers and preempts.
#[test]
fn a_missing_tracked_route_is_a_fault() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let plain = DaemonOptions::default().vrrp(None);
    let tracked = plain
        .clone()
        .extra("[[vrrp.track_route]]\ndestination = \"10.9.0.0/16\"\n");
    let mut a = lab.spawn_daemon(Firewall::A, &tracked);
    let mut b = lab.spawn_daemon(Firewall::B, &plain);
    wait_synchronized(&mut a, &mut b, Duration::from_secs(15));
    let a_status = a.wait_for("A is in fault", Duration::from_secs(5), |s| {
        group_state(s) == "fault"
    });
    assert_eq!(
        a_status.takeover.group.unwrap().fault.as_deref(),
        Some("route 10.9.0.0/16 is down")
    );
    b.wait_for("B is master", Duration::from_secs(5), is_master);
    lab.exec(
        Firewall::A,
        &["ip", "route", "add", "10.9.0.0/16", "via", "10.0.2.100"],
    );
    a.wait_for(
        "A preempts once the route exists",
        Duration::from_secs(10),
        |s| is_master(s) && s.ready,
    );
}

/// Finding 5 (held deletes, docs/ARCHITECTURE.md): A's uplinks go down while the failover link
/// stays up, and A's kernel flushes its table at that moment, as the masquerade notifier does
/// (the lab SNATs, so the flush is explicit: `conntrack -F` right after the links). A's group
/// faults, B takes over by VRRP, and the DESTROY burst A sends over the live failover link must
/// not wipe B's copies: every stream survives on B, past the hold. Before the fix, B applied the
/// held deletes at any takeover from a live peer and deleted the sessions it was taking over.
#[test]
fn a_vrrp_fault_with_a_flush_on_the_live_peer_keeps_every_stream() {
    if !require_root_and_tools() {
        return;
    }
    const ADVERT_MS: u32 = 200;
    let lab = Lab::up_without_shared();
    let (a, mut b) = vrrp_pair(&lab, &DaemonOptions::default().vrrp(ADVERT_MS));
    let server = TcpEchoServer::start(&lab, server_addr());
    let probes: Vec<Probe> = (0..8)
        .map(|_| stream(&lab, &server, Some(Firewall::B)))
        .collect();
    let flows: Vec<_> = probes.iter().map(Probe::flow).collect();

    lab.exec(
        Firewall::A,
        &[
            "sh",
            "-c",
            "ip link set dev lan down && ip link set dev wan down && conntrack -F",
        ],
    );
    // Once A's links are down: an echo A forwarded while the command ran is not the stream
    // resuming through B (counted as such, the takeover's outage became a gap "after resuming").
    let failed = Instant::now();
    b.wait_for("B takes over", Duration::from_secs(5), is_master);
    // B's hold: twice its Master_Down_Interval (3 adverts + skew at priority 100); the streams
    // must outlive it, and every delete A sent while or after its links went down.
    let advert = Duration::from_millis(u64::from(ADVERT_MS));
    let hold = 2 * (3 * advert + advert * 156 / 256);
    for (i, probe) in probes.iter().enumerate() {
        probe
            .wait_survives(
                failed,
                hold + Duration::from_secs(1),
                Duration::from_secs(1),
                Duration::from_secs(5),
            )
            .unwrap_or_else(|why| panic!("stream {i} ({}) after A's fault: {why}", flows[i]));
    }
    let on_b = by_flow(&lab.conntrack(Firewall::B), |f| flows.contains(f));
    assert_eq!(on_b.len(), flows.len(), "B holds every stream: {on_b:?}");
    let a_status = a.status().expect("A's status");
    assert_eq!(group_state(&a_status), "fault", "A's group faulted");
    assert_eq!(
        a_status.role,
        failoverd_control::protocol::Role::Standby,
        "A stepped down"
    );
    let b_status = b.status().expect("B's status");
    println!(
        "A's fault with a flush: B master, every stream alive; B's counters {:?}",
        b_status.counters
    );
}

/// A restarted active whose peer did not take over keeps its sessions, and so does the peer.
/// B is in maintenance, so nothing moves the role while A's daemon is down (a quick restart
/// does the same when it beats VRRP's Master_Down_Interval). At start A finds its kernel's
/// entries and attributes them to B; B's bulk sync does not hold them (to B they are A's) and A's
/// holds nothing: each node's sweep removed the other's copies, the stream's entry among them,
/// until a node whose peer stayed standby claimed the entries back before its bulk sync.
#[test]
fn a_restarted_active_whose_peer_stayed_standby_keeps_every_session() {
    if !require_root_and_tools() {
        return;
    }
    // Slow adverts: the restarted A synchronizes (silence 0.3 s) well before its VRRP group
    // takes the master role (Master_Down_Interval 3.6 s).
    let options = DaemonOptions::default().vrrp(1000);
    let Streaming {
        probe,
        _server,
        mut a,
        mut b,
        lab,
    } = streaming(&options);
    b.call(Request::Maintenance { on: true })
        .expect("maintenance on B");
    let flow = probe.flow();
    a.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let mut a = lab.spawn_daemon(Firewall::A, &options);
    wait_synchronized(&mut a, &mut b, Duration::from_secs(15));
    a.wait_for("A is ready", Duration::from_secs(5), |s| s.ready);
    std::thread::sleep(Duration::from_secs(1));
    for fw in [Firewall::A, Firewall::B] {
        assert!(
            !by_flow(&lab.conntrack(fw), |f| *f == flow).is_empty(),
            "{fw:?} lost the stream's entry after A's restart"
        );
    }
    a.wait_for("A is master again", Duration::from_secs(10), is_master);
    resumes(&probe, Duration::from_secs(10), "after A's restart");
    drop(a);
}
