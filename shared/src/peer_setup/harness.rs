//! A peer state machine with a clock of its own and a signing peer on the
//! other side, for the unit and property tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;

use super::*;
use crate::identity::NodeKey;
use crate::message::PeerInfo;
use crate::seal::{self, EphemeralSeed};
use crate::setup_auth::{sign_with, Attempt, SetupSigner};
use crate::setup_message::{Opens, SessionId};

/// The far side of the pair: signs what it sends as a real peer would,
/// and seals it when asked to.
pub(crate) struct Remote {
    pub(crate) key: NodeKey,
    signer: SetupSigner,
    pub(crate) attempt: Attempt,
    clock: u64,
    /// Seal what it says from now on.
    pub(crate) sealing: bool,
}

impl Remote {
    /// A peer that opens plain setups only (an older node).
    pub(crate) fn new(seed: u8) -> Self {
        Self::opening(seed, Opens::Plain)
    }

    /// A peer whose session says it opens what `opens` says.
    pub(crate) fn opening(seed: u8, opens: Opens) -> Self {
        let mut signer = SetupSigner::new(SessionId::from_entropy([seed; 8], opens));
        let attempt = signer.next_generation(1_000);
        Self {
            key: NodeKey::from_seed([seed; 32]),
            signer,
            attempt,
            clock: 1_000,
            sealing: false,
        }
    }

    pub(crate) fn id(&self) -> NodeId {
        self.key.id()
    }

    /// Starts a new attempt, as the peer does for every new connection.
    pub(crate) fn new_attempt(&mut self) -> u64 {
        self.clock += 1;
        self.attempt = self.signer.next_generation(self.clock);
        self.attempt.generation
    }

    /// `message` from this peer to `to`, signed under the current attempt.
    pub(crate) fn says(&mut self, to: &NodeId, message: SetupMessage) -> PeerInfo {
        let (id_init, id_follow) = match Role::between(&self.id(), to) {
            Role::Initiator => (self.id(), *to),
            Role::Follower => (*to, self.id()),
        };
        let header = self
            .signer
            .next_header(&self.key, &mut self.attempt, id_init, id_follow);
        let message = if self.sealing {
            seal::seal(to, &header, &message, EphemeralSeed([self.clock as u8; 32])).expect("sealable")
        } else {
            message
        };
        sign_with(&self.key, &header, message)
    }
}

/// A peer state machine with its own clock.
pub(crate) struct Harness {
    pub(crate) setup: PeerSetup,
    pub(crate) remote: Remote,
    pub(crate) now: Instant,
    pub(crate) me: NodeId,
}

impl Harness {
    /// This node with `seed` and the default policy, the peer with
    /// `remote_seed`.
    pub(crate) fn new(seed: u8, remote_seed: u8, kind: PeerKind) -> Self {
        Self::with(seed, SealPolicy::Prefer, Remote::new(remote_seed), kind)
    }

    /// This node with `seed` and `policy`, the peer `remote`.
    pub(crate) fn with(seed: u8, policy: SealPolicy, remote: Remote, kind: PeerKind) -> Self {
        let key = Arc::new(NodeKey::from_seed([seed; 32]));
        let me = key.id();
        let now = Instant::now();
        let setup = PeerSetup::new(
            Local::new(key, policy, [seed; 8]),
            remote.id(),
            kind,
            PeerTimings::default(),
            now,
            5_000,
            StdRng::seed_from_u64(u64::from(seed)),
        );
        Self { setup, remote, now, me }
    }

    pub(crate) fn initiator() -> Self {
        let harness = Self::new(1, 2, PeerKind::WireGuard);
        if harness.setup.role() == Role::Initiator {
            harness
        } else {
            Self::new(2, 1, PeerKind::WireGuard)
        }
    }

    pub(crate) fn follower() -> Self {
        let harness = Self::new(1, 2, PeerKind::WireGuard);
        if harness.setup.role() == Role::Follower {
            harness
        } else {
            Self::new(2, 1, PeerKind::WireGuard)
        }
    }

    pub(crate) fn event(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        self.setup.on_event(event, self.now, &mut out);
        out
    }

    /// A message from the peer, signed under its current attempt.
    pub(crate) fn peer_says(&mut self, message: SetupMessage) -> Vec<Action> {
        let info = self.remote.says(&self.me, message);
        self.event(Event::Setup(info))
    }

    /// Lets `by` pass, firing every timer due on the way.
    pub(crate) fn advance(&mut self, by: Duration) -> Vec<Action> {
        let end = self.now + by;
        let mut out = Vec::new();
        while self.setup.next_deadline() <= end {
            self.now = self.now.max(self.setup.next_deadline());
            self.setup.on_timer(self.now, &mut out);
        }
        self.now = end;
        out
    }

    /// Brings the connection up as the initiator: offer, answer, connected,
    /// both channels open. Returns its id.
    pub(crate) fn connect_as_initiator(&mut self) -> ConnId {
        let out = self.event(Event::Online(None));
        let conn = connect_of(&out).expect("an online initiator builds a connection");
        self.event(Event::OfferReady(conn, "offer".into()));
        self.remote.new_attempt();
        self.peer_says(SetupMessage::Answer("answer".into()));
        self.up(conn);
        conn
    }

    pub(crate) fn up(&mut self, conn: ConnId) {
        self.event(Event::Link(conn, LinkState::Connected));
        self.event(Event::WgOpen(conn));
        self.event(Event::CtlOpen(conn));
    }
}

pub(crate) fn connect_of(actions: &[Action]) -> Option<ConnId> {
    actions.iter().find_map(|action| match action {
        Action::Connect { conn, .. } => Some(*conn),
        _ => None,
    })
}

/// What the actions send, opened by whichever of the harness's two keys
/// (seeds 1 and 2) a sealed one is for.
pub(crate) fn sent(actions: &[Action]) -> Vec<SetupMessage> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send(info) => Some(opened(info)),
            _ => None,
        })
        .collect()
}

fn opened(info: &PeerInfo) -> SetupMessage {
    let SetupMessage::Sealed(text) = &info.message else {
        return info.message.clone();
    };
    [1u8, 2]
        .into_iter()
        .find_map(|seed| {
            let key = crate::identity::NodeKey::from_seed([seed; 32]);
            let (sender, auth) = crate::setup_auth::verify(info, &key.id()).ok()?;
            let header = crate::setup_auth::SetupHeader::of(info, sender, &auth);
            crate::seal::open(&crate::x25519::secret_of(&key), &header, text).ok()
        })
        .expect("sealed to one of the two keys")
}
