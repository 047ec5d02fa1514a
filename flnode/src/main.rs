//! flnode: carries a local WireGuard's UDP traffic to other nodes over
//! WebRTC data channels set up through a flsignal server.

mod admission;
mod allow_list;
mod control;
mod ctl;
mod halves;
mod host_addresses;
mod ice_servers;
mod key_file;
mod log_summary;
mod mtu;
mod netwatch;
mod node;
mod path_stats;
mod peer;
mod peers;
mod peers_command;
mod peers_file;
mod reconnect;
mod relay_link;
mod runtime;
mod sealing;
mod settings;
mod signal_client;
mod signal_socket;
mod status;
mod test_peers;
mod tls;
mod tunnel_settings;
mod turn_relay;
mod udp;
mod udp_batch;
mod wireguard;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
    /// Prints the node ID, then its overlay addresses and WireGuard key.
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
    /// Lists the allowed peers (managed mode); `add` and `remove` change
    /// the list in flnode.toml and in the running node.
    Peers(peers_command::PeersArgs),
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
            let id = key_file::load(&config)?.id();
            let mut lines = format!("{id}\noverlay {}\n", flproto::overlay::OverlayAddresses::of(&id));
            if let Some(key) = wireguard::key::WgKey::of(&id) {
                lines.push_str(&format!("wireguard-key {key}\n"));
            }
            // A reader that stops early (`flnode id | head -1`) is fine.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), lines.as_bytes());
            Ok(())
        }
        Command::Status { config } => runtime(1)?.block_on(status(config)),
        Command::Peers(args) => runtime(1)?.block_on(peers_command::run(args)),
        Command::Up(args) => {
            init_logging(&args);
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

async fn status(config: PathBuf) -> anyhow::Result<()> {
    match control::ask(&config, &control::Request::Status).await? {
        control::Reply::Ok(report) => {
            print!("{report}");
            Ok(())
        }
        control::Reply::Error(error) => Err(anyhow::anyhow!("{error}")),
    }
}

/// Logs to stderr, `RUST_LOG` deciding what (default `info`), with lines
/// that repeat summarised (see [`log_summary`]).
fn init_logging(args: &settings::UpArgs) {
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let repeats = log_summary::filter(args.log.repeats(), args.log.window());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::filter::FilterExt::and(filter, repeats));
    tracing_subscriber::registry().with(writer).init();
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
