//! flbench-turn: WireGuard through flnode over flsignal's TURN relay
//! against the same nodes over a direct data channel path, between two
//! hosts behind NAT routers (`e2e::nat`), and flsignal's CPU per relayed
//! MiB.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_turn [runs] [--default-limits]
//!
//! Each run sets up the NAT topology twice: once with UDP between the
//! routers allowed (the nodes connect over server-reflexive candidates:
//! the direct path), once with it dropped (only flsignal's TURN relay
//! carries the traffic; the nodes use the credential flsignal sent them).
//! On each it measures iperf3 TCP through WireGuard and the ping RTT;
//! on the relayed one also flsignal's user+system CPU time (from
//! /proc/PID/stat) and the bytes its TURN service relayed during iperf3.
//! The relay's per-node and per-allocation byte rates are raised out of
//! the way unless `--default-limits` is given (then TCP meets the
//! 10 Mbit/s default cap).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use e2e::flnode::{peer_connected, status, wait_for, NodePair, PEER_PORT, WIREGUARD};
use e2e::nat::{NatTopology, SERVERS};
use e2e::spread::{median, report};
use e2e::wireguard::Overlay;
use e2e::ServerProcess;

/// The TURN limits of the capability runs: far above what one machine
/// relays, so they never drop.
const UNLIMITED: [&str; 8] = [
    "--turn-node-rate",
    "10000000000",
    "--turn-node-burst",
    "1000000000",
    "--turn-allocation-rate",
    "10000000000",
    "--turn-allocation-burst",
    "1000000000",
];
const IPERF_SECONDS: u32 = 5;

struct Path {
    mbits: f64,
    rtt: f64,
}

struct Relayed {
    path: Path,
    /// flsignal's CPU seconds during iperf3.
    cpu: f64,
    /// Bytes its TURN service relayed meanwhile (both directions).
    bytes: f64,
}

/// The selected path in a status report, e.g. `host … -> relay …`.
fn path_of(report: &str) -> String {
    report
        .split("  path ")
        .nth(1)
        .and_then(|rest| rest.split("  rtt").next())
        .unwrap_or("-")
        .to_owned()
}

/// flsignal's user+system CPU time so far, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces): state is
    // field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').context("no command name")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / per_second)
}

