//! flsignal and two flnodes in network namespaces: UDP datagrams cross
//! between the two hosts through WebRTC data channels, byte for byte.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use e2e::netns::{namespaces_available, Testbed, ADDR_A};
use e2e::wireguard::{tools_available, Overlay};
use e2e::{binary, ServerProcess, PATIENCE};
use tokio::net::UdpSocket;

/// The local WireGuard's address on each host, and flnode's port for the peer.
const WIREGUARD: &str = "127.0.0.1:51820";
const PEER_PORT: &str = "127.0.0.1:51900";

fn flnode(args: &[&str]) -> String {
    let output = std::process::Command::new(binary("flnode").unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn init(dir: &Path) -> String {
    flnode(&["init", "--config", dir.to_str().unwrap()])
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

fn start_node(ns: &str, dir: &Path, signal: &str, peer: &str) -> tokio::process::Child {
    Testbed::command(ns, &binary("flnode").unwrap())
        .args([
            "up",
            "--config",
            dir.to_str().unwrap(),
            "--signal",
            signal,
            "--wireguard",
            WIREGUARD,
        ])
        .args(["--peer", &format!("{peer}={PEER_PORT}")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `flnode status` reports the peer connected.
async fn wait_connected(dir: &Path) {
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    loop {
        let output = std::process::Command::new(binary("flnode").unwrap())
            .args(["status", "--config", dir.to_str().unwrap()])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&output.stdout);
        if peer_connected(&report) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never connected: {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// True if `flnode status` shows the peer's data path up.
fn peer_connected(report: &str) -> bool {
    report
        .lines()
        .any(|line| line.starts_with("peer ") && line.split_whitespace().nth(2) == Some("connected"))
}

/// Sends each payload until it arrives (the channel is unreliable by
/// design), and checks every arrival byte for byte.
async fn exchange(from: &UdpSocket, to: &UdpSocket, payloads: &[Vec<u8>]) {
    let target: SocketAddr = PEER_PORT.parse().unwrap();
    let mut buffer = vec![0u8; 65_536];
    for payload in payloads {
        let mut delivered = false;
        for _ in 0..20 {
            from.send_to(payload, target).await.unwrap();
            if let Ok(Ok((len, source))) =
                tokio::time::timeout(Duration::from_millis(500), to.recv_from(&mut buffer)).await
            {
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
    let server = ServerProcess::start_in(Some(&testbed.a), &["--listen", "0.0.0.0:0"], &[])
        .await
        .unwrap();
    let port = server.addr.port();
    let temp = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dirs = (temp.0.path(), temp.1.path());
    let (id_a, id_b) = (init(dirs.0), init(dirs.1));
    let _node_a = start_node(&testbed.a, dirs.0, &format!("ws://127.0.0.1:{port}"), &id_b);
    let _node_b = start_node(&testbed.b, dirs.1, &format!("ws://{ADDR_A}:{port}"), &id_a);
    wait_connected(dirs.0).await;
    wait_connected(dirs.1).await;

    let wg_a = Testbed::udp_socket(&testbed.a, WIREGUARD.parse().unwrap()).unwrap();
    let wg_b = Testbed::udp_socket(&testbed.b, WIREGUARD.parse().unwrap()).unwrap();
    let payloads: Vec<Vec<u8>> = [1usize, 2, 100, 1200, 1420, 8000]
        .iter()
        .enumerate()
        .map(|(i, &len)| (0..len).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect();
    exchange(&wg_a, &wg_b, &payloads).await;
    exchange(&wg_b, &wg_a, &payloads).await;
    // Both hosts are on one link: the path is host to host (the status
    // refreshes it every second).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = flnode(&["status", "--config", dirs.0.to_str().unwrap()]);
        assert!(peer_connected(&status), "{status}");
        if status.contains("path host 10.201.0.1:") && status.contains("-> host 10.201.0.2:") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no host path in {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `flnode status` says the node is registered with flsignal.
async fn wait_registered(dir: &Path) {
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    loop {
        let report = flnode(&["status", "--config", dir.to_str().unwrap()]);
        if report.contains("signal registered") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never registered again: {report}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let server = ServerProcess::start_in(Some(&testbed.a), &["--listen", "0.0.0.0:0"], &[])
        .await
        .unwrap();
    let port = server.addr.port();
    let temp = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dirs = (temp.0.path(), temp.1.path());
    let (id_a, id_b) = (init(dirs.0), init(dirs.1));
    let signal_a = format!("ws://127.0.0.1:{port}");
    let signal_b = format!("ws://{ADDR_A}:{port}");
    let _node_a = start_node(&testbed.a, dirs.0, &signal_a, &id_b);
    let mut node_b = start_node(&testbed.b, dirs.1, &signal_b, &id_a);

    let overlay = Overlay::new(&testbed, WIREGUARD, PEER_PORT).await.unwrap();
    overlay.ping_from_a().await.unwrap();
    let report = overlay.iperf3_from_a(2).await.unwrap();
    eprintln!("iperf3 through the overlay: {report}");

    // Signalling outage: the tunnel keeps working; the nodes come back.
    drop(server);
    tokio::time::sleep(Duration::from_secs(1)).await;
    overlay.ping_from_a().await.unwrap();
    let listen = format!("0.0.0.0:{port}");
    let _server = ServerProcess::start_in(Some(&testbed.a), &["--listen", &listen], &[])
        .await
        .unwrap();
    wait_registered(dirs.0).await;
    wait_registered(dirs.1).await;
    overlay.ping_from_a().await.unwrap();

    // One node restarts: the tunnel comes back by itself.
    node_b.kill().await.unwrap();
    let _node_b = start_node(&testbed.b, dirs.1, &signal_b, &id_a);
    wait_connected(dirs.1).await;
    overlay.ping_from_a().await.unwrap();
}
