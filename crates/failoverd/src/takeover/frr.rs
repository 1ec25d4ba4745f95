//! `[routing]`: FRR follows the role by OSPF costs (docs/TAKEOVER.md). The active node
//! advertises `active_cost` on its OSPF interfaces, the standby `standby_cost`, so the routers
//! around the pair send the traffic to the active node.
//!
//! The cost is set through `vtysh`, one run per change:
//!
//! ```text
//! vtysh... -c "configure terminal" -c "interface X" -c "ip ospf cost N" -c "exit"
//!          -c "interface Y" -c "ipv6 ospf6 cost N" -c "exit" ...
//! ```
//!
//! (`ip ospf cost` on each of `ospf_interfaces`, `ipv6 ospf6 cost` on each of
//! `ospf6_interfaces`.) One task applies the changes one at a time; changes that come while one
//! is applied are folded: only the latest role is applied next. A failed run (exit status not 0,
//! timeout, `vtysh` missing) is logged, shown by [`Frr::view`] and retried after 1 s, then
//! 2 s, 4 s... up to [`RETRY_MAX`], or at once on the next role change.
//!
//! The cost is changed in FRR's running configuration only: FRR restarted, it advertises the
//! cost of its own configuration file again (which should be the standby cost).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use failoverd_control::config::RoutingSection;
use failoverd_control::protocol::{EventKind, RoutingState, RoutingView};
use tokio::sync::watch;
use tracing::{info, warn};

use super::command::{CommandOutcome, ExternalCommand};
use super::history::TakeoverHistory;

/// The first delay before a failed change is retried; it doubles up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest delay between retries of a failed change.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Sets FRR's OSPF costs to follow the role. Created standby-pending: [`Frr::start`] applies
/// the standby cost unless a role change came first.
#[derive(Debug)]
pub struct Frr {
    shared: Arc<Shared>,
    /// The wanted role (true: active). The worker task applies its latest value; it ends when
    /// this is dropped.
    wanted: watch::Sender<bool>,
    /// The receiving end until the worker task takes it.
    idle: Mutex<Option<watch::Receiver<bool>>>,
}

#[derive(Debug)]
struct Shared {
    vtysh: Vec<String>,
    ospf_interfaces: Vec<String>,
    ospf6_interfaces: Vec<String>,
    active_cost: u16,
    standby_cost: u16,
    timeout: Duration,
    status: Mutex<Status>,
    /// Where each run is recorded for `failoverctl events`.
    history: TakeoverHistory,
}

#[derive(Debug)]
struct Status {
    /// A role change not yet taken by the worker.
    pending: bool,
    /// A `vtysh` run is under way.
    busy: bool,
    /// The role whose cost the last successful run set (`None`: none yet, or the last run
    /// failed and the cost is unknown).
    applied: Option<bool>,
    /// The last run failed.
    failed: bool,
    /// The most recent failure, kept after a later success.
    last_error: Option<String>,
}

impl Frr {
    /// FRR as `config` says. Nothing runs before [`Frr::start`] or [`Frr::role_changed`].
    pub fn new(config: &RoutingSection, history: TakeoverHistory) -> Frr {
        let (wanted, idle) = watch::channel(false);
        Frr {
            shared: Arc::new(Shared {
                vtysh: config.vtysh.clone(),
                ospf_interfaces: config.ospf_interfaces.clone(),
                ospf6_interfaces: config.ospf6_interfaces.clone(),
                active_cost: config.active_cost,
                standby_cost: config.standby_cost,
                timeout: config.timeout,
                status: Mutex::new(Status {
                    pending: true,
                    busy: false,
                    applied: None,
                    failed: false,
                    last_error: None,
                }),
                history,
            }),
            wanted,
            idle: Mutex::new(Some(idle)),
        }
    }

    /// Starts applying: the standby cost, so that a restarted node never advertises the
    /// better cost by accident, unless [`Frr::role_changed`] came first. Does not wait. Must
    /// be called within a tokio runtime.
    pub fn start(&self) {
        let Some(wanted) = lock(&self.idle).take() else {
            return;
        };
        tokio::spawn(Arc::clone(&self.shared).work(wanted));
    }

