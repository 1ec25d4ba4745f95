//! Runs an external command for the takeover (hooks, `vtysh`): an argv, never a shell, with
//! environment additions and a timeout.
//!
//! The command runs in a process group of its own. When the timeout expires the whole group is
//! killed (`SIGKILL`), so the children a script started die with it, and that is logged. Its
//! output goes to the log line by line, labelled with the command's `what`; at most
//! [`MAX_LINES`] lines are kept (logged and returned in the [`CommandOutcome`]), each cut to
//! [`MAX_LINE_CHARS`] characters.
//!
//! Commands run periodically (track scripts) can be made [`ExternalCommand::quiet`]: then all of this
//! is logged at debug level, and their caller logs what matters.
//!
//! The command's own exit ends it: descendants it leaves behind in the background are not
//! killed, and their output is still logged (within the limits) while they hold the pipes
//! open, but [`ExternalCommand::run`] waits for that output at most [`OUTPUT_GRACE`].

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// `tracing::debug!` when `$quiet`, else `tracing::$loud!`.
macro_rules! log_at {
    ($quiet:expr, $loud:ident, $($arg:tt)+) => {
        if $quiet {
            tracing::debug!($($arg)+)
        } else {
            tracing::$loud!($($arg)+)
        }
    };
}

/// Lines of output kept per run (stdout and stderr together); the rest are counted only.
pub const MAX_LINES: usize = 100;
/// Characters kept of each line of output; the rest of a longer line is replaced by "...".
pub const MAX_LINE_CHARS: usize = 200;
/// How long [`ExternalCommand::run`] waits, after the command ended, for the rest of its output (a
/// process it left in the background may hold its stdout open).
pub const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Bytes kept of a line before it is decoded and cut to [`MAX_LINE_CHARS`] characters (a
/// UTF-8 character has at most 4 bytes).
const MAX_LINE_BYTES: usize = MAX_LINE_CHARS * 4;

/// An external command: an argv (the program is looked up in `PATH` when it has no `/`),
/// environment additions and a timeout.
#[derive(Debug, Clone)]
pub struct ExternalCommand {
    what: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
    quiet: bool,
}

impl ExternalCommand {
    /// A command labelled `what` in the log and in its [`CommandOutcome`] (e.g. "on_active").
    pub fn new(what: impl Into<String>, argv: Vec<String>, timeout: Duration) -> ExternalCommand {
        ExternalCommand {
            what: what.into(),
            argv,
            env: Vec::new(),
            timeout,
            quiet: false,
        }
    }

    /// Adds `key=value` to the environment the command inherits from the daemon.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ExternalCommand {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Logs its output, its outcome and a timeout at debug level instead of info (output,
    /// success) and warn (failure, timeout): for commands run periodically.
    pub fn quiet(mut self) -> ExternalCommand {
        self.quiet = true;
        self
    }

    /// The label.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The argv.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Runs the command to its end or its timeout and logs the outcome (info when it exited
    /// 0, warn otherwise; debug if [`ExternalCommand::quiet`]). Never fails: a command that cannot
    /// start is an [`CommandOutcome`] too.
    ///
    /// If this future is dropped before the command ended, the command's process group is
    /// killed.
    pub async fn run(&self) -> CommandOutcome {
        let started = Instant::now();
        let capture = Arc::new(Mutex::new(Capture {
            quiet: self.quiet,
            ..Capture::default()
        }));
        let (status, elapsed) = self.run_captured(started, &capture).await;
        let (output, lines_dropped) = {
            let capture = capture.lock().unwrap_or_else(|poison| poison.into_inner());
            (capture.lines.clone(), capture.dropped)
        };
        let outcome = CommandOutcome {
            what: self.what.clone(),
            status,
            elapsed,
            output,
            lines_dropped,
        };
        if outcome.success() {
            log_at!(self.quiet, info, what = %self.what, "{}", outcome.summary());
        } else {
            log_at!(self.quiet, warn, what = %self.what, "{}", outcome.summary());
        }
        outcome
    }

    /// Runs it; returns how it ended and when (since `started`).
    async fn run_captured(
        &self,
        started: Instant,
        capture: &Arc<Mutex<Capture>>,
    ) -> (CommandEnd, Duration) {
        let Some((program, args)) = self.argv.split_first() else {
            let status = CommandEnd::SpawnFailed("empty command".to_string());
            return (status, started.elapsed());
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills the children of a script too.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                return (
                    CommandEnd::SpawnFailed(error.to_string()),
                    started.elapsed(),
                );
            }
        };
        // Kills the group if this future is dropped before the child is reaped. The child is
        // the group's leader (process_group(0)): until it is reaped, its pid, which is the
        // group's id, cannot be reused.
        let mut group = GroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(log_lines(
                stdout,
                self.what.clone(),
                "stdout",
                Arc::clone(capture),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(log_lines(
                stderr,
                self.what.clone(),
                "stderr",
                Arc::clone(capture),
            )));
        }
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) => {
                group.disarm();
                CommandEnd::from_exit(status)
            }
            Ok(Err(error)) => {
                // Not expected (the child is ours and not yet reaped); the guard kills it.
                CommandEnd::SpawnFailed(format!("waiting for it failed: {error}"))
            }
            Err(_) => {
                log_at!(
                    self.quiet,
                    warn,
                    what = %self.what,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "timed out; killing its process group"
                );
                group.kill();
                // SIGKILL cannot be caught: the wait ends at once.
                if let Err(error) = child.wait().await {
                    let what = &self.what;
                    tracing::warn!(what, "waiting for the killed command failed: {error}");
                }
                group.disarm();
                CommandEnd::TimedOut(self.timeout)
            }
        };
        let elapsed = started.elapsed();
        // The readers see the end of the output once every process holding the pipes is gone;
        // those still running on after the grace keep logging on their own.
        let all_read = async {
            for reader in &mut readers {
                let _ = reader.await;
            }
        };
        let _ = tokio::time::timeout(OUTPUT_GRACE, all_read).await;
        (status, elapsed)
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandEnd {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
    /// It was still running after this timeout, and its process group was killed.
    TimedOut(Duration),
    /// It could not be started (e.g. the program does not exist).
    SpawnFailed(String),
}

