//! Two flnodes, each behind its own masquerading NAT router, with flsignal
//! (and its STUN and TURN services) and coturn on the public network
//! between them (`e2e::nat`). Real wireguard-go runs over the nodes.
//!
//! * With the routers free to exchange UDP, the tunnel comes up over
//!   server-reflexive candidates learnt from flsignal's STUN service.
//! * With UDP between the routers blocked, it comes up through flsignal's
//!   own TURN service, with the credentials flsignal sent the nodes, and
//!   `flnode status` says `relay`.
//! * The same through coturn named with `--ice-server` (flsignal's TURN
//!   off): external TURN servers still work.

use std::time::Duration;

use e2e::flnode::{peer_connected, status, wait_for, NodePair, PEER_PORT, WIREGUARD};
use e2e::nat::{self, Coturn, NatTopology, HOST_A, HOST_B, ROUTER_A_PUBLIC, ROUTER_B_PUBLIC, SERVERS};
use e2e::netns::{namespaces_available, Testbed};
use e2e::stun_client::mapped_address;
use e2e::wireguard::{self, Overlay};
use e2e::{ServerProcess, PATIENCE};

/// The selected path of the first peer in a status report, e.g.
/// `host 192.168.10.2:5000 -> srflx 198.51.100.6:5001`.
fn path_of(report: &str) -> &str {
    report
        .split("  path ")
        .nth(1)
        .and_then(|rest| rest.split("  rtt").next())
        .unwrap_or("-")
}

fn available(test: &str, turn: bool) -> bool {
    namespaces_available(test) && wireguard::tools_available(test) && nat::tools_available(test, turn)
}

/// flsignal on the public network, STUN (and TURN, on the same socket) on
/// its standard port, with `extra` flags. The public namespace has several
/// addresses, so STUN is bound to the servers' one: a UDP socket on
/// 0.0.0.0 answers from the address of the outgoing route, which the NAT
/// would not take for the address it asked.
async fn signalling(topology: &NatTopology, extra: &[&str]) -> (ServerProcess, String) {
    let stun = format!("{SERVERS}:3478");
    let mut args = vec!["--listen", "0.0.0.0:0", "--stun-listen", &stun];
    args.extend_from_slice(extra);
    let server = ServerProcess::start_in(Some(&topology.public), &args, &[])
        .await
        .unwrap();
    let url = format!("ws://{SERVERS}:{}", server.addr.port());
    (server, url)
}

/// What each host looks like from the public side, and that the NATs keep
/// the hosts apart.
async fn check_topology(topology: &NatTopology) {
    assert!(
        !NatTopology::pings(&topology.host_a, HOST_B),
        "host a reaches b's private address"
    );
    assert!(
        !NatTopology::pings(&topology.host_b, HOST_A),
        "host b reaches a's private address"
    );
    let stun = format!("{SERVERS}:3478").parse().unwrap();
    for (ns, public) in [(&topology.host_a, ROUTER_A_PUBLIC), (&topology.host_b, ROUTER_B_PUBLIC)] {
        let socket = Testbed::udp_socket(ns, "0.0.0.0:0".parse().unwrap()).unwrap();
        let mapped = mapped_address(&socket, stun, PATIENCE).await.unwrap();
        assert_eq!(
            mapped.map(|addr| addr.ip().to_string()).as_deref(),
            Some(public),
            "flsignal's STUN must see {ns} as its router"
        );
    }
}

/// Waits until both nodes are connected over a path whose description
/// satisfies `wanted`; on failure the nodes' logs are in the message.
async fn wait_for_path(
    pair: &NodePair,
    what: &str,
    wanted: impl Fn(&str) -> bool + Copy,
    extra_log: impl Fn() -> String,
) {
    for host in 0..2 {
        let waited = wait_for(pair.dir(host), what, |report| {
            peer_connected(report) && wanted(path_of(report))
        })
        .await;
        if let Err(error) = waited {
            panic!(
                "host {host}: {error:#}\n--- flnode a log:\n{}\n--- flnode b log:\n{}\n{}",
                pair.log(0),
                pair.log(1),
                extra_log()
            );
        }
        eprintln!("host {host}: {}", status(pair.dir(host)).unwrap_or_default().trim());
    }
}

/// Pings through the overlay (for up to a minute); on failure the nodes'
/// status, their logs and `extra_log` (taken at the failure) are in the
/// message.
async fn ping_or_explain(overlay: &Overlay, pair: &NodePair, extra_log: impl Fn() -> String) {
    let pinged = tokio::time::timeout(Duration::from_secs(60), overlay.ping_from_a()).await;
    if !matches!(pinged, Ok(Ok(()))) {
        panic!(
            "no ping through the overlay: {pinged:?}\n--- a:\n{}\n--- b:\n{}\n--- a log:\n{}\n--- b log:\n{}\n{}",
            status(pair.dir(0)).unwrap_or_default(),
            status(pair.dir(1)).unwrap_or_default(),
            pair.log(0),
            pair.log(1),
            extra_log(),
        );
    }
}

