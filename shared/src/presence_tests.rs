use proptest::prelude::*;

use super::*;
use crate::message::ServerMessage;
use crate::node_info::NodeInfo;

fn id(n: u32) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    NodeId(bytes)
}

fn info(n: u32) -> Box<str> {
    serde_json::to_string(&NodeInfo::v3(&format!("n{n}"), "test", id(n), ""))
        .unwrap()
        .into()
}

fn presence(max_list_len: usize, join_fanout: usize) -> Presence<u32> {
    Presence::with_seed(
        PresenceConfig {
            max_list_len,
            join_fanout,
        },
        7,
    )
}

fn join(p: &mut Presence<u32>, n: u32, bound: bool) -> String {
    p.join(id(n), info(n), bound, n).node_list
}

fn listed(frame: &str) -> Vec<NodeId> {
    match serde_json::from_str::<ServerMessage>(frame).unwrap() {
        ServerMessage::ListIDsReply(list) => list
            .into_iter()
            .map(|info| match info {
                NodeInfo::NodeInfoV3(v3) => v3.pubkey,
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

/// Every internal cross-reference agrees with its twin.
fn check_invariants(p: &Presence<u32>) {
    assert_eq!(p.all.len(), p.members.0.len());
    assert_eq!(p.by_id.len(), p.members.0.len());
    for (position, &slot) in p.all.iter().enumerate() {
        assert_eq!(p.members[slot].position, position);
    }
    for (slot, member) in &p.members.0 {
        let slot = slot as Slot;
        assert_eq!(p.by_id[&member.id], slot);
        assert!(member.view.len() <= p.config.max_list_len);
        let has_room = !member.remote && member.view.len() < p.config.max_list_len;
        assert_eq!(p.with_room.contains(&slot), has_room);
        assert!(!member.remote || (member.view.is_empty() && !member.news.queued));
        assert!(!member.view.contains(&slot));
        for &subject in &member.view {
            assert_eq!(p.members[subject].watchers.iter().filter(|&&w| w == slot).count(), 1);
        }
        for &watcher in &member.watchers {
            assert!(p.members[watcher].view.contains(&slot));
        }
        for &joined in &member.news.joined {
            assert!(member.view.contains(&joined));
        }
        // A stale entry may outlive a member that left; a queued member is
        // always listed.
        assert!(!member.news.queued || p.queued.contains(&slot));
    }
}

#[test]
fn a_small_network_sees_everyone_join_and_leave() {
    let mut p = presence(100, 256);
    assert!(listed(&join(&mut p, 1, false)).is_empty());
    assert_eq!(listed(&join(&mut p, 2, false)), vec![id(1)]);
    // Node 1 (fledger flavour) gets its updated view as a list.
    let news = p.drain_news();
    assert_eq!(news.len(), 1);
    assert_eq!(news[0].0, 1);
    assert_eq!(listed(&news[0].1), vec![id(2)]);
    assert!(p.drain_news().is_empty());

    // Node 3 is bound: it gets deltas.
    join(&mut p, 3, true);
    p.drain_news();
    join(&mut p, 4, false);
    let news = p.drain_news();
    let to_3 = news.iter().find(|(h, _)| *h == 3).unwrap();
    assert!(
        to_3.1.starts_with(r#"{"PresenceNews":{"joined":[{"NodeInfoV3""#),
        "{}",
        to_3.1
    );
    assert!(p.leave_if(&id(4), |&h| h == 4));
    let news = p.drain_news();
    assert_eq!(news.len(), 3, "every node that knew 4 hears it left");
    let to_3 = news.iter().find(|(h, _)| *h == 3).unwrap();
    let parsed: ServerMessage = serde_json::from_str(&to_3.1).unwrap();
    assert_eq!(
        parsed,
        ServerMessage::PresenceNews(crate::message::PresenceNews {
            joined: vec![],
            left: vec![id(4)]
        })
    );
    check_invariants(&p);
}

#[test]
fn a_join_and_leave_between_ticks_is_no_news() {
    let mut p = presence(100, 256);
    join(&mut p, 1, true);
    p.drain_news();
    join(&mut p, 2, false);
    p.leave_if(&id(2), |_| true);
    assert!(p.drain_news().is_empty());
    check_invariants(&p);
}

#[test]
fn a_replaced_connection_cannot_remove_its_successor() {
    let mut p = presence(100, 256);
    join(&mut p, 1, false);
    let joined = p.join(id(1), info(1), true, 99);
    assert_eq!(joined.replaced, Some(1));
    assert!(!p.leave_if(&id(1), |&h| h == 1));
    assert_eq!(p.get(&id(1)), Some(&99));
    assert!(p.leave_if(&id(1), |&h| h == 99));
    assert!(p.is_empty());
}

#[test]
fn lists_are_capped_random_samples() {
    let mut p = presence(10, 256);
    for n in 0..50 {
        join(&mut p, n, false);
    }
    let first = listed(&p.node_list(&id(0)).unwrap());
    assert_eq!(first.len(), 10);
    assert!(!first.contains(&id(0)));
    let second = listed(&p.node_list(&id(0)).unwrap());
    assert_ne!(first, second, "a new request draws a new sample");
    check_invariants(&p);
}

#[test]
fn a_join_storm_costs_o_n_times_list_len() {
    let (nodes, cap) = (2_000u32, 20usize);
    let mut p = presence(cap, 256);
    let mut bytes = 0usize;
    let mut frames = 0usize;
    for n in 0..nodes {
        bytes += join(&mut p, n, n % 2 == 0).len();
        frames += 1;
        if n % 100 == 0 {
            for (_, frame) in p.drain_news() {
                bytes += frame.len();
                frames += 1;
            }
        }
    }
    for (_, frame) in p.drain_news() {
        bytes += frame.len();
        frames += 1;
    }
    let per_entry = info(0).len() + 1;
    // Each node receives its initial list plus at most `cap` joins as news,
    // and one fledger list re-send carries at most `cap` entries.
    let bound = nodes as usize * per_entry * cap * 3;
    assert!(bytes < bound, "{bytes} bytes in {frames} frames, bound {bound}");
    check_invariants(&p);
}

#[derive(Debug, Clone)]
enum Op {
    Join(u32, bool),
    Leave(u32),
    List(u32),
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..40, any::<bool>()).prop_map(|(n, b)| Op::Join(n, b)),
        3 => (0u32..40).prop_map(Op::Leave),
        1 => (0u32..40).prop_map(Op::List),
        1 => Just(Op::Drain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any sequence of joins, leaves, list requests and ticks keeps every
    /// cross-reference consistent, and every frame parses as a server message.
    #[test]
    fn invariants_hold_under_random_operations(
        ops in proptest::collection::vec(op(), 1..200),
        cap in 1usize..6,
        fanout in 1usize..6,
    ) {
        let mut p = presence(cap, fanout);
        for op in ops {
            match op {
                Op::Join(n, bound) => { join(&mut p, n, bound); }
                Op::Leave(n) => { p.leave_if(&id(n), |_| true); }
                Op::List(n) => {
                    if let Some(frame) = p.node_list(&id(n)) {
                        prop_assert!(listed(&frame).len() <= cap);
                    }
                }
                Op::Drain => {
                    for (_, frame) in p.drain_news() {
                        prop_assert!(serde_json::from_str::<ServerMessage>(&frame).is_ok());
                    }
                }
            }
            check_invariants(&p);
        }
    }
}

#[test]
fn remote_members_are_listed_and_news_but_never_told() {
    let mut p = presence(100, 256);
    join(&mut p, 1, true);
    p.drain_news();
    // Node 2 is held by another server.
    assert!(p.join_remote(id(2), info(2), true, 2).is_none());
    let news = p.drain_news();
    assert_eq!(news.len(), 1, "only the local node hears of the join");
    assert_eq!(news[0].0, 1);
    let mut list = listed(&join(&mut p, 3, false));
    list.sort();
    assert_eq!(list, vec![id(1), id(2)], "remote nodes are in node lists");
    p.drain_news();
    check_invariants(&p);
    // It leaves: news to those who know it, and nothing sent to it.
    assert!(p.leave_if(&id(2), |&h| h == 2));
    let news = p.drain_news();
    assert!(news.iter().all(|(h, _)| *h != 2));
    assert_eq!(news.len(), 2);
    check_invariants(&p);
}

#[test]
fn a_node_moving_between_servers_keeps_its_place() {
    let mut p = presence(100, 256);
    join(&mut p, 1, true);
    join(&mut p, 2, true);
    p.drain_news();
    // 2 reconnected to another server: its handle changes, no news.
    assert_eq!(p.join_remote(id(2), info(2), true, 20), Some(2));
    assert!(p.drain_news().is_empty());
    check_invariants(&p);
    // And back here: it gets a view again.
    let joined = p.join(id(2), info(2), true, 2);
    assert_eq!(joined.replaced, Some(20));
    assert_eq!(listed(&joined.node_list), vec![id(1)]);
    assert!(p.drain_news().is_empty());
    check_invariants(&p);
    assert_eq!(p.members().filter(|(_, _, _, &h)| h == 2).count(), 1);
}

/// Found by the `presence` fuzz target: a connection that lost its node to
/// another server asked for a list before it closed, which gave the remote
/// member a view here, and with it news nobody would send.
#[test]
fn a_node_held_by_another_server_gets_no_list_here() {
    let mut p = presence(100, 256);
    join(&mut p, 1, true);
    join(&mut p, 3, true);
    assert_eq!(p.join_remote(id(2), info(2), true, 20), None);
    p.drain_news();
    assert_eq!(p.node_list(&id(2)), None);
    assert!(p.leave_if(&id(1), |&h| h == 1));
    assert!(
        p.drain_news().iter().all(|(h, _)| *h != 20),
        "no news for a remote member"
    );
    check_invariants(&p);
}
