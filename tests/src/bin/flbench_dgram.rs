//! flbench-dgram: how many datagrams per second flnode's data channel
//! carries, against plain UDP between the same two network namespaces.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_dgram [runs] [seconds]
//!
//! For each datagram size (64 bytes, and 1 420 bytes: a full WireGuard
//! packet at the default MTU) a sender in namespace a sends as fast as it
//! can for the given seconds, to flnode's peer port (through the data
//! channel to host b's flnode, which hands each datagram to the receiver
//! on b) or straight to the receiver over the veth link. The receiver
//! counts what arrives; the figure is datagrams delivered per second of
//! sending, with the share that was lost. Sender, receiver and both flnodes
//! share this machine's cores.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::flnode::{NodePair, PEER_PORT, WIREGUARD};
use e2e::netns::{Testbed, ADDR_B};
use e2e::spread::Spread;
use tokio::net::UdpSocket;

/// Datagram sizes measured: a small packet and a full WireGuard packet.
const SIZES: [usize; 2] = [64, 1420];
/// A port for the direct path's receiver on host b.
const DIRECT_PORT: u16 = 51830;
/// Silence after which the receiver stops waiting for stragglers.
const DRAIN: Duration = Duration::from_millis(500);

/// What one blast delivered.
struct Blast {
    sent: u64,
    received: u64,
    seconds: f64,
}

impl Blast {
    fn rate(&self) -> f64 {
        self.received as f64 / self.seconds
    }

    fn loss(&self) -> f64 {
        1.0 - self.received as f64 / self.sent.max(1) as f64
    }
}

/// Sends `size`-byte datagrams from `from` to `target` for `duration`, and
/// counts what `to` receives.
async fn blast(from: &UdpSocket, target: SocketAddr, to: Arc<UdpSocket>, size: usize, duration: Duration) -> Blast {
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
    Blast {
        sent,
        received,
        seconds,
    }
}

/// Per size: (through flnode, direct) for one run.
async fn one_run(duration: Duration) -> anyhow::Result<Vec<(Blast, Blast)>> {
    let testbed = Testbed::new()?;
    let pair = NodePair::start(&testbed).await?;
    pair.wait_started().await?;
    pair.wait_connected(0).await?;
    pair.wait_connected(1).await?;
    // flnode takes datagrams only from the local WireGuard's address.
    let wireguard_a = Testbed::udp_socket(&testbed.a, WIREGUARD.parse()?)?;
    let sender = Testbed::udp_socket(&testbed.a, "0.0.0.0:0".parse()?)?;
    let via_flnode = Arc::new(Testbed::udp_socket(&testbed.b, WIREGUARD.parse()?)?);
    let direct = Arc::new(Testbed::udp_socket(
        &testbed.b,
        SocketAddr::new(ADDR_B.parse()?, DIRECT_PORT),
    )?);
    let mut results = Vec::new();
    for size in SIZES {
        let flnode = blast(&wireguard_a, PEER_PORT.parse()?, via_flnode.clone(), size, duration).await;
        let plain = blast(
            &sender,
            SocketAddr::new(ADDR_B.parse()?, DIRECT_PORT),
            direct.clone(),
            size,
            duration,
        )
        .await;
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
    let mut per_size: Vec<Vec<(f64, f64, f64, f64)>> = vec![Vec::new(); SIZES.len()];
    for run in 0..runs {
        for (index, (flnode, plain)) in one_run(duration).await?.into_iter().enumerate() {
            println!(
                "run {} size {} B: flnode {:.0}/s ({:.1}% lost), plain UDP {:.0}/s ({:.1}% lost)",
                run + 1,
                SIZES[index],
                flnode.rate(),
                flnode.loss() * 100.0,
                plain.rate(),
                plain.loss() * 100.0
            );
            per_size[index].push((flnode.rate(), plain.rate(), flnode.loss(), plain.loss()));
        }
    }
    for (index, rows) in per_size.iter().enumerate() {
        let pick = |f: fn(&(f64, f64, f64, f64)) -> f64| {
            let s = Spread::of(rows.iter().map(f));
            (s.median, s.min, s.max)
        };
        let flnode = pick(|r| r.0);
        let plain = pick(|r| r.1);
        let ratio = pick(|r| r.0 / r.1);
        let loss = pick(|r| r.2);
        println!(
            "size {} B: flnode {:.0}/s ({:.0}–{:.0}), plain UDP {:.0}/s ({:.0}–{:.0}), ratio {:.3} ({:.3}–{:.3}), flnode loss {:.1}% ({:.1}–{:.1}), n={}",
            SIZES[index],
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
    }
    Ok(())
}
