//! The session's part in the datagram relay: who gets it, what the node
//! is told, and what becomes of each binary frame.

use std::time::Duration;

use super::tests::{Harness, FIRST_LIST, SERVER};
use super::*;
use crate::announce::{sign_announce, AnnounceAuth};
use crate::datagram_relay::frame::{Frame, FrameKind};
use crate::datagram_relay::{DatagramRelayLimits, RelayAnswer, RelayGrant, RELAY_OFF};
use crate::identity::NodeKey;
use crate::message::{NodeMessage, PeerInfo, SetupMessage};
use crate::node_info::NodeInfo;
use crate::rate::RateLimit;

fn bound() -> AnnounceAuth {
    AnnounceAuth::Bound { server: SERVER.into() }
}

/// A node that announced with `auth`, asking for the relay if `ask`,
/// registered by the server; returns the harness and what it was sent.
fn joined(config: SessionConfig, key: &NodeKey, auth: AnnounceAuth, ask: bool) -> (Harness, Vec<Action>) {
    let (mut harness, _) = Harness::new(config);
    let info = NodeInfo::v3("n", "test", key.id(), "");
    let mut announce = sign_announce(key, harness.challenge, info, &auth);
    announce.relay = ask;
    let out = harness.text(&NodeMessage::Announce(announce).to_json());
    assert!(matches!(out.as_slice(), [Action::Register(_)]), "{out:?}");
    let mut out = Vec::new();
    harness.session.on_registered(FIRST_LIST.into(), &mut out);
    (harness, out)
}

fn frame(to: NodeId, payload: &[u8]) -> Vec<u8> {
    Frame {
        kind: FrameKind::Datagram,
        node: to,
        payload,
    }
    .encode()
}

fn binary(harness: &mut Harness, bytes: &[u8]) -> (Option<DatagramVerdict>, Vec<Action>) {
    let mut out = Vec::new();
    let verdict = harness.session.on_binary(bytes, harness.now, &mut out);
    (verdict, out)
}

#[test]
fn a_bound_node_that_asks_is_granted_and_told_so_before_its_first_list() {
    let (harness, out) = joined(SessionConfig::default(), &NodeKey::generate(), bound(), true);
    let grant = RelayGrant::of(&DatagramRelayLimits::default());
    assert_eq!(
        out,
        vec![
            Action::Send(ServerMessage::SystemConfig(SystemConfig::default())),
            Action::Send(ServerMessage::Relay(RelayAnswer::Granted(grant))),
            Action::SendListing(FIRST_LIST.into()),
        ]
    );
    assert!(harness.session.relay_granted());
}

#[test]
fn granted_frames_are_forwarded_outside_the_message_rate() {
    let config = SessionConfig {
        rate_limit: RateLimit {
            per_second: 1,
            burst: 2,
        },
        ..SessionConfig::default()
    };
    let key = NodeKey::generate();
    let peer = NodeKey::generate().id();
    let (mut harness, _) = joined(config, &key, bound(), true);
    // Far past the message rate, within the byte budget.
    for _ in 0..100 {
        let (verdict, out) = binary(&mut harness, &frame(peer, &[0; 100]));
        assert_eq!(verdict, Some(DatagramVerdict::Forward { to: peer }));
        assert!(out.is_empty(), "{out:?}");
    }
    // Relay frames are signs of life.
    harness.now += DEFAULT_IDLE_TIMEOUT - Duration::from_secs(1);
    binary(&mut harness, &frame(peer, &[0; 100]));
    assert!(!harness
        .advance(Duration::from_secs(2))
        .contains(&Action::Close(CloseReason::IdleTimeout)));
}