    /// How long one vtysh run may take.
    pub fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// The role changed: the cost for `active` (true) or standby is applied next, replacing
    /// a change still waiting. Does not wait; starts the worker as [`Frr::start`] does.
    pub fn role_changed(&self, active: bool) {
        {
            let mut status = lock(&self.shared.status);
            status.pending = true;
            self.wanted.send_replace(active);
        }
        self.start();
    }

    /// For `status.takeover.routing`: `state` is applying while a change runs or waits, else
    /// failed after a failed run (until a run succeeds), else the role whose cost is set.
    pub fn view(&self) -> RoutingView {
        let status = lock(&self.shared.status);
        let state = match (status.busy || status.pending, status.failed, status.applied) {
            (true, _, _) | (false, false, None) => RoutingState::Applying,
            (false, true, _) => RoutingState::Failed,
            (false, false, Some(true)) => RoutingState::Active,
            (false, false, Some(false)) => RoutingState::Standby,
        };
        RoutingView {
            state,
            last_error: status.last_error.clone(),
        }
    }
}

impl Shared {
    async fn work(self: Arc<Self>, mut wanted: watch::Receiver<bool>) {
        let mut retry = RETRY_MIN;
        loop {
            let active = {
                let mut status = lock(&self.status);
                status.pending = false;
                status.busy = true;
                *wanted.borrow_and_update()
            };
            let result = self.apply(active).await;
            let ok = result.is_ok();
            {
                let mut status = lock(&self.status);
                status.busy = false;
                status.failed = !ok;
                status.applied = ok.then_some(active);
                if let Err(error) = result {
                    status.last_error = Some(error);
                }
            }
            if ok {
                retry = RETRY_MIN;
                if wanted.changed().await.is_err() {
                    return;
                }
                continue;
            }
            tokio::select! {
                changed = wanted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    retry = RETRY_MIN;
                }
                () = tokio::time::sleep(retry) => {
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Sets the cost of `active` (true) or standby on every interface, in one `vtysh` run.
    async fn apply(&self, active: bool) -> Result<(), String> {
        let (role, cost) = if active {
            ("active", self.active_cost)
        } else {
            ("standby", self.standby_cost)
        };
        if self.ospf_interfaces.is_empty() && self.ospf6_interfaces.is_empty() {
            return Ok(());
        }
        info!(
            role,
            cost,
            ospf = ?self.ospf_interfaces,
            ospf6 = ?self.ospf6_interfaces,
            "setting the OSPF cost"
        );
        let argv = vtysh_argv(
            &self.vtysh,
            &self.ospf_interfaces,
            &self.ospf6_interfaces,
            cost,
        );
        let outcome = ExternalCommand::new("vtysh", argv, self.timeout)
            .env("FAILOVERD_ROLE", role)
            .run()
            .await;
        if outcome.success() {
            self.history
                .record(EventKind::Routing, format!("OSPF cost {cost} set ({role})"));
            return Ok(());
        }
        let error = failure(&outcome, role, cost);
        warn!("{error}");
        self.history.record(EventKind::Routing, error.clone());
        Err(error)
    }
}

/// `vtysh` (the argv prefix) with the commands that set `cost` on the interfaces.
fn vtysh_argv(
    vtysh: &[String],
    ospf_interfaces: &[String],
    ospf6_interfaces: &[String],
    cost: u16,
) -> Vec<String> {
    let mut argv = vtysh.to_vec();
    let mut command = |text: String| {
        argv.push("-c".to_string());
        argv.push(text);
    };
    command("configure terminal".to_string());
    for interface in ospf_interfaces {
        command(format!("interface {interface}"));
        command(format!("ip ospf cost {cost}"));
        command("exit".to_string());
    }
    for interface in ospf6_interfaces {
        command(format!("interface {interface}"));
        command(format!("ipv6 ospf6 cost {cost}"));
        command("exit".to_string());
    }
    argv
}

/// A one-line error for a failed run: the outcome and the start of vtysh's output.
fn failure(outcome: &CommandOutcome, role: &str, cost: u16) -> String {
    let mut error = format!("setting the {role} OSPF cost {cost}: {outcome}");
    let said: Vec<&str> = outcome
        .output
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .take(3)
        .collect();
    if !said.is_empty() {
        error.push_str(": ");
        error.push_str(&said.join(" / "));
    }
    error
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use super::*;

    /// A fake vtysh: `/bin/sh -c SCRIPT vtysh --vty_socket /run/x`, the script recording its
    /// arguments (one per line, then "--") in `dir/calls`, preceded by `before` (shell).
    fn config(dir: &Path, before: &str) -> RoutingSection {
        let script = format!(
            "{before}\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> {calls}; \
             echo \"-- $FAILOVERD_ROLE\" >> {calls}",
            calls = dir.join("calls").display()
        );
        RoutingSection {
            vtysh: vec![
                "/bin/sh".into(),
                "-c".into(),
                script,
                "vtysh".into(),
                "--vty_socket".into(),
                "/run/x".into(),
            ],
            ospf_interfaces: vec!["wan".into(), "lan".into()],
            ospf6_interfaces: vec!["wan".into()],
            active_cost: 10,
            standby_cost: 1000,
            timeout: Duration::from_secs(10),
        }
    }

    /// The recorded calls, each its arguments and the role from its environment.
    fn calls(dir: &Path) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(dir.join("calls")).unwrap_or_default();
        let mut calls = Vec::new();
        let mut call = Vec::new();
        for line in text.lines() {
            call.push(line.to_string());
            if line.starts_with("-- ") {
                calls.push(std::mem::take(&mut call));
            }
        }
        calls
    }

    fn expected(cost: u16, role: &str) -> Vec<String> {
        [
            "--vty_socket",
            "/run/x",
            "-c",
            "configure terminal",
            "-c",
            "interface wan",
            "-c",
            &format!("ip ospf cost {cost}"),
            "-c",
            "exit",
            "-c",
            "interface lan",
            "-c",
            &format!("ip ospf cost {cost}"),
            "-c",
            "exit",
            "-c",
            "interface wan",
            "-c",
            &format!("ipv6 ospf6 cost {cost}"),
            "-c",
            "exit",
            &format!("-- {role}"),
        ]
        .map(str::to_string)
        .to_vec()
    }

    async fn wait_state(frr: &Frr, state: RoutingState) -> RoutingView {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let view = frr.view();
            if view.state == state {
                return view;
            }
            assert!(Instant::now() < deadline, "{state} wanted: {view:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_file(path: PathBuf) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(Instant::now() < deadline, "no {}", path.display());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn start_applies_standby_then_roles_apply_their_cost() {
        let dir = tempfile::tempdir().unwrap();
        let frr = Frr::new(&config(dir.path(), ""), TakeoverHistory::default());
        assert_eq!(frr.view().state, RoutingState::Applying);
        frr.start();
        let view = wait_state(&frr, RoutingState::Standby).await;
        assert_eq!(view.last_error, None);
        assert_eq!(calls(dir.path()), [expected(1000, "standby")]);

        frr.role_changed(true);
        wait_state(&frr, RoutingState::Active).await;
        frr.role_changed(false);
        wait_state(&frr, RoutingState::Standby).await;
        assert_eq!(
            calls(dir.path()),
            [
                expected(1000, "standby"),
                expected(10, "active"),
                expected(1000, "standby")
            ]
        );
        // start again: nothing new.
        frr.start();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls(dir.path()).len(), 3);
    }

    #[tokio::test]
    async fn a_role_change_before_start_replaces_the_standby_cost() {
        let dir = tempfile::tempdir().unwrap();
        let frr = Frr::new(&config(dir.path(), ""), TakeoverHistory::default());
        frr.role_changed(true);
        frr.start();
        wait_state(&frr, RoutingState::Active).await;
        assert_eq!(calls(dir.path()), [expected(10, "active")]);
    }

    #[tokio::test]
    async fn changes_during_a_run_fold_into_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        // Each run marks its start, then takes 300 ms.
        let before = format!(
            "touch {}/started-$FAILOVERD_ROLE; sleep 0.3",
            dir.path().display()
        );
        let frr = Frr::new(&config(dir.path(), &before), TakeoverHistory::default());
        frr.start();
        wait_file(dir.path().join("started-standby")).await;
        assert_eq!(frr.view().state, RoutingState::Applying);
        frr.role_changed(true);
        frr.role_changed(false);
        frr.role_changed(true);
        assert_eq!(frr.view().state, RoutingState::Applying);
        wait_state(&frr, RoutingState::Active).await;
        assert_eq!(
            calls(dir.path()),
            [expected(1000, "standby"), expected(10, "active")]
        );
    }

    #[tokio::test]
    async fn failures_are_shown_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        // Fails on its first run only.
        let before = format!(
            "if [ ! -e {first} ]; then touch {first}; echo '% Unknown command: ip ospf cost 1000'; \
             echo 'ospf6d is not running' >&2; exit 1; fi",
            first = dir.path().join("first").display()
        );
        let frr = Frr::new(&config(dir.path(), &before), TakeoverHistory::default());
        frr.start();
        let view = wait_state(&frr, RoutingState::Failed).await;
        let error = view.last_error.unwrap();
        assert!(
            error.starts_with("setting the standby OSPF cost 1000: vtysh exited 1 after "),
            "{error}"
        );
        assert!(
            error.contains("% Unknown command: ip ospf cost 1000"),
            "{error}"
        );
        assert!(error.contains("ospf6d is not running"), "{error}");
        assert!(calls(dir.path()).is_empty());

        // Retried after RETRY_MIN; the error is kept.
        let started = Instant::now();
        let view = wait_state(&frr, RoutingState::Standby).await;
        assert!(started.elapsed() > RETRY_MIN / 2, "{:?}", started.elapsed());
        assert_eq!(view.last_error, Some(error));
        assert_eq!(calls(dir.path()), [expected(1000, "standby")]);
    }

