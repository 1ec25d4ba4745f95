//! `failoverd`: the daemon, and `failoverd demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use failoverd::demo;

/// Stateful failover for a pair of Linux firewalls.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = failoverd_control::config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Two nodes on loopback (memory backend, real TLS failover link): replicate a stream of
    /// sessions, kill the active node abruptly, measure the takeover.
    Demo {
        /// Print the measurements as one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// Session events per second on the active node.
        #[arg(long, default_value_t = demo::Options::default().rate)]
        rate: u32,
        /// Seconds of traffic before the kill.
        #[arg(long, default_value_t = demo::Options::default().duration.as_secs_f64())]
        seconds: f64,
        /// Sessions created before the traffic starts.
        #[arg(long, default_value_t = demo::Options::default().sessions)]
        sessions: u32,
        /// Hello interval in milliseconds (default: the daemon's).
        #[arg(long, default_value_t = demo::Options::default().hello_interval.as_millis() as u64)]
        hello_ms: u64,
        /// Dead interval in milliseconds (default: the daemon's).
        #[arg(long, default_value_t = demo::Options::default().dead_interval.as_millis() as u64)]
        dead_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("failoverd: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => runtime.block_on(failoverd::daemon::run(&cli.config)),
        Some(Command::Demo {
            json,
            rate,
            seconds,
            sessions,
            hello_ms,
            dead_ms,
        }) => {
            let options = demo::Options {
                rate,
                duration: Duration::from_secs_f64(seconds),
                sessions,
                hello_interval: Duration::from_millis(hello_ms),
                dead_interval: Duration::from_millis(dead_ms),
            };
            runtime.block_on(run_demo(options, json))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("failoverd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_demo(options: demo::Options, json: bool) -> anyhow::Result<()> {
    // Node logs stay quiet unless asked for: the demo prints its own progress.
    let filter = tracing_subscriber::EnvFilter::try_from_env("FAILOVERD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let report = demo::run(options).await?;
    println!("{}", demo::summary(&report));
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    let failures = report.failures();
    if !failures.is_empty() {
        anyhow::bail!("{}", failures.join("; "));
    }
    Ok(())
}
