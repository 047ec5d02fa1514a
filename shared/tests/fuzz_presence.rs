//! Fuzz target for the node registry (presence, as one instance of a
//! cluster) under any sequence of joins, takeovers, leaves, list requests
//! and news ticks, with small limits so that full views and capped fan-out
//! are reached at once.
//!
//! The input is a script, one operation per line: `j<node><bound>` a node
//! joins here, `r<node><bound>` it joins on another cluster instance,
//! `q<node>` its current connection leaves (or its instance says it left),
//! `s<node>` a connection it already replaced leaves, `l<node>` it asks
//! for a list, `d` news is sent.

mod fuzz_support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use flproto::announce::VerifiedNode;
use flproto::cluster_message::{ClusterMessage, InstanceId, NodeEntry};
use flproto::ids::NodeId;
use flproto::message::ServerMessage;
use flproto::node_info::{NodeInfo, NodeInfoJson, NodeInfoV3};
use flproto::presence::PresenceConfig;
use flproto::registry::{ClusterConfig, Registry, Route};
use fuzz_support::{lines, CARGO_TEST_TIME};

const CONFIG: PresenceConfig = PresenceConfig {
    max_list_len: 3,
    join_fanout: 2,
    // Every drain may push a full list: the interval is the time-based
    // rule presence_tests covers; here it would only hide news.
    min_list_push_interval: Duration::ZERO,
};

const ME: InstanceId = InstanceId(1);
const OTHER: InstanceId = InstanceId(2);
const CLUSTER: ClusterConfig = ClusterConfig {
    instance: ME,
    expiry: Duration::from_secs(3),
    max_clock_skew: Duration::from_secs(5),
};

/// Which connection of which node: a node's later connection is a new one.
type Handle = (u8, u32);

/// What the script knows of a member: the connection holding it here, or
/// `None` when the other instance holds it.
#[derive(Clone, Copy)]
struct Member {
    handle: Option<Handle>,
    bound: bool,
}

#[test]
fn presence_lists_and_news_name_only_members_within_the_limits() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|script: &[u8]| run_script(script));
}

fn id(node: u8) -> NodeId {
    NodeId([node; 32])
}

fn info(node: u8) -> NodeInfoV3 {
    NodeInfoV3 {
        name: "n".into(),
        client: "fuzz".into(),
        pubkey: id(node),
        modules: String::new(),
        sealed_setup: None,
    }
}

