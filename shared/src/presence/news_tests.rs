//! News: what a node is told and when (deltas, whole views, the push
//! interval, news held for a node that is not ready).

use std::time::{Duration, Instant};

use crate::ids::NodeId;
use crate::message::ServerMessage;
use crate::node_info::NodeInfo;
use crate::presence::tests::{check_invariants, drain, id, info, join, later, listed, presence};
use crate::presence::{Presence, PresenceConfig};

#[test]
fn a_join_and_leave_between_ticks_is_no_news() {
    let mut p = presence(100, 256);
    join(&mut p, 1, true);
    drain(&mut p, Instant::now());
    join(&mut p, 2, false);
    p.leave_if(&id(2), |_| true);
    assert!(drain(&mut p, Instant::now()).is_empty());
    check_invariants(&p);
}

#[test]
fn fledger_nodes_get_a_full_list_at_most_once_per_interval() {
    let config = PresenceConfig {
        min_list_push_interval: Duration::from_secs(1),
        ..PresenceConfig::default()
    };
    let mut p = Presence::with_seed(config, 7);
    join(&mut p, 0, false);
    join(&mut p, 1, true);
    let start = Instant::now();
    let mut pushes_to_0 = 0;
    let mut deltas_to_1 = 0;
    // 40 joins over two seconds, drained every 50 ms.
    for step in 0..40u32 {
        join(&mut p, 100 + step, step % 2 == 0);
        let now = start + Duration::from_millis(u64::from(step) * 50);
        for (to, _) in drain(&mut p, now) {
            match to {
                0 => pushes_to_0 += 1,
                1 => deltas_to_1 += 1,
                _ => {}
            }
        }
    }
    assert!((1..=2).contains(&pushes_to_0), "{pushes_to_0} lists in 2 s");
    assert!(deltas_to_1 >= 20, "bound nodes still get every delta: {deltas_to_1}");
    // News that has to wait is not lost: it goes out once the interval passed.
    let last = start + Duration::from_millis(1950);
    join(&mut p, 200, false);
    assert!(drain(&mut p, last).iter().all(|(to, _)| *to != 0));
    let news = drain(&mut p, last + Duration::from_secs(1));
    let list = news.iter().find(|(to, _)| *to == 0).map(|(_, frame)| listed(frame));
    assert_eq!(list.map(|ids| ids.contains(&id(200))), Some(true));
}

#[test]
fn a_node_whose_news_was_lost_gets_its_whole_view_next() {
    let mut p = presence(10, 10);
    join(&mut p, 1, true);
    join(&mut p, 2, true);
    drain(&mut p, Instant::now());
    p.resync(&id(1));
    let news = drain(&mut p, Instant::now());
    assert_eq!(news.len(), 1);
    assert_eq!(listed(&news[0].1), vec![id(2)]);
    p.resync(&id(99));
    assert!(drain(&mut p, Instant::now()).is_empty());
}

#[test]
fn news_for_a_node_that_is_not_ready_waits_and_accumulates() {
    let mut p = presence(100, 256);
    let mut tick = later();
    join(&mut p, 1, false);
    join(&mut p, 2, true);
    drain(&mut p, tick());
    join(&mut p, 3, false);
    let news = drain_where(&mut p, tick(), |&h| h != 1);
    assert!(news.iter().all(|(h, _)| *h != 1), "1 is not ready");
    assert_eq!(news.len(), 1, "2 is: {news:?}");
    join(&mut p, 4, false);
    p.leave_if(&id(2), |_| true);
    check_invariants(&p);
    let news = drain_where(&mut p, tick(), |&h| h == 1);
    assert_eq!(news.len(), 1, "one frame for everything 1 missed");
    let mut to_1 = listed(&news[0].1);
    to_1.sort();
    assert_eq!(to_1, vec![id(3), id(4)]);
    assert!(drain(&mut p, tick()).iter().all(|(h, _)| *h != 1));
    check_invariants(&p);
}

