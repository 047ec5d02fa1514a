//! The real `flsignal` binary in its own process: signals, environment,
//! file descriptors, raw TCP and plain HTTP — what only a process shows.
//!
//! Every test starts its own server on 127.0.0.1:0 and asserts behaviour,
//! not speed: waits are bounded by [`PATIENCE`], never by tight timings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use e2e::tungstenite::Message;
use e2e::{binary, http_get, Client, Event, ServerProcess, PATIENCE};
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;
use flproto::message::ServerMessage;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;

const FLEDGER: AnnounceAuth = AnnounceAuth::Fledger;

/// A second loopback address, to connect from another "IP" than 127.0.0.1.
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

async fn join(server: &ServerProcess) -> Client {
    Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
        .await
        .unwrap()
        .0
}

/// A TCP connection to `addr` from `source` (a loopback address).
async fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    tokio::time::timeout(PATIENCE, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// How a WebSocket connection attempt ended.
enum Attempt {
    /// Upgraded and challenged: the server took it.
    Admitted(Box<Client>),
    /// Failed or closed before the challenge: the server turned it away.
    Refused(String),
}

/// A WebSocket connection from `source`. Panics if the server neither
/// admits nor refuses within [`PATIENCE`]: a cap must not hang clients.
async fn attempt_from(source: Ipv4Addr, server: &ServerProcess) -> Attempt {
    let url = server.url();
    let outcome = tokio::time::timeout(PATIENCE, async {
        let stream = connect_from(source, server.addr).await.map_err(|e| e.to_string())?;
        let (mut socket, _) = tokio_tungstenite::client_async(url.as_str(), MaybeTlsStream::Plain(stream))
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
        let first = socket
            .next()
            .await
            .ok_or("closed before the challenge")?
            .map_err(|e| format!("before the challenge: {e}"))?;
        let text = first.into_text().map_err(|e| e.to_string())?;
        match serde_json::from_str(text.as_str()) {
            Ok(ServerMessage::Challenge(_, challenge)) => Ok(Client {
                socket,
                challenge,
                url: url.clone(),
            }),
            _ => Err(format!("first frame is not a challenge: {text}")),
        }
    })
    .await;
    match outcome {
        Ok(Ok(client)) => Attempt::Admitted(Box::new(client)),
        Ok(Err(error)) => Attempt::Refused(error),
        Err(_) => panic!("connection from {source} neither admitted nor refused within {PATIENCE:?}"),
    }
}

async fn admitted_from(source: Ipv4Addr, server: &ServerProcess) -> Client {
    match attempt_from(source, server).await {
        Attempt::Admitted(client) => *client,
        Attempt::Refused(error) => panic!("connection from {source} refused: {error}"),
    }
}

async fn refused_from(source: Ipv4Addr, server: &ServerProcess) {
    if let Attempt::Admitted(_) = attempt_from(source, server).await {
        panic!("connection from {source} admitted over the cap");
    }
}

/// Polls until a connection from `source` is admitted again.
async fn eventually_admitted_from(source: Ipv4Addr, server: &ServerProcess) -> Client {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match attempt_from(source, server).await {
            Attempt::Admitted(client) => return *client,
            Attempt::Refused(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still refused after a slot was freed: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Plain HTTP GET from `source`; returns the status line and body.
async fn http_get_from(source: Ipv4Addr, addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = connect_from(source, addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// The value of one series in `/metrics` text, e.g. `flsignal_connections`
/// or `flsignal_rejected_connections_total{reason="per_ip"}`.
fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Reads until the server closes the connection; fails if it does not.
async fn expect_closed_by_server(stream: &mut TcpStream) {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await {
            Err(_) => panic!("the server kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            // Perhaps a 408 or 400 answer before the close.
            Ok(Ok(_)) => continue,
        }
    }
}

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

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed() {
    let server = ServerProcess::start(&["--http-timeout", "1s"], &[]).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // While they hang, handshakes go on.
    join(&server).await;
    expect_closed_by_server(&mut idle).await;
    expect_closed_by_server(&mut half).await;
    // And after they are gone too.
    join(&server).await;
}

/// fledger's server stalled every later handshake behind one silent TCP
/// connection. Here the silent ones are left alone for a minute while
/// nodes join.
#[tokio::test]
async fn idle_connections_never_block_handshakes() {
    let server = ServerProcess::start(&["--http-timeout", "60s"], &[]).await.unwrap();
    let mut hanging = Vec::new();
    for _ in 0..20 {
        hanging.push(TcpStream::connect(server.addr).await.unwrap());
        let mut half = TcpStream::connect(server.addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        hanging.push(half);
    }
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(join(&server).await);
    }
    let (status, _) = http_get(server.addr, "/healthz").await.unwrap();
    assert!(status.contains("200"), "{status}");
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

#[tokio::test]
async fn connections_per_ip_are_capped() {
    let server = ServerProcess::start(&["--max-connections-per-ip", "3"], &[])
        .await
        .unwrap();
    let local = Ipv4Addr::LOCALHOST;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(admitted_from(local, &server).await);
    }
    refused_from(local, &server).await;
    // Another address is not affected.
    let other = admitted_from(OTHER_IP, &server).await;
    let (status, metrics) = http_get_from(OTHER_IP, server.addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let rejected = series(&metrics, "flsignal_rejected_connections_total{reason=\"per_ip\"}");
    assert!(rejected.is_some_and(|n| n >= 1.0), "{rejected:?}");
    // A freed slot is a slot again.
    held.pop();
    held.push(eventually_admitted_from(local, &server).await);
    refused_from(local, &server).await;
    drop(other);
}

#[tokio::test]
async fn total_connections_are_capped() {
    let server = ServerProcess::start(&["--max-connections", "2"], &[]).await.unwrap();
    let a = admitted_from(Ipv4Addr::LOCALHOST, &server).await;
    let _b = admitted_from(OTHER_IP, &server).await;
    refused_from(Ipv4Addr::LOCALHOST, &server).await;
    refused_from(OTHER_IP, &server).await;
    drop(a);
    let _c = eventually_admitted_from(Ipv4Addr::LOCALHOST, &server).await;
    refused_from(OTHER_IP, &server).await;
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

#[tokio::test]
async fn oversize_and_binary_frames_close_the_connection() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    // Under the 64 KiB limit: an error reply, the connection stays.
    let mut client = Client::connect(&server.url()).await.unwrap();
    client.send_text(&"x".repeat(60_000)).await.unwrap();
    match client.next().await.unwrap() {
        Event::Frame(ServerMessage::Error(_)) => {}
        other => panic!("expected an Error reply, got {other:?}"),
    }
    // Over it: 1009.
    let mut client = Client::connect(&server.url()).await.unwrap();
    client.send_text(&"x".repeat(70_000)).await.unwrap();
    assert_eq!(client.expect_close().await.unwrap(), Some(1009));
    // Binary: 1003.
    let mut client = Client::connect(&server.url()).await.unwrap();
    client.socket.send(Message::binary(vec![0u8; 16])).await.unwrap();
    assert_eq!(client.expect_close().await.unwrap(), Some(1003));
    // Others are not affected.
    join(&server).await;
}

#[tokio::test]
async fn silent_connections_time_out_with_4000() {
    let server = ServerProcess::start(&["--handshake-timeout", "1s"], &[]).await.unwrap();
    let mut client = Client::connect(&server.url()).await.unwrap();
    assert_eq!(client.expect_close().await.unwrap(), Some(4000));
    // An announced node is past the handshake and stays.
    let mut node = join(&server).await;
    node.expect_silence(Duration::from_secs(2)).await.unwrap();
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
