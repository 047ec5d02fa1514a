//! flsignal and two flnodes in network namespaces: UDP datagrams cross
//! between the two hosts through WebRTC data channels, byte for byte, and
//! real WireGuard runs over them.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::flnode::{peer_connected, status, NodePair, PEER_PORT, WIREGUARD};
use e2e::netns::{namespaces_available, Testbed};
use e2e::wireguard::{tools_available, Overlay};
use e2e::ServerProcess;
use tokio::net::UdpSocket;

/// Sends each payload until it arrives (the channel is unreliable by
/// design), and checks every arrival byte for byte.
async fn exchange(from: &UdpSocket, to: &UdpSocket, payloads: &[Vec<u8>]) {
    let target: SocketAddr = PEER_PORT.parse().unwrap();
    let mut buffer = vec![0u8; 65_536];
    for payload in payloads {
        let mut delivered = false;
        for _ in 0..20 {
            from.send_to(payload, target).await.unwrap();
            let received = tokio::time::timeout(Duration::from_millis(500), to.recv_from(&mut buffer)).await;
            if let Ok(Ok((len, source))) = received {
                assert_eq!(&buffer[..len], &payload[..], "datagram changed in transit");
                assert_eq!(source, target, "datagram must come from flnode's peer port");
                delivered = true;
                break;
            }
        }
        assert!(delivered, "a {}-byte datagram never arrived", payload.len());
    }
}

#[tokio::test]
async fn udp_datagrams_cross_between_namespaces_byte_exact() {
    if !namespaces_available("udp_datagrams_cross_between_namespaces_byte_exact") {
        return;
    }
    let testbed = Testbed::new().unwrap();
    let pair = NodePair::start(&testbed).await.unwrap();
    pair.wait_connected(0).await.unwrap();
    pair.wait_connected(1).await.unwrap();

    let wg_a = Testbed::udp_socket(&testbed.a, WIREGUARD.parse().unwrap()).unwrap();
    let wg_b = Testbed::udp_socket(&testbed.b, WIREGUARD.parse().unwrap()).unwrap();
    let payloads: Vec<Vec<u8>> = [1usize, 2, 100, 1200, 1420, 8000]
        .iter()
        .enumerate()
        .map(|(i, &len)| (0..len).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect();
    exchange(&wg_a, &wg_b, &payloads).await;
    exchange(&wg_b, &wg_a, &payloads).await;
    // Both hosts are on one link: the path is host to host.
    e2e::flnode::wait_for(pair.dir(0), "on a host path", |report| {
        peer_connected(report) && report.contains("path host 10.201.0.1:") && report.contains("-> host 10.201.0.2:")
    })
    .await
    .unwrap();
    let report = status(pair.dir(0)).unwrap();
    assert!(report.contains("tx ") && !report.contains("tx 0 packets"), "{report}");
}

/// Real wireguard-go on both hosts, each peer's endpoint at the local
/// flnode: ping and an iperf3 TCP run through the overlay; the tunnel lives
/// through a signalling outage, and comes back after a node restarts.
#[tokio::test]
async fn wireguard_tunnel_over_flnode_survives_restarts() {
    let test = "wireguard_tunnel_over_flnode_survives_restarts";
    if !namespaces_available(test) || !tools_available(test) {
        return;
    }
    let testbed = Testbed::new().unwrap();
    let mut pair = NodePair::start(&testbed).await.unwrap();
    let overlay = Overlay::new(&testbed, WIREGUARD, PEER_PORT).await.unwrap();
    overlay.ping_from_a().await.unwrap();
    let report = overlay.iperf3_from_a(2).await.unwrap();
    eprintln!("iperf3 through the overlay: {report}");

    // Signalling outage: the tunnel keeps working; the nodes come back.
    drop(pair.server.take());
    tokio::time::sleep(Duration::from_secs(1)).await;
    overlay.ping_from_a().await.unwrap();
    let listen = format!("0.0.0.0:{}", pair.port);
    pair.server = Some(
        ServerProcess::start_in(Some(&testbed.a), &["--listen", &listen], &[])
            .await
            .unwrap(),
    );
    pair.wait_registered(0).await.unwrap();
    pair.wait_registered(1).await.unwrap();
    overlay.ping_from_a().await.unwrap();

    // One node restarts: the tunnel comes back by itself.
    pair.kill_node(1).await.unwrap();
    pair.start_node(1).unwrap();
    pair.wait_connected(1).await.unwrap();
    overlay.ping_from_a().await.unwrap();
}
