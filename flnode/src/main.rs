//! flnode: carries a local WireGuard's UDP traffic to other nodes over
//! WebRTC data channels set up through a flsignal server.

mod admission;
mod ctl;
mod host_addresses;
mod ice_servers;
mod key_file;
mod netwatch;
mod node;
mod path_stats;
mod peer;
mod reconnect;
mod runtime;
mod settings;
mod signal_client;
mod test_peers;
mod tls;
mod turn_relay;
mod udp;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::io::AsyncReadExt;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// `Up`'s many flags make it the large variant; the value is parsed once.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Creates the node key in DIR (never overwrites) and prints the node ID.
    Init {
        #[arg(long, env = "FLNODE_CONFIG")]
        config: PathBuf,
    },
    /// Prints the node ID.
    Id {
        #[arg(long, env = "FLNODE_CONFIG")]
        config: PathBuf,
    },
    /// Runs the node until SIGINT/SIGTERM.
    Up(settings::UpArgs),
    /// Asks the running node how its peers are doing.
    Status {
        #[arg(long, env = "FLNODE_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flnode: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { config } => {
            let key = key_file::init(&config)?;
            println!("{}", key.id());
            Ok(())
        }
        Command::Id { config } => {
            println!("{}", key_file::load(&config)?.id());
            Ok(())
        }
        Command::Status { config } => runtime(1)?.block_on(status(config)),
        Command::Up(args) => {
            init_logging();
            let key = key_file::load(&args.config)?;
            let settings = settings::resolve(args)?;
            runtime(settings.threads)?.block_on(node::run(key, settings, shutdown_signal()))
        }
    }
}

/// One thread by default: every datagram passes between flnode's tasks and
/// the WebRTC stack's several times, and on one thread those hand-overs
/// cost no cross-core wake-ups. Measured on two cores (BENCHMARKS.md): 38
/// rather than 26 thousand datagrams/s, TCP through WireGuard 0.52 rather
/// than 0.45 of direct. More threads help only with many busy peers.
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build().context("cannot start the async runtime")
}

/// How long `flnode status` waits for the running node's report.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn status(config: PathBuf) -> anyhow::Result<()> {
    let path = node::control_path(&config);
    let mut stream = tokio::net::UnixStream::connect(&path)
        .await
        .with_context(|| format!("no running flnode answers at {}", path.display()))?;
    let mut report = String::new();
    // A node that is alive answers at once; do not hang on one that is not.
    tokio::time::timeout(STATUS_TIMEOUT, stream.read_to_string(&mut report))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the flnode at {} did not answer within {STATUS_TIMEOUT:?}",
                path.display()
            )
        })??;
    print!("{report}");
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
