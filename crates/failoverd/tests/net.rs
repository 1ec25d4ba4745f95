//! The takeover's thin I/O (`failoverd::net`) against the kernel: raw VRRP sockets, rtnetlink
//! and announcements.
//!
//! Every test builds its own two network namespaces, `a` and `b`, joined by a veth pair (`va`
//! in `a`, `vb` in `b`), and removes them when it ends, passing or not; so tests run in
//! parallel. A test enters a namespace only on its own thread and only to open sockets there
//! ([`Lab::in_a`]); commands name the namespace (`ip -n`). The tests need root and the programs
//! of the tool table (`crates/lab/tools.txt`); without them they are skipped with a message, except
//! under `CI=true`, where they fail.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv6Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use failoverd::net::{Announcer, LinkChange, Netlink, Received, VrrpSocket, watch_links};
use failoverd_wire::announce::{GratuitousArp, NeighbourAdvert};
use socket2::{Domain, Protocol, Socket, Type};
use support::{require_root_and_tools, tools};

use failoverd_lab as support;

/// How long a test waits for something the kernel should do at once.
const PATIENCE: Duration = Duration::from_secs(3);

const A4: &str = "192.0.2.1";
const B4: &str = "192.0.2.2";
const A6: &str = "2001:db8::1";
const B6: &str = "2001:db8::2";

// ---------------------------------------------------------------------------------------------
// Raw VRRP sockets

#[test]
fn ipv4_multicast_adverts() {
    let Some(lab) = Lab::new("v4m") else { return };
    block_on(async {
        let a = lab
            .in_a(|| VrrpSocket::open("va", lab.va, ip(A4), true))
            .unwrap();
        let b = lab
            .in_b(|| VrrpSocket::open("vb", lab.vb, ip(B4), true))
            .unwrap();
        let group = ip("224.0.0.18");
        exchange((&a, ip(A4), group), (&b, ip(B4), group)).await;
    });
}

#[test]
fn ipv4_unicast_adverts() {
    let Some(lab) = Lab::new("v4u") else { return };
    block_on(async {
        let a = lab
            .in_a(|| VrrpSocket::open("va", lab.va, ip(A4), false))
            .unwrap();
        let b = lab
            .in_b(|| VrrpSocket::open("vb", lab.vb, ip(B4), false))
            .unwrap();
        exchange((&a, ip(A4), ip(B4)), (&b, ip(B4), ip(A4))).await;
    });
}

#[test]
fn ipv6_multicast_adverts() {
    let Some(lab) = Lab::new("v6m") else { return };
    block_on(async {
        let (la, lb) = (lab.link_local("a", "va"), lab.link_local("b", "vb"));
        let a = lab
            .in_a(|| VrrpSocket::open("va", lab.va, la, true))
            .unwrap();
        let b = lab
            .in_b(|| VrrpSocket::open("vb", lab.vb, lb, true))
            .unwrap();
        let group = ip("ff02::12");
        exchange((&a, la, group), (&b, lb, group)).await;
    });
}

/// Adverts leave from the link-local source (RFC 5798 5.1.2.1) to the peer's link-local or
/// global address (imported keepalived configurations name global peers). A socket bound to
/// its link-local source never saw the second: the kernel hands a bound raw socket only
/// datagrams to that address.
#[test]
fn ipv6_unicast_adverts() {
    let Some(lab) = Lab::new("v6u") else { return };
    block_on(async {
        let (la, lb) = (lab.link_local("a", "va"), lab.link_local("b", "vb"));
        let a = lab
            .in_a(|| VrrpSocket::open("va", lab.va, la, false))
            .unwrap();
        let b = lab
            .in_b(|| VrrpSocket::open("vb", lab.vb, lb, false))
            .unwrap();
        exchange((&a, la, lb), (&b, lb, la)).await;
        exchange((&a, la, ip(B6)), (&b, lb, ip(A6))).await;
    });
}

