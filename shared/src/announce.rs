//! What a node signs to log in, and how the server checks it.
//!
//! Two forms exist, chosen by `Announce.version`:
//!
//! * **version 3** (fledger): Ed25519 over the raw 32 challenge bytes. Any
//!   server that hands a node a challenge can forward it to another server
//!   and log in there as that node, so operators can refuse it with
//!   `--require-bound-auth`.
//! * **version 4** (ours): Ed25519 over a domain-separated message that also
//!   names the server the node dialled:
//!
//!   ```text
//!   "flsignal/announce/v4" 0x00
//!   u16 big-endian length of server ‖ server (ASCII "host:port", lower case)
//!   challenge (32 bytes)
//!   node ID (32 bytes)
//!   ```
//!
//!   The context string makes the signature useless as any other signed
//!   message of ours, and the server name makes it useless at any other
//!   server. `docs/protocol.md` documents the same bytes.

use std::sync::Arc;

use crate::identity::{verify, NodeKey, SignatureError};
use crate::ids::{ChallengeNonce, NodeId};
use crate::message::Announce;
use crate::node_info::{NodeInfo, NodeInfoError, NodeInfoV3};
use crate::{BOUND_PROTOCOL_VERSION, FLEDGER_PROTOCOL_VERSION};

/// Context string that starts every bound announce message.
pub const BOUND_ANNOUNCE_CONTEXT: &[u8] = b"flsignal/announce/v4\0";

/// Longest accepted server authority, in bytes (DNS names are at most 253).
pub const MAX_SERVER_NAME_LEN: usize = 270;

/// Which signature a node produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceAuth {
    /// fledger's version 3: the raw challenge.
    Fledger,
    /// Our version 4, bound to the named server authority (`host:port`).
    Bound { server: String },
}

/// Why an Announce was refused. The text goes to the node in `Error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    #[error("unsupported announce version {0}; use 3 (fledger) or 4 (bound)")]
    UnknownVersion(u32),
    #[error("this server requires bound announces (version 4)")]
    BoundRequired,
    #[error("bound announce names no server")]
    MissingServer,
    #[error("announce is bound to server {signed:?}, not to this server")]
    WrongServer { signed: String },
    #[error(transparent)]
    NodeInfo(#[from] NodeInfoError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// The bytes signed by a version-4 announce.
pub fn bound_message(server: &str, challenge: &ChallengeNonce, node: &NodeId) -> Vec<u8> {
    let server = &server.as_bytes()[..server.len().min(MAX_SERVER_NAME_LEN)];
    let mut message = Vec::with_capacity(BOUND_ANNOUNCE_CONTEXT.len() + 2 + server.len() + 64);
    message.extend_from_slice(BOUND_ANNOUNCE_CONTEXT);
    message.extend_from_slice(&(server.len() as u16).to_be_bytes());
    message.extend_from_slice(server);
    message.extend_from_slice(challenge.as_bytes());
    message.extend_from_slice(node.as_bytes());
    message
}

/// Builds a signed Announce for `challenge`.
pub fn sign_announce(key: &NodeKey, challenge: ChallengeNonce, node_info: NodeInfo, auth: &AnnounceAuth) -> Announce {
    let (version, signature, server) = match auth {
        AnnounceAuth::Fledger => (FLEDGER_PROTOCOL_VERSION, key.sign(challenge.as_bytes()), None),
        AnnounceAuth::Bound { server } => (
            BOUND_PROTOCOL_VERSION,
            key.sign(&bound_message(server, &challenge, &key.id())),
            Some(server.clone()),
        ),
    };
    Announce {
        version,
        challenge,
        node_info,
        signature,
        server,
        relay: false,
    }
}

/// What the server accepts from one connection.
#[derive(Debug, Clone, Default)]
pub struct AnnouncePolicy {
    /// Refuse version 3.
    pub require_bound: bool,
    /// Server authorities (`host:port`, lower case) a version-4 announce may
    /// be bound to. Shared: every connection holds the same list.
    pub server_names: Arc<[String]>,
}

/// A node whose Announce checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNode {
    pub info: NodeInfoV3,
    /// True for version 4: the node speaks our extensions.
    pub bound: bool,
}

impl VerifiedNode {
    pub fn id(&self) -> NodeId {
        self.info.pubkey
    }
}

/// Checks `announce` against the challenge the server stored for this
/// connection — never the one the announce quotes.
pub fn verify_announce(
    announce: &Announce,
    stored_challenge: &ChallengeNonce,
    policy: &AnnouncePolicy,
) -> Result<VerifiedNode, AnnounceError> {
    let info = announce.node_info.validated()?;
    let node = info.pubkey;
    let bound = match announce.version {
        FLEDGER_PROTOCOL_VERSION if policy.require_bound => return Err(AnnounceError::BoundRequired),
        FLEDGER_PROTOCOL_VERSION => {
            verify(&node, stored_challenge.as_bytes(), &announce.signature)?;
            false
        }
        BOUND_PROTOCOL_VERSION => {
            let server = announce.server.as_deref().ok_or(AnnounceError::MissingServer)?;
            if !policy.server_names.iter().any(|name| name == server) {
                return Err(AnnounceError::WrongServer {
                    signed: server.chars().take(64).collect(),
                });
            }
            verify(
                &node,
                &bound_message(server, stored_challenge, &node),
                &announce.signature,
            )?;
            true
        }
        other => return Err(AnnounceError::UnknownVersion(other)),
    };
    Ok(VerifiedNode {
        info: info.clone(),
        bound,
    })
}

