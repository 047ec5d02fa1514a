//! The hub as one instance of a cluster, without NATS: messages go in
//! through `apply_cluster_message`, what it would publish comes out of the
//! outgoing queue, and connections that lost are told to close. (The
//! decisions themselves are tested in `flproto::registry`.)

use std::time::{Duration, Instant};

use flproto::announce::VerifiedNode;
use flproto::close::CloseReason;
use flproto::cluster_message::{ClusterMessage, InstanceId, NodeEntry};
use flproto::cluster_presence::DEFAULT_MAX_CLOCK_SKEW;
use flproto::identity::NodeKey;
use flproto::node_info::NodeInfoV3;
use flproto::presence::PresenceConfig;
use flproto::registry::ClusterConfig;
use flproto::NodeInfo;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::hub::{Hub, Outgoing, PeerHandle};

const ME: InstanceId = InstanceId(1);
const OTHER: InstanceId = InstanceId(2);

fn hub() -> (Hub, mpsc::Receiver<Outgoing>) {
    let (outgoing, queued) = mpsc::channel(64);
    let cluster = ClusterConfig {
        instance: ME,
        expiry: Duration::from_secs(3),
        max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
    };
    let hub = Hub::clustered(PresenceConfig::default(), cluster, outgoing);
    (hub, queued)
}

fn node(key: &NodeKey) -> VerifiedNode {
    VerifiedNode {
        info: NodeInfoV3 {
            name: "n".into(),
            client: "test".into(),
            pubkey: key.id(),
            modules: String::new(),
            sealed_setup: None,
        },
        bound: true,
    }
}

fn entry(key: &NodeKey, at: u64) -> NodeEntry {
    let info = serde_json::to_string(&NodeInfo::NodeInfoV3(node(key).info)).unwrap();
    NodeEntry {
        node: key.id(),
        at,
        bound: true,
        info: RawValue::from_string(info).unwrap(),
    }
}

fn handle(conn: u64) -> (PeerHandle, flume::Receiver<crate::hub::Outbound>) {
    let (outbox, inbox) = flume::bounded(8);
    (PeerHandle::new(conn, outbox), inbox)
}

fn drain(queued: &mut mpsc::Receiver<Outgoing>) -> Vec<Outgoing> {
    let mut out = Vec::new();
    while let Ok(message) = queued.try_recv() {
        out.push(message);
    }
    out
}

#[test]
fn local_joins_and_leaves_are_announced() {
    let (hub, mut queued) = hub();
    let key = NodeKey::generate();
    let (handle, _inbox) = handle(1);
    hub.register(&node(&key), handle);
    let out = drain(&mut queued);
    assert!(
        matches!(&out[..], [Outgoing::Broadcast(ClusterMessage::Join { instance: ME, entry })] if entry.node == key.id())
    );
    // A connection that is not the current one leaves silently.
    hub.leave(&key.id(), 99);
    assert!(drain(&mut queued).is_empty());
    hub.leave(&key.id(), 1);
    let out = drain(&mut queued);
    assert!(
        matches!(&out[..], [Outgoing::Broadcast(ClusterMessage::Leave { instance: ME, node })] if *node == key.id())
    );
}

#[tokio::test]
async fn a_newer_connection_elsewhere_closes_ours() {
    let (hub, mut queued) = hub();
    let key = NodeKey::generate();
    let (handle, _inbox) = handle(1);
    let kill = handle.kill.clone();
    hub.register(&node(&key), handle);
    drain(&mut queued);
    let ours = hub.owner(&key.id()).unwrap().1;

    // An older claim changes nothing.
    hub.apply_cluster_message(
        ClusterMessage::Join {
            instance: OTHER,
            entry: entry(&key, ours - 1),
        },
        Instant::now(),
    );
    assert_eq!(hub.online(), 1);
    // A newer one takes the node; our connection is closed as replaced.
    hub.apply_cluster_message(
        ClusterMessage::Join {
            instance: OTHER,
            entry: entry(&key, ours + 1),
        },
        Instant::now(),
    );
    let reason = tokio::time::timeout(Duration::from_secs(1), kill.killed())
        .await
        .unwrap();
    assert_eq!(reason, CloseReason::Replaced);
    assert_eq!((hub.online(), hub.online_in_cluster()), (0, 1));
    // Its connection ending afterwards announces nothing.
    hub.leave(&key.id(), 1);
    assert!(drain(&mut queued).is_empty());
    assert_eq!(hub.online_in_cluster(), 1);
}

