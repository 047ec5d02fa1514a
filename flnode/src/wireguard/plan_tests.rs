//! Tests of the plan: who gets an entry when, and where addresses go.

use std::collections::HashMap;

use flproto::identity::NodeKey;

use super::*;

const GRACE: Duration = Duration::from_secs(60);

fn node(seed: u32) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&seed.to_le_bytes());
    NodeKey::from_seed(bytes).id()
}

fn facts(id: NodeId, reach: Reach) -> PeerFacts {
    PeerFacts {
        id,
        local: "127.0.0.1:40000".parse().unwrap(),
        reach,
        announced: None,
    }
}

/// (the smaller, the larger) of two nodes: the first starts handshakes.
fn ordered(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Two nodes whose derived IPv4 addresses are the same (found by search:
/// 22 bits collide after about 2000 IDs).
fn colliding_pair() -> (NodeId, NodeId) {
    let mut seen: HashMap<Ipv4Addr, NodeId> = HashMap::new();
    for seed in 1000.. {
        let id = node(seed);
        if let Some(other) = seen.insert(OverlayAddresses::of(&id).v4, id) {
            return (other, id);
        }
    }
    unreachable!()
}

fn run(me: NodeId, own: OverlayAddresses, peers: &[PeerFacts]) -> Vec<PeerPlan> {
    let now = Instant::now();
    let mut presence = Presence::default();
    presence.update(peers, now);
    plan(&me, own, peers, &presence, now, GRACE)
}

#[test]
fn an_online_peer_gets_its_key_endpoint_and_addresses() {
    let (me, peer) = (node(1), node(2));
    let plans = run(me, OverlayAddresses::of(&me), &[facts(peer, Reach::Connected)]);
    let entry = plans[0].entry.as_ref().expect("online peers get an entry");
    let addresses = OverlayAddresses::of(&peer);
    assert_eq!(entry.key, WgKey::of(&peer).unwrap());
    assert_eq!(entry.endpoint, "127.0.0.1:40000".parse::<SocketAddr>().unwrap());
    let mut wanted: Vec<IpNet> = vec![IpAddr::V4(addresses.v4).into(), IpAddr::V6(addresses.v6).into()];
    wanted.sort();
    assert_eq!(entry.allowed_ips, wanted);
    assert!(entry
        .allowed_ips
        .iter()
        .all(|net| net.prefix_len() == net.max_prefix_len()));
}

#[test]
fn the_side_with_the_smaller_id_keeps_the_tunnel_alive() {
    let (a, b) = (node(1), node(2));
    let (small, large) = if a < b { (a, b) } else { (b, a) };
    let keepalive = |me: NodeId, peer: NodeId| {
        run(me, OverlayAddresses::of(&me), &[facts(peer, Reach::Connected)])[0]
            .entry
            .as_ref()
            .unwrap()
            .keepalive()
    };
    assert_eq!(keepalive(small, large), Some(PERSISTENT_KEEPALIVE_SECS));
    assert_eq!(keepalive(large, small), None);
}

#[test]
fn the_answering_side_has_its_entry_when_the_peer_is_online_the_starting_side_when_connected() {
    let (starter, answerer) = ordered(node(1), node(2));
    let has_entry = |me: NodeId, peer: NodeId, reach: Reach| {
        run(me, OverlayAddresses::of(&me), &[facts(peer, reach)])[0]
            .entry
            .is_some()
    };
    assert!(!has_entry(answerer, starter, Reach::Offline));
    assert!(has_entry(answerer, starter, Reach::Online));
    assert!(
        !has_entry(starter, answerer, Reach::Online),
        "no handshake before the data path is up"
    );
    assert!(has_entry(starter, answerer, Reach::Connected));
}

#[test]
fn the_starting_side_sets_the_endpoint_and_the_answering_side_leaves_it_to_the_handshake() {
    let (starter, answerer) = if node(1) < node(2) {
        (node(1), node(2))
    } else {
        (node(2), node(1))
    };
    let entry = |me: NodeId, peer: NodeId, reach: Reach| {
        run(me, OverlayAddresses::of(&me), &[facts(peer, reach)])[0]
            .entry
            .clone()
    };
    let starting = entry(starter, answerer, Reach::Connected).unwrap();
    assert_eq!(
        starting.handshake,
        Handshake::Starts {
            keepalive: PERSISTENT_KEEPALIVE_SECS
        }
    );
    assert_eq!(starting.set_endpoint(), Some(starting.endpoint));
    assert!(
        entry(starter, answerer, Reach::Online).is_none(),
        "the starting side waits for the data path"
    );
    let answering = entry(answerer, starter, Reach::Online).unwrap();
    assert_eq!(answering.handshake, Handshake::Answers);
    assert_eq!(answering.set_endpoint(), None);
    assert_eq!(
        answering.allowed_ips.len(),
        2,
        "routed: its traffic waits for the peer's handshake"
    );
}

#[test]
fn an_entry_outlives_an_absence_shorter_than_the_grace_period() {
    for (me, peer) in [ordered(node(1), node(2)), {
        let (a, b) = ordered(node(1), node(2));
        (b, a)
    }] {
        let own = OverlayAddresses::of(&me);
        let start = Instant::now();
        let mut presence = Presence::default();
        let has_entry = |presence: &Presence, at: Instant, reach: Reach| {
            plan(&me, own, &[facts(peer, reach)], presence, at, GRACE)[0]
                .entry
                .is_some()
        };
        presence.update(&[facts(peer, Reach::Offline)], start);
        assert!(!has_entry(&presence, start, Reach::Offline), "never seen: no entry");
        presence.update(&[facts(peer, Reach::Connected)], start);
        assert!(has_entry(&presence, start, Reach::Connected));
        let later = start + GRACE;
        presence.update(&[facts(peer, Reach::Offline)], later);
        assert!(
            has_entry(&presence, later, Reach::Offline),
            "gone for the grace period: kept"
        );
        let too_late = later + Duration::from_millis(1);
        presence.update(&[facts(peer, Reach::Offline)], too_late);
        assert!(
            !has_entry(&presence, too_late, Reach::Offline),
            "gone for longer: removed"
        );
        presence.update(&[facts(peer, Reach::Connected)], too_late);
        assert!(has_entry(&presence, too_late, Reach::Connected), "back: added again");
        presence.update(&[], too_late);
        assert!(!presence.recent(&peer, too_late, GRACE), "off the list: forgotten");
    }
}

#[test]
fn the_starting_side_renews_its_entry_each_time_the_data_path_comes_up() {
    let (starter, answerer) = ordered(node(1), node(2));
    let now = Instant::now();
    let mut presence = Presence::default();
    let mut renew = |me: NodeId, peer: NodeId, reach: Reach| {
        let peers = [facts(peer, reach)];
        presence.update(&peers, now);
        plan(&me, OverlayAddresses::of(&me), &peers, &presence, now, GRACE)[0].renew
    };
    assert!(!renew(starter, answerer, Reach::Online));
    assert!(renew(starter, answerer, Reach::Connected), "came up");
    assert!(!renew(starter, answerer, Reach::Connected), "still up");
    assert!(!renew(starter, answerer, Reach::Online), "down, entry kept");
    assert!(renew(starter, answerer, Reach::Connected), "up again");
    let mut presence = Presence::default();
    let peers = [facts(starter, Reach::Connected)];
    presence.update(&peers, now);
    let plans = plan(
        &answerer,
        OverlayAddresses::of(&answerer),
        &peers,
        &presence,
        now,
        GRACE,
    );
    assert!(!plans[0].renew, "the answering side never renews");
}

#[test]
fn two_peers_sharing_an_ipv4_address_get_it_routed_to_neither() {
    let (first, second) = colliding_pair();
    let me = node(1);
    let plans = run(
        me,
        OverlayAddresses::of(&me),
        &[facts(first, Reach::Connected), facts(second, Reach::Connected)],
    );
    assert_eq!(
        plans[0].v4,
        Fate::Clashes(OverlayAddresses::of(&first).v4, Clash::Peer(second))
    );
    assert_eq!(
        plans[1].v4,
        Fate::Clashes(OverlayAddresses::of(&second).v4, Clash::Peer(first))
    );
    for plan in &plans {
        let entry = plan.entry.as_ref().unwrap();
        // Reachable over IPv6 only.
        assert_eq!(entry.allowed_ips, [IpNet::from(IpAddr::V6(plan.v6.address()))]);
    }
}

#[test]
fn a_peer_sharing_this_nodes_address_is_not_routed_until_one_side_moves() {
    let (me, peer) = colliding_pair();
    let derived = OverlayAddresses::of(&me);
    let plans = run(me, derived, &[facts(peer, Reach::Connected)]);
    assert_eq!(plans[0].v4, Fate::Clashes(derived.v4, Clash::ThisNode));
    // This node's --address resolves it.
    let moved = OverlayAddresses {
        v4: Ipv4Addr::new(100, 64, 0, 1),
        ..derived
    };
    let plans = run(me, moved, &[facts(peer, Reach::Connected)]);
    assert_eq!(plans[0].v4, Fate::Routed(derived.v4));
}

#[test]
fn an_announced_address_replaces_the_derived_one_unless_it_is_taken() {
    let (me, mover, bystander) = (node(1), node(2), node(3));
    let mut moving = facts(mover, Reach::Connected);
    let elsewhere = Ipv4Addr::new(100, 64, 0, 9);
    moving.announced = Some(OverlayAddresses {
        v4: elsewhere,
        ..OverlayAddresses::of(&mover)
    });
    let plans = run(
        me,
        OverlayAddresses::of(&me),
        &[moving.clone(), facts(bystander, Reach::Connected)],
    );
    assert_eq!(plans[0].v4, Fate::Routed(elsewhere));
    assert_eq!(plans[0].v6, Fate::Routed(OverlayAddresses::of(&mover).v6));

    // Announcing another peer's address takes nothing from it.
    let taken = OverlayAddresses::of(&bystander).v4;
    moving.announced = Some(OverlayAddresses {
        v4: taken,
        ..OverlayAddresses::of(&mover)
    });
    let plans = run(
        me,
        OverlayAddresses::of(&me),
        &[moving.clone(), facts(bystander, Reach::Connected)],
    );
    assert_eq!(plans[0].v4, Fate::Clashes(taken, Clash::Peer(bystander)));
    assert_eq!(plans[1].v4, Fate::Routed(taken));

    // Nor this node's.
    moving.announced = Some(OverlayAddresses::of(&me));
    let plans = run(me, OverlayAddresses::of(&me), &[moving]);
    assert_eq!(
        plans[0].v4,
        Fate::Clashes(OverlayAddresses::of(&me).v4, Clash::ThisNode)
    );
    assert_eq!(
        plans[0].v6,
        Fate::Clashes(OverlayAddresses::of(&me).v6, Clash::ThisNode)
    );
}

#[test]
fn two_peers_announcing_one_address_both_lose_it() {
    let (me, a, b) = (node(1), node(2), node(3));
    let shared = OverlayAddresses {
        v4: Ipv4Addr::new(100, 64, 0, 9),
        v6: "fd50:e038:65e7::9".parse().unwrap(),
    };
    let announcing = |id| PeerFacts {
        announced: Some(shared),
        ..facts(id, Reach::Connected)
    };
    let plans = run(me, OverlayAddresses::of(&me), &[announcing(a), announcing(b)]);
    assert_eq!(plans[0].v4, Fate::Clashes(shared.v4, Clash::Peer(b)));
    assert_eq!(plans[1].v6, Fate::Clashes(shared.v6, Clash::Peer(a)));
    assert!(plans
        .iter()
        .all(|plan| plan.entry.as_ref().unwrap().allowed_ips.is_empty()));
}
