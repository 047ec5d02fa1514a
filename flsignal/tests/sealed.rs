//! Sealed setup messages through a real server at its default limits: the
//! server relays them verbatim like any other setup, keeps refusing ones
//! whose sender is neither party, repeats a node's sealed-setup
//! advertisement in its node lists, and a burst of padded ones fits a
//! receiver's relay share.

mod common;

use std::time::Duration;

use common::TestServer;
use e2e::{Client, Event};
use flproto::announce::{sign_announce, AnnounceAuth};
use flproto::identity::NodeKey;
use flproto::message::{NodeMessage, PeerInfo, ServerMessage, SetupMessage};
use flproto::seal::{self, EphemeralSeed};
use flproto::setup_auth::{sign_with, SetupHeader, SetupSigner};
use flproto::setup_message::{Opens, SessionId};
use flproto::NodeInfo;

/// `messages` from `from` to `to`, each sealed and signed as flnode sends
/// them, as frames.
fn sealed_frames(from: &NodeKey, to: &NodeKey, messages: &[SetupMessage]) -> Vec<String> {
    let (id_init, id_follow) = if from.id() < to.id() {
        (from.id(), to.id())
    } else {
        (to.id(), from.id())
    };
    let mut signer = SetupSigner::new(SessionId::random(Opens::Sealed));
    let mut attempt = signer.next_generation(1_763_800_000_000);
    messages
        .iter()
        .map(|message| {
            let header = signer.next_header(from, &mut attempt, id_init, id_follow);
            let sealed = seal::seal(&to.id(), &header, message, EphemeralSeed(rand::random())).unwrap();
            NodeMessage::PeerSetup(sign_with(from, &header, sealed)).to_json()
        })
        .collect()
}

fn opened(info: &PeerInfo, receiver: &NodeKey) -> SetupMessage {
    let (sender, auth) = flproto::setup_auth::verify(info, &receiver.id()).unwrap();
    let SetupMessage::Sealed(text) = &info.message else {
        panic!("not sealed: {info:?}")
    };
    let secret = flproto::x25519::secret_of(receiver);
    seal::open(&secret, &SetupHeader::of(info, sender, &auth), text).unwrap()
}

/// A registered node whose join news has been read by `others`.
async fn joined(server: &TestServer, key: &NodeKey, others: &mut [&mut Client]) -> Client {
    let (client, _) = Client::join(&server.url, key, &Client::bound_auth(&server.url))
        .await
        .unwrap();
    for other in others.iter_mut() {
        while other.next_within(Duration::from_millis(600)).await.unwrap().is_some() {}
    }
    client
}

#[tokio::test]
async fn sealed_setups_are_relayed_verbatim_between_the_two_parties() {
    let server = TestServer::start(&[]).await;
    let (ka, kb) = (NodeKey::generate(), NodeKey::generate());
    let mut a = joined(&server, &ka, &mut []).await;
    let mut b = joined(&server, &kb, &mut [&mut a]).await;
    let offer = SetupMessage::Offer("v=0\r\na=fingerprint:sha-256 AB:CD\r\n".into());
    let frames = sealed_frames(&ka, &kb, std::slice::from_ref(&offer));
    a.send_text(&frames[0]).await.unwrap();
    let relayed = b.next_text().await.unwrap();
    assert_eq!(relayed, frames[0], "relayed byte for byte");
    let Ok(ServerMessage::PeerSetup(info)) = serde_json::from_str(&relayed) else {
        panic!("{relayed}")
    };
    assert_eq!(opened(&info, &kb), offer);
    // And back.
    let answer = sealed_frames(&kb, &ka, &[SetupMessage::Answer("v=0 answer".into())]);
    b.send_text(&answer[0]).await.unwrap();
    assert_eq!(a.next_text().await.unwrap(), answer[0]);
}

