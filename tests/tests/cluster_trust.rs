//! What a cluster does with forged messages published straight to NATS by
//! someone holding a leaked instance key (the documented permissions let
//! such a key publish on every cluster subject): a Join claiming a node
//! with a registration time from the far future does not evict the real
//! node, and relayed frames that are not a PeerSetup between their named
//! sender and destination never reach the node. Real nats-server, real
//! flsignal processes, loopback only.

use std::time::Duration;

use e2e::cluster::{healthz, join, wait_for, Cluster};
use e2e::{http_get, ServerProcess, PATIENCE};
use flproto::identity::NodeKey;
use flproto::{NodeId, NodeInfo};

/// The value of one `/metrics` series of `server` (0 when absent).
async fn metric(server: &ServerProcess, series: &str) -> f64 {
    let (_, body) = http_get(server.addr, "/metrics").await.unwrap();
    body.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Polls until `server` has counted `count` refusals for `reason`.
async fn wait_for_refusals(server: &ServerProcess, reason: &str, count: f64) {
    let series = format!(r#"flsignal_cluster_refused_total{{reason="{reason}"}}"#);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(server, &series).await < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} did not reach {count} within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn setup_text(init: NodeId, follow: NodeId) -> String {
    format!(r#"{{"PeerSetup":{{"id_init":"{init}","id_follow":"{follow}","message":{{"Offer":"v=0"}}}}}}"#)
}

#[tokio::test]
async fn forged_cluster_messages_neither_evict_a_node_nor_reach_one() {
    let Some(cluster) = Cluster::start("forged_cluster_messages_neither_evict_a_node_nor_reach_one", 2).await else {
        return;
    };
    let (a_key, b_key) = (NodeKey::generate(), NodeKey::generate());
    let (mut a, _) = join(&cluster.url(0), &a_key).await;
    let (mut b, _) = join(&cluster.url(1), &b_key).await;
    for server in &cluster.servers {
        wait_for(server, "both nodes everywhere", |h| h["cluster_nodes"] == 2).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for client in [&mut a, &mut b] {
        while client.next_within(Duration::from_millis(100)).await.unwrap().is_some() {}
    }
    let forger = async_nats::ConnectOptions::new()
        .nkey(cluster.keys.seed(2).to_owned())
        .connect(cluster.nats.url())
        .await
        .unwrap();

    // A claims on A "registered at the end of time" from an instance that
    // does not exist.
    let info = NodeInfo::v3("test-node", "e2e", a_key.id(), "STAT | PING").to_json();
    let forged_join = format!(
        r#"{{"Join":{{"instance":"00000000deadbeef","entry":{{"node":"{}","at":{},"bound":true,"info":{info}}}}}}}"#,
        a_key.id(),
        u64::MAX
    );
    forger.publish("flsignal.presence", forged_join.into()).await.unwrap();
    forger.flush().await.unwrap();
    for server in &cluster.servers {
        wait_for_refusals(server, "future_at", 1.0).await;
    }
    // A is still connected and still A's everywhere: B reaches it.
    a.expect_silence(Duration::from_millis(300)).await.unwrap();
    let to_a = setup_text(b_key.id(), a_key.id());
    b.send_text(&to_a).await.unwrap();
    assert_eq!(a.next_text().await.unwrap(), to_a);
    for server in &cluster.servers {
        let health = healthz(server).await;
        assert_eq!(health["cluster_nodes"], 2, "{health}");
    }

    // Relays to B on instance 2 that no session would have let through.
    let instance = healthz(&cluster.servers[1]).await["instance"]
        .as_str()
        .unwrap()
        .to_owned();
    let subject = format!("flsignal.node.{}.{instance}", b_key.id());
    let stranger = NodeKey::generate().id();
    let sent_by = |sender: NodeId| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Flsignal-Sender", sender.to_string().as_str());
        headers
    };
    let forgeries = [
        // The named sender is no party of the setup.
        (Some(sent_by(stranger)), setup_text(a_key.id(), b_key.id())),
        // Not a PeerSetup: an Error that would tell B to go away.
        (Some(sent_by(a_key.id())), r#"{"Error":"log in again"}"#.to_owned()),
        // No sender at all.
        (None, setup_text(a_key.id(), b_key.id())),
    ];
    for (headers, payload) in forgeries {
        match headers {
            Some(headers) => forger
                .publish_with_headers(subject.clone(), headers, payload.into())
                .await
                .unwrap(),
            None => forger.publish(subject.clone(), payload.into()).await.unwrap(),
        }
    }
    forger.flush().await.unwrap();
    let receiver = &cluster.servers[1];
    wait_for_refusals(receiver, "relay_wrong_sender", 1.0).await;
    wait_for_refusals(receiver, "relay_not_setup", 1.0).await;
    wait_for_refusals(receiver, "relay_no_sender", 1.0).await;
    // The first frame B gets is the genuine one, sent after the forgeries.
    let genuine = setup_text(a_key.id(), b_key.id());
    a.send_text(&genuine).await.unwrap();
    assert_eq!(b.next_text().await.unwrap(), genuine);
}
