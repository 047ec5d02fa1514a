//! The real `flsignal` binary in its own process: signals, environment,
//! file descriptors, raw TCP and plain HTTP — what only a process shows.

use std::time::Duration;

use e2e::{binary, http_get, Client, ServerProcess, PATIENCE};
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FLEDGER: AnnounceAuth = AnnounceAuth::Fledger;

#[tokio::test]
async fn sigterm_closes_every_node_with_1001_and_exits() {
    let mut server = ServerProcess::start(&["--drain-timeout", "2s"], &[]).await.unwrap();
    let (mut a, _) = Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
        .await
        .unwrap();
    let (mut b, _) = Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
        .await
        .unwrap();
    server.signal(15).unwrap();
    assert_eq!(a.expect_close().await.unwrap(), Some(1001));
    assert_eq!(b.expect_close().await.unwrap(), Some(1001));
    let status = tokio::time::timeout(PATIENCE, server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn environment_variables_configure_the_server() {
    let server = ServerProcess::start(
        &[],
        &[("FLSIGNAL_LISTEN", "127.0.0.1:0"), ("FLSIGNAL_MAX_LIST_LEN", "2")],
    )
    .await
    .unwrap();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(
            Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
                .await
                .unwrap(),
        );
    }
    let (_, list) = Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
}

/// Polls the process's open file descriptors until they are back to
/// `baseline` (plus a little slack for the runtime), or fails.
async fn fds_return_to(server: &ServerProcess, baseline: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let open = server.open_fds().unwrap();
        if open <= baseline + 2 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} fds open, baseline {baseline}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn connect_and_abort_cycles_leak_no_file_descriptors() {
    let args = ["--http-timeout", "1s", "--handshake-timeout", "1s"];
    let server = ServerProcess::start(&args, &[]).await.unwrap();
    // One full round first, so lazily opened descriptors are in the baseline.
    Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
        .await
        .unwrap()
        .0
        .close()
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = server.open_fds().unwrap();
    for _ in 0..200 {
        drop(TcpStream::connect(server.addr).await.unwrap());
    }
    for _ in 0..100 {
        drop(Client::connect(&server.url()).await.unwrap());
    }
    for _ in 0..50 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let _ = stream.write_all(b"\x16\x03\x01 garbage\r\n\r\n").await;
    }
    for _ in 0..50 {
        let (client, _) = Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
            .await
            .unwrap();
        drop(client);
    }
    fds_return_to(&server, baseline).await;
}

/// Reads until the server closes the connection; fails if it does not.
async fn expect_closed_by_server(stream: &mut TcpStream) {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await {
            Err(_) => panic!("the server kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_and_block_nobody() {
    let server = ServerProcess::start(&["--http-timeout", "1s"], &[]).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // While they hang, handshakes go on (fledger's server stalled here).
    Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
        .await
        .unwrap();
    expect_closed_by_server(&mut idle).await;
    expect_closed_by_server(&mut half).await;
}

#[tokio::test]
async fn plain_http_gets_http_answers() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    let (status, body) = http_get(server.addr, "/").await.unwrap();
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("flsignal"), "{body}");
    let (status, body) = http_get(server.addr, "/metrics").await.unwrap();
    assert!(status.contains("200"), "{status}");
    for name in [
        "flsignal_connections",
        "flsignal_handshakes",
        "flsignal_relay_latency_seconds",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }
    let (client, _) = Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
        .await
        .unwrap();
    let (status, body) = http_get(server.addr, "/healthz").await.unwrap();
    assert!(status.contains("200"), "{status}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["nodes"], 1);
    let (status, _) = http_get(server.addr, "/nowhere").await.unwrap();
    assert!(status.contains("404"), "{status}");
    client.close().await;
}

/// True if a WebSocket handshake on a fresh connection gets its challenge.
async fn can_connect(server: &ServerProcess) -> bool {
    Client::connect(&server.url()).await.is_ok()
}

#[tokio::test]
async fn connections_per_ip_are_capped() {
    let server = ServerProcess::start(&["--max-connections-per-ip", "3"], &[])
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect(&server.url()).await.unwrap());
    }
    assert!(!can_connect(&server).await);
    held.pop();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !can_connect(&server).await {
        assert!(tokio::time::Instant::now() < deadline, "slot not freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn total_connections_are_capped() {
    let server = ServerProcess::start(&["--max-connections", "2"], &[]).await.unwrap();
    let _a = Client::connect(&server.url()).await.unwrap();
    let _b = Client::connect(&server.url()).await.unwrap();
    assert!(!can_connect(&server).await);
}

#[tokio::test]
async fn bad_configuration_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    for (args, expected) in [
        (vec!["--listen", address.as_str()], "cannot listen on"),
        (
            vec!["--listen", "127.0.0.1:0", "--max-message-size", "10"],
            "--max-message-size",
        ),
    ] {
        let output = std::process::Command::new(binary("flsignal").unwrap())
            .args(&args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test]
async fn oversize_and_binary_frames_close_the_connection() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    let mut client = Client::connect(&server.url()).await.unwrap();
    client.send_text(&"x".repeat(70_000)).await.unwrap();
    assert_eq!(client.expect_close().await.unwrap(), Some(1009));
    let mut client = Client::connect(&server.url()).await.unwrap();
    use futures_util::SinkExt;
    client
        .socket
        .send(e2e::tungstenite::Message::binary(vec![0u8; 16]))
        .await
        .unwrap();
    assert_eq!(client.expect_close().await.unwrap(), Some(1003));
}

#[tokio::test]
async fn silent_connections_time_out_with_4000() {
    let server = ServerProcess::start(&["--handshake-timeout", "1s"], &[]).await.unwrap();
    let mut client = Client::connect(&server.url()).await.unwrap();
    assert_eq!(client.expect_close().await.unwrap(), Some(4000));
}

/// A few hundred nodes through the load generator, so that it cannot rot.
#[tokio::test]
async fn load_generator_smoke_run() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flload"))
        .args(["idle", "--url", &server.url(), "--nodes", "300", "--server-pid"])
        .arg(server.pid().to_string())
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
