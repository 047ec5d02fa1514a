//! flnode: carries a local WireGuard's UDP traffic to other nodes over
//! WebRTC data channels set up through a flsignal server.

mod key_file;
mod node;
mod peer;
mod signal_client;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use flproto::NodeId;
use tokio::io::AsyncReadExt;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
    Up(UpArgs),
    /// Asks the running node how its peers are doing.
    Status {
        #[arg(long, env = "FLNODE_CONFIG")]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct UpArgs {
    #[arg(long, env = "FLNODE_CONFIG")]
    config: PathBuf,
    /// Signalling server, e.g. ws://signal.example:8765
    #[arg(long, env = "FLNODE_SIGNAL")]
    signal: String,
    /// The local WireGuard's UDP address (its ListenPort).
    #[arg(long, env = "FLNODE_WIREGUARD", default_value = "127.0.0.1:51820")]
    wireguard: SocketAddr,
    /// A peer as ID=LOCAL_ADDR: flnode listens on LOCAL_ADDR, the local
    /// WireGuard's endpoint for that peer. Repeat for several peers.
    #[arg(long = "peer", env = "FLNODE_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// Authenticate with fledger's plain version-3 announce (for fledger servers).
    #[arg(long, env = "FLNODE_FLEDGER_COMPAT")]
    fledger_compat: bool,
    /// Name announced to the network.
    #[arg(long, env = "FLNODE_NAME", default_value = "flnode")]
    name: String,
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
        Command::Status { config } => runtime()?.block_on(status(config)),
        Command::Up(args) => {
            init_logging();
            let key = key_file::load(&args.config)?;
            let settings = node::NodeSettings {
                peers: args
                    .peers
                    .iter()
                    .map(|p| parse_peer(p))
                    .collect::<anyhow::Result<_>>()?,
                config_dir: args.config,
                signal: args.signal,
                wireguard: args.wireguard,
                auth: if args.fledger_compat {
                    signal_client::AuthMode::FledgerCompat
                } else {
                    signal_client::AuthMode::Bound
                },
                name: args.name,
            };
            runtime()?.block_on(node::run(key, settings, shutdown_signal()))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

fn parse_peer(text: &str) -> anyhow::Result<(NodeId, SocketAddr)> {
    let Some((id, addr)) = text.split_once('=') else {
        bail!("--peer {text:?}: expected ID=ADDR, e.g. <64 hex>=127.0.0.1:51900");
    };
    let id: NodeId = id
        .trim()
        .parse()
        .with_context(|| format!("--peer {text:?}: the ID must be 64 hex characters (from `flnode id`)"))?;
    let addr = addr
        .trim()
        .parse()
        .with_context(|| format!("--peer {text:?}: the address must be IP:PORT"))?;
    Ok((id, addr))
}

async fn status(config: PathBuf) -> anyhow::Result<()> {
    let path = node::control_path(&config);
    let mut stream = tokio::net::UnixStream::connect(&path)
        .await
        .with_context(|| format!("no running flnode answers at {}", path.display()))?;
    let mut report = String::new();
    stream.read_to_string(&mut report).await?;
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