/// Normalises a server authority to `host:port` in lower case, filling in
/// the scheme's default port. `scheme` is `ws`, `wss`, `http` or `https`.
pub fn normalize_authority(authority: &str, scheme: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    let has_port = match authority.rsplit_once(':') {
        // An IPv6 literal without port ends in `]`.
        Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']'),
        None => false,
    };
    if has_port {
        authority
    } else {
        let port = if matches!(scheme, "wss" | "https") { 443 } else { 80 };
        format!("{authority}:{port}")
    }
}

/// The authority (`host:port`) of a `ws://` or `wss://` URL, normalised as
/// the node signs it. `None` if the URL has no such form.
pub fn authority_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(normalize_authority(authority, &scheme.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(names: &[&str]) -> AnnouncePolicy {
        AnnouncePolicy {
            require_bound: false,
            server_names: names.iter().map(|n| n.to_string()).collect::<Vec<_>>().into(),
        }
    }

    fn info(key: &NodeKey) -> NodeInfo {
        NodeInfo::v3("n", "test", key.id(), "")
    }

    #[test]
    fn fledger_announce_verifies_against_stored_challenge_only() {
        let key = NodeKey::from_seed([1; 32]);
        let stored = ChallengeNonce([0xab; 32]);
        let mut announce = sign_announce(&key, stored, info(&key), &AnnounceAuth::Fledger);
        assert!(!verify_announce(&announce, &stored, &policy(&[])).unwrap().bound);
        // Quoting another challenge changes nothing: the stored one counts.
        announce.challenge = ChallengeNonce([0; 32]);
        assert!(verify_announce(&announce, &stored, &policy(&[])).is_ok());
        let other = ChallengeNonce([0xcd; 32]);
        assert!(matches!(
            verify_announce(&announce, &other, &policy(&[])),
            Err(AnnounceError::Signature(SignatureError::BadSignature))
        ));
    }

    #[test]
    fn bound_announce_is_tied_to_the_server() {
        let key = NodeKey::generate();
        let challenge = ChallengeNonce::random();
        let auth = AnnounceAuth::Bound {
            server: "signal.example:8765".into(),
        };
        let announce = sign_announce(&key, challenge, info(&key), &auth);
        assert!(
            verify_announce(&announce, &challenge, &policy(&["signal.example:8765"]))
                .unwrap()
                .bound
        );
        assert!(matches!(
            verify_announce(&announce, &challenge, &policy(&["evil.example:8765"])),
            Err(AnnounceError::WrongServer { .. })
        ));
        // Claiming another server name than the one signed fails the signature.
        let mut forged = announce.clone();
        forged.server = Some("evil.example:8765".into());
        assert!(matches!(
            verify_announce(&forged, &challenge, &policy(&["evil.example:8765"])),
            Err(AnnounceError::Signature(_))
        ));
    }

    #[test]
    fn bound_signature_cannot_pass_as_fledger_signature() {
        let key = NodeKey::generate();
        let challenge = ChallengeNonce::random();
        let mut announce = sign_announce(
            &key,
            challenge,
            info(&key),
            &AnnounceAuth::Bound { server: "a:1".into() },
        );
        announce.version = FLEDGER_PROTOCOL_VERSION;
        assert!(verify_announce(&announce, &challenge, &policy(&["a:1"])).is_err());
    }

    #[test]
    fn policy_can_require_bound() {
        let key = NodeKey::generate();
        let challenge = ChallengeNonce::random();
        let announce = sign_announce(&key, challenge, info(&key), &AnnounceAuth::Fledger);
        let strict = AnnouncePolicy {
            require_bound: true,
            server_names: Arc::from([]),
        };
        assert_eq!(
            verify_announce(&announce, &challenge, &strict),
            Err(AnnounceError::BoundRequired)
        );
    }

    #[test]
    fn authorities_are_normalised() {
        assert_eq!(
            authority_of_url("ws://Signal.Example:8765/").as_deref(),
            Some("signal.example:8765")
        );
        assert_eq!(
            authority_of_url("wss://signal.example").as_deref(),
            Some("signal.example:443")
        );
        assert_eq!(authority_of_url("ws://[::1]").as_deref(), Some("[::1]:80"));
        assert_eq!(authority_of_url("ws://[::1]:9/x").as_deref(), Some("[::1]:9"));
        assert_eq!(authority_of_url("nonsense"), None);
    }
}
