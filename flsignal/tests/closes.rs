//! What closes a connection, and with which code: malformed and binary
//! frames, oversize messages, floods, repeated refused announces, slow
//! readers, silence, shutdown. Real WebSocket clients against a real
//! server on a loopback port.

mod common;

use std::time::Duration;

use common::TestServer;
use e2e::{Client, Event};
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;
use flproto::message::SetupMessage;

const FLEDGER: AnnounceAuth = AnnounceAuth::Fledger;

#[tokio::test]
async fn repeated_auth_failures_close_with_4001() {
    let server = TestServer::start(&[]).await;
    let mut client = Client::connect(&server.url).await.unwrap();
    let wrong = AnnounceAuth::Bound {
        server: "nope:1".into(),
    };
    let key = NodeKey::generate();
    for _ in 0..3 {
        client.announce(&key, &wrong).await.unwrap();
    }
    assert!(client.expect_error().await.is_ok());
    assert_eq!(client.expect_close().await.unwrap(), Some(4001));
    assert!(server.metric(r#"flsignal_handshakes_total{reason="wrong_server"}"#) >= 3.0);
}

#[tokio::test]
async fn malformed_json_gets_errors_then_a_close() {
    let server = TestServer::start(&["--max-protocol-errors", "3"]).await;
    let mut client = Client::connect(&server.url).await.unwrap();
    for junk in ["{", "[1,2", r#"{"Hello":1}"#] {
        client.send_text(junk).await.unwrap();
    }
    for _ in 0..3 {
        assert!(client.expect_error().await.unwrap().starts_with("malformed message"));
    }
    assert_eq!(client.expect_close().await.unwrap(), Some(4006));
}

#[tokio::test]
async fn binary_frames_close_with_1003() {
    let server = TestServer::start(&[]).await;
    let mut client = Client::connect(&server.url).await.unwrap();
    use futures_util::SinkExt;
    client
        .socket
        .send(e2e::tungstenite::Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(client.expect_close().await.unwrap(), Some(1003));
}

#[tokio::test]
async fn oversize_messages_close_with_1009_and_the_limit_is_configurable() {
    let server = TestServer::start(&["--max-message-size", "2048"]).await;
    let mut client = Client::connect(&server.url).await.unwrap();
    client.send_text(&format!("\"{}\"", "x".repeat(2100))).await.unwrap();
    assert_eq!(client.expect_close().await.unwrap(), Some(1009));
    // Just under the limit is only a malformed message.
    let mut client = Client::connect(&server.url).await.unwrap();
    client.send_text(&format!("\"{}\"", "x".repeat(2000))).await.unwrap();
    assert!(client.expect_error().await.unwrap().starts_with("malformed"));
}

#[tokio::test]
async fn floods_are_closed_by_the_rate_limit() {
    let server = TestServer::start(&["--rate-per-second", "5", "--rate-burst", "10"]).await;
    let (mut flooder, _) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    let (mut neighbour, _) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    for _ in 0..50 {
        if flooder.send_text(r#""ListIDsRequest""#).await.is_err() {
            break;
        }
    }
    assert_eq!(flooder.expect_close().await.unwrap(), Some(4003));
    neighbour.send_text(r#""ListIDsRequest""#).await.unwrap();
    neighbour.expect_list().await.unwrap();
}

#[tokio::test]
async fn a_slow_reader_is_dropped_and_stalls_nobody() {
    let server = TestServer::start(&[
        "--outbound-queue",
        "4",
        "--rate-per-second",
        "100000",
        "--rate-burst",
        "100000",
        "--write-timeout",
        "1s",
        // One sender's share of a queue must not be what stops it here.
        "--relay-share-frames",
        "100000",
        "--relay-share-bytes",
        "1000000000",
    ])
    .await;
    let (ks, kr, kf) = (NodeKey::generate(), NodeKey::generate(), NodeKey::generate());
    let (mut sender, _) = Client::join(&server.url, &ks, &FLEDGER).await.unwrap();
    // The slow reader announces, then never reads again.
    let (_slow, _) = Client::join(&server.url, &kr, &FLEDGER).await.unwrap();
    let (mut fast, _) = Client::join(&server.url, &kf, &FLEDGER).await.unwrap();
    let sdp = "a".repeat(60_000);
    let dropped = || server.metric(r#"flsignal_closes_total{reason="slow_reader"}"#) >= 1.0;
    // It is dropped once nothing could be written to it for the write
    // timeout; until then what does not fit its queue is dropped instead.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while !dropped() && tokio::time::Instant::now() < until {
        sender
            .setup(ks.id(), kr.id(), SetupMessage::Offer(sdp.clone()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(dropped());
    assert!(server.metric(r#"flsignal_drops_total{reason="slow_reader"}"#) >= 1.0);
    assert!(server.metric(r#"flsignal_drops_total{reason="queue_full"}"#) >= 1.0);
    // The sender was never held up and can still reach a reading node.
    sender.setup(ks.id(), kf.id(), SetupMessage::Init).await.unwrap();
    assert_eq!(fast.expect_setup().await.unwrap().id_init, ks.id());
}

#[tokio::test]
async fn pings_keep_live_nodes_and_silence_closes_with_4004() {
    let server = TestServer::start(&["--ping-interval", "200ms", "--idle-timeout", "1s"]).await;
    // A client that keeps reading answers pings (tungstenite pongs) and
    // stays; one that stops reading sends no pongs and is closed.
    let (mut live, _) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    let (mut silent, _) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    let keep_reading = async {
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Some(event) = live.next_within(until - tokio::time::Instant::now()).await.unwrap() {
            assert!(!matches!(event, Event::Closed(_)), "live client closed");
        }
    };
    tokio::join!(keep_reading, tokio::time::sleep(Duration::from_secs(2)));
    // The close frame (4004) may be lost to a reset when the client finally
    // answers the stale pings; the server's count says why it closed.
    let code = silent.expect_close().await.unwrap();
    assert!(matches!(code, Some(4004) | None), "{code:?}");
    assert!(server.metric(r#"flsignal_closes_total{reason="idle_timeout"}"#) >= 1.0);
    live.send_text(r#""ListIDsRequest""#).await.unwrap();
    live.expect_list().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_every_node_with_1001() {
    let server = TestServer::start(&[]).await;
    let (mut a, _) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    let mut b = Client::connect(&server.url).await.unwrap();
    server.stop().await;
    assert_eq!(a.expect_close().await.unwrap(), Some(1001));
    assert_eq!(b.expect_close().await.unwrap(), Some(1001));
}
