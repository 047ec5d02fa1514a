//! The peer state machine's sealing rules: whom it seals to, which plain
//! setups it refuses, and how two nodes whose advertisements a server
//! strips still end up sealing both ways.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;

use super::harness::{connect_of, Harness, Remote};
use super::*;
use crate::identity::NodeKey;
use crate::message::PeerInfo;
use crate::seal::{self, EphemeralSeed, SealError};
use crate::setup_auth::{self, SetupHeader};
use crate::setup_message::Opens;
use crate::x25519::secret_of;

fn sent(actions: &[Action]) -> Vec<&PeerInfo> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send(info) => Some(info),
            _ => None,
        })
        .collect()
}

fn refusals(actions: &[Action]) -> Vec<&Refusal> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Refused { error, .. } => Some(error),
            _ => None,
        })
        .collect()
}

/// What `info`, sent to `to`, says once opened by it.
fn opened_by(to: &NodeKey, info: &PeerInfo) -> SetupMessage {
    let (sender, auth) = setup_auth::verify(info, &to.id()).expect("signed");
    match &info.message {
        SetupMessage::Sealed(text) => {
            seal::open(&secret_of(to), &SetupHeader::of(info, sender, &auth), text).expect("opens for its receiver")
        }
        plain => plain.clone(),
    }
}

/// This node as the initiator with `policy`, its peer `remote`.
fn initiator(policy: SealPolicy, remote: impl Fn(u8) -> Remote) -> Harness {
    let harness = Harness::with(1, policy, remote(2), PeerKind::WireGuard);
    if harness.setup.role() == Role::Initiator {
        harness
    } else {
        Harness::with(2, policy, remote(1), PeerKind::WireGuard)
    }
}

fn follower(policy: SealPolicy, remote: impl Fn(u8) -> Remote) -> Harness {
    let harness = Harness::with(1, policy, remote(2), PeerKind::WireGuard);
    if harness.setup.role() == Role::Follower {
        harness
    } else {
        Harness::with(2, policy, remote(1), PeerKind::WireGuard)
    }
}

fn sealing_peer(seed: u8) -> Remote {
    Remote::opening(seed, Opens::Sealed)
}

#[test]
fn a_peer_whose_node_info_advertises_sealed_setups_gets_them_sealed() {
    let mut h = initiator(SealPolicy::Prefer, sealing_peer);
    let conn = connect_of(&h.event(Event::Online(Some(Opens::Sealed)))).unwrap();
    let out = h.event(Event::OfferReady(conn, "v=0 offer".into()));
    let offer = sent(&out)[0];
    assert!(matches!(offer.message, SetupMessage::Sealed(_)), "{offer:?}");
    assert_eq!(opened_by(&h.remote.key, offer), SetupMessage::Offer("v=0 offer".into()));
    let out = h.event(Event::LocalCandidate(conn, "candidate:1".into()));
    assert_eq!(
        opened_by(&h.remote.key, sent(&out)[0]),
        SetupMessage::IceCandidate("candidate:1".into())
    );
}

#[test]
fn a_peer_nothing_is_known_of_yet_gets_sealed_setups() {
    let mut h = follower(SealPolicy::Prefer, Remote::new);
    let out = h.event(Event::Online(None));
    assert!(matches!(sent(&out)[0].message, SetupMessage::Sealed(_)));
    assert_eq!(opened_by(&h.remote.key, sent(&out)[0]), SetupMessage::Init);
    // An older node cannot open it, and says so by its plain session:
    // from then on it gets plain setups.
    h.remote.new_attempt();
    let conn = connect_of(&h.peer_says(SetupMessage::Offer("offer".into()))).unwrap();
    let out = h.event(Event::AnswerReady(conn, "answer".into()));
    assert_eq!(sent(&out)[0].message, SetupMessage::Answer("answer".into()));
}

#[test]
fn a_peer_without_the_advertisement_gets_plain_setups_under_our_sealing_session() {
    let mut h = follower(SealPolicy::Prefer, Remote::new);
    let out = h.event(Event::Online(Some(Opens::Plain)));
    let init = sent(&out)[0];
    assert_eq!(init.message, SetupMessage::Init);
    assert_eq!(
        init.auth.unwrap().session.opens(),
        Opens::Sealed,
        "the signature says we open them"
    );
    // An older node's plain setups are taken, and answered plain.
    h.remote.new_attempt();
    let conn = connect_of(&h.peer_says(SetupMessage::Offer("offer".into()))).unwrap();
    let out = h.event(Event::AnswerReady(conn, "answer".into()));
    assert_eq!(sent(&out)[0].message, SetupMessage::Answer("answer".into()));
}