    #[tokio::test]
    async fn a_new_role_does_not_wait_for_the_retry() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), "");
        config.vtysh = vec!["/nonexistent/vtysh".into()];
        let frr = Frr::new(&config, TakeoverHistory::default());
        frr.start();
        let view = wait_state(&frr, RoutingState::Failed).await;
        let error = view.last_error.unwrap();
        assert!(
            error.starts_with("setting the standby OSPF cost 1000: vtysh failed to start: "),
            "{error}"
        );
        frr.role_changed(true);
        let view = frr.view();
        assert_eq!(view.state, RoutingState::Applying);
        // Fails again at once (not after the retry delay), now for the active cost.
        let deadline = Instant::now() + RETRY_MIN / 2;
        loop {
            let view = frr.view();
            if view.state == RoutingState::Failed
                && view
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("setting the active OSPF cost 10:"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "{view:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_hanging_vtysh_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), "sleep 30");
        config.timeout = Duration::from_millis(200);
        let frr = Frr::new(&config, TakeoverHistory::default());
        frr.start();
        let view = wait_state(&frr, RoutingState::Failed).await;
        assert_eq!(
            view.last_error.as_deref(),
            Some("setting the standby OSPF cost 1000: vtysh timed out after 200 ms and was killed")
        );
    }

    #[test]
    fn argv_without_ospf6() {
        let argv = vtysh_argv(&["vtysh".into()], &["eth0".into()], &[], 7);
        assert_eq!(
            argv,
            [
                "vtysh",
                "-c",
                "configure terminal",
                "-c",
                "interface eth0",
                "-c",
                "ip ospf cost 7",
                "-c",
                "exit"
            ]
        );
    }
}
