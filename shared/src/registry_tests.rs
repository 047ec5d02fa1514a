use std::time::{Duration, Instant};

use super::*;
use crate::cluster_message::EntryError;
use crate::node_info::NodeInfoV3;
use crate::presence::tests::check_invariants;

pub(crate) const ME: InstanceId = InstanceId(1);
pub(crate) const OTHER: InstanceId = InstanceId(2);
pub(crate) const EXPIRY: Duration = Duration::from_secs(3);
pub(crate) const SKEW: Duration = Duration::from_secs(5);
/// Wall-clock microseconds at which the tests run.
const NOW_US: u64 = 1_000_000_000;

pub(crate) fn cluster() -> ClusterConfig {
    ClusterConfig {
        instance: ME,
        expiry: EXPIRY,
        max_clock_skew: SKEW,
    }
}

pub(crate) fn id(n: u32) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    NodeId(bytes)
}

pub(crate) fn node(n: u32) -> VerifiedNode {
    VerifiedNode {
        info: NodeInfoV3 {
            name: format!("n{n}"),
            client: "test".into(),
            pubkey: id(n),
            modules: String::new(),
            sealed_setup: None,
        },
        bound: true,
    }
}

pub(crate) fn entry(n: u32, at: u64) -> NodeEntry {
    entry_of(&node(n), &NodeInfoJson::of(&node(n).info), at)
}

fn clustered() -> Registry<u32> {
    Registry::with_seed(PresenceConfig::default(), Some(cluster()), 7)
}

fn join_elsewhere(registry: &mut Registry<u32>, n: u32, at: u64) -> Effects<u32> {
    let join = ClusterMessage::Join {
        instance: OTHER,
        entry: entry(n, at),
    };
    registry.apply(join, Instant::now(), NOW_US)
}

/// The `at` this instance announced for a registration.
fn announced_at(effects: &Effects<u32>) -> u64 {
    match &effects.publish[..] {
        [Publish::Broadcast(ClusterMessage::Join { instance: ME, entry })] => entry.at,
        other => panic!("not one Join: {other:?}"),
    }
}

fn check(registry: &Registry<u32>) {
    check_invariants(&registry.presence);
}

