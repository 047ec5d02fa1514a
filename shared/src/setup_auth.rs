//! Signed setup messages: a node's PeerSetup frames carry its signature, so
//! a signalling server can relay them but can neither forge nor replay them.
//!
//! The SDP in an Offer or Answer carries the DTLS fingerprint of the
//! sender's certificate. Once the SDP is signed by the node key, the DTLS
//! handshake that follows is authenticated end to end between node keys:
//! a server that swaps the fingerprint breaks the signature, and a server
//! that keeps it cannot finish DTLS.
//!
//! Every frame carries an `auth` object next to `id_init`, `id_follow` and
//! `message` (fledger ignores unknown fields; flsignal relays the text
//! verbatim):
//!
//! * `session`: 8 random bytes per run of the sender, so the receiver can
//!   tell that the other side restarted;
//! * `generation`: grows with every new connection attempt of the sender,
//!   and across restarts too, because it starts from the wall clock in
//!   milliseconds ([`SetupSigner::next_generation`]);
//! * `seq`: counts the messages of one generation from 0;
//! * `signature`: Ed25519 by the sender's node key over [`signed_bytes`].
//!
//! The receiver ([`ReplayGuard`]) accepts a generation only if it is not
//! older than the newest it has seen from that sender, and within one
//! generation only growing sequence numbers: a replayed or stale frame is
//! refused, whatever the server does.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::identity::{self, NodeKey, SignatureError};
use crate::ids::NodeId;
use crate::ids::SignatureBytes;
use crate::message::{PeerInfo, SetupMessage};

/// Context string that starts every signed setup message (16 bytes with
/// the NUL): a setup signature can never pass as an Announce or anything
/// else the node key signs.
pub const SETUP_CONTEXT: &[u8; 16] = b"flnode/setup/v1\0";

/// The sender's run: 8 random bytes, 16 hex characters on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 8]);

impl SessionId {
    pub fn random() -> Self {
        SessionId(rand::random())
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", const_hex::encode(self.0))
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", const_hex::encode(self.0))
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&const_hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::ids::deserialize_str_with(deserializer, "16 hex characters", |text| {
            if text.len() != 16 {
                return Err("session must be 16 hex characters");
            }
            let mut bytes = [0u8; 8];
            const_hex::decode_to_slice(text.as_bytes(), &mut bytes).map_err(|_| "session is not hex")?;
            Ok(bytes)
        })
        .map(SessionId)
    }
}

/// The `auth` extension of a PeerSetup frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupAuth {
    pub session: SessionId,
    pub generation: u64,
    pub seq: u32,
    pub signature: SignatureBytes,
}

/// Why a setup message was refused. The texts are what flnode logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupAuthError {
    #[error("unsigned setup message (no auth field)")]
    Unsigned,
    #[error("setup message is not addressed to this node")]
    NotForUs,
    #[error("setup message names this node as its sender")]
    FromOurselves,
    #[error("setup signature by {sender} does not verify (forged or altered in transit)")]
    BadSignature { sender: NodeId },
    #[error("stale setup message: generation {generation} is older than {newest}")]
    Stale { generation: u64, newest: u64 },
    #[error("replayed setup message: generation {generation} seq {seq} is not after seq {last}")]
    Replayed { generation: u64, seq: u32, last: u32 },
}

fn message_kind(message: &SetupMessage) -> (u8, &str) {
    match message {
        SetupMessage::Init => (0, ""),
        SetupMessage::Offer(sdp) => (1, sdp),
        SetupMessage::Answer(sdp) => (2, sdp),
        SetupMessage::IceCandidate(candidate) => (3, candidate),
    }
}

/// The exact bytes a setup signature covers (documented in
/// `docs/protocol.md`, reproduced by the browser page):
///
/// ```text
/// "flnode/setup/v1" 0x00   16
/// id_init                  32
/// id_follow                32
/// sender                   32
/// session                   8
/// generation               u64 big-endian
/// seq                      u32 big-endian
/// kind                     u8: Init 0, Offer 1, Answer 2, IceCandidate 3
/// payload length           u32 big-endian (0 for Init)
/// payload                  the SDP or candidate text, UTF-8
/// ```
pub fn signed_bytes(info: &PeerInfo, sender: &NodeId, session: SessionId, generation: u64, seq: u32) -> Vec<u8> {
    let (kind, payload) = message_kind(&info.message);
    let mut bytes = Vec::with_capacity(16 + 96 + 8 + 8 + 4 + 1 + 4 + payload.len());
    bytes.extend_from_slice(SETUP_CONTEXT);
    bytes.extend_from_slice(info.id_init.as_bytes());
    bytes.extend_from_slice(info.id_follow.as_bytes());
    bytes.extend_from_slice(sender.as_bytes());
    bytes.extend_from_slice(&session.0);
    bytes.extend_from_slice(&generation.to_be_bytes());
    bytes.extend_from_slice(&seq.to_be_bytes());
    bytes.push(kind);
    // Payloads are bounded by the server's frame limit, far below 4 GiB.
    bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_be_bytes());
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

