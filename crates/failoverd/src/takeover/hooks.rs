//! `[hooks]`: the commands run on role changes (docs/TAKEOVER.md).
//!
//! [`Hooks::role_changed`] queues the hook for the new role and returns at once; one task runs
//! the queued hooks one at a time, in the order of the role changes: a later change's hook
//! waits until the earlier one has ended or was killed at `timeout_ms`. Each hook gets
//! `FAILOVERD_ROLE`, `FAILOVERD_FROM`, `FAILOVERD_REASON` and `FAILOVERD_NODE` in its
//! environment; its output goes to the log (see [`super::command`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use failoverd_control::config::HooksConfig;
use failoverd_control::protocol::{EventKind, HooksView};
use tokio::sync::mpsc;
use tracing::debug;

use super::command::Command;
use super::history::History;

/// The role whose hook is `on_active`; every other role runs `on_standby`.
pub const ACTIVE: &str = "active";

/// Runs `on_active` / `on_standby` on role changes. The worker task starts with the first
/// role change and ends once the `Hooks` is dropped and the queued hooks have run.
#[derive(Debug)]
pub struct Hooks {
    node: String,
    on_active: Option<Vec<String>>,
    on_standby: Option<Vec<String>>,
    timeout: Duration,
    queue: mpsc::UnboundedSender<Command>,
    /// The queue's receiving end until the worker task takes it.
    idle_queue: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    /// The last finished hook's summary.
    last: Arc<Mutex<Option<String>>>,
    /// Where each finished hook is recorded for `failoverctl events`.
    history: History,
}

impl Hooks {
    /// The hooks of `config`, for the node named `node`; each finished hook is recorded in
    /// `history`.
    pub fn new(config: &HooksConfig, node: &str, history: History) -> Hooks {
        let (queue, idle_queue) = mpsc::unbounded_channel();
        Hooks {
            node: node.to_string(),
            on_active: config.on_active.clone(),
            on_standby: config.on_standby.clone(),
            timeout: config.timeout,
            queue,
            idle_queue: Mutex::new(Some(idle_queue)),
            last: Arc::new(Mutex::new(None)),
            history,
        }
    }

    /// The role went from `from` to `to` (`"active"`, `"standby"`) because of `reason`: queues
    /// `on_active` when `to` is `"active"`, `on_standby` otherwise (nothing when that hook is
    /// not configured). Does not wait. Must be called within a tokio runtime.
    pub fn role_changed(&self, from: &str, to: &str, reason: &str) {
        let (what, argv) = if to == ACTIVE {
            ("on_active", &self.on_active)
        } else {
            ("on_standby", &self.on_standby)
        };
        let Some(argv) = argv else {
            debug!(from, to, "no {what} hook");
            return;
        };
        let command = Command::new(what, argv.clone(), self.timeout)
            .env("FAILOVERD_ROLE", to)
            .env("FAILOVERD_FROM", from)
            .env("FAILOVERD_REASON", reason)
            .env("FAILOVERD_NODE", &self.node);
        debug!(from, to, reason, "queueing {what}");
        self.start_worker();
        // The worker holds the receiver while this holds the sender: it cannot be gone.
        let _ = self.queue.send(command);
    }

    /// For `status.takeover.hooks`.
    pub fn view(&self) -> HooksView {
        HooksView {
            last: lock(&self.last).clone(),
        }
    }

    fn start_worker(&self) {
        let Some(mut queue) = lock(&self.idle_queue).take() else {
            return;
        };
        let last = Arc::clone(&self.last);
        let history = self.history.clone();
        tokio::spawn(async move {
            while let Some(command) = queue.recv().await {
                let outcome = command.run().await;
                history.record(EventKind::Hook, outcome.summary());
                *lock(&last) = Some(outcome.summary());
            }
        });
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

    fn config(log: &Path, sleep: &str, timeout: Duration) -> HooksConfig {
        HooksConfig {
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
            History::default(),
        );
        assert_eq!(hooks.view().last, None);

        hooks.role_changed("standby", "active", "peer dead");
        let lines = wait_lines(&log, 2).await;
        assert_eq!(
            lines,
            ["active begin active|standby|peer dead|fw-a", "active end"]
        );
        let last = wait_last(&hooks, "on_active exited 0 after ").await;
        assert!(last.ends_with(" ms"), "{last}");

        hooks.role_changed("active", "standby", "maintenance");
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

    #[tokio::test]
    async fn role_changed_does_not_wait_and_hooks_run_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        // Each hook takes 0.5 s: role_changed returns well before the first ends.
        let hooks = Hooks::new(
            &config(&log, "0.5", Duration::from_secs(10)),
            "fw-a",
            History::default(),
        );
        let started = Instant::now();
        hooks.role_changed("standby", "active", "one");
        hooks.role_changed("active", "standby", "two");
        hooks.role_changed("standby", "active", "three");
        assert!(started.elapsed() < Duration::from_millis(400));
        let lines = wait_lines(&log, 6).await;
        assert_eq!(
            lines,
            [
                "active begin active|standby|one|fw-a",
                "active end",
                "standby begin standby|active|two|fw-a",
                "standby end",
                "active begin active|standby|three|fw-a",
                "active end",
            ]
        );
        wait_last(&hooks, "on_active exited 0").await;
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_and_the_next_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut config = config(&log, "0", Duration::from_millis(300));
        config.on_active = Some(hook("active", &log, "30"));
        let hooks = Hooks::new(&config, "fw-a", History::default());
        let started = Instant::now();
        hooks.role_changed("standby", "active", "one");
        hooks.role_changed("active", "standby", "two");
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
        let history = History::default();
        let hooks = Hooks::new(
            &HooksConfig {
                on_active: Some(vec!["/nonexistent/hook".into()]),
                on_standby: None,
                timeout: Duration::from_secs(10),
            },
            "fw-a",
            history.clone(),
        );
        // No on_standby: nothing runs, nothing is recorded.
        hooks.role_changed("active", "standby", "x");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(hooks.view().last, None);
        hooks.role_changed("standby", "active", "x");
        wait_last(&hooks, "on_active failed to start: ").await;
        assert!(!log.exists());
        let recorded: Vec<_> = history.entries().into_iter().map(|e| e.message).collect();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert!(recorded[0].starts_with("on_active failed to start: "));
    }
}
