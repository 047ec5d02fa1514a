//! Fuzz targets for the datagram relay's parsers and budget: any bytes are
//! a relay frame or refused, and a session granted the relay, fed any
//! binary frames at any times, never closes, forwards only well-formed
//! frames for another node within the largest datagram, and never more
//! bytes than its budget allows.

mod fuzz_support;

use std::time::{Duration, Instant};

use flproto::announce::{sign_announce, AnnounceAuth, AnnouncePolicy};
use flproto::datagram_relay::frame::{Frame, FrameKind, HEADER_LEN};
use flproto::datagram_relay::DatagramRelayLimits;
use flproto::message::NodeMessage;
use flproto::node_info::NodeInfo;
use flproto::rate::RateLimit;
use flproto::session::{Action, DatagramVerdict, Inbound, ServerSession, SessionConfig};
use fuzz_support::{key, CARGO_TEST_TIME, CHALLENGE, SERVER};

#[test]
fn relay_frames_parse_to_their_bytes_or_are_refused() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|bytes: &[u8]| match Frame::parse(bytes) {
            Ok(frame) => {
                assert!(bytes.len() >= HEADER_LEN);
                assert!(FrameKind::ALL.iter().any(|kind| *kind as u8 == bytes[0]));
                assert_eq!(frame.payload, &bytes[HEADER_LEN..]);
                assert_eq!(frame.encode(), bytes, "what parses encodes to the same bytes");
            }
            Err(_) => assert!(bytes.len() < HEADER_LEN || bytes[0] > 2),
        });
}

const LIMITS: DatagramRelayLimits = DatagramRelayLimits {
    node_rate: RateLimit {
        per_second: 20_000,
        burst: 4_000,
    },
    max_datagram: 1_500,
};

/// A session whose node (seed 1) asked for the relay and was registered.
fn granted(now: Instant) -> ServerSession {
    let config = SessionConfig {
        datagram_relay: Some(LIMITS),
        ..SessionConfig::default()
    };
    let policy = AnnouncePolicy {
        require_bound: false,
        server_names: vec![SERVER.to_owned()].into(),
    };
    let mut out = Vec::new();
    let mut session = ServerSession::new(config, policy, CHALLENGE, now, &mut out);
    let signer = key(1);
    let info = NodeInfo::v3("fuzz", "flproto", signer.id(), "");
    let mut announce = sign_announce(&signer, CHALLENGE, info, &AnnounceAuth::Bound { server: SERVER.into() });
    announce.relay = true;
    let text = NodeMessage::Announce(announce).to_json();
    session.on_inbound(Inbound::Text(&text), now, &mut out);
    session.on_registered(r#"{"ListIDsReply":[]}"#.into(), &mut out);
    assert!(session.relay_granted());
    session
}

/// The script: frames of `[gap ms, length, bytes…]`, the length counted in
/// units of 8 bytes so that full-size datagrams are reachable.
#[test]
fn a_granted_session_forwards_only_good_frames_within_its_budget_and_never_closes() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|script: &[u8]| {
            let start = Instant::now();
            let mut now = start;
            let mut session = granted(now);
            let me = key(1).id();
            let mut forwarded_cost = 0u64;
            let mut rest = script;
            while let [gap, length, tail @ ..] = rest {
                now += Duration::from_millis(u64::from(*gap));
                let length = (usize::from(*length) * 8).min(tail.len());
                let (frame, tail) = tail.split_at(length);
                rest = tail;
                let mut out = Vec::new();
                let verdict = session.on_binary(frame, now, &mut out);
                assert!(out.is_empty(), "a granted node's binary frame never closes it: {out:?}");
                assert!(!out.iter().any(|action| matches!(action, Action::Close(_))));
                match verdict {
                    Some(DatagramVerdict::Forward { to }) => {
                        let parsed = Frame::parse(frame).expect("only relay frames are forwarded");
                        assert_eq!(parsed.node, to);
                        assert_ne!(to, me, "never back to its sender");
                        assert!(parsed.payload.len() <= LIMITS.max_datagram);
                        forwarded_cost += u64::from(DatagramRelayLimits::cost(frame.len()));
                    }
                    Some(DatagramVerdict::Drop(_)) => {}
                    None => panic!("a granted session judges every binary frame"),
                }
            }
            let elapsed = now.duration_since(start).as_secs_f64();
            let allowed = f64::from(LIMITS.node_rate.burst) + elapsed * f64::from(LIMITS.node_rate.per_second);
            assert!(
                forwarded_cost as f64 <= allowed + 1.0,
                "forwarded {forwarded_cost} bytes' worth where {allowed} were allowed"
            );
            assert!(!session.is_closed());
        });
}
