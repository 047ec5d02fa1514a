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
//! A third setup relays through coturn instead (flsignal's TURN off, the
//! nodes given coturn with `--ice-server`): the same client against
//! another server, to tell the relay's costs from the client's.
//! The relay's per-node and per-allocation byte rates are raised out of
//! the way unless `--default-limits` is given (then TCP meets the
//! 10 Mbit/s default cap).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use e2e::flnode::{peer_connected, status, wait_for, NodePair, PEER_PORT, WIREGUARD};
use e2e::nat::{Coturn, NatTopology, SERVERS};
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
    /// The relay's CPU seconds during iperf3.
    cpu: f64,
    /// Bytes flsignal's TURN service relayed meanwhile (both directions);
    /// 0 for coturn, which does not say.
    bytes: f64,
}

impl Relayed {
    /// The relay's CPU per MiB of TCP payload through the tunnel (what
    /// iperf3 moved), comparable between relays.
    fn cpu_per_payload_mib(&self) -> f64 {
        let mib = self.path.mbits * 1e6 / 8.0 * f64::from(IPERF_SECONDS) / (1024.0 * 1024.0);
        self.cpu * 1e6 / mib
    }
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
    server_args: &[&str],
    node_args: &[&str],
) -> anyhow::Result<(NodePair, Overlay, SocketAddr, u32)> {
    let stun = format!("{SERVERS}:3478");
    let mut args = vec!["--listen", "0.0.0.0:0", "--stun-listen", &stun];
    args.extend(["--turn-allow-peer", "198.51.100.0/24"]);
    args.extend_from_slice(server_args);
    let server = ServerProcess::start_in(Some(&topology.public), &args, &[]).await?;
    let (addr, pid) = (format!("{SERVERS}:{}", server.addr.port()).parse()?, server.pid());
    let url = format!("ws://{SERVERS}:{}", server.addr.port());
    if relayed {
        topology.block_direct_udp()?;
    }
    let pair = NodePair::start_between(
        [&topology.host_a, &topology.host_b],
        server,
        [url.clone(), url],
        node_args,
    )
    .await?;
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
    let (pair, overlay, _, _) = connect(&topology, false, limits, &[]).await?;
    // FLBENCH_DIRECT_TC: a `tc` qdisc (e.g. `tbf rate 10mbit burst 32kbit
    // latency 50ms`) on router a's public link, to compare a slow direct
    // path with the relay's byte budgets.
    if let Ok(qdisc) = std::env::var("FLBENCH_DIRECT_TC") {
        let device = format!("apl{}", topology.tag);
        let mut args = vec!["tc", "qdisc", "add", "dev", &device, "root"];
        args.extend(qdisc.split_whitespace());
        e2e::netns::run_in(&topology.router_a, &args)?;
    }
    let path = measure(&overlay).await;
    if std::env::var_os("FLBENCH_VERBOSE").is_some() {
        for host in 0..2 {
            eprintln!(
                "--- direct, host {host}:\n{}",
                status(pair.dir(host)).unwrap_or_default()
            );
        }
    }
    path
}

async fn through_coturn() -> anyhow::Result<Relayed> {
    let topology = NatTopology::new()?;
    let coturn = Coturn::start(&topology).await?;
    let turn = coturn.ice_server();
    let (_pair, overlay, _, _) = connect(&topology, true, &["--turn-listen", "off"], &["--ice-server", &turn]).await?;
    let pid = coturn.pid().context("coturn's pid")?;
    let rtt = median(overlay.ping_rtts_from_a(40)?);
    let cpu_before = cpu_seconds(pid)?;
    let mbits = overlay.iperf3_mbits_from_a(IPERF_SECONDS).await?;
    Ok(Relayed {
        path: Path { mbits, rtt },
        cpu: cpu_seconds(pid)? - cpu_before,
        bytes: 0.0,
    })
}

