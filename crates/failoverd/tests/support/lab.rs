//! The lab of `lab/lab.sh` as a guard: built by [`Lab::up`], torn down on drop (also when a test
//! panics).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use failoverd_link::Identity;

use super::conntrack::{self, Entry};
use super::daemon::{Daemon, DaemonOptions};
use super::netns;

/// The client's addresses (LAN).
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x10);
/// The server's addresses (WAN). The server has no route to the LAN.
pub const SERVER4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x100);
/// The shared SNAT addresses, held by the active firewall.
pub const SNAT4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
pub const SNAT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
/// The conntrack mark the lab ruleset sets on new connections from the LAN.
pub const LAB_MARK: u32 = 0x2a;
/// The failover link's subnet, which the daemons are told to leave alone.
pub const LINK_SUBNET: &str = "10.0.254.0/30";

/// The client's address in `family`'s.
pub fn client(v6: bool) -> IpAddr {
    if v6 { CLIENT6.into() } else { CLIENT4.into() }
}

pub fn server(v6: bool) -> IpAddr {
    if v6 { SERVER6.into() } else { SERVER4.into() }
}

pub fn snat(v6: bool) -> IpAddr {
    if v6 { SNAT6.into() } else { SNAT4.into() }
}

/// One of the two firewalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    A,
    B,
}

impl Firewall {
    pub fn name(self) -> &'static str {
        match self {
            Firewall::A => "a",
            Firewall::B => "b",
        }
    }

    pub fn other(self) -> Firewall {
        match self {
            Firewall::A => Firewall::B,
            Firewall::B => Firewall::A,
        }
    }

    /// Its failover-link address (the `fo` veth), where failoverd listens.
    pub fn link_addr(self) -> SocketAddr {
        match self {
            Firewall::A => "10.0.254.1:7500".parse().unwrap(),
            Firewall::B => "10.0.254.2:7500".parse().unwrap(),
        }
    }

    fn index(self) -> usize {
        match self {
            Firewall::A => 0,
            Firewall::B => 1,
        }
    }
}

/// A namespace of the lab (the bridge namespaces are left out: nothing runs there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    Client,
    A,
    B,
    Server,
}

impl From<Firewall> for Ns {
    fn from(fw: Firewall) -> Ns {
        match fw {
            Firewall::A => Ns::A,
            Firewall::B => Ns::B,
        }
    }
}

impl Ns {
    fn suffix(self) -> &'static str {
        match self {
            Ns::Client => "client",
            Ns::A => "a",
            Ns::B => "b",
            Ns::Server => "server",
        }
    }
}

/// `lab/lab.sh` in this repository.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/lab.sh")
}

