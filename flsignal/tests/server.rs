//! The handshake and the relay, each rule checked with real WebSocket
//! clients against a real server on a loopback port (what closes a
//! connection is in closes.rs, who is online in presence.rs).

mod common;

use std::time::Duration;

use common::TestServer;
use e2e::{Client, Event};
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;
use flproto::message::{ServerMessage, SetupMessage};

const FLEDGER: AnnounceAuth = AnnounceAuth::Fledger;

#[tokio::test]
async fn every_connection_gets_a_fresh_version_3_challenge() {
    let server = TestServer::start(&[]).await;
    let a = Client::connect(&server.url).await.unwrap();
    let b = Client::connect(&server.url).await.unwrap();
    assert_ne!(a.challenge, b.challenge);
}

/// The exact frames a fledger 0.10 node sends, in its order: Announce and
/// ListIDsRequest back to back, then an Offer and trickled candidates.
#[tokio::test]
async fn fledger_frames_register_and_relay() {
    let server = TestServer::start(&[]).await;
    let key_a = NodeKey::from_seed([1; 32]);
    let key_b = NodeKey::generate();
    let (mut b, _) = Client::join(&server.url, &key_b, &FLEDGER).await.unwrap();

    let mut a = Client::connect(&server.url).await.unwrap();
    let signature = hex(&key_a.sign(a.challenge.as_bytes()).0);
    let announce = format!(
        r#"{{"Announce":{{"version":3,"challenge":"{}","node_info":{{"NodeInfoV3":{{"name":"node-a","client":"libc","pubkey":"{}","modules":"STAT | RAND | GOSSIP | WEBPROXY | WEBPROXY_REQUESTS | DHT_ROUTER | DHT_STORAGE"}}}},"signature":"{signature}"}}}}"#,
        a.challenge,
        key_a.id()
    );
    a.send_text(&announce).await.unwrap();
    a.send_text(r#""ListIDsRequest""#).await.unwrap();
    assert_eq!(a.expect_registered().await.unwrap(), vec![key_b.id()]);
    assert_eq!(a.expect_list().await.unwrap(), vec![key_b.id()]);
    // The map form fledger also accepts.
    a.send_text(r#"{"ListIDsRequest":null}"#).await.unwrap();
    assert_eq!(a.expect_list().await.unwrap(), vec![key_b.id()]);

    // b hears of a's arrival as a fresh list (fledger nodes get no deltas).
    assert_eq!(b.expect_list().await.unwrap(), vec![key_a.id()]);

    let offer = format!(
        r#"{{"PeerSetup":{{"id_init":"{}","id_follow":"{}","message":{{"Offer":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}}}}}}"#,
        key_a.id(),
        key_b.id()
    );
    a.send_text(&offer).await.unwrap();
    assert_eq!(b.next_text().await.unwrap(), offer);
    let candidate = format!(
        r#"{{"PeerSetup":{{"id_init":"{}","id_follow":"{}","message":{{"IceCandidate":"candidate:506421950 1 udp 2130706431 10.99.0.1 37166 typ host"}}}}}}"#,
        key_a.id(),
        key_b.id()
    );
    b.send_text(&candidate).await.unwrap();
    assert_eq!(a.next_text().await.unwrap(), candidate);
    // NodeStats is accepted silently.
    a.send_text(&format!(
        r#"{{"NodeStats":[{{"id":"{}","version":"0.10.0","ping_ms":12,"ping_rx":3}}]}}"#,
        key_b.id()
    ))
    .await
    .unwrap();
    a.expect_silence(Duration::from_millis(300)).await.unwrap();
}

#[tokio::test]
async fn relay_is_verbatim_with_extension_fields() {
    let server = TestServer::start(&[]).await;
    let (ka, kb) = (NodeKey::generate(), NodeKey::generate());
    let bound = Client::bound_auth(&server.url);
    let (mut a, _) = Client::join(&server.url, &ka, &bound).await.unwrap();
    let (mut b, _) = Client::join(&server.url, &kb, &bound).await.unwrap();
    let _ = a.next().await.unwrap(); // news of b
                                     // Unusual spacing and unknown fields must survive byte for byte.
    let text = format!(
        r#"{{ "PeerSetup" : {{"id_init":"{}","id_follow":"{}","message":"Init","session":"s1","generation":2,"seq":9,"sig":"abc"}} }}"#,
        ka.id(),
        kb.id()
    );
    a.send_text(&text).await.unwrap();
    assert_eq!(b.next_text().await.unwrap(), text);
    // Long frames go out in fragments and arrive whole.
    let long = format!(
        r#"{{"PeerSetup":{{"id_init":"{}","id_follow":"{}","message":{{"Offer":"{}é"}}}}}}"#,
        ka.id(),
        kb.id(),
        "v".repeat(50_000)
    );
    a.send_text(&long).await.unwrap();
    assert_eq!(b.next_text().await.unwrap(), long);
    assert!(server.metric("flsignal_relayed_messages_total") >= 2.0);
}

/// Frames that queue up for one connection leave in batches (coalesced
/// writes, fragments of long frames among them): every one arrives whole,
/// byte-exact and in order.
#[tokio::test]
async fn queued_frames_arrive_whole_and_in_order() {
    let server = TestServer::start(&[
        "--outbound-queue",
        "1000",
        "--relay-share-frames",
        "1000",
        "--relay-share-bytes",
        "10000000",
        "--rate-per-second",
        "100000",
        "--rate-burst",
        "100000",
    ])
    .await;
    let (ka, kb) = (NodeKey::generate(), NodeKey::generate());
    let bound = Client::bound_auth(&server.url);
    let (mut a, _) = Client::join(&server.url, &ka, &bound).await.unwrap();
    let (mut b, _) = Client::join(&server.url, &kb, &bound).await.unwrap();
    let _ = a.next().await.unwrap(); // news of b
    let frames: Vec<String> = (0..400)
        .map(|n| {
            // Every seventh is long enough to go out in fragments.
            let sdp = if n % 7 == 0 {
                "v".repeat(3_000 + n)
            } else {
                format!("{n}")
            };
            format!(
                r#"{{"PeerSetup":{{"id_init":"{}","id_follow":"{}","message":{{"Offer":"{sdp}"}}}}}}"#,
                ka.id(),
                kb.id()
            )
        })
        .collect();
    // All sent before b reads anything, so they queue at the server.
    for frame in &frames {
        a.send_text(frame).await.unwrap();
    }
    for (n, frame) in frames.iter().enumerate() {
        assert_eq!(&b.next_text().await.unwrap(), frame, "frame {n}");
    }
}

#[tokio::test]
async fn bound_announce_and_policy() {
    let server = TestServer::start(&["--require-bound-auth"]).await;
    let key = NodeKey::generate();
    // Version 3 is refused when bound auth is required.
    let mut client = Client::connect(&server.url).await.unwrap();
    client.announce(&key, &FLEDGER).await.unwrap();
    assert!(client.expect_error().await.unwrap().contains("requires bound"));
    // Bound to another server: refused.
    client
        .announce(
            &key,
            &AnnounceAuth::Bound {
                server: "elsewhere.example:8765".into(),
            },
        )
        .await
        .unwrap();
    assert!(client.expect_error().await.unwrap().contains("not to this server"));
    // Bound to the name the client dialled: accepted.
    client.announce(&key, &Client::bound_auth(&server.url)).await.unwrap();
    client.expect_registered().await.unwrap();
}

#[tokio::test]
async fn configured_public_host_is_the_only_accepted_binding() {
    let server = TestServer::start(&["--public-host", "signal.example:443"]).await;
    let key = NodeKey::generate();
    let mut client = Client::connect(&server.url).await.unwrap();
    client.announce(&key, &Client::bound_auth(&server.url)).await.unwrap();
    assert!(client.expect_error().await.unwrap().contains("not to this server"));
    client
        .announce(
            &key,
            &AnnounceAuth::Bound {
                server: "signal.example:443".into(),
            },
        )
        .await
        .unwrap();
    client.expect_registered().await.unwrap();
}

#[tokio::test]
async fn hostile_announces_get_errors_and_cost_nothing_else() {
    let server = TestServer::start(&["--max-auth-failures", "100"]).await;
    let (mut neighbour, _) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    let mut client = Client::connect(&server.url).await.unwrap();
    let sig = "00".repeat(64);
    let challenge = client.challenge;
    let cases = [
        // Public keys of the wrong length.
        format!(
            r#"{{"Announce":{{"version":3,"challenge":"{challenge}","node_info":{{"NodeInfoV3":{{"name":"x","client":"c","pubkey":"{}","modules":""}}}},"signature":"{sig}"}}}}"#,
            "ab".repeat(31)
        ),
        format!(
            r#"{{"Announce":{{"version":3,"challenge":"{challenge}","node_info":{{"NodeInfoV3":{{"name":"x","client":"c","pubkey":"{}","modules":""}}}},"signature":"{sig}"}}}}"#,
            "ab".repeat(33)
        ),
        // Obsolete node info versions (NodeInfoV1 panics fledger's server).
        format!(
            r#"{{"Announce":{{"version":3,"challenge":"{challenge}","node_info":{{"NodeInfoV1":{{"name":"x"}}}},"signature":"{sig}"}}}}"#
        ),
        format!(
            r#"{{"Announce":{{"version":3,"challenge":"{challenge}","node_info":{{"NodeInfoV2":{{"pubkey":"AAAA"}}}},"signature":"{sig}"}}}}"#
        ),
        // A signature of the wrong length, and a wrong one.
        format!(
            r#"{{"Announce":{{"version":3,"challenge":"{challenge}","node_info":{{"NodeInfoV3":{{"name":"x","client":"c","pubkey":"{}","modules":""}}}},"signature":"abcd"}}}}"#,
            NodeKey::generate().id()
        ),
        format!(
            r#"{{"Announce":{{"version":3,"challenge":"{challenge}","node_info":{{"NodeInfoV3":{{"name":"x","client":"c","pubkey":"{}","modules":""}}}},"signature":"{sig}"}}}}"#,
            NodeKey::generate().id()
        ),
        // Unknown module flags, which would break fledger nodes' lists.
        format!(
            r#"{{"Announce":{{"version":3,"challenge":"{challenge}","node_info":{{"NodeInfoV3":{{"name":"x","client":"c","pubkey":"{}","modules":"EVIL"}}}},"signature":"{sig}"}}}}"#,
            NodeKey::generate().id()
        ),
        // Unknown version.
        format!(
            r#"{{"Announce":{{"version":9,"challenge":"{challenge}","node_info":{{"NodeInfoV3":{{"name":"x","client":"c","pubkey":"{}","modules":""}}}},"signature":"{sig}"}}}}"#,
            NodeKey::generate().id()
        ),
    ];
    for case in &cases {
        client.send_text(case).await.unwrap();
        let error = client.expect_error().await.unwrap();
        assert!(!error.is_empty(), "{case}");
    }
    // The neighbour is untouched and the hostile client may still log in.
    neighbour.send_text(r#""ListIDsRequest""#).await.unwrap();
    neighbour.expect_list().await.unwrap();
    client.announce(&NodeKey::generate(), &FLEDGER).await.unwrap();
    client.expect_registered().await.unwrap();
}

#[tokio::test]
async fn nothing_is_listed_or_relayed_before_announce() {
    let server = TestServer::start(&[]).await;
    let (target_key, other) = (NodeKey::generate(), NodeKey::generate().id());
    let (mut target, _) = Client::join(&server.url, &target_key, &FLEDGER).await.unwrap();
    let mut client = Client::connect(&server.url).await.unwrap();
    // fledger nodes send ListIDsRequest before their Announce: it gets no
    // list (and no error) until the node has announced.
    client.send_text(r#""ListIDsRequest""#).await.unwrap();
    client.expect_silence(Duration::from_millis(300)).await.unwrap();
    client
        .setup(other, target_key.id(), SetupMessage::Offer("x".into()))
        .await
        .unwrap();
    assert_eq!(client.expect_error().await.unwrap(), "announce first");
    target.expect_silence(Duration::from_millis(300)).await.unwrap();
    client.announce(&NodeKey::generate(), &FLEDGER).await.unwrap();
    assert_eq!(client.expect_registered().await.unwrap(), vec![target_key.id()]);
}

#[tokio::test]
async fn spoofed_senders_are_refused_and_nothing_is_delivered() {
    let server = TestServer::start(&[]).await;
    let (ka, kb, kc) = (NodeKey::generate(), NodeKey::generate(), NodeKey::generate());
    let (mut a, _) = Client::join(&server.url, &ka, &FLEDGER).await.unwrap();
    let (mut b, _) = Client::join(&server.url, &kb, &FLEDGER).await.unwrap();
    let (mut c, _) = Client::join(&server.url, &kc, &FLEDGER).await.unwrap();
    // Drain join news.
    for client in [&mut a, &mut b] {
        while client.next_within(Duration::from_millis(600)).await.unwrap().is_some() {}
    }
    // c pretends to be a talking to b.
    c.setup(ka.id(), kb.id(), SetupMessage::Offer("evil".into()))
        .await
        .unwrap();
    assert!(c
        .expect_error()
        .await
        .unwrap()
        .contains("neither id_init nor id_follow"));
    b.expect_silence(Duration::from_millis(300)).await.unwrap();
    a.expect_silence(Duration::from_millis(10)).await.unwrap();
    assert!(server.metric(r#"flsignal_refusals_total{reason="spoofed_sender"}"#) >= 1.0);
}

#[tokio::test]
async fn unknown_destinations_are_dropped_counted_and_told_to_bound_nodes() {
    let server = TestServer::start(&[]).await;
    let nobody = NodeKey::generate().id();
    let key = NodeKey::generate();
    let (mut bound, _) = Client::join(&server.url, &key, &Client::bound_auth(&server.url))
        .await
        .unwrap();
    bound.setup(key.id(), nobody, SetupMessage::Init).await.unwrap();
    assert_eq!(
        bound.next().await.unwrap(),
        Event::Frame(ServerMessage::NotConnected(nobody))
    );
    let key = NodeKey::generate();
    let (mut fledger, _) = Client::join(&server.url, &key, &FLEDGER).await.unwrap();
    fledger.setup(key.id(), nobody, SetupMessage::Init).await.unwrap();
    fledger.expect_silence(Duration::from_millis(300)).await.unwrap();
    assert!(server.metric(r#"flsignal_drops_total{reason="not_connected"}"#) >= 2.0);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
