//! The datagram relay with real WebSocket clients against a real server on
//! a loopback port: who gets it, what is forwarded (readdressed, otherwise
//! byte for byte), and that every limit drops rather than disconnects and
//! never holds up signalling.

mod common;

use std::time::Duration;

use common::TestServer;
use e2e::{Client, Event};
use flproto::datagram_relay::frame::{Frame, FrameKind, HEADER_LEN};
use flproto::datagram_relay::{RelayAnswer, RelayGrant, DEFAULT_MAX_DATAGRAM, DEFAULT_NODE_RATE, RELAY_OFF};
use flproto::identity::NodeKey;
use flproto::message::{ServerMessage, SetupMessage};
use flproto::NodeId;

fn frame(kind: FrameKind, node: NodeId, payload: &[u8]) -> Vec<u8> {
    Frame { kind, node, payload }.encode()
}

fn datagram(to: NodeId, payload: &[u8]) -> Vec<u8> {
    frame(FrameKind::Datagram, to, payload)
}

async fn relaying(url: &str) -> (NodeKey, Client) {
    let key = NodeKey::generate();
    let (client, answer) = Client::join_relay(url, &key).await.unwrap();
    assert!(matches!(answer, RelayAnswer::Granted(_)), "{answer:?}");
    (key, client)
}

