//! Property tests of the peer state machine over random event sequences:
//! whatever the peer, the WebRTC stack and the clock do, it never panics,
//! never holds more than one live connection plus one being built, never
//! applies anything of a stale attempt, keeps its back-off bounded and its
//! timers ahead of the clock, and everything it sends verifies and is fresh.
//! Whatever this node's sealing policy, what the peer opens and what the
//! node list says: it seals exactly when it must, everything sealed opens
//! for the peer, and a plain setup it must refuse does nothing else.
//! The relay carries only when it may (granted, answering, no data channel
//! for the fallback time), never while the current `wg` channel is open,
//! and is left in the same step a `wg` channel opens.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::harness::{Harness, Remote};
use super::*;
use crate::message::PeerInfo;
use crate::setup_auth::{ReplayGuard, SetupHeader};
use crate::setup_message::Opens;

#[derive(Debug, Clone)]
enum Step {
    /// The node list has the peer, saying it opens this (or the node
    /// registered and the list did not have it).
    Online(Option<Opens>),
    Offline,
    NetworkChanged,
    /// A message from the peer; `fresh` starts a new attempt of the
    /// peer's, `sealed` seals it.
    Peer {
        message: PeerMessage,
        fresh: bool,
        sealed: bool,
    },
    /// The peer's last message again.
    Replayed,
    /// The peer's last message with its payload changed in transit.
    Tampered,
    /// An event of the WebRTC stack about the `n`th connection built
    /// (modulo; one past the last names a connection that never existed).
    Stack(StackEvent, usize),
    Wait(Duration),
    /// The server grants the relay, or it is gone.
    RelayGranted(bool),
    /// The peer answers a relay ping.
    RelayPong,
}

#[derive(Debug, Clone, Copy)]
enum PeerMessage {
    Init,
    Offer,
    Answer,
    Candidate,
}

#[derive(Debug, Clone, Copy)]
enum StackEvent {
    OfferReady,
    AnswerReady,
    BuildFailed,
    LocalCandidate,
    Connected,
    Failed,
    WgOpen,
    CtlOpen,
    Pong,
}

fn step() -> impl Strategy<Value = Step> {
    let peer = prop_oneof![
        Just(PeerMessage::Init),
        Just(PeerMessage::Offer),
        Just(PeerMessage::Answer),
        Just(PeerMessage::Candidate),
    ];
    let stack = prop_oneof![
        Just(StackEvent::OfferReady),
        Just(StackEvent::AnswerReady),
        Just(StackEvent::BuildFailed),
        Just(StackEvent::LocalCandidate),
        Just(StackEvent::Connected),
        Just(StackEvent::Failed),
        Just(StackEvent::WgOpen),
        Just(StackEvent::CtlOpen),
        Just(StackEvent::Pong),
    ];
    prop_oneof![
        1 => prop_oneof![Just(None), Just(Some(Opens::Plain)), Just(Some(Opens::Sealed))].prop_map(Step::Online),
        1 => Just(Step::Offline),
        1 => Just(Step::NetworkChanged),
        4 => (peer, any::<bool>(), any::<bool>()).prop_map(|(message, fresh, sealed)| Step::Peer { message, fresh, sealed }),
        1 => Just(Step::Replayed),
        1 => Just(Step::Tampered),
        6 => (stack, 0usize..4).prop_map(|(event, back)| Step::Stack(event, back)),
        3 => (1u64..4_000).prop_map(|ms| Step::Wait(Duration::from_millis(ms))),
        1 => any::<bool>().prop_map(Step::RelayGranted),
        2 => Just(Step::RelayPong),
    ]
}

