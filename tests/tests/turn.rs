//! flsignal's TURN service against the real binary over loopback: a node
//! gets a credential over signalling and relays with it; what is refused
//! (an expired credential, a wrong HMAC, a node over its cap, a forbidden
//! peer) is refused with the right code and counted in `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::turn_client::{Reply, TurnClient};
use e2e::{http_get, Client, ServerProcess};
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;
use flproto::message::TurnCredentials;
use flproto::turn_credentials::TurnSecret;
use tokio::net::UdpSocket;

const SECRET: &str = "turn e2e secret, long enough to be one";
/// The relay runs on loopback, which the peer policy refuses unless allowed.
const ALLOW_LOOPBACK: [&str; 2] = ["--turn-allow-peer", "127.0.0.1/32"];

fn secret_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{SECRET}\n")).unwrap();
    file
}

fn secret() -> TurnSecret {
    TurnSecret::from_file_contents(SECRET.as_bytes()).unwrap()
}

/// Joins `server` as a version-4 node and returns its TURN credential, if
/// one comes within `wait`.
async fn credentials_within(
    server: &ServerProcess,
    key: &NodeKey,
    wait: Duration,
) -> (Client, Option<TurnCredentials>) {
    let url = server.url();
    let (mut client, _) = Client::join(&url, key, &Client::bound_auth(&url)).await.unwrap();
    let credentials = client.expect_turn_credentials(wait).await.unwrap();
    (client, credentials)
}

async fn credentials_of(server: &ServerProcess, key: &NodeKey) -> (Client, Option<TurnCredentials>) {
    credentials_within(server, key, Duration::from_secs(5)).await
}

async fn turn_client(server: &ServerProcess, username: &str, password: &str) -> TurnClient {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    TurnClient::new(socket, turn_addr(server), username, password)
}

/// The TURN service shares the STUN socket by default.
fn turn_addr(server: &ServerProcess) -> SocketAddr {
    server.stun_addr.expect("the STUN socket")
}

/// The value of one line of `/metrics`, 0 if it is absent.
async fn metric(server: &ServerProcess, series: &str) -> f64 {
    let (_, body) = http_get(server.addr, "/metrics").await.unwrap();
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_node_gets_a_credential_and_relays_through_flsignals_turn() {
    let tcp_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp = format!("127.0.0.1:{tcp_port}");
    let server = ServerProcess::start(&[ALLOW_LOOPBACK[0], ALLOW_LOOPBACK[1], "--turn-tcp-listen", &tcp], &[])
        .await
        .unwrap();
    let key = NodeKey::generate();
    let (_signal, credentials) = credentials_of(&server, &key).await;
    let credentials = credentials.expect("a version-4 node gets a TURN credential");
    assert_eq!(credentials.port, turn_addr(&server).port());
    assert_eq!((credentials.tcp_port, credentials.tls_port), (Some(tcp_port), None));
    assert!(credentials.username.ends_with(&format!(":{}", key.id())));
    assert_eq!(credentials.ttl, 3600);

    let mut client = turn_client(&server, &credentials.username, &credentials.password).await;
    let relay = client.allocate().await.unwrap().expect("an allocation");
    assert_eq!(relay.ip().to_string(), "127.0.0.1");

    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let reply = client.ask(&client.requests.create_permission(peer_addr)).await.unwrap();
    assert_eq!(reply, Reply::Success { relayed: None });
    client
        .socket
        .send_to(&client.requests.send(peer_addr, b"through the relay"), client.server)
        .await
        .unwrap();
    let mut buffer = [0u8; 1500];
    let Ok(received) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buffer)).await else {
        let (_, metrics) = http_get(server.addr, "/metrics").await.unwrap();
        panic!("the peer does not hear the client:\n{metrics}");
    };
    let (len, from) = received.unwrap();
    assert_eq!((&buffer[..len], from), (&b"through the relay"[..], relay));
    peer.send_to(b"and back", relay).await.unwrap();
    assert_eq!(
        client.receive().await.unwrap(),
        Reply::Data {
            from: Some(peer_addr),
            data: b"and back".to_vec()
        }
    );

    assert_eq!(metric(&server, "flsignal_turn_allocations").await, 1.0);
    assert_eq!(metric(&server, "flsignal_turn_allocations_made_total").await, 1.0);
    assert_eq!(
        metric(&server, r#"flsignal_turn_relayed_bytes_total{direction="to_peer"}"#).await,
        17.0
    );
    // As sent: a Data indication (20-byte header, XOR-PEER-ADDRESS and
    // DATA attributes) around the 8 bytes.
    assert_eq!(
        metric(&server, r#"flsignal_turn_relayed_bytes_total{direction="to_client"}"#).await,
        44.0
    );
}

#[tokio::test]
async fn refused_credentials_caps_and_peers_are_answered_and_counted() {
    let file = secret_file();
    let path = file.path().to_str().unwrap();
    let server = ServerProcess::start(
        &[
            ALLOW_LOOPBACK[0],
            ALLOW_LOOPBACK[1],
            "--turn-secret-file",
            path,
            "--turn-max-allocations-per-node",
            "1",
        ],
        &[],
    )
    .await
    .unwrap();
    let key = NodeKey::generate();
    let (_signal, credentials) = credentials_of(&server, &key).await;
    let credentials = credentials.unwrap();
    // The server's credential is the one the shared secret gives.
    let now = credentials.username.split(':').next().unwrap().parse::<u64>().unwrap() - 3600;
    assert!(secret()
        .verify(&credentials.username, &credentials.password, now)
        .is_ok());

    let expired = secret().issue(&key.id(), now - 1);
    let mut client = turn_client(&server, &expired.username, &expired.password).await;
    assert_eq!(client.allocate().await.unwrap(), Err(401));

    let mut client = turn_client(&server, &credentials.username, "d3JvbmcgaG1hYw==").await;
    assert_eq!(client.allocate().await.unwrap(), Err(401));

    let mut first = turn_client(&server, &credentials.username, &credentials.password).await;
    first.allocate().await.unwrap().expect("the node's first allocation");
    let mut second = turn_client(&server, &credentials.username, &credentials.password).await;
    assert_eq!(second.allocate().await.unwrap(), Err(486));

    for peer in ["127.0.0.2:9", "10.1.1.1:9"] {
        let reply = first
            .ask(&first.requests.create_permission(peer.parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(reply.error_code(), Some(403), "{peer}");
    }

    let refusals = |reason: &str| format!(r#"flsignal_turn_refusals_total{{reason="{reason}"}}"#);
    assert_eq!(metric(&server, &refusals("expired")).await, 1.0);
    assert_eq!(metric(&server, &refusals("bad_password")).await, 1.0);
    assert_eq!(metric(&server, &refusals("node_allocation_cap")).await, 1.0);
    assert_eq!(metric(&server, &refusals("denied_peer")).await, 2.0);
    assert_eq!(metric(&server, "flsignal_turn_allocations").await, 1.0);
}

#[tokio::test]
async fn fledger_nodes_and_servers_without_turn_send_no_credentials() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    let url = server.url();
    let (mut fledger, _) = Client::join(&url, &NodeKey::generate(), &AnnounceAuth::Fledger)
        .await
        .unwrap();
    assert_eq!(
        fledger.expect_turn_credentials(Duration::from_secs(1)).await.unwrap(),
        None
    );

    let off = ServerProcess::start(&["--turn-listen", "off"], &[]).await.unwrap();
    let (_client, credentials) = credentials_within(&off, &NodeKey::generate(), Duration::from_secs(1)).await;
    assert_eq!(credentials, None);
}
