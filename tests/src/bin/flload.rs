//! flload: a load generator for wire-v3 signalling servers (ours or
//! fledger's).
//!
//! `idle` holds many idle authenticated nodes and reports the server's
//! resident memory per node:
//!
//!   flload idle --url ws://127.0.0.1:8765/ --nodes 5000 --server-pid PID
//!
//! `relay` measures PeerSetup relay between nodes on `--url` and nodes on
//! `--to-url` (the same server, or two instances of a cluster): the
//! round-trip time of one setup and its echo, then relayed frames per
//! second with `--pairs` pairs echoing with `--window` frames in flight:
//!
//!   flload relay --url ws://127.0.0.1:8701/ --to-url ws://127.0.0.1:8702/
//!
//! Client sockets are spread over several loopback source addresses
//! (127.0.0.1, 127.0.0.2, …) so that neither side runs out of ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

#[path = "flload/relay.rs"]
mod relay;

use anyhow::{bail, Context};
use flproto::announce::{sign_announce, AnnounceAuth};
use flproto::identity::NodeKey;
use flproto::message::{NodeMessage, ServerMessage};
use flproto::NodeInfo;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

pub struct Args {
    pub url: String,
    /// `relay`: where the receiving nodes connect.
    pub to_url: Option<String>,
    pub pairs: usize,
    pub messages: usize,
    pub window: usize,
    pub rtt_samples: usize,
    relay: bool,
    nodes: usize,
    in_flight: usize,
    server_pid: Option<u32>,
    source_ips: u8,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        url: "ws://127.0.0.1:8765/".into(),
        to_url: None,
        pairs: 8,
        messages: 5000,
        window: 16,
        rtt_samples: 1000,
        relay: false,
        nodes: 1000,
        in_flight: 50,
        server_pid: None,
        source_ips: 4,
    };
    let mut argv = std::env::args().skip(1);
    match argv.next().as_deref() {
        Some("idle") => {}
        Some("relay") => args.relay = true,
        _ => bail!(
            "usage: flload idle [--url URL] [--nodes N] [--in-flight C] [--server-pid PID] [--source-ips K]\n       \
             flload relay [--url URL] [--to-url URL] [--pairs P] [--messages M per pair] [--window W] [--rtt-samples R]"
        ),
    }
    while let Some(flag) = argv.next() {
        let value = argv.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => args.url = value,
            "--nodes" => args.nodes = value.parse()?,
            "--in-flight" => args.in_flight = value.parse()?,
            "--server-pid" => args.server_pid = Some(value.parse()?),
            "--source-ips" => args.source_ips = value.parse()?,
            "--to-url" => args.to_url = Some(value),
            "--pairs" => args.pairs = value.parse()?,
            "--messages" => args.messages = value.parse()?,
            "--window" => args.window = value.parse()?,
            "--rtt-samples" => args.rtt_samples = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("no value")?.parse()?)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Connects from `source`, announces, waits for the node list.
async fn join(url: &str, server: SocketAddr, source: IpAddr) -> anyhow::Result<Socket> {
    join_as(url, server, source, &NodeKey::generate()).await
}

/// [`join`] with a given key.
async fn join_as(url: &str, server: SocketAddr, source: IpAddr, key: &NodeKey) -> anyhow::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    let challenge = match next_frame(&mut ws).await? {
        ServerMessage::Challenge(_, challenge) => challenge,
        other => bail!("expected challenge, got {other:?}"),
    };
    let info = NodeInfo::v3("flload", "flload", key.id(), "");
    let announce = sign_announce(key, challenge, info, &AnnounceAuth::Fledger);
    ws.send(Message::text(NodeMessage::Announce(announce).to_json()))
        .await?;
    loop {
        if let ServerMessage::ListIDsReply(_) = next_frame(&mut ws).await? {
            return Ok(ws);
        }
    }
}

async fn next_frame(ws: &mut Socket) -> anyhow::Result<ServerMessage> {
    loop {
        match ws.next().await.context("closed")?? {
            Message::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
            Message::Close(frame) => bail!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Keeps reading so pings are answered and news does not pile up.
fn hold(mut ws: Socket) {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if args.relay {
        return relay::run(&args).await;
    }
    let server = resolve(&args.url).await?;
    let before = args.server_pid.map(resident_kib).transpose()?;
    let started = Instant::now();
    let sources: Vec<IpAddr> = (1..=args.source_ips.max(1))
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect();
    let results = futures_util::stream::iter(0..args.nodes)
        .map(|n| join(&args.url, server, sources[n % sources.len()]))
        .buffer_unordered(args.in_flight.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut failed = 0;
    for result in results {
        match result {
            Ok(ws) => hold(ws),
            Err(_) => failed += 1,
        }
    }
    let elapsed = started.elapsed();
    println!(
        "joined {} of {} nodes in {:.2} s ({:.0} handshakes/s), {failed} failed",
        args.nodes - failed,
        args.nodes,
        elapsed.as_secs_f64(),
        (args.nodes - failed) as f64 / elapsed.as_secs_f64()
    );
    if let (Some(pid), Some(before)) = (args.server_pid, before) {
        // Let the server settle (news, allocator) before reading memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = resident_kib(pid)?;
        let held = (args.nodes - failed).max(1) as f64;
        println!(
            "server RSS {before} KiB -> {after} KiB: {:.2} KiB per idle authenticated node",
            after.saturating_sub(before) as f64 / held
        );
    }
    Ok(())
}

/// The socket address of a `ws://` URL.
async fn resolve(url: &str) -> anyhow::Result<SocketAddr> {
    let authority = flproto::announce::authority_of_url(url).context("bad URL")?;
    let addr = tokio::net::lookup_host(&authority)
        .await?
        .next()
        .context("cannot resolve")?;
    Ok(addr)
}
