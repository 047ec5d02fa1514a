//! The relay as the last resort: when it starts carrying, that it carries
//! only what no data channel can, and that a data channel takes over the
//! moment its `wg` opens.

use std::time::Duration;

use super::harness::{connect_of, Harness};
use super::*;

fn carried(actions: &[Action]) -> Vec<Option<Carrier>> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::CarryData(carrier) => Some(*carrier),
            _ => None,
        })
        .collect()
}

fn pinged(actions: &[Action]) -> bool {
    actions.contains(&Action::RelayPing)
}

/// An initiator whose peer is online and whose attempts go nowhere (UDP
/// is blocked), with the relay granted and the peer answering its pings.
fn stranded() -> Harness {
    let mut h = Harness::initiator();
    h.event(Event::RelayGranted(true));
    let conn = connect_of(&h.event(Event::Online(None))).unwrap();
    h.event(Event::OfferReady(conn, "offer".into()));
    h
}

/// Advances in keepalive steps, answering every relay ping at once, until
/// `until`; returns everything decided on the way.
fn advance_answering(h: &mut Harness, until: Duration) -> Vec<Action> {
    let mut out = Vec::new();
    let end = h.now + until;
    while h.now < end {
        let actions = h.advance(KEEPALIVE_INTERVAL.min(end - h.now));
        if pinged(&actions) {
            out.extend(h.event(Event::RelayPong));
        }
        out.extend(actions);
    }
    out
}

#[test]
fn without_a_data_channel_the_relay_carries_once_the_fallback_time_has_passed() {
    let mut h = stranded();
    let out = advance_answering(&mut h, RELAY_FALLBACK_AFTER - KEEPALIVE_INTERVAL);
    assert!(pinged(&out), "the relay is pinged while no data channel carries");
    assert_eq!(carried(&out), vec![], "not before the fallback time");
    let out = advance_answering(&mut h, KEEPALIVE_INTERVAL);
    assert_eq!(carried(&out), vec![Some(Carrier::Relay)]);
    assert_eq!(h.setup.carrier(), Some(Carrier::Relay));
}

#[test]
fn a_relay_the_peer_does_not_answer_through_never_carries() {
    let mut h = stranded();
    let out = h.advance(RELAY_FALLBACK_AFTER * 4);
    assert!(pinged(&out));
    assert_eq!(carried(&out), vec![], "no pong: the peer cannot use the relay");
}

#[test]
fn a_relay_that_is_not_granted_is_never_pinged_nor_used() {
    let mut h = Harness::initiator();
    h.event(Event::Online(None));
    let out = h.advance(RELAY_FALLBACK_AFTER * 2);
    assert!(!pinged(&out));
    h.event(Event::RelayPong);
    assert_eq!(carried(&h.advance(RELAY_FALLBACK_AFTER)), vec![]);
}

#[test]
fn an_open_wg_channel_takes_over_from_the_relay_in_the_same_step() {
    let mut h = stranded();
    advance_answering(&mut h, RELAY_FALLBACK_AFTER + KEEPALIVE_INTERVAL);
    assert_eq!(h.setup.carrier(), Some(Carrier::Relay));
    // The next attempt gets through (UDP was unblocked).
    let out = advance_answering(&mut h, MAX_RETRY_WHILE_RELAYED + RETRY_CHECK_INTERVAL);
    let conn = connect_of(&out).expect("attempts go on while relayed");
    h.event(Event::OfferReady(conn, "offer".into()));
    h.remote.new_attempt();
    h.peer_says(SetupMessage::Answer("answer".into()));
    h.event(Event::Link(conn, LinkState::Connected));
    assert_eq!(
        h.setup.carrier(),
        Some(Carrier::Relay),
        "connected is not enough: wg must be open"
    );
    let out = h.event(Event::WgOpen(conn));
    assert_eq!(carried(&out), vec![Some(Carrier::Link(conn))]);
    assert_eq!(h.setup.state(), PeerState::Connected);
    let out = h.advance(KEEPALIVE_INTERVAL * 4);
    assert!(!pinged(&out), "no relay pings while a data channel carries");
    assert_eq!(carried(&out), vec![]);
}

