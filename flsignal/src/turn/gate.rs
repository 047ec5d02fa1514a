//! What flsignal checks before a client's TURN request reaches the TURN
//! state machine (`turn-server-proto`), which knows nothing of nodes:
//!
//! * an Allocate must carry a credential this server issued
//!   (`EXPIRY:NODEID`, see `flproto::turn_credentials`), unexpired, with a
//!   message integrity made with its password; the node it names must be
//!   under its allocation cap, and the server under its own;
//! * a CreatePermission or ChannelBind may name only peers the
//!   [`PeerPolicy`] allows.
//!
//! Refusals the state machine would give anyway (a bad credential: 401)
//! are left to it, only counted here; the others are answered here, signed
//! with the credential the request proved it holds.

use std::net::SocketAddr;

use flproto::turn_credentials::{CredentialError, TurnSecret};
use flproto::NodeId;
use turn_server_proto::types::attribute::XorPeerAddress;
use turn_server_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION};
use turn_server_proto::types::stun::attribute::{
    AttributeStaticType, ErrorCode, MessageIntegrity, MessageIntegritySha256, Username,
};
use turn_server_proto::types::stun::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageIntegrityCredentials,
};

use super::peer_policy::PeerPolicy;
use super::refusal;

/// The credential an allocation was made with, kept to sign this server's
/// own answers to the client's later requests.
#[derive(Debug, Clone)]
pub struct User {
    pub node: NodeId,
    pub credentials: LongTermKeyCredentials,
}

impl User {
    pub fn username(&self) -> &str {
        self.credentials.username()
    }

    pub fn password(&self) -> &str {
        self.credentials.password()
    }
}

/// What to do with one request.
#[derive(Debug)]
pub enum Verdict {
    /// Hand it to the state machine.
    Pass,
    /// Hand it to the state machine, which must first learn this user.
    Admit(User),
    /// Hand it to the state machine, which will refuse it (401); counted
    /// under this reason.
    PassToRefuse(&'static str),
    /// Answer with this signed error instead; counted under `reason`.
    Refuse { reason: &'static str, reply: Vec<u8> },
}

/// How many allocations there are, for the caps.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// By the node the request names.
    pub by_node: usize,
    /// By everyone on this instance.
    pub total: usize,
}

/// The limits the gate enforces.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub per_node: usize,
    pub total: usize,
}

pub struct Gate<'a> {
    pub secret: &'a TurnSecret,
    pub realm: &'a str,
    pub policy: &'a PeerPolicy,
    pub caps: Caps,
}

impl Gate<'_> {
    /// Decides about `message`, a request from a client. `user` is the
    /// credential the client authenticated with, if it did; `allocated`
    /// whether it holds an allocation; `held` counts the allocations of
    /// the node an Allocate names. An Allocate from a client that holds one
    /// is the state machine's to answer (a retransmission, or 437).
    pub fn check(
        &self,
        message: &Message<'_>,
        user: Option<&User>,
        allocated: bool,
        now_unix: u64,
        held: impl FnOnce(&NodeId) -> Held,
    ) -> Verdict {
        if !message.has_class(MessageClass::Request) {
            return Verdict::Pass;
        }
        let method = message.method();
        if method == ALLOCATE && !allocated {
            self.allocate(message, now_unix, held)
        } else if method == CREATE_PERMISSION || method == CHANNEL_BIND {
            self.peers(message, user)
        } else {
            Verdict::Pass
        }
    }

    fn allocate(&self, message: &Message<'_>, now_unix: u64, held: impl FnOnce(&NodeId) -> Held) -> Verdict {
        let has_integrity =
            message.has_attribute(MessageIntegrity::TYPE) || message.has_attribute(MessageIntegritySha256::TYPE);
        let Ok(username) = message.attribute::<Username>() else {
            // The first, unauthenticated request: the state machine
            // answers with its realm and nonce.
            return if has_integrity {
                Verdict::PassToRefuse(CredentialError::Malformed.label())
            } else {
                Verdict::Pass
            };
        };
        let user = match self.secret.check_username(username.username(), now_unix) {
            Ok(user) => user,
            Err(error) => return Verdict::PassToRefuse(error.label()),
        };
        let password = self.secret.password_for(username.username());
        let credentials = LongTermKeyCredentials::new(username.username().to_owned(), password, self.realm.to_owned());
        let integrity = MessageIntegrityCredentials::from(credentials.clone());
        let Ok(algorithm) = message.validate_integrity(&integrity) else {
            return Verdict::PassToRefuse(CredentialError::WrongPassword.label());
        };
        let user = User {
            node: user.node,
            credentials,
        };
        let held = held(&user.node);
        if held.by_node >= self.caps.per_node {
            return self.refuse(
                message,
                &user,
                algorithm,
                ErrorCode::ALLOCATION_QUOTA_REACHED,
                "node_allocation_cap",
            );
        }
        if held.total >= self.caps.total {
            return self.refuse(
                message,
                &user,
                algorithm,
                ErrorCode::INSUFFICIENT_CAPACITY,
                "server_allocation_cap",
            );
        }
        Verdict::Admit(user)
    }

    fn peers(&self, message: &Message<'_>, user: Option<&User>) -> Verdict {
        // Without an allocation the state machine refuses it (437).
        let Some(user) = user else {
            return Verdict::Pass;
        };
        let denied = (0..)
            .map_while(|n| message.nth_attribute::<XorPeerAddress>(n).ok())
            .map(|peer| peer.addr(message.transaction_id()))
            .any(|peer: SocketAddr| self.policy.check(peer.ip()).is_err());
        if !denied {
            return Verdict::Pass;
        }
        let integrity = MessageIntegrityCredentials::from(user.credentials.clone());
        match message.validate_integrity(&integrity) {
            Ok(algorithm) => self.refuse(message, user, algorithm, ErrorCode::FORBIDDEN, "denied_peer"),
            // Not the allocation's owner: the state machine says so.
            Err(_) => Verdict::Pass,
        }
    }

    fn refuse(
        &self,
        message: &Message<'_>,
        user: &User,
        algorithm: IntegrityAlgorithm,
        code: u16,
        reason: &'static str,
    ) -> Verdict {
        match refusal::signed_error(message, code, &user.credentials, algorithm) {
            Some(reply) => Verdict::Refuse { reason, reply },
            // Cannot happen with these attributes; refusing silently is
            // still a refusal.
            None => Verdict::Refuse {
                reason,
                reply: Vec::new(),
            },
        }
    }
}