/// `a` sends to `b`, then `b` to `a`; each side gets the other's advert with TTL 255 and the
/// addresses the IP header carried, and never its own (multicast loop is off).
async fn exchange(a: (&VrrpSocket, IpAddr, IpAddr), b: (&VrrpSocket, IpAddr, IpAddr)) {
    for ((from, src, dst), (to, _, _)) in [(a, b), (b, a)] {
        // A VRRPv3 header (version 3, advertisement, VRID 51, priority 200) and one address.
        let payload = [
            0x31,
            51,
            200,
            1,
            0,
            5,
            0x12,
            0x34,
            192,
            0,
            2,
            src.is_ipv4() as u8,
        ];
        from.send(dst, &payload).unwrap();
        let received = within(to.recv()).await.unwrap();
        let expected = Received {
            src,
            dst,
            ttl: 255,
            payload: payload.to_vec(),
        };
        assert_eq!(received, expected);
    }
}

#[test]
fn send_to_the_other_family_is_refused() {
    let Some(lab) = Lab::new("fam") else { return };
    block_on(async {
        let a = lab
            .in_a(|| VrrpSocket::open("va", lab.va, ip(A4), true))
            .unwrap();
        let error = a.send(ip("ff02::12"), &[0; 8]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        let error = lab
            .in_a(|| VrrpSocket::open("va", lab.va, ip(B4), false))
            .err()
            .expect("bound to an address the interface lacks");
        assert!(error.to_string().contains(B4), "{error}");
        let lacking = ip("fe80::dead");
        let error = lab
            .in_a(|| VrrpSocket::open("va", lab.va, lacking, false))
            .err()
            .expect("sending from a link-local address the interface lacks");
        assert!(error.to_string().contains("fe80::dead"), "{error}");
    });
}

// ---------------------------------------------------------------------------------------------
// rtnetlink

#[test]
fn link_reports_index_mac_mtu_and_carrier() {
    let Some(lab) = Lab::new("lnk") else { return };
    block_on(async {
        let netlink = lab.in_a(Netlink::connect).unwrap();
        let va = netlink.link("va").await.unwrap();
        assert_eq!(va.index, lab.va);
        assert_eq!(va.mac, lab.mac("a", "va"));
        assert_eq!(va.mtu, 1500);
        assert!(va.up);
        // The peer going down takes the carrier away.
        run("ip", &["-n", &lab.b, "link", "set", "vb", "down"]);
        assert!(!netlink.link("va").await.unwrap().up);
        let error = netlink.link("nosuch0").await.unwrap_err();
        assert!(format!("{error:#}").contains("nosuch0"), "{error:#}");
    });
}

#[test]
fn addresses_come_in_kernel_order_and_changes_are_idempotent() {
    let Some(lab) = Lab::new("adr") else { return };
    block_on(async {
        let netlink = lab.in_a(Netlink::connect).unwrap();
        netlink
            .add_address(lab.va, ip("192.0.2.5"), 24)
            .await
            .unwrap();
        netlink
            .add_address(lab.va, ip("192.0.2.5"), 24)
            .await
            .unwrap();
        let addresses = netlink.addresses(lab.va).await.unwrap();
        let v4: Vec<_> = addresses.iter().filter(|(a, _)| a.is_ipv4()).collect();
        assert_eq!(v4, [&(ip(A4), 24), &(ip("192.0.2.5"), 24)]);
        assert!(addresses.contains(&(ip(A6), 64)), "{addresses:?}");
        let link_local = lab.link_local("a", "va");
        assert!(addresses.contains(&(link_local, 64)), "{addresses:?}");

        netlink
            .remove_address(lab.va, ip("192.0.2.5"), 24)
            .await
            .unwrap();
        netlink
            .remove_address(lab.va, ip("192.0.2.5"), 24)
            .await
            .unwrap();
        let addresses = netlink.addresses(lab.va).await.unwrap();
        assert!(!addresses.contains(&(ip("192.0.2.5"), 24)), "{addresses:?}");

        let error = netlink
            .add_address(9999, ip("192.0.2.6"), 24)
            .await
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("interface 9999") && message.contains("192.0.2.6"),
            "{message}"
        );
        netlink
            .remove_address(9999, ip("192.0.2.6"), 24)
            .await
            .unwrap();
    });
}

