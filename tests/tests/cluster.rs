//! Three real `flsignal` processes clustered through a real `nats-server`
//! (Debian's package), started by each test on a free loopback port with
//! the documented configuration (docs/nats-cluster.conf: an NKey per
//! instance, subject permissions):
//! presence across instances, byte-exact relay between them, newest
//! connection wins cluster-wide, a killed instance, a NATS restart.
//!
//! Skips with a message when `nats-server` is missing, except under
//! `CI=true`, where that is a failure.

use std::collections::HashSet;
use std::time::Duration;

use e2e::cluster::{expect_news, healthz, join, wait_for, Cluster};
use e2e::{http_get, Event, PATIENCE};
use flproto::identity::NodeKey;
use flproto::message::{ServerMessage, SetupMessage};
use flproto::NodeId;

/// Time within which a killed instance must vanish from the others'
/// presence: the default expiry (3 s), a heartbeat and a news interval,
/// with room for a loaded machine.
const VANISH_WITHIN: Duration = Duration::from_secs(8);

fn setup_text(from: NodeId, to: NodeId, sdp: &str) -> String {
    // Our nodes' later protocol fields ride along; spacing as a sender
    // might have it. The relay must keep all of it, byte for byte.
    format!(
        r#"{{"PeerSetup":{{"id_init":"{from}","id_follow":"{to}","message":{{"Offer":"{sdp}"}},"session":"s-1", "seq":7}}}}"#
    )
}

