//! Fuzz target for the server's per-connection state machine: any sequence
//! of frames and timer ticks a connection can produce goes in, and the
//! actions that come out must keep the session's promises.
//!
//! The input is a script, one event per line:
//!
//! * a line starting with `{` or `"` is a text frame, as sent;
//! * `t<text>` is a text frame too (any text);
//! * `a<seed>` / `v<seed>` is a correctly signed Announce (fledger's v3 /
//!   our bound v4 for [`SERVER`]) by the key of that seed byte, which the
//!   server registers when the session asks; `A<seed>` / `V<seed>` the
//!   same, but the server refuses the registration (its source announced
//!   too often);
//! * `p<from><to><kind>` is a PeerSetup naming the keys of those seed bytes;
//! * `b`, `c`, `l` are a binary frame, a ping or pong, an oversized frame;
//! * `w<ms>` lets that many milliseconds pass and fires the timer;
//! * `x<reason>` closes the session from outside (replaced, slow reader…);
//! * `r` as the very first line makes the policy require bound announces.

mod fuzz_support;

use std::time::{Duration, Instant};

use flproto::announce::{sign_announce, verify_announce, AnnounceAuth, AnnouncePolicy, VerifiedNode};
use flproto::close::CloseReason;
use flproto::ids::NodeId;
use flproto::message::{NodeMessage, PeerInfo, ServerMessage, SetupMessage, SystemConfig};
use flproto::node_info::NodeInfo;
use flproto::session::{Action, Inbound, Refusal, ServerSession, SessionConfig, REPLACED_ERROR};
use flproto::FLEDGER_PROTOCOL_VERSION;
use fuzz_support::{key, lines, CARGO_TEST_TIME, CHALLENGE, SERVER};

/// The reasons the driver, not the session, closes for.
const DRIVER_CLOSES: [CloseReason; 3] = [CloseReason::Shutdown, CloseReason::Replaced, CloseReason::SlowReader];

/// Longest `Error` text a session may send back, whatever it was sent: the
/// most it quotes of a node's input is 64 characters (of up to 4 bytes).
const MAX_REFUSAL_TEXT: usize = 512;

#[test]
fn server_session_keeps_its_promises_under_any_script() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|script: &[u8]| run_script(script));
}

