//! Accept mode off (RFC 5798 `Accept_Mode` false, `accept = false`): the master forwards for
//! the instance's virtual addresses but does not accept packets addressed to them. An nftables
//! table of failoverd's own drops them on input; neighbour discovery still passes. The rule
//! matters only while the addresses are local, that is while this node is master.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

const TABLE: &str = "inet failoverd_vrrp_accept";

/// Installs the table for `addresses`, replacing an earlier one; with none, only removes it.
pub(super) fn install(addresses: &[IpAddr]) -> anyhow::Result<()> {
    let list = |v6: bool| {
        addresses
            .iter()
            .filter(|a| a.is_ipv6() == v6)
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (v4, v6) = (list(false), list(true));
    // Declare, delete, define: loading it again replaces the table atomically.
    let mut script = format!("table {TABLE}\ndelete table {TABLE}\n");
    if !addresses.is_empty() {
        script.push_str(&format!(
            "table {TABLE} {{\n chain input {{\n  type filter hook input priority filter - 10; policy accept;\n"
        ));
        if !v4.is_empty() {
            script.push_str(&format!("  ip daddr {{ {v4} }} drop\n"));
        }
        if !v6.is_empty() {
            script.push_str(&format!(
                "  ip6 daddr {{ {v6} }} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept\n  ip6 daddr {{ {v6} }} drop\n"
            ));
        }
        script.push_str(" }\n}\n");
    }
    nft(&script)
}

/// Removes the table (at shutdown).
pub(super) fn remove() -> anyhow::Result<()> {
    install(&[])
}

fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("accept = false needs nft (nftables) to drop packets to the virtual addresses")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "nft refused the accept-mode table: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
