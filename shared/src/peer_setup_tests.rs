//! Each transition of the peer state machine, and the scenarios the
//! namespace tests cover end to end, without a socket or a clock.

use std::time::Duration;

use super::harness::{connect_of, sent, Harness, Remote};
use super::*;
use crate::setup_auth::SetupAuthError;

#[test]
fn roles_are_fixed_by_the_keys_so_exactly_one_side_offers() {
    let a = Harness::new(1, 2, PeerKind::WireGuard);
    let b = Harness::new(2, 1, PeerKind::WireGuard);
    assert_ne!(a.setup.role(), b.setup.role());
}

#[test]
fn an_online_initiator_builds_a_connection_and_offers_once_it_is_ready() {
    let mut h = Harness::initiator();
    assert_eq!(h.setup.state(), PeerState::Offline);
    let out = h.event(Event::Online(None));
    let conn = connect_of(&out).unwrap();
    assert!(matches!(&out[0], Action::Connect { offer: None, .. }));
    assert!(sent(&out).is_empty(), "nothing goes out before the offer exists");
    assert_eq!(h.setup.state(), PeerState::Connecting);
    let out = h.event(Event::OfferReady(conn, "v=0 offer".into()));
    assert_eq!(sent(&out), vec![SetupMessage::Offer("v=0 offer".into())]);
}

#[test]
fn an_online_follower_asks_for_an_offer_with_init() {
    let mut h = Harness::follower();
    let out = h.event(Event::Online(None));
    assert_eq!(sent(&out), vec![SetupMessage::Init]);
    assert!(connect_of(&out).is_none());
    assert_eq!(h.setup.state(), PeerState::Waiting);
}

#[test]
fn what_the_peer_sends_is_signed_and_verifies_on_the_other_side() {
    let mut h = Harness::follower();
    let out = h.event(Event::Online(None));
    let Action::Send(info) = &out[0] else { panic!("{out:?}") };
    let (sender, _) = crate::setup_auth::verify(info, &h.remote.id()).unwrap();
    assert_eq!(sender, h.me);
}

#[test]
fn a_follower_answers_an_offer_and_applies_the_candidates_of_that_attempt() {
    let mut h = Harness::follower();
    h.event(Event::Online(None));
    h.remote.new_attempt();
    let out = h.peer_says(SetupMessage::Offer("offer".into()));
    let conn = connect_of(&out).unwrap();
    assert!(matches!(&out[0], Action::Connect { offer: Some(sdp), .. } if sdp == "offer"));
    let out = h.event(Event::AnswerReady(conn, "answer".into()));
    assert_eq!(sent(&out), vec![SetupMessage::Answer("answer".into())]);
    let out = h.peer_says(SetupMessage::IceCandidate("candidate:1".into()));
    assert_eq!(
        out,
        vec![Action::ApplyCandidate {
            conn,
            candidate: "candidate:1".into()
        }]
    );
}

#[test]
fn candidates_before_the_answer_wait_and_are_applied_with_it() {
    let mut h = Harness::initiator();
    let out = h.event(Event::Online(None));
    let conn = connect_of(&out).unwrap();
    h.event(Event::OfferReady(conn, "offer".into()));
    h.remote.new_attempt();
    // The follower's candidates overtook its answer.
    assert!(h
        .peer_says(SetupMessage::IceCandidate("candidate:early".into()))
        .is_empty());
    let info = h.remote.says(&h.me, SetupMessage::Answer("answer".into()));
    let out = h.event(Event::Setup(info));
    assert_eq!(
        out,
        vec![
            Action::ApplyAnswer {
                conn,
                sdp: "answer".into()
            },
            Action::ApplyCandidate {
                conn,
                candidate: "candidate:early".into()
            },
        ]
    );
}

