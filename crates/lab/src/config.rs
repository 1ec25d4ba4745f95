//! The one template of the `failoverd.toml` files the tests and benchmarks write: the daemons in
//! the lab's namespaces ([`crate::daemon::DaemonOptions`]), the daemons on loopback, the FRR
//! pair and the replication benchmark all render a [`ConfigFile`].

use std::path::PathBuf;

/// A daemon's configuration file: its node, its failover link and control socket, and the lines
/// each section adds. The node's key is always `node.pem` beside the file and the pair's id 7.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// `node.name`.
    pub name: String,
    /// `node.priority`.
    pub priority: u8,
    /// Lines added to `[pair]` after `id`, e.g. `backup = "asymmetric"`.
    pub pair: Vec<String>,
    /// `link.listen`.
    pub listen: String,
    /// `link.peer`.
    pub peer: String,
    /// `link.peer_key` as a TOML value: one quoted fingerprint, or a list of them.
    pub peer_key: String,
    /// Lines added to `[link]`, e.g. `reconnect_max_ms = 500`.
    pub link: Vec<String>,
    /// The lines of `[timers]`; empty: no `[timers]` section (the daemon's defaults).
    pub timers: Vec<String>,
    /// `sessions.backend`; `None`: no `[sessions]` section (the default backend).
    pub backend: Option<String>,
    /// Lines added to `[sessions]` after `backend`.
    pub sessions: Vec<String>,
    /// The lines of `[sessions.conntrack]`; empty: no such section.
    pub conntrack: Vec<String>,
    /// `control.socket`.
    pub socket: PathBuf,
    /// `log.level`.
    pub log_level: String,
    /// Whole sections appended as they are, e.g. `"[hooks]\non_active = [...]"`.
    pub extra: Vec<String>,
}

/// `key = "value"` lines with the value quoted as a TOML basic string.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

impl ConfigFile {
    /// A node `name` with `priority`, listening on `listen` for `peer` (pinned to `peer_key`, a
    /// TOML value), its control socket at `socket`; log level `info`, no other line.
    pub fn new(
        name: &str,
        priority: u8,
        listen: impl ToString,
        peer: impl ToString,
        peer_key: String,
        socket: PathBuf,
    ) -> ConfigFile {
        ConfigFile {
            name: name.to_string(),
            priority,
            pair: Vec::new(),
            listen: listen.to_string(),
            peer: peer.to_string(),
            peer_key,
            link: Vec::new(),
            timers: Vec::new(),
            backend: None,
            sessions: Vec::new(),
            conntrack: Vec::new(),
            socket,
            log_level: "info".to_string(),
            extra: Vec::new(),
        }
    }

    /// The file's text; its first line names `written_by`, the source that wrote it.
    pub fn render(&self, written_by: &str) -> String {
        let mut text = format!("# written by {written_by}\n");
        let mut section = |name: &str, lines: &[String]| {
            text.push_str(&format!("\n[{name}]\n"));
            for line in lines {
                text.push_str(line);
                text.push('\n');
            }
        };
        section(
            "node",
            &[
                format!("name = {}", quoted(&self.name)),
                "key = \"node.pem\"".to_string(),
                format!("priority = {}", self.priority),
            ],
        );
        section("pair", &[&["id = 7".to_string()], &self.pair[..]].concat());
        let link = [
            format!("listen = {}", quoted(&self.listen)),
            format!("peer = {}", quoted(&self.peer)),
            format!("peer_key = {}", self.peer_key),
        ];
        section("link", &[&link[..], &self.link[..]].concat());
        if !self.timers.is_empty() {
            section("timers", &self.timers);
        }
        if let Some(backend) = &self.backend {
            let backend = format!("backend = {}", quoted(backend));
            section("sessions", &[&[backend], &self.sessions[..]].concat());
        }
        if !self.conntrack.is_empty() {
            section("sessions.conntrack", &self.conntrack);
        }
        section(
            "control",
            &[format!(
                "socket = {}",
                quoted(&self.socket.display().to_string())
            )],
        );
        section("log", &[format!("level = {}", quoted(&self.log_level))]);
        for extra in self.extra.iter().filter(|extra| !extra.trim().is_empty()) {
            text.push('\n');
            text.push_str(extra.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_has_the_fixed_parts_and_only_the_sections_asked_for() {
        let mut file = ConfigFile::new(
            "a",
            200,
            "10.9.0.1:7500",
            "10.9.0.2:7500",
            quoted("fp"),
            PathBuf::from("/run/x/failoverd.sock"),
        );
        let plain = file.render("a test");
        assert!(plain.starts_with("# written by a test\n"), "{plain}");
        assert!(plain.contains("[pair]\nid = 7\n"), "{plain}");
        assert!(plain.contains("peer_key = \"fp\"\n"), "{plain}");
        assert!(!plain.contains("[timers]"), "{plain}");
        assert!(!plain.contains("[sessions"), "{plain}");
        file.timers.push("silence_ms = 300".to_string());
        file.backend = Some("conntrack".to_string());
        file.conntrack
            .push("exclude = [\"10.9.0.0/24\"]".to_string());
        file.extra
            .push("[vrrp]\nadvert_interval_ms = 100\n".to_string());
        let full = file.render("a test");
        assert!(full.contains("[timers]\nsilence_ms = 300\n"), "{full}");
        assert!(
            full.contains("[sessions]\nbackend = \"conntrack\"\n"),
            "{full}"
        );
        assert!(full.contains("[sessions.conntrack]\nexclude"), "{full}");
        assert!(
            full.ends_with("[vrrp]\nadvert_interval_ms = 100\n"),
            "{full}"
        );
    }
}
