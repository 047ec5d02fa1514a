use super::*;

const ME: InstanceId = InstanceId(1);
const B: InstanceId = InstanceId(2);
const C: InstanceId = InstanceId(3);

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn table() -> (ClusterPresence, Instant) {
    (ClusterPresence::new(ME, DEFAULT_EXPIRY), Instant::now())
}

#[test]
fn remote_joins_and_leaves_are_tracked_per_instance() {
    let (mut t, now) = table();
    assert_eq!(t.remote_join(B, node(1), 10, now), RemoteJoin::Accepted);
    assert_eq!(t.remote_join(C, node(2), 10, now), RemoteJoin::Accepted);
    assert_eq!(t.remote_instances(), 2);
    assert_eq!(t.remote_nodes(), 2);
    assert_eq!(t.owner(&node(1)), Some((B, 10)));
    // Only the holder can take a node out.
    assert!(!t.remote_leave(C, &node(1), now));
    assert!(t.remote_leave(B, &node(1), now));
    assert_eq!(t.owner(&node(1)), None);
    assert_eq!(t.remote_nodes(), 1);
}

#[test]
fn own_messages_are_ignored() {
    let (mut t, now) = table();
    assert_eq!(t.remote_join(ME, node(1), 10, now), RemoteJoin::Stale);
    assert!(!t.remote_heartbeat(ME, 5, now));
    assert_eq!(t.remote_instances(), 0);
}

#[test]
fn newest_registration_wins_whoever_hears_first() {
    // The same pair of claims, heard in either order, ends the same way.
    for order in [[B, C], [C, B]] {
        let (mut t, now) = table();
        for instance in order {
            let at = if instance == B { 20 } else { 10 };
            t.remote_join(instance, node(1), at, now);
        }
        assert_eq!(t.owner(&node(1)), Some((B, 20)), "order {order:?}");
        assert_eq!(t.remote_nodes(), 1);
    }
}

#[test]
fn equal_times_are_broken_by_instance_id() {
    let (mut t, now) = table();
    t.local_join(node(1), 10);
    // B > ME at the same time: B wins, our connection must close.
    assert_eq!(t.remote_join(B, node(1), 10, now), RemoteJoin::Accepted);
    let (mut t, now) = (ClusterPresence::new(C, DEFAULT_EXPIRY), now);
    t.local_join(node(1), 10);
    assert_eq!(t.remote_join(B, node(1), 10, now), RemoteJoin::Stale);
    assert_eq!(t.owner(&node(1)), Some((C, 10)));
}

#[test]
fn an_older_remote_claim_does_not_displace_a_local_node() {
    let (mut t, now) = table();
    t.local_join(node(1), 100);
    assert_eq!(t.remote_join(B, node(1), 50, now), RemoteJoin::Stale);
    assert_eq!(t.owner(&node(1)), Some((ME, 100)));
    // Its leave, when it closes its connection, changes nothing either.
    assert!(!t.remote_leave(B, &node(1), now));
    assert_eq!(t.owner(&node(1)), Some((ME, 100)));
}

#[test]
fn a_local_takeover_outranks_the_remote_despite_clock_skew() {
    let (mut t, now) = table();
    // B's clock runs ahead of ours.
    t.remote_join(B, node(1), 1_000, now);
    let at = t.local_join(node(1), 500);
    assert!(at > 1_000);
    assert_eq!(t.owner(&node(1)), Some((ME, at)));
    assert_eq!(t.remote_nodes(), 0);
    // B hears our claim and must find it newer than its own.
    let mut b = ClusterPresence::new(B, DEFAULT_EXPIRY);
    b.local_join(node(1), 1_000);
    assert_eq!(b.remote_join(ME, node(1), at, now), RemoteJoin::Accepted);
}

#[test]
fn local_leave_of_a_node_now_held_elsewhere_keeps_the_remote() {
    let (mut t, now) = table();
    t.local_join(node(1), 10);
    t.remote_join(B, node(1), 20, now);
    t.local_leave(&node(1));
    assert_eq!(t.owner(&node(1)), Some((B, 20)));
}

#[test]
fn silent_instances_expire_with_their_nodes() {
    let (mut t, start) = table();
    t.remote_join(B, node(1), 10, start);
    t.remote_join(B, node(2), 10, start);
    t.remote_join(C, node(3), 10, start);
    t.local_join(node(4), 10);
    // C keeps beating, B falls silent.
    let later = start + DEFAULT_EXPIRY;
    t.remote_heartbeat(C, 1, later);
    assert!(t.expire(later).is_empty(), "exactly the expiry is not yet too long");
    let much_later = later + Duration::from_millis(500);
    let mut gone = t.expire(much_later);
    gone.sort();
    assert_eq!(gone, vec![(B, node(1)), (B, node(2))]);
    assert_eq!(t.remote_instances(), 1);
    assert_eq!(t.owner(&node(3)), Some((C, 10)));
    assert_eq!(t.owner(&node(4)), Some((ME, 10)), "local nodes never expire");
}

#[test]
fn goodbye_removes_at_once() {
    let (mut t, now) = table();
    t.remote_join(B, node(1), 10, now);
    assert_eq!(t.remove_instance(B), vec![node(1)]);
    assert_eq!(t.owner(&node(1)), None);
    assert!(t.remove_instance(B).is_empty());
}

#[test]
fn a_snapshot_replaces_what_an_instance_holds() {
    let (mut t, now) = table();
    t.remote_join(B, node(1), 10, now);
    t.remote_join(B, node(2), 10, now);
    t.snapshot_begins(B, now);
    t.remote_join(B, node(2), 10, now);
    t.remote_join(B, node(3), 10, now);
    assert_eq!(t.snapshot_ends(B), vec![node(1)]);
    assert_eq!(t.owner(&node(1)), None);
    assert_eq!(t.remote_nodes(), 2);
    // No snapshot open: ending one removes nothing.
    assert!(t.snapshot_ends(B).is_empty());
}

#[test]
fn joins_during_a_snapshot_count_as_named() {
    let (mut t, now) = table();
    t.snapshot_begins(B, now);
    t.remote_join(B, node(1), 10, now);
    // A join published between two parts of the snapshot.
    t.remote_join(B, node(2), 11, now);
    assert!(t.snapshot_ends(B).is_empty());
    assert_eq!(t.remote_nodes(), 2);
}

#[test]
fn a_lasting_count_mismatch_asks_for_a_snapshot() {
    let (mut t, now) = table();
    t.remote_join(B, node(1), 10, now);
    assert!(!t.remote_heartbeat(B, 1, now));
    // One disagreeing heartbeat may be a change in flight...
    assert!(!t.remote_heartbeat(B, 2, now));
    // ...a second in a row is not.
    assert!(t.remote_heartbeat(B, 2, now));
    // Agreement resets the count.
    assert!(!t.remote_heartbeat(B, 1, now));
    assert!(!t.remote_heartbeat(B, 2, now));
}

#[test]
fn registration_times_beyond_the_skew_allowance_are_not_believable() {
    let now_us = 1_700_000_000_000_000;
    let skew = DEFAULT_MAX_CLOCK_SKEW;
    assert!(believable_at(now_us, now_us, skew));
    assert!(believable_at(0, now_us, skew));
    assert!(believable_at(now_us + 5_000_000, now_us, skew));
    assert!(!believable_at(now_us + 5_000_001, now_us, skew));
    assert!(!believable_at(u64::MAX, now_us, skew));
    // A wall clock near the end of time does not overflow.
    assert!(believable_at(u64::MAX, u64::MAX - 1, skew));
    assert!(believable_at(5, 0, Duration::MAX));
}
