//! Helpers for end-to-end tests in network namespaces: the lab of `lab/lab.sh` ([`Lab`]),
//! sockets created inside a namespace ([`netns`]), kernel conntrack listings ([`conntrack`]),
//! `failoverd` processes in the firewalls' namespaces ([`daemon`]), traffic ([`traffic`]),
//! keepalived + conntrackd as the incumbent to compare with ([`keepalived`]) and address
//! changes as they happen ([`addrwatch`]).
//!
//! Each test target that uses it declares `mod support;`; not every target uses every helper.
#![allow(dead_code)]

pub mod addrwatch;
pub mod conntrack;
pub mod daemon;
pub mod keepalived;
pub mod lab;
pub mod netns;
pub mod traffic;

use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use lab::{Firewall, HardKill, Lab, LabOptions};

/// The programs the lab and the tests run.
pub const TOOLS: &[&str] = &["bash", "ip", "nft", "conntrack", "sysctl"];

/// Whether this process may build labs: root, and every tool of [`TOOLS`] on `PATH`. When not,
/// prints `skipped: ...` and returns false, so the test can return; but when the environment
/// variable `CI` is `true` it panics instead: CI must never skip these tests silently.
pub fn require_root_and_tools() -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_string());
    }
    for tool in TOOLS {
        if !on_path(tool) {
            missing.push(format!("`{tool}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "end-to-end lab tests need {} (network namespaces, nftables, conntrack)",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}; CI=true, so this is a failure, not a skip");
    }
    println!("skipped: {why}");
    false
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| std::fs::metadata(dir.join(tool)).is_ok_and(|m| m.is_file()))
    })
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
