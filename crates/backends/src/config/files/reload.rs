//! Running a unit's reload command: no shell, stdin and stdout closed, stderr kept for the
//! status, a deadline after which it is killed with every process it started (it runs in a
//! process group of its own).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a reload may run before it is killed and reported as failed.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a failed reload's stderr the report keeps (its end: the error is usually last).
pub const RELOAD_STDERR_KEPT: usize = 4096;
/// How often a running reload is checked for its exit.
const POLL: Duration = Duration::from_millis(5);

/// Why a reload failed.
#[derive(Debug)]
pub(super) enum ReloadFailure {
    /// It could not start.
    Start(std::io::Error),
    /// It ran and failed (or was killed at the deadline: `timed_out`).
    Failed {
        /// Its exit status.
        status: ExitStatus,
        /// Whether the deadline killed it.
        timed_out: bool,
        /// The end of its stderr, trimmed.
        stderr: String,
    },
    /// Waiting for it failed.
    Wait(std::io::Error),
}

impl std::fmt::Display for ReloadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadFailure::Start(error) => write!(f, "could not start: {error}"),
            ReloadFailure::Wait(error) => write!(f, "waiting for it: {error}"),
            ReloadFailure::Failed {
                status,
                timed_out,
                stderr,
            } => {
                if *timed_out {
                    write!(f, "killed after {} s", RELOAD_TIMEOUT.as_secs())?;
                } else {
                    write!(f, "{status}")?;
                }
                if stderr.is_empty() {
                    f.write_str(", no stderr")
                } else {
                    write!(f, ": {stderr}")
                }
            }
        }
    }
}

/// Runs `argv` (not empty: checked with the config) to completion or `timeout`.
pub(super) fn run(argv: &[String], timeout: Duration) -> Result<(), ReloadFailure> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ReloadFailure::Start(std::io::Error::other("an empty reload command")))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(ReloadFailure::Start)?;
    // Read on a thread of its own: a child writing much to stderr must not block on a full
    // pipe while this thread waits for it to exit.
    let (sender, stderr) = mpsc::channel();
    if let Some(mut pipe) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buffer = [0; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buffer[..n]);
                let excess = kept.len().saturating_sub(RELOAD_STDERR_KEPT);
                kept.drain(..excess);
            }
            let _ = sender.send(kept);
        });
    }
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(ReloadFailure::Wait)? {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            // Fails only if all are gone already; `wait` then reports how it ended.
            let _ = super::sys::kill_group(child.id());
            break child.wait().map_err(ReloadFailure::Wait)?;
        }
        std::thread::sleep(POLL);
    };
    if status.success() && !timed_out {
        return Ok(());
    }
    // A grandchild that kept the pipe open must not hold the report back for long.
    let stderr = stderr
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    Err(ReloadFailure::Failed {
        status,
        timed_out,
        stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn a_reload_past_its_deadline_is_killed_and_reported() {
        let started = Instant::now();
        // `sleep` is the shell's child: it must die too, or it would hold stderr open.
        let failure = run(
            &argv(&["sh", "-c", "echo slow >&2; sleep 30; true"]),
            Duration::from_millis(200),
        )
        .expect_err("killed");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                &failure,
                ReloadFailure::Failed {
                    timed_out: true,
                    ..
                }
            ),
            "{failure:?}"
        );
        assert!(failure.to_string().starts_with("killed after"), "{failure}");
        assert!(failure.to_string().ends_with(": slow"), "{failure}");
        // Control: within its deadline it succeeds.
        run(&argv(&["sh", "-c", "sleep 0.1"]), Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn the_end_of_a_long_stderr_is_kept() {
        let script = "i=0; while [ $i -lt 2000 ]; do echo filler line $i >&2; i=$((i+1)); done; \
                      echo the real error >&2; exit 1";
        let failure = run(&argv(&["sh", "-c", script]), RELOAD_TIMEOUT).expect_err("exit 1");
        let ReloadFailure::Failed {
            stderr,
            timed_out: false,
            ..
        } = &failure
        else {
            panic!("{failure:?}");
        };
        assert!(stderr.len() <= RELOAD_STDERR_KEPT, "{}", stderr.len());
        assert!(stderr.ends_with("the real error"), "{stderr}");
        // Control: the start was written, and dropped.
        assert!(!stderr.contains("filler line 0\n"));
    }
}
