//! The load generator against a real `flsignal`, small enough for the test
//! suite, so that `flload` cannot rot: every node registers, nothing fails.
//! Behaviour only — the speed is BENCHMARKS.md's business.

use std::collections::HashMap;
use std::time::Duration;

use e2e::{binary, ServerProcess};

/// Upper bound on one flload run; a few seconds are expected.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `flload ARGS` to completion and returns its `result` line as a map.
async fn flload(args: &[&str]) -> HashMap<String, String> {
    flload_within(args, RUN_LIMIT).await
}

/// [`flload`] with its own upper bound on the run.
async fn flload_within(args: &[&str], limit: Duration) -> HashMap<String, String> {
    let run = tokio::process::Command::new(binary("flload").expect("flload is built"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run)
        .await
        .expect("flload finished in time")
        .expect("flload ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "flload {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("result "))
        .unwrap_or_else(|| panic!("no result line in {stdout}"));
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// A server whose per-IP cap does not limit a few hundred nodes, nor its
/// per-connection rate limit a relay as fast as it goes.
async fn server() -> ServerProcess {
    let limits = [
        "--max-connections-per-ip",
        "2000",
        "--rate-per-second",
        "1000000",
        "--rate-burst",
        "1000000",
        // Every load node comes from loopback: one source.
        "--announce-rate-per-second",
        "1000000",
        "--announce-rate-burst",
        "1000000",
    ];
    ServerProcess::start(&limits, &[]).await.expect("flsignal started")
}

#[tokio::test]
async fn handshakes_register_every_node() {
    let server = server().await;
    let url = server.url();
    let result = flload(&["handshakes", "--url", &url, "--nodes", "300", "--in-flight", "20"]).await;
    assert_eq!(result["registered"], "300", "{result:?}");
    assert_eq!(result["failed"], "0", "{result:?}");
    assert!(result.contains_key("latency_p99_ms"), "{result:?}");
    // Found by its listening port, as no pid was given.
    assert!(result.contains_key("server_cpu_us_per_handshake"), "{result:?}");
}

#[tokio::test]
async fn storm_registers_every_node_and_counts_bytes() {
    let server = server().await;
    let url = server.url();
    let result = flload(&[
        "storm",
        "--url",
        &url,
        "--nodes",
        "300",
        "--in-flight",
        "100",
        "--settle",
        "0.2",
    ])
    .await;
    assert_eq!(result["registered"], "300", "{result:?}");
    assert_eq!(result["all_registered"], "true", "{result:?}");
    assert_eq!(result["failed"], "0", "{result:?}");
    let bytes: u64 = result["bytes_settled"].parse().expect("a byte count");
    // At least the upgrade answer, challenge and node list for each node.
    assert!(bytes > 300 * 200, "{result:?}");
}

#[tokio::test]
async fn relay_echoes_without_errors_and_measures_the_server_cpu() {
    let server = server().await;
    let (url, pid) = (server.url(), server.pid().to_string());
    let result = flload(&[
        "relay",
        "--url",
        &url,
        "--server-pid",
        &pid,
        "--pairs",
        "2",
        "--window",
        "4",
        "--messages",
        "200",
        "--rtt-samples",
        "20",
    ])
    .await;
    assert!(result.contains_key("rtt_p99_ms"), "{result:?}");
    let per_frame: f64 = result["server_cpu_us_per_frame"].parse().expect("a number");
    assert!(per_frame >= 0.0, "{result:?}");
}

/// A short soak: a thousand nodes (and a few relaying pairs) join and leave
/// for most of a minute. Nothing fails, and once the last node has left
/// the server holds no more file descriptors than before the first joined.
#[tokio::test]
async fn soak_churns_without_failures_and_gives_every_fd_back() {
    let server = server().await;
    let (url, pid) = (server.url(), server.pid().to_string());
    let soak = [
        "soak",
        "--url",
        &url,
        "--server-pid",
        &pid,
        "--nodes",
        "1000",
        "--pairs",
        "4",
        "--duration",
        "45",
        "--lifetime",
        "15",
        "--report",
        "15",
        "--settle",
        "3",
    ];
    let result = flload_within(&soak, Duration::from_secs(150)).await;
    assert_eq!(result["failed"], "0", "{result:?}");
    assert_eq!(result["connected_after"], "0", "{result:?}");
    let count = |key: &str| -> u64 { result[key].parse().unwrap_or_else(|_| panic!("{key} in {result:?}")) };
    assert!(count("joins") > 1000, "nodes left and others joined: {result:?}");
    assert_eq!(count("joins"), count("leaves"), "{result:?}");
    assert!(result.contains_key("rtt_p99_ms"), "pairs relayed: {result:?}");
    assert!(count("fds_after") <= count("fds_before"), "{result:?}");
}
