use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::announce::{sign_announce, AnnounceAuth};
use crate::identity::NodeKey;
use crate::message::{NodeMessage, PeerInfo, SetupMessage};
use crate::node_info::NodeInfo;
use crate::rate::RateLimit;
use crate::relay_share::{AbuseLimits, DEFAULT_RELAY_THROTTLE_AFTER};

pub(super) const SERVER: &str = "signal.test:8765";

fn policy() -> AnnouncePolicy {
    AnnouncePolicy {
        require_bound: false,
        server_names: vec![SERVER.to_owned()].into(),
    }
}

pub(super) struct Harness {
    pub(super) session: ServerSession,
    pub(super) challenge: ChallengeNonce,
    pub(super) now: Instant,
}

impl Harness {
    pub(super) fn new(config: SessionConfig) -> (Self, Vec<Action>) {
        let challenge = ChallengeNonce::random();
        let now = Instant::now();
        let mut out = Vec::new();
        let session = ServerSession::new(config, policy(), challenge, now, &mut out);
        (
            Self {
                session,
                challenge,
                now,
            },
            out,
        )
    }

    pub(super) fn text(&mut self, text: &str) -> Vec<Action> {
        let mut out = Vec::new();
        self.session.on_inbound(Inbound::Text(text), self.now, &mut out);
        out
    }

    pub(super) fn announce(&mut self, key: &NodeKey, auth: &AnnounceAuth) -> Vec<Action> {
        let info = NodeInfo::v3("n", "test", key.id(), "STAT");
        let announce = sign_announce(key, self.challenge, info, auth);
        self.text(&NodeMessage::Announce(announce).to_json())
    }

    pub(super) fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        let mut out = Vec::new();
        self.session.on_timer(self.now, &mut out);
        out
    }
}

/// A session whose node announced and that the server registered.
pub(super) fn registered(key: &NodeKey, auth: AnnounceAuth) -> Harness {
    let (mut harness, _) = Harness::new(SessionConfig::default());
    let out = harness.announce(key, &auth);
    assert!(matches!(out.as_slice(), [Action::Register(_)]), "{out:?}");
    let mut out = Vec::new();
    harness.session.on_registered(FIRST_LIST.into(), &mut out);
    assert_eq!(out.len(), 2, "{out:?}");
    harness
}

/// The node list the tests' registry renders for a registration.
pub(super) const FIRST_LIST: &str = r#"{"ListIDsReply":[]}"#;

fn setup(from: NodeId, to: NodeId) -> String {
    NodeMessage::PeerSetup(PeerInfo {
        id_init: from,
        id_follow: to,
        message: SetupMessage::Offer("v=0".into()),
        auth: None,
    })
    .to_json()
}

#[test]
fn starts_with_a_version_3_challenge() {
    let (harness, out) = Harness::new(SessionConfig::default());
    assert_eq!(out, vec![Action::Send(ServerMessage::Challenge(3, harness.challenge))]);
}

