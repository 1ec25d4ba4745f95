//! `failoverctl`: the command-line client of failoverd.
//!
//! Every command but `keygen` asks the daemon over its control socket and prints the answer,
//! for people by default and as the response's `data` (one line of JSON, field names as in
//! `crates/control/README.md`) with `--json`.
//!
//! Exit codes: 0 success; 1 the daemon refused or failed the command (or a local operation
//! such as `keygen` failed); 2 usage errors, an unusable `--config`, or no daemon to talk to.
#![forbid(unsafe_code)]

mod format;
mod keygen;

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use failoverd_control::config::{self, Config, ConfigError};
use failoverd_control::protocol::{
    ConfigDiff, ConfigSyncReply, ConfigSyncStatus, EventList, Family, Generated, MaintenanceDone,
    OwnerFilter, PeerInfo, Request, SessionCounts, SessionFilter, SessionList, Status,
    SwitchoverDone,
};
use failoverd_control::transport::{self, ControlError};
use serde::de::DeserializeOwned;

#[derive(Debug, Parser)]
#[command(
    name = "failoverctl",
    version,
    about = "Control failoverd, stateful failover for a pair of Linux firewalls"
)]
struct Cli {
    /// The daemon's control socket [default: control.socket of the configuration, else
    /// /run/failoverd/failoverd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The daemon's configuration, read to find the control socket [default:
    /// /etc/failoverd/failoverd.toml, if it exists]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the answer as one line of JSON (the response's data) for scripts
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// This node: state, role, readiness, peer, takeover (VRRP, FRR, hooks), sessions,
    /// replication lag, counters
    Status,
    /// The peer as this node sees it
    Peer,
    /// List (the default), count or generate sessions
    Sessions(SessionsArgs),
    /// Recent events (state and role changes with their reasons), oldest first
    Events {
        /// Only the newest N
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Hand the active role to the peer
    Switchover,
    /// Turn maintenance on (a VRRP node steps down and stays backup) or off
    Maintenance {
        /// on or off
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Configuration sync: status, differences with the peer, a full sync now
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Generate this node's key and certificate (local; no daemon needed)
    Keygen {
        /// Where to write the key (PEM, mode 0600), e.g. /etc/failoverd/node.pem
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// Replace an existing key (the peer's link.peer_key must then be updated)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum ConfigCommand {
    /// Mode, status and why; per unit the hash on each node, the last sync and its result
    Status,
    /// A unified diff per unit between this node's read-back and the peer's
    Diff,
    /// Send every unit to the peer now (this node must be the source, in Synchronization)
    Sync,
}

impl ConfigCommand {
    fn request(self) -> Request {
        match self {
            ConfigCommand::Status => Request::ConfigStatus,
            ConfigCommand::Diff => Request::ConfigDiff,
            ConfigCommand::Sync => Request::ConfigSync,
        }
    }

    /// The human output of the answer.
    fn human(self) -> fn(serde_json::Value) -> anyhow::Result<String> {
        match self {
            ConfigCommand::Status => {
                |data| Ok(format::config_status(&decode::<ConfigSyncStatus>(data)?))
            }
            ConfigCommand::Diff => |data| Ok(format::config_diff(&decode::<ConfigDiff>(data)?)),
            ConfigCommand::Sync => |data| format::config_sync(&decode::<ConfigSyncReply>(data)?),
        }
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SessionsArgs {
    #[command(subcommand)]
    command: Option<SessionsCommand>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Count sessions: total, owned, peer-owned, changes on their way
    Count,
    /// List sessions (the default)
    List(ListArgs),
    /// Create N synthetic local sessions (memory backend only), to try replication out
    Generate {
        /// How many
        #[arg(long, value_name = "N")]
        count: u32,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Protocol name (tcp, udp, icmp, ...) or number
    #[arg(long, value_name = "P")]
    proto: Option<String>,
    /// Any of the session's four addresses (NAT addresses too)
    #[arg(long, value_name = "A")]
    addr: Option<IpAddr>,
    /// Any of the session's four ports
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Sessions this node owns, or the peer's
    #[arg(long, value_enum)]
    owner: Option<Owner>,
    /// Address family
    #[arg(long, value_enum)]
    family: Option<FamilyArg>,
    /// Show at most N sessions; 0 shows all
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Owner {
    Local,
    Peer,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FamilyArg {
    Ipv4,
    Ipv6,
}

impl ListArgs {
    fn request(&self) -> Request {
        Request::Sessions {
            filter: SessionFilter {
                proto: self.proto.clone(),
                addr: self.addr,
                port: self.port,
                owner: self.owner.map(|owner| match owner {
                    Owner::Local => OwnerFilter::Local,
                    Owner::Peer => OwnerFilter::Peer,
                }),
                family: self.family.map(|family| match family {
                    FamilyArg::Ipv4 => Family::Ipv4,
                    FamilyArg::Ipv6 => Family::Ipv6,
                }),
            },
            limit: (self.limit > 0).then_some(self.limit),
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit with 2 here, from clap.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("failoverctl: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("failoverctl: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// 2 when there is nothing to talk to or the configuration cannot be used (fix the call or
/// start the daemon), 1 when the command itself failed.
fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(err) = err.downcast_ref::<ControlError>() {
        return match err {
            ControlError::Connect { .. } => 2,
            _ => 1,
        };
    }
    if err.downcast_ref::<ConfigError>().is_some() {
        return 2;
    }
    1
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (request, human): (Request, fn(serde_json::Value) -> anyhow::Result<String>) =
        match &cli.command {
            Command::Keygen { out, force } => {
                let info = keygen::keygen(out, *force)?;
                return if cli.json {
                    print(&format!("{}\n", serde_json::to_string(&info)?))
                } else {
                    print(&keygen::human(&info))
                };
            }
            Command::Status => (Request::Status, |data| {
                Ok(format::status(&decode::<Status>(data)?))
            }),
            Command::Peer => (Request::Peer, |data| {
                Ok(format::peer(&decode::<PeerInfo>(data)?))
            }),
            Command::Sessions(args) => match &args.command {
                None => (args.list.request(), list_human),
                Some(SessionsCommand::List(list)) => (list.request(), list_human),
                Some(SessionsCommand::Count) => (Request::SessionsCount, |data| {
                    Ok(format::counts(&decode::<SessionCounts>(data)?))
                }),
                Some(SessionsCommand::Generate { count }) => {
                    (Request::SessionsGenerate { count: *count }, |data| {
                        Ok(format::generated(&decode::<Generated>(data)?))
                    })
                }
            },
            Command::Events { limit } => (Request::Events { limit: *limit }, |data| {
                Ok(format::events(&decode::<EventList>(data)?))
            }),
            Command::Switchover => (Request::Switchover, |data| {
                Ok(format::switchover(&decode::<SwitchoverDone>(data)?))
            }),
            Command::Maintenance { state } => (
                Request::Maintenance {
                    on: *state == OnOff::On,
                },
                |data| Ok(format::maintenance(&decode::<MaintenanceDone>(data)?)),
            ),
            Command::Config { command } => (command.request(), command.human()),
        };
    let socket = socket_path(cli.socket.as_deref(), cli.config.as_deref())?;
    let data = transport::request(&socket, &request).await?;
    if cli.json {
        // The data exactly as the daemon sent it, so fields newer than this client survive.
        print(&format!("{}\n", serde_json::to_string(&data)?))?;
        // A refused sync fails with --json too: scripts test the exit status.
        if request == Request::ConfigSync {
            format::config_sync(&decode::<ConfigSyncReply>(data)?)?;
        }
        Ok(())
    } else {
        print(&human(data)?)
    }
}

fn list_human(data: serde_json::Value) -> anyhow::Result<String> {
    Ok(format::sessions(&decode::<SessionList>(data)?))
}

/// The typed form of a response's data; failing means the daemon speaks another version.
fn decode<T: DeserializeOwned>(data: serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(data).context("failoverd sent data this failoverctl does not understand (another version?); --json shows it")
}

/// `--socket`, else the configuration's `control.socket`, else the default.
fn socket_path(socket: Option<&Path>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(socket) = socket {
        return Ok(socket.to_path_buf());
    }
    if let Some(path) = config {
        return Ok(Config::load(path)?.control.socket);
    }
    // The default file is optional: many hosts run failoverd with the default socket.
    match Config::load(Path::new(config::DEFAULT_PATH)) {
        Ok(config) => Ok(config.control.socket),
        Err(ConfigError::Read { .. }) => Ok(PathBuf::from(config::DEFAULT_SOCKET)),
        Err(err) => {
            eprintln!(
                "failoverctl: warning: {err}; using {}",
                config::DEFAULT_SOCKET
            );
            Ok(PathBuf::from(config::DEFAULT_SOCKET))
        }
    }
}

/// Writes to stdout; a closed pipe (`failoverctl sessions | head`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            Err(err).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("failoverctl").chain(args.iter().copied()))
    }

    fn sessions_request(args: &[&str]) -> Request {
        match parse(args).unwrap().command {
            Command::Sessions(SessionsArgs {
                command: None,
                list,
            }) => list.request(),
            Command::Sessions(SessionsArgs {
                command: Some(SessionsCommand::List(list)),
                ..
            }) => list.request(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_sessions_is_list() {
        let default = Request::Sessions {
            filter: SessionFilter::default(),
            limit: Some(100),
        };
        assert_eq!(sessions_request(&["sessions"]), default);
        assert_eq!(sessions_request(&["sessions", "list"]), default);
        let filtered = sessions_request(&[
            "sessions", "--proto", "tcp", "--addr", "10.0.0.1", "--port", "80", "--owner", "peer",
            "--family", "ipv4", "--limit", "0",
        ]);
        assert_eq!(
            filtered,
            Request::Sessions {
                filter: SessionFilter {
                    proto: Some("tcp".into()),
                    addr: Some("10.0.0.1".parse().unwrap()),
                    port: Some(80),
                    owner: Some(OwnerFilter::Peer),
                    family: Some(Family::Ipv4),
                },
                limit: None,
            }
        );
        assert_eq!(
            sessions_request(&["sessions", "list", "--owner", "local", "--limit", "5"]),
            Request::Sessions {
                filter: SessionFilter {
                    owner: Some(OwnerFilter::Local),
                    ..SessionFilter::default()
                },
                limit: Some(5),
            }
        );
    }

    #[test]
    fn maintenance_takes_on_or_off() {
        for (word, expected) in [("on", OnOff::On), ("off", OnOff::Off)] {
            match parse(&["maintenance", word]).unwrap().command {
                Command::Maintenance { state } => assert_eq!(state, expected),
                other => panic!("{other:?}"),
            }
        }
        assert!(parse(&["maintenance"]).is_err());
        assert!(parse(&["maintenance", "yes"]).is_err());
        assert!(parse(&["maintenance", "on", "--json"]).is_ok());
    }

    #[test]
    fn config_commands() {
        for (word, request) in [
            ("status", Request::ConfigStatus),
            ("diff", Request::ConfigDiff),
            ("sync", Request::ConfigSync),
        ] {
            match parse(&["config", word, "--json"]).unwrap().command {
                Command::Config { command } => assert_eq!(command.request(), request),
                other => panic!("{other:?}"),
            }
        }
        // `config` is a command; `--config` still names the file.
        let cli = parse(&["--config", "/etc/x.toml", "config", "status"]).unwrap();
        assert_eq!(cli.config.as_deref(), Some(Path::new("/etc/x.toml")));
        assert!(parse(&["config"]).is_err());
        assert!(parse(&["config", "push"]).is_err());
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&["sessions", "--port", "http"]).is_err());
        assert!(parse(&["sessions", "--owner", "mine"]).is_err());
        assert!(parse(&["sessions", "--proto", "tcp", "count"]).is_err());
        assert!(parse(&["keygen"]).is_err());
        assert!(parse(&["status", "--json", "--socket", "/tmp/s"]).is_ok());
    }

    #[test]
    fn socket_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("failoverd.toml");
        let text = Config::example().replace("/run/failoverd/failoverd.sock", "ctl.sock");
        std::fs::write(&config, text).unwrap();
        let explicit = Path::new("/tmp/explicit.sock");
        assert_eq!(
            socket_path(Some(explicit), Some(&config)).unwrap(),
            explicit
        );
        // Relative to the configuration's directory.
        assert_eq!(
            socket_path(None, Some(&config)).unwrap(),
            dir.path().join("ctl.sock")
        );
        let missing = dir.path().join("missing.toml");
        let err = socket_path(None, Some(&missing)).unwrap_err();
        assert_eq!(exit_code(&err), 2);
    }

    /// A value this failoverctl does not know (a newer daemon's) is not guessed: the human
    /// output fails, naming `--json`, which prints the data as the daemon sent it.
    #[test]
    fn an_unknown_value_from_the_daemon_is_a_clear_error() {
        let mut peer = serde_json::json!({
            "address": "192.0.2.2:7701", "link": "up", "node_id": null, "state": null,
            "role": null, "priority": null, "ready": null, "last_hello_ms_ago": null,
            "rtt_us": null, "incompatibility": null,
        });
        assert!(decode::<PeerInfo>(peer.clone()).is_ok());
        peer["link"] = "degraded".into();
        let err = decode::<PeerInfo>(peer).unwrap_err();
        assert!(
            format!("{err:#}").starts_with(
                "failoverd sent data this failoverctl does not understand (another version?); \
                 --json shows it: unknown variant `degraded`"
            ),
            "{err:#}"
        );
    }

    #[test]
    fn exit_codes() {
        let daemon = anyhow::Error::from(ControlError::Daemon("no".into()));
        assert_eq!(exit_code(&daemon), 1);
        let connect = anyhow::Error::from(ControlError::Connect {
            path: "/x".into(),
            error: io::ErrorKind::NotFound.into(),
        });
        assert_eq!(exit_code(&connect), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("keygen failed")), 1);
    }
}
