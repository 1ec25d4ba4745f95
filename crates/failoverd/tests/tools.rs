//! Every program the test suites run is in the tool table (`crates/lab/tools.txt`) with its Debian
//! package, `.ci/run` installs every package of the table, and the failoverd tests start
//! programs only through `support::tools`, which names the program and its package when it is
//! missing. So a fresh machine either runs the kernel tests or fails saying what to install.
//!
//! The programs are found by reading the sources: every crate's `tests/` (Rust) and
//! `lab/lab.sh` (shell). A program named only at run time (a variable) is not seen here; for
//! those `support::tools` panics when the table does not list them.

use failoverd_lab as support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use support::tools;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Every test source of the workspace: `crates/*/tests/**/*.rs` and the lab the tests share
/// (`crates/lab/src`).
fn test_sources() -> Vec<PathBuf> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(workspace().join("crates"))
        .expect("crates/")
        .map(|e| e.unwrap().path())
        .collect();
    crates.sort();
    let mut found = Vec::new();
    for krate in crates {
        rust_files(&krate.join("tests"), &mut found);
    }
    rust_files(&workspace().join("crates/lab/src"), &mut found);
    assert!(found.len() > 10, "test sources found: {found:?}");
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A program a source runs, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Spawned {
    program: String,
    at: String,
}

/// The programs among `spawned` that the table does not list.
fn unlisted(table: &[tools::Tool], spawned: &[Spawned]) -> Vec<Spawned> {
    spawned
        .iter()
        .filter(|s| !table.iter().any(|tool| tool.program == s.program))
        .cloned()
        .collect()
}

/// The last path component: `/usr/bin/test` runs `test`.
fn file_name(program: &str) -> String {
    program.rsplit('/').next().unwrap_or(program).to_string()
}

// ---------------------------------------------------------------------------------------------
// Rust sources

/// What the Rust scanner looks at: names, string literals (their text) and punctuation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(String),
    Punct(char),
}

/// The tokens of Rust source `text`, each with its line; comments are left out.
fn rust_tokens(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && at(i + 1) == '/') {
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && (at(i + 1) == '"' || (at(i + 1) == '#' && matches!(at(i + 2), '"' | '#')))
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            let mut body = String::new();
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                line += usize::from(chars[j] == '\n');
                body.push(chars[j]);
                j += 1;
            }
            tokens.push((Token::Str(body), start_line));
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            let mut body = String::new();
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    match at(j + 1) {
                        '\n' => {
                            // A line continuation: the newline and the next line's indent go.
                            line += 1;
                            j += 2;
                            while at(j).is_whitespace() {
                                line += usize::from(at(j) == '\n');
                                j += 1;
                            }
                            continue;
                        }
                        'n' => body.push('\n'),
                        't' => body.push('\t'),
                        other => body.push(other),
                    }
                    j += 2;
                    continue;
                }
                line += usize::from(chars[j] == '\n');
                body.push(chars[j]);
                j += 1;
            }
            tokens.push((Token::Str(body), start_line));
            i = j + 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\''), else a lifetime ('static).
            if at(i + 1) == '\\' {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let mut word = String::new();
            while at(i).is_alphanumeric() || at(i) == '_' {
                word.push(chars[i]);
                i += 1;
            }
            tokens.push((Token::Word(word), start_line));
        } else {
            tokens.push((Token::Punct(c), start_line));
            i += 1;
        }
    }
    tokens
}

/// The calls that start a program, and which argument names it: (function, argument index,
/// whether it is a method). The argument is the program (`"ip"`) or an argv (`&["ip", ...]`,
/// `vec!["ip", ...]`).
const SPAWNERS: &[(&str, usize, bool)] = &[
    // std::process::Command::new (checked separately: only support::tools may call it).
    ("new", 0, false),
    // support::tools::command, support::tools::netns_exec.
    ("command", 0, false),
    ("netns_exec", 1, false),
    // support::Lab::exec, Lab::try_exec: argv inside a namespace.
    ("exec", 1, true),
    ("try_exec", 1, true),
    // support::keepalived::spawn: argv inside a namespace.
    ("spawn", 1, false),
    // The tests' own `run(program, args)` helpers.
    ("run", 0, false),
];

/// TOML keys whose value is an argv the daemon under test runs.
const ARGV_KEYS: &[&str] = &["command", "on_active", "on_standby", "vtysh"];