#[tokio::test]
async fn a_sealed_setup_whose_sender_is_neither_party_is_refused_and_not_delivered() {
    let server = TestServer::start(&[]).await;
    let (ka, kb, kc) = (NodeKey::generate(), NodeKey::generate(), NodeKey::generate());
    let mut a = joined(&server, &ka, &mut []).await;
    let mut b = joined(&server, &kb, &mut [&mut a]).await;
    let mut c = joined(&server, &kc, &mut [&mut a, &mut b]).await;
    // c relays a sealed message a made for b, as if it were a.
    let frames = sealed_frames(&ka, &kb, &[SetupMessage::Init]);
    c.send_text(&frames[0]).await.unwrap();
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
async fn the_sealed_setup_advertisement_is_repeated_in_node_lists() {
    let server = TestServer::start(&[]).await;
    let (ka, kb) = (NodeKey::generate(), NodeKey::generate());
    let mut a = Client::connect(&server.url).await.unwrap();
    let info = NodeInfo::v3("sealing", "flnode", ka.id(), "").advertising(Opens::Sealed);
    let announce = sign_announce(&ka, a.challenge, info, &Client::bound_auth(&server.url));
    a.send(&NodeMessage::Announce(announce)).await.unwrap();
    a.expect_registered().await.unwrap();
    // A fledger node gets it too, in the list it understands.
    let (mut b, _) = Client::join(&server.url, &kb, &AnnounceAuth::Fledger).await.unwrap();
    b.send_text(r#""ListIDsRequest""#).await.unwrap();
    let list = loop {
        match b.next().await.unwrap() {
            Event::Frame(ServerMessage::ListIDsReply(list)) if !list.is_empty() => break list,
            _ => continue,
        }
    };
    let NodeInfo::NodeInfoV3(listed) = &list[0] else {
        panic!("{list:?}")
    };
    assert_eq!(listed.pubkey, ka.id());
    assert_eq!(listed.opens(), Opens::Sealed);
}

/// As many padded sealed setups as one sender may have queued for one
/// receiver (an Offer and its candidates, all in the smallest size class),
/// sent while the receiver reads nothing: all of them arrive, in order,
/// and the sender gets no error.
#[tokio::test]
async fn a_burst_of_padded_sealed_setups_fits_the_relay_share_at_default_limits() {
    let server = TestServer::start(&[]).await;
    let (ka, kb) = (NodeKey::generate(), NodeKey::generate());
    let mut a = joined(&server, &ka, &mut []).await;
    let mut b = joined(&server, &kb, &mut [&mut a]).await;
    let (share, share_bytes) = flsignal_default_share();
    let mut messages = vec![SetupMessage::Offer("o".repeat(600))];
    messages.extend((1..share).map(|n| {
        SetupMessage::IceCandidate(format!(
            "candidate:{n} 1 udp 1677729535 203.0.113.{n} 5{n:04} typ srflx raddr 10.0.0.{n} rport 4{n:04}"
        ))
    }));
    let frames = sealed_frames(&ka, &kb, &messages);
    let sealed_len = |frame: &String| match serde_json::from_str(frame) {
        Ok(NodeMessage::PeerSetup(PeerInfo {
            message: SetupMessage::Sealed(text),
            ..
        })) => text.len(),
        _ => panic!("{frame}"),
    };
    assert!(
        frames.iter().all(|frame| sealed_len(frame) == sealed_len(&frames[0])),
        "one size class"
    );
    let total: usize = frames.iter().map(String::len).sum();
    eprintln!(
        "{} sealed frames of {} bytes, {total} in all",
        frames.len(),
        frames[0].len()
    );
    // Even if every one of them waited in the server's queue at once (a
    // receiver that reads slowly), they would fit the sender's share.
    assert!(total <= share_bytes, "{total} bytes over the {share_bytes}-byte share");
    for frame in &frames {
        a.send_text(frame).await.unwrap();
    }
    a.expect_silence(Duration::from_millis(300)).await.unwrap();
    for (n, frame) in frames.iter().enumerate() {
        assert_eq!(&b.next_text().await.unwrap(), frame, "frame {n}");
    }
    assert_eq!(server.metric(r#"flsignal_drops_total{reason="over_share"}"#), 0.0);
}

/// flsignal's default `--relay-share-frames` and `--relay-share-bytes`.
fn flsignal_default_share() -> (usize, usize) {
    use clap::Parser;
    let fairness = flsignal::Config::parse_from(["flsignal"]).fairness;
    (fairness.relay_share_frames, fairness.relay_share_bytes)
}
