//! The real `flsignal` binary's connection limits and timeouts, seen from
//! raw TCP and WebSocket connections: caps per IP and in total, idle and
//! half-sent connections, oversize and binary frames, silence.
//!
//! Every test starts its own server on 127.0.0.1:0 and asserts behaviour,
//! not speed: waits are bounded by [`PATIENCE`], never by tight timings.

mod process_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use e2e::tungstenite::Message;
use e2e::{http_get, Client, Event, ServerProcess, PATIENCE};
use flproto::message::ServerMessage;
use futures_util::{SinkExt, StreamExt};
use process_common::{expect_closed_by_server, join, series};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;

/// A second loopback address, to connect from another "IP" than 127.0.0.1.
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// How a WebSocket connection attempt ended.
enum Attempt {
    /// Upgraded and challenged: the server took it.
    Admitted(Box<Client>),
    /// Failed or closed before the challenge: the server turned it away.
    Refused(String),
}

/// A TCP connection to `addr` from `source` (a loopback address).
async fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    tokio::time::timeout(PATIENCE, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
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
                turn_credentials: None,
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