impl CommandEnd {
    fn from_exit(status: ExitStatus) -> CommandEnd {
        match (status.code(), status.signal()) {
            (Some(code), _) => CommandEnd::Exited(code),
            (None, Some(signal)) => CommandEnd::Signaled(signal),
            // Unix: a reaped child either exited or was killed by a signal.
            (None, None) => CommandEnd::SpawnFailed(format!("unknown exit status {status}")),
        }
    }
}

/// What running a [`ExternalCommand`] gave.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    /// The command's label.
    pub what: String,
    /// How it ended.
    pub status: CommandEnd,
    /// From the start to its end (or to the timeout's kill), not counting the wait for the
    /// rest of its output.
    pub elapsed: Duration,
    /// The first [`MAX_LINES`] lines of its output, stdout and stderr in the order they were
    /// read, each cut to [`MAX_LINE_CHARS`] characters.
    pub output: Vec<String>,
    /// Lines read past [`MAX_LINES`] (not logged).
    pub lines_dropped: usize,
}

impl CommandOutcome {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status == CommandEnd::Exited(0)
    }

    /// One line, e.g. "on_active exited 0 after 12 ms".
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CommandOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.elapsed.as_millis();
        match &self.status {
            CommandEnd::Exited(code) => write!(f, "{} exited {code} after {ms} ms", self.what),
            CommandEnd::Signaled(signal) => {
                write!(f, "{} killed by signal {signal} after {ms} ms", self.what)
            }
            CommandEnd::TimedOut(timeout) => write!(
                f,
                "{} timed out after {} ms and was killed",
                self.what,
                timeout.as_millis()
            ),
            CommandEnd::SpawnFailed(error) => write!(f, "{} failed to start: {error}", self.what),
        }
    }
}

/// The output kept of one run.
#[derive(Debug, Default)]
struct Capture {
    quiet: bool,
    lines: Vec<String>,
    dropped: usize,
}

impl Capture {
    /// Keeps and logs `line`, or counts it once [`MAX_LINES`] are kept.
    fn line(&mut self, what: &str, stream: &'static str, line: &[u8], overlong: bool) {
        if self.lines.len() >= MAX_LINES {
            if self.dropped == 0 {
                log_at!(self.quiet, info, what, stream, "more output; not logged");
            }
            self.dropped += 1;
            return;
        }
        let line = cut(line, overlong);
        log_at!(self.quiet, info, what, stream, "{line}");
        self.lines.push(line);
    }
}

