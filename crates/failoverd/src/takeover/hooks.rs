//! `[hooks]`: the commands run on role changes (docs/TAKEOVER.md).
//!
//! [`Hooks::role_changed`] records the change and returns at once; one task runs the hooks one
//! at a time. Hooks coalesce to the latest role, as FRR's costs do ([`super::frr`]): while a
//! hook runs, a newer role change replaces the one waiting, so at most one waits. When the
//! running hook ends, the hook of the latest role runs, unless that role is the one the last
//! handled change went to (the node flapped back): a hook never runs for a role the node has
//! already left. Each coalescing is recorded for `failoverctl events`.
//!
//! Each hook gets `FAILOVERD_ROLE`, `FAILOVERD_FROM`, `FAILOVERD_REASON` and `FAILOVERD_NODE`
//! (of the latest change) in its environment; its output goes to the log (see
//! [`super::command`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use failoverd_control::config::HooksSection;
use failoverd_control::protocol::{EventKind, HooksView};
use failoverd_wire::Role;
use tokio::sync::watch;
use tracing::{debug, info};

use super::command::ExternalCommand;
use super::history::TakeoverHistory;

/// Runs `on_active` / `on_standby` on role changes. The worker task starts with the first
/// role change and ends once the `Hooks` is dropped and the waiting hook has run.
#[derive(Debug)]
pub struct Hooks {
    shared: Arc<Shared>,
    /// The latest role change; the worker handles the latest value only.
    latest: watch::Sender<Option<Change>>,
    /// The receiving end until the worker task takes it.
    idle: Mutex<Option<watch::Receiver<Option<Change>>>>,
}

#[derive(Debug)]
struct Shared {
    node: String,
    on_active: Option<Vec<String>>,
    on_standby: Option<Vec<String>>,
    timeout: Duration,
    /// The last finished hook's summary.
    last: Mutex<Option<String>>,
    /// Role changes whose hook never ran because a later change superseded them, since start.
    coalesced_total: Mutex<u64>,
    /// Where each finished hook and each coalescing is recorded for `failoverctl events`.
    history: TakeoverHistory,
}

/// A role change, numbered in the order [`Hooks::role_changed`] saw them.
#[derive(Debug, Clone)]
struct Change {
    seq: u64,
    from: Role,
    to: Role,
    reason: String,
}

impl Change {
    fn active(&self) -> bool {
        self.to == Role::Active
    }
}

impl Hooks {
    /// The hooks of `config`, for the node named `node`; each finished hook is recorded in
    /// `history`.
    pub fn new(config: &HooksSection, node: &str, history: TakeoverHistory) -> Hooks {
        let (latest, idle) = watch::channel(None);
        Hooks {
            shared: Arc::new(Shared {
                node: node.to_string(),
                on_active: config.on_active.clone(),
                on_standby: config.on_standby.clone(),
                timeout: config.timeout,
                last: Mutex::new(None),
                coalesced_total: Mutex::new(0),
                history,
            }),
            latest,
            idle: Mutex::new(Some(idle)),
        }
    }

    /// The role went from `from` to `to` because of `reason`: the hook of `to` (`on_active`
    /// or `on_standby`) runs next, replacing a change still waiting. Does not wait. Must be
    /// called within a tokio runtime.
    pub fn role_changed(&self, from: Role, to: Role, reason: &str) {
        debug!(
            from = from.name(),
            to = to.name(),
            reason,
            "role change for the hooks"
        );
        self.latest.send_modify(|latest| {
            let seq = latest.as_ref().map_or(0, |change| change.seq + 1);
            *latest = Some(Change {
                seq,
                from,
                to,
                reason: reason.to_string(),
            });
        });
        self.start_worker();
    }

    /// For `status.takeover.hooks`.
    pub fn view(&self) -> HooksView {
        HooksView {
            last: lock(&self.shared.last).clone(),
        }
    }

    fn start_worker(&self) {
        let Some(latest) = lock(&self.idle).take() else {
            return;
        };
        tokio::spawn(Arc::clone(&self.shared).work(latest));
    }
}