/// The generation a test payload was made for (`kind g=N`).
fn generation_of(payload: &str) -> u64 {
    payload
        .rsplit("g=")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// What the checks remember across steps.
#[derive(Default)]
struct Observer {
    built: Vec<ConnId>,
    live: HashSet<ConnId>,
    /// The peer's generation described on each connection.
    described: HashMap<ConnId, u64>,
    newest_described: u64,
    /// The peer's view of what we send.
    guard: ReplayGuard,
    last_from_peer: Option<PeerInfo>,
    /// What the node must believe the peer opens: the spec of
    /// `sealing.rs`, restated.
    peer_opens: Believed,
    /// Where datagrams go, as the actions said.
    carrier: Option<Carrier>,
    /// Whether the relay is granted, and when the peer last answered it.
    relay_granted: bool,
    relay_pong: Option<std::time::Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Believed {
    #[default]
    Unknown,
    Plain,
    Listed,
    Signed,
}

impl Observer {
    fn must_seal(&self, policy: SealPolicy) -> bool {
        match policy {
            SealPolicy::Plain => false,
            SealPolicy::Require => true,
            SealPolicy::Prefer => self.peer_opens != Believed::Plain,
        }
    }

    fn check(&mut self, h: &Harness, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Connect { conn, offer } => {
                    assert!(!self.built.contains(conn), "connection ids are never reused");
                    self.built.push(*conn);
                    self.live.insert(*conn);
                    assert!(self.live.len() <= 2, "one live connection plus one being built at most");
                    if let Some(sdp) = offer {
                        self.describe(*conn, generation_of(sdp));
                    }
                }
                Action::ApplyAnswer { conn, sdp } => {
                    assert!(self.live.contains(conn));
                    assert!(!self.described.contains_key(conn), "one description per connection");
                    self.describe(*conn, generation_of(sdp));
                }
                Action::ApplyCandidate { conn, candidate } => {
                    assert!(self.live.contains(conn));
                    assert_eq!(
                        self.described.get(conn),
                        Some(&generation_of(candidate)),
                        "a candidate is applied only to the connection its attempt described"
                    );
                }
                Action::Close(conn) => assert!(self.live.remove(conn), "only live connections are closed"),
                Action::CarryData(Some(Carrier::Link(conn))) | Action::Ping(conn) => assert!(self.live.contains(conn)),
                Action::Send(info) => {
                    let (sender, auth) = crate::setup_auth::verify(info, &h.remote.id()).expect("our signature");
                    assert_eq!(sender, h.setup.local.key.id());
                    self.guard.accept(&auth).expect("what we send is fresh and in order");
                    let sealed = matches!(info.message, SetupMessage::Sealed(_));
                    assert_eq!(
                        sealed,
                        self.must_seal(h.setup.local.policy),
                        "sealed exactly when it must be"
                    );
                    assert_eq!(h.setup.seals(), sealed);
                    if let SetupMessage::Sealed(text) = &info.message {
                        let header = SetupHeader::of(info, sender, &auth);
                        let opened = crate::seal::open(&crate::x25519::secret_of(&h.remote.key), &header, text)
                            .expect("what we seal opens for the peer");
                        assert!(!matches!(opened, SetupMessage::Sealed(_)));
                    }
                }
                Action::Unsent(error) => panic!("every test message can be sealed: {error}"),
                Action::Refused {
                    error: Refusal::Unopened(error),
                    ..
                } => panic!("an honest sealed message always opens: {error}"),
                Action::Finished => panic!("a configured peer never finishes"),
                Action::CarryData(Some(Carrier::Relay)) => {
                    assert!(self.relay_granted, "the relay carries only once granted");
                    let answered = self
                        .relay_pong
                        .is_some_and(|at| h.now.duration_since(at) < KEEPALIVE_TIMEOUT);
                    assert!(answered, "the relay carries only while the peer answers through it");
                }
                Action::CarryData(None)
                | Action::ProbeSignalling
                | Action::Handover(_)
                | Action::Refused { .. }
                | Action::RelayPing => {}
            }
            if let Action::CarryData(carrier) = action {
                assert_ne!(*carrier, self.carrier, "a carrier is announced only when it changes");
                self.carrier = *carrier;
            }
        }
        assert_eq!(h.setup.carrier(), self.carrier, "the driver was told the carrier");
        let current_wg = h.setup.current.as_ref().filter(|link| link.wg_open).map(|link| link.id);
        if let Some(conn) = current_wg {
            assert_eq!(
                self.carrier,
                Some(Carrier::Link(conn)),
                "an open wg channel carries at once; never the relay beside it"
            );
        }
        let (current, previous) = h.setup.connections();
        let held: HashSet<ConnId> = current.into_iter().chain(previous).collect();
        assert_eq!(
            held, self.live,
            "the machine holds exactly the connections it did not close"
        );
        let delay = h.setup.retry_delay();
        assert!(
            (MIN_RETRY..=MAX_RETRY).contains(&delay),
            "back-off {delay:?} out of bounds"
        );
        assert!(h.setup.next_deadline() > h.now, "every timer is ahead of the clock");
    }

    fn describe(&mut self, conn: ConnId, generation: u64) {
        assert!(
            generation >= self.newest_described,
            "a stale attempt is never described"
        );
        self.newest_described = generation;
        self.described.insert(conn, generation);
    }
}