#[test]
fn ipv6_addresses_are_usable_at_once() {
    let Some(lab) = Lab::new("dad") else { return };
    lab.sysctl("a", "net.ipv6.conf.va.accept_dad=1");
    // The control: without NODAD, the address is tentative for about a second.
    run(
        "ip",
        &["-n", &lab.a, "addr", "add", "2001:db8::98/64", "dev", "va"],
    );
    assert!(lab.is_tentative("2001:db8::98"), "the kernel did no DAD");
    block_on(async {
        let netlink = lab.in_a(Netlink::connect).unwrap();
        for _ in 0..2 {
            netlink
                .add_address(lab.va, ip("2001:db8::99"), 64)
                .await
                .unwrap();
        }
        assert!(!lab.is_tentative("2001:db8::99"));
        // A tentative address cannot be bound to.
        lab.in_a(|| UdpSocket::bind("[2001:db8::99]:0")).unwrap();
        netlink
            .remove_address(lab.va, ip("2001:db8::99"), 64)
            .await
            .unwrap();
        netlink
            .remove_address(lab.va, ip("2001:db8::99"), 64)
            .await
            .unwrap();
        let addresses = netlink.addresses(lab.va).await.unwrap();
        assert!(
            !addresses.contains(&(ip("2001:db8::99"), 64)),
            "{addresses:?}"
        );
    });
}

#[test]
fn macvlans_are_created_reused_replaced_and_deleted() {
    let Some(lab) = Lab::new("mvl") else { return };
    let vmac = [0x00, 0x00, 0x5e, 0x00, 0x01, 51];
    block_on(async {
        let netlink = lab.in_a(Netlink::connect).unwrap();
        let index = netlink
            .create_macvlan(lab.va, "vrrp51", vmac)
            .await
            .unwrap();
        let shown = run("ip", &["-n", &lab.a, "-d", "link", "show", "vrrp51"]);
        assert!(shown.contains(&format!("{index}: vrrp51@va:")), "{shown}");
        assert!(shown.contains("link/ether 00:00:5e:00:01:33"), "{shown}");
        assert!(shown.contains("macvlan mode private"), "{shown}");
        assert!(shown.contains(",UP"), "{shown}");
        let link = netlink.link("vrrp51").await.unwrap();
        assert_eq!((link.index, link.mac, link.up), (index, vmac, true));

        // Already there as wanted: reused, and set up again.
        run("ip", &["-n", &lab.a, "link", "set", "vrrp51", "down"]);
        assert_eq!(
            netlink
                .create_macvlan(lab.va, "vrrp51", vmac)
                .await
                .unwrap(),
            index
        );
        assert!(netlink.link("vrrp51").await.unwrap().up);

        // Another MAC: replaced.
        let other = [0x00, 0x00, 0x5e, 0x00, 0x01, 52];
        let replaced = netlink
            .create_macvlan(lab.va, "vrrp51", other)
            .await
            .unwrap();
        assert_eq!(netlink.link("vrrp51").await.unwrap().mac, other);

        // Not a macvlan: left alone.
        let error = netlink
            .create_macvlan(lab.va, "va", vmac)
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("not a macvlan"), "{error:#}");
        assert_eq!(netlink.link("va").await.unwrap().index, lab.va);

        netlink.delete_link(replaced).await.unwrap();
        assert!(netlink.link("vrrp51").await.is_err());
        netlink.delete_link(replaced).await.unwrap();
    });
}

