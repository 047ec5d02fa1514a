//! `--trusted-proxy`: from those peers only, the client is whom a PROXY
//! header (v1 or v2) or `X-Forwarded-For` names, and that client is what
//! `--max-connections-per-ip` counts (IPv6 by `--ipv6-prefix-len`). From
//! anyone else both are ignored. Real clients over loopback: 127.0.0.1 is
//! the trusted proxy, 127.0.0.2 a stranger.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::TestServer;
use e2e::tls::{connect_wss_after, trusting, SelfSigned};
use e2e::tungstenite::client::IntoClientRequest;
use e2e::{Client, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;

/// A connection to `server` from `local` (an address on loopback).
async fn connect_from(local: &str, server: SocketAddr) -> TcpStream {
    let local: IpAddr = local.parse().unwrap();
    let socket = if local.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// A WebSocket client on `stream` after `preamble`, its upgrade request
/// carrying `forwarded_for` as X-Forwarded-For if given.
async fn websocket(
    mut stream: TcpStream,
    preamble: &[u8],
    server: SocketAddr,
    forwarded_for: Option<&str>,
) -> anyhow::Result<Client> {
    stream.write_all(preamble).await?;
    let url = format!("ws://{server}/");
    let mut request = url.as_str().into_client_request()?;
    if let Some(value) = forwarded_for {
        request.headers_mut().insert("x-forwarded-for", value.parse()?);
    }
    let (socket, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)),
    )
    .await??;
    Client::from_socket(socket, &url).await
}

fn proxy_v1(client: IpAddr, server: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    let local = if client.is_ipv4() { "127.0.0.1" } else { "::1" };
    format!("PROXY {family} {client} {local} 5555 {}\r\n", server.port()).into_bytes()
}

