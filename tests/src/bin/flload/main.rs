//! flload: a load generator for wire-v3 signalling servers — ours, or
//! fledger's own `flsignal` 0.10. Nodes answer their challenge with
//! fledger's plain version-3 Announce and, like fledger nodes, ask for the
//! node list right after (`--list-request false` leaves that out).
//!
//! `idle` holds many idle authenticated nodes and reports the server's
//! resident memory per node:
//!
//!   flload idle --url ws://127.0.0.1:8765/ --nodes 5000 --server-pid PID
//!
//! `handshakes` joins N nodes with C in flight: handshakes/s and the
//! latency percentiles of one handshake (connect to node list):
//!
//!   flload handshakes --url ws://127.0.0.1:8765/ --nodes 200 --in-flight 20
//!
//! `relay` measures PeerSetup relay between nodes on `--url` and nodes on
//! `--to-url` (the same server, or two instances of a cluster): the
//! round-trip time of one setup and its echo, then relayed frames per
//! second and round trips with `--pairs` pairs echoing with `--window`
//! frames in flight:
//!
//!   flload relay --url ws://127.0.0.1:8765/ --pairs 20 --window 8
//!
//! `storm` joins N nodes at once (C connects in flight): the time until all
//! are registered and the bytes the server sent them:
//!
//!   flload storm --url ws://127.0.0.1:8765/ --nodes 10000 --source-ips 8
//!
//! `soak` keeps N nodes connected on average while they join, relay and
//! leave at a steady rate, printing the server's RSS and fds (pid given,
//! or found by the listening port in `/proc`) every `--report`:
//!
//!   flload soak --url ws://127.0.0.1:8765/ --nodes 10000 --duration 600s --source-ips 8
//!
//! `datagrams` holds P pairs granted the datagram relay, each node sending
//! its peer WireGuard-sized relay frames at a set rate: loss, latency and
//! the server's CPU per relayed MiB (how many pairs one server holds):
//!
//!   flload datagrams --url ws://127.0.0.1:8765/ --pairs 200 --rate-kbit 1000 --duration 10s
//!
//! Client sockets are spread over several loopback source addresses
//! (127.0.0.1, 127.0.0.2, …) so that neither side runs out of ports. Each
//! mode ends with one `result mode=… key=value …` line for scripts.

mod args;
mod client;
mod crowd;
mod datagrams;
mod handshakes;
mod idle;
mod matchbox;
mod relay;
mod server_proc;
mod soak;
mod stats;
mod storm;

use args::Mode;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args::parse()?;
    raise_fd_limit();
    match args.mode {
        Mode::Idle => idle::run(&args).await,
        Mode::Handshakes => handshakes::run(&args).await,
        Mode::Relay => relay::run(&args).await,
        Mode::Storm => storm::run(&args).await,
        Mode::Soak => soak::run(&args).await,
        Mode::Datagrams => datagrams::run(&args).await,
    }
}

/// Every node is a socket: lift the soft file descriptor limit to the hard
/// one, so thousands of nodes need no `ulimit -n` first.
fn raise_fd_limit() {
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the file descriptor limit: {error}");
    }
}
