//! Managed mode: two hosts on a bridge, each running only `flnode up
//! --peer <the other>` (wireguard-go, MTU 1280, flnode's keys and
//! addresses). Then the same interfaces talk directly: both flnodes stop
//! with `--keep-interface`, and each WireGuard peer's endpoint is pointed
//! at the other host's listen port.

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::managed::{iperf3_mbits, ManagedNode};
use e2e::mesh::{Mesh, MESH_SERVER};
use e2e::netns::run_in;
use e2e::ServerProcess;

use crate::{ping_rtts, Run};

pub async fn one_run() -> anyhow::Result<Run> {
    let mesh = Mesh::new(2)?;
    let server = ServerProcess::start_in(
        Some(&mesh.switch),
        &["--listen", "0.0.0.0:0", "--stun-listen", "0.0.0.0:3478"],
        &[],
    )
    .await?;
    let url = format!("ws://{MESH_SERVER}:{}", server.addr.port());
    let mut nodes = [
        ManagedNode::init(&mesh.hosts[0], &mesh.wireguard_name(0))?,
        ManagedNode::init(&mesh.hosts[1], &mesh.wireguard_name(1))?,
    ];
    let ids = [nodes[0].id, nodes[1].id];
    let args = ["--wg-backend", "userspace", "--keep-interface"];
    let run = async {
        let started = Instant::now();
        nodes[0].start(&url, &[ids[1]], &args)?;
        nodes[1].start(&url, &[ids[0]], &args)?;
        let (a, b) = (nodes[0].ns.clone(), nodes[1].overlay().v4.to_string());
        // One ping at a time until one is answered: before the interface
        // and its route exist, ping fails at once.
        while ping_rtts(&a, &b, 1).map(|rtts| rtts.is_empty()).unwrap_or(true) {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the tunnel never came up");
        }
        let first_packet = started.elapsed();
        let flnode_rtt = e2e::spread::median(ping_rtts(&a, &b, 40)?);
        let flnode_mbits = iperf3_mbits(&a, &nodes[1].ns, &b, 5).await?;
        for node in &mut nodes {
            anyhow::ensure!(node.terminate().await?.success(), "flnode failed: {}", node.log());
        }
        point_at_each_other(&nodes)?;
        e2e::managed::ping_until(&a, &b).await?;
        let direct_rtt = e2e::spread::median(ping_rtts(&a, &b, 40)?);
        let direct_mbits = iperf3_mbits(&a, &nodes[1].ns, &b, 5).await?;
        Ok(Run {
            first_packet,
            flnode_mbits,
            direct_mbits,
            flnode_rtt,
            direct_rtt,
            forwarded_rtt: None,
            flood: None,
        })
    };
    let outcome = run.await;
    // The kept interfaces' wireguard-go processes are no one's children.
    for (host, node) in mesh.hosts.iter().zip(&nodes) {
        stop_everything_in(host).await;
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", node.interface));
    }
    outcome
}

/// Each WireGuard peer's endpoint becomes the other host's listen port.
fn point_at_each_other(nodes: &[ManagedNode; 2]) -> anyhow::Result<()> {
    for (index, node) in nodes.iter().enumerate() {
        let other = &nodes[1 - index];
        let port = run_in(&other.ns, &["wg", "show", &other.interface, "listen-port"])?;
        let endpoint = format!("{}:{}", Mesh::address(1 - index), port.trim());
        let key = other.wireguard_key()?;
        run_in(
            &node.ns,
            &["wg", "set", &node.interface, "peer", &key, "endpoint", &endpoint],
        )
        .with_context(|| format!("pointing {} at {endpoint}", node.interface))?;
    }
    Ok(())
}

/// Stops every process left in namespace `ns` (a kept wireguard-go):
/// SIGTERM, and SIGKILL for what is still there after two seconds.
async fn stop_everything_in(ns: &str) {
    let pids = || -> Vec<i32> {
        std::process::Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        for pid in pids() {
            // SAFETY: kill(2) of a process in the benchmark's own namespace.
            unsafe { libc::kill(pid, signal) };
        }
        for _ in 0..20 {
            if pids().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