#[tokio::test]
async fn presence_and_news_span_the_cluster() {
    let Some(cluster) = Cluster::start("presence_and_news_span_the_cluster", 3).await else {
        return;
    };
    let (a_key, b_key, c_key) = (NodeKey::generate(), NodeKey::generate(), NodeKey::generate());
    let (mut a, list) = join(&cluster.url(0), &a_key).await;
    assert!(list.is_empty());
    wait_for(&cluster.servers[1], "A visible on instance 2", |h| {
        h["cluster_nodes"] == 1
    })
    .await;

    let (mut b, list) = join(&cluster.url(1), &b_key).await;
    assert_eq!(
        list,
        vec![a_key.id()],
        "B, on instance 2, is told about A on instance 1"
    );
    expect_news(&mut a, b_key.id(), true, PATIENCE).await;

    wait_for(&cluster.servers[2], "A and B visible on instance 3", |h| {
        h["cluster_nodes"] == 2
    })
    .await;
    let (mut c, list) = join(&cluster.url(2), &c_key).await;
    let listed: HashSet<NodeId> = list.into_iter().collect();
    assert_eq!(listed, HashSet::from([a_key.id(), b_key.id()]));
    expect_news(&mut a, c_key.id(), true, PATIENCE).await;
    expect_news(&mut b, c_key.id(), true, PATIENCE).await;

    // A fresh list request on instance 1 covers the cluster too.
    a.send_text(r#""ListIDsRequest""#).await.unwrap();
    let list = loop {
        if let Event::Frame(ServerMessage::ListIDsReply(list)) = a.next().await.unwrap() {
            break e2e::ids_of(&list);
        }
    };
    assert_eq!(
        list.into_iter().collect::<HashSet<_>>(),
        HashSet::from([b_key.id(), c_key.id()])
    );

    // B leaves instance 2: A and C, elsewhere, hear it.
    b.close().await;
    expect_news(&mut a, b_key.id(), false, PATIENCE).await;
    expect_news(&mut c, b_key.id(), false, PATIENCE).await;
    for server in &cluster.servers {
        wait_for(server, "B gone everywhere", |h| h["cluster_nodes"] == 2).await;
    }
    let health = healthz(&cluster.servers[0]).await;
    assert_eq!(health["nats"], "up");
    assert_eq!(health["nodes"], 1, "nodes counts this instance's own: {health}");
}

#[tokio::test]
async fn relay_between_instances_is_byte_exact_and_once() {
    let Some(cluster) = Cluster::start("relay_between_instances_is_byte_exact_and_once", 3).await else {
        return;
    };
    let (a_key, b_key, c_key) = (NodeKey::generate(), NodeKey::generate(), NodeKey::generate());
    let (mut a, _) = join(&cluster.url(0), &a_key).await;
    let (mut b, _) = join(&cluster.url(1), &b_key).await;
    let (mut c, _) = join(&cluster.url(2), &c_key).await;
    for server in &cluster.servers {
        wait_for(server, "three nodes everywhere", |h| h["cluster_nodes"] == 3).await;
    }
    // Skip the join news before looking for relayed frames.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for client in [&mut a, &mut b, &mut c] {
        while client.next_within(Duration::from_millis(100)).await.unwrap().is_some() {}
    }

    let offer = setup_text(a_key.id(), b_key.id(), r"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n");
    a.send_text(&offer).await.unwrap();
    assert_eq!(b.next_text().await.unwrap(), offer, "relayed across instances verbatim");
    b.expect_silence(Duration::from_millis(500)).await.unwrap();
    c.expect_silence(Duration::from_millis(100)).await.unwrap();

    // And back, from instance 2 to instance 1.
    let answer = format!(
        r#"{{"PeerSetup":{{"id_init":"{}","id_follow":"{}","message":{{"Answer":"v=0\r\n"}}}}}}"#,
        a_key.id(),
        b_key.id()
    );
    b.send_text(&answer).await.unwrap();
    assert_eq!(a.next_text().await.unwrap(), answer);

    // The sender checks are the same as on one server: A cannot relay a
    // setup between B and C.
    a.setup(b_key.id(), c_key.id(), SetupMessage::Init).await.unwrap();
    let error = a.expect_error().await.unwrap();
    assert!(error.contains("neither id_init nor id_follow"), "{error}");
    b.expect_silence(Duration::from_millis(300)).await.unwrap();
    c.expect_silence(Duration::from_millis(100)).await.unwrap();

    // A node nobody holds: NotConnected, as on one server.
    let nobody = NodeKey::generate().id();
    a.setup(a_key.id(), nobody, SetupMessage::Init).await.unwrap();
    assert_eq!(
        a.next().await.unwrap(),
        Event::Frame(ServerMessage::NotConnected(nobody))
    );

    let (_, metrics) = http_get(cluster.servers[0].addr, "/metrics").await.unwrap();
    assert!(
        metrics.contains(r#"flsignal_cluster_relayed_messages_total{direction="out"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_newest_connection_wins_across_instances() {
    let Some(cluster) = Cluster::start("the_newest_connection_wins_across_instances", 3).await else {
        return;
    };
    let (key, peer_key) = (NodeKey::generate(), NodeKey::generate());
    let (mut old, _) = join(&cluster.url(0), &key).await;
    let (mut peer, _) = join(&cluster.url(2), &peer_key).await;
    wait_for(&cluster.servers[1], "the node visible on instance 2", |h| {
        h["cluster_nodes"] == 2
    })
    .await;

    // The same node announces on instance 2: the older connection, on
    // instance 1, is closed as it would be on one server.
    let (mut new, _) = join(&cluster.url(1), &key).await;
    assert_eq!(old.expect_close().await.unwrap(), Some(4002));
    for server in &cluster.servers {
        wait_for(server, "still two nodes", |h| h["cluster_nodes"] == 2).await;
    }
    wait_for(&cluster.servers[0], "instance 1 holds nothing", |h| h["nodes"] == 0).await;

    // Relays from instance 3 now reach the new connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while new.next_within(Duration::from_millis(100)).await.unwrap().is_some() {}
    let offer = setup_text(peer_key.id(), key.id(), "v=0");
    peer.send_text(&offer).await.unwrap();
    assert_eq!(new.next_text().await.unwrap(), offer);
}

#[tokio::test]
async fn a_killed_instance_vanishes_and_its_nodes_resume_elsewhere() {
    let Some(mut cluster) = Cluster::start("a_killed_instance_vanishes_and_its_nodes_resume_elsewhere", 3).await else {
        return;
    };
    let (a_key, c_key) = (NodeKey::generate(), NodeKey::generate());
    let (mut a, _) = join(&cluster.url(0), &a_key).await;
    let (_c, _) = join(&cluster.url(2), &c_key).await;
    expect_news(&mut a, c_key.id(), true, PATIENCE).await;

    // SIGKILL: no goodbye, no leaves; only the silence tells.
    let killed = cluster.servers.remove(2);
    killed.signal(9).unwrap();
    let started = std::time::Instant::now();
    expect_news(&mut a, c_key.id(), false, VANISH_WITHIN).await;
    eprintln!("killed instance's node vanished after {:?}", started.elapsed());
    for server in &cluster.servers {
        wait_for(server, "two instances left", |h| {
            h["instances"] == 2 && h["cluster_nodes"] == 1
        })
        .await;
    }

    // C reconnects to instance 2 (as a node does) and is reachable again.
    let (mut c, _) = join(&cluster.url(1), &c_key).await;
    expect_news(&mut a, c_key.id(), true, PATIENCE).await;
    let offer = setup_text(a_key.id(), c_key.id(), "v=0");
    a.send_text(&offer).await.unwrap();
    assert_eq!(c.next_text().await.unwrap(), offer);
}

#[tokio::test]
async fn instances_survive_a_nats_restart() {
    let Some(mut cluster) = Cluster::start("instances_survive_a_nats_restart", 3).await else {
        return;
    };
    let (a_key, a2_key, b_key) = (NodeKey::generate(), NodeKey::generate(), NodeKey::generate());
    let (mut a, _) = join(&cluster.url(0), &a_key).await;
    let (mut a2, _) = join(&cluster.url(0), &a2_key).await;
    let (mut b, _) = join(&cluster.url(1), &b_key).await;
    for server in &cluster.servers {
        wait_for(server, "three nodes everywhere", |h| h["cluster_nodes"] == 3).await;
    }

    cluster.nats.kill().await;
    for server in &cluster.servers {
        wait_for(server, "NATS reported down", |h| h["nats"] == "down").await;
    }
    let (_, metrics) = http_get(cluster.servers[0].addr, "/metrics").await.unwrap();
    assert!(metrics.contains("flsignal_cluster_up 0"), "{metrics}");
    // Local nodes are still served, and the others' nodes expire.
    wait_for(&cluster.servers[0], "remote nodes expired", |h| h["cluster_nodes"] == 2).await;
    while a2.next_within(Duration::from_millis(200)).await.unwrap().is_some() {}
    let local = setup_text(a_key.id(), a2_key.id(), "v=0");
    a.send_text(&local).await.unwrap();
    assert_eq!(a2.next_text().await.unwrap(), local);

    cluster.nats.restart().await.unwrap();
    for server in &cluster.servers {
        wait_for(server, "rejoined", |h| {
            h["nats"] == "up" && h["instances"] == 3 && h["cluster_nodes"] == 3
        })
        .await;
    }
    let (_, metrics) = http_get(cluster.servers[0].addr, "/metrics").await.unwrap();
    assert!(metrics.contains("flsignal_cluster_up 1"), "{metrics}");
    while b.next_within(Duration::from_millis(200)).await.unwrap().is_some() {}
    let offer = setup_text(a_key.id(), b_key.id(), "v=0");
    a.send_text(&offer).await.unwrap();
    assert_eq!(
        b.next_text().await.unwrap(),
        offer,
        "relay across instances works again"
    );
}
