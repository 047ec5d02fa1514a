//! Who is online, as nodes see it: a newer connection of a node wins,
//! joins and leaves reach the others, lists are capped samples. Real
//! WebSocket clients against a real server on a loopback port.

mod common;

use std::time::Duration;

use common::TestServer;
use e2e::{Client, Event};
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;
use flproto::message::{PresenceNews, ServerMessage, SetupMessage};
use flproto::NodeId;

const FLEDGER: AnnounceAuth = AnnounceAuth::Fledger;

#[tokio::test]
async fn a_newer_connection_with_the_same_id_wins() {
    let server = TestServer::start(&[]).await;
    let key = NodeKey::generate();
    let (mut old, _) = Client::join(&server.url, &key, &FLEDGER).await.unwrap();
    let (mut new, _) = Client::join(&server.url, &key, &FLEDGER).await.unwrap();
    assert_eq!(old.expect_error().await.unwrap(), "New Connection with same ID");
    assert_eq!(old.expect_close().await.unwrap(), Some(4002));
    // The new one stays registered and reachable.
    let peer = NodeKey::generate();
    let (mut p, list) = Client::join(&server.url, &peer, &FLEDGER).await.unwrap();
    assert_eq!(list, vec![key.id()]);
    p.setup(peer.id(), key.id(), SetupMessage::Init).await.unwrap();
    assert_eq!(new.expect_setup().await.unwrap().id_init, peer.id());
}

#[tokio::test]
async fn joins_and_leaves_reach_others_within_two_seconds() {
    let server = TestServer::start(&[]).await;
    let (ka, kb, kc) = (NodeKey::generate(), NodeKey::generate(), NodeKey::generate());
    let (mut watcher, _) = Client::join(&server.url, &ka, &Client::bound_auth(&server.url))
        .await
        .unwrap();
    let (mut fledger, _) = Client::join(&server.url, &kb, &FLEDGER).await.unwrap();
    let joined = watcher.next().await.unwrap();
    let Event::Frame(ServerMessage::PresenceNews(news)) = joined else {
        panic!("{joined:?}")
    };
    assert_eq!(e2e::ids_of(&news.joined), vec![kb.id()]);
    let (leaver, _) = Client::join(&server.url, &kc, &FLEDGER).await.unwrap();
    let _ = watcher.next().await.unwrap();
    assert_eq!(fledger.expect_list().await.unwrap().len(), 2);
    leaver.close().await;
    let started = std::time::Instant::now();
    let left = watcher.next().await.unwrap();
    assert_eq!(
        left,
        Event::Frame(ServerMessage::PresenceNews(PresenceNews {
            joined: vec![],
            left: vec![kc.id()]
        }))
    );
    assert_eq!(fledger.expect_list().await.unwrap(), vec![ka.id()]);
    // Generous on a loaded machine; the news interval is 250 ms.
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn lists_are_capped_samples() {
    let server = TestServer::start(&["--max-list-len", "3"]).await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(
            Client::join(&server.url, &NodeKey::generate(), &FLEDGER)
                .await
                .unwrap()
                .0,
        );
    }
    let (mut last, list) = Client::join(&server.url, &NodeKey::generate(), &FLEDGER).await.unwrap();
    assert_eq!(list.len(), 3);
    last.send_text(r#""ListIDsRequest""#).await.unwrap();
    let again: Vec<NodeId> = last.expect_list().await.unwrap();
    assert_eq!(again.len(), 3);
}
