//! flbench-handover: how long the WireGuard tunnel over flnode stalls when
//! a node changes network, and how fast nodes are registered again when
//! flsignal restarts.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_handover [runs]
//!
//! Each run builds two network namespaces joined by a link (a second one
//! is added before the dead-path phase), flsignal on host a, an flnode and wireguard-go on each host, and
//! measures, with 10 pings a second through the tunnel:
//!
//! * address change: host b gets a new address and loses its old one
//!   (netlink tells flnode at once); the longest gap between answered pings;
//! * dead path: UDP on the link the tunnel uses is dropped, with no address
//!   event (the ctl keepalives must notice); the longest gap;
//! * signalling restart: flsignal is killed, stays down for 5 s, and starts
//!   again; pings lost meanwhile (the tunnel must not notice) and the time
//!   from the new flsignal accepting connections to both nodes registered.

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::flnode::{status, NodePair, PEER_PORT, WIREGUARD};
use e2e::netns::Testbed;
use e2e::spread::report;
use e2e::wireguard::Overlay;
use e2e::ServerProcess;

/// Pings a second through the tunnel while measuring.
const PING_INTERVAL: Duration = Duration::from_millis(100);
/// How long flsignal stays down.
const OUTAGE: Duration = Duration::from_secs(5);

struct Run {
    address_change_gap: f64,
    dead_path_gap: f64,
    outage_lost: u64,
    reregistration: f64,
}

async fn one_run() -> anyhow::Result<Run> {
    let testbed = Testbed::new()?;
    let mut pair = NodePair::start(&testbed).await?;
    let overlay = Overlay::new(&testbed, WIREGUARD, PEER_PORT).await?;
    overlay.ping_from_a().await?;

    // Signalling restart first, while the addresses are the original ones.
    let (_, outage_lost) = overlay
        .ping_gap_from_a(8, PING_INTERVAL, async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(pair.server.take());
            tokio::time::sleep(OUTAGE).await;
            Ok(())
        })
        .await?;
    let listen = format!("0.0.0.0:{}", pair.port);
    pair.server = Some(ServerProcess::start_in(Some(&testbed.a), &["--listen", &listen], &[]).await?);
    let back = Instant::now();
    loop {
        let registered = (0..2).all(|host| status(pair.dir(host)).is_ok_and(|r| r.contains("signal registered")));
        if registered {
            break;
        }
        anyhow::ensure!(back.elapsed() < Duration::from_secs(60), "nodes never registered again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reregistration = back.elapsed().as_secs_f64() * 1000.0;

    let (address_change_gap, _) = overlay
        .ping_gap_from_a(5, PING_INTERVAL, async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            testbed.readdress_b("10.201.0.3")
        })
        .await?;
    overlay.ping_from_a().await?;

    // A second link for the dead-path phase, added only now so that the
    // address change above hit the one path there was.
    // The new addresses make both nodes hand over; wait until that is
    // done and the path in `flnode status` (refreshed every second) is the
    // new connection's.
    testbed.add_second_link()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pair.wait_connected(0).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    overlay.ping_from_a().await?;
    let report = status(pair.dir(0))?;
    let dying = if report.contains("path host 10.201.0.1:") { 1 } else { 2 };
    let (dead_path_gap, _) = overlay
        .ping_gap_from_a(7, PING_INTERVAL, async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            testbed.block_udp_on_link(dying)
        })
        .await?;
    Ok(Run {
        address_change_gap,
        dead_path_gap,
        outage_lost,
        reregistration,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(3);
    let mut results = Vec::new();
    for index in 0..runs {
        let run = one_run().await.with_context(|| format!("run {}", index + 1))?;
        println!(
            "run {}: address change gap {:.0} ms, dead path gap {:.0} ms, pings lost while flsignal was down {}, registered again {:.0} ms after flsignal's return",
            index + 1,
            run.address_change_gap,
            run.dead_path_gap,
            run.outage_lost,
            run.reregistration
        );
        results.push(run);
    }
    let values = |of: fn(&Run) -> f64| results.iter().map(of).collect::<Vec<_>>();
    report("longest gap, address change", "ms", values(|r| r.address_change_gap), 0);
    report("longest gap, dead path", "ms", values(|r| r.dead_path_gap), 0);
    report(
        "pings lost while flsignal was down",
        "",
        values(|r| r.outage_lost as f64),
        0,
    );
    report(
        "registered again after flsignal's return",
        "ms",
        values(|r| r.reregistration),
        0,
    );
    Ok(())
}
