//! The real `flsignal` binary in its own process: signals, environment,
//! configuration errors, file descriptors and plain HTTP — what only a
//! process shows (its connection limits and timeouts are in
//! process_limits.rs).
//!
//! Every test starts its own server on 127.0.0.1:0 and asserts behaviour,
//! not speed: waits are bounded by [`PATIENCE`], never by tight timings.

mod process_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use e2e::{binary, http_get, Client, ServerProcess, PATIENCE};
use flproto::identity::NodeKey;
use process_common::{expect_closed_by_server, join, series, FLEDGER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a signal; every node, announced or not, gets close 1001 and the
/// process exits cleanly, also with raw TCP connections hanging on it.
async fn graceful_shutdown_on(signal: i32) {
    let mut server = ServerProcess::start(&["--drain-timeout", "2s"], &[]).await.unwrap();
    let mut a = join(&server).await;
    let mut b = join(&server).await;
    let mut silent = Client::connect(&server.url()).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    server.signal(signal).unwrap();
    assert_eq!(a.expect_close().await.unwrap(), Some(1001));
    assert_eq!(b.expect_close().await.unwrap(), Some(1001));
    assert_eq!(silent.expect_close().await.unwrap(), Some(1001));
    // Drain timeout (2 s) plus a generous margin.
    let status = tokio::time::timeout(PATIENCE, server.child.wait())
        .await
        .expect("flsignal did not exit after the drain timeout")
        .unwrap();
    assert!(status.success(), "{status:?}");
    expect_closed_by_server(&mut idle).await;
    expect_closed_by_server(&mut half).await;
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting after exit"
    );
}

#[tokio::test]
async fn sigterm_closes_every_node_with_1001_and_exits() {
    graceful_shutdown_on(15).await;
}

#[tokio::test]
async fn sigint_shuts_down_the_same_way() {
    graceful_shutdown_on(2).await;
}

#[tokio::test]
async fn environment_variables_configure_the_server() {
    let server = ServerProcess::start(
        &[],
        &[
            ("FLSIGNAL_LISTEN", "127.0.0.1:0"),
            ("FLSIGNAL_MAX_LIST_LEN", "2"),
            ("FLSIGNAL_HANDSHAKE_TIMEOUT", "1s"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(server.addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(join(&server).await);
    }
    let (_fifth, list) = Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
        .await
        .unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    // A duration from the environment: silent for 1 s means closed.
    let mut silent = Client::connect(&server.url()).await.unwrap();
    assert_eq!(silent.expect_close().await.unwrap(), Some(4000));
}

/// Polls until the process is back to `baseline` open file descriptors
/// (plus a little slack for the runtime), and its connection gauges agree.
async fn back_to_baseline(server: &ServerProcess, baseline: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let open = server.open_fds().unwrap();
        let (_, metrics) = http_get(server.addr, "/metrics").await.unwrap();
        // The /metrics request itself is one connection.
        let connections = series(&metrics, "flsignal_connections");
        let sessions = series(&metrics, "flsignal_sessions");
        if open <= baseline + 2 && connections == Some(1.0) && sessions == Some(0.0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} fds open (baseline {baseline}), connections {connections:?}, sessions {sessions:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn connect_and_abort_cycles_leak_no_file_descriptors() {
    let args = ["--http-timeout", "1s", "--handshake-timeout", "1s"];
    let server = ServerProcess::start(&args, &[]).await.unwrap();
    // One full round first, so lazily opened descriptors are in the baseline.
    join(&server).await.close().await;
    http_get(server.addr, "/metrics").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = server.open_fds().unwrap();
    for _ in 0..200 {
        drop(TcpStream::connect(server.addr).await.unwrap());
    }
    for _ in 0..100 {
        // Dropped without a close frame.
        drop(Client::connect(&server.url()).await.unwrap());
    }
    for _ in 0..50 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let _ = stream.write_all(b"\x16\x03\x01 garbage\r\n\r\n").await;
    }
    for _ in 0..50 {
        // Announced, then dropped without a close frame.
        drop(join(&server).await);
    }
    back_to_baseline(&server, baseline).await;
}

/// A raw HTTP request; returns the status line.
async fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn plain_http_gets_http_answers() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    let (status, body) = http_get(server.addr, "/").await.unwrap();
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("flsignal"), "{body}");

    let (status, body) = http_get(server.addr, "/healthz").await.unwrap();
    assert!(status.contains("200"), "{status}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    assert_eq!(health["nodes"], 0, "{body}");

    let (status, body) = http_get(server.addr, "/metrics").await.unwrap();
    assert!(status.contains("200"), "{status}");
    for name in [
        "flsignal_connections",
        "flsignal_handshakes",
        "flsignal_relay_latency_seconds",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }

    let node = join(&server).await;
    let (status, body) = http_get(server.addr, "/healthz").await.unwrap();
    assert!(status.contains("200"), "{status}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    assert_eq!(health["nodes"], 1, "{body}");
    let (_, metrics) = http_get(server.addr, "/metrics").await.unwrap();
    assert_eq!(
        series(&metrics, "flsignal_handshakes_total{reason=\"ok\"}"),
        Some(1.0),
        "{metrics}"
    );

    let (status, _) = http_get(server.addr, "/nowhere").await.unwrap();
    assert!(status.contains("404"), "{status}");
    // Half-hearted upgrades get an HTTP answer, not a hang.
    let status = raw_request(
        server.addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    assert!(status.contains("426"), "{status}");

    // After all that, WebSockets still work.
    node.close().await;
    join(&server).await;
}

/// Runs the binary to its end (killed if it outlives [`PATIENCE`]).
async fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let child = tokio::process::Command::new(binary("flsignal").unwrap())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("flsignal {args:?} {env:?} did not exit"))
        .unwrap()
}

/// Arguments, environment, words the error line must contain.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);

#[tokio::test]
async fn bad_configuration_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let cases: [Case; 3] = [
        (&["--listen", &address], &[], &["cannot listen on", &address]),
        (
            &["--listen", "127.0.0.1:0", "--max-message-size", "10"],
            &[],
            &["max-message-size"],
        ),
        (
            &["--listen", "127.0.0.1:0"],
            &[("FLSIGNAL_MAX_MESSAGE_SIZE", "10")],
            &["max-message-size"],
        ),
    ];
    for (args, env, expected) in cases {
        let output = run_to_exit(args, env).await;
        assert!(!output.status.success(), "{args:?} {env:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Log lines may come first (the fd limit note); the error is one
        // line of its own, the last.
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("flsignal: ")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert_eq!(stderr.trim_end().lines().last(), Some(errors[0]), "{stderr}");
        for word in expected {
            assert!(errors[0].contains(word), "{word:?} missing: {stderr}");
        }
    }
    drop(taken);
}

/// A few hundred nodes through the load generator, so that it cannot rot.
#[tokio::test]
async fn load_generator_smoke_run() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flload"))
        .args(["idle", "--url", &server.url(), "--nodes", "300", "--server-pid"])
        .arg(server.pid().to_string())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("joined 300 of 300 nodes"), "{stdout}");
    assert!(stdout.contains("KiB per idle authenticated node"), "{stdout}");
}