impl Shared {
    /// Handles the latest change whenever there is a new one; ends when the [`Hooks`] is
    /// dropped (a change not yet handled is handled first).
    async fn work(self: Arc<Self>, mut latest: watch::Receiver<Option<Change>>) {
        // The sequence number of the last change handled, and whether it went to active.
        let mut handled: Option<(u64, bool)> = None;
        while latest.changed().await.is_ok() {
            let Some(change) = latest.borrow_and_update().clone() else {
                continue;
            };
            // Changes between the last handled and this one came while a hook ran (or before
            // the worker started): superseded.
            let superseded = handled.map_or(change.seq, |(seq, _)| change.seq - seq - 1);
            let back = handled.is_some_and(|(_, active)| active == change.active());
            handled = Some((change.seq, change.active()));
            if back {
                // The node flapped back to the role whose hook ran last: nothing is stale to
                // undo, nothing new to run. The latest change is superseded too.
                self.record_coalesced(
                    superseded + 1,
                    &format!("the role is {} again", change.to.name()),
                );
                continue;
            }
            if superseded > 0 {
                self.record_coalesced(
                    superseded,
                    &format!("the latest role is {}", change.to.name()),
                );
            }
            self.run(&change).await;
        }
    }

    /// Records that `count` role changes were coalesced, and why.
    fn record_coalesced(&self, count: u64, why: &str) {
        let total = {
            let mut total = lock(&self.coalesced_total);
            *total += count;
            *total
        };
        let message = format!(
            "hooks: {count} role change{} coalesced ({why}; {total} since start)",
            if count == 1 { "" } else { "s" }
        );
        info!("{message}");
        self.history.record(EventKind::Hook, message);
    }