fn run_script(script: &[u8]) {
    let mut registry: Registry<Handle> = Registry::with_seed(CONFIG, Some(CLUSTER), 7);
    let mut members: HashMap<NodeId, Member> = HashMap::new();
    let mut connections = 0u32;
    let now = Instant::now();
    // Wall-clock microseconds, on by more than one per line, so that each
    // registration is newer than the one it displaces.
    let mut now_us = 1_000u64;
    for line in lines(script) {
        now_us += 10;
        let Some((&op, arg)) = line.split_first() else {
            continue;
        };
        let node = arg.first().copied().unwrap_or(0) % 12;
        let bound = arg.get(1).is_some_and(|byte| byte % 2 == 1);
        let previous = members.get(&id(node)).copied();
        match op {
            b'j' => {
                connections += 1;
                let handle = (node, connections);
                let verified = VerifiedNode {
                    info: info(node),
                    bound,
                };
                let registered = registry.register(&verified, handle, now, now_us);
                check_list(&registered.node_list, node, &members);
                let replaced = registered.effects.replaced.first().copied();
                assert_eq!(
                    replaced,
                    previous.and_then(|m| m.handle),
                    "a takeover hands back the old connection"
                );
                members.insert(
                    id(node),
                    Member {
                        handle: Some(handle),
                        bound,
                    },
                );
            }
            b'r' => {
                let entry = NodeEntry {
                    node: id(node),
                    at: now_us,
                    bound,
                    info: NodeInfoJson::of(&info(node)).to_raw(),
                };
                let effects = registry.apply(ClusterMessage::Join { instance: OTHER, entry }, now, now_us);
                let replaced = effects.replaced.first().copied();
                assert_eq!(
                    replaced,
                    previous.and_then(|m| m.handle),
                    "a takeover hands back the old connection"
                );
                members.insert(id(node), Member { handle: None, bound });
            }
            b'q' | b's' => {
                let stale = op == b's';
                match previous {
                    Some(Member {
                        handle: Some(current), ..
                    }) => {
                        let effects = registry.leave(&id(node), |handle| !stale && *handle == current);
                        assert_eq!(
                            !effects.publish.is_empty(),
                            !stale,
                            "only the current connection leaves"
                        );
                        if !stale {
                            members.remove(&id(node));
                        }
                    }
                    Some(Member { handle: None, .. }) if !stale => {
                        registry.apply(
                            ClusterMessage::Leave {
                                instance: OTHER,
                                node: id(node),
                            },
                            now,
                            now_us,
                        );
                        members.remove(&id(node));
                    }
                    _ => {
                        let effects = registry.leave(&id(node), |_| !stale);
                        assert!(effects.publish.is_empty(), "no connection of ours held it");
                    }
                }
            }
            b'l' => {
                let list = registry.node_list(&id(node), now);
                let local = previous.is_some_and(|member| member.handle.is_some());
                assert_eq!(list.is_some(), local, "lists only for nodes connected here");
                if let Some(list) = list {
                    check_list(&list, node, &members);
                }
            }
            b'd' => check_news(registry.drain_news(now), &members),
            _ => {}
        }
        assert_eq!(registry.len(), members.len());
        let local = members.values().filter(|member| member.handle.is_some()).count();
        assert_eq!(registry.local_len(), local);
        for (node, member) in &members {
            let expected = match member.handle {
                Some(handle) => Route::Local(handle),
                None => Route::Remote(OTHER),
            };
            assert_eq!(registry.route(node), Some(expected));
        }
    }
    check_news(registry.drain_news(now), &members);
}

/// A node list names at most `max_list_len` other members, each once.
fn check_list(frame: &str, receiver: u8, members: &HashMap<NodeId, Member>) {
    let Ok(ServerMessage::ListIDsReply(list)) = serde_json::from_str::<ServerMessage>(frame) else {
        panic!("not a node list: {frame}");
    };
    assert!(list.len() <= CONFIG.max_list_len);
    let mut listed = HashSet::new();
    for info in &list {
        let NodeInfo::NodeInfoV3(info) = info else {
            panic!("listed an obsolete info");
        };
        assert_ne!(info.pubkey, id(receiver), "a node is not listed to itself");
        assert!(members.contains_key(&info.pubkey), "listed a node that is gone");
        assert!(listed.insert(info.pubkey), "listed twice");
    }
}

/// News goes once per tick to local members only, as a delta to those that
/// understand it and as a list to the others.
fn check_news(frames: Vec<(NodeId, Handle, String)>, members: &HashMap<NodeId, Member>) {
    let mut told = HashSet::new();
    for (to, (node, connection), frame) in frames {
        assert_eq!(to, id(node), "news names the node it is for");
        let member = members.get(&id(node)).expect("news only to members");
        // Members on another instance get their news there.
        assert_eq!(
            member.handle,
            Some((node, connection)),
            "news to the current connection"
        );
        assert!(told.insert(node), "one frame per member and tick");
        match serde_json::from_str::<ServerMessage>(&frame) {
            Ok(ServerMessage::ListIDsReply(_)) => check_list(&frame, node, members),
            Ok(ServerMessage::PresenceNews(news)) => {
                assert!(member.bound, "deltas only to nodes that speak them");
                assert!(news.joined.len() <= CONFIG.max_list_len);
                assert!(news.left.len() <= CONFIG.max_list_len);
                assert!(!news.joined.is_empty() || !news.left.is_empty(), "no empty news");
            }
            other => panic!("news frame {other:?}"),
        }
    }
}