#[test]
fn a_node_registered_here_is_routed_to_its_connection_and_counted() {
    let mut registry = Registry::with_seed(PresenceConfig::default(), None, 7);
    let registered = registry.register(&node(1), 10, Instant::now(), NOW_US);
    assert_eq!(registered.node_list, r#"{"ListIDsReply":[]}"#);
    assert!(registered.effects.publish.is_empty(), "nothing to publish alone");
    assert_eq!(registry.route(&id(1)), Some(Route::Local(10)));
    assert_eq!((registry.len(), registry.local_len()), (1, 1));
    assert_eq!(registry.route(&id(2)), None);
    assert_eq!(registry.instances(), None);
    check(&registry);
}

#[test]
fn a_second_connection_of_a_node_replaces_the_first_which_cannot_remove_it() {
    let mut registry = clustered();
    registry.register(&node(1), 10, Instant::now(), NOW_US);
    let second = registry.register(&node(1), 11, Instant::now(), NOW_US + 1);
    assert_eq!(second.effects.replaced, vec![10]);
    assert_eq!(registry.local_len(), 1);
    let stale = registry.leave(&id(1), |&handle| handle == 10);
    assert!(stale.publish.is_empty(), "a replaced connection leaves silently");
    assert_eq!(registry.route(&id(1)), Some(Route::Local(11)));
    let left = registry.leave(&id(1), |&handle| handle == 11);
    assert!(matches!(
        &left.publish[..],
        [Publish::Broadcast(ClusterMessage::Leave { instance: ME, node })] if *node == id(1)
    ));
    assert_eq!((registry.len(), registry.local_len()), (0, 0));
    assert_eq!(registry.owner(&id(1)), None);
    check(&registry);
}

#[test]
fn a_newer_registration_elsewhere_takes_our_node_and_an_older_one_does_not() {
    let mut registry = clustered();
    let ours = announced_at(&registry.register(&node(1), 10, Instant::now(), NOW_US).effects);
    let older = join_elsewhere(&mut registry, 1, ours - 1);
    assert!(older.replaced.is_empty());
    assert_eq!(registry.route(&id(1)), Some(Route::Local(10)));
    let newer = join_elsewhere(&mut registry, 1, ours + 1);
    assert_eq!(newer.replaced, vec![10], "our connection lost");
    assert_eq!(registry.route(&id(1)), Some(Route::Remote(OTHER)));
    assert_eq!((registry.len(), registry.local_len()), (1, 0));
    // Our connection ending afterwards changes nothing and says nothing.
    assert!(registry.leave(&id(1), |&handle| handle == 10).publish.is_empty());
    assert_eq!(registry.len(), 1);
    check(&registry);
}

#[test]
fn a_local_registration_outranks_the_remote_one_it_displaces() {
    let mut registry = clustered();
    let far_ahead = NOW_US + 2_000_000;
    join_elsewhere(&mut registry, 1, far_ahead);
    let at = announced_at(&registry.register(&node(1), 10, Instant::now(), NOW_US).effects);
    assert!(at > far_ahead, "newer than what it displaced, whatever our clock says");
    assert_eq!(registry.owner(&id(1)), Some((ME, at)));
    assert_eq!(registry.local_len(), 1);
    check(&registry);
}

#[test]
fn entries_from_the_future_or_with_bad_info_are_refused_and_change_nothing() {
    let mut registry = clustered();
    registry.register(&node(1), 10, Instant::now(), NOW_US);
    let future = NOW_US + SKEW.as_micros() as u64 + 1;
    let effects = join_elsewhere(&mut registry, 1, future);
    assert_eq!(effects.refused, vec![(OTHER, EntryRefusal::FutureAt)]);
    assert_eq!(effects.refused[0].1.label(), "future_at");
    let mut forged = entry(2, NOW_US);
    forged.node = id(3);
    let effects = registry.apply(
        ClusterMessage::Join {
            instance: OTHER,
            entry: forged,
        },
        Instant::now(),
        NOW_US,
    );
    assert_eq!(
        effects.refused,
        vec![(OTHER, EntryRefusal::BadNodeInfo(EntryError::OtherNode))]
    );
    assert_eq!(effects.refused[0].1.label(), "bad_node_info");
    assert_eq!((registry.len(), registry.local_len()), (1, 1));
    assert_eq!(registry.route(&id(1)), Some(Route::Local(10)));
    check(&registry);
}

#[test]
fn remote_nodes_are_listed_here_but_get_no_list_or_news() {
    let mut registry = clustered();
    registry.register(&node(1), 10, Instant::now(), NOW_US);
    join_elsewhere(&mut registry, 2, NOW_US);
    assert!(registry
        .node_list(&id(1), Instant::now())
        .unwrap()
        .contains(&id(2).to_hex()));
    assert_eq!(registry.node_list(&id(2), Instant::now()), None);
    let news = registry.drain_news(Instant::now());
    assert!(news.iter().all(|(to, _, _)| *to == id(1)), "{news:?}");
    check(&registry);
}

#[test]
fn hello_is_answered_with_a_snapshot_of_local_nodes_in_chunks() {
    let mut registry = clustered();
    let count = 2 * SNAPSHOT_CHUNK as u32 + 50;
    for n in 0..count {
        registry.register(&node(n), n, Instant::now(), NOW_US);
    }
    join_elsewhere(&mut registry, 100_000, NOW_US);
    let effects = registry.apply(ClusterMessage::Hello { instance: OTHER }, Instant::now(), NOW_US);
    let mut named = Vec::new();
    let mut lasts = Vec::new();
    for publish in &effects.publish {
        let Publish::Direct(
            OTHER,
            ClusterMessage::Snapshot {
                instance: ME,
                nodes,
                last,
            },
        ) = publish
        else {
            panic!("{publish:?}");
        };
        assert!(nodes.len() <= SNAPSHOT_CHUNK);
        named.extend(nodes.iter().map(|entry| entry.node));
        lasts.push(*last);
    }
    assert_eq!(lasts, vec![false, false, true]);
    named.sort();
    let mut ours: Vec<NodeId> = (0..count).map(id).collect();
    ours.sort();
    assert_eq!(named, ours, "every local node, and only those");
}

#[test]
fn an_empty_instance_still_sends_one_last_snapshot() {
    let registry = clustered();
    let rejoin = registry.rejoin();
    assert!(matches!(
        &rejoin[..],
        [
            Publish::Broadcast(ClusterMessage::Hello { instance: ME }),
            Publish::Broadcast(ClusterMessage::Snapshot { instance: ME, nodes, last: true }),
        ] if nodes.is_empty()
    ));
}

#[test]
fn goodbye_expiry_and_snapshots_remove_remote_nodes() {
    let mut registry = clustered();
    let now = Instant::now();
    join_elsewhere(&mut registry, 1, NOW_US);
    join_elsewhere(&mut registry, 2, NOW_US);
    // A snapshot naming only 2 and 3: 1 is gone, 3 is new.
    let snapshot = ClusterMessage::Snapshot {
        instance: OTHER,
        nodes: vec![entry(2, NOW_US), entry(3, NOW_US)],
        last: true,
    };
    registry.apply(snapshot, now, NOW_US);
    assert_eq!(registry.route(&id(1)), None);
    assert_eq!(registry.len(), 2);
    registry.apply(ClusterMessage::Goodbye { instance: OTHER }, now, NOW_US);
    assert_eq!((registry.len(), registry.instances()), (0, Some(1)));
    join_elsewhere(&mut registry, 1, NOW_US);
    let seen = Instant::now();
    assert_eq!(registry.expire(seen + EXPIRY - Duration::from_millis(1)), 0);
    assert_eq!(registry.expire(seen + EXPIRY + Duration::from_secs(1)), 1);
    assert_eq!(registry.len(), 0);
    check(&registry);
}

#[test]
fn the_heartbeat_counts_local_nodes_and_a_disagreeing_one_asks_for_a_snapshot() {
    let mut registry = clustered();
    registry.register(&node(1), 10, Instant::now(), NOW_US);
    join_elsewhere(&mut registry, 2, NOW_US);
    assert!(matches!(
        registry.heartbeat(),
        Some(ClusterMessage::Heartbeat { instance: ME, nodes: 1 })
    ));
    let beat = |nodes| ClusterMessage::Heartbeat { instance: OTHER, nodes };
    let now = Instant::now();
    assert!(registry.apply(beat(1), now, NOW_US).publish.is_empty(), "agrees");
    assert!(
        registry.apply(beat(5), now, NOW_US).publish.is_empty(),
        "one may be in flight"
    );
    let asked = registry.apply(beat(5), now, NOW_US);
    assert!(matches!(
        &asked.publish[..],
        [Publish::Direct(OTHER, ClusterMessage::Hello { instance: ME })]
    ));
    assert!(matches!(
        registry.goodbye(),
        Some(ClusterMessage::Goodbye { instance: ME })
    ));
}

#[test]
fn our_own_messages_echoed_back_change_nothing() {
    let mut registry = clustered();
    registry.register(&node(1), 10, Instant::now(), NOW_US);
    let now = Instant::now();
    let effects = registry.apply(
        ClusterMessage::Leave {
            instance: ME,
            node: id(1),
        },
        now,
        NOW_US,
    );
    assert!(effects.publish.is_empty() && effects.replaced.is_empty());
    registry.apply(ClusterMessage::Goodbye { instance: ME }, now, NOW_US);
    assert_eq!(registry.route(&id(1)), Some(Route::Local(10)));
}