    /// Runs the hook of `change`'s role, if one is configured.
    async fn run(&self, change: &Change) {
        let (what, argv) = if change.active() {
            ("on_active", &self.on_active)
        } else {
            ("on_standby", &self.on_standby)
        };
        let Some(argv) = argv else {
            debug!(
                from = change.from.name(),
                to = change.to.name(),
                "no {what} hook"
            );
            return;
        };
        let outcome = ExternalCommand::new(what, argv.clone(), self.timeout)
            .env("FAILOVERD_ROLE", change.to.name())
            .env("FAILOVERD_FROM", change.from.name())
            .env("FAILOVERD_REASON", &change.reason)
            .env("FAILOVERD_NODE", &self.node)
            .run()
            .await;
        self.history.record(EventKind::Hook, outcome.summary());
        *lock(&self.last) = Some(outcome.summary());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use super::*;

    /// A hook that appends "<name> begin <env...>", sleeps `sleep` seconds, then appends
    /// "<name> end" to `log`.
    fn hook(name: &str, log: &Path, sleep: &str) -> Vec<String> {
        let script = format!(
            "echo \"{name} begin \
             $FAILOVERD_ROLE|$FAILOVERD_FROM|$FAILOVERD_REASON|$FAILOVERD_NODE\" >> {log}; \
             sleep {sleep}; echo \"{name} end\" >> {log}",
            log = log.display()
        );
        vec!["/bin/sh".into(), "-c".into(), script]
    }

    fn config(log: &Path, sleep: &str, timeout: Duration) -> HooksSection {
        HooksSection {
            on_active: Some(hook("active", log, sleep)),
            on_standby: Some(hook("standby", log, sleep)),
            timeout,
        }
    }

    async fn wait_lines(log: &Path, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<String> = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(Instant::now() < deadline, "{count} lines wanted: {lines:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_last(hooks: &Hooks, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(last) = hooks.view().last.filter(|last| last.starts_with(prefix)) {
                return last;
            }
            assert!(Instant::now() < deadline, "{:?}", hooks.view().last);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn runs_the_role_hook_with_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let hooks = Hooks::new(
            &config(&log, "0", Duration::from_secs(10)),
            "fw-a",
            TakeoverHistory::default(),
        );
        assert_eq!(hooks.view().last, None);

        hooks.role_changed(Role::Standby, Role::Active, "peer dead");
        let lines = wait_lines(&log, 2).await;
        assert_eq!(
            lines,
            ["active begin active|standby|peer dead|fw-a", "active end"]
        );
        let last = wait_last(&hooks, "on_active exited 0 after ").await;
        assert!(last.ends_with(" ms"), "{last}");

        hooks.role_changed(Role::Active, Role::Standby, "maintenance");
        let lines = wait_lines(&log, 4).await;
        assert_eq!(
            lines[2..],
            [
                "standby begin standby|active|maintenance|fw-a",
                "standby end"
            ]
        );
        wait_last(&hooks, "on_standby exited 0 after ").await;
    }

    /// The hook messages `history` holds that say changes were coalesced.
    fn coalescings(history: &TakeoverHistory) -> Vec<String> {
        history
            .entries()
            .into_iter()
            .map(|entry| entry.message)
            .filter(|message| message.starts_with("hooks: "))
            .collect()
    }

    /// Waits `quiet` (longer than a hook takes), then returns the log: what ran is all that
    /// will run.
    async fn settled(log: &Path, quiet: Duration) -> Vec<String> {
        tokio::time::sleep(quiet).await;
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn role_changed_does_not_wait_and_a_flap_back_runs_nothing_stale() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let history = TakeoverHistory::default();
        // Each hook takes 0.5 s: role_changed returns well before the first ends.
        let hooks = Hooks::new(
            &config(&log, "0.5", Duration::from_secs(10)),
            "fw-a",
            history.clone(),
        );
        let started = Instant::now();
        hooks.role_changed(Role::Standby, Role::Active, "one");
        wait_lines(&log, 1).await;
        hooks.role_changed(Role::Active, Role::Standby, "two");
        hooks.role_changed(Role::Standby, Role::Active, "three");
        assert!(started.elapsed() < Duration::from_millis(400));
        wait_last(&hooks, "on_active exited 0").await;
        // Back to active while on_active ran: neither on_standby (stale) nor a second
        // on_active (nothing changed since the first) runs.
        assert_eq!(
            settled(&log, Duration::from_millis(800)).await,
            ["active begin active|standby|one|fw-a", "active end"]
        );
        assert_eq!(
            coalescings(&history),
            ["hooks: 2 role changes coalesced (the role is active again; 2 since start)"]
        );
    }

    /// A burst of role changes while a slow hook runs: at most one waits, and when the hook
    /// ends only the hook of the final role runs, with the final change's environment.
    #[tokio::test]
    async fn a_burst_of_role_changes_runs_only_the_final_role_hook() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let history = TakeoverHistory::default();
        let hooks = Hooks::new(
            &config(&log, "0.3", Duration::from_secs(10)),
            "fw-a",
            history.clone(),
        );
        hooks.role_changed(Role::Standby, Role::Active, "first");
        wait_lines(&log, 1).await;
        for flap in 0..500 {
            hooks.role_changed(Role::Active, Role::Standby, &format!("down {flap}"));
            hooks.role_changed(Role::Standby, Role::Active, &format!("up {flap}"));
        }
        hooks.role_changed(Role::Active, Role::Standby, "last");
        let started = Instant::now();
        wait_last(&hooks, "on_standby exited 0").await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "one hook waited, not 1,001: {:?}",
            started.elapsed()
        );
        // No on_active after the node became standby for good; the last hook is the final
        // role's.
        assert_eq!(
            settled(&log, Duration::from_millis(600)).await,
            [
                "active begin active|standby|first|fw-a",
                "active end",
                "standby begin standby|active|last|fw-a",
                "standby end",
            ]
        );
        assert_eq!(
            coalescings(&history),
            ["hooks: 1000 role changes coalesced (the latest role is standby; 1000 since start)"]
        );
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_and_the_next_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut config = config(&log, "0", Duration::from_millis(300));
        config.on_active = Some(hook("active", &log, "30"));
        let hooks = Hooks::new(&config, "fw-a", TakeoverHistory::default());
        let started = Instant::now();
        hooks.role_changed(Role::Standby, Role::Active, "one");
        // Once on_active runs (a change before that would supersede it).
        wait_lines(&log, 1).await;
        hooks.role_changed(Role::Active, Role::Standby, "two");
        let lines = wait_lines(&log, 3).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            lines,
            [
                "active begin active|standby|one|fw-a",
                "standby begin standby|active|two|fw-a",
                "standby end",
            ]
        );
        wait_last(&hooks, "on_standby exited 0").await;
    }

    #[tokio::test]
    async fn unconfigured_and_failing_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let history = TakeoverHistory::default();
        let hooks = Hooks::new(
            &HooksSection {
                on_active: Some(vec!["/nonexistent/hook".into()]),
                on_standby: None,
                timeout: Duration::from_secs(10),
            },
            "fw-a",
            history.clone(),
        );
        // No on_standby: nothing runs, nothing is recorded.
        hooks.role_changed(Role::Active, Role::Standby, "x");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(hooks.view().last, None);
        hooks.role_changed(Role::Standby, Role::Active, "x");
        wait_last(&hooks, "on_active failed to start: ").await;
        assert!(!log.exists());
        let recorded: Vec<_> = history.entries().into_iter().map(|e| e.message).collect();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert!(recorded[0].starts_with("on_active failed to start: "));
    }
}
