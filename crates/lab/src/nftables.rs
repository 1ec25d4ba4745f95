//! nftables in the lab's firewalls, as `nft` itself shows it: load a script, list a table in
//! its stateless form (`nft -s`: no handles, counter values or expiry times), list the whole
//! ruleset; and [`sorted_elements`], for comparing two kernels' listings of one table.

use std::io::Write as _;
use std::process::Stdio;

use crate::{Firewall, Lab, tools};

/// nft's message for a table that does not exist (`strerror(ENOENT)`).
const NO_SUCH: &str = "No such file or directory";

impl Lab {
    /// Runs `script` as one `nft -f -` transaction in `fw`'s namespace; `Err` with nft's
    /// message when it fails (then nothing of it was committed).
    pub fn try_nft(&self, fw: Firewall, script: &str) -> Result<(), String> {
        let ns = self.ns(fw);
        let mut child = tools::netns_exec(&ns, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{ns}: nft -f -: {e}"));
        // Invariant: stdin was asked for as a pipe.
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(script.as_bytes())
            .unwrap_or_else(|e| panic!("{ns}: writing nft's script: {e}"));
        drop(stdin);
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{ns}: nft -f -: {e}"));
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// [`Lab::try_nft`]; panics with nft's message and the script when it fails.
    pub fn nft(&self, fw: Firewall, script: &str) {
        if let Err(message) = self.try_nft(fw, script) {
            panic!(
                "{}: nft -f - failed: {message}\nscript:\n{script}",
                self.ns(fw)
            );
        }
    }

    /// `nft -s list table F N` in `fw`'s namespace (`table` is `"F N"`, e.g. `"inet cfg"`);
    /// `None` when the table does not exist. Panics on any other failure.
    pub fn nft_table(&self, fw: Firewall, table: &str) -> Option<String> {
        let mut args = vec!["nft", "-s", "list", "table"];
        args.extend(table.split(' '));
        let out = self.try_exec(fw, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains(NO_SUCH) {
            return None;
        }
        assert!(
            out.status.success(),
            "{}: {args:?} failed ({}): {stderr}",
            self.ns(fw),
            out.status
        );
        Some(String::from_utf8(out.stdout).expect("nft lists UTF-8"))
    }

    /// `nft list ruleset` in `fw`'s namespace, as nft prints it.
    pub fn nft_ruleset(&self, fw: Firewall) -> String {
        self.exec(fw, &["nft", "list", "ruleset"])
    }
}

/// `listing` (nft's) with the elements of each `elements = { ... }` block sorted and written on
/// one line: the kernel lists a hash set in the order of its per-set seeded hash, so two
/// kernels holding the same set may list its elements in different orders. Elements holding
/// a comma or braces of their own (anonymous sets inside a map) are not supported.
pub fn sorted_elements(listing: &str) -> String {
    const OPEN: &str = "elements = {";
    let mut out = String::with_capacity(listing.len());
    let mut rest = listing;
    while let Some(at) = rest.find(OPEN) {
        let (before, after) = rest.split_at(at + OPEN.len());
        out.push_str(before);
        let Some(end) = after.find('}') else {
            rest = after;
            break;
        };
        let mut elements: Vec<&str> = after[..end]
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        elements.sort_unstable();
        out.push(' ');
        out.push_str(&elements.join(", "));
        out.push_str(" }");
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_sorted_whatever_the_order_and_wrapping() {
        let a = "table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.2, 10.0.0.1,\n\t\t\t     10.0.0.3 }\n\t}\n}\n";
        let b = "table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.3, 10.0.0.1, 10.0.0.2 }\n\t}\n}\n";
        assert_eq!(sorted_elements(a), sorted_elements(b));
        assert!(
            sorted_elements(a).contains("elements = { 10.0.0.1, 10.0.0.2, 10.0.0.3 }\n\t}"),
            "{}",
            sorted_elements(a)
        );
        // A different element is still a difference.
        let c = b.replace("10.0.0.3", "10.0.0.4");
        assert_ne!(sorted_elements(a), sorted_elements(&c));
        // Text without elements is unchanged.
        let plain = "table ip t {\n\tchain c {\n\t}\n}\n";
        assert_eq!(sorted_elements(plain), plain);
    }
}