#[test]
fn hello_is_answered_with_a_snapshot_of_local_nodes() {
    let (hub, mut queued) = hub();
    let (local, remote) = (NodeKey::generate(), NodeKey::generate());
    let (handle, _inbox) = handle(1);
    hub.register(&node(&local), handle);
    let now = Instant::now();
    hub.apply_cluster_message(
        ClusterMessage::Join {
            instance: OTHER,
            entry: entry(&remote, 5),
        },
        now,
    );
    drain(&mut queued);
    hub.apply_cluster_message(ClusterMessage::Hello { instance: OTHER }, now);
    let out = drain(&mut queued);
    let [Outgoing::Direct(to, ClusterMessage::Snapshot { instance, nodes, last })] = &out[..] else {
        panic!("{out:?}");
    };
    assert_eq!((*to, *instance, *last), (OTHER, ME, true));
    assert_eq!(nodes.iter().map(|e| e.node).collect::<Vec<_>>(), vec![local.id()]);
}

#[test]
fn goodbye_expiry_and_snapshots_remove_remote_nodes() {
    let (hub, _queued) = hub();
    let (a, b, c) = (NodeKey::generate(), NodeKey::generate(), NodeKey::generate());
    let now = Instant::now();
    for key in [&a, &b] {
        let message = ClusterMessage::Join {
            instance: OTHER,
            entry: entry(key, 1),
        };
        hub.apply_cluster_message(message, now);
    }
    assert_eq!(hub.online_in_cluster(), 2);
    // A snapshot naming only b and c: a is gone, c is new.
    let snapshot = ClusterMessage::Snapshot {
        instance: OTHER,
        nodes: vec![entry(&b, 1), entry(&c, 1)],
        last: true,
    };
    hub.apply_cluster_message(snapshot, now);
    assert_eq!(hub.online_in_cluster(), 2);
    hub.apply_cluster_message(ClusterMessage::Goodbye { instance: OTHER }, now);
    assert_eq!(hub.online_in_cluster(), 0);

    hub.apply_cluster_message(
        ClusterMessage::Join {
            instance: OTHER,
            entry: entry(&a, 1),
        },
        now,
    );
    hub.expire_instances(now + Duration::from_secs(2));
    assert_eq!(hub.online_in_cluster(), 1);
    hub.expire_instances(now + Duration::from_secs(4));
    assert_eq!(hub.online_in_cluster(), 0);
}

#[test]
fn node_info_that_does_not_match_its_node_is_ignored() {
    let (hub, _queued) = hub();
    let (a, b) = (NodeKey::generate(), NodeKey::generate());
    let mut forged = entry(&a, 1);
    forged.node = b.id();
    hub.apply_cluster_message(
        ClusterMessage::Join {
            instance: OTHER,
            entry: forged,
        },
        Instant::now(),
    );
    assert_eq!(hub.online_in_cluster(), 0);
}

fn refused(hub: &Hub, reason: &'static str) -> u64 {
    hub.metrics
        .cluster_refused
        .get_or_create(&crate::metrics::Reason { reason })
        .get()
}

