//! The setup frame between two nodes (`PeerSetup`): who it is between,
//! the step of the WebRTC setup it carries, plain or sealed, and the
//! sender's signed counters. The server relays it verbatim; the rules for
//! signing are in [`crate::setup_auth`], for sealing in [`crate::seal`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{NodeId, SignatureBytes};

/// Addresses of one connection setup between two nodes. Both directions use
/// the same pair; the server forwards to whichever is not the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id_init: NodeId,
    pub id_follow: NodeId,
    pub message: SetupMessage,
    /// Extension: the sender's signature and freshness counters (see
    /// [`crate::setup_auth`]). fledger ignores it; the server relays it
    /// verbatim; flnode refuses setup messages without a valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SetupAuth>,
}

impl PeerInfo {
    /// The other party of the setup, if `sender` is one of the two.
    pub fn counterpart_of(&self, sender: &NodeId) -> Option<NodeId> {
        if *sender == self.id_init {
            Some(self.id_follow)
        } else if *sender == self.id_follow {
            Some(self.id_init)
        } else {
            None
        }
    }
}

/// One step of a WebRTC connection setup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupMessage {
    /// Asks the initiator to send an offer.
    Init,
    Offer(String),
    Answer(String),
    /// A trickled candidate line (`candidate:...`), without sdpMid.
    IceCandidate(String),
    /// Extension: one of the four above, sealed to the receiver and padded
    /// (base64 of the HPKE encapsulated key and ciphertext; see
    /// [`crate::seal`]). One kind for all four, so the server cannot tell
    /// an Offer from a candidate. Sent only to nodes that open it.
    Sealed(String),
}

/// Whether a node opens sealed setup messages: what its node info
/// advertises, and what the session in its signed setups says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opens {
    /// Plain (signed) setups only: fledger, older flnodes and pages, and
    /// nodes that chose not to seal.
    Plain,
    /// Sealed setups too ([`crate::seal`]).
    Sealed,
}

/// The sender's run: 8 bytes, 16 hex characters on the wire.
///
/// A node that opens sealed setups starts its session with
/// [`SEALING_SESSION_TAG`] (the other 4 bytes random); any other session is
/// 8 random bytes. The session is covered by the setup signature, so no
/// server can remove the tag from a plain setup to hide that its sender
/// opens sealed ones (see [`crate::peer_setup`]'s downgrade rule), and
/// older nodes, which treat the session as opaque, still verify it. An old
/// node's random session carries the tag by chance once in 2^32 runs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 8]);

/// The first 4 bytes of the session of a node that opens sealed setups.
pub const SEALING_SESSION_TAG: [u8; 4] = *b"seal";

impl SessionId {
    /// A random session of a node that opens what `opens` says.
    pub fn random(opens: Opens) -> Self {
        Self::from_entropy(rand::random(), opens)
    }

    /// The session made of `entropy` for a node that opens what `opens`
    /// says: tagged for a sealing node, never tagged for a plain one.
    pub fn from_entropy(mut entropy: [u8; 8], opens: Opens) -> Self {
        if opens == Opens::Sealed {
            entropy[..4].copy_from_slice(&SEALING_SESSION_TAG);
        } else if entropy[..4] == SEALING_SESSION_TAG {
            entropy[0] ^= 0xff;
        }
        SessionId(entropy)
    }

    /// What the node that signed with this session opens.
    pub fn opens(&self) -> Opens {
        if self.0[..4] == SEALING_SESSION_TAG {
            Opens::Sealed
        } else {
            Opens::Plain
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealing_session_says_so_and_a_plain_one_never_does() {
        for _ in 0..1000 {
            assert_eq!(SessionId::random(Opens::Sealed).opens(), Opens::Sealed);
            assert_eq!(SessionId::random(Opens::Plain).opens(), Opens::Plain);
        }
        assert_eq!(SessionId([0x11; 8]).opens(), Opens::Plain);
        assert_eq!(SessionId(*b"seal\0\0\0\0").to_string(), "7365616c00000000");
    }

    #[test]
    fn sealed_messages_have_their_own_wire_form() {
        let json = r#"{"Sealed":"AAEC"}"#;
        let message: SetupMessage = serde_json::from_str(json).unwrap();
        assert_eq!(message, SetupMessage::Sealed("AAEC".into()));
        assert_eq!(serde_json::to_string(&message).unwrap(), json);
    }
}