#[tokio::test]
async fn two_relaying_nodes_exchange_frames_readdressed_to_the_sender_and_otherwise_unchanged() {
    let server = TestServer::start(&[]).await;
    let a_key = NodeKey::generate();
    let (mut a, answer) = Client::join_relay(&server.url, &a_key).await.unwrap();
    assert_eq!(
        answer,
        RelayAnswer::Granted(RelayGrant {
            max_datagram: DEFAULT_MAX_DATAGRAM as u32,
            bytes_per_second: DEFAULT_NODE_RATE.per_second,
            burst: DEFAULT_NODE_RATE.burst,
        })
    );
    let (b_key, mut b) = relaying(&server.url).await;

    let packet: Vec<u8> = (0..=255u8).cycle().take(1400).collect();
    a.send_binary(datagram(b_key.id(), &packet)).await.unwrap();
    assert_eq!(b.next_binary().await.unwrap(), datagram(a_key.id(), &packet));
    for kind in [FrameKind::Ping, FrameKind::Pong, FrameKind::Datagram] {
        b.send_binary(frame(kind, a_key.id(), b"12345678")).await.unwrap();
        assert_eq!(a.next_binary().await.unwrap(), frame(kind, b_key.id(), b"12345678"));
    }
    let relayed = server.metric(r#"flsignal_datagrams_relayed_total{path="local"}"#);
    assert_eq!(relayed, 4.0);
    let bytes = server.metric("flsignal_datagram_bytes_relayed_total");
    assert_eq!(bytes, (HEADER_LEN * 4 + 1400 + 8 * 3) as f64);
    assert_eq!(server.metric("flsignal_datagram_relay_nodes"), 2.0);
}

#[tokio::test]
async fn frames_for_nodes_that_did_not_ask_are_dropped_and_their_binary_frames_close_them() {
    let server = TestServer::start(&[]).await;
    let (_, mut a) = relaying(&server.url).await;
    let c_key = NodeKey::generate();
    let (mut c, _) = Client::join(&server.url, &c_key, &Client::bound_auth(&server.url))
        .await
        .unwrap();
    a.send_binary(datagram(c_key.id(), b"x")).await.unwrap();
    a.send_binary(datagram(NodeKey::generate().id(), b"x")).await.unwrap();
    c.expect_silence(Duration::from_millis(300)).await.unwrap();
    assert_eq!(
        server.metric(r#"flsignal_datagram_drops_total{reason="not_relaying"}"#),
        1.0
    );
    assert_eq!(
        server.metric(r#"flsignal_datagram_drops_total{reason="not_connected"}"#),
        1.0
    );
    c.send_binary(datagram(NodeKey::generate().id(), b"x")).await.unwrap();
    assert_eq!(c.expect_close().await.unwrap(), Some(1003));
}

#[tokio::test]
async fn relay_off_tells_the_node_and_its_binary_frames_close_as_before() {
    let server = TestServer::start(&["--relay", "off"]).await;
    let key = NodeKey::generate();
    let (mut client, answer) = Client::join_relay(&server.url, &key).await.unwrap();
    assert_eq!(answer, RelayAnswer::Refused(RELAY_OFF.into()));
    assert!(server
        .metrics()
        .contains(r#"flsignal_datagram_relay_limit_bytes{limit="node_rate"} 0"#));
    client
        .send_binary(datagram(NodeKey::generate().id(), b"x"))
        .await
        .unwrap();
    assert_eq!(client.expect_close().await.unwrap(), Some(1003));
}

#[tokio::test]
async fn oversized_and_malformed_frames_are_dropped_and_the_sender_stays() {
    let server = TestServer::start(&["--relay-max-datagram", "1500"]).await;
    let (_, mut a) = relaying(&server.url).await;
    let (b_key, mut b) = relaying(&server.url).await;
    a.send_binary(datagram(b_key.id(), &[0; 1501])).await.unwrap();
    a.send_binary(vec![0; 20]).await.unwrap();
    a.send_binary(datagram(b_key.id(), &[7; 1500])).await.unwrap();
    assert_eq!(b.next_binary().await.unwrap()[HEADER_LEN..], [7; 1500]);
    assert_eq!(
        server.metric(r#"flsignal_datagram_drops_total{reason="too_large"}"#),
        1.0
    );
    assert_eq!(
        server.metric(r#"flsignal_datagram_drops_total{reason="malformed"}"#),
        1.0
    );
}

/// A node sends far above its bandwidth: it gets drops, not a close; its
/// setups still reach their node while it does; a third node relaying to
/// the same receiver loses nothing.
#[tokio::test]
async fn a_node_over_its_cap_gets_drops_while_its_setups_and_a_third_nodes_relay_pass() {
    let server = TestServer::start(&["--relay-node-bytes-per-second", "200000", "--relay-node-burst", "20000"]).await;
    let (flooder_key, mut flooder) = relaying(&server.url).await;
    let (third_key, mut third) = relaying(&server.url).await;
    let (receiver_key, mut receiver) = relaying(&server.url).await;
    let receiver_id = receiver_key.id();

    let flood = tokio::spawn(async move {
        for _ in 0..3_000 {
            flooder.send_binary(datagram(receiver_id, &[1; 1000])).await.unwrap();
        }
        flooder
            .setup(
                flooder_key.id(),
                receiver_id,
                SetupMessage::Offer("during the flood".into()),
            )
            .await
            .unwrap();
        flooder
    });
    // The third node relays a few frames at a walking pace meanwhile.
    let paced = tokio::spawn(async move {
        for n in 0..20u8 {
            third.send_binary(datagram(receiver_id, &[n; 100])).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        third
    });
    let (mut from_third, mut from_flooder, mut setup_seen) = (Vec::new(), 0, false);
    while from_third.len() < 20 || !setup_seen {
        match receiver.next().await.unwrap() {
            Event::Binary(bytes) => {
                let frame = Frame::parse(&bytes).unwrap();
                if frame.node == third_key.id() {
                    from_third.push(frame.payload[0]);
                } else {
                    from_flooder += 1;
                }
            }
            Event::Frame(ServerMessage::PeerSetup(setup)) => {
                assert_eq!(setup.message, SetupMessage::Offer("during the flood".into()));
                setup_seen = true;
            }
            Event::Closed(code) => panic!("the receiver was closed: {code:?}"),
            _ => {}
        }
    }
    assert_eq!(from_third, (0..20).collect::<Vec<u8>>(), "the third node lost nothing");
    let mut flooder = flood.await.unwrap();
    paced.await.unwrap();
    let dropped = server.metric(r#"flsignal_datagram_drops_total{reason="node_rate"}"#);
    assert!(dropped > 1000.0, "dropped {dropped}, passed {from_flooder}");
    assert!(from_flooder < 1500, "passed {from_flooder}");
    // Still connected, and still heard: a list request is answered.
    flooder.send_text(r#""ListIDsRequest""#).await.unwrap();
    loop {
        match flooder.next().await.unwrap() {
            Event::Frame(ServerMessage::ListIDsReply(_)) => break,
            Event::Closed(code) => panic!("the flooder was closed: {code:?}"),
            _ => {}
        }
    }
}

/// A receiver that does not read: its relay queue fills and relay frames
/// are dropped, while setups for it wait in their own queue and all
/// arrive once it reads.
#[tokio::test]
async fn a_full_relay_queue_drops_relay_frames_and_never_setups() {
    let server = TestServer::start(&[
        "--relay-queue",
        "16",
        "--relay-node-bytes-per-second",
        "100000000",
        "--relay-node-burst",
        "100000000",
    ])
    .await;
    let (a_key, mut a) = relaying(&server.url).await;
    let (b_key, mut b) = relaying(&server.url).await;
    // Until the socket buffers between server and b are full and the
    // relay queue overflows.
    let mut sent = 0;
    while server.metric(r#"flsignal_datagram_drops_total{reason="queue_full"}"#) < 100.0 {
        for _ in 0..200 {
            a.send_binary(datagram(b_key.id(), &[0; 2000])).await.unwrap();
        }
        sent += 200;
        assert!(sent < 200_000, "the relay queue never filled");
    }
    for n in 0..10 {
        a.setup(
            a_key.id(),
            b_key.id(),
            SetupMessage::IceCandidate(format!("candidate {n}")),
        )
        .await
        .unwrap();
    }
    let mut candidates = Vec::new();
    while candidates.len() < 10 {
        match b.next().await.unwrap() {
            Event::Frame(ServerMessage::PeerSetup(setup)) => candidates.push(setup.message),
            Event::Closed(code) => panic!("b was closed: {code:?}"),
            _ => {}
        }
    }
    let expected: Vec<_> = (0..10)
        .map(|n| SetupMessage::IceCandidate(format!("candidate {n}")))
        .collect();
    assert_eq!(candidates, expected);
    assert_eq!(server.metric(r#"flsignal_drops_total{reason="queue_full"}"#), 0.0);
}

/// A node whose socket takes little at a time (a small receive buffer),
/// announced and asking for the relay.
async fn slow_reader(url: &str, addr: std::net::SocketAddr) -> (NodeKey, Client) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut client = Client::connect_over(stream, url).await.unwrap();
    let key = NodeKey::generate();
    client
        .announce_asking(&key, &Client::bound_auth(url), true)
        .await
        .unwrap();
    (key, client)
}

/// Relay frames pour in faster than the receiver reads; a setup sent
/// after them reaches it behind only what its kernel already took and
/// what flsignal lets the kernel hold (`--unsent-limit`, 128 KiB), not
/// behind the megabytes a socket buffer grows to (without the limit,
/// ~2 500 frames of 1.4 KB on this machine; with it, ~300).
#[tokio::test]
async fn a_setup_overtakes_relay_frames_that_wait_for_a_slow_reader() {
    let server = TestServer::start(&[
        "--relay-node-bytes-per-second",
        "100000000",
        "--relay-node-burst",
        "100000000",
        "--relay-queue",
        "100000",
    ])
    .await;
    let (a_key, mut a) = relaying(&server.url).await;
    let (b_key, mut b) = slow_reader(&server.url, server.addr).await;
    for _ in 0..20_000 {
        a.send_binary(datagram(b_key.id(), &[0; 1400])).await.unwrap();
    }
    a.setup(a_key.id(), b_key.id(), SetupMessage::Init).await.unwrap();
    // b reads nothing until the setup waits in its queue, so what comes
    // before it is what the kernel held then, not a race with a's sending.
    let relayed = "flsignal_relayed_messages_total";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.metric(relayed) < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the setup was never relayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut before = 0;
    loop {
        match b.next().await.unwrap() {
            Event::Binary(_) => before += 1,
            Event::Frame(ServerMessage::PeerSetup(_)) => break,
            Event::Closed(code) => panic!("b was closed: {code:?}"),
            _ => {}
        }
    }
    assert!(
        before < 1_000,
        "{before} relay frames (1.4 KB each) arrived before the setup"
    );
}

/// Frames a paced sender sends per 10 ms tick.
async fn paced(mut client: Client, to: NodeId, per_tick: usize, ticks: u8, size: usize) -> Client {
    for tick in 0..ticks {
        for _ in 0..per_tick {
            client.send_binary(datagram(to, &vec![tick; size])).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client
}

/// Two strangers (4 000 full-size frames a second each) flood a node that
/// reads about 1 000 a second, so its relay queue is always full; its real
/// peer sends 100 small frames a second meanwhile. The flooders' frames
/// are dropped over their share, and most of the peer's reach the node.
/// (First come, first served, 4 of the peer's 200 arrived; with shares,
/// 188–192, the rest lost while the loaded machine stalled the reader
/// long enough, about 0.2 s, for the peer to reach its third of the
/// queue.)
#[tokio::test]
async fn a_peer_within_its_share_gets_through_a_full_relay_queue_that_strangers_flood() {
    let server = TestServer::start(&[
        "--relay-queue",
        "64",
        "--relay-node-bytes-per-second",
        "100000000",
        "--relay-node-burst",
        "100000000",
    ])
    .await;
    let (victim_key, mut victim) = slow_reader(&server.url, server.addr).await;
    let victim_id = victim_key.id();
    let (_, attacker_a) = relaying(&server.url).await;
    let (_, attacker_b) = relaying(&server.url).await;
    let (peer_key, peer) = relaying(&server.url).await;
    let (peer_ticks, peer_frames) = (200u8, 200);
    let flooders = [attacker_a, attacker_b].map(|attacker| tokio::spawn(paced(attacker, victim_id, 40, 250, 1400)));
    let honest = tokio::spawn(paced(peer, victim_id, 1, peer_ticks, 100));

    // The victim reads about a frame a millisecond until the flood is over
    // and what waited for it is drained.
    let (mut from_peer, mut from_flooders) = (0, 0);
    while let Some(event) = victim.next_within(Duration::from_secs(3)).await.unwrap() {
        match event {
            Event::Binary(bytes) => {
                if Frame::parse(&bytes).unwrap().node == peer_key.id() {
                    from_peer += 1;
                } else {
                    from_flooders += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Event::Closed(code) => panic!("the victim was closed: {code:?}"),
            _ => {}
        }
    }
    for flooder in flooders {
        flooder.await.unwrap();
    }
    honest.await.unwrap();
    let over_share = server.metric(r#"flsignal_datagram_drops_total{reason="over_share"}"#);
    eprintln!("{from_peer} of the peer's {peer_frames} frames arrived, {from_flooders} of the flooders', {over_share} dropped over their share");
    assert!(
        from_peer * 2 >= peer_frames,
        "{from_peer} of the peer's {peer_frames} frames arrived ({from_flooders} of the flooders', {over_share} dropped over their share)"
    );
    assert!(over_share > 1_000.0, "{over_share} dropped over their share");
}