#[tokio::test]
async fn a_claim_from_the_future_is_refused_and_keeps_our_node() {
    let (hub, mut queued) = hub();
    let key = NodeKey::generate();
    let (handle, _inbox) = handle(1);
    let kill = handle.kill.clone();
    hub.register(&node(&key), handle);
    drain(&mut queued);
    for at in [u64::MAX, crate::hub::wall_clock_us() + 60_000_000] {
        hub.apply_cluster_message(
            ClusterMessage::Join {
                instance: OTHER,
                entry: entry(&key, at),
            },
            Instant::now(),
        );
    }
    assert_eq!((hub.online(), hub.online_in_cluster()), (1, 1));
    assert!(tokio::time::timeout(Duration::from_millis(50), kill.killed())
        .await
        .is_err());
    assert_eq!(refused(&hub, "future_at"), 2);
    // Within the allowance, a claim still wins as before.
    let soon = crate::hub::wall_clock_us() + 1_000_000;
    hub.apply_cluster_message(
        ClusterMessage::Join {
            instance: OTHER,
            entry: entry(&key, soon),
        },
        Instant::now(),
    );
    assert_eq!(hub.online(), 0);
}

#[test]
fn remote_node_info_is_shown_as_this_server_serialises_it() {
    let (hub, _queued) = hub();
    let (local, remote) = (NodeKey::generate(), NodeKey::generate());
    let (handle, _inbox) = handle(1);
    hub.register(&node(&local), handle);
    let padded = format!(
        r#"{{ "NodeInfoV3": {{"name":"n","client":"test","pubkey":"{}","modules":"","injected":"<script>"}} }}"#,
        remote.id()
    );
    let message = ClusterMessage::Join {
        instance: OTHER,
        entry: NodeEntry {
            node: remote.id(),
            at: 1,
            bound: true,
            info: RawValue::from_string(padded).unwrap(),
        },
    };
    hub.apply_cluster_message(message, Instant::now());
    let list = hub.node_list(&local.id()).unwrap();
    let canonical = NodeInfo::NodeInfoV3(node(&remote).info).to_json();
    assert!(list.contains(&canonical), "{list}");
    assert!(!list.contains("injected"), "{list}");
}

#[test]
fn remote_node_info_that_breaks_the_announce_rules_is_refused() {
    let (hub, _queued) = hub();
    let key = NodeKey::generate();
    let mut bad = entry(&key, 1);
    let info = NodeInfo::v3("n", "test", key.id(), "NOT_A_MODULE").to_json();
    bad.info = RawValue::from_string(info).unwrap();
    hub.apply_cluster_message(
        ClusterMessage::Join {
            instance: OTHER,
            entry: bad,
        },
        Instant::now(),
    );
    assert_eq!(hub.online_in_cluster(), 0);
    assert_eq!(refused(&hub, "bad_node_info"), 1);
}

#[test]
fn relays_from_the_cluster_are_delivered_only_between_their_sender_and_destination() {
    let (hub, _queued) = hub();
    let (ours, theirs, stranger) = (NodeKey::generate(), NodeKey::generate(), NodeKey::generate());
    let (handle, inbox) = handle(1);
    hub.register(&node(&ours), handle);
    let setup = |init: &NodeKey, follow: &NodeKey| {
        format!(
            r#"{{"PeerSetup":{{"id_init":"{}","id_follow":"{}","message":"Init"}}}}"#,
            init.id(),
            follow.id()
        )
    };
    let (to, from) = (ours.id(), theirs.id());
    // A sender that is no party of the setup, a setup between two others,
    // and something that is no setup at all: none reaches the node.
    hub.relay_from_cluster(&stranger.id(), &to, setup(&theirs, &ours).into());
    hub.relay_from_cluster(&from, &to, setup(&theirs, &stranger).into());
    hub.relay_from_cluster(&from, &to, r#"{"Error":"log in again"}"#.into());
    assert!(inbox.try_recv().is_err());
    assert_eq!(refused(&hub, "relay_wrong_sender"), 1);
    assert_eq!(refused(&hub, "relay_not_for_destination"), 1);
    assert_eq!(refused(&hub, "relay_not_setup"), 1);
    let genuine = setup(&theirs, &ours);
    hub.relay_from_cluster(&from, &to, genuine.clone().into());
    assert_eq!(inbox.try_recv().unwrap().text.as_str(), genuine);
}