/// One event of a script, with what it needs to judge the actions.
enum Event {
    Inbound {
        text: Option<String>,
        kind: InboundKind,
        /// Whether the server refuses a registration this frame asks for.
        refused: bool,
    },
    Wait(Duration),
    Close(CloseReason),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum InboundKind {
    Text,
    Binary,
    Control,
    TooLarge,
}

fn parse_event(line: &[u8]) -> Option<Event> {
    let (&op, arg) = line.split_first()?;
    let text = |text: String| Event::Inbound {
        text: Some(text),
        kind: InboundKind::Text,
        refused: op.is_ascii_uppercase(),
    };
    let other = |kind| Event::Inbound {
        text: None,
        kind,
        refused: false,
    };
    let byte = |at: usize| arg.get(at).copied().unwrap_or(0);
    Some(match op {
        b'{' | b'"' => text(String::from_utf8_lossy(line).into_owned()),
        b't' => text(String::from_utf8_lossy(arg).into_owned()),
        b'a' | b'v' | b'A' | b'V' => {
            let signer = key(byte(0));
            let auth = if op.eq_ignore_ascii_case(&b'a') {
                AnnounceAuth::Fledger
            } else {
                AnnounceAuth::Bound { server: SERVER.into() }
            };
            let info = NodeInfo::v3("fuzz", "flproto", signer.id(), "STAT | PING");
            text(NodeMessage::Announce(sign_announce(&signer, CHALLENGE, info, &auth)).to_json())
        }
        b'p' => {
            let message = match byte(2) % 4 {
                0 => SetupMessage::Init,
                1 => SetupMessage::Offer("v=0".into()),
                2 => SetupMessage::Answer("v=0".into()),
                _ => SetupMessage::IceCandidate("candidate:1 1 udp 1 192.0.2.1 9 typ host".into()),
            };
            text(
                NodeMessage::PeerSetup(PeerInfo {
                    id_init: key(byte(0)).id(),
                    id_follow: key(byte(1)).id(),
                    message,
                    auth: None,
                })
                .to_json(),
            )
        }
        b'b' => other(InboundKind::Binary),
        b'c' => other(InboundKind::Control),
        b'l' => other(InboundKind::TooLarge),
        b'w' => {
            let ms: u64 = std::str::from_utf8(arg).ok()?.trim().parse().ok()?;
            Event::Wait(Duration::from_millis(ms.min(10_000_000)))
        }
        b'x' => Event::Close(DRIVER_CLOSES[usize::from(byte(0)) % DRIVER_CLOSES.len()]),
        _ => text(String::from_utf8_lossy(line).into_owned()),
    })
}

/// What the script has seen the session do so far.
struct Observed {
    policy: AnnouncePolicy,
    config: SessionConfig,
    registered: Option<VerifiedNode>,
    closed: bool,
    announce_refusals: u32,
    other_refusals: u32,
}

fn run_script(script: &[u8]) {
    let mut events = lines(script).peekable();
    let require_bound = events.next_if(|line| *line == b"r").is_some();
    let policy = AnnouncePolicy {
        require_bound,
        server_names: vec![SERVER.to_owned()].into(),
    };
    // With a TURN service, so that its credentials are checked too.
    let config = SessionConfig {
        turn_renewal: Some(std::time::Duration::from_secs(30)),
        ..SessionConfig::default()
    };
    let start = Instant::now();
    let mut now = start;
    let mut out = Vec::new();
    let mut session = ServerSession::new(config.clone(), policy.clone(), CHALLENGE, now, &mut out);
    assert_eq!(
        out,
        [Action::Send(ServerMessage::Challenge(
            FLEDGER_PROTOCOL_VERSION,
            CHALLENGE
        ))],
        "a session opens with its challenge, and only that"
    );
    let mut seen = Observed {
        policy,
        config,
        registered: None,
        closed: false,
        announce_refusals: 0,
        other_refusals: 0,
    };
    for event in events.filter_map(parse_event) {
        out.clear();
        match &event {
            Event::Inbound { text, kind, .. } => {
                let inbound = match (kind, text) {
                    (InboundKind::Text, Some(text)) => Inbound::Text(text),
                    (InboundKind::Binary, _) => Inbound::Binary,
                    (InboundKind::Control, _) => Inbound::Control,
                    _ => Inbound::TooLarge,
                };
                session.on_inbound(inbound, now, &mut out);
            }
            Event::Wait(pause) => {
                now += *pause;
                session.on_timer(now, &mut out);
                if !session.is_closed() {
                    assert!(
                        session.next_deadline() > now,
                        "a timer that leaves the session open moves its deadline on"
                    );
                }
            }
            Event::Close(reason) => session.close(*reason, &mut out),
        }
        check_actions(&event, &out, &mut seen);
        if out.iter().any(|action| matches!(action, Action::Register(_))) {
            answer_registration(&mut session, &event, &mut seen);
        }
        assert_eq!(session.is_closed(), seen.closed);
        let speaks_for = seen.registered.as_ref().filter(|_| !seen.closed).map(VerifiedNode::id);
        assert_eq!(
            session.node_id(),
            speaks_for,
            "a session speaks for its node until it closes"
        );
        assert_eq!(
            session.registered_node(),
            seen.registered.as_ref().map(VerifiedNode::id),
            "the node to remove at the end is the one the server entered"
        );
    }
    assert!(now >= start);
}

fn check_actions(event: &Event, actions: &[Action], seen: &mut Observed) {
    if seen.closed {
        assert!(actions.is_empty(), "nothing follows a Close: {actions:?}");
        return;
    }
    let frame = match event {
        Event::Inbound { text: Some(text), .. } => {
            let frame = serde_json::from_str::<NodeMessage>(text).ok();
            assert_eq!(
                flproto::inbound::parse(text).is_ok(),
                frame.is_some(),
                "the session reads exactly the frames NodeMessage reads: {text}"
            );
            frame
        }
        _ => None,
    };
    for (at, action) in actions.iter().enumerate() {
        match action {
            Action::Register(node) => {
                let Some(NodeMessage::Announce(announce)) = &frame else {
                    panic!("Register without an Announce frame");
                };
                assert!(seen.registered.is_none(), "a session registers once");
                assert_eq!(
                    verify_announce(announce, &CHALLENGE, &seen.policy).as_ref(),
                    Ok(node),
                    "Register only for an Announce that verifies against the stored challenge"
                );
                seen.registered = Some(node.clone());
            }
            Action::Relay { to, notify } => {
                let node = seen.registered.as_ref().expect("Relay only once registered");
                let Some(NodeMessage::PeerSetup(setup)) = &frame else {
                    panic!("Relay without a PeerSetup frame");
                };
                let sender: NodeId = node.id();
                assert_eq!(setup.counterpart_of(&sender), Some(*to), "relayed to the other party");
                assert_ne!(*to, sender, "never relayed back to the sender");
                assert_eq!(*notify, node.bound);
            }
            Action::SendListing(_) => panic!("a listing only in answer to a registration"),
            Action::SendTurnCredentials => {
                let node = seen.registered.as_ref().expect("TURN credentials only once registered");
                assert!(node.bound, "TURN credentials only for version-4 nodes");
            }
            Action::SendNodeList => {
                assert!(seen.registered.is_some(), "no node list before the Announce");
                assert!(matches!(frame, Some(NodeMessage::ListIDsRequest)));
            }
            Action::Refuse(refusal) => {
                assert!(refusal.to_string().len() <= MAX_REFUSAL_TEXT, "{refusal}");
                match refusal {
                    Refusal::Announce(_) => seen.announce_refusals += 1,
                    _ => seen.other_refusals += 1,
                }
                assert!(seen.announce_refusals <= seen.config.max_auth_failures);
                assert!(seen.other_refusals <= seen.config.max_protocol_errors);
            }
            Action::Ping => assert!(matches!(event, Event::Wait(_)), "pings come from the timer"),
            Action::Send(ServerMessage::SystemConfig(_)) => {
                panic!("the system configuration only in answer to a registration")
            }
            Action::Send(ServerMessage::Error(text)) => {
                assert_eq!(text, REPLACED_ERROR);
                assert_eq!(actions.get(at + 1), Some(&Action::Close(CloseReason::Replaced)));
            }
            Action::Send(other) => panic!("unexpected frame after the challenge: {other:?}"),
            Action::Close(reason) => {
                assert_eq!(at + 1, actions.len(), "Close is the last action");
                check_close_reason(event, *reason, seen);
                seen.closed = true;
            }
        }
    }
}

/// Answers a `Register` as the server does: enters the node and hands the
/// session its first list, or refuses (the source announced too often).
fn answer_registration(session: &mut ServerSession, event: &Event, seen: &mut Observed) {
    let refused = matches!(event, Event::Inbound { refused: true, .. });
    let mut out = Vec::new();
    if refused {
        session.refuse_registration(&mut out);
        assert_eq!(
            out,
            [
                Action::Refuse(Refusal::SourceRateLimited),
                Action::Close(CloseReason::RateLimited)
            ]
        );
        assert_eq!(session.registered_node(), None, "a refused node is not held");
        seen.registered = None;
        seen.closed = true;
        return;
    }
    let list = r#"{"ListIDsReply":[]}"#.to_owned();
    session.on_registered(list.clone(), &mut out);
    let mut reply = vec![Action::Send(ServerMessage::SystemConfig(SystemConfig::default()))];
    if seen.registered.as_ref().is_some_and(|node| node.bound) {
        reply.push(Action::SendTurnCredentials);
    }
    reply.push(Action::SendListing(list));
    assert_eq!(
        out, reply,
        "the handshake reply: the system configuration, a version-4 node's TURN credential, the first list"
    );
}

fn check_close_reason(event: &Event, reason: CloseReason, seen: &Observed) {
    let inbound = match event {
        Event::Inbound { kind, .. } => Some(*kind),
        _ => None,
    };
    match reason {
        CloseReason::BinaryFrame => assert!(inbound == Some(InboundKind::Binary)),
        CloseReason::TooLarge => assert!(inbound == Some(InboundKind::TooLarge)),
        CloseReason::RateLimited => assert!(inbound.is_some()),
        CloseReason::AuthFailed => {
            assert_eq!(seen.announce_refusals, seen.config.max_auth_failures);
        }
        CloseReason::ProtocolErrors => {
            assert_eq!(seen.other_refusals, seen.config.max_protocol_errors);
        }
        CloseReason::HandshakeTimeout => {
            assert!(matches!(event, Event::Wait(_)));
            assert!(seen.registered.is_none(), "a registered node is past its handshake");
        }
        CloseReason::IdleTimeout => assert!(matches!(event, Event::Wait(_))),
        // Strikes come from the driver's reports of dropped relays, which
        // scripts do not make; a throttled sender is closed on a setup.
        CloseReason::RelayAbuse => assert!(inbound.is_some() || matches!(event, Event::Close(_))),
        CloseReason::FragmentTimeout => assert!(matches!(event, Event::Wait(_) | Event::Close(_))),
        CloseReason::Shutdown | CloseReason::Replaced | CloseReason::SlowReader => {
            assert!(
                matches!(event, Event::Close(r) if *r == reason),
                "only the driver closes for {reason:?}"
            );
        }
    }
}