/// `line` decoded (lossily) without its line end, cut to [`MAX_LINE_CHARS`] characters;
/// "..." marks a cut (here, or when reading, for a line longer than [`MAX_LINE_BYTES`]).
fn cut(line: &[u8], overlong: bool) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    match text.char_indices().nth(MAX_LINE_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None if overlong => format!("{text}..."),
        None => text.to_string(),
    }
}

/// Reads `stream` to its end and hands each line to the capture. A line longer than
/// [`MAX_LINE_BYTES`] is cut there: memory stays bounded whatever the command writes.
async fn log_lines(
    mut stream: impl AsyncRead + Unpin,
    what: String,
    name: &'static str,
    capture: Arc<Mutex<Capture>>,
) {
    let mut buf = [0u8; 4096];
    let mut line = Vec::with_capacity(256);
    let mut overlong = false;
    let emit = |line: &[u8], overlong: bool| {
        capture
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .line(&what, name, line, overlong);
    };
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let what = what.as_str();
                tracing::warn!(what, stream = name, "reading the output failed: {error}");
                break;
            }
        };
        for chunk in buf[..n].split_inclusive(|&b| b == b'\n') {
            let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            if body.len() > room {
                overlong = true;
            }
            line.extend_from_slice(&body[..body.len().min(room)]);
            if chunk.ends_with(b"\n") {
                emit(&line, overlong);
                line.clear();
                overlong = false;
            }
        }
    }
    if !line.is_empty() {
        emit(&line, overlong);
    }
}

