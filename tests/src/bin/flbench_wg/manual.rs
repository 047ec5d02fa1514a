//! Manual mode: two wireguard-go interfaces configured by hand (MTU 1420),
//! each peer's endpoint the local flnode's port; then the same pair with
//! each endpoint pointed at the other host's WireGuard directly; then
//! through two plain forwarders (`crate::forwarders`), for the RTT floor.

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::flnode::{NodePair, PEER_PORT, WIREGUARD};
use e2e::netns::{Testbed, ADDR_A, ADDR_B};
use e2e::spread::median;
use e2e::wireguard::Overlay;

use crate::forwarders::{Forwarders, FORWARDER_A};
use crate::Run;

/// Back-to-back pings per path for the RTT of a busy path.
const FLOOD_PINGS: u32 = 2000;

pub async fn one_run() -> anyhow::Result<Run> {
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
    let interval = crate::ping_interval();
    crate::hold_for_profiling(&testbed).await;
    let flnode_rtt = median(overlay.ping_rtts_from_a_every(40, &interval)?);
    let flnode_flood = overlay.flood_rtt_from_a(FLOOD_PINGS)?;
    let flnode_mbits = overlay.iperf3_mbits_from_a(5).await?;
    let port = WIREGUARD.rsplit(':').next().context("port")?;
    overlay.set_endpoints(&format!("{ADDR_B}:{port}"), &format!("{ADDR_A}:{port}"))?;
    overlay.ping_from_a().await?;
    let direct_rtt = median(overlay.ping_rtts_from_a_every(40, &interval)?);
    let direct_flood = overlay.flood_rtt_from_a(FLOOD_PINGS)?;
    let direct_mbits = overlay.iperf3_mbits_from_a(5).await?;
    // Last, the same pair through two plain forwarders: host b's
    // WireGuard follows its peer to the forwarder once a packet comes
    // through it (WireGuard's roaming), so only a's endpoint is set.
    let forwarders = Forwarders::start(&testbed, port.parse()?)?;
    overlay.set_endpoints(FORWARDER_A, &format!("{ADDR_A}:{port}"))?;
    overlay.ping_from_a().await?;
    let before = forwarders.carried();
    let forwarded_rtts = overlay.ping_rtts_from_a_every(40, &interval)?;
    let carried = forwarders.carried() - before;
    anyhow::ensure!(
        carried >= 2 * forwarded_rtts.len() as u64,
        "the forwarders carried {carried} datagrams for {} pings: not every ping went through them",
        forwarded_rtts.len()
    );
    let forwarded_rtt = Some(median(forwarded_rtts));
    let forwarded_flood = overlay.flood_rtt_from_a(FLOOD_PINGS)?;
    Ok(Run {
        first_packet,
        flnode_mbits,
        direct_mbits,
        flnode_rtt,
        direct_rtt,
        forwarded_rtt,
        flood: Some(crate::FloodRtts {
            flnode: flnode_flood,
            direct: direct_flood,
            forwarded: forwarded_flood,
        }),
    })
}