#[test]
fn route_exists_means_this_prefix_in_the_main_table() {
    let Some(lab) = Lab::new("rte") else { return };
    let ip_n = |args: &[&str]| run("ip", &[&["-n", lab.a.as_str()], args].concat());
    ip_n(&["route", "add", "198.51.100.0/24", "via", B4]);
    ip_n(&["route", "add", "203.0.113.0/24", "via", B4, "table", "100"]);
    ip_n(&["route", "add", "blackhole", "203.0.113.128/25"]);
    ip_n(&["-6", "route", "add", "2001:db8:1::/48", "via", B6]);
    block_on(async {
        let netlink = lab.in_a(Netlink::connect).unwrap();
        let exists = async |destination: &str, prefix_len: u8| {
            netlink
                .route_exists(ip(destination), prefix_len)
                .await
                .unwrap()
        };
        assert!(exists("198.51.100.0", 24).await);
        assert!(exists("198.51.100.7", 24).await, "host bits are ignored");
        assert!(!exists("198.51.100.0", 25).await);
        assert!(!exists("198.51.100.0", 23).await);
        assert!(exists("192.0.2.0", 24).await, "the connected route");
        assert!(!exists("203.0.113.0", 24).await, "table 100 is not main");
        assert!(
            !exists("203.0.113.128", 25).await,
            "a blackhole forwards nothing"
        );
        assert!(exists("2001:db8:1::", 48).await);
        assert!(!exists("2001:db8:1::", 64).await);
        assert!(!exists("0.0.0.0", 0).await);
        assert!(!exists("::", 0).await);
        ip_n(&["route", "add", "default", "via", B4]);
        ip_n(&["-6", "route", "add", "default", "via", B6]);
        assert!(exists("0.0.0.0", 0).await);
        assert!(exists("::", 0).await);
    });
}

