//! The programs the tests run, from the tool table (`crates/lab/tools.txt`; `.ci/run`
//! installs its packages), and the one way the tests start them: [`command`] and
//! [`netns_exec`]. Both find the program first and panic naming it and its Debian package when
//! it is not installed: a missing program is a failure that says so, never a command that
//! "failed" and reads as "no answer" (`ip netns exec NS ping` without `ping` fails just as a
//! ping nobody answers does).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The table as written.
pub const TABLE: &str = include_str!("../tools.txt");

/// A program of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// Its file name, e.g. `ping`.
    pub program: String,
    /// The Debian package that provides it, e.g. `iputils-ping`.
    pub package: String,
    /// Where it is when not on `PATH` (FRR's daemons: `/usr/lib/frr`).
    pub dir: Option<PathBuf>,
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` (Debian package {})", self.program, self.package)
    }
}

impl Tool {
    /// Where it is: the first directory of `path` (a `PATH` value) holding it, else its
    /// [`Tool::dir`]; `None` when it is in neither.
    pub fn locate_in(&self, path: Option<&OsStr>) -> Option<PathBuf> {
        let dirs = path.map(|p| std::env::split_paths(p).collect::<Vec<_>>());
        dirs.into_iter()
            .flatten()
            .chain(self.dir.clone())
            .map(|dir| dir.join(&self.program))
            .find(|candidate| candidate.is_file())
    }

    /// [`Tool::locate_in`] this process's `PATH`.
    pub fn locate(&self) -> Option<PathBuf> {
        self.locate_in(std::env::var_os("PATH").as_deref())
    }

    /// The message for a test that needs it where it is not installed.
    pub fn not_installed(&self) -> String {
        format!("{self} is not installed; .ci/run installs it")
    }
}

/// Parses the table: `program package [directory]` per line; `#` starts a comment.
pub fn parse(table: &str) -> Result<Vec<Tool>, String> {
    let mut tools: Vec<Tool> = Vec::new();
    for (number, line) in table.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        let (program, package, dir) = match words[..] {
            [] => continue,
            [program, package] => (program, package, None),
            [program, package, dir] => (program, package, Some(PathBuf::from(dir))),
            _ => {
                return Err(format!(
                    "line {}: `program package [directory]`",
                    number + 1
                ));
            }
        };
        if tools.iter().any(|tool| tool.program == program) {
            return Err(format!("line {}: {program} twice", number + 1));
        }
        tools.push(Tool {
            program: program.to_string(),
            package: package.to_string(),
            dir,
        });
    }
    Ok(tools)
}

/// Every program of `tools.txt`.
pub fn all() -> &'static [Tool] {
    static TOOLS: OnceLock<Vec<Tool>> = OnceLock::new();
    TOOLS.get_or_init(|| parse(TABLE).unwrap_or_else(|e| panic!("crates/lab/tools.txt: {e}")))
}

/// The table's entry for `program` (a name, or a path whose file name is looked up); `None`
/// when the table does not list it.
pub fn find(program: &Path) -> Option<&'static Tool> {
    let name = program.file_name()?.to_str()?;
    all().iter().find(|tool| tool.program == name)
}

/// The table's entry for `program`; panics when the table does not list it (a test runs a
/// program nobody installs: add it to `tools.txt` with its package).
pub fn tool(program: &Path) -> &'static Tool {
    find(program).unwrap_or_else(|| {
        panic!(
            "the tests run `{}`, which crates/lab/tools.txt does not list: add it with its Debian \
             package (.ci/run installs the packages listed there)",
            program.display()
        )
    })
}

/// The programs of the table that are not installed.
pub fn missing() -> Vec<&'static Tool> {
    all()
        .iter()
        .filter(|tool| tool.locate().is_none())
        .collect()
}

/// Where `program` is: itself when it is a path to a file, else found like [`Tool::locate`].
/// Panics, naming it and its package, when it is not installed or not in the table.
pub fn resolve(program: impl AsRef<Path>) -> PathBuf {
    let program = program.as_ref();
    let tool = tool(program);
    let found = if program.components().count() > 1 {
        program.is_file().then(|| program.to_path_buf())
    } else {
        tool.locate()
    };
    found.unwrap_or_else(|| panic!("{}", tool.not_installed()))
}

/// `program` (see [`resolve`]) as a command; the caller adds its arguments.
pub fn command(program: impl AsRef<Path>) -> Command {
    Command::new(resolve(program))
}

/// `ip netns exec NS program` (both found, see [`resolve`]); the caller adds its arguments.
pub fn netns_exec(ns: &str, program: impl AsRef<Path>) -> Command {
    let mut command = command("ip");
    command.args(["netns", "exec", ns]).arg(resolve(program));
    command
}
