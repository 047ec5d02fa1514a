//! `flload datagrams`: how many relayed pairs a server holds. Each pair is
//! two nodes granted the datagram relay, each sending the other
//! WireGuard-sized relay frames at `--rate-kbit` for `--duration`; every
//! frame carries its sequence number and send time, so the receiver counts
//! what arrived and how late. The result line has the loss, the latency
//! percentiles and the server's CPU per relayed MiB.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use flproto::datagram_relay::frame::{Frame, FrameKind, HEADER_LEN};
use flproto::identity::NodeKey;
use flproto::NodeId;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::args::Args;
use crate::client::{join_relaying, sources, Socket, Target};
use crate::server_proc::listener_pid;
use crate::stats::Percentiles;

/// How often a sender wakes to send what its rate allows since the last
/// time: coarse enough that thousands of senders cost the generator
/// little, fine enough that a 1 Mbit/s stream is not bursty (about one
/// 1200-byte frame per tick).
const TICK: Duration = Duration::from_millis(10);
/// Time after the senders stop for the last frames to arrive.
const DRAIN: Duration = Duration::from_secs(2);
/// Bytes of a frame's payload that carry its sequence number and send time.
const STAMP: usize = 16;

/// Microseconds since the run started, the clock every frame is stamped
/// with (one process sends and receives).
fn micros() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

struct Node {
    id: NodeId,
    socket: Socket,
}

async fn join_all(args: &Args, count: usize) -> anyhow::Result<Vec<Node>> {
    let target = Target {
        list_request: false,
        ..Target::new(&args.url, args).await?
    };
    let sources: Vec<IpAddr> = sources(args.source_ips);
    let permits = std::sync::Arc::new(Semaphore::new(args.in_flight.max(1)));
    let mut joins = Vec::with_capacity(count);
    for index in 0..count {
        let (target, source, permits) = (target.clone(), sources[index % sources.len()], permits.clone());
        joins.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let key = NodeKey::generate();
            let socket = join_relaying(&target, source, &key).await?;
            anyhow::Ok(Node { id: key.id(), socket })
        }));
    }
    let mut nodes = Vec::with_capacity(count);
    for join in joins {
        nodes.push(join.await??);
    }
    Ok(nodes)
}