/// The sending side: one per node run, shared by all its peers.
#[derive(Debug)]
pub struct SetupSigner {
    session: SessionId,
    newest_generation: u64,
}

/// One connection attempt's counters: every message of the attempt is
/// signed with the same generation and the next sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub generation: u64,
    next_seq: u32,
}

impl SetupSigner {
    pub fn new(session: SessionId) -> Self {
        SetupSigner {
            session,
            newest_generation: 0,
        }
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    /// A fresh generation: the wall clock in milliseconds, or one more than
    /// the last if the clock has not moved on. Starting from the clock makes
    /// generations grow across restarts, so a receiver that remembers the
    /// node's newest generation refuses anything the previous run signed.
    pub fn next_generation(&mut self, unix_millis: u64) -> Attempt {
        self.newest_generation = unix_millis.max(self.newest_generation + 1);
        Attempt {
            generation: self.newest_generation,
            next_seq: 0,
        }
    }

    /// Signs `info` as `key`'s next message of `attempt`.
    pub fn sign(&self, key: &NodeKey, attempt: &mut Attempt, mut info: PeerInfo) -> PeerInfo {
        let seq = attempt.next_seq;
        attempt.next_seq = attempt.next_seq.saturating_add(1);
        info.auth = None;
        let signature = key.sign(&signed_bytes(&info, &key.id(), self.session, attempt.generation, seq));
        info.auth = Some(SetupAuth {
            session: self.session,
            generation: attempt.generation,
            seq,
            signature,
        });
        info
    }
}

/// Checks that `info` was signed by the counterpart of `me` and returns
/// the sender with its `auth`. Freshness is [`ReplayGuard`]'s job.
pub fn verify(info: &PeerInfo, me: &NodeId) -> Result<(NodeId, SetupAuth), SetupAuthError> {
    let auth = info.auth.ok_or(SetupAuthError::Unsigned)?;
    let sender = match (info.id_init == *me, info.id_follow == *me) {
        (true, true) => return Err(SetupAuthError::FromOurselves),
        (true, false) => info.id_follow,
        (false, true) => info.id_init,
        (false, false) => return Err(SetupAuthError::NotForUs),
    };
    let bytes = signed_bytes(info, &sender, auth.session, auth.generation, auth.seq);
    identity::verify(&sender, &bytes, &auth.signature).map_err(|error| match error {
        SignatureError::BadPublicKey | SignatureError::BadSignature => SetupAuthError::BadSignature { sender },
    })?;
    Ok((sender, auth))
}

/// What an accepted message means for the receiver's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Part of the attempt already under way.
    SameAttempt,
    /// The sender started a new attempt (same run).
    NewAttempt,
    /// The sender restarted (new session) or this is the first message we
    /// see from it.
    NewSession,
}

/// The receiving side, one per peer: the newest generation and sequence
/// number accepted from it.
#[derive(Debug, Default, Clone)]
pub struct ReplayGuard {
    newest: Option<(SessionId, u64, u32)>,
}

impl ReplayGuard {
    /// Accepts `auth` if it is newer than everything accepted before.
    pub fn accept(&mut self, auth: &SetupAuth) -> Result<Freshness, SetupAuthError> {
        let freshness = match self.newest {
            None => Freshness::NewSession,
            Some((_, generation, _)) if auth.generation < generation => {
                return Err(SetupAuthError::Stale {
                    generation: auth.generation,
                    newest: generation,
                })
            }
            Some((session, generation, last)) if auth.generation == generation => {
                // One generation belongs to one session; a different session
                // reusing it is a forgery attempt or a clock gone backwards
                // by exactly the wrong amount: refuse either way.
                if session != auth.session || auth.seq <= last {
                    return Err(SetupAuthError::Replayed {
                        generation,
                        seq: auth.seq,
                        last,
                    });
                }
                Freshness::SameAttempt
            }
            Some((session, _, _)) if session == auth.session => Freshness::NewAttempt,
            Some(_) => Freshness::NewSession,
        };
        self.newest = Some((auth.session, auth.generation, auth.seq));
        Ok(freshness)
    }
}

#[cfg(test)]
#[path = "setup_auth_tests.rs"]
mod tests;
