//! The fairness rules, each checked with real WebSocket clients against a
//! real server on a loopback port: a flood costs the flooder, not its
//! target; costly requests and announces have their own rates; churn does
//! not become a stream of full lists; an incomplete message times out.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::TestServer;
use e2e::tungstenite::protocol::frame::coding::{Data, OpCode};
use e2e::tungstenite::protocol::frame::Frame;
use e2e::tungstenite::Message;
use e2e::{Client, Event};
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;
use flproto::message::{ServerMessage, SetupMessage};
use flproto::NodeId;
use futures_util::SinkExt;

const FLEDGER: AnnounceAuth = AnnounceAuth::Fledger;

/// Per-connection rates out of the way, so that what is tested is the
/// rule at hand.
const UNLIMITED_RATE: [&str; 4] = ["--rate-per-second", "100000", "--rate-burst", "100000"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    UNLIMITED_RATE.iter().copied().chain(extra.iter().copied()).collect()
}

/// Reads `client` slowly until a setup from `from` with `Answer(marker)`
/// arrives; fails if the client is closed first.
async fn read_slowly_until(client: &mut Client, marker: &str, until: tokio::time::Instant) -> anyhow::Result<()> {
    while tokio::time::Instant::now() < until {
        match client.next_within(until - tokio::time::Instant::now()).await? {
            Some(Event::Frame(ServerMessage::PeerSetup(setup)))
                if setup.message == SetupMessage::Answer(marker.into()) =>
            {
                return Ok(());
            }
            Some(Event::Closed(code)) => anyhow::bail!("the victim was closed: {code:?}"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("{marker} did not arrive")
}

/// Each attacker sends large PeerSetups to `victim` as fast as it can
/// until it is cut off; each task ends with the attacker's close code.
fn flood(attackers: Vec<(NodeKey, Client)>, victim: NodeId) -> Vec<tokio::task::JoinHandle<Option<u16>>> {
    attackers
        .into_iter()
        .map(|(key, mut attacker)| {
            tokio::spawn(async move {
                let offer = SetupMessage::Offer("x".repeat(60_000));
                for _ in 0..2_000 {
                    if attacker.setup(key.id(), victim, offer.clone()).await.is_err() {
                        break;
                    }
                }
                attacker.expect_close().await.ok().flatten()
            })
        })
        .collect()
}

async fn join_attackers(url: &str, count: usize) -> Vec<(NodeKey, Client)> {
    let mut attackers = Vec::new();
    for _ in 0..count {
        let key = NodeKey::generate();
        let (attacker, _) = Client::join(url, &key, &FLEDGER).await.unwrap();
        attackers.push((key, attacker));
    }
    attackers
}

#[tokio::test]
async fn a_flooded_victim_stays_and_hears_its_friend_while_the_flooders_are_closed_with_4007() {
    let server = TestServer::start(&args(&["--outbound-queue", "32", "--relay-share-frames", "4"])).await;
    let victim_key = NodeKey::generate();
    let friend_key = NodeKey::generate();
    let (mut victim, _) = Client::join(&server.url, &victim_key, &FLEDGER).await.unwrap();
    let (mut friend, _) = Client::join(&server.url, &friend_key, &FLEDGER).await.unwrap();
    let attackers = join_attackers(&server.url, 4).await;
    let victim_id = victim_key.id();
    let floods = flood(attackers, victim_id);
    // During the flood.
    tokio::time::sleep(Duration::from_millis(200)).await;
    friend
        .setup(friend_key.id(), victim_id, SetupMessage::Answer("during".into()))
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    read_slowly_until(&mut victim, "during", until).await.unwrap();
    for flood in floods {
        let code = flood.await.unwrap();
        // The close frame may be lost to a reset: the attacker was still
        // sending when the server hung up. The server's count says why.
        assert!(matches!(code, Some(4007) | None), "{code:?}");
    }
    assert_eq!(server.metric(r#"flsignal_closes_total{reason="relay_abuse"}"#), 4.0);
    // After the flood.
    friend
        .setup(friend_key.id(), victim_id, SetupMessage::Answer("after".into()))
        .await
        .unwrap();
    read_slowly_until(&mut victim, "after", until).await.unwrap();
    assert!(server.metric(r#"flsignal_drops_total{reason="over_share"}"#) >= 4.0);
    assert!(server.metric(r#"flsignal_refusals_total{reason="relay_throttled"}"#) >= 1.0);
    assert_eq!(server.metric(r#"flsignal_closes_total{reason="slow_reader"}"#), 0.0);
    assert_eq!(server.shared.hub.online(), 2, "victim and friend are still online");
}

#[tokio::test]
async fn an_honest_offer_and_trickle_reach_a_victim_flooded_at_the_default_limits() {
    let server = TestServer::start(&args(&[])).await;
    let (victim_key, friend_key) = (NodeKey::generate(), NodeKey::generate());
    let (mut victim, _) = Client::join(&server.url, &victim_key, &FLEDGER).await.unwrap();
    let (mut friend, _) = Client::join(&server.url, &friend_key, &FLEDGER).await.unwrap();
    let floods = flood(join_attackers(&server.url, 4).await, victim_key.id());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // What a real node sends one peer: an Offer of several KB and a
    // trickle of candidates, all at once.
    let (me, peer) = (friend_key.id(), victim_key.id());
    friend
        .setup(me, peer, SetupMessage::Offer("v".repeat(8_000)))
        .await
        .unwrap();
    for n in 0..20 {
        let candidate = format!("candidate:{n} 1 udp 2130706431 10.0.0.{n} 4000{n} typ host");
        friend
            .setup(me, peer, SetupMessage::IceCandidate(candidate))
            .await
            .unwrap();
    }
    friend
        .setup(me, peer, SetupMessage::Answer("end".into()))
        .await
        .unwrap();
    let mut heard = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while heard < 22 {
        assert!(tokio::time::Instant::now() < until, "heard {heard} of 22");
        match victim.next_within(until - tokio::time::Instant::now()).await.unwrap() {
            Some(Event::Frame(ServerMessage::PeerSetup(setup))) if setup.id_init == me => heard += 1,
            Some(Event::Closed(code)) => panic!("the victim was closed: {code:?}"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for flood in floods {
        assert!(matches!(flood.await.unwrap(), Some(4007) | None));
    }
    assert_eq!(server.metric(r#"flsignal_closes_total{reason="relay_abuse"}"#), 4.0);
    // The friend was never refused (it may hear presence news).
    while let Some(event) = friend.next_within(Duration::from_millis(200)).await.unwrap() {
        assert!(
            !matches!(event, Event::Frame(ServerMessage::Error(_)) | Event::Closed(_)),
            "{event:?}"
        );
    }
}

#[tokio::test]
async fn a_full_queue_drops_the_frame_and_keeps_the_receiver() {
    let server = TestServer::start(&args(&[
        "--outbound-queue",
        "4",
        "--relay-share-frames",
        "100000",
        "--relay-share-bytes",
        "1000000000",
    ]))
    .await;
    let (ks, kr) = (NodeKey::generate(), NodeKey::generate());
    let (mut sender, _) = Client::join(&server.url, &ks, &FLEDGER).await.unwrap();
    let (mut receiver, _) = Client::join(&server.url, &kr, &FLEDGER).await.unwrap();
    let offer = SetupMessage::Offer("y".repeat(60_000));
    // The receiver reads nothing meanwhile, well within the write timeout.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.metric(r#"flsignal_drops_total{reason="queue_full"}"#) < 1.0 && tokio::time::Instant::now() < until {
        sender.setup(ks.id(), kr.id(), offer.clone()).await.unwrap();
    }
    assert!(server.metric(r#"flsignal_drops_total{reason="queue_full"}"#) >= 1.0);
    // It reads what did fit, then is still there for the next setup.
    while let Some(event) = receiver.next_within(Duration::from_millis(500)).await.unwrap() {
        assert!(!matches!(event, Event::Closed(_)), "{event:?}");
    }
    sender.setup(ks.id(), kr.id(), SetupMessage::Init).await.unwrap();
    assert_eq!(receiver.expect_setup().await.unwrap().message, SetupMessage::Init);
    assert_eq!(server.metric(r#"flsignal_closes_total{reason="slow_reader"}"#), 0.0);
}

#[tokio::test]
async fn list_requests_beyond_their_rate_are_refused_with_an_error() {
    let server = TestServer::start(&args(&["--list-rate-burst", "2", "--list-rate-per-second", "1"])).await;
    let (mut client, _) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    for _ in 0..5 {
        client.send_text(r#""ListIDsRequest""#).await.unwrap();
    }
    client.expect_list().await.unwrap();
    client.expect_list().await.unwrap();
    for _ in 0..3 {
        assert!(client
            .expect_error()
            .await
            .unwrap()
            .contains("ListIDsRequest too often"));
    }
    assert_eq!(
        server.metric(r#"flsignal_refusals_total{reason="list_rate_limited"}"#),
        3.0
    );
}

/// Joins from `source`; the close code if the server turned it down.
async fn join_from(url: &str, source: &str) -> Result<Client, Option<u16>> {
    let source: IpAddr = source.parse().unwrap();
    let mut client = Client::connect_from(url, source).await.unwrap();
    client.announce(&NodeKey::generate(), &FLEDGER).await.unwrap();
    match client.next().await.unwrap() {
        Event::Frame(ServerMessage::SystemConfig(_)) => Ok(client),
        Event::Frame(ServerMessage::Error(error)) => {
            assert!(error.contains("too many announces"), "{error}");
            Err(client.expect_close().await.unwrap())
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn announces_are_limited_per_source_address() {
    let server = TestServer::start(&["--announce-rate-burst", "3", "--announce-rate-per-second", "1"]).await;
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(join_from(&server.url, "127.0.0.2").await.expect("within the burst"));
    }
    assert_eq!(join_from(&server.url, "127.0.0.2").await.err(), Some(Some(4003)));
    kept.push(
        join_from(&server.url, "127.0.0.3")
            .await
            .expect("another source has its own rate"),
    );
    assert_eq!(
        server.metric(r#"flsignal_handshakes_total{reason="source_rate_limited"}"#),
        1.0
    );
    assert_eq!(server.shared.hub.online(), 4);
}

#[tokio::test]
async fn announces_over_ipv6_are_limited_per_source_too() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let server = TestServer::start(&[
        "--listen",
        "[::1]:0",
        "--announce-rate-burst",
        "1",
        "--announce-rate-per-second",
        "1",
    ])
    .await;
    let _kept = join_from(&server.url, "::1").await.expect("within the burst");
    assert_eq!(join_from(&server.url, "::1").await.err(), Some(Some(4003)));
    server.stop().await;
}

#[tokio::test]
async fn fledger_nodes_get_at_most_one_pushed_list_per_second_during_churn() {
    let server = TestServer::start(&["--presence-interval", "50ms"]).await;
    let (mut watcher, _) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    let churn = {
        let url = server.url.clone();
        tokio::spawn(async move {
            // 40 joins over two seconds, every one news for the watcher.
            let mut joined = Vec::new();
            for _ in 0..40 {
                joined.push(Client::join(&url, &NodeKey::generate(), &FLEDGER).await.unwrap().0);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            joined
        })
    };
    let mut pushed = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(2_500);
    while let Some(event) = watcher.next_within(until - tokio::time::Instant::now()).await.unwrap() {
        match event {
            Event::Frame(ServerMessage::ListIDsReply(_)) => pushed += 1,
            Event::Closed(code) => panic!("closed: {code:?}"),
            _ => {}
        }
    }
    let _joined = churn.await.unwrap();
    // Once a second over 2.5 s, plus one for where the seconds fall.
    assert!((1..=4).contains(&pushed), "{pushed} lists pushed");
}

#[tokio::test]
async fn an_incomplete_fragmented_message_is_closed_despite_pings() {
    let server = TestServer::start(&["--fragment-timeout", "1s"]).await;
    let (mut client, _) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    let first = Frame::message(&br#"{"PeerSetup":"#[..], OpCode::Data(Data::Text), false);
    client.socket.send(Message::Frame(first)).await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        assert!(tokio::time::Instant::now() < until, "still open");
        client.socket.send(Message::Ping(Default::default())).await.unwrap();
        if let Some(Event::Closed(code)) = client.next_within(Duration::from_millis(200)).await.unwrap() {
            break code;
        }
    };
    assert_eq!(code, Some(4008));
    assert_eq!(
        server.metric(r#"flsignal_closes_total{reason="fragment_timeout"}"#),
        1.0
    );
}