fn relayed_bytes(topology: &NatTopology, server: SocketAddr) -> f64 {
    ["to_peer", "to_client"]
        .iter()
        .map(|direction| {
            let series = format!(r#"flsignal_turn_relayed_bytes_total{{direction="{direction}"}}"#);
            topology.server_metric(server, &series).0
        })
        .sum()
}

/// Nodes behind the topology's routers, connected over a path whose
/// description satisfies `wanted`; `relay_limits` go to flsignal.
async fn connect(
    topology: &NatTopology,
    relayed: bool,
    limits: &[&str],
) -> anyhow::Result<(NodePair, Overlay, SocketAddr, u32)> {
    let stun = format!("{SERVERS}:3478");
    let mut args = vec!["--listen", "0.0.0.0:0", "--stun-listen", &stun];
    args.extend(["--turn-allow-peer", "198.51.100.0/24"]);
    args.extend_from_slice(limits);
    let server = ServerProcess::start_in(Some(&topology.public), &args, &[]).await?;
    let (addr, pid) = (format!("{SERVERS}:{}", server.addr.port()).parse()?, server.pid());
    let url = format!("ws://{SERVERS}:{}", server.addr.port());
    if relayed {
        topology.block_direct_udp()?;
    }
    let pair = NodePair::start_between([&topology.host_a, &topology.host_b], server, [url.clone(), url], &[]).await?;
    let overlay = Overlay::between(
        [&topology.host_a, &topology.host_b],
        &topology.tag,
        WIREGUARD,
        PEER_PORT,
    )
    .await?;
    tokio::time::timeout(Duration::from_secs(60), overlay.ping_from_a())
        .await
        .context("no ping through the tunnel")??;
    for host in 0..2 {
        wait_for(pair.dir(host), "connected", peer_connected).await?;
        let path = path_of(&status(pair.dir(host))?);
        if path.contains("relay") != relayed {
            bail!("host {host}: path {path}, wanted relayed={relayed}");
        }
    }
    Ok((pair, overlay, addr, pid))
}

async fn measure(overlay: &Overlay) -> anyhow::Result<Path> {
    let rtt = median(overlay.ping_rtts_from_a(40)?);
    let mbits = overlay.iperf3_mbits_from_a(IPERF_SECONDS).await?;
    Ok(Path { mbits, rtt })
}

async fn direct(limits: &[&str]) -> anyhow::Result<Path> {
    let topology = NatTopology::new()?;
    let (_pair, overlay, _, _) = connect(&topology, false, limits).await?;
    measure(&overlay).await
}

async fn relayed(limits: &[&str]) -> anyhow::Result<Relayed> {
    let topology = NatTopology::new()?;
    let (_pair, overlay, server, pid) = connect(&topology, true, limits).await?;
    let rtt = median(overlay.ping_rtts_from_a(40)?);
    let (cpu_before, bytes_before) = (cpu_seconds(pid)?, relayed_bytes(&topology, server));
    let mbits = overlay.iperf3_mbits_from_a(IPERF_SECONDS).await?;
    let (cpu_after, bytes_after) = (cpu_seconds(pid)?, relayed_bytes(&topology, server));
    Ok(Relayed {
        path: Path { mbits, rtt },
        cpu: cpu_after - cpu_before,
        bytes: bytes_after - bytes_before,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args
        .iter()
        .find(|arg| !arg.starts_with("--"))
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(3);
    let limits: &[&str] = if args.iter().any(|arg| arg == "--default-limits") {
        &[]
    } else {
        &UNLIMITED
    };
    let mut results = Vec::new();
    for index in 0..runs {
        // Alternate which goes first, so that neither always meets a
        // machine warmed (or loaded) by the other.
        let (direct, relayed) = if index % 2 == 0 {
            let direct = direct(limits).await?;
            (direct, relayed(limits).await?)
        } else {
            let relayed = relayed(limits).await?;
            (direct(limits).await?, relayed)
        };
        let mib = relayed.bytes / (1024.0 * 1024.0);
        println!(
            "run {}: direct {:.0} Mbit/s rtt {:.3} ms; TURN {:.1} Mbit/s rtt {:.3} ms; flsignal {:.2} s CPU for {:.1} MiB relayed ({:.0} µs/MiB)",
            index + 1,
            direct.mbits,
            direct.rtt,
            relayed.path.mbits,
            relayed.path.rtt,
            relayed.cpu,
            mib,
            relayed.cpu * 1e6 / mib
        );
        results.push((direct, relayed));
    }
    let values = |of: &dyn Fn(&(Path, Relayed)) -> f64| results.iter().map(of).collect::<Vec<_>>();
    report("TCP over the direct path", "Mbit/s", values(&|(d, _)| d.mbits), 1);
    report("TCP over flsignal's TURN", "Mbit/s", values(&|(_, r)| r.path.mbits), 1);
    report("ratio TURN/direct", "", values(&|(d, r)| r.path.mbits / d.mbits), 2);
    report("RTT direct", "ms", values(&|(d, _)| d.rtt), 3);
    report("RTT over TURN", "ms", values(&|(_, r)| r.path.rtt), 3);
    report(
        "flsignal CPU per relayed MiB",
        "µs",
        values(&|(_, r)| r.cpu * 1e6 / (r.bytes / (1024.0 * 1024.0))),
        0,
    );
    report(
        "flsignal CPU share while relaying",
        "cores",
        values(&|(_, r)| r.cpu / f64::from(IPERF_SECONDS)),
        2,
    );
    Ok(())
}
