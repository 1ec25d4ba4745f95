//! End to end: the real `failoverctl` binary against a fake daemon built on the control
//! crate's own `serve`, checking output, requests and exit codes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

use failoverd_control::protocol::{
    BackendKind, BackupMode, EventKind, EventList, EventView, FailoverRole, FailoverState, Family,
    MaintenanceDone, NodeId, NodeInfo, Replication, Request, Response, SessionCounts, SessionList,
    Status, TakeoverKind, TakeoverStatus, TrackKind, TrackView, VrrpDropsView, VrrpGroupView,
    VrrpInstanceView, VrrpPeerState, VrrpState,
};
use failoverd_control::transport;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

fn status() -> Status {
    Status {
        node: NodeInfo {
            name: "fw-a".into(),
            node_id: NodeId(0x1000_abcd),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
            pair_id: 1,
            priority: 100,
            backup: BackupMode::Symmetric,
            preempt: true,
            backend: BackendKind::Memory,
        },
        state: FailoverState::Synchronization,
        state_since_ms: 12_345,
        role: FailoverRole::Active,
        ready: true,
        not_ready: vec![],
        peer: None,
        sessions: SessionCounts::default(),
        replication: Replication::default(),
        counters: BTreeMap::from([("hellos_sent".to_string(), 7)]),
        uptime_ms: 60_000,
        heartbeat: None,
        takeover: TakeoverStatus {
            mode: TakeoverKind::Vrrp,
            group: Some(VrrpGroupView {
                state: VrrpState::Backup,
                reason: "higher-priority master 10.0.1.3".into(),
                ready_to_preempt: false,
                not_preempting: Some("not ready: no bulk sync from the peer yet".into()),
                maintenance: false,
                peer_check: true,
                peer: VrrpPeerState::Master,
                silent_intervals: 3,
                priority_penalty: 0,
                fault: None,
                instances: vec![VrrpInstanceView {
                    name: "lan".into(),
                    interface: "eth1".into(),
                    vrid: 51,
                    family: Family::Ipv4,
                    state: VrrpState::Backup,
                    priority: 100,
                    configured_priority: 100,
                    advert_interval_ms: 50,
                    master_address: Some("10.0.1.3".into()),
                    master_priority: Some(200),
                    addresses: vec!["10.0.1.1/24".into()],
                    holds_addresses: false,
                    unicast_peers: vec![],
                    adverts_sent: 0,
                    adverts_received: 1200,
                    malformed_dropped: 2,
                    dropped: VrrpDropsView {
                        checksum: 2,
                        ..VrrpDropsView::default()
                    },
                    became_master: 0,
                    ..VrrpInstanceView::default()
                }],
                tracks: vec![TrackView {
                    kind: TrackKind::Script,
                    name: "upstream".into(),
                    up: true,
                    weight: 20,
                }],
            }),
            routing: None,
            hooks: None,
        },
    }
}