#[test]
fn watch_links_reports_carrier_changes_at_once() {
    let Some(lab) = Lab::new("wat") else { return };
    block_on(async {
        let mut changes = lab.in_a(watch_links).unwrap();
        // First every link's state.
        let mut initial = Vec::new();
        while !initial.iter().any(|c: &LinkChange| c.name == "va") {
            initial.push(within(changes.recv()).await.unwrap());
        }
        let va = |up| LinkChange {
            index: lab.va,
            name: "va".into(),
            up,
        };
        assert_eq!(initial.last(), Some(&va(true)));
        for up in [false, true] {
            let state = if up { "up" } else { "down" };
            let started = Instant::now();
            run("ip", &["-n", &lab.b, "link", "set", "vb", state]);
            loop {
                let change = within(changes.recv()).await.unwrap();
                if change == va(up) {
                    break;
                }
            }
            println!(
                "va {state}: reported {:?} after the command",
                started.elapsed()
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Announcements

#[test]
fn announcements_reach_the_link_and_update_neighbours() {
    let Some(lab) = Lab::new("ann") else { return };
    let (vip4, vip6) = ("192.0.2.10", "2001:db8::10");
    let stale_mac = "02:00:00:00:00:99";
    for vip in [vip4, vip6] {
        let args = [
            "neigh", "replace", vip, "lladdr", stale_mac, "dev", "vb", "nud", "stale",
        ];
        run("ip", &[&["-n", lab.b.as_str()], &args[..]].concat());
    }
    let mac = lab.mac("a", "va");
    let capture = lab.in_b(capture_socket).unwrap();
    block_on(async {
        let netlink = lab.in_a(Netlink::connect).unwrap();
        // The advert's source: the virtual address must be on the interface.
        netlink.add_address(lab.va, ip(vip6), 64).await.unwrap();
        let announcer = lab.in_a(Announcer::new).unwrap();
        announcer.announce(lab.va, mac, ip(vip4), false).unwrap();
        announcer.announce(lab.va, mac, ip(vip6), true).unwrap();
    });

    let arp = GratuitousArp {
        mac,
        addr: vip4.parse().unwrap(),
    };
    let advert = NeighbourAdvert {
        target: vip6.parse().unwrap(),
        mac,
        router: true,
    };
    let (mut got_arp, mut got_advert) = (false, false);
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0; 2048];
    while !(got_arp && got_advert) {
        assert!(
            Instant::now() < deadline,
            "captured ARP {got_arp}, NA {got_advert}"
        );
        let Ok(len) = (&capture).read(&mut buf) else {
            continue;
        };
        let frame = &buf[..len];
        got_arp |= GratuitousArp::parse(frame) == Ok(arp);
        if let Some(body) = icmpv6_to_all_nodes(frame, vip6.parse().unwrap())
            && NeighbourAdvert::parse(body) == Ok(advert)
        {
            assert_ne!(&body[2..4], [0, 0], "the kernel fills the checksum in");
            got_advert = true;
        }
    }

    // The receiver took both: its stale entries now point at `va`.
    let mac_text = lab.mac_text("a", "va");
    let neigh4 = run("ip", &["-n", &lab.b, "neigh", "show", vip4, "dev", "vb"]);
    assert!(neigh4.contains(&mac_text), "{neigh4}");
    let neigh6 = run(
        "ip",
        &["-n", &lab.b, "-6", "neigh", "show", vip6, "dev", "vb"],
    );
    assert!(
        neigh6.contains(&mac_text) && neigh6.contains("router"),
        "{neigh6}"
    );
}

/// An `AF_PACKET` socket that sees every frame of its namespace.
fn capture_socket() -> io::Result<Socket> {
    let all = i32::from((libc::ETH_P_ALL as u16).to_be());
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(all)))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(socket)
}

/// The ICMPv6 body of an Ethernet frame carrying IPv6 from `src` to `ff02::1` with hop limit
/// 255, as neighbour discovery requires.
fn icmpv6_to_all_nodes(frame: &[u8], src: Ipv6Addr) -> Option<&[u8]> {
    let ip = frame.get(14..54)?;
    let address = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&ip[at..at + 16]).unwrap());
    let ok = frame[12..14] == [0x86, 0xdd]
        && ip[6] == 58
        && ip[7] == 255
        && address(8) == src
        && address(24) == "ff02::1".parse::<Ipv6Addr>().unwrap();
    ok.then(|| &frame[54..])
}

// ---------------------------------------------------------------------------------------------
// The lab

/// Two network namespaces joined by a veth pair: `va` (192.0.2.1/24, 2001:db8::1/64) in `a`,
/// `vb` (192.0.2.2/24, 2001:db8::2/64) in `b`, up, without duplicate address detection (so
/// link-local addresses are usable at once). Dropping it deletes both namespaces.
struct Lab {
    a: String,
    b: String,
    va: u32,
    vb: u32,
}