#[test]
fn a_node_over_its_bandwidth_gets_drops_and_keeps_its_connection_and_its_setups() {
    let limits = DatagramRelayLimits {
        node_rate: RateLimit {
            per_second: 10_000,
            burst: 5_000,
        },
        max_datagram: 1500,
    };
    let config = SessionConfig {
        datagram_relay: Some(limits),
        ..SessionConfig::default()
    };
    let key = NodeKey::generate();
    let peer = NodeKey::generate().id();
    let (mut harness, _) = joined(config, &key, bound(), true);
    let full = frame(peer, &[0; 1400]);
    let cost = DatagramRelayLimits::cost(full.len()) as usize;
    let verdicts: Vec<_> = (0..20).map(|_| binary(&mut harness, &full)).collect();
    let forwarded = verdicts
        .iter()
        .filter(|(verdict, _)| matches!(verdict, Some(DatagramVerdict::Forward { .. })))
        .count();
    assert_eq!(forwarded, 5_000 / cost, "the burst, and not a frame more");
    assert!(verdicts
        .iter()
        .skip(forwarded)
        .all(|(verdict, out)| *verdict == Some(DatagramVerdict::Drop(DatagramDrop::NodeRate)) && out.is_empty()));
    // Signalling is not held up by the relay budget.
    let setup = NodeMessage::PeerSetup(PeerInfo {
        id_init: key.id(),
        id_follow: peer,
        message: SetupMessage::Init,
        auth: None,
    });
    assert_eq!(
        harness.text(&setup.to_json()),
        vec![Action::Relay { to: peer, notify: true }]
    );
    // The budget comes back at its rate.
    harness.now += Duration::from_millis(200);
    assert_eq!(
        binary(&mut harness, &full).0,
        Some(DatagramVerdict::Forward { to: peer })
    );
    assert!(!harness.session.is_closed());
}

#[test]
fn malformed_oversized_and_self_addressed_frames_are_dropped_not_fatal() {
    let key = NodeKey::generate();
    let peer = NodeKey::generate().id();
    let (mut harness, _) = joined(SessionConfig::default(), &key, bound(), true);
    let max = DatagramRelayLimits::default().max_datagram;
    let mut unknown_kind = frame(peer, b"x");
    unknown_kind[0] = 9;
    for (bytes, drop) in [
        (vec![0u8; 10], DatagramDrop::Malformed),
        (unknown_kind, DatagramDrop::Malformed),
        (frame(peer, &vec![0; max + 1]), DatagramDrop::TooLarge),
        (frame(key.id(), b"x"), DatagramDrop::SelfAddressed),
    ] {
        let (verdict, out) = binary(&mut harness, &bytes);
        assert_eq!(verdict, Some(DatagramVerdict::Drop(drop)));
        assert!(out.is_empty());
    }
    assert_eq!(
        binary(&mut harness, &frame(peer, &vec![0; max])).0,
        Some(DatagramVerdict::Forward { to: peer }),
        "the largest datagram itself passes"
    );
}

#[test]
fn binary_frames_close_nodes_that_did_not_ask_or_could_not_or_were_refused() {
    let off = SessionConfig {
        datagram_relay: None,
        ..SessionConfig::default()
    };
    let cases = [
        ("bound, did not ask", SessionConfig::default(), bound(), false, None),
        // fledger's announce has no relay; asking with it changes nothing.
        (
            "version 3, asked",
            SessionConfig::default(),
            AnnounceAuth::Fledger,
            true,
            None,
        ),
        (
            "asked, relay off",
            off,
            bound(),
            true,
            Some(RelayAnswer::Refused(RELAY_OFF.into())),
        ),
    ];
    for (case, config, auth, ask, answer) in cases {
        let (mut harness, out) = joined(config, &NodeKey::generate(), auth, ask);
        let told = out.iter().find_map(|action| match action {
            Action::Send(ServerMessage::Relay(answer)) => Some(answer.clone()),
            _ => None,
        });
        assert_eq!(told, answer, "{case}");
        assert!(!harness.session.relay_granted(), "{case}");
        let (verdict, out) = binary(&mut harness, &frame(NodeKey::generate().id(), b"x"));
        assert_eq!(verdict, None, "{case}");
        assert_eq!(out, vec![Action::Close(CloseReason::BinaryFrame)], "{case}");
    }
}

#[test]
fn binary_frames_before_the_announce_close_as_before() {
    let (mut harness, _) = Harness::new(SessionConfig::default());
    let (verdict, out) = binary(&mut harness, &frame(NodeId([1; 32]), b"x"));
    assert_eq!((verdict, out), (None, vec![Action::Close(CloseReason::BinaryFrame)]));
    let (verdict, out) = binary(&mut harness, b"x");
    assert_eq!((verdict, out), (None, vec![]), "nothing after the close");
}