async fn relayed(limits: &[&str]) -> anyhow::Result<Relayed> {
    let topology = NatTopology::new()?;
    let (_pair, overlay, server, pid) = connect(&topology, true, limits, &[]).await?;
    let rtt = median(overlay.ping_rtts_from_a(40)?);
    let (cpu_before, bytes_before) = (cpu_seconds(pid)?, relayed_bytes(&topology, server));
    let mbits = overlay.iperf3_mbits_from_a(IPERF_SECONDS).await?;
    let (cpu_after, bytes_after) = (cpu_seconds(pid)?, relayed_bytes(&topology, server));
    if std::env::var_os("FLBENCH_VERBOSE").is_some() {
        for host in 0..2 {
            eprintln!("--- host {host}:\n{}", status(_pair.dir(host)).unwrap_or_default());
        }
        let (_, metrics) = topology.server_metric(server, "flsignal_turn_allocations");
        eprintln!(
            "{}",
            metrics
                .lines()
                .filter(|l| l.starts_with("flsignal_turn"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
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
    // FLBENCH_TURN_ARGS: flsignal flags instead of the raised limits (for
    // trying other limits; `--default-limits` is the same with none).
    let custom: Vec<String> = std::env::var("FLBENCH_TURN_ARGS")
        .map(|args| args.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let custom: Vec<&str> = custom.iter().map(String::as_str).collect();
    let limits: &[&str] = if args.iter().any(|arg| arg == "--default-limits") {
        &[]
    } else if !custom.is_empty() {
        &custom
    } else {
        &UNLIMITED
    };
    let mut results = Vec::new();
    for index in 0..runs {
        // Rotate which goes first, so that none always meets a machine
        // warmed (or loaded) by the others.
        let (mut direct_path, mut ours, mut theirs) = (None, None, None);
        for step in 0..3 {
            match (index + step) % 3 {
                0 => direct_path = Some(direct(limits).await?),
                1 => ours = Some(relayed(limits).await?),
                _ => theirs = Some(through_coturn().await?),
            }
        }
        let (direct, relayed, coturn) = (
            direct_path.context("direct")?,
            ours.context("flsignal")?,
            theirs.context("coturn")?,
        );
        let mib = relayed.bytes / (1024.0 * 1024.0);
        println!(
            "run {}: direct {:.0} Mbit/s rtt {:.3} ms; flsignal TURN {:.1} Mbit/s rtt {:.3} ms, {:.2} s CPU for {:.1} MiB relayed ({:.0} µs/MiB); coturn {:.1} Mbit/s rtt {:.3} ms, {:.2} s CPU",
            index + 1,
            direct.mbits,
            direct.rtt,
            relayed.path.mbits,
            relayed.path.rtt,
            relayed.cpu,
            mib,
            relayed.cpu * 1e6 / mib,
            coturn.path.mbits,
            coturn.path.rtt,
            coturn.cpu,
        );
        results.push((direct, relayed, coturn));
    }
    type Result3 = (Path, Relayed, Relayed);
    let values = |of: &dyn Fn(&Result3) -> f64| results.iter().map(of).collect::<Vec<_>>();
    report("TCP over the direct path", "Mbit/s", values(&|(d, _, _)| d.mbits), 1);
    report(
        "TCP over flsignal's TURN",
        "Mbit/s",
        values(&|(_, r, _)| r.path.mbits),
        1,
    );
    report("TCP over coturn", "Mbit/s", values(&|(_, _, c)| c.path.mbits), 1);
    report(
        "ratio flsignal TURN/direct",
        "",
        values(&|(d, r, _)| r.path.mbits / d.mbits),
        2,
    );
    report(
        "ratio flsignal TURN/coturn",
        "",
        values(&|(_, r, c)| r.path.mbits / c.path.mbits),
        2,
    );
    report("RTT direct", "ms", values(&|(d, _, _)| d.rtt), 3);
    report("RTT over flsignal's TURN", "ms", values(&|(_, r, _)| r.path.rtt), 3);
    report("RTT over coturn", "ms", values(&|(_, _, c)| c.path.rtt), 3);
    report(
        "flsignal CPU per relayed MiB",
        "µs",
        values(&|(_, r, _)| r.cpu * 1e6 / (r.bytes / (1024.0 * 1024.0))),
        0,
    );
    report(
        "CPU per MiB through the tunnel, flsignal",
        "µs",
        values(&|(_, r, _)| r.cpu_per_payload_mib()),
        0,
    );
    report(
        "CPU per MiB through the tunnel, coturn",
        "µs",
        values(&|(_, _, c)| c.cpu_per_payload_mib()),
        0,
    );
    report(
        "flsignal CPU share while relaying",
        "cores",
        values(&|(_, r, _)| r.cpu / f64::from(IPERF_SECONDS)),
        2,
    );
    Ok(())
}
