//! flbench-dgram: how many datagrams per second flnode's data channel
//! carries, against plain UDP between the same two network namespaces.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_dgram [runs] [seconds] [sizes]
//!
//! For each datagram size (64 bytes, and 1 420 bytes: a full WireGuard
//! packet at the default MTU; or the comma-separated sizes given, e.g.
//! `1312`, managed mode's full-size datagram) a sender in namespace a sends as fast as it
//! can for the given seconds, to flnode's peer port (through the data
//! channel to host b's flnode, which hands each datagram to the receiver
//! on b) or straight to the receiver over the veth link. The receiver
//! counts what arrives; the figure is datagrams delivered per second of
//! sending, with the share that was lost. Sender, receiver and both flnodes
//! share this machine's cores. Both receivers have 4 MiB socket buffers, as
//! flnode's own sockets do, so that neither path loses bursts there.
//!
//! For the path through flnode it also prints the CPU time (user + system,
//! from /proc) each flnode spent per million datagrams delivered: host a's
//! (WireGuard to the channel) and host b's (the channel to WireGuard).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::flnode::{NodePair, PEER_PORT, WIREGUARD};
use e2e::netns::{Testbed, ADDR_B};
use e2e::proc_stat::total_cpu_seconds as cpu_seconds;
use e2e::spread::Spread;
use tokio::net::UdpSocket;

/// Datagram sizes measured: a small packet and a full WireGuard packet.
const SIZES: [usize; 2] = [64, 1420];
/// A port for the direct path's receiver on host b.
const DIRECT_PORT: u16 = 51830;
/// Silence after which the receiver stops waiting for stragglers.
const DRAIN: Duration = Duration::from_millis(500);

/// Kernel receive buffer of the benchmark's receivers (flnode's own).
const RECEIVER_BUFFER: usize = 4 * 1024 * 1024;

/// What one blast delivered.
struct Blast {
    sent: u64,
    received: u64,
    seconds: f64,
    /// CPU seconds of the flnodes on hosts a and b during the blast (zero
    /// for the plain path).
    cpu: [f64; 2],
}

impl Blast {
    fn rate(&self) -> f64 {
        self.received as f64 / self.seconds
    }

    fn loss(&self) -> f64 {
        1.0 - self.received as f64 / self.sent.max(1) as f64
    }

    /// CPU seconds of host `host`'s flnode per million datagrams delivered.
    fn cpu_per_million(&self, host: usize) -> f64 {
        self.cpu[host] / self.received.max(1) as f64 * 1e6
    }
}

/// CPU seconds used so far by each of the pair's flnodes.
fn cpu_of(pair: Option<&NodePair>) -> anyhow::Result<[f64; 2]> {
    let Some(pair) = pair else {
        return Ok([0.0; 2]);
    };
    let mut cpu = [0.0; 2];
    for (host, node) in pair.nodes.iter().enumerate() {
        let pid = node
            .as_ref()
            .and_then(|child| child.id())
            .context("flnode is not running")?;
        cpu[host] = cpu_seconds(pid)?;
    }
    Ok(cpu)
}

/// A receiver's socket in namespace `ns`, with [`RECEIVER_BUFFER`].
fn receiver(ns: &str, addr: SocketAddr) -> anyhow::Result<Arc<UdpSocket>> {
    let socket = Testbed::udp_socket(ns, addr)?;
    let std = socket.into_std()?;
    let _ = socket2::SockRef::from(&std).set_recv_buffer_size(RECEIVER_BUFFER);
    Ok(Arc::new(UdpSocket::from_std(std)?))
}

/// Sends `size`-byte datagrams from `from` to `target` for `duration`, and
/// counts what `to` receives (and what `pair`'s flnodes spent doing it).
async fn blast(
    from: &UdpSocket,
    target: SocketAddr,
    to: Arc<UdpSocket>,
    size: usize,
    duration: Duration,
    pair: Option<&NodePair>,
) -> anyhow::Result<Blast> {
    let cpu_before = cpu_of(pair)?;
    let sending = Arc::new(AtomicBool::new(true));
    let counter = {
        let sending = sending.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_536];
            let mut received = 0u64;
            loop {
                match tokio::time::timeout(DRAIN, to.recv_from(&mut buffer)).await {
                    Ok(Ok(_)) => received += 1,
                    Ok(Err(_)) => {}
                    Err(_) if !sending.load(Ordering::Relaxed) => return received,
                    Err(_) => {}
                }
            }
        })
    };
    let payload = vec![0x5au8; size];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        // A full socket buffer is the sender's limit, as it would be for
        // WireGuard; count only what the kernel took.
        for _ in 0..64 {
            if from.send_to(&payload, target).await.is_ok() {
                sent += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    sending.store(false, Ordering::Relaxed);
    let received = counter.await.unwrap_or(0);
    let cpu_after = cpu_of(pair)?;
    Ok(Blast {
        sent,
        received,
        seconds,
        cpu: [cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]],
    })
}