#[test]
fn candidates_of_another_attempt_of_the_peer_are_never_applied() {
    let mut h = Harness::initiator();
    let out = h.event(Event::Online(None));
    let conn = connect_of(&out).unwrap();
    h.event(Event::OfferReady(conn, "offer".into()));
    h.remote.new_attempt();
    h.peer_says(SetupMessage::Answer("answer".into()));
    // The peer moved on to a new attempt (say, it restarted its side):
    // its candidates belong to a connection we do not have.
    h.remote.new_attempt();
    assert!(h
        .peer_says(SetupMessage::IceCandidate("candidate:new".into()))
        .is_empty());
}

#[test]
fn unsigned_forged_and_replayed_setups_are_refused_and_logged_once_a_second() {
    let mut h = Harness::follower();
    h.remote.new_attempt();
    let good = h.remote.says(&h.me, SetupMessage::Offer("offer".into()));
    let mut unsigned = good.clone();
    unsigned.auth = None;
    let mut forged = good.clone();
    forged.message = SetupMessage::Offer("evil".into());
    let first = h.event(Event::Setup(unsigned));
    assert!(matches!(
        &first[..],
        [Action::Refused {
            total: 1,
            log: true,
            ..
        }]
    ));
    let second = h.event(Event::Setup(forged));
    assert!(matches!(
        &second[..],
        [Action::Refused {
            total: 2,
            log: false,
            ..
        }]
    ));
    assert!(connect_of(&h.event(Event::Setup(good.clone()))).is_some());
    h.advance(REFUSAL_LOG_INTERVAL);
    let replayed = h.event(Event::Setup(good));
    assert!(matches!(
        &replayed[..],
        [Action::Refused {
            total: 3,
            log: true,
            ..
        }]
    ));
}

#[test]
fn a_setup_from_a_third_node_is_refused() {
    let mut h = Harness::follower();
    let mut stranger = Remote::new(9);
    let info = stranger.says(&h.me, SetupMessage::Offer("offer".into()));
    let out = h.event(Event::Setup(info));
    assert!(matches!(
        &out[..],
        [Action::Refused {
            error: Refusal::Auth(SetupAuthError::NotForUs),
            ..
        }]
    ));
}

#[test]
fn crossing_the_initiator_ignores_an_init_while_its_offer_is_in_flight() {
    let mut h = Harness::initiator();
    let out = h.event(Event::Online(None));
    let conn = connect_of(&out).unwrap();
    h.event(Event::OfferReady(conn, "offer".into()));
    // The follower's Init crossed our offer.
    let out = h.peer_says(SetupMessage::Init);
    assert!(out.is_empty(), "a second offer would cross the answer: {out:?}");
    // Later, with nothing answered, an Init starts a fresh attempt at once.
    h.advance(MIN_RETRY / 2);
    h.remote.new_attempt();
    h.now += MIN_RETRY;
    let out = h.peer_says(SetupMessage::Init);
    assert!(connect_of(&out).is_some());
}

#[test]
fn a_follower_retries_its_init_with_a_doubling_bounded_back_off() {
    let mut h = Harness::follower();
    h.event(Event::Online(None));
    let mut gaps = Vec::new();
    let mut last = h.now;
    for _ in 0..8 {
        loop {
            let out = h.advance(Duration::from_secs(1));
            if !sent(&out).is_empty() {
                gaps.push(h.now.duration_since(last));
                last = h.now;
                break;
            }
        }
    }
    assert!(gaps[0] >= MIN_RETRY && gaps[0] < MIN_RETRY * 2, "{gaps:?}");
    assert!(gaps.windows(2).all(|pair| pair[1] >= pair[0]), "{gaps:?}");
    assert!(
        gaps.iter().all(|gap| *gap <= MAX_RETRY + RETRY_CHECK_INTERVAL),
        "{gaps:?}"
    );
    assert_eq!(h.setup.retry_delay(), MAX_RETRY);
}

