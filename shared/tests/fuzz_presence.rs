//! Fuzz target for the presence registry under any sequence of joins,
//! takeovers, leaves, list requests and news ticks, with small limits so
//! that full views and capped fan-out are reached at once.
//!
//! The input is a script, one operation per line: `j<node><bound>` a node
//! joins here, `r<node><bound>` it joins on another cluster instance,
//! `q<node>` its current connection leaves, `s<node>` a connection it
//! already replaced leaves, `l<node>` it asks for a list, `d` news is sent.

mod fuzz_support;

use std::collections::{HashMap, HashSet};

use flproto::ids::NodeId;
use flproto::message::ServerMessage;
use flproto::node_info::NodeInfo;
use flproto::presence::{Presence, PresenceConfig};
use fuzz_support::{lines, CARGO_TEST_TIME};

const CONFIG: PresenceConfig = PresenceConfig {
    max_list_len: 3,
    join_fanout: 2,
    // Every drain may push a full list: the interval is the time-based
    // rule presence_tests covers; here it would only hide news.
    min_list_push_interval: std::time::Duration::ZERO,
};

/// Which connection of which node: a node's later connection is a new one.
type Handle = (u8, u32);

/// What the script knows of a member.
#[derive(Clone, Copy)]
struct Member {
    handle: Handle,
    remote: bool,
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

fn info_json(node: u8) -> Box<str> {
    serde_json::to_string(&NodeInfo::v3("n", "fuzz", id(node), ""))
        .expect("node info serialises")
        .into()
}

fn run_script(script: &[u8]) {
    let mut presence: Presence<Handle> = Presence::with_seed(CONFIG, 7);
    let mut members: HashMap<NodeId, Member> = HashMap::new();
    let mut connections = 0u32;
    for line in lines(script) {
        let Some((&op, arg)) = line.split_first() else {
            continue;
        };
        let node = arg.first().copied().unwrap_or(0) % 12;
        let bound = arg.get(1).is_some_and(|byte| byte % 2 == 1);
        match op {
            b'j' | b'r' => {
                connections += 1;
                let handle = (node, connections);
                let previous = members.get(&id(node)).map(|member| member.handle);
                let replaced = if op == b'j' {
                    let joined = presence.join(id(node), info_json(node), bound, handle);
                    check_list(&joined.node_list, node, &members);
                    joined.replaced
                } else {
                    presence.join_remote(id(node), info_json(node), bound, handle)
                };
                assert_eq!(replaced, previous, "a takeover hands back the old connection");
                let remote = op == b'r';
                members.insert(id(node), Member { handle, remote, bound });
            }
            b'q' | b's' => {
                let current = members.get(&id(node)).map(|member| member.handle);
                let stale = op == b's';
                let left = presence.leave_if(&id(node), |handle| !stale && Some(*handle) == current);
                assert_eq!(left, !stale && current.is_some());
                if left {
                    members.remove(&id(node));
                }
            }
            b'l' => {
                let list = presence.node_list(&id(node));
                let local = members.get(&id(node)).is_some_and(|member| !member.remote);
                assert_eq!(list.is_some(), local, "lists only for nodes connected here");
                if let Some(list) = list {
                    check_list(&list, node, &members);
                }
            }
            b'd' => check_news(presence.drain_news(std::time::Instant::now()), &members),
            _ => {}
        }
        assert_eq!(presence.len(), members.len());
        for (node, member) in &members {
            assert_eq!(presence.get(node), Some(&member.handle));
        }
    }
    check_news(presence.drain_news(std::time::Instant::now()), &members);
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
        assert_eq!(member.handle, (node, connection), "news to the current connection");
        assert!(!member.remote, "members on another instance get their news there");
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
