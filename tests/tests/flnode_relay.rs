//! The last resort: two flnodes behind NAT routers that drop all UDP
//! (only TCP to flsignal gets out), real wireguard-go over them. The
//! tunnel comes up through flsignal's datagram relay, `flnode status`
//! says so, ping and iperf3 work, the nodes' logs stay small; once UDP is
//! let through, traffic moves to a data channel while pings keep being
//! answered. The same across two clustered flsignal instances (one node on
//! each, NATS under the documented permissions). And `--relay off`: the
//! nodes are told, and say so.

use std::time::{Duration, Instant};

use e2e::cluster::ClusterKeys;
use e2e::flnode::{status, wait_for, NodePair, PEER_PORT, WIREGUARD};
use e2e::nat::{self, NatTopology, SERVERS};
use e2e::nats::{binary_or_skip, NatsServer};
use e2e::netns::namespaces_available;
use e2e::wireguard::{self, Overlay};
use e2e::ServerProcess;

/// ERROR lines one node may write per minute on a network without UDP;
/// before they were summarised it wrote 1200 (one every 50 ms).
const MAX_ERROR_LINES_PER_MINUTE: f64 = 60.0;

fn available(test: &str) -> bool {
    namespaces_available(test) && wireguard::tools_available(test) && nat::tools_available(test, false)
}

fn peer_line(report: &str) -> &str {
    report.lines().find(|line| line.starts_with("peer ")).unwrap_or("")
}

/// Both nodes relayed, `flnode status` showing the path and its round trip.
fn relayed(report: &str) -> bool {
    peer_line(report).split_whitespace().nth(2) == Some("relayed")
        && report.contains("path relayed through flsignal  rtt ")
        && !report.contains("rtt - (relay ping)")
}

/// Connected over a data channel.
fn on_a_data_channel(report: &str) -> bool {
    peer_line(report).split_whitespace().nth(2) == Some("connected") && !report.contains("relayed through")
}

fn explain(pair: &NodePair) -> String {
    format!(
        "--- a:\n{}\n--- b:\n{}\n--- a log:\n{}\n--- b log:\n{}",
        status(pair.dir(0)).unwrap_or_default(),
        status(pair.dir(1)).unwrap_or_default(),
        pair.log(0),
        pair.log(1)
    )
}

async fn both(pair: &NodePair, what: &str, ready: fn(&str) -> bool) -> anyhow::Result<()> {
    for host in 0..2 {
        wait_for(pair.dir(host), what, ready).await?;
    }
    Ok(())
}

/// What the relay and the move must show, whoever serves the nodes.
async fn relayed_then_moved(topology: &NatTopology, pair: &NodePair, started: Instant) {
    let overlay = Overlay::between(
        [&topology.host_a, &topology.host_b],
        &topology.tag,
        WIREGUARD,
        PEER_PORT,
    )
    .await
    .unwrap();
    let pinged = tokio::time::timeout(Duration::from_secs(60), overlay.ping_from_a()).await;
    assert!(
        matches!(pinged, Ok(Ok(()))),
        "no ping through the relay: {pinged:?}\n{}",
        explain(pair)
    );
    if let Err(error) = both(pair, "relayed through flsignal", relayed).await {
        panic!("{error:#}\n{}", explain(pair));
    }
    for host in 0..2 {
        eprintln!("host {host}: {}", status(pair.dir(host)).unwrap_or_default().trim());
    }
    let mbits = overlay.iperf3_mbits_from_a(3).await.unwrap();
    assert!(mbits > 0.0, "iperf3 through the relay: {mbits} Mbit/s");
    eprintln!("iperf3 through the relay: {mbits:.1} Mbit/s");

    // The logs: the one line that matters is there, the flood is not.
    let minutes = (started.elapsed().as_secs_f64() / 60.0).max(1.0);
    for host in 0..2 {
        let log = pair.log(host);
        assert!(
            log.contains("WireGuard goes through the signalling server's relay"),
            "host {host} never said it uses the relay:\n{log}"
        );
        let errors = log.lines().filter(|line| line.contains(" ERROR ")).count() as f64;
        eprintln!(
            "host {host}: {errors} ERROR lines, {} bytes of log in {minutes:.1} min",
            log.len()
        );
        assert!(
            errors <= MAX_ERROR_LINES_PER_MINUTE * minutes,
            "host {host}: {errors} ERROR lines in {minutes:.1} min:\n{log}"
        );
    }

    // UDP comes back: traffic moves to a data channel, pings keep being
    // answered meanwhile (the gap is measured in flbench_relay).
    topology.unblock_udp().unwrap();
    let moved = overlay.ping_gap_from_a(40, Duration::from_millis(200), async {
        both(pair, "on a data channel", on_a_data_channel).await
    });
    let (gap, lost) = match moved.await {
        Ok(measured) => measured,
        Err(error) => panic!("{error:#}\n{}", explain(pair)),
    };
    eprintln!("moved to a data channel; longest gap {gap:.0} ms, {lost} pings unanswered");
    assert!(
        gap < 5_000.0,
        "the tunnel stopped for {gap:.0} ms while moving\n{}",
        explain(pair)
    );
    overlay.ping_from_a().await.unwrap();
}