#[test]
fn a_signed_sealing_session_outweighs_a_node_list_without_the_advertisement() {
    let mut h = follower(SealPolicy::Prefer, sealing_peer);
    h.remote.sealing = true;
    h.remote.new_attempt();
    let conn = connect_of(&h.peer_says(SetupMessage::Offer("offer".into()))).unwrap();
    h.event(Event::Online(Some(Opens::Plain)));
    let out = h.event(Event::AnswerReady(conn, "answer".into()));
    assert!(matches!(sent(&out)[0].message, SetupMessage::Sealed(_)));
    assert_eq!(
        opened_by(&h.remote.key, sent(&out)[0]),
        SetupMessage::Answer("answer".into())
    );
}

#[test]
fn a_plain_setup_under_a_sealing_session_is_refused_as_a_downgrade_and_the_reply_is_sealed() {
    let mut h = follower(SealPolicy::Prefer, sealing_peer);
    h.remote.new_attempt();
    let out = h.peer_says(SetupMessage::Offer("offer".into()));
    assert_eq!(refusals(&out), vec![&Refusal::Downgrade]);
    // Its signature told us it opens sealed setups: ours go sealed now,
    // starting with an Init that asks for a sealed offer at once.
    assert!(h.setup.seals());
    assert!(connect_of(&out).is_none(), "nothing is built on the refused offer");
    let init = sent(&out)[0];
    assert_eq!(opened_by(&h.remote.key, init), SetupMessage::Init);
    assert!(matches!(init.message, SetupMessage::Sealed(_)));
    // Only once per session of the peer: the next plain one is refused
    // and nothing more.
    h.remote.new_attempt();
    assert_eq!(h.peer_says(SetupMessage::Offer("offer".into())).len(), 1);
    // And the peer's sealed offer is taken.
    h.remote.sealing = true;
    h.remote.new_attempt();
    let out = h.peer_says(SetupMessage::Offer("offer".into()));
    assert!(
        matches!(&out[0], Action::Connect { offer: Some(sdp), .. } if sdp == "offer"),
        "{out:?}"
    );
}

#[test]
fn a_downgrade_refused_on_a_working_connection_leaves_it_alone() {
    let mut h = follower(SealPolicy::Prefer, sealing_peer);
    h.remote.sealing = true;
    h.remote.new_attempt();
    let conn = connect_of(&h.peer_says(SetupMessage::Offer("offer".into()))).unwrap();
    h.event(Event::AnswerReady(conn, "answer".into()));
    h.up(conn);
    h.remote.sealing = false;
    let out = h.peer_says(SetupMessage::IceCandidate("candidate:plain".into()));
    assert_eq!(refusals(&out), vec![&Refusal::Downgrade]);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(h.setup.state(), PeerState::Connected);
}

#[test]
fn require_seals_to_every_peer_and_refuses_every_plain_setup() {
    let mut h = follower(SealPolicy::Require, Remote::new);
    let out = h.event(Event::Online(Some(Opens::Plain)));
    assert_eq!(opened_by(&h.remote.key, sent(&out)[0]), SetupMessage::Init);
    assert!(matches!(sent(&out)[0].message, SetupMessage::Sealed(_)));
    h.remote.new_attempt();
    let out = h.peer_says(SetupMessage::Offer("offer".into()));
    assert_eq!(refusals(&out), vec![&Refusal::PlainRequired]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        Refusal::PlainRequired.to_string(),
        "plain setup message refused: this node requires sealed setups"
    );
}

#[test]
fn the_plain_policy_never_seals_but_opens_what_arrives_sealed() {
    let mut h = follower(SealPolicy::Plain, sealing_peer);
    let out = h.event(Event::Online(Some(Opens::Sealed)));
    let init = sent(&out)[0];
    assert_eq!(init.message, SetupMessage::Init);
    assert_eq!(init.auth.unwrap().session.opens(), Opens::Plain);
    h.remote.sealing = true;
    h.remote.new_attempt();
    let out = h.peer_says(SetupMessage::Offer("offer".into()));
    assert!(connect_of(&out).is_some(), "{out:?}");
    // A plain one under its sealing session is no downgrade to this node.
    h.remote.sealing = false;
    h.remote.new_attempt();
    assert!(refusals(&h.peer_says(SetupMessage::Offer("again".into()))).is_empty());
}