#[tokio::test]
async fn wireguard_crosses_two_nats_over_server_reflexive_candidates() {
    let test = "wireguard_crosses_two_nats_over_server_reflexive_candidates";
    if !available(test, false) {
        return;
    }
    let topology = NatTopology::new().unwrap();
    // flsignal's TURN runs, but the routers' addresses are documentation
    // addresses, which it refuses as peers: no relayed path competes.
    let (server, url) = signalling(&topology, &[]).await;
    check_topology(&topology).await;
    let server_addr = format!("{SERVERS}:{}", server.addr.port()).parse().unwrap();

    // Nothing but the default: the STUN service of the signalling server.
    let pair = NodePair::start_between([&topology.host_a, &topology.host_b], server, [url.clone(), url], &[])
        .await
        .unwrap();
    let overlay = Overlay::between(
        [&topology.host_a, &topology.host_b],
        &topology.tag,
        WIREGUARD,
        PEER_PORT,
    )
    .await
    .unwrap();
    ping_or_explain(&overlay, &pair, String::new).await;
    // The far end of the path is the other router's public address, named
    // srflx when its candidate arrived first, or prflx when the peer's
    // connectivity check did (flnode accepts those at once).
    wait_for_path(
        &pair,
        "on a server-reflexive path",
        |path| path.contains("srflx") || path.contains("prflx"),
        String::new,
    )
    .await;
    for host in 0..2 {
        let path = path_of(&status(pair.dir(host)).unwrap()).to_owned();
        assert!(!path.contains("relay"), "host {host}: {path}");
    }
    overlay.ping_from_a().await.unwrap();

    // The nodes asked flsignal's STUN service (our own check did too).
    let (answered, metrics) = topology.server_metric(server_addr, "flsignal_stun_answered_total");
    assert!(answered > 2.0, "{metrics}");
}

/// UDP between the routers is dropped, so only a relay on the public
/// network can carry the traffic: flsignal's own TURN service, which the
/// nodes use with the credentials flsignal sent them (no `--ice-server`,
/// no coturn); `flnode status` must say `relay`. The routers' public
/// addresses are documentation addresses, which the relay refuses as peers
/// unless allowed: `--turn-allow-peer` allows them (the hosts' private
/// addresses stay refused).
#[tokio::test]
async fn without_a_direct_path_traffic_goes_through_flsignals_turn() {
    let test = "without_a_direct_path_traffic_goes_through_flsignals_turn";
    if !available(test, false) {
        return;
    }
    let topology = NatTopology::new().unwrap();
    let (server, url) = signalling(&topology, &["--turn-allow-peer", "198.51.100.0/24"]).await;
    let server_addr = format!("{SERVERS}:{}", server.addr.port()).parse().unwrap();
    check_topology(&topology).await;
    topology.block_direct_udp().unwrap();

    let pair = NodePair::start_between([&topology.host_a, &topology.host_b], server, [url.clone(), url], &[])
        .await
        .unwrap();
    let overlay = Overlay::between(
        [&topology.host_a, &topology.host_b],
        &topology.tag,
        WIREGUARD,
        PEER_PORT,
    )
    .await
    .unwrap();
    let explain = || {
        let (_, metrics) = topology.server_metric(server_addr, "flsignal_turn_allocations");
        let turn: String = metrics
            .lines()
            .filter(|line| line.contains("turn_"))
            .collect::<Vec<_>>()
            .join("\n");
        format!("--- flsignal TURN metrics:\n{turn}\n{}", topology.firewall_counters())
    };
    ping_or_explain(&overlay, &pair, explain).await;
    wait_for_path(&pair, "on a relayed path", |path| path.contains("relay"), explain).await;
    overlay.ping_from_a().await.unwrap();

    let (allocations, metrics) = topology.server_metric(server_addr, "flsignal_turn_allocations");
    assert!(allocations >= 1.0, "{metrics}");
    let series = r#"flsignal_turn_relayed_bytes_total{direction="to_peer"}"#;
    let (relayed, metrics) = topology.server_metric(server_addr, series);
    assert!(relayed > 1000.0, "{metrics}");
    // The hosts' private addresses were asked for and refused.
    let series = r#"flsignal_turn_refusals_total{reason="denied_peer"}"#;
    let (denied, metrics) = topology.server_metric(server_addr, series);
    assert!(denied >= 1.0, "{metrics}");
}

/// The same through coturn, named with `--ice-server`, and flsignal's TURN
/// off: operators can still bring their own TURN server. On failure the
/// message has both nodes' logs, coturn's log and every firewall counter.
/// (This used to fail: the public network had no default route, so
/// coturn's relayed send towards a peer's private host address failed with
/// ENETUNREACH and coturn closed that allocation; see `NatTopology::wire`.)
#[tokio::test]
async fn without_a_direct_path_traffic_goes_through_an_external_turn() {
    let test = "without_a_direct_path_traffic_goes_through_an_external_turn";
    if !available(test, true) {
        return;
    }
    let topology = NatTopology::new().unwrap();
    let (server, url) = signalling(&topology, &["--turn-listen", "off"]).await;
    check_topology(&topology).await;
    topology.block_direct_udp().unwrap();
    let coturn = Coturn::start(&topology).await.unwrap();
    let turn = coturn.ice_server();

    let pair = NodePair::start_between(
        [&topology.host_a, &topology.host_b],
        server,
        [url.clone(), url],
        &["--ice-server", &turn],
    )
    .await
    .unwrap();
    let overlay = Overlay::between(
        [&topology.host_a, &topology.host_b],
        &topology.tag,
        WIREGUARD,
        PEER_PORT,
    )
    .await
    .unwrap();
    let explain = || format!("--- coturn:\n{}\n{}", coturn.log(), topology.firewall_counters());
    ping_or_explain(&overlay, &pair, explain).await;
    wait_for_path(&pair, "on a relayed path", |path| path.contains("relay"), explain).await;
}