/// What one receiver saw.
#[derive(Default)]
struct Received {
    frames: u64,
    latencies_us: Vec<u32>,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    micros();
    let pairs = args.pairs.max(1);
    let payload = args.payload.max(STAMP);
    let bytes_per_second = args.rate_kbit as f64 * 1000.0 / 8.0;
    let frames_per_second = bytes_per_second / (payload + HEADER_LEN) as f64;
    let server = crate::client::resolve(&args.url).await?;
    let pid = args.server_pid.or_else(|| listener_pid(server).ok());
    let nodes = join_all(args, 2 * pairs).await.context("joining")?;
    println!(
        "{pairs} pairs joined; each node sends {:.0} frames/s of {} bytes ({} kbit/s) to its peer for {:?}",
        frames_per_second,
        payload + HEADER_LEN,
        args.rate_kbit,
        args.duration
    );
    let cpu_before = pid.and_then(|pid| e2e::proc_stat::cpu_seconds(pid).ok());
    // The generator's own CPU: on a shared machine it competes with the
    // server, and says which of the two ran out first.
    let own_before = e2e::proc_stat::cpu_seconds(std::process::id()).ok();
    let started = Instant::now();
    let stop_at = tokio::time::Instant::now() + args.duration;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut nodes = nodes.into_iter();
    while let (Some(a), Some(b)) = (nodes.next(), nodes.next()) {
        let (a_sink, a_stream) = a.socket.split();
        let (b_sink, b_stream) = b.socket.split();
        senders.push(tokio::spawn(send(a_sink, b.id, payload, frames_per_second, stop_at)));
        senders.push(tokio::spawn(send(b_sink, a.id, payload, frames_per_second, stop_at)));
        receivers.push(tokio::spawn(receive(a_stream, stop_at + DRAIN)));
        receivers.push(tokio::spawn(receive(b_stream, stop_at + DRAIN)));
    }
    let mut sent = 0u64;
    for sender in senders {
        sent += sender.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = pid.and_then(|pid| e2e::proc_stat::cpu_seconds(pid).ok());
    let own_after = e2e::proc_stat::cpu_seconds(std::process::id()).ok();
    let own = match (own_before, own_after) {
        (Some((u0, s0)), Some((u1, s1))) => (u1 - u0) + (s1 - s0),
        _ => f64::NAN,
    };
    let mut received = 0u64;
    let mut latencies = Vec::new();
    for receiver in receivers {
        let seen = receiver.await?;
        received += seen.frames;
        latencies.extend(
            seen.latencies_us
                .into_iter()
                .map(|us| Duration::from_micros(u64::from(us))),
        );
    }
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * (sent - received.min(sent)) as f64 / sent as f64
    };
    let mib = (received * (payload + HEADER_LEN) as u64) as f64 / (1024.0 * 1024.0);
    let cpu = match (cpu_before, cpu_after) {
        (Some((u0, s0)), Some((u1, s1))) => Some((u1 - u0, s1 - s0)),
        _ => None,
    };
    let latency = Percentiles::of(latencies);
    println!(
        "sent {sent} frames in {elapsed:.1} s, received {received} ({loss:.2} % lost), {:.0} frames/s relayed",
        received as f64 / elapsed
    );
    if let Some(latency) = &latency {
        println!("latency, send to receive: {}", latency.human());
    }
    let cpu_fields = match cpu {
        Some((user, system)) => {
            let per_mib_ms = (user + system) * 1000.0 / mib.max(f64::MIN_POSITIVE);
            println!(
                "server CPU: user {user:.2} s, system {system:.2} s for {mib:.1} MiB relayed = {per_mib_ms:.2} ms per MiB"
            );
            // Per frame too, in the fields scripts/bench_builds.sh reads.
            let per_frame_us = |seconds: f64| seconds * 1e6 / received.max(1) as f64;
            format!(
                "server_user_s={user:.2} server_system_s={system:.2} server_cpu_ms_per_mib={per_mib_ms:.3} \
                 server_cpu_us_per_frame={:.3} server_user_us_per_frame={:.3} server_system_us_per_frame={:.3}",
                per_frame_us(user + system),
                per_frame_us(user),
                per_frame_us(system),
            )
        }
        None => "server_cpu=unknown".to_owned(),
    };
    println!("flload itself: {own:.2} s of CPU while sending");
    println!(
        "result mode=datagrams pairs={pairs} rate_kbit={} frame_bytes={} sent={sent} received={received} loss_pct={loss:.3} mib={mib:.1} {} {cpu_fields} flload_cpu_s={own:.2}",
        args.rate_kbit,
        payload + HEADER_LEN,
        latency.map(|p| p.fields("latency")).unwrap_or_default(),
    );
    Ok(())
}

/// Sends `frames_per_second` frames to `to` until `stop_at`; returns how
/// many went out.
async fn send(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    to: NodeId,
    payload: usize,
    frames_per_second: f64,
    stop_at: tokio::time::Instant,
) -> anyhow::Result<u64> {
    let mut body = vec![0u8; payload];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    loop {
        let now = tick.tick().await;
        if now >= stop_at {
            return Ok(sent);
        }
        let due = ((now - started).as_secs_f64() * frames_per_second) as u64 + 1;
        while sent < due {
            body[..8].copy_from_slice(&sent.to_be_bytes());
            body[8..16].copy_from_slice(&micros().to_be_bytes());
            let frame = Frame {
                kind: FrameKind::Datagram,
                node: to,
                payload: &body,
            };
            sink.feed(Message::Binary(Bytes::from(frame.encode()))).await?;
            sent += 1;
        }
        sink.flush().await?;
    }
}

/// Reads relay frames until `until`, noting each one's delay.
async fn receive(mut stream: SplitStream<Socket>, until: tokio::time::Instant) -> Received {
    let mut seen = Received::default();
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, stream.next()).await {
        let Message::Binary(bytes) = message else {
            continue;
        };
        let Ok(frame) = Frame::parse(&bytes) else {
            continue;
        };
        let Some(stamp) = frame.payload.get(8..16) else {
            continue;
        };
        let sent = u64::from_be_bytes(stamp.try_into().unwrap_or_default());
        seen.frames += 1;
        let latency = micros().saturating_sub(sent);
        seen.latencies_us.push(latency.min(u64::from(u32::MAX)) as u32);
    }
    seen
}