fn proxy_v2(client: IpAddr, server: SocketAddr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match client {
        IpAddr::V4(v4) => {
            header.extend([0x21, 0x11, 0, 12]);
            header.extend(v4.octets());
            header.extend([127, 0, 0, 1]);
        }
        IpAddr::V6(v6) => {
            header.extend([0x21, 0x21, 0, 36]);
            header.extend(v6.octets());
            header.extend(std::net::Ipv6Addr::LOCALHOST.octets());
        }
    }
    header.extend(5555u16.to_be_bytes());
    header.extend(server.port().to_be_bytes());
    header
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Waits until the server has refused `count` connections per IP.
async fn wait_for_per_ip_rejections(server: &TestServer, count: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.metric("flsignal_rejected_connections_total{reason=\"per_ip\"}") < count {
        assert!(tokio::time::Instant::now() < deadline, "{}", server.metrics());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With a per-IP cap of 2 and 127.0.0.1 trusted: two connections claiming
/// 203.0.113.7 get in, a third is refused, another address still gets in.
async fn claims_are_capped(header: fn(IpAddr, SocketAddr) -> Vec<u8>) {
    let server = TestServer::start(&["--trusted-proxy", "127.0.0.1", "--max-connections-per-ip", "2"]).await;
    let addr = server.addr;
    let claim = |client: &'static str| async move {
        let stream = connect_from("127.0.0.1", addr).await;
        websocket(stream, &header(ip(client), addr), addr, None).await
    };
    let _first = claim("203.0.113.7").await.unwrap();
    let second = claim("203.0.113.7").await.unwrap();
    assert!(
        claim("203.0.113.7").await.is_err(),
        "a third connection of 203.0.113.7 got in"
    );
    wait_for_per_ip_rejections(&server, 1.0).await;
    let _other = claim("203.0.113.8").await.unwrap();
    let _another = claim("203.0.113.8").await.unwrap();
    // A place freed is a place taken again.
    second.close().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while claim("203.0.113.7").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed connection's place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn proxy_protocol_v1_from_a_trusted_proxy_names_the_client_the_cap_counts() {
    claims_are_capped(proxy_v1).await;
}

#[tokio::test]
async fn proxy_protocol_v2_from_a_trusted_proxy_names_the_client_the_cap_counts() {
    claims_are_capped(proxy_v2).await;
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_names_the_client_the_cap_counts() {
    let server = TestServer::start(&["--trusted-proxy", "127.0.0.1", "--max-connections-per-ip", "2"]).await;
    let addr = server.addr;
    let forwarded = |value: &'static str| async move {
        let stream = connect_from("127.0.0.1", addr).await;
        websocket(stream, b"", addr, Some(value)).await
    };
    // The client wrote the left entry itself; the proxy appended the right one.
    let _first = forwarded("198.51.100.1, 203.0.113.7").await.unwrap();
    let _second = forwarded("203.0.113.7").await.unwrap();
    let Err(refused) = forwarded("198.51.100.2, 203.0.113.7").await else {
        panic!("a third connection of 203.0.113.7 got in");
    };
    let status = refused
        .downcast_ref::<e2e::tungstenite::Error>()
        .and_then(|error| match error {
            e2e::tungstenite::Error::Http(response) => Some(response.status().as_u16()),
            _ => None,
        });
    assert_eq!(status, Some(429), "{refused:#}");
    // Other clients of the same proxy, and the proxy itself, still get in.
    let _other = forwarded("203.0.113.8").await.unwrap();
    let _proxy_itself = websocket(connect_from("127.0.0.1", addr).await, b"", addr, None)
        .await
        .unwrap();
    assert_eq!(
        server.metric("flsignal_rejected_connections_total{reason=\"per_ip\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_peer_is_bad_http() {
    let server = TestServer::start(&["--trusted-proxy", "127.0.0.1"]).await;
    let mut stream = connect_from("127.0.0.2", server.addr).await;
    let request = format!(
        "{}GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        String::from_utf8(proxy_v1(ip("203.0.113.7"), server.addr)).unwrap(),
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .unwrap();
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 400"),
        "{response}"
    );
    let v2 = websocket(
        connect_from("127.0.0.2", server.addr).await,
        &proxy_v2(ip("203.0.113.7"), server.addr),
        server.addr,
        None,
    )
    .await;
    assert!(v2.is_err(), "a v2 header from a stranger was accepted");
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = TestServer::start(&["--trusted-proxy", "127.0.0.1", "--max-connections-per-ip", "2"]).await;
    let addr = server.addr;
    let from_stranger = |value: &'static str| async move {
        let stream = connect_from("127.0.0.2", addr).await;
        websocket(stream, b"", addr, Some(value)).await
    };
    let _first = from_stranger("203.0.113.1").await.unwrap();
    let _second = from_stranger("203.0.113.2").await.unwrap();
    // Counted as 127.0.0.2 whatever the header says.
    assert!(from_stranger("203.0.113.3").await.is_err());
    wait_for_per_ip_rejections(&server, 1.0).await;
}

#[tokio::test]
async fn a_bad_proxy_header_from_a_trusted_proxy_closes_the_connection() {
    let server = TestServer::start(&["--trusted-proxy", "127.0.0.1"]).await;
    let stream = connect_from("127.0.0.1", server.addr).await;
    let garbage = b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n";
    assert!(websocket(stream, garbage, server.addr, None).await.is_err());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.metric("flsignal_closes_total{reason=\"proxy_header\"}") < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "{}", server.metrics());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_proxy_header_may_come_before_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = SelfSigned::new();
    let (cert, key) = certificate.write(dir.path(), "server");
    let server = TestServer::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let port = server.addr.port();
    let config = trusting(&[&certificate]);
    let addr = server.addr;
    let claim = |client: &'static str| {
        let config = config.clone();
        async move { connect_wss_after(port, config, &proxy_v2(ip(client), addr)).await }
    };
    let _first = claim("203.0.113.7").await.unwrap();
    assert!(claim("203.0.113.7").await.is_err());
    let _other = claim("203.0.113.8").await.unwrap();
}

/// IPv6 clients count by prefix. Loopback has one IPv6 address, so the
/// addresses are a trusted proxy's claims; the proxy is [::1] when this
/// machine has it, and direct connections from [::1] are capped too.
#[tokio::test]
async fn ipv6_clients_count_by_their_prefix() {
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let (listen, proxy) = if ipv6 {
        ("[::1]:0", "::1")
    } else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI needs IPv6 loopback (::1)"
        );
        eprintln!("ipv6_clients_count_by_their_prefix: no ::1 here; the proxy is 127.0.0.1");
        ("127.0.0.1:0", "127.0.0.1")
    };
    let start = |prefix: &'static str| async move {
        let args = [
            "--listen",
            listen,
            "--trusted-proxy",
            proxy,
            "--max-connections-per-ip",
            "2",
            "--ipv6-prefix-len",
            prefix,
        ];
        TestServer::start(&args).await
    };
    let claim = |addr: SocketAddr, client: &'static str| async move {
        let stream = connect_from(proxy, addr).await;
        websocket(stream, &proxy_v1(ip(client), addr), addr, None).await
    };

    let by_64 = start("64").await;
    let _a = claim(by_64.addr, "2001:db8:1:2::1").await.unwrap();
    let _b = claim(by_64.addr, "2001:db8:1:2:ffff::2").await.unwrap();
    assert!(
        claim(by_64.addr, "2001:db8:1:2::3").await.is_err(),
        "a third address of one /64 got in"
    );
    let _c = claim(by_64.addr, "2001:db8:1:3::1").await.unwrap();

    let by_128 = start("128").await;
    let mut held = Vec::new();
    for client in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2::3",
        "2001:db8:1:2::3",
    ] {
        held.push(claim(by_128.addr, client).await.unwrap());
    }
    assert!(
        claim(by_128.addr, "2001:db8:1:2::3").await.is_err(),
        "one address got in three times"
    );

    if ipv6 {
        let direct = TestServer::start(&["--listen", "[::1]:0", "--max-connections-per-ip", "2"]).await;
        let _one = Client::connect(&direct.url).await.unwrap();
        let _two = Client::connect(&direct.url).await.unwrap();
        assert!(Client::connect(&direct.url).await.is_err());
        wait_for_per_ip_rejections(&direct, 1.0).await;
    }
}
