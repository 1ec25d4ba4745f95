//! The lab: what the end-to-end tests and the kernel benchmarks share (not published). The lab
//! of `lab/lab.sh` ([`Lab`]),
//! sockets created inside a namespace ([`netns`]), kernel conntrack listings ([`conntrack`]),
//! kernel tables read by failoverd's backend and compared on the shared field list ([`tables`]),
//! `failoverd` processes in the firewalls' namespaces ([`daemon`]), traffic ([`traffic`]),
//! keepalived + conntrackd as the incumbent to compare with ([`keepalived`]), address
//! changes as they happen ([`addrwatch`]), forged VRRP adverts from a LAN host ([`forger`]), the
//! VRRP pair and its status ([`vrrp`]) and the programs the tests run ([`tools`]).
//!
//! nftables as `nft` shows it ([`nftables`]) and configuration sync's sections and requests
//! ([`config_sync`]).
//!
//! The fault lab's seeded faults ([`faults`]) and its traffic with its oracle ([`generator`]).
//!
//! Test targets name it `support` (`use failoverd_lab as support;`).

pub mod addrwatch;
pub mod config;
pub mod config_sync;
pub mod conntrack;
pub mod daemon;
pub mod faults;
pub mod forger;
pub mod generator;
pub mod keepalived;
pub mod lab;
pub mod netns;
pub mod nftables;
pub mod tables;
pub mod tools;
pub mod traffic;
pub mod vrrp;

use std::time::{Duration, Instant};

pub use lab::{Firewall, HardKill, Lab, LabOptions};

/// The programs a lab needs (a part of the tool table, [`tools`]).
pub const TOOLS: &[&str] = &["bash", "ip", "nft", "conntrack", "sysctl"];

/// Whether this process may run the kernel tests: root, and every program of the tool table
/// ([`tools`]) installed. When not, prints `skipped: ...` naming what is missing (each program
/// with its Debian package) and returns false, so the test can return; but when the
/// environment variable `CI` is `true` it panics instead: CI must never skip these tests
/// silently.
#[allow(unsafe_code)] // geteuid: libc has no safe wrapper.
pub fn require_root_and_tools() -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_string());
    }
    missing.extend(tools::missing().iter().map(ToString::to_string));
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "the kernel tests need root and every program of crates/lab/tools.txt (.ci/run installs \
         them); missing: {}",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}; CI=true, so this is a failure, not a skip");
    }
    println!("skipped: {why}");
    false
}

/// Polls `probe` every `every` until it returns `Ok`, for at most `within`; then panics with
/// `what` and the last `Err` (which should say how far things got). Returns the value and the
/// time it took.
pub fn wait_until<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let started = Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match probe() {
            Ok(value) => return (value, started.elapsed()),
            Err(last) => {
                if started.elapsed() >= within || tries >= 100_000 {
                    panic!("{what}: not within {within:?} ({tries} tries); last: {last}");
                }
            }
        }
        std::thread::sleep(every);
    }
}
