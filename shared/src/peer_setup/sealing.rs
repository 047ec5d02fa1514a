//! Which setup messages the peer seals, and which plain ones it refuses.
//!
//! A node seals to every peer unless the peer is known to open plain
//! setups only: its node info lacks the advertisement, or its last signed
//! session says so. The session is signed, so a server that strips the
//! advertisement from node lists cannot hide it; a plain setup signed
//! under such a session is a downgrade (the server hid *our* advertisement
//! from the peer) and is refused, and the next messages go sealed both
//! ways.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;

use crate::identity::NodeKey;
use crate::seal::{self, EphemeralSeed, SealError};
use crate::setup_auth::{SetupAuthError, SetupHeader};
use crate::setup_message::{Opens, SessionId, SetupMessage};
use crate::x25519::{self, X25519Secret};

/// What this node does about sealed setups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealPolicy {
    /// Never seal and never say it opens sealed setups (for a signalling
    /// server that cannot relay them); sealed ones that arrive are opened.
    Plain,
    /// Seal to peers that open sealed setups, plain to the others; refuse
    /// a plain setup from a peer whose signature says it opens sealed ones.
    Prefer,
    /// Seal to every peer and refuse every plain setup.
    Require,
}

impl SealPolicy {
    /// What this node advertises and tags its session with.
    pub fn opens(self) -> Opens {
        match self {
            SealPolicy::Plain => Opens::Plain,
            SealPolicy::Prefer | SealPolicy::Require => Opens::Sealed,
        }
    }
}

/// What every peer of a node shares: its key, its run and its policy.
#[derive(Clone)]
pub struct Local {
    pub key: Arc<NodeKey>,
    /// Tagged as [`SealPolicy::opens`] says.
    pub session: SessionId,
    pub policy: SealPolicy,
    /// The X25519 secret of `key`, which opens what is sealed to it.
    secret: X25519Secret,
}

impl Local {
    /// `entropy` makes the session (random in flnode, fixed in tests).
    pub fn new(key: Arc<NodeKey>, policy: SealPolicy, entropy: [u8; 8]) -> Self {
        let secret = x25519::secret_of(&key);
        Local {
            session: SessionId::from_entropy(entropy, policy.opens()),
            key,
            policy,
            secret,
        }
    }
}

/// Why a setup message was refused. The texts are what flnode logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Auth(#[from] SetupAuthError),
    #[error("sealed setup message does not open: {0}")]
    Unopened(SealError),
    #[error(
        "plain setup message from a peer whose signature says it opens sealed ones: refused as a downgrade \
         (the signalling server may be hiding that this node opens them)"
    )]
    Downgrade,
    #[error("plain setup message refused: this node requires sealed setups")]
    PlainRequired,
}

/// What this node knows of what its peer opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerOpens {
    /// Nothing yet (not in a node list, never heard): sealed, which its
    /// ID is enough for; a peer that cannot open it answers plain.
    Unknown,
    /// Its node info lacks the advertisement, or its last verified setup
    /// message was signed under a plain session.
    Plain,
    /// Its node info says so.
    Advertised,
    /// Its last verified setup message was signed under a sealing session:
    /// no node list says otherwise until it signs under another.
    Signed,
}

/// The peer's sealing state and the randomness its seals use.
pub(super) struct Sealing {
    peer_opens: PeerOpens,
    seeds: StdRng,
}

impl Sealing {
    pub(super) fn new(seeds: StdRng) -> Self {
        Sealing {
            peer_opens: PeerOpens::Unknown,
            seeds,
        }
    }

    /// The node list says what the peer opens.
    pub(super) fn listed(&mut self, opens: Opens) {
        self.peer_opens = match (opens, self.peer_opens) {
            (_, PeerOpens::Signed) => PeerOpens::Signed,
            (Opens::Sealed, _) => PeerOpens::Advertised,
            (Opens::Plain, _) => PeerOpens::Plain,
        };
    }

    /// A verified, fresh message of the peer was signed under `session`.
    pub(super) fn heard(&mut self, session: SessionId) {
        self.peer_opens = match session.opens() {
            Opens::Sealed => PeerOpens::Signed,
            Opens::Plain => PeerOpens::Plain,
        };
    }

    /// Whether what this node sends the peer now is sealed.
    pub(super) fn seals(&self, policy: SealPolicy) -> bool {
        match policy {
            SealPolicy::Plain => false,
            SealPolicy::Require => true,
            SealPolicy::Prefer => self.peer_opens != PeerOpens::Plain,
        }
    }

    /// `message` as it goes out under `header`: sealed to the peer, or
    /// plain, as [`Sealing::seals`] says.
    pub(super) fn outgoing(
        &mut self,
        local: &Local,
        header: &SetupHeader,
        message: SetupMessage,
    ) -> Result<SetupMessage, SealError> {
        if !self.seals(local.policy) {
            return Ok(message);
        }
        let peer = if header.id_init == header.sender {
            header.id_follow
        } else {
            header.id_init
        };
        seal::seal(&peer, header, &message, EphemeralSeed(self.seeds.gen()))
    }

    /// The message a verified, fresh setup carries: opened if sealed; a
    /// plain one only if the policy and the sender's session allow it.
    pub(super) fn incoming(
        &self,
        local: &Local,
        header: &SetupHeader,
        message: SetupMessage,
    ) -> Result<SetupMessage, Refusal> {
        match (message, local.policy, header.session.opens()) {
            (SetupMessage::Sealed(text), _, _) => seal::open(&local.secret, header, &text).map_err(Refusal::Unopened),
            (_, SealPolicy::Require, _) => Err(Refusal::PlainRequired),
            (_, SealPolicy::Prefer, Opens::Sealed) => Err(Refusal::Downgrade),
            (plain, _, _) => Ok(plain),
        }
    }
}
