//! The TURN state's budgets, ages and bounds, with the harness of
//! `state_tests.rs`.

use std::time::Duration;

use e2e::turn_client::{Reply, Requests};

use super::tests::{addr, limits, relayed, udp, Harness, PEER, UNIX};
use super::*;
use crate::metrics::Reason;

#[test]
fn relaying_beyond_the_allocations_budget_waits_then_drops() {
    let mut harness = Harness::new(limits());
    let client = udp("192.0.2.10:5000");
    let mut requests = harness.requests(1, UNIX + 3600);
    let relay = relayed(harness.allocate(client, &mut requests));
    let peer = addr(PEER);
    harness.ask(client, &requests.channel_bind(0x4001, peer));
    let datagram = Requests::channel_data(0x4001, &[0u8; 1000]);
    for _ in 0..20 {
        harness
            .state
            .on_client(client, &datagram, harness.now, UNIX, &mut harness.sink);
    }
    // The allocation's burst is 10 000 bytes; 50 ms of its 100 000
    // bytes/s (5 000 bytes) may wait; the rest is dropped.
    assert_eq!(harness.sink.to_peer.len(), 10);
    assert_eq!(harness.dropped("allocation_bandwidth"), 5);
    assert!(harness.state.has_backlog());
    harness.now += Duration::from_millis(50);
    harness.state.release_held(harness.now, &mut harness.sink);
    assert_eq!(harness.sink.to_peer.len(), 15);
    assert!(!harness.state.has_backlog());
    // The other way counts against the same budget, after what waited.
    harness.now += Duration::from_millis(100);
    for _ in 0..20 {
        harness
            .state
            .on_peer(relay, peer, &[0u8; 1000], harness.now, &mut harness.sink);
    }
    // 10 000 bytes of budget: 9 ChannelData of 1 004 bytes, 4 wait.
    let to_client = harness
        .sink
        .to_client
        .iter()
        .filter(|(_, data)| data.len() == 1004)
        .count();
    assert_eq!(to_client, 9);
    assert_eq!(harness.dropped("allocation_bandwidth"), 5 + 7);
}

#[test]
fn a_nodes_budget_spans_its_allocations() {
    let mut harness = Harness::new(Limits {
        allocation_rate: ByteRate {
            per_second: 1_000_000,
            burst: 1_000_000,
        },
        ..limits()
    });
    let peer = addr(PEER);
    for port in [5000, 5001] {
        let client = udp(&format!("192.0.2.10:{port}"));
        let mut requests = harness.requests(1, UNIX + 3600);
        relayed(harness.allocate(client, &mut requests));
        harness.ask(client, &requests.channel_bind(0x4001, peer));
        for _ in 0..15 {
            harness.state.on_client(
                client,
                &Requests::channel_data(0x4001, &[0u8; 1000]),
                harness.now,
                UNIX,
                &mut harness.sink,
            );
        }
    }
    // 20 000 bytes of the node's burst between both; the rest waits for
    // the node's 100 000 bytes/s.
    assert_eq!(harness.sink.to_peer.len(), 20);
    assert_eq!(harness.dropped("node_bandwidth"), 0);
    harness.now += Duration::from_millis(100);
    harness.state.release_held(harness.now, &mut harness.sink);
    assert_eq!(harness.sink.to_peer.len(), 30);
}

#[test]
fn allocations_end_at_their_maximum_age_and_expire_unrefreshed() {
    let mut harness = Harness::new(Limits {
        max_allocation_age: Duration::from_secs(7200),
        ..limits()
    });
    let client = udp("192.0.2.10:5000");
    let mut requests = harness.requests(1, UNIX + 3600);
    let relay = relayed(harness.allocate(client, &mut requests));
    // Refreshed every 5 minutes it lives until its maximum age.
    for _ in 0..23 {
        harness.tick(Duration::from_secs(300));
        assert_eq!(
            harness.refresh(client, &mut requests, 600),
            Reply::Success { relayed: None }
        );
    }
    assert!(harness.state.is_allocated(&client));
    harness.tick(Duration::from_secs(300));
    assert!(!harness.state.is_allocated(&client));
    assert_eq!(harness.sink.closed, vec![relay]);
    let metrics = harness.metrics.clone();
    let ended = move |reason| metrics.allocations_ended.get_or_create(&Reason { reason }).get();
    assert_eq!(ended("max_age"), 1);

    // Left alone, one lapses after its lifetime (600 s by default).
    let other = udp("192.0.2.10:5001");
    let mut requests = harness.requests(1, UNIX + 3600);
    relayed(harness.allocate(other, &mut requests));
    harness.tick(Duration::from_secs(599));
    assert!(harness.state.is_allocated(&other));
    harness.tick(Duration::from_secs(2));
    assert!(!harness.state.is_allocated(&other));
    assert_eq!(ended("released"), 1);
}

#[test]
fn handshakes_are_bounded_and_time_out() {
    let mut harness = Harness::new(limits());
    let requests = Requests::default();
    for port in 0..10u16 {
        let reply = harness.ask(udp(&format!("192.0.2.50:{}", 6000 + port)), &requests.first_allocate());
        assert_eq!(reply.error_code(), Some(401));
    }
    assert_eq!(harness.metrics.handshakes.get(), 4);
    assert_eq!(harness.refusals("handshake_evicted"), 6);
    harness.tick(Duration::from_secs(31));
    assert_eq!(harness.metrics.handshakes.get(), 0);
    // ChannelData or junk from a stranger starts nothing and gets nothing.
    harness.state.on_client(
        udp("192.0.2.60:1"),
        &Requests::channel_data(0x4001, b"x"),
        harness.now,
        UNIX,
        &mut harness.sink,
    );
    harness
        .state
        .on_client(udp("192.0.2.60:2"), b"junk", harness.now, UNIX, &mut harness.sink);
    assert_eq!(harness.metrics.handshakes.get(), 0);
}