/// One size's figures of one run.
#[derive(Clone)]
struct Row {
    flnode: f64,
    plain: f64,
    loss: f64,
    cpu: [f64; 2],
}

/// Per size: (through flnode, direct) for one run.
async fn one_run(duration: Duration, sizes: &[usize]) -> anyhow::Result<Vec<(Blast, Blast)>> {
    let testbed = Testbed::new()?;
    let pair = NodePair::start(&testbed).await?;
    pair.wait_started().await?;
    pair.wait_connected(0).await?;
    pair.wait_connected(1).await?;
    // flnode takes datagrams only from the local WireGuard's address.
    let wireguard_a = Testbed::udp_socket(&testbed.a, WIREGUARD.parse()?)?;
    let sender = Testbed::udp_socket(&testbed.a, "0.0.0.0:0".parse()?)?;
    let via_flnode = receiver(&testbed.b, WIREGUARD.parse()?)?;
    let direct = receiver(&testbed.b, SocketAddr::new(ADDR_B.parse()?, DIRECT_PORT))?;
    let mut results = Vec::new();
    for &size in sizes {
        let flnode = blast(
            &wireguard_a,
            PEER_PORT.parse()?,
            via_flnode.clone(),
            size,
            duration,
            Some(&pair),
        )
        .await?;
        let plain = blast(
            &sender,
            SocketAddr::new(ADDR_B.parse()?, DIRECT_PORT),
            direct.clone(),
            size,
            duration,
            None,
        )
        .await?;
        results.push((flnode, plain));
    }
    Ok(results)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(3);
    let seconds: f64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(3.0);
    let duration = Duration::from_secs_f64(seconds);
    let sizes: Vec<usize> = match args.next() {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => SIZES.to_vec(),
    };
    let mut per_size: Vec<Vec<Row>> = vec![Vec::new(); sizes.len()];
    for run in 0..runs {
        for (index, (flnode, plain)) in one_run(duration, &sizes).await?.into_iter().enumerate() {
            println!(
                "run {} size {} B: flnode {:.0}/s ({:.1}% lost), plain UDP {:.0}/s ({:.1}% lost), flnode CPU per million datagrams a {:.2} s, b {:.2} s",
                run + 1,
                sizes[index],
                flnode.rate(),
                flnode.loss() * 100.0,
                plain.rate(),
                plain.loss() * 100.0,
                flnode.cpu_per_million(0),
                flnode.cpu_per_million(1),
            );
            per_size[index].push(Row {
                flnode: flnode.rate(),
                plain: plain.rate(),
                loss: flnode.loss(),
                cpu: [flnode.cpu_per_million(0), flnode.cpu_per_million(1)],
            });
        }
    }
    for (index, rows) in per_size.iter().enumerate() {
        let pick = |f: fn(&Row) -> f64| {
            let s = Spread::of(rows.iter().map(f));
            (s.median, s.min, s.max)
        };
        let flnode = pick(|r| r.flnode);
        let plain = pick(|r| r.plain);
        let ratio = pick(|r| r.flnode / r.plain);
        let loss = pick(|r| r.loss);
        let cpu_a = pick(|r| r.cpu[0]);
        let cpu_b = pick(|r| r.cpu[1]);
        let cpu_mean = pick(|r| (r.cpu[0] + r.cpu[1]) / 2.0);
        println!(
            "size {} B: flnode {:.0}/s ({:.0}–{:.0}), plain UDP {:.0}/s ({:.0}–{:.0}), ratio {:.3} ({:.3}–{:.3}), flnode loss {:.1}% ({:.1}–{:.1}), n={}",
            sizes[index],
            flnode.0,
            flnode.1,
            flnode.2,
            plain.0,
            plain.1,
            plain.2,
            ratio.0,
            ratio.1,
            ratio.2,
            loss.0 * 100.0,
            loss.1 * 100.0,
            loss.2 * 100.0,
            rows.len()
        );
        println!(
            "size {} B: CPU s per million datagrams through one flnode {:.2} ({:.2}–{:.2}); host a (from WireGuard) {:.2} ({:.2}–{:.2}), host b (to WireGuard) {:.2} ({:.2}–{:.2})",
            sizes[index],
            cpu_mean.0,
            cpu_mean.1,
            cpu_mean.2,
            cpu_a.0,
            cpu_a.1,
            cpu_a.2,
            cpu_b.0,
            cpu_b.1,
            cpu_b.2
        );
    }
    Ok(())
}