/// The program an argument names, if it is written out: `"ip"`, `&["ip", ...]`,
/// `vec!["ip", ...]`.
fn literal_program(argument: &[Token]) -> Option<String> {
    let mut rest = argument;
    if rest.first() == Some(&Token::Punct('&')) {
        rest = &rest[1..];
    }
    if rest.first() == Some(&Token::Word("vec".into())) && rest.get(1) == Some(&Token::Punct('!')) {
        rest = &rest[2..];
    }
    if rest.first() == Some(&Token::Punct('[')) {
        rest = &rest[1..];
    }
    match rest.first() {
        Some(Token::Str(program)) => Some(file_name(program)),
        _ => None,
    }
}

/// The arguments of the call whose `(` is at `open`: the tokens of each, split at the top-level
/// commas.
fn call_arguments(tokens: &[(Token, usize)], open: usize) -> Vec<Vec<Token>> {
    let mut arguments = vec![Vec::new()];
    let mut depth = 0;
    for (token, _) in &tokens[open..] {
        match token {
            Token::Punct('(' | '[' | '{') => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            Token::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Token::Punct(',') if depth == 1 => {
                arguments.push(Vec::new());
                continue;
            }
            _ => {}
        }
        arguments.last_mut().unwrap().push(token.clone());
    }
    arguments
}

/// The programs Rust source `text` (called `name` in the results) starts where the program is
/// written out: calls of [`SPAWNERS`], and argvs of [`ARGV_KEYS`] in string literals (the
/// configuration of the daemon under test).
fn rust_spawns(name: &str, text: &str) -> Vec<Spawned> {
    let tokens = rust_tokens(text);
    let mut found = Vec::new();
    let word = |i: usize| match tokens.get(i) {
        Some((Token::Word(w), _)) => Some(w.as_str()),
        _ => None,
    };
    let punct = |i: usize, c: char| matches!(tokens.get(i), Some((Token::Punct(p), _)) if *p == c);
    for (i, (token, line)) in tokens.iter().enumerate() {
        if let Token::Str(text) = token {
            for key in ARGV_KEYS {
                let opener = format!("{key} = [\"");
                for (at, _) in text.match_indices(&opener) {
                    let rest = &text[at + opener.len()..];
                    if let Some(program) = rest.split('"').next() {
                        found.push(Spawned {
                            program: file_name(program),
                            at: format!("{name}:{line}"),
                        });
                    }
                }
            }
            continue;
        }
        let Token::Word(function) = token else {
            continue;
        };
        if !punct(i + 1, '(') {
            continue;
        }
        let method = i > 0 && punct(i - 1, '.');
        let path = i > 1 && punct(i - 1, ':') && punct(i - 2, ':');
        let definition = i > 0 && word(i - 1) == Some("fn");
        let Some(&(_, index, _)) = SPAWNERS.iter().find(|(f, _, is_method)| {
            *f == function
                && *is_method == method
                && !definition
                // `new` only as `Command::new`; `spawn` only as a free function.
                && (*f != "new" || (path && i > 2 && word(i - 3) == Some("Command")))
                && (*f != "spawn" || !path)
        }) else {
            continue;
        };
        let arguments = call_arguments(&tokens, i + 1);
        if let Some(program) = arguments.get(index).and_then(|a| literal_program(a)) {
            found.push(Spawned {
                program,
                at: format!("{name}:{line}"),
            });
        }
    }
    found
}