/// A daemon stand-in on a socket in a temporary directory; records the requests it gets.
struct FakeDaemon {
    dir: tempfile::TempDir,
    socket: PathBuf,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeDaemon {
    fn start() -> FakeDaemon {
        Self::start_with(respond)
    }

    /// A daemon answering with `respond`.
    fn start_with(respond: fn(Request) -> Response) -> FakeDaemon {
        Self::start_with_access(respond, transport::Access::new(None))
    }

    /// A daemon answering with `respond`, letting `access` change state.
    fn start_with_access(
        respond: fn(Request) -> Response,
        access: transport::Access,
    ) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("failoverd.sock");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let socket = socket.clone();
            let requests = requests.clone();
            thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = transport::bind(&socket).unwrap();
                    ready_tx.send(()).unwrap();
                    let (handler, mut incoming): (transport::RequestSender, _) = mpsc::channel(8);
                    tokio::spawn(async move {
                        while let Some((request, answer)) = incoming.recv().await {
                            requests.lock().unwrap().push(request.clone());
                            let _ = answer.send(respond(request).into());
                        }
                    });
                    transport::serve(listener, handler, access, async {
                        let _ = stopped.await;
                    })
                    .await;
                });
            })
        };
        ready_rx.recv().unwrap();
        FakeDaemon {
            dir,
            socket,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn respond(request: Request) -> Response {
    match request {
        Request::Status => Response::ok(&status()),
        Request::Sessions { .. } => Response::ok(&SessionList {
            total: 3,
            matched: 0,
            sessions: vec![],
        }),
        Request::Events { .. } => Response::ok(&EventList {
            events: vec![EventView {
                at_ms: 1500,
                kind: EventKind::State,
                from: Some("silence".into()),
                to: Some("independence".into()),
                reason: Some("silence timer expired".into()),
                message: "state silence -> independence: silence timer expired".into(),
            }],
        }),
        Request::Switchover => Response::error("switchover refused: the peer is not ready"),
        Request::Maintenance { on: true } => Response::ok(&MaintenanceDone {
            message: "maintenance on: stepping down; the peer takes over".into(),
        }),
        Request::Maintenance { on: false } => Response::error("maintenance is not on"),
        Request::ConfigStatus => Response::Ok(golden("config_status_failed.json")),
        Request::ConfigDiff => Response::Ok(golden("config_diff.json")),
        Request::ConfigSync => Response::Ok(golden("config_sync_refused.json")),
        other => Response::error(format!("not in this test: {other:?}")),
    }
}

/// The control crate's golden answer `name`.
fn golden(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../control/tests/golden")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A daemon whose config sync accepts.
fn respond_sync_accepted(request: Request) -> Response {
    match request {
        Request::ConfigSync => Response::Ok(golden("config_sync_accepted.json")),
        other => respond(other),
    }
}

fn failoverctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_failoverctl"))
        .args(args)
        .output()
        .unwrap()
}

fn with_socket<'a>(daemon: &'a FakeDaemon, args: &[&'a str]) -> Output {
    let mut all = vec!["--socket", daemon.socket.to_str().unwrap()];
    all.extend_from_slice(args);
    failoverctl(&all)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn status_json_is_the_data_on_one_line() {
    let daemon = FakeDaemon::start();
    let output = with_socket(&daemon, &["status", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    let printed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(printed, serde_json::to_value(status()).unwrap());
    assert_eq!(printed["node"]["name"], json!("fw-a"));
    assert_eq!(printed["state"], json!("synchronization"));
    assert_eq!(daemon.requests(), [Request::Status]);
}

#[test]
fn human_status_and_events() {
    let daemon = FakeDaemon::start();
    let output = with_socket(&daemon, &["status"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(
            "node          fw-a (1000abcd)  state synchronization (12.3 s)  role active  ready yes\n"
        ),
        "{text}"
    );
    assert!(text.contains("\ncounters      hellos_sent  7\n"), "{text}");
    let output = with_socket(&daemon, &["events", "--limit", "5"]);
    assert_eq!(
        stdout(&output),
        "1.500 s  state          state silence -> independence: silence timer expired\n"
    );
    assert_eq!(daemon.requests()[1], Request::Events { limit: Some(5) });
}

#[test]
fn human_status_shows_the_vrrp_group() {
    let daemon = FakeDaemon::start();
    let output = with_socket(&daemon, &["status"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains(
            "\
takeover      vrrp  group backup (higher-priority master 10.0.1.3)
              ready to preempt no  maintenance off  priority penalty 0  peer check on (peer master)  silent networks: the link decides after 3 intervals
              not preempting: not ready: no bulk sync from the peer yet
instances     lan  on eth1  vrid 51  ipv4  backup  priority 100  master 10.0.1.3 (200)  not holding 10.0.1.1/24  adverts every 50 ms: 0 sent 1200 received 2 malformed  port hears nothing  2 checksum
tracks        script  upstream  up  priority -20 while down
sessions "
        ),
        "{text}"
    );
    let output = with_socket(&daemon, &["status", "--json"]);
    let printed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        printed["takeover"]["group"]["instances"][0]["vrid"],
        json!(51)
    );
    assert_eq!(printed["takeover"]["routing"], json!(null));
}

/// A daemon from before takeover: its status has no `takeover`.
fn respond_without_takeover(request: Request) -> Response {
    let mut data = serde_json::to_value(status()).unwrap();
    data.as_object_mut().unwrap().remove("takeover");
    match request {
        Request::Status => Response::Ok(data),
        other => respond(other),
    }
}

#[test]
fn status_from_a_daemon_without_takeover() {
    let daemon = FakeDaemon::start_with(respond_without_takeover);
    let output = with_socket(&daemon, &["status"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains("takeover"), "{text}");
    assert!(text.contains("\ncounters      hellos_sent  7\n"), "{text}");
    // --json prints what the daemon sent: no takeover added.
    let output = with_socket(&daemon, &["--json", "status"]);
    let printed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(printed.get("takeover"), None);
}

#[test]
fn maintenance_on_and_off() {
    let daemon = FakeDaemon::start();
    let output = with_socket(&daemon, &["maintenance", "on"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "maintenance on: stepping down; the peer takes over\n"
    );
    let output = with_socket(&daemon, &["maintenance", "on", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "{\"message\":\"maintenance on: stepping down; the peer takes over\"}\n"
    );
    let output = with_socket(&daemon, &["maintenance", "off"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "failoverctl: failoverd: maintenance is not on\n"
    );
    assert_eq!(
        daemon.requests(),
        [
            Request::Maintenance { on: true },
            Request::Maintenance { on: true },
            Request::Maintenance { on: false }
        ]
    );
    let output = failoverctl(&["maintenance", "maybe"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("possible values: on, off"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sessions_filters_reach_the_daemon() {
    let daemon = FakeDaemon::start();
    let output = with_socket(&daemon, &["sessions", "--proto", "udp", "--owner", "peer"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "no matching sessions (3 in the table)\n");
    let Request::Sessions { filter, limit } = &daemon.requests()[0] else {
        panic!("{:?}", daemon.requests());
    };
    assert_eq!(filter.proto.as_deref(), Some("udp"));
    assert_eq!(*limit, Some(100));
}

#[test]
fn daemon_errors_exit_1() {
    let daemon = FakeDaemon::start();
    let output = with_socket(&daemon, &["switchover"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "failoverctl: failoverd: switchover refused: the peer is not ready\n"
    );
}

#[test]
fn no_daemon_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let output = failoverctl(&["--socket", socket.to_str().unwrap(), "status"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "failoverctl: cannot connect to {}: is failoverd running? (No such file or directory)\n",
            socket.display()
        )
    );
}

#[test]
fn usage_errors_exit_2() {
    let output = failoverctl(&["sessions", "--port", "http"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--port"), "{}", stderr(&output));
    assert_eq!(failoverctl(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn the_socket_comes_from_the_config_file() {
    let daemon = FakeDaemon::start();
    let config = daemon.dir.path().join("failoverd.toml");
    let text = failoverd_control::Config::example()
        .replace("/run/failoverd/failoverd.sock", "failoverd.sock");
    std::fs::write(&config, text).unwrap();
    let output = failoverctl(&["--config", config.to_str().unwrap(), "--json", "status"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    std::fs::write(&config, "[node]\nname = 5\n").unwrap();
    let output = failoverctl(&["--config", config.to_str().unwrap(), "status"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "failoverctl: {}:2:8: node.name = 5: must be a name of 1 to 64 characters\n",
            config.display()
        )
    );
}

#[test]
fn config_status_and_diff() {
    let daemon = FakeDaemon::start();
    let output = with_socket(&daemon, &["config", "status"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with("config sync   mode auto  part replica  status not-auto (the last sync failed: nftables inet filter; the next change retries)\n"),
        "{text}"
    );
    assert!(
        text.contains("\nfailed        nftables inet filter at 2026-12-08 00:01:00 UTC\n                Error: Could not process rule: No such file or directory\n"),
        "{text}"
    );
    let output = with_socket(&daemon, &["config", "status", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(printed, golden("config_status_failed.json"));
    let output = with_socket(&daemon, &["config", "diff"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("\n+\t\ttcp dport 8080 accept\n"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).ends_with("\n1 of 2 units differ\n"));
    assert_eq!(
        daemon.requests(),
        [
            Request::ConfigStatus,
            Request::ConfigStatus,
            Request::ConfigDiff
        ]
    );
}

/// A refused sync exits 1, with and without --json; the control: an accepted one exits 0.
#[test]
fn config_sync_refused_exits_1() {
    let daemon = FakeDaemon::start();
    let output = with_socket(&daemon, &["config", "sync"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "failoverctl: config sync refused: this node is not the configuration source: the active node (2000abcd) is\n"
    );
    let output = with_socket(&daemon, &["config", "sync", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "{\"accepted\":false,\"message\":\"this node is not the configuration source: the active node (2000abcd) is\"}\n"
    );
    assert_eq!(
        daemon.requests(),
        [Request::ConfigSync, Request::ConfigSync]
    );

    let daemon = FakeDaemon::start_with(respond_sync_accepted);
    let output = with_socket(&daemon, &["config", "sync"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "full sync of 2 units to node 2000abcd started\n"
    );
    let output = with_socket(&daemon, &["config", "sync", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn keygen_writes_a_private_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("node.pem");
    let out_arg = out.to_str().unwrap();
    let output = failoverctl(&["keygen", "--out", out_arg, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let info: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(info["path"], json!(out_arg));
    let fingerprint = info["fingerprint"].as_str().unwrap();
    assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 71);
    assert_eq!(info["node_id"].as_str().unwrap(), &fingerprint[7..15]);
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = std::fs::read(&out).unwrap();

    let output = failoverctl(&["keygen", "--out", out_arg]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("exists; pass --force"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&out).unwrap(), key);

    let output = failoverctl(&["keygen", "--out", out_arg, "--force"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!("wrote {out_arg} (mode 0600)\n")),
        "{text}"
    );
    assert!(text.contains("\npeer_key = \"sha256:"), "{text}");
    assert_ne!(std::fs::read(&out).unwrap(), key);
    assert!(Path::new(&out).exists());
}

/// Runs `failoverctl` as `nobody`, with the supplementary groups `groups` (setpriv).
fn as_nobody(daemon: &FakeDaemon, groups: &str, args: &[&str]) -> Output {
    // The test's temporary directory is 0700: let the unprivileged client reach the socket.
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534"])
        .arg(groups)
        .arg(env!("CARGO_BIN_EXE_failoverctl"))
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .output()
        .expect("run setpriv (util-linux)")
}

/// Changing users needs root: skipped without it, except in CI.
fn running_as_root() -> bool {
    let uid = Command::new("id").arg("-u").output().expect("run id");
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "this test must run as root in CI"
    );
    eprintln!("skipped: needs root to run failoverctl as another user");
    false
}

/// Issue 11, item 7: any local user reads the status and the events, but only root (and the
/// control group) may switch over or list the sessions: the daemon checks the client's credentials (SO_PEERCRED, SO_PEERGROUPS).
/// The controls: root's switchover reaches the daemon, and so does nobody's once in the group.
#[test]
fn an_unprivileged_user_reads_the_status_but_cannot_switch_over() {
    if !running_as_root() {
        return;
    }
    const GROUP: u32 = 4242;
    let daemon = FakeDaemon::start_with_access(
        respond,
        transport::Access {
            owner: 0,
            group: Some(GROUP),
        },
    );
    let output = as_nobody(&daemon, "--clear-groups", &["status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("fw-a"));

    let output = as_nobody(&daemon, "--clear-groups", &["switchover"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("permission denied: switchover needs root or the control group"),
        "{}",
        stderr(&output)
    );
    let output = as_nobody(&daemon, "--clear-groups", &["maintenance", "on"]);
    assert!(
        stderr(&output).contains("permission denied"),
        "{}",
        stderr(&output)
    );
    // The session list shows the connections crossing the firewall: privileged too.
    let output = as_nobody(&daemon, "--clear-groups", &["sessions"]);
    assert!(
        stderr(&output).contains("permission denied: sessions"),
        "{}",
        stderr(&output)
    );
    let output = as_nobody(&daemon, "--clear-groups", &["events"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        daemon.requests(),
        [Request::Status, Request::Events { limit: None }],
        "the refused commands never reached the daemon"
    );

    let output = with_socket(&daemon, &["switchover"]);
    assert!(
        stderr(&output).contains("the peer is not ready"),
        "root: {}",
        stderr(&output)
    );
    let output = as_nobody(&daemon, &format!("--groups={GROUP}"), &["switchover"]);
    assert!(
        stderr(&output).contains("the peer is not ready"),
        "in the group: {}",
        stderr(&output)
    );
    assert_eq!(
        daemon.requests(),
        [
            Request::Status,
            Request::Events { limit: None },
            Request::Switchover,
            Request::Switchover
        ]
    );
}

/// The configuration diff shows the synced rules and files, and a sync changes the peer: both
/// need root or the control group; the status does not. The controls: root's diff and sync
/// reach the daemon.
#[test]
fn an_unprivileged_user_reads_the_config_status_but_cannot_diff_or_sync() {
    if !running_as_root() {
        return;
    }
    let daemon = FakeDaemon::start_with_access(
        respond,
        transport::Access {
            owner: 0,
            group: Some(4242),
        },
    );
    let output = as_nobody(&daemon, "--clear-groups", &["config", "status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    for command in ["diff", "sync"] {
        let output = as_nobody(&daemon, "--clear-groups", &["config", command]);
        assert!(!output.status.success());
        assert!(
            stderr(&output).contains(&format!(
                "permission denied: config-{command} needs root or the control group"
            )),
            "{}",
            stderr(&output)
        );
    }
    assert_eq!(daemon.requests(), [Request::ConfigStatus]);
    assert!(with_socket(&daemon, &["config", "diff"]).status.success());
    assert_eq!(
        with_socket(&daemon, &["config", "sync"]).status.code(),
        Some(1)
    );
    assert_eq!(
        daemon.requests(),
        [
            Request::ConfigStatus,
            Request::ConfigDiff,
            Request::ConfigSync
        ]
    );
}
