//! End to end, in network namespaces: forged VRRP advertisements from a host on the LAN (the
//! lab's client namespace) against a failoverd pair (docs/TAKEOVER.md, "Threats").
//!
//! - Priority 255 with the pair's VRID: with the peer check (the default) the master keeps
//!   every address, because B says over the failover link that it is not master; with
//!   `vrrp.peer_check = false` (the control) the group goes down, as RFC 5798 says.
//! - A flood of low-priority claims (RFC behaviour, check off): the master contests them, but
//!   its gratuitous ARPs stay within `announce_repeat` per window and its adverts bounded.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`); without them each test
//! prints "skipped: ..." and passes, except under `CI=true`, where it fails.

use failoverd_lab as support;

use std::time::{Duration, Instant};

use failoverd_wire::vrrp::Advert;
use support::daemon::DaemonOptions;
use support::forger::{Forger, GarpCounter};
use support::lab::{CLIENT4, GATEWAY4, Ns};
use support::vrrp::{group_state, lan, vrrp_pair};
use support::{Firewall, Lab, require_root_and_tools, wait_until};

const POLL: Duration = Duration::from_millis(20);
/// How long each flood lasts.
const FLOOD: Duration = Duration::from_secs(3);
/// A forged advert every millisecond: 1,000 a second.
const EVERY: Duration = Duration::from_millis(1);
/// The daemons' default advert interval and announcement settings (docs/TAKEOVER.md).
const ADVERT_INTERVAL: Duration = Duration::from_millis(50);
const ANNOUNCE_REPEAT: usize = 3;
const ANNOUNCE_WINDOW: Duration = Duration::from_secs(1);
/// What the capture's timestamps may be off by: two sends seen from another namespace.
const JITTER: Duration = Duration::from_millis(10);

/// The pair's LAN advert, as a host that read one off the wire would forge it.
fn forged(priority: u8) -> Advert {
    Advert {
        vrid: 51,
        priority,
        max_advert_interval_cs: 5,
        addresses: vec![GATEWAY4.into()],
    }
}

/// The lab's VRRP instances with `vrrp.peer_check = false`: RFC 5798 as written.
fn without_the_check() -> DaemonOptions {
    DaemonOptions::default()
        .vrrp(None)
        .vrrp_line("peer_check = false")
}

#[test]
fn forged_priority_255_adverts_leave_the_checked_master_every_address() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let (mut a, b) = vrrp_pair(&lab, &DaemonOptions::default().vrrp(None));
    let before = lan(&a.status().unwrap());
    let forger = Forger::start(&lab, Ns::Client, CLIENT4, &forged(255), EVERY);
    let started = Instant::now();
    let mut checks = 0;
    while started.elapsed() < FLOOD {
        if let Err(held) = lab.only_holder(Firewall::A) {
            panic!("after {:?} of forged adverts: {held}", started.elapsed());
        }
        checks += 1;
        std::thread::sleep(POLL);
    }
    let sent = forger.stop();
    let a_status = a.wait_for("A's status", Duration::from_secs(2), |_| true);
    let b_status = b.status().expect("B's status");
    assert_eq!(group_state(&a_status), "master");
    assert_eq!(group_state(&b_status), "backup");
    let (a_lan, b_lan) = (lan(&a_status), lan(&b_status));
    let contradicted = a_lan.peer_contradicted - before.peer_contradicted;
    println!(
        "{sent} forged priority-255 adverts in {FLOOD:?}: A kept every address ({checks} checks); \
         contradicted by the peer: A {contradicted}, B {}; A's malformed_dropped {}",
        b_lan.peer_contradicted, a_lan.malformed_dropped
    );
    assert!(sent >= 1000, "the forger sent {sent}");
    // The socket queue may drop some under the flood; most reach the group.
    assert!(contradicted >= sent / 2, "A saw {contradicted} of {sent}");
    assert_eq!(
        a_lan.malformed_dropped, before.malformed_dropped,
        "valid adverts are not malformed"
    );
}

#[test]
fn without_the_peer_check_forged_priority_255_adverts_take_the_group_down() {
    // The control of the test above: the same flood, `vrrp.peer_check = false`.
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let (mut a, _b) = vrrp_pair(&lab, &without_the_check());
    let forger = Forger::start(&lab, Ns::Client, CLIENT4, &forged(255), EVERY);
    let (_, took) = wait_until("the group is down", FLOOD, POLL, || {
        (!lab.holds_any_vip(Firewall::A) && !lab.holds_any_vip(Firewall::B))
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "A {:?}, B {:?}",
                    lab.addresses(Firewall::A),
                    lab.addresses(Firewall::B)
                )
            })
    });
    let status = a.wait_for("A is backup", Duration::from_secs(2), |s| {
        group_state(s) == "backup"
    });
    assert_eq!(lan(&status).peer_contradicted, 0);
    let sent = forger.stop();
    println!(
        "without the peer check: no node holds the gateway {took:?} into the flood ({sent} sent)"
    );
    a.wait_for(
        "A is master again once the forger stops",
        Duration::from_secs(5),
        |s| group_state(s) == "master",
    );
}

#[test]
fn a_flood_of_low_priority_claims_is_not_amplified() {
    // RFC behaviour (check off): every claim contests A's mastership.
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up_without_shared();
    let (mut a, _b) = vrrp_pair(&lab, &without_the_check());
    let before = lan(&a.status().unwrap());
    let garps = GarpCounter::start(&lab, Ns::Client, GATEWAY4);
    let forger = Forger::start(&lab, Ns::Client, CLIENT4, &forged(1), EVERY);
    std::thread::sleep(FLOOD);
    let sent = forger.stop();
    let seen = garps.stop();
    let status = a.wait_for("A is master", Duration::from_secs(2), |s| {
        group_state(s) == "master"
    });
    let after = lan(&status);
    let adverts = after.adverts_sent - before.adverts_sent;
    let most_in_a_window = (0..seen.len())
        .map(|k| {
            seen[k..]
                .iter()
                .take_while(|&&t| t < seen[k] + ANNOUNCE_WINDOW - JITTER)
                .count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "{sent} forged priority-1 adverts in {FLOOD:?}: A sent {adverts} adverts on the LAN, \
         {} gratuitous ARPs for the gateway (at most {most_in_a_window} in a {ANNOUNCE_WINDOW:?} \
         window), {} answers limited",
        seen.len(),
        after.answers_limited - before.answers_limited
    );
    assert!(sent >= 1000, "the forger sent {sent}");
    assert!(!seen.is_empty(), "A reclaimed its neighbours at least once");
    assert!(
        most_in_a_window <= ANNOUNCE_REPEAT,
        "{most_in_a_window} gratuitous ARPs within {ANNOUNCE_WINDOW:?}"
    );
    // Its regular adverts, and at most one answer per interval besides (and a little slack for
    // the polls' timing).
    let bound = 2 * (FLOOD.as_millis() / ADVERT_INTERVAL.as_millis()) as u64 + 10;
    assert!(
        adverts <= bound,
        "A sent {adverts} adverts, more than {bound}"
    );
}
