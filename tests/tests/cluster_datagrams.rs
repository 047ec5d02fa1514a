//! The datagram relay across a cluster: real flsignal instances clustered
//! through a real nats-server under the documented permissions. A relay
//! frame between nodes on two instances arrives readdressed and otherwise
//! byte for byte; frames published straight to NATS with a leaked
//! instance key that no session would have let through never reach a
//! node.

use std::time::Duration;

use e2e::cluster::{healthz, wait_for, Cluster};
use e2e::{http_get, Client, ServerProcess, PATIENCE};
use flproto::datagram_relay::frame::{Frame, FrameKind};
use flproto::datagram_relay::RelayAnswer;
use flproto::identity::NodeKey;
use flproto::NodeId;

async fn metric(server: &ServerProcess, series: &str) -> f64 {
    let (_, body) = http_get(server.addr, "/metrics").await.unwrap();
    body.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn wait_for_metric(server: &ServerProcess, series: &str, count: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(server, series).await < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} did not reach {count} within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn datagram(node: NodeId, payload: &[u8]) -> Vec<u8> {
    Frame {
        kind: FrameKind::Datagram,
        node,
        payload,
    }
    .encode()
}

async fn relaying(url: &str) -> (NodeKey, Client) {
    let key = NodeKey::generate();
    let (client, answer) = Client::join_relay(url, &key).await.unwrap();
    assert!(matches!(answer, RelayAnswer::Granted(_)), "{answer:?}");
    (key, client)
}

#[tokio::test]
async fn datagrams_cross_instances_and_forged_ones_reach_nobody() {
    let Some(cluster) = Cluster::start("datagrams_cross_instances_and_forged_ones_reach_nobody", 2).await else {
        return;
    };
    let (a_key, mut a) = relaying(&cluster.url(0)).await;
    let (b_key, mut b) = relaying(&cluster.url(1)).await;
    let c_key = NodeKey::generate();
    let (_c, _) = e2e::cluster::join(&cluster.url(1), &c_key).await;
    for server in &cluster.servers {
        wait_for(server, "three nodes everywhere", |h| h["cluster_nodes"] == 3).await;
    }

    let packet: Vec<u8> = (0..1400).map(|n| n as u8).collect();
    a.send_binary(datagram(b_key.id(), &packet)).await.unwrap();
    assert_eq!(b.next_binary().await.unwrap(), datagram(a_key.id(), &packet));
    b.send_binary(datagram(a_key.id(), b"back")).await.unwrap();
    assert_eq!(a.next_binary().await.unwrap(), datagram(b_key.id(), b"back"));
    let out = r#"flsignal_datagrams_relayed_total{path="cluster_out"}"#;
    let into = r#"flsignal_datagrams_relayed_total{path="cluster_in"}"#;
    assert_eq!(metric(&cluster.servers[0], out).await, 1.0);
    assert_eq!(metric(&cluster.servers[1], into).await, 1.0);
    // C on instance 2 did not ask for the relay: dropped there.
    a.send_binary(datagram(c_key.id(), b"x")).await.unwrap();
    wait_for_metric(
        &cluster.servers[1],
        r#"flsignal_datagram_drops_total{reason="not_relaying"}"#,
        1.0,
    )
    .await;

    // Frames no session would have let through, straight to NATS.
    let forger = async_nats::ConnectOptions::new()
        .nkey(cluster.keys.seed(2).to_owned())
        .connect(cluster.nats.url())
        .await
        .unwrap();
    let instance = healthz(&cluster.servers[1]).await["instance"]
        .as_str()
        .unwrap()
        .to_owned();
    let subject = format!("flsignal.relay.{}.{instance}", b_key.id());
    let sent_by = |sender: NodeId| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Flsignal-Sender", sender.to_string().as_str());
        headers
    };
    let forgeries = [
        // Addressed to another node than the subject's.
        (Some(sent_by(a_key.id())), datagram(c_key.id(), b"x")),
        // Not a relay frame.
        (Some(sent_by(a_key.id())), vec![7; 10]),
        // Larger than any relay frame.
        (Some(sent_by(a_key.id())), datagram(b_key.id(), &vec![0; 60_000])),
        // From B to B.
        (Some(sent_by(b_key.id())), datagram(b_key.id(), b"x")),
        // No sender.
        (None, datagram(b_key.id(), b"x")),
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
    for reason in [
        "datagram_not_for_destination",
        "datagram_malformed",
        "datagram_too_large",
        "datagram_self_addressed",
        "datagram_no_sender",
    ] {
        let series = format!(r#"flsignal_cluster_refused_total{{reason="{reason}"}}"#);
        wait_for_metric(&cluster.servers[1], &series, 1.0).await;
    }
    // The first frame B gets is the genuine one, sent after the forgeries.
    a.send_binary(datagram(b_key.id(), b"genuine")).await.unwrap();
    assert_eq!(b.next_binary().await.unwrap(), datagram(a_key.id(), b"genuine"));
}