#[test]
fn list_and_relay_need_an_announce_first() {
    let (mut harness, _) = Harness::new(SessionConfig::default());
    let a = NodeKey::generate().id();
    let b = NodeKey::generate().id();
    // fledger asks for the list before announcing: no list, no error; the
    // list comes with the announce.
    assert_eq!(harness.text(r#""ListIDsRequest""#), vec![]);
    assert_eq!(harness.text(&setup(a, b)), vec![Action::Refuse(Refusal::NotAnnounced)]);
    assert_eq!(
        harness.text(r#"{"NodeStats":[]}"#),
        vec![Action::Refuse(Refusal::NotAnnounced)]
    );
}

#[test]
fn a_replaced_session_is_told_before_it_is_closed() {
    let mut harness = registered(&NodeKey::generate(), AnnounceAuth::Fledger);
    let mut out = Vec::new();
    harness.session.close(CloseReason::Replaced, &mut out);
    assert_eq!(
        out,
        vec![
            Action::Send(ServerMessage::Error(REPLACED_ERROR.into())),
            Action::Close(CloseReason::Replaced)
        ]
    );
    harness.session.close(CloseReason::Shutdown, &mut out);
    assert_eq!(out.len(), 2, "closing twice does nothing");
}

#[test]
fn pings_keep_an_idle_node_alive_only_while_it_answers() {
    let key = NodeKey::generate();
    let mut harness = registered(&key, AnnounceAuth::Fledger);
    assert_eq!(harness.advance(DEFAULT_PING_INTERVAL), vec![Action::Ping]);
    let mut out = Vec::new();
    harness.session.on_inbound(Inbound::Control, harness.now, &mut out);
    assert!(out.is_empty());
    assert_eq!(harness.advance(DEFAULT_PING_INTERVAL), vec![Action::Ping]);
    assert_eq!(harness.advance(DEFAULT_PING_INTERVAL), vec![Action::Ping]);
    // No pong for the idle timeout since the last one heard: closed.
    let out = harness.advance(DEFAULT_IDLE_TIMEOUT - 2 * DEFAULT_PING_INTERVAL);
    assert_eq!(out, vec![Action::Close(CloseReason::IdleTimeout)]);
}

#[test]
fn relays_only_for_a_party_of_the_setup() {
    let key = NodeKey::generate();
    let me = key.id();
    let other = NodeKey::generate().id();
    let third = NodeKey::generate().id();
    let mut harness = registered(&key, AnnounceAuth::Fledger);
    assert_eq!(
        harness.text(&setup(me, other)),
        vec![Action::Relay {
            to: other,
            notify: false
        }]
    );
    assert_eq!(
        harness.text(&setup(other, me)),
        vec![Action::Relay {
            to: other,
            notify: false
        }]
    );
    assert_eq!(
        harness.text(&setup(other, third)),
        vec![Action::Refuse(Refusal::SpoofedSender)]
    );
    assert_eq!(
        harness.text(&setup(me, me)),
        vec![Action::Refuse(Refusal::SelfAddressed)]
    );
}

#[test]
fn bound_nodes_are_told_about_undeliverable_setups() {
    let key = NodeKey::generate();
    let other = NodeKey::generate().id();
    let mut harness = registered(&key, AnnounceAuth::Bound { server: SERVER.into() });
    assert_eq!(
        harness.text(&setup(key.id(), other)),
        vec![Action::Relay {
            to: other,
            notify: true
        }]
    );
}

#[test]
fn binary_and_oversize_frames_close_with_their_codes() {
    for (inbound, reason) in [
        (Inbound::Binary, CloseReason::BinaryFrame),
        (Inbound::TooLarge, CloseReason::TooLarge),
    ] {
        let (mut harness, _) = Harness::new(SessionConfig::default());
        let mut out = Vec::new();
        harness.session.on_inbound(inbound, harness.now, &mut out);
        assert_eq!(out, vec![Action::Close(reason)]);
    }
}

#[test]
fn a_flood_is_closed_by_the_rate_limit() {
    let config = SessionConfig {
        rate_limit: RateLimit {
            per_second: 10,
            burst: 20,
        },
        ..SessionConfig::default()
    };
    let (mut harness, _) = Harness::new(config);
    let mut out = Vec::new();
    for _ in 0..20 {
        harness.session.on_inbound(Inbound::Control, harness.now, &mut out);
    }
    assert!(out.is_empty());
    harness.session.on_inbound(Inbound::Control, harness.now, &mut out);
    assert_eq!(out, vec![Action::Close(CloseReason::RateLimited)]);
}

#[test]
fn list_requests_beyond_their_own_rate_are_refused() {
    let key = NodeKey::generate();
    let mut harness = registered(&key, AnnounceAuth::Fledger);
    for _ in 0..DEFAULT_LIST_RATE_LIMIT.burst {
        assert_eq!(harness.text(r#""ListIDsRequest""#), vec![Action::SendNodeList]);
    }
    assert_eq!(
        harness.text(r#""ListIDsRequest""#),
        vec![Action::Refuse(Refusal::ListRateLimited)]
    );
    // Told, never closed for it.
    for _ in 0..2 * DEFAULT_MAX_PROTOCOL_ERRORS {
        assert_eq!(
            harness.text(r#""ListIDsRequest""#),
            vec![Action::Refuse(Refusal::ListRateLimited)]
        );
    }
    harness.now += Duration::from_secs(1);
    assert_eq!(harness.text(r#""ListIDsRequest""#), vec![Action::SendNodeList]);
}

#[test]
fn a_sender_dropped_over_its_share_is_throttled_then_closed_with_4007() {
    let key = NodeKey::generate();
    let other = NodeKey::generate().id();
    let mut harness = registered(&key, AnnounceAuth::Fledger);
    let limits = AbuseLimits::default();
    let mut out = Vec::new();
    for _ in 0..limits.throttle_after {
        harness.session.on_relay_over_share(harness.now, &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        harness.text(&setup(key.id(), other)),
        vec![Action::Refuse(Refusal::RelayThrottled)]
    );
    let mut last = Vec::new();
    for _ in 0..limits.disconnect_after {
        last = harness.text(&setup(key.id(), other));
        if !last.is_empty() && last != vec![Action::Refuse(Refusal::RelayThrottled)] {
            break;
        }
    }
    assert_eq!(last, vec![Action::Close(CloseReason::RelayAbuse)]);
    assert_eq!(CloseReason::RelayAbuse.code(), 4007);
}

#[test]
fn a_throttled_sender_that_stops_is_forgiven() {
    let key = NodeKey::generate();
    let other = NodeKey::generate().id();
    let mut harness = registered(&key, AnnounceAuth::Fledger);
    let mut out = Vec::new();
    for _ in 0..DEFAULT_RELAY_THROTTLE_AFTER {
        harness.session.on_relay_over_share(harness.now, &mut out);
    }
    harness.now += Duration::from_secs(u64::from(DEFAULT_RELAY_THROTTLE_AFTER));
    assert!(matches!(
        harness.text(&setup(key.id(), other)).as_slice(),
        [Action::Relay { .. }]
    ));
}

#[test]
fn an_incomplete_fragmented_message_times_out_despite_pings() {
    let key = NodeKey::generate();
    let mut harness = registered(&key, AnnounceAuth::Fledger);
    harness.session.on_partial_message(Some(harness.now));
    let mut out = Vec::new();
    for _ in 0..9 {
        harness.now += DEFAULT_FRAGMENT_TIMEOUT / 10;
        harness.session.on_inbound(Inbound::Control, harness.now, &mut out);
        harness.session.on_timer(harness.now, &mut out);
    }
    assert!(out.iter().all(|action| *action == Action::Ping), "{out:?}");
    assert!(harness.session.next_deadline() <= harness.now + DEFAULT_FRAGMENT_TIMEOUT / 10);
    let out = harness.advance(DEFAULT_FRAGMENT_TIMEOUT / 10);
    assert_eq!(out, vec![Action::Close(CloseReason::FragmentTimeout)]);
}

#[test]
fn malformed_messages_are_refused_then_closed() {
    let (mut harness, _) = Harness::new(SessionConfig::default());
    for _ in 1..DEFAULT_MAX_PROTOCOL_ERRORS {
        assert!(matches!(
            harness.text("{not json").as_slice(),
            [Action::Refuse(Refusal::Malformed(_))]
        ));
    }
    let out = harness.text(r#"{"Nonsense":1}"#);
    assert_eq!(out.last(), Some(&Action::Close(CloseReason::ProtocolErrors)));
}

#[test]
fn errors_quote_no_more_than_a_bounded_detail() {
    let (mut harness, _) = Harness::new(SessionConfig::default());
    let huge = format!("{{\"Announce\":\"{}\"}}", "é".repeat(10_000));
    let out = harness.text(&huge);
    let [Action::Refuse(Refusal::Malformed(detail))] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert!(detail.len() <= MAX_ERROR_DETAIL);
}

/// Text shaped like our frames, so the fuzzing reaches past the JSON parser.
const FRAME_LIKE: &str = "\\{\"(Announce|PeerSetup|ListIDsRequest|NodeStats)\":.{0,40}\\}";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever arrives, in whatever order, the session never panics and
    /// closes at most once.
    #[test]
    fn never_panics_on_arbitrary_input(
        frames in proptest::collection::vec(
            prop_oneof![
                any::<String>().prop_map(Some),
                FRAME_LIKE.prop_map(Some),
                Just(None),
            ],
            0..40,
        ),
        steps_ms in proptest::collection::vec(0u64..30_000, 0..40),
    ) {
        let (mut harness, _) = Harness::new(SessionConfig::default());
        let mut closes = 0;
        for (index, frame) in frames.iter().enumerate() {
            let mut out = Vec::new();
            match frame {
                Some(text) => harness.session.on_inbound(Inbound::Text(text), harness.now, &mut out),
                None => harness.session.on_inbound(Inbound::Control, harness.now, &mut out),
            }
            if let Some(step) = steps_ms.get(index) {
                harness.now += Duration::from_millis(*step);
                harness.session.on_timer(harness.now, &mut out);
            }
            closes += out.iter().filter(|a| matches!(a, Action::Close(_))).count();
            let privileged = out.iter().any(|a| matches!(a, Action::Register(_) | Action::Relay { .. }));
            prop_assert!(!privileged, "random input registered or relayed: {:?}", out);
        }
        prop_assert!(closes <= 1);
    }
}