impl Lab {
    /// The lab of test `test` (a short tag, unique among the tests), or `None` when the test
    /// cannot run here (see [`require_root_and_tools`]).
    fn new(test: &str) -> Option<Self> {
        if !require_root_and_tools() {
            return None;
        }
        let prefix = format!("fonet-{}-{test}", std::process::id());
        let mut lab = Self {
            a: format!("{prefix}-a"),
            b: format!("{prefix}-b"),
            va: 0,
            vb: 0,
        };
        for ns in [&lab.a, &lab.b] {
            run("ip", &["netns", "add", ns]);
            lab.sysctl_in(ns, "net.ipv6.conf.all.accept_dad=0");
            lab.sysctl_in(ns, "net.ipv6.conf.default.accept_dad=0");
        }
        let (a, b) = (lab.a.clone(), lab.b.clone());
        run(
            "ip",
            &[
                "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b,
            ],
        );
        for (ns, dev, v4, v6) in [(&a, "va", A4, A6), (&b, "vb", B4, B6)] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev],
            );
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{v6}/64"), "dev", dev],
            );
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        lab.va = index_of(&run("ip", &["-n", &a, "-o", "link", "show", "va"]));
        lab.vb = index_of(&run("ip", &["-n", &b, "-o", "link", "show", "vb"]));
        Some(lab)
    }

    /// Runs `f` with this thread in namespace `a`, so the sockets it opens live there.
    fn in_a<T>(&self, f: impl FnOnce() -> T) -> T {
        in_netns(&self.a, f)
    }

    fn in_b<T>(&self, f: impl FnOnce() -> T) -> T {
        in_netns(&self.b, f)
    }

    fn ns(&self, side: &str) -> &str {
        if side == "a" { &self.a } else { &self.b }
    }

    fn sysctl(&self, side: &str, setting: &str) {
        self.sysctl_in(self.ns(side), setting);
    }

    fn sysctl_in(&self, ns: &str, setting: &str) {
        finish(tools::netns_exec(ns, "sysctl").args(["-qw", setting]));
    }

    fn link_local(&self, side: &str, dev: &str) -> IpAddr {
        let shown = run(
            "ip",
            &[
                "-n",
                self.ns(side),
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                dev,
                "scope",
                "link",
            ],
        );
        let address = shown
            .split_whitespace()
            .skip_while(|word| *word != "inet6")
            .nth(1)
            .unwrap_or_else(|| panic!("no link-local address on {dev}: {shown}"));
        ip(address.split('/').next().unwrap())
    }

    fn mac_text(&self, side: &str, dev: &str) -> String {
        let shown = run("ip", &["-n", self.ns(side), "-o", "link", "show", dev]);
        let mac = shown
            .split_whitespace()
            .skip_while(|word| *word != "link/ether")
            .nth(1);
        mac.unwrap_or_else(|| panic!("no MAC on {dev}: {shown}"))
            .to_string()
    }

    fn mac(&self, side: &str, dev: &str) -> [u8; 6] {
        let text = self.mac_text(side, dev);
        let bytes: Vec<u8> = text
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    fn is_tentative(&self, address: &str) -> bool {
        let shown = run(
            "ip",
            &["-n", &self.a, "-6", "-o", "addr", "show", "dev", "va"],
        );
        let line = shown
            .lines()
            .find(|line| line.contains(&format!(" {address}/")))
            .unwrap_or_else(|| panic!("{address} not on va: {shown}"));
        line.contains("tentative")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = tools::command("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The interface index at the start of `ip -o link` output ("7: va@if6: ...").
fn index_of(shown: &str) -> u32 {
    let index = shown.split(':').next().unwrap_or_default().trim();
    index
        .parse()
        .unwrap_or_else(|_| panic!("no index in {shown}"))
}

/// Runs `f` with the calling thread in network namespace `ns` (made by `ip netns add`), then
/// moves the thread back, also when `f` panics.
fn in_netns<T>(ns: &str, f: impl FnOnce() -> T) -> T {
    struct Back(File);
    impl Drop for Back {
        fn drop(&mut self) {
            setns(&self.0);
        }
    }
    let _back = Back(File::open("/proc/thread-self/ns/net").expect("open own netns"));
    let path = format!("/run/netns/{ns}");
    setns(&File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}")));
    f()
}

#[allow(unsafe_code)] // setns: libc has no safe wrapper.
fn setns(ns: &File) {
    // SAFETY: `ns` is an open network namespace descriptor for the whole call; CLONE_NEWNET
    // moves only the calling thread, the test's own.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
}

/// Runs a command to completion; panics with its output when it fails.
fn run(program: &str, args: &[&str]) -> String {
    finish(tools::command(program).args(args))
}

/// Runs `command` to completion; panics with its output when it fails.
fn finish(command: &mut std::process::Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// `future`, or a panic after [`PATIENCE`].
async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("nothing within the test's patience")
}

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("not an address: {text}"))
}