#[test]
fn news_held_back_for_a_bound_node_nets_out_whoever_came_and_went_meanwhile() {
    let mut p = presence(3, 256);
    let mut tick = later();
    join(&mut p, 1, true);
    for n in 2..=4 {
        join(&mut p, n, false);
    }
    drain(&mut p, tick());
    for round in 0..4u32 {
        for n in 2..=4 {
            p.leave_if(&id(n + 10 * round), |_| true);
            join(&mut p, n + 10 * (round + 1), false);
        }
        assert!(drain_where(&mut p, tick(), |&h| h != 1).iter().all(|(h, _)| *h != 1));
    }
    check_invariants(&p);
    let news = drain_where(&mut p, tick(), |&h| h == 1);
    assert_eq!(news.len(), 1);
    let ServerMessage::PresenceNews(mut delta) = serde_json::from_str(&news[0].1).unwrap() else {
        panic!("not a delta: {}", news[0].1);
    };
    let mut joined = ids_of(&delta.joined);
    joined.sort();
    delta.left.sort();
    assert_eq!(joined, vec![id(42), id(43), id(44)], "the last ones in its view");
    assert_eq!(delta.left, vec![id(2), id(3), id(4)], "the ones it was told about");
}

/// A presence whose views stay as drawn for one second.
fn presence_with_interval(max_list_len: usize) -> Presence<u32> {
    let config = PresenceConfig {
        max_list_len,
        join_fanout: 256,
        min_list_push_interval: Duration::from_secs(1),
    };
    Presence::with_seed(config, 7)
}

#[test]
fn a_list_asked_for_within_the_interval_of_the_first_is_that_view() {
    let mut p = presence_with_interval(10);
    let start = Instant::now();
    for n in 0..50 {
        p.join(id(n), info(n), false, n, start);
    }
    let joined_at = start + Duration::from_secs(5);
    let first = listed(&p.join(id(99), info(99), false, 99, joined_at).node_list);
    assert_eq!(first.len(), 10);
    let asked_soon = p.node_list(&id(99), joined_at + Duration::from_millis(999));
    assert_eq!(listed(&asked_soon.unwrap()), first, "not drawn again");
    check_invariants(&p);
    let asked_later = p.node_list(&id(99), joined_at + Duration::from_secs(1));
    let second = listed(&asked_later.unwrap());
    assert_eq!(second.len(), 10);
    assert_ne!(second, first, "once the interval passed, a new sample");
    let asked_again = p.node_list(&id(99), joined_at + Duration::from_millis(1500));
    assert_eq!(listed(&asked_again.unwrap()), second, "the new sample stays as drawn");
    check_invariants(&p);
}

#[test]
fn a_list_that_is_the_view_as_it_stands_answers_the_pending_news() {
    let mut p = presence_with_interval(10);
    let now = Instant::now();
    p.join(id(1), info(1), false, 1, now);
    p.join(id(2), info(2), false, 2, now);
    p.join(id(3), info(3), false, 3, now);
    p.leave_if(&id(2), |_| true);
    // 1's view was drawn empty; 2 and 3 joined into it, 2 left again.
    let list = p.node_list(&id(1), now + Duration::from_millis(10));
    assert_eq!(listed(&list.unwrap()), vec![id(3)], "the view as it stands");
    let later = now + Duration::from_secs(5);
    assert!(
        drain(&mut p, later).iter().all(|(to, _)| *to != 1),
        "the list told it all its news"
    );
    p.join(id(4), info(4), false, 4, later);
    let news = drain(&mut p, later);
    let to_1 = news.iter().find(|(to, _)| *to == 1).map(|(_, frame)| listed(frame));
    assert_eq!(to_1, Some(vec![id(3), id(4)]), "later news is told as before");
    check_invariants(&p);
}

fn ids_of(infos: &[NodeInfo]) -> Vec<NodeId> {
    infos
        .iter()
        .map(|info| match info {
            NodeInfo::NodeInfoV3(v3) => v3.pubkey,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn drain_where(p: &mut Presence<u32>, now: Instant, ready: impl FnMut(&u32) -> bool) -> Vec<(u32, String)> {
    p.drain_news_where(now, ready)
        .into_iter()
        .map(|(_, to, frame)| (to, frame))
        .collect()
}
