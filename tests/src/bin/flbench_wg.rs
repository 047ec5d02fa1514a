//! flbench-wg: WireGuard through flnode against the same WireGuard pair
//! talking UDP directly, in two network namespaces on this machine.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_wg [runs]
//!
//! Prints, as medians (min–max) over the runs: time from both nodes started
//! to the first ping answered through the tunnel, iperf3 TCP throughput over
//! flnode and direct (and their ratio), and ping RTT over flnode and direct.

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::flnode::{NodePair, PEER_PORT, WIREGUARD};
use e2e::netns::{Testbed, ADDR_A, ADDR_B};
use e2e::spread::{median, report};
use e2e::wireguard::Overlay;

struct Run {
    first_packet: Duration,
    flnode_mbits: f64,
    direct_mbits: f64,
    flnode_rtt: f64,
    direct_rtt: f64,
}

async fn one_run() -> anyhow::Result<Run> {
    let testbed = Testbed::new()?;
    let started = Instant::now();
    let pair = NodePair::start(&testbed).await?;
    pair.wait_started().await?;
    // WireGuard sends its first handshake as soon as its peer is set; set
    // up before flnode, that datagram is lost and WireGuard waits 5 s
    // (REKEY_TIMEOUT) to retry. The clock includes setting WireGuard up.
    let overlay = Overlay::new(&testbed, WIREGUARD, PEER_PORT).await?;
    while overlay.ping_rtts_from_a(1).map(|r| r.is_empty()).unwrap_or(true) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "tunnel never came up");
    }
    let first_packet = started.elapsed();
    let flnode_rtt = median(overlay.ping_rtts_from_a(40)?);
    let flnode_mbits = overlay.iperf3_mbits_from_a(5).await?;
    let port = WIREGUARD.rsplit(':').next().context("port")?;
    overlay.set_endpoints(&format!("{ADDR_B}:{port}"), &format!("{ADDR_A}:{port}"))?;
    overlay.ping_from_a().await?;
    let direct_rtt = median(overlay.ping_rtts_from_a(40)?);
    let direct_mbits = overlay.iperf3_mbits_from_a(5).await?;
    Ok(Run {
        first_packet,
        flnode_mbits,
        direct_mbits,
        flnode_rtt,
        direct_rtt,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(3);
    let mut results = Vec::new();
    for index in 0..runs {
        let run = one_run().await?;
        println!(
            "run {}: first packet {:.0} ms, flnode {:.0} Mbit/s, direct {:.0} Mbit/s, rtt flnode {:.3} ms, direct {:.3} ms",
            index + 1,
            run.first_packet.as_secs_f64() * 1000.0,
            run.flnode_mbits,
            run.direct_mbits,
            run.flnode_rtt,
            run.direct_rtt
        );
        results.push(run);
    }
    let values = |of: fn(&Run) -> f64| results.iter().map(of).collect::<Vec<_>>();
    report(
        "first packet through the tunnel",
        "ms",
        values(|r| r.first_packet.as_secs_f64() * 1000.0),
        2,
    );
    report("TCP over flnode", "Mbit/s", values(|r| r.flnode_mbits), 2);
    report("TCP direct", "Mbit/s", values(|r| r.direct_mbits), 2);
    report(
        "ratio flnode/direct",
        "",
        values(|r| r.flnode_mbits / r.direct_mbits),
        2,
    );
    report("added RTT", "ms", values(|r| r.flnode_rtt - r.direct_rtt), 2);
    Ok(())
}