#[test]
fn a_follower_that_answered_an_offer_waits_before_a_new_attempt() {
    let mut h = Harness::follower();
    h.event(Event::Online(None));
    h.remote.new_attempt();
    let out = h.peer_says(SetupMessage::Offer("offer".into()));
    let conn = connect_of(&out).unwrap();
    h.event(Event::AnswerReady(conn, "answer".into()));
    h.now += MIN_RETRY / 2;
    let out = h.event(Event::NetworkChanged);
    assert!(
        sent(&out).is_empty(),
        "its Init would void the answered connection's candidates"
    );
}

#[test]
fn re_registration_after_a_signalling_outage_sends_init_at_once_during_a_handover() {
    let mut h = Harness::follower();
    h.event(Event::Online(None));
    h.remote.new_attempt();
    let conn = connect_of(&h.peer_says(SetupMessage::Offer("offer".into()))).unwrap();
    h.event(Event::AnswerReady(conn, "answer".into()));
    h.up(conn);
    h.advance(MIN_RETRY * 2);
    let out = h.event(Event::NetworkChanged);
    assert!(out.contains(&Action::Handover(HandoverCause::NetworkChanged)));
    assert_eq!(sent(&out), vec![SetupMessage::Init]);
    // The signalling connection went down with the network; the Init may
    // be lost. Registered again, the follower asks once more at once.
    h.now += Duration::from_millis(300);
    let out = h.event(Event::Online(None));
    assert_eq!(sent(&out), vec![SetupMessage::Init]);
}

#[test]
fn make_before_break_the_old_connection_carries_data_until_the_new_wg_opens() {
    let mut h = Harness::initiator();
    let old = h.connect_as_initiator();
    assert_eq!(h.setup.state(), PeerState::Connected);
    h.advance(MIN_RETRY * 2);
    let out = h.event(Event::NetworkChanged);
    assert_eq!(out[0], Action::Handover(HandoverCause::NetworkChanged));
    let new = connect_of(&out).unwrap();
    assert!(
        !out.contains(&Action::Close(old)),
        "the old one keeps carrying: {out:?}"
    );
    assert_eq!(h.setup.connections(), (Some(new), Some(old)));
    assert_eq!(h.setup.state(), PeerState::Handover);
    h.event(Event::OfferReady(new, "offer 2".into()));
    h.remote.new_attempt();
    h.peer_says(SetupMessage::Answer("answer 2".into()));
    assert!(h.event(Event::Link(new, LinkState::Connected)).is_empty());
    let out = h.event(Event::WgOpen(new));
    assert_eq!(
        out,
        vec![Action::CarryData(Some(Carrier::Link(new))), Action::Close(old)]
    );
    assert_eq!(h.setup.connections(), (Some(new), None));
}

#[test]
fn a_dead_path_is_found_by_keepalives_and_handed_over() {
    let mut h = Harness::initiator();
    let conn = h.connect_as_initiator();
    let out = h.advance(KEEPALIVE_INTERVAL);
    assert!(out.contains(&Action::Ping(conn)));
    h.event(Event::Pong(conn));
    // No pong from now on.
    let out = h.advance(KEEPALIVE_TIMEOUT + KEEPALIVE_INTERVAL);
    assert!(out.contains(&Action::ProbeSignalling), "{out:?}");
    assert!(out.contains(&Action::Handover(HandoverCause::KeepalivesUnanswered)));
    let new = connect_of(&out).unwrap();
    assert_eq!(h.setup.connections(), (Some(new), Some(conn)));
}

#[test]
fn the_follower_asks_for_a_new_connection_and_the_initiator_hands_over_at_once() {
    let mut h = Harness::initiator();
    let old = h.connect_as_initiator();
    h.remote.new_attempt();
    let out = h.peer_says(SetupMessage::Init);
    assert_eq!(out[0], Action::Handover(HandoverCause::PeerAsked));
    let new = connect_of(&out).unwrap();
    assert_eq!(h.setup.connections(), (Some(new), Some(old)));
}