/// A lab, up; `lab.sh down` when dropped. Daemon files (keys, configs, sockets, logs) live in
/// a temporary directory owned by the lab; each firewall's key is made once, so a daemon
/// restarted with [`Lab::spawn_daemon`] has the same identity.
pub struct Lab {
    prefix: String,
    files: tempfile::TempDir,
    identities: [Identity; 2],
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Builds a lab with a prefix unique to this process and lab: `fo<pid>x<n>`.
    pub fn up() -> Lab {
        static STALE: Once = Once::new();
        STALE.call_once(remove_stale_labs);
        let prefix = format!(
            "fo{}x{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let out = lab_sh(&["up", &prefix]);
        assert!(
            out.status.success(),
            "lab.sh up {prefix} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Lab {
            prefix,
            files: tempfile::tempdir().expect("a temporary directory"),
            identities: [Identity::generate(), Identity::generate()],
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of a lab namespace, e.g. `fo123x0-client`.
    pub fn ns(&self, ns: impl Into<Ns>) -> String {
        format!("{}-{}", self.prefix, ns.into().suffix())
    }

    /// Runs `f` on a thread inside namespace `ns` (to create sockets there).
    pub fn run_in<T: Send>(&self, ns: impl Into<Ns>, f: impl FnOnce() -> T + Send) -> T {
        netns::run_in(&self.ns(ns), f)
    }

    /// Runs `args` inside `ns` (`ip netns exec`); whatever its exit status.
    pub fn try_exec(&self, ns: impl Into<Ns>, args: &[&str]) -> Output {
        let ns = self.ns(ns);
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {ns} {args:?}: {e}"))
    }

    /// Runs `args` inside `ns` and returns its standard output; panics if it fails.
    pub fn exec(&self, ns: impl Into<Ns>, args: &[&str]) -> String {
        let ns = ns.into();
        let out = self.try_exec(ns, args);
        assert!(
            out.status.success(),
            "{}: {args:?} failed ({}): {}",
            self.ns(ns),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Sets a sysctl inside `ns` (network sysctls are per namespace).
    pub fn set_sysctl(&self, ns: impl Into<Ns>, key: &str, value: &str) {
        self.exec(ns, &["sysctl", "-qw", &format!("{key}={value}")]);
    }

    pub fn sysctl(&self, ns: impl Into<Ns>, key: &str) -> String {
        self.exec(ns, &["sysctl", "-n", key]).trim().to_string()
    }

    /// Moves the virtual gateway and the SNAT address to `to` (`lab.sh move-to`); the client
    /// and the server forget the old owner's MAC address.
    pub fn move_to(&self, to: Firewall) {
        let out = lab_sh(&["move-to", to.name(), &self.prefix]);
        assert!(
            out.status.success(),
            "lab.sh move-to {} {} failed: {}",
            to.name(),
            self.prefix,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `fw`'s kernel conntrack table (both families), with [`Entry::snat`] set.
    pub fn conntrack(&self, fw: Firewall) -> Vec<Entry> {
        let list = |extra: &[&str]| {
            let mut args = vec!["conntrack", "-L", "-o", "extended,id"];
            args.extend_from_slice(extra);
            let text = self.exec(fw, &args);
            conntrack::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", self.ns(fw)))
        };
        // All first, then the NAT ones: an entry made in between is not in the first list.
        let mut entries = list(&[]);
        let snat: std::collections::HashSet<Option<u32>> =
            list(&["--src-nat"]).into_iter().map(|e| e.id).collect();
        for entry in &mut entries {
            entry.snat = entry.id.is_some() && snat.contains(&entry.id);
        }
        entries
    }

    /// `conntrack -D ARGS` in `fw`'s namespace; the number of entries deleted (0 when none
    /// matched).
    pub fn conntrack_delete(&self, fw: Firewall, args: &[&str]) -> usize {
        let mut all = vec!["conntrack", "-D"];
        all.extend_from_slice(args);
        let out = self.try_exec(fw, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // "conntrack v1.4.7 (conntrack-tools): 2000 flow entries have been deleted."
        let deleted = stderr
            .split("): ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        match deleted {
            Some(n) => n,
            None => panic!("{}: {all:?}: {}: {stderr}", self.ns(fw), out.status),
        }
    }

    /// The directory of `fw`'s daemon files.
    pub fn daemon_dir(&self, fw: Firewall) -> PathBuf {
        self.files.path().join(fw.name())
    }

    /// Starts `failoverd` inside `fw`'s namespace (`ip netns exec`), with a configuration
    /// written from `options`; the link listens on `fw`'s failover-link address and dials the
    /// other firewall's. Killed when the returned guard is dropped.
    pub fn spawn_daemon(&self, fw: Firewall, options: &DaemonOptions) -> Daemon {
        let dir = self.daemon_dir(fw);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("node.pem");
        if !key.exists() {
            std::fs::write(&key, self.identities[fw.index()].to_pem()).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let peer_key = self.identities[fw.other().index()].fingerprint();
        let config = options.render(fw, &peer_key.to_string(), &dir);
        Daemon::spawn(&self.ns(fw), fw, &dir, &config)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = lab_sh(&["down", &self.prefix]);
        if !out.status.success() {
            eprintln!(
                "lab.sh down {}: {}",
                self.prefix,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn lab_sh(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("bash lab.sh {args:?}: {e}"))
}

/// Labs left by test processes that died without dropping them (`fo<pid>x<n>-*` whose process
/// is gone): removed, so that they do not pile up. Labs of live processes are left alone.
fn remove_stale_labs() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let mut stale = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some((prefix, _)) = name.split_once('-') else {
            continue;
        };
        let Some((pid, n)) = prefix
            .strip_prefix("fo")
            .and_then(|rest| rest.split_once('x'))
        else {
            continue;
        };
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if numeric(pid)
            && numeric(n)
            && pid != std::process::id().to_string()
            && !Path::new("/proc").join(pid).exists()
        {
            stale.insert(prefix.to_string());
        }
    }
    for prefix in stale {
        eprintln!("removing stale lab {prefix}");
        let _ = lab_sh(&["down", &prefix]);
    }
}
