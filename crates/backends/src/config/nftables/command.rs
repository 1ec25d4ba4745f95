//! Running `nft`: the configured command prefix, a script on stdin, the child's PID kept.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::config::ConfigError;

/// What one run of nft produced.
pub(super) struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    /// The child's PID: the `nft` process itself, since `ip netns exec` execs rather than
    /// forks; the kernel names it in the generation a commit makes (`NFTA_GEN_PROC_PID`).
    pub pid: u32,
}

impl Output {
    /// nft's error message, or the exit status's absence of one.
    pub(super) fn message(&self) -> String {
        let message = self.stderr.trim();
        if message.is_empty() {
            "nft failed without a message".to_owned()
        } else {
            message.to_owned()
        }
    }
}

/// Runs `argv` followed by `args`, `stdin` (if any) written to it while its output is read.
pub(super) fn run(
    argv: &[String],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Output, ConfigError> {
    let tool = || argv.join(" ");
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| ConfigError::Tool {
        tool: tool(),
        message: e.to_string(),
    })?;
    let pid = child.id();
    let input = child.stdin.take();
    // Written from another thread: a large script could fill the pipe while nft fills its
    // output pipe, and each would wait for the other.
    let output = std::thread::scope(|scope| {
        if let (Some(mut pipe), Some(bytes)) = (input, stdin) {
            // A write error means nft exited early; its status and message tell why.
            scope.spawn(move || pipe.write_all(bytes));
        }
        child.wait_with_output()
    })
    .map_err(|e| ConfigError::Tool {
        tool: tool(),
        message: e.to_string(),
    })?;
    Ok(Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        pid,
    })
}