#[test]
fn a_sealed_setup_that_does_not_open_is_refused() {
    let mut h = follower(SealPolicy::Prefer, sealing_peer);
    h.remote.new_attempt();
    // Sealed to a third node, then signed by the peer for us.
    let honest = h.remote.says(&h.me, SetupMessage::Init);
    let (sender, auth) = setup_auth::verify(&honest, &h.me).unwrap();
    let header = SetupHeader::of(&honest, sender, &auth);
    let third = NodeKey::from_seed([9; 32]);
    let misdirected = seal::seal(&third.id(), &header, &SetupMessage::Init, EphemeralSeed([4; 32])).unwrap();
    let info = setup_auth::sign_with(&h.remote.key, &SetupHeader { seq: 7, ..header }, misdirected);
    let out = h.event(Event::Setup(info));
    assert_eq!(refusals(&out), vec![&Refusal::Unopened(SealError::DoesNotOpen)]);
}

#[test]
fn a_message_too_large_to_seal_is_not_sent_at_all() {
    let mut h = initiator(SealPolicy::Require, Remote::new);
    let conn = connect_of(&h.event(Event::Online(None))).unwrap();
    let huge = "x".repeat(seal::MAX_SEALED_PAYLOAD + 1);
    let out = h.event(Event::OfferReady(conn, huge));
    assert!(sent(&out).is_empty(), "never sent plain instead");
    assert!(
        matches!(&out[..], [Action::Unsent(SealError::TooLarge { .. })]),
        "{out:?}"
    );
}

/// Two nodes that both open sealed setups, behind a server that strips
/// every advertisement from its node lists: the first plain message each
/// way is refused as a downgrade, and the connection is then set up with
/// sealed messages only.
#[test]
fn a_stripped_advertisement_costs_one_refused_message_and_then_everything_is_sealed() {
    let now = Instant::now();
    let make = |seed: u8, peer: u8| {
        let key = Arc::new(NodeKey::from_seed([seed; 32]));
        PeerSetup::new(
            Local::new(key, SealPolicy::Prefer, [seed; 8]),
            NodeKey::from_seed([peer; 32]).id(),
            PeerKind::WireGuard,
            PeerTimings::default(),
            now,
            1_000,
            rand::rngs::StdRng::seed_from_u64(u64::from(seed)),
        )
    };
    let mut nodes = [make(1, 2), make(2, 1)];
    let mut clock = now;
    let mut wire: Vec<(usize, PeerInfo)> = Vec::new();
    let mut downgrades = 0;
    let mut plain_accepted = 0;
    let mut answered = false;
    for (index, node) in nodes.iter_mut().enumerate() {
        let mut out = Vec::new();
        node.on_event(Event::Online(Some(Opens::Plain)), clock, &mut out);
        wire.extend(sent(&out).into_iter().map(|info| (1 - index, info.clone())));
    }
    for _ in 0..200 {
        if let Some((to, info)) = (!wire.is_empty()).then(|| wire.remove(0)) {
            if !matches!(info.message, SetupMessage::Sealed(_)) {
                plain_accepted += 1;
            }
            let mut out = Vec::new();
            nodes[to].on_event(Event::Setup(info), clock, &mut out);
            for action in &out {
                match action {
                    Action::Refused {
                        error: Refusal::Downgrade,
                        ..
                    } => {
                        downgrades += 1;
                        plain_accepted -= 1;
                    }
                    Action::Refused { error, .. } => panic!("{error}"),
                    Action::Connect { conn, offer } => {
                        let mut more = Vec::new();
                        let event = match offer {
                            None => Event::OfferReady(*conn, "offer".into()),
                            Some(_) => {
                                answered = true;
                                Event::AnswerReady(*conn, "answer".into())
                            }
                        };
                        nodes[to].on_event(event, clock, &mut more);
                        wire.extend(sent(&more).into_iter().map(|info| (1 - to, info.clone())));
                    }
                    _ => {}
                }
            }
            wire.extend(sent(&out).into_iter().map(|info| (1 - to, info.clone())));
        } else if answered {
            break;
        } else {
            clock += Duration::from_millis(500);
            for (index, node) in nodes.iter_mut().enumerate() {
                let mut out = Vec::new();
                node.on_timer(clock, &mut out);
                wire.extend(sent(&out).into_iter().map(|info| (1 - index, info.clone())));
            }
        }
    }
    assert!(answered, "the offer was answered");
    assert!(downgrades >= 1, "the stripped advertisement was noticed");
    assert_eq!(plain_accepted, 0, "no plain message was ever acted on");
    assert!(nodes.iter().all(PeerSetup::seals));
}