#[tokio::test]
async fn without_any_udp_wireguard_goes_through_the_signalling_relay_then_moves_to_a_data_channel() {
    let test = "without_any_udp_wireguard_goes_through_the_signalling_relay_then_moves_to_a_data_channel";
    if !available(test) {
        return;
    }
    let topology = NatTopology::new().unwrap();
    topology.block_udp().unwrap();
    let stun = format!("{SERVERS}:3478");
    let server = ServerProcess::start_in(
        Some(&topology.public),
        &["--listen", "0.0.0.0:0", "--stun-listen", &stun],
        &[],
    )
    .await
    .unwrap();
    let url = format!("ws://{SERVERS}:{}", server.addr.port());
    let started = Instant::now();
    let pair = NodePair::start_between([&topology.host_a, &topology.host_b], server, [url.clone(), url], &[])
        .await
        .unwrap();
    relayed_then_moved(&topology, &pair, started).await;
}

#[tokio::test]
async fn the_relay_crosses_two_clustered_instances() {
    let test = "the_relay_crosses_two_clustered_instances";
    if !available(test) {
        return;
    }
    let Some(nats_binary) = binary_or_skip(test) else {
        return;
    };
    let topology = NatTopology::new().unwrap();
    topology.block_udp().unwrap();
    let keys = ClusterKeys::generate(2);
    let nats = NatsServer::start_in(nats_binary, &keys.nats_config(), &topology.public)
        .await
        .unwrap();
    let mut servers = Vec::new();
    for index in 0..2 {
        let seed = keys.seed_file(index);
        let stun = if index == 0 {
            format!("{SERVERS}:3478")
        } else {
            "off".to_owned()
        };
        let args = [
            "--listen",
            "0.0.0.0:0",
            "--stun-listen",
            &stun,
            "--nats",
            &nats.url(),
            "--nats-nkey",
            seed.to_str().unwrap(),
        ];
        servers.push(
            ServerProcess::start_in(Some(&topology.public), &args, &[])
                .await
                .unwrap(),
        );
    }
    let urls = servers
        .iter()
        .map(|server| format!("ws://{SERVERS}:{}", server.addr.port()))
        .collect::<Vec<_>>();
    let second = servers.pop().unwrap();
    let first = servers.pop().unwrap();
    let started = Instant::now();
    let pair = NodePair::start_between(
        [&topology.host_a, &topology.host_b],
        first,
        [urls[0].clone(), urls[1].clone()],
        &[],
    )
    .await
    .unwrap();
    relayed_then_moved(&topology, &pair, started).await;
    drop(second);
}

#[tokio::test]
async fn relay_off_is_refused_cleanly_and_the_nodes_say_so() {
    let test = "relay_off_is_refused_cleanly_and_the_nodes_say_so";
    if !available(test) {
        return;
    }
    let topology = NatTopology::new().unwrap();
    topology.block_udp().unwrap();
    let server = ServerProcess::start_in(
        Some(&topology.public),
        &["--listen", "0.0.0.0:0", "--stun-listen", "off", "--relay", "off"],
        &[],
    )
    .await
    .unwrap();
    let url = format!("ws://{SERVERS}:{}", server.addr.port());
    let pair = NodePair::start_between([&topology.host_a, &topology.host_b], server, [url.clone(), url], &[])
        .await
        .unwrap();
    for host in 0..2 {
        let refused = wait_for(pair.dir(host), "told the relay is refused", |report| {
            report.contains("signal registered  relay refused")
        })
        .await;
        if let Err(error) = refused {
            panic!("{error:#}\n{}", explain(&pair));
        }
    }
    // Long enough for the relay to have carried, had it been granted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for host in 0..2 {
        let report = status(pair.dir(host)).unwrap();
        assert!(report.contains("signal registered"), "still registered: {report}");
        assert!(!report.contains("relayed"), "{report}");
        let log = pair.log(host);
        assert!(
            log.contains("does not relay datagrams for this node: this server does not relay datagrams (--relay off)"),
            "host {host} did not say it was refused:\n{log}"
        );
    }
}
