//! flbench-wg: WireGuard through flnode against the same WireGuard talking
//! UDP directly, in network namespaces on this machine, in both of
//! flnode's modes:
//!
//! * `manual`: two wireguard-go interfaces configured by hand (MTU 1420),
//!   each peer's endpoint a local port of flnode;
//! * `managed`: flnode creates and configures WireGuard itself (MTU 1280);
//!   the clock starts when both `flnode up` start, so the first packet
//!   includes making the interfaces.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_wg [runs] [manual|managed|both]
//!
//! Prints per mode, as medians (min–max) over the runs: time from both
//! nodes started to the first ping answered through the tunnel, iperf3 TCP
//! throughput over flnode and direct (and their same-run ratio), and the
//! RTT flnode adds to direct; in manual mode also the RTT two plain
//! user-space UDP forwarders add (`forwarders`), the floor for any design
//! that carries WireGuard through a process on each side, and the same
//! three RTTs for pings sent back to back (`ping -f`), when the path is
//! never idle.

use std::time::Duration;

use e2e::netns::run_in;
use e2e::spread::report;
use e2e::wireguard::{OVERLAY_A, OVERLAY_B};

mod forwarders;
mod managed;
mod manual;

pub struct Run {
    first_packet: Duration,
    flnode_mbits: f64,
    direct_mbits: f64,
    flnode_rtt: f64,
    direct_rtt: f64,
    /// Manual mode: the RTT through two plain forwarders instead of
    /// flnode (`forwarders`).
    forwarded_rtt: Option<f64>,
    /// Manual mode: mean RTTs of back-to-back pings.
    flood: Option<FloodRtts>,
}

/// Mean RTT (ms) of back-to-back pings (`ping -f`) over each path.
pub struct FloodRtts {
    flnode: f64,
    direct: f64,
    forwarded: f64,
}

/// `FLBENCH_WG_HOLD=SECONDS`: once the tunnel is up, keep it that long
/// before measuring, saying where it is, so that a profiler can be pointed
/// at the nodes while traffic of one's own choosing runs (e.g.
/// `ip netns exec <a> ping -f 10.77.0.2`).
pub async fn hold_for_profiling(testbed: &e2e::netns::Testbed) {
    let Some(seconds) = std::env::var("FLBENCH_WG_HOLD").ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    println!(
        "holding the tunnel {seconds} s: namespaces {} and {}, overlay {OVERLAY_A} -> {OVERLAY_B}",
        testbed.a, testbed.b
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

/// Seconds between the pings that measure RTT in manual mode: 0.05, or
/// `FLBENCH_WG_PING_INTERVAL` (to see how the added RTT depends on how
/// long the path was idle before each ping).
pub fn ping_interval() -> String {
    std::env::var("FLBENCH_WG_PING_INTERVAL").unwrap_or_else(|_| "0.05".to_owned())
}

/// Round-trip times (ms) of `count` pings from namespace `ns` to `target`.
pub fn ping_rtts(ns: &str, target: &str, count: u32) -> anyhow::Result<Vec<f64>> {
    let output = run_in(ns, &["ping", "-c", &count.to_string(), "-i", "0.05", "-W", "1", target])?;
    Ok(output
        .lines()
        .filter_map(|line| line.split("time=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(3);
    let modes: &[&str] = match args.next().as_deref() {
        None | Some("both") => &["manual", "managed"],
        Some("manual") => &["manual"],
        Some("managed") => &["managed"],
        Some(other) => anyhow::bail!("mode {other:?}: manual, managed or both"),
    };
    for mode in modes {
        let mut results = Vec::new();
        for index in 0..runs {
            let run = match *mode {
                "manual" => manual::one_run().await?,
                _ => managed::one_run().await?,
            };
            println!(
                "{mode} run {}: first packet {:.0} ms, flnode {:.0} Mbit/s, direct {:.0} Mbit/s, rtt flnode {:.3} ms, direct {:.3} ms",
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
        println!("== {mode}");
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
        let floor: Vec<f64> = results
            .iter()
            .filter_map(|r| Some(r.forwarded_rtt? - r.direct_rtt))
            .collect();
        if !floor.is_empty() {
            report("added RTT, two plain forwarders instead", "ms", floor, 2);
            let beyond: Vec<f64> = results
                .iter()
                .filter_map(|r| Some(r.flnode_rtt - r.forwarded_rtt?))
                .collect();
            report("added RTT beyond the forwarders'", "ms", beyond, 2);
        }
        let floods: Vec<&FloodRtts> = results.iter().filter_map(|r| r.flood.as_ref()).collect();
        if !floods.is_empty() {
            let added: Vec<f64> = floods.iter().map(|f| f.flnode - f.direct).collect();
            report("added RTT, back-to-back pings", "ms", added, 2);
            let added: Vec<f64> = floods.iter().map(|f| f.forwarded - f.direct).collect();
            report(
                "added RTT, back-to-back pings, two plain forwarders instead",
                "ms",
                added,
                2,
            );
        }
    }
    Ok(())
}