fn run(h: &mut Harness, observer: &mut Observer, step: Step) {
    let actions = match step {
        Step::Online(listed) => {
            if let Some(opens) = listed {
                observer.peer_opens = match (opens, observer.peer_opens) {
                    (_, Believed::Signed) => Believed::Signed,
                    (Opens::Sealed, _) => Believed::Listed,
                    (Opens::Plain, _) => Believed::Plain,
                };
            }
            h.event(Event::Online(listed))
        }
        Step::Offline => h.event(Event::Offline),
        Step::NetworkChanged => h.event(Event::NetworkChanged),
        Step::Peer { message, fresh, sealed } => {
            if fresh {
                h.remote.new_attempt();
            }
            h.remote.sealing = sealed;
            let g = h.remote.attempt.generation;
            let message = match message {
                PeerMessage::Init => SetupMessage::Init,
                PeerMessage::Offer => SetupMessage::Offer(format!("offer g={g}")),
                PeerMessage::Answer => SetupMessage::Answer(format!("answer g={g}")),
                PeerMessage::Candidate => SetupMessage::IceCandidate(format!("candidate g={g}")),
            };
            let me = h.setup.local.key.id();
            let info = h.remote.says(&me, message);
            observer.last_from_peer = Some(info.clone());
            // Honest and in order: its signature and freshness pass, and
            // the node learns from its session what the peer opens.
            let session_opens = info.auth.expect("signed").session.opens();
            observer.peer_opens = match session_opens {
                Opens::Sealed => Believed::Signed,
                Opens::Plain => Believed::Plain,
            };
            let refusal = match (sealed, h.setup.local.policy, session_opens) {
                (true, _, _) => None,
                (false, SealPolicy::Require, _) => Some(Refusal::PlainRequired),
                (false, SealPolicy::Prefer, Opens::Sealed) => Some(Refusal::Downgrade),
                (false, _, _) => None,
            };
            let actions = h.event(Event::Setup(info));
            if let Some(refusal) = refusal {
                assert!(
                    matches!(actions.first(), Some(Action::Refused { error, .. }) if *error == refusal),
                    "a plain setup that must be refused is refused as {refusal:?}: {actions:?}"
                );
                // What may follow a downgrade is a new attempt (sealed, as
                // `check` makes sure), never anything done with the message.
                assert!(
                    !actions.iter().any(|action| matches!(
                        action,
                        Action::ApplyAnswer { .. }
                            | Action::ApplyCandidate { .. }
                            | Action::Connect { offer: Some(_), .. }
                    )),
                    "nothing of a refused message is used: {actions:?}"
                );
                if refusal == Refusal::PlainRequired {
                    assert_eq!(actions.len(), 1, "{actions:?}");
                }
            }
            actions
        }
        Step::Replayed | Step::Tampered => {
            let Some(mut info) = observer.last_from_peer.clone() else {
                return;
            };
            if matches!(step, Step::Tampered) {
                info.message = SetupMessage::Offer("offer g=0 with a swapped fingerprint".into());
            }
            let actions = h.event(Event::Setup(info));
            assert!(
                matches!(&actions[..], [Action::Refused { .. }]),
                "a replayed or tampered message is refused and does nothing else: {actions:?}"
            );
            actions
        }
        Step::Stack(event, back) => {
            let conn = observer
                .built
                .len()
                .checked_sub(back)
                .and_then(|index| observer.built.get(index))
                .copied()
                .unwrap_or(ConnId(u64::MAX));
            let event = match event {
                StackEvent::OfferReady => Event::OfferReady(conn, "local offer".into()),
                StackEvent::AnswerReady => Event::AnswerReady(conn, "local answer".into()),
                StackEvent::BuildFailed => Event::BuildFailed(conn),
                StackEvent::LocalCandidate => Event::LocalCandidate(conn, "candidate:local".into()),
                StackEvent::Connected => Event::Link(conn, LinkState::Connected),
                StackEvent::Failed => Event::Link(conn, LinkState::Failed),
                StackEvent::WgOpen => Event::WgOpen(conn),
                StackEvent::CtlOpen => Event::CtlOpen(conn),
                StackEvent::Pong => Event::Pong(conn),
            };
            h.event(event)
        }
        Step::Wait(by) => {
            // Timer by timer, so that each action is checked at the time
            // it was decided.
            let end = h.now + by;
            while h.setup.next_deadline() <= end {
                let due = h.setup.next_deadline() - h.now;
                let actions = h.advance(due);
                observer.check(h, &actions);
            }
            h.advance(end - h.now)
        }
        Step::RelayGranted(granted) => {
            observer.relay_granted = granted;
            if !granted {
                observer.relay_pong = None;
            }
            h.event(Event::RelayGranted(granted))
        }
        Step::RelayPong => {
            if observer.relay_granted {
                observer.relay_pong = Some(h.now);
            }
            h.event(Event::RelayPong)
        }
    };
    observer.check(h, &actions);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_event_sequences_keep_every_invariant(
        initiator in any::<bool>(),
        policy in prop_oneof![Just(SealPolicy::Plain), Just(SealPolicy::Prefer), Just(SealPolicy::Require)],
        peer_opens in prop_oneof![Just(Opens::Plain), Just(Opens::Sealed)],
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let one_initiates = Role::between(&Remote::new(1).id(), &Remote::new(2).id()) == Role::Initiator;
        let (me, peer) = if initiator == one_initiates { (1, 2) } else { (2, 1) };
        let mut h = Harness::with(me, policy, Remote::opening(peer, peer_opens), PeerKind::WireGuard);
        assert_eq!(h.setup.role() == Role::Initiator, initiator);
        let mut observer = Observer::default();
        for step in steps {
            run(&mut h, &mut observer, step);
        }
    }
}