/// Kills a process group with `SIGKILL` when told, or when dropped while armed.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill has no memory-safety preconditions; a negative pid names the
            // process group, ours and not yet reaped (see the caller).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    /// The group's leader was reaped: its id may be reused from now on.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(what: &str, script: &str, timeout: Duration) -> ExternalCommand {
        ExternalCommand::new(
            what,
            vec!["/bin/sh".into(), "-c".into(), script.into()],
            timeout,
        )
    }

    const LONG: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn exit_codes_and_summary() {
        let ok = sh("on_active", "exit 0", LONG).run().await;
        assert_eq!(ok.status, CommandEnd::Exited(0));
        assert!(ok.success());
        let summary = ok.summary();
        assert!(
            summary.starts_with("on_active exited 0 after ") && summary.ends_with(" ms"),
            "{summary}"
        );

        let failed = sh("on_standby", "exit 3", LONG).run().await;
        assert_eq!(failed.status, CommandEnd::Exited(3));
        assert!(!failed.success());
        assert!(failed.summary().starts_with("on_standby exited 3 after "));

        let signaled = sh("x", "kill -TERM $$", LONG).run().await;
        assert_eq!(signaled.status, CommandEnd::Signaled(libc::SIGTERM));
        assert!(
            signaled
                .summary()
                .starts_with("x killed by signal 15 after ")
        );
    }

    #[tokio::test]
    async fn argv_is_not_a_shell_and_env_is_added() {
        let outcome = ExternalCommand::new(
            "printf",
            vec![
                "/bin/sh".into(),
                "-c".into(),
                r#"printf '%s|' "$@"; printf '%s\n' "$FAILOVERD_ROLE""#.into(),
                "sh".into(),
                "a b".into(),
                "$HOME;".into(),
            ],
            LONG,
        )
        .env("FAILOVERD_ROLE", "active")
        .run()
        .await;
        assert!(outcome.success(), "{}", outcome.summary());
        assert_eq!(outcome.output, ["a b|$HOME;|active"]);
    }

    #[tokio::test]
    async fn output_is_captured_line_by_line() {
        let outcome = sh(
            "hook",
            "echo one; echo two >&2; sleep 0.05; printf 'three\\r\\nno newline'",
            LONG,
        )
        .run()
        .await;
        assert!(outcome.success());
        let mut lines = outcome.output.clone();
        lines.sort();
        assert_eq!(lines, ["no newline", "one", "three", "two"]);
        assert_eq!(outcome.lines_dropped, 0);
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let outcome = sh(
            "noisy",
            "i=0; while [ $i -lt 150 ]; do echo line$i; i=$((i+1)); done; \
             echo last",
            LONG,
        )
        .run()
        .await;
        assert!(outcome.success());
        assert_eq!(outcome.output.len(), MAX_LINES);
        assert_eq!(outcome.output[0], "line0");
        assert_eq!(outcome.output[99], "line99");
        assert_eq!(outcome.lines_dropped, 51);

        let long = sh(
            "long",
            "head -c 5000 /dev/zero | tr '\\0' x; echo; echo end",
            LONG,
        )
        .run()
        .await;
        assert_eq!(long.output.len(), 2);
        assert_eq!(long.output[0], format!("{}...", "x".repeat(MAX_LINE_CHARS)));
        assert_eq!(long.output[1], "end");

        let exact = sh("exact", &format!("printf '%0{MAX_LINE_CHARS}d\\n' 0"), LONG)
            .run()
            .await;
        assert_eq!(exact.output, ["0".repeat(MAX_LINE_CHARS)]);
    }

    #[tokio::test]
    async fn multibyte_lines_are_cut_on_characters() {
        // 300 two-byte characters: 600 bytes, within MAX_LINE_BYTES.
        let outcome = sh(
            "utf8",
            "i=0; while [ $i -lt 300 ]; do printf '\\303\\251'; i=$((i+1)); done; echo",
            LONG,
        )
        .run()
        .await;
        assert_eq!(
            outcome.output,
            [format!("{}...", "\u{e9}".repeat(MAX_LINE_CHARS))]
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        // The script starts a child (in the background, holding the pipes) and waits for it:
        // both must die at the timeout.
        let script = format!(
            "sleep 30 & echo $! > {}; echo started; wait",
            pidfile.display()
        );
        let started = Instant::now();
        let outcome = sh("slow", &script, Duration::from_millis(300)).run().await;
        assert_eq!(
            outcome.status,
            CommandEnd::TimedOut(Duration::from_millis(300))
        );
        assert!(!outcome.success());
        assert_eq!(
            outcome.summary(),
            "slow timed out after 300 ms and was killed"
        );
        assert_eq!(outcome.output, ["started"]);
        // The grandchild was killed too: the pipes closed, so no output grace was spent.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_dead(pid).await;
    }

    #[tokio::test]
    async fn background_children_outlive_a_normal_exit() {
        // The command exits at once but leaves a child holding stdout: run returns after the
        // grace, not after the child.
        let started = Instant::now();
        let outcome = sh("bg", "echo before; (sleep 3; echo late) & exit 0", LONG)
            .run()
            .await;
        assert!(outcome.success());
        assert_eq!(outcome.output, ["before"]);
        assert!(outcome.elapsed < OUTPUT_GRACE, "{:?}", outcome.elapsed);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn quiet_commands_capture_all_the_same() {
        let outcome = sh("track_script up", "echo pong; exit 1", LONG)
            .quiet()
            .run()
            .await;
        assert_eq!(outcome.status, CommandEnd::Exited(1));
        assert_eq!(outcome.output, ["pong"]);
    }

    #[tokio::test]
    async fn missing_program_and_empty_argv() {
        let outcome = ExternalCommand::new("hook", vec!["/nonexistent/hook".into()], LONG)
            .run()
            .await;
        assert!(
            matches!(outcome.status, CommandEnd::SpawnFailed(_)),
            "{outcome:?}"
        );
        assert!(!outcome.success());
        let summary = outcome.summary();
        assert!(summary.starts_with("hook failed to start: "), "{summary}");
        assert!(summary.contains("No such file"), "{summary}");

        let empty = ExternalCommand::new("hook", Vec::new(), LONG).run().await;
        assert_eq!(empty.summary(), "hook failed to start: empty command");
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let command = sh("dropped", &script, LONG);
        let run = command.run();
        // Runs until the grandchild is started, then drops the run.
        let _ = tokio::time::timeout(Duration::from_millis(300), run).await;
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_dead(pid).await;
    }

    /// Waits until `pid` is gone or a zombie (a reparented process may wait for its reaper).
    async fn wait_dead(pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit_once(") ")?.1.chars().next());
            if matches!(state, None | Some('Z' | 'X')) {
                return;
            }
            assert!(Instant::now() < deadline, "{pid} still running: {state:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