/// Where Rust source `text` calls `std::process::Command::new` on something else than a binary
/// Cargo built (`env!("CARGO_BIN_EXE_...")`): lines.
fn direct_commands(text: &str) -> Vec<usize> {
    let tokens = rust_tokens(text);
    let mut lines = Vec::new();
    for i in 3..tokens.len() {
        let is = |k: usize, t: Token| tokens.get(k).is_some_and(|(x, _)| *x == t);
        if is(i - 3, Token::Word("Command".into()))
            && is(i - 2, Token::Punct(':'))
            && is(i - 1, Token::Punct(':'))
            && is(i, Token::Word("new".into()))
            && is(i + 1, Token::Punct('('))
        {
            let arguments = call_arguments(&tokens, i + 1);
            let built = arguments.first().is_some_and(|a| {
                a.iter()
                    .any(|t| matches!(t, Token::Str(s) if s.starts_with("CARGO_BIN_EXE_")))
            });
            if !built {
                lines.push(tokens[i].1);
            }
        }
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// Shell

/// Bash builtins and keywords that may stand where a program does.
const SHELL_BUILTINS: &[&str] = &[
    ".", ":", "[", "break", "cd", "command", "continue", "declare", "echo", "eval", "exec", "exit",
    "export", "false", "getopts", "kill", "let", "local", "mapfile", "printf", "pwd", "read",
    "readonly", "return", "set", "shift", "shopt", "source", "test", "trap", "true", "type",
    "umask", "unset", "wait",
];
/// Keywords after which a command follows.
const SHELL_PREFIXES: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "time", "{", "}",
];
/// Keywords after which no command follows on the segment.
const SHELL_NO_COMMAND: &[&str] = &["for", "case", "in", "esac", "fi", "done", "select"];
/// Functions of lab.sh that run their arguments as a command, and how many arguments come
/// before it (`in_ns NS program ...`).
const SHELL_WRAPPERS: &[(&str, usize)] = &[("in_ns", 1)];

/// Where `text[open..]` (just after a `$(`, `<(` or `((`) closes: the index of its `)`.
fn shell_close(text: &[char], open: usize) -> usize {
    let (mut depth, mut i, mut double) = (1, open, false);
    while i < text.len() {
        match text[i] {
            '\\' => i += 1,
            '\'' if !double => {
                i += 1;
                while i < text.len() && text[i] != '\'' {
                    i += 1;
                }
            }
            '"' => double = !double,
            '$' if text.get(i + 1) == Some(&'(') => {
                i = shell_close(text, i + 2);
            }
            '(' if !double => depth += 1,
            ')' if !double => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    text.len()
}

/// Splits a shell line into its outer text, with each command substitution, process
/// substitution, arithmetic and `[[ ]]` test replaced by a placeholder word `_`, and the
/// command lines found inside substitutions (whose own substitutions come out as well).
fn shell_substitutions(line: &str) -> (String, Vec<String>) {
    let text: Vec<char> = line.chars().collect();
    let (mut outer, mut inner) = (String::new(), Vec::new());
    let (mut i, mut double, mut test) = (0, false, false);
    while i < text.len() {
        let c = text[i];
        let next = text.get(i + 1).copied().unwrap_or('\0');
        let word_start = i == 0 || text[i - 1].is_whitespace();
        if c == '\\' {
            outer.push(c);
            outer.push(next);
            i += 2;
            continue;
        }
        if c == '\'' && !double {
            let close = (i + 1..text.len())
                .find(|&k| text[k] == '\'')
                .unwrap_or(text.len());
            if !test {
                outer.extend(&text[i..=close.min(text.len() - 1)]);
            }
            i = close + 1;
            continue;
        }
        if c == '"' {
            double = !double;
        } else if (c == '$' || c == '<') && next == '(' && text.get(i + 2) != Some(&'(') {
            let close = shell_close(&text, i + 2);
            let (outer_inner, nested) = shell_substitutions(
                &text[i + 2..close.min(text.len())]
                    .iter()
                    .collect::<String>(),
            );
            inner.push(outer_inner);
            inner.extend(nested);
            if !test {
                outer.push('_');
            }
            i = close + 1;
            continue;
        } else if !double && (c == '$' || (word_start && c == '(')) && next == '(' {
            // Arithmetic: $(( )) or (( )).
            let open = if c == '$' { i + 2 } else { i + 1 };
            let close = shell_close(&text, open);
            if !test {
                outer.push('_');
            }
            i = close + 1;
            continue;
        } else if !double && word_start && c == '[' && next == '[' {
            test = true;
            outer.push('_');
            i += 2;
            continue;
        } else if test && !double && c == ']' && next == ']' {
            test = false;
            i += 2;
            continue;
        }
        if !test {
            outer.push(c);
        }
        i += 1;
    }
    (outer, inner)
}

/// Splits `line` (no substitutions left) into commands at unquoted `;`, `|` and `&` (not the
/// `&` of a redirection such as `2>&1`), then into words (quotes and `${...}` kept whole).
fn shell_segments(line: &str) -> Vec<Vec<String>> {
    let text: Vec<char> = line.chars().collect();
    let mut segments = vec![Vec::new()];
    let mut word = String::new();
    let (mut double, mut single, mut braces) = (false, false, 0);
    let end_word = |word: &mut String, segments: &mut Vec<Vec<String>>| {
        if !word.is_empty() {
            segments.last_mut().unwrap().push(std::mem::take(word));
        }
    };
    for (i, &c) in text.iter().enumerate() {
        let quoted = double || single || braces > 0;
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '{' if !single && i > 0 && text[i - 1] == '$' => braces += 1,
            '}' if braces > 0 => braces -= 1,
            _ => {}
        }
        let redirection = c == '&'
            && (matches!(text.get(i.wrapping_sub(1)), Some('>' | '<'))
                || text.get(i + 1) == Some(&'>'));
        if !quoted && matches!(c, ';' | '|' | '&') && !redirection {
            end_word(&mut word, &mut segments);
            segments.push(Vec::new());
        } else if !quoted && c.is_whitespace() {
            end_word(&mut word, &mut segments);
        } else {
            word.push(c);
        }
    }
    end_word(&mut word, &mut segments);
    segments.retain(|s| !s.is_empty());
    segments
}

/// The program a command (its words) runs, if it is written out: not a builtin, a keyword,
/// an assignment, a function of the script or a variable.
fn shell_program(words: &[String], functions: &BTreeSet<String>) -> Vec<String> {
    let mut i = 0;
    let mut found = Vec::new();
    while let Some(word) = words.get(i) {
        if word.ends_with("()") {
            // A function's definition.
            break;
        }
        let bare = word.trim_start_matches('(').trim_end_matches(')');
        let assignment = word.split_once('=').is_some_and(|(name, _)| {
            let name = name.trim_end_matches('+');
            !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
        if assignment {
            // `x=(a b c)`: the array's words are no command.
            if word.contains("=(") && !word.ends_with(')') {
                while words.get(i).is_some_and(|w| !w.ends_with(')')) {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        if SHELL_PREFIXES.contains(&bare) {
            i += 1;
            continue;
        }
        if SHELL_NO_COMMAND.contains(&bare) || bare == "_" {
            break;
        }
        if bare == "command" && words.get(i + 1).is_some_and(|w| w == "-v") {
            // `command -v nft`: the script needs nft.
            if let Some(program) = words.get(i + 2) {
                found.push(file_name(program));
            }
            break;
        }
        if let Some((_, skip)) = SHELL_WRAPPERS.iter().find(|(f, _)| *f == bare) {
            i += 1 + skip;
            continue;
        }
        if bare == "ip"
            && words.get(i + 1).is_some_and(|w| w == "netns")
            && words.get(i + 2).is_some_and(|w| w == "exec")
        {
            found.push("ip".to_string());
            i += 4;
            continue;
        }
        if bare.contains('$')
            || bare.starts_with('"')
            || SHELL_BUILTINS.contains(&bare)
            || functions.contains(bare)
        {
            break;
        }
        found.push(file_name(bare));
        break;
    }
    found
}

/// The programs shell script `text` (called `name` in the results) runs.
fn shell_spawns(name: &str, text: &str) -> Vec<Spawned> {
    let lines: Vec<&str> = text.lines().collect();
    let functions: BTreeSet<String> = lines
        .iter()
        .filter_map(|line| {
            let (name, rest) = line.trim_start().split_once("()")?;
            (rest.trim_start().starts_with('{') && !name.contains(' ')).then(|| name.to_string())
        })
        .collect();
    let mut found = Vec::new();
    let mut heredoc: Option<String> = None;
    let mut case_depth = 0;
    let mut joined = String::new();
    for (number, raw) in lines.iter().enumerate() {
        if let Some(end) = &heredoc {
            if raw.trim() == end {
                heredoc = None;
            }
            continue;
        }
        // Continuation lines are one command.
        if let Some(head) = raw.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            continue;
        }
        joined.push_str(raw);
        let line = std::mem::take(&mut joined);
        let line = strip_shell_comment(&line);
        if let Some(at) = line.find("<<") {
            let word = line[at + 2..].trim_start_matches('-').trim_start();
            let word: String = word
                .trim_start_matches(['\'', '"'])
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() {
                heredoc = Some(word);
            }
        }
        let mut line = line.to_string();
        if case_depth > 0 {
            // A case pattern, `a)` or `up:1 | up:2)`, before the command.
            if let Some(close) = line.find(')') {
                let pattern = &line[..close];
                if !pattern.contains(['(', '"', '$', '\'']) {
                    line = line[close + 1..].to_string();
                }
            }
        }
        let (outer, inner) = shell_substitutions(&line);
        for command_line in std::iter::once(outer).chain(inner) {
            for words in shell_segments(&command_line) {
                match words[0].as_str() {
                    "case" => case_depth += 1,
                    "esac" => case_depth -= 1,
                    _ => {}
                }
                for program in shell_program(&words, &functions) {
                    found.push(Spawned {
                        program,
                        at: format!("{name}:{}", number + 1),
                    });
                }
            }
        }
    }
    found
}

/// `line` without its comment: from a `#` that starts a word, outside quotes.
fn strip_shell_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => return &line[..at],
            _ => {}
        }
        previous = c;
    }
    line
}

// ---------------------------------------------------------------------------------------------
// the checks

fn every_spawn() -> Vec<Spawned> {
    let root = workspace();
    let mut spawned = Vec::new();
    for path in test_sources() {
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        spawned.extend(rust_spawns(&name, &read(&path)));
    }
    spawned.extend(shell_spawns("lab/lab.sh", &read(&root.join("lab/lab.sh"))));
    spawned
}

#[test]
fn every_program_the_tests_spawn_is_in_the_tool_table() {
    let spawned = every_spawn();
    let programs: BTreeSet<&str> = spawned.iter().map(|s| s.program.as_str()).collect();
    println!("programs the tests spawn: {programs:?}");
    // The scan sees the programs the suites are known to need.
    for known in [
        "ip",
        "nft",
        "conntrack",
        "ping",
        "keepalived",
        "sysctl",
        "bash",
        "kill",
    ] {
        assert!(programs.contains(known), "{known} not found: {programs:?}");
    }
    let missing = unlisted(tools::all(), &spawned);
    assert!(
        missing.is_empty(),
        "programs the tests spawn that crates/lab/tools.txt does not list (add each with its \
         Debian package; .ci/run installs the packages listed): {missing:#?}"
    );
}

#[test]
fn ci_installs_every_package_of_the_tool_table() {
    let out = tools::command("bash")
        .arg(workspace().join(".ci/run"))
        .arg("--apt-packages")
        .output()
        .expect("bash .ci/run --apt-packages");
    assert!(out.status.success(), "{out:?}");
    let installed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let needed: BTreeSet<String> = tools::all().iter().map(|t| t.package.clone()).collect();
    assert_eq!(installed, needed, ".ci/run's packages are the table's");
    assert!(needed.contains("iputils-ping"), "{needed:?}");
}

/// The failoverd tests start programs only through `support::tools` (which names a missing
/// program and its package); `Command::new` elsewhere only starts a binary Cargo built.
#[test]
fn the_failoverd_tests_start_programs_only_through_support_tools() {
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("crates/failoverd/tests"), &mut files);
    rust_files(&root.join("crates/lab/src"), &mut files);
    let helper = root.join("crates/lab/src/tools.rs");
    let direct: Vec<String> = files
        .iter()
        .filter(|path| **path != helper)
        .flat_map(|path| {
            let name = path
                .strip_prefix(&root)
                .unwrap_or(path)
                .display()
                .to_string();
            direct_commands(&read(path))
                .into_iter()
                .map(move |line| format!("{name}:{line}"))
        })
        .collect();
    assert!(
        direct.is_empty(),
        "Command::new outside crates/lab/src/tools.rs (use support::tools::command or \
         netns_exec): {direct:?}"
    );
    assert_eq!(
        direct_commands(&read(&helper)).len(),
        1,
        "support::tools::command is where programs start"
    );
}

#[test]
fn the_table_parses_and_names_a_package_for_every_program() {
    let table = tools::all();
    assert!(table.len() >= 20, "{table:?}");
    let ping = tools::find(Path::new("ping")).expect("ping in the table");
    assert_eq!(ping.package, "iputils-ping");
    let zebra = tools::find(Path::new("/usr/lib/frr/zebra")).expect("zebra by its path");
    assert_eq!(zebra.package, "frr");
    assert!(
        tools::parse("ping\n").is_err(),
        "a line without its package"
    );
    assert!(
        tools::parse("ip iproute2\nip iproute2\n").is_err(),
        "a program twice"
    );
}

/// The control of the runtime check: a program not installed fails naming it and its package.
#[test]
fn a_missing_program_is_reported_with_its_package() {
    let ping = tools::find(Path::new("ping")).unwrap();
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(ping.locate_in(Some(empty.path().as_os_str())), None);
    assert_eq!(
        ping.not_installed(),
        "`ping` (Debian package iputils-ping) is not installed; .ci/run installs it"
    );
}

#[test]
#[should_panic(expected = "which crates/lab/tools.txt does not list")]
fn a_program_missing_from_the_table_cannot_be_started() {
    // A variable, so that the scan of this file does not see it.
    let program = "frobnicate";
    tools::command(program);
}

// ---------------------------------------------------------------------------------------------
// the scanners' controls

/// The control of the table check: a spawned program the table does not list fails it.
#[test]
fn a_spawned_program_missing_from_the_table_fails_the_check() {
    let sample = r#"
        fn f(lab: &Lab) {
            lab.try_exec(Ns::Client, &["ping", "-c", "1"]);
            lab.exec(fw, &["frobnicate", "--all"]);
        }
    "#;
    let spawned = rust_spawns("sample.rs", sample);
    assert_eq!(
        unlisted(tools::all(), &spawned),
        [Spawned {
            program: "frobnicate".into(),
            at: "sample.rs:4".into()
        }]
    );
}

#[test]
fn the_rust_scanner_sees_every_way_of_spawning() {
    let sample = r#"
        // Command::new("commented") is not code.
        fn run(program: &str) {}
        fn f(lab: &Lab) {
            std::process::Command::new("one").arg("x");
            tools::command("/usr/bin/two").status();
            tools::netns_exec(&ns, "three");
            lab.exec(fw, &["four", "-L"]);
            lab.try_exec(
                Ns::Client,
                &[
                    "five",
                ],
            );
            spawn(&lab.ns(fw), &["six", "--dont-fork"], &log);
            run("seven", &["x"]);
            let toml = "[hooks]\non_active = [\"/bin/eight\", \"-c\"]\n";
            let script = format!("command = [\"nine\"]\nx = '{}'", 'q');
            threads.spawn("a thread name", move || {});
            std::thread::spawn(move || run_in(ns, f));
            Command::new(env!("CARGO_BIN_EXE_failoverd"));
            let s = "Command::new(\"in a string\")";
        }
    "#;
    let programs: Vec<String> = rust_spawns("sample.rs", sample)
        .into_iter()
        .map(|s| s.program)
        .collect();
    assert_eq!(
        programs,
        [
            "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"
        ]
    );
    assert_eq!(direct_commands(sample), [5]);
}

#[test]
fn the_shell_scanner_sees_commands_and_skips_the_rest() {
    let sample = r#"#!/usr/bin/env bash
# comment: notrun
DIR=$(cd "$(dirname "$0")" && pwd)
readonly NAMES=(alpha beta gamma)
in_ns() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}
helper() {
	command -v nft >/dev/null || exit 1
	for ((i = 0; i < 3; i++)); do
		sleep 0.1
	done
	if [[ -n $(grep -c x "$f") && -x $f ]]; then tr a b; fi
	in_ns "$ns" sysctl -qw x=1
	count=$(in_ns "$ns" conntrack -C 2>/dev/null || echo "?")
	echo "held by: $(helper "$p")" >&2
	mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null || true)
	kill -TERM "${pids[@]}" 2>/dev/null || true
	dev=${x#* } host=${x% *}
	"$bin/failoverd" --config x >log 2>&1 &
	cat <<EOF
	notrun --heredoc
EOF
	case $1 in
	a) from=b ;;
	up:0 | up:1) helper "$1" ;;
	*) sed -n 1p ;;
	esac
}
"#;
    let programs: Vec<String> = shell_spawns("sample.sh", sample)
        .into_iter()
        .map(|s| s.program)
        .collect();
    assert_eq!(
        programs,
        [
            "dirname",
            "ip",
            "nft",
            "sleep",
            "tr",
            "grep",
            "sysctl",
            "conntrack",
            "ip",
            "cat",
            "sed"
        ]
    );
}
