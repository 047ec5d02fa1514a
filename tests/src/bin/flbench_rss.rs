//! flbench-rss: resident memory of one flnode with 1 and with 20
//! configured peers, idle and under load, in network namespaces.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_rss [runs] [peers]
//!
//! Host a runs flsignal and the flnode measured, configured (manual mode)
//! with every node on host b as a peer; host b runs one flnode per peer,
//! each with host a's node as its only peer. Once every peer is connected
//! the measured node's VmRSS is read after 2 s of quiet ("idle"), then
//! sampled every 100 ms while a stand-in for the local WireGuard sends
//! full-size datagrams (1 312 bytes) to every peer's port in turn for 3 s,
//! as fast as the kernel takes them ("load", the largest sample). Prints
//! medians (min–max) over the runs for 1 peer and for `peers` (20), and
//! the difference per added peer.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::flnode::{cli, peer_connected, status};
use e2e::netns::{Testbed, ADDR_A};
use e2e::proc_stat::rss_kib;
use e2e::spread::report;
use e2e::{binary, ServerProcess, PATIENCE};
use tokio::process::Child;

/// The measured node's WireGuard address (a stand-in sends from it).
const WIREGUARD_A: &str = "127.0.0.1:51820";
/// First of the measured node's per-peer ports; peer `i` has `+ i`.
const FIRST_PEER_PORT: u16 = 52000;
/// Host b's nodes: WireGuard address and their port for host a.
const FIRST_B_WIREGUARD: u16 = 53000;
const FIRST_B_PORT: u16 = 54000;
/// Quiet time before the idle figure.
const SETTLE: Duration = Duration::from_secs(2);
/// How long the load lasts, and how often RSS is sampled meanwhile.
const LOAD: Duration = Duration::from_secs(3);
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// A managed interface's full-size WireGuard datagram.
const DATAGRAM: usize = 1312;

/// RSS in KiB of one run: (idle, load) with 1 peer, then with `peers`.
type RunRss = ((u64, u64), (u64, u64));

/// An flnode process, killed when dropped.
struct Node {
    dir: tempfile::TempDir,
    id: String,
    child: Option<Child>,
}

impl Node {
    fn init() -> anyhow::Result<Node> {
        let dir = tempfile::tempdir()?;
        let out = cli(&["init", "--config", dir.path().to_str().context("path")?])?;
        let id = out.trim().lines().last().context("no node ID")?.to_owned();
        Ok(Node { dir, id, child: None })
    }

    fn start(&mut self, ns: &str, signal: &str, wireguard: &str, peers: &[String]) -> anyhow::Result<()> {
        let dir = self.dir.path().to_str().context("path")?.to_owned();
        let mut command = Testbed::command(ns, &binary("flnode")?);
        command.args(["up", "--config", &dir, "--signal", signal, "--wireguard", wireguard]);
        for peer in peers {
            command.args(["--peer", peer]);
        }
        let log = std::fs::File::create(self.dir.path().join("flnode.log"))?;
        self.child = Some(
            command
                .env("RUST_LOG", "warn")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        Ok(())
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.as_ref().and_then(Child::id).context("flnode is not running")
    }
}

/// Waits until the node in `dir` reports `peers` peers connected.
async fn wait_all_connected(dir: &Path, peers: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE * 6;
    loop {
        let report = status(dir).unwrap_or_default();
        let connected = report.lines().filter(|line| peer_connected(line)).count();
        if connected == peers {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {connected} of {peers} peers connected: {report}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (idle, load) RSS in KiB of an flnode with `peers` connected peers.
async fn one_run(peers: usize) -> anyhow::Result<(u64, u64)> {
    let testbed = Testbed::new()?;
    let server = ServerProcess::start_in(
        Some(&testbed.a),
        &[
            "--listen",
            "0.0.0.0:0",
            "--announce-rate-per-second",
            "1000",
            "--announce-rate-burst",
            "1000",
        ],
        &[],
    )
    .await?;
    let port = server.addr.port();
    let mut measured = Node::init()?;
    let mut others = (0..peers).map(|_| Node::init()).collect::<anyhow::Result<Vec<_>>>()?;
    let b_signal = format!("ws://{ADDR_A}:{port}");
    for (index, node) in others.iter_mut().enumerate() {
        let wireguard = format!("127.0.0.1:{}", FIRST_B_WIREGUARD + index as u16);
        let peer = format!("{}=127.0.0.1:{}", measured.id, FIRST_B_PORT + index as u16);
        node.start(&testbed.b, &b_signal, &wireguard, &[peer])?;
    }
    let peer_args: Vec<String> = others
        .iter()
        .enumerate()
        .map(|(index, node)| format!("{}=127.0.0.1:{}", node.id, FIRST_PEER_PORT + index as u16))
        .collect();
    measured.start(&testbed.a, &format!("ws://127.0.0.1:{port}"), WIREGUARD_A, &peer_args)?;
    wait_all_connected(measured.dir.path(), peers).await?;
    tokio::time::sleep(SETTLE).await;
    let pid = measured.pid()?;
    let idle = rss_kib(pid)?;
    let wireguard = Testbed::udp_socket(&testbed.a, WIREGUARD_A.parse()?)?;
    let targets: Vec<SocketAddr> = (0..peers)
        .map(|index| SocketAddr::from(([127, 0, 0, 1], FIRST_PEER_PORT + index as u16)))
        .collect();
    let payload = vec![0x5a; DATAGRAM];
    let started = Instant::now();
    let mut next_sample = started;
    let mut load = idle;
    while started.elapsed() < LOAD {
        for target in &targets {
            let _ = wireguard.send_to(&payload, target).await;
        }
        if Instant::now() >= next_sample {
            load = load.max(rss_kib(pid)?);
            next_sample += SAMPLE_EVERY;
        }
    }
    load = load.max(rss_kib(pid)?);
    drop(server);
    Ok((idle, load))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(3);
    let many: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(20);
    anyhow::ensure!(many >= 2, "peers: at least 2");
    let mut rows = Vec::new();
    for run in 0..runs {
        let one = one_run(1).await?;
        let more = one_run(many).await?;
        println!(
            "run {}: 1 peer idle {} KiB, load {} KiB; {many} peers idle {} KiB, load {} KiB",
            run + 1,
            one.0,
            one.1,
            more.0,
            more.1
        );
        rows.push((one, more));
    }
    let kib = |of: fn(&RunRss) -> u64| rows.iter().map(|row| of(row) as f64).collect::<Vec<_>>();
    report("RSS, 1 peer, idle", "KiB", kib(|r| r.0 .0), 0);
    report("RSS, 1 peer, load", "KiB", kib(|r| r.0 .1), 0);
    report(&format!("RSS, {many} peers, idle"), "KiB", kib(|r| r.1 .0), 0);
    report(&format!("RSS, {many} peers, load"), "KiB", kib(|r| r.1 .1), 0);
    let per_peer = |of: fn(&(u64, u64)) -> u64| {
        rows.iter()
            .map(|(one, more)| (of(more) as f64 - of(one) as f64) / (many - 1) as f64)
            .collect::<Vec<_>>()
    };
    report("RSS per added peer, idle", "KiB", per_peer(|r| r.0), 0);
    report("RSS per added peer, load", "KiB", per_peer(|r| r.1), 0);
    Ok(())
}