#[test]
fn a_path_that_died_falls_back_to_the_relay_after_the_fallback_time() {
    let mut h = Harness::initiator();
    h.event(Event::RelayGranted(true));
    let conn = h.connect_as_initiator();
    assert!(!pinged(&h.advance(KEEPALIVE_INTERVAL)));
    h.event(Event::Pong(conn));
    // No keepalive answer from now on: after the timeout a handover
    // starts, the old connection still carries, the relay is pinged.
    let out = advance_answering(&mut h, KEEPALIVE_TIMEOUT + KEEPALIVE_INTERVAL);
    assert!(out.contains(&Action::Handover(HandoverCause::KeepalivesUnanswered)));
    assert_eq!(h.setup.carrier(), Some(Carrier::Link(conn)));
    let out = advance_answering(&mut h, RELAY_FALLBACK_AFTER);
    assert_eq!(carried(&out), vec![Some(Carrier::Relay)], "{out:?}");
}

#[test]
fn a_failed_data_channel_falls_back_too() {
    let mut h = Harness::initiator();
    h.event(Event::RelayGranted(true));
    let conn = h.connect_as_initiator();
    assert_eq!(carried(&h.event(Event::Link(conn, LinkState::Failed))), vec![None]);
    let out = advance_answering(&mut h, RELAY_FALLBACK_AFTER + KEEPALIVE_INTERVAL);
    assert_eq!(carried(&out), vec![Some(Carrier::Relay)]);
}

#[test]
fn the_relay_stops_carrying_when_it_is_lost_or_the_peer_stops_answering() {
    let mut h = stranded();
    advance_answering(&mut h, RELAY_FALLBACK_AFTER + KEEPALIVE_INTERVAL);
    assert_eq!(carried(&h.event(Event::RelayGranted(false))), vec![None]);
    // Granted again (the node registered again) and answered: at once,
    // the fallback time has long passed.
    h.event(Event::RelayGranted(true));
    assert_eq!(carried(&h.event(Event::RelayPong)), vec![Some(Carrier::Relay)]);
    // Pongs stop.
    assert_eq!(carried(&h.advance(KEEPALIVE_TIMEOUT)), vec![None]);
}

#[test]
fn while_relayed_attempts_come_at_most_the_relayed_back_off_apart() {
    let mut h = stranded();
    advance_answering(&mut h, RELAY_FALLBACK_AFTER + KEEPALIVE_INTERVAL);
    let mut last = h.now;
    for _ in 0..6 {
        let mut waited = Duration::ZERO;
        loop {
            let out = advance_answering(&mut h, RETRY_CHECK_INTERVAL);
            waited += RETRY_CHECK_INTERVAL;
            if let Some(conn) = connect_of(&out) {
                h.event(Event::OfferReady(conn, "offer".into()));
                break;
            }
            assert!(waited <= MAX_RETRY_WHILE_RELAYED + RETRY_CHECK_INTERVAL);
        }
        assert!(h.now - last <= MAX_RETRY_WHILE_RELAYED + RETRY_CHECK_INTERVAL);
        last = h.now;
    }
    assert_eq!(h.setup.carrier(), Some(Carrier::Relay));
}

#[test]
fn a_peer_that_comes_back_gets_the_whole_fallback_time_again() {
    let mut h = stranded();
    advance_answering(&mut h, RELAY_FALLBACK_AFTER * 3);
    assert_eq!(carried(&h.event(Event::RelayGranted(false))), vec![None]);
    h.event(Event::Offline);
    h.event(Event::RelayGranted(true));
    h.event(Event::Online(None));
    let out = advance_answering(&mut h, RELAY_FALLBACK_AFTER - KEEPALIVE_INTERVAL);
    assert_eq!(carried(&out), vec![]);
    let out = advance_answering(&mut h, KEEPALIVE_INTERVAL);
    assert_eq!(carried(&out), vec![Some(Carrier::Relay)]);
}

#[test]
fn a_test_peer_never_uses_the_relay() {
    let mut h = Harness::new(1, 2, PeerKind::Test);
    h.event(Event::RelayGranted(true));
    h.event(Event::Online(None));
    let out = advance_answering(&mut h, RELAY_FALLBACK_AFTER * 2);
    assert!(!pinged(&out));
    assert_eq!(carried(&out), vec![]);
}