#[test]
fn a_failed_connection_is_replaced_after_the_back_off_and_data_waits_meanwhile() {
    let mut h = Harness::initiator();
    let conn = h.connect_as_initiator();
    let out = h.event(Event::Link(conn, LinkState::Failed));
    assert_eq!(out, vec![Action::CarryData(None)]);
    assert_eq!(h.setup.state(), PeerState::Failed);
    let out = h.advance(MIN_RETRY + RETRY_CHECK_INTERVAL);
    let new = connect_of(&out).unwrap();
    assert!(out.contains(&Action::Close(conn)));
    assert_ne!(new, conn);
}

#[test]
fn a_connection_that_cannot_be_built_is_closed_and_tried_again_later() {
    let mut h = Harness::initiator();
    let conn = connect_of(&h.event(Event::Online(None))).unwrap();
    assert_eq!(h.event(Event::BuildFailed(conn)), vec![Action::Close(conn)]);
    assert_eq!(h.setup.connections(), (None, None));
    let out = h.advance(MIN_RETRY + RETRY_CHECK_INTERVAL);
    assert!(connect_of(&out).is_some());
}

#[test]
fn events_of_a_replaced_connection_are_ignored() {
    let mut h = Harness::initiator();
    let old = h.connect_as_initiator();
    h.advance(MIN_RETRY * 2);
    h.event(Event::NetworkChanged);
    for event in [
        Event::LocalCandidate(old, "candidate:stale".into()),
        Event::Link(old, LinkState::Failed),
        Event::WgOpen(old),
        Event::OfferReady(old, "offer".into()),
    ] {
        assert!(h.event(event).is_empty());
    }
}

#[test]
fn an_offline_peer_is_tried_again_at_once_when_it_returns() {
    let mut h = Harness::follower();
    h.event(Event::Online(None));
    h.advance(MIN_RETRY * 4);
    h.event(Event::Offline);
    assert_eq!(h.setup.state(), PeerState::Offline);
    assert_eq!(h.setup.retry_delay(), MIN_RETRY);
    let out = h.event(Event::Online(None));
    assert_eq!(sent(&out), vec![SetupMessage::Init]);
}

#[test]
fn a_test_peer_is_finished_once_it_has_been_gone_for_its_idle_time() {
    let mut h = Harness::new(1, 2, PeerKind::Test);
    let out = h.advance(TEST_PEER_IDLE + RETRY_CHECK_INTERVAL * 2);
    assert!(out.contains(&Action::Finished));
    let mut configured = Harness::new(1, 2, PeerKind::WireGuard);
    let out = configured.advance(TEST_PEER_IDLE * 3);
    assert!(!out.contains(&Action::Finished));
}

#[test]
fn local_candidates_are_trickled_signed_under_the_current_attempt() {
    let mut h = Harness::initiator();
    let conn = h.connect_as_initiator();
    let out = h.event(Event::LocalCandidate(conn, "candidate:late".into()));
    assert_eq!(sent(&out), vec![SetupMessage::IceCandidate("candidate:late".into())]);
}

#[test]
fn a_test_peer_that_used_up_its_budget_loses_its_connection_and_gets_no_other() {
    let mut h = Harness::new(1, 2, PeerKind::Test);
    let conn = if h.setup.role() == Role::Initiator {
        h.connect_as_initiator()
    } else {
        h.event(Event::Online(None));
        h.remote.new_attempt();
        let conn = connect_of(&h.peer_says(SetupMessage::Offer("offer".into()))).unwrap();
        h.event(Event::AnswerReady(conn, "answer".into()));
        h.up(conn);
        conn
    };
    assert!(h.event(Event::Exhausted(conn)).contains(&Action::Close(conn)));
    assert_eq!(h.setup.state(), PeerState::Failed);
    h.remote.new_attempt();
    assert!(h.peer_says(SetupMessage::Offer("again".into())).is_empty());
    assert!(h.event(Event::Online(None)).is_empty());
    let out = h.advance(MIN_RETRY * 3);
    assert!(connect_of(&out).is_none() && !out.iter().any(|a| matches!(a, Action::Send(_))));
}
