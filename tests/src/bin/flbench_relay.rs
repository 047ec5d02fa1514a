//! flbench-relay: WireGuard through flsignal's datagram relay against the
//! same WireGuard over a data channel, in one run, in two network
//! namespaces on this machine.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_relay [runs]
//!
//! Each run starts with UDP dropped on the link between the hosts (TCP to
//! flsignal on host a still passes), so the tunnel comes up through the
//! relay; flsignal runs with its relay bandwidth caps raised far above
//! what the machine moves, so that the mechanism is measured, not the
//! default caps. Then UDP is let through and the traffic moves to a data
//! channel. Printed, as medians (min–max) over the runs: time to the first
//! ping through the relayed tunnel, iperf3 TCP and ping RTT through the
//! relay and through the data channel (and their ratio), flsignal's CPU
//! (user + system) per relayed MiB during the relayed iperf3, and the
//! longest gap in 10 pings/s while the traffic moved.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::flnode::{status, wait_for, NodePair, PEER_PORT, WIREGUARD};
use e2e::netns::{Testbed, ADDR_A};
use e2e::proc_stat::cpu_seconds;
use e2e::spread::{median, report};
use e2e::wireguard::Overlay;
use e2e::{http_get, ServerProcess};

/// The relay's caps, far above what two cores move through it.
const UNCAPPED: [&str; 8] = [
    "--relay-node-bytes-per-second",
    "2000000000",
    "--relay-node-burst",
    "67108864",
    "--relay-server-bytes-per-second",
    "2000000000",
    "--relay-server-burst",
    "67108864",
];

struct Run {
    first_packet: Duration,
    relay_mbits: f64,
    relay_rtt: f64,
    relay_cpu_ms_per_mib: f64,
    move_gap: f64,
    move_lost: u64,
    channel_mbits: f64,
    channel_rtt: f64,
}

fn peer_state(report: &str) -> Option<&str> {
    report
        .lines()
        .find(|line| line.starts_with("peer "))
        .and_then(|line| line.split_whitespace().nth(2))
}

/// flsignal's count of relayed bytes, read from inside its namespace.
fn relayed_bytes(namespace: &str, server: SocketAddr) -> anyhow::Result<f64> {
    let (_, metrics) = Testbed::in_namespace(namespace, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move { http_get(server, "/metrics").await.map_err(std::io::Error::other) })
    })?;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("flsignal_datagram_bytes_relayed_total "))
        .context("no relayed bytes in /metrics")?
        .trim()
        .parse()
        .context("relayed bytes")
}

async fn one_run() -> anyhow::Result<Run> {
    let testbed = Testbed::new()?;
    testbed.block_udp_on_link(1)?;
    let mut args = vec!["--listen", "0.0.0.0:0"];
    args.extend(UNCAPPED);
    let server = ServerProcess::start_in(Some(&testbed.a), &args, &[]).await?;
    let (pid, port) = (server.pid(), server.addr.port());
    let metrics_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let signal = [format!("ws://127.0.0.1:{port}"), format!("ws://{ADDR_A}:{port}")];
    let started = Instant::now();
    let pair = NodePair::start_with(&testbed, server, signal).await?;
    pair.wait_started().await?;
    let overlay = Overlay::new(&testbed, WIREGUARD, PEER_PORT).await?;
    while overlay.ping_rtts_from_a(1).map(|r| r.is_empty()).unwrap_or(true) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "tunnel never came up");
    }
    let first_packet = started.elapsed();
    for host in 0..2 {
        wait_for(pair.dir(host), "relayed", |r| peer_state(r) == Some("relayed")).await?;
    }
    let relay_rtt = median(overlay.ping_rtts_from_a(40)?);
    let (cpu_before, bytes_before) = (cpu_seconds(pid)?, relayed_bytes(&testbed.a, metrics_addr)?);
    let relay_mbits = overlay.iperf3_mbits_from_a(5).await?;
    let (cpu_after, bytes_after) = (cpu_seconds(pid)?, relayed_bytes(&testbed.a, metrics_addr)?);
    let cpu = (cpu_after.0 - cpu_before.0) + (cpu_after.1 - cpu_before.1);
    let mib = (bytes_after - bytes_before) / (1024.0 * 1024.0);
    let relay_cpu_ms_per_mib = cpu * 1000.0 / mib.max(f64::MIN_POSITIVE);

    testbed.unblock_udp_on_link(1)?;
    let (move_gap, move_lost) = overlay
        .ping_gap_from_a(30, Duration::from_millis(100), async {
            for host in 0..2 {
                wait_for(pair.dir(host), "on a data channel", |r| {
                    peer_state(r) == Some("connected")
                })
                .await?;
            }
            Ok(())
        })
        .await?;
    let report = status(pair.dir(0))?;
    anyhow::ensure!(!report.contains("relayed through"), "still relayed: {report}");
    let channel_rtt = median(overlay.ping_rtts_from_a(40)?);
    let channel_mbits = overlay.iperf3_mbits_from_a(5).await?;
    Ok(Run {
        first_packet,
        relay_mbits,
        relay_rtt,
        relay_cpu_ms_per_mib,
        move_gap,
        move_lost,
        channel_mbits,
        channel_rtt,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(3);
    let mut results = Vec::new();
    for index in 0..runs {
        let run = one_run().await.with_context(|| format!("run {}", index + 1))?;
        println!(
            "run {}: first packet {:.0} ms; relay {:.0} Mbit/s, rtt {:.3} ms, server {:.2} ms CPU per MiB; moved with a {:.0} ms gap ({} lost); data channel {:.0} Mbit/s, rtt {:.3} ms",
            index + 1,
            run.first_packet.as_secs_f64() * 1000.0,
            run.relay_mbits,
            run.relay_rtt,
            run.relay_cpu_ms_per_mib,
            run.move_gap,
            run.move_lost,
            run.channel_mbits,
            run.channel_rtt,
        );
        results.push(run);
    }
    let values = |of: fn(&Run) -> f64| results.iter().map(of).collect::<Vec<_>>();
    report(
        "first packet through the relayed tunnel",
        "ms",
        values(|r| r.first_packet.as_secs_f64() * 1000.0),
        0,
    );
    report("TCP through the relay", "Mbit/s", values(|r| r.relay_mbits), 1);
    report("TCP over the data channel", "Mbit/s", values(|r| r.channel_mbits), 1);
    report(
        "ratio relay/data channel",
        "",
        values(|r| r.relay_mbits / r.channel_mbits),
        2,
    );
    report("RTT through the relay", "ms", values(|r| r.relay_rtt), 3);
    report("RTT over the data channel", "ms", values(|r| r.channel_rtt), 3);
    report(
        "flsignal CPU per relayed MiB",
        "ms",
        values(|r| r.relay_cpu_ms_per_mib),
        2,
    );
    report(
        "longest gap while moving to the data channel",
        "ms",
        values(|r| r.move_gap),
        0,
    );
    report("pings lost while moving", "", values(|r| r.move_lost as f64), 0);
    Ok(())
}
