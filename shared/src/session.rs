//! The server's per-connection state machine.
//!
//! A [`ServerSession`] is fed what arrives on one WebSocket ([`Inbound`]) and
//! the passing of time, and answers with [`Action`]s for the driver in
//! `flsignal` to carry out. It never touches a socket, a task or a clock,
//! which is why every rule about a single connection — handshake, rate,
//! liveness, who may relay what — lives here and is tested without a network.

use std::time::{Duration, Instant};

use crate::announce::{verify_announce, AnnounceError, AnnouncePolicy, VerifiedNode};
use crate::close::CloseReason;
use crate::ids::{ChallengeNonce, NodeId};
use crate::message::{NodeMessage, ServerMessage};
use crate::rate::{RateLimit, TokenBucket};
use crate::relay_share::{AbuseLimits, AbuseMeter, Standing};
use crate::FLEDGER_PROTOCOL_VERSION;

/// Default time a new connection has to announce itself.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time without any inbound frame (pongs included) before closing.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default interval between the server's WebSocket pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default number of refused Announces before the connection is closed.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;
/// Default number of refused messages of other kinds before closing.
pub const DEFAULT_MAX_PROTOCOL_ERRORS: u32 = 16;
/// Default message rate: generous for trickled ICE candidates, far below
/// what it takes to load the server.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 50,
    burst: 200,
};
/// Default rate of `ListIDsRequest`s one connection may make: each costs
/// a fresh sample and up to ~70 KB of answer for 16 bytes asked, while
/// a fledger node asks with its Announce and otherwise gets its list
/// pushed; the browser page asks when its user clicks "refresh".
pub const DEFAULT_LIST_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 1,
    burst: 4,
};
/// Default time a fragmented WebSocket message may take to complete;
/// pings between its fragments do not extend it.
pub const DEFAULT_FRAGMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The per-connection limits.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub max_auth_failures: u32,
    pub max_protocol_errors: u32,
    pub rate_limit: RateLimit,
    pub list_rate_limit: RateLimit,
    pub relay_abuse: AbuseLimits,
    pub fragment_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            max_protocol_errors: DEFAULT_MAX_PROTOCOL_ERRORS,
            rate_limit: DEFAULT_RATE_LIMIT,
            list_rate_limit: DEFAULT_LIST_RATE_LIMIT,
            relay_abuse: AbuseLimits::default(),
            fragment_timeout: DEFAULT_FRAGMENT_TIMEOUT,
        }
    }
}

/// What arrived on the connection.
#[derive(Debug, Clone, Copy)]
pub enum Inbound<'a> {
    Text(&'a str),
    Binary,
    /// A WebSocket ping or pong: proof of life, nothing else.
    Control,
    /// The transport refused a frame over the size limit.
    TooLarge,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this frame to the connection.
    Send(ServerMessage),
    /// The node proved its identity: enter it into presence and send it
    /// `SystemConfig` and its node list. Another connection holding the same
    /// ID loses it.
    Register(VerifiedNode),
    /// Send the node a fresh node list.
    SendNodeList,
    /// Forward the text that was just handed in, unchanged, to `to`. When
    /// `to` is not connected and `notify` is set, tell the sender.
    Relay { to: NodeId, notify: bool },
    /// Tell the node why its message was refused (as an `Error` frame).
    Refuse(Refusal),
    /// Send a WebSocket ping.
    Ping,
    /// Close the connection with this reason; nothing follows.
    Close(CloseReason),
}

/// Why one message was refused without closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("announce first")]
    NotAnnounced,
    #[error("already announced on this connection")]
    AlreadyAnnounced,
    #[error("announce refused: {0}")]
    Announce(#[from] AnnounceError),
    #[error("you are neither id_init nor id_follow of this PeerSetup")]
    SpoofedSender,
    #[error("PeerSetup addressed to yourself")]
    SelfAddressed,
    #[error("too many announces from your address; try again later")]
    SourceRateLimited,
    #[error("ListIDsRequest too often; slow down")]
    ListRateLimited,
    #[error("PeerSetup refused: too many of yours were dropped over your share of the receiver's queue; slow down")]
    RelayThrottled,
}

impl Refusal {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::NotAnnounced => "not_announced",
            Refusal::AlreadyAnnounced => "already_announced",
            Refusal::Announce(AnnounceError::NodeInfo(_)) => "bad_node_info",
            Refusal::Announce(AnnounceError::Signature(_)) => "bad_signature",
            Refusal::Announce(AnnounceError::BoundRequired) => "bound_required",
            Refusal::Announce(AnnounceError::WrongServer { .. } | AnnounceError::MissingServer) => "wrong_server",
            Refusal::Announce(AnnounceError::UnknownVersion(_)) => "unknown_version",
            Refusal::SpoofedSender => "spoofed_sender",
            Refusal::SelfAddressed => "self_addressed",
            Refusal::SourceRateLimited => "source_rate_limited",
            Refusal::ListRateLimited => "list_rate_limited",
            Refusal::RelayThrottled => "relay_throttled",
        }
    }
}

/// The `Error` a connection gets when its node announced on a newer one.
pub const REPLACED_ERROR: &str = "New Connection with same ID";

/// Longest serde error text passed back to a client.
const MAX_ERROR_DETAIL: usize = 160;

#[derive(Debug)]
enum State {
    AwaitingAnnounce { deadline: Instant, failures: u32 },
    Registered { id: NodeId, bound: bool },
    Closed,
}

/// One connection, from the server's side.
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    policy: AnnouncePolicy,
    challenge: ChallengeNonce,
    state: State,
    rate: TokenBucket,
    list_rate: TokenBucket,
    /// Strikes for PeerSetups dropped over a receiver's share.
    abuse: AbuseMeter,
    /// Since when a fragmented message has been incomplete, if one is.
    partial_since: Option<Instant>,
    protocol_errors: u32,
    last_heard: Instant,
    next_ping: Instant,
}

impl ServerSession {
    /// Starts a session; the first action is always the `Challenge`.
    pub fn new(
        config: SessionConfig,
        policy: AnnouncePolicy,
        challenge: ChallengeNonce,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Self {
        out.push(Action::Send(ServerMessage::Challenge(
            FLEDGER_PROTOCOL_VERSION,
            challenge,
        )));
        Self {
            state: State::AwaitingAnnounce {
                deadline: now + config.handshake_timeout,
                failures: 0,
            },
            rate: TokenBucket::new(config.rate_limit, now),
            list_rate: TokenBucket::new(config.list_rate_limit, now),
            abuse: AbuseMeter::default(),
            partial_since: None,
            protocol_errors: 0,
            last_heard: now,
            next_ping: now + config.ping_interval,
            config,
            policy,
            challenge,
        }
    }

    /// The node this connection speaks for, once it announced.
    pub fn node_id(&self) -> Option<NodeId> {
        match self.state {
            State::Registered { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// When [`ServerSession::on_timer`] must be called next.
    pub fn next_deadline(&self) -> Instant {
        let idle = self.last_heard + self.config.idle_timeout;
        let mut deadline = idle.min(self.next_ping);
        if let Some(since) = self.partial_since {
            deadline = deadline.min(since + self.config.fragment_timeout);
        }
        if let State::AwaitingAnnounce {
            deadline: handshake, ..
        } = self.state
        {
            deadline = deadline.min(handshake);
        }
        deadline
    }

    /// Handles the passing of time.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Closed => {}
            State::AwaitingAnnounce { deadline, .. } if now >= deadline => {
                self.close(CloseReason::HandshakeTimeout, out)
            }
            _ if now >= self.last_heard + self.config.idle_timeout => self.close(CloseReason::IdleTimeout, out),
            _ if self
                .partial_since
                .is_some_and(|since| now >= since + self.config.fragment_timeout) =>
            {
                self.close(CloseReason::FragmentTimeout, out)
            }
            _ if now >= self.next_ping => {
                self.next_ping = now + self.config.ping_interval;
                out.push(Action::Ping);
            }
            _ => {}
        }
    }

    /// Handles one inbound frame.
    pub fn on_inbound(&mut self, inbound: Inbound<'_>, now: Instant, out: &mut Vec<Action>) {
        if self.is_closed() {
            return;
        }
        self.last_heard = now;
        if !self.rate.try_take(now) {
            return self.close(CloseReason::RateLimited, out);
        }
        match inbound {
            Inbound::Control => {}
            Inbound::Binary => self.close(CloseReason::BinaryFrame, out),
            Inbound::TooLarge => self.close(CloseReason::TooLarge, out),
            Inbound::Text(text) => self.on_text(text, now, out),
        }
    }

    /// Tells the session whether a fragmented message is incomplete on the
    /// connection, and since when; it is closed if that lasts past the
    /// fragment timeout, whatever else arrives meanwhile.
    pub fn on_partial_message(&mut self, since: Option<Instant>) {
        self.partial_since = since;
    }

    /// The server will not register the node it just verified: its source
    /// address announced too often. It is told so and closed as rate
    /// limited (try again later).
    pub fn refuse_registration(&mut self, out: &mut Vec<Action>) {
        if self.is_closed() {
            return;
        }
        out.push(Action::Refuse(Refusal::SourceRateLimited));
        self.close(CloseReason::RateLimited, out);
    }

    /// A PeerSetup this node sent was dropped because it already had its
    /// share of the receiver's queue: a strike, which may end the session.
    pub fn on_relay_over_share(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.is_closed() {
            return;
        }
        if self.abuse.strike(&self.config.relay_abuse, now) == Standing::Disconnect {
            self.close(CloseReason::RelayAbuse, out);
        }
    }

    /// Ends the session from outside (shutdown, replacement, slow reader).
    pub fn close(&mut self, reason: CloseReason, out: &mut Vec<Action>) {
        if self.is_closed() {
            return;
        }
        if reason == CloseReason::Replaced {
            // What fledger's own server tells the losing connection.
            out.push(Action::Send(ServerMessage::Error(REPLACED_ERROR.into())));
        }
        self.state = State::Closed;
        out.push(Action::Close(reason));
    }

    fn on_text(&mut self, text: &str, now: Instant, out: &mut Vec<Action>) {
        let message = match serde_json::from_str::<NodeMessage>(text) {
            Ok(message) => message,
            Err(error) => {
                let mut detail = error.to_string();
                detail.truncate(detail.floor_char_boundary(MAX_ERROR_DETAIL));
                return self.refuse(Refusal::Malformed(detail), out);
            }
        };
        match (&mut self.state, message) {
            (State::AwaitingAnnounce { failures, .. }, NodeMessage::Announce(announce)) => {
                match verify_announce(&announce, &self.challenge, &self.policy) {
                    Ok(node) => {
                        self.state = State::Registered {
                            id: node.id(),
                            bound: node.bound,
                        };
                        out.push(Action::Register(node));
                    }
                    Err(error) => {
                        *failures += 1;
                        let failures = *failures;
                        out.push(Action::Refuse(Refusal::Announce(error)));
                        if failures >= self.config.max_auth_failures {
                            self.close(CloseReason::AuthFailed, out);
                        }
                    }
                }
            }
            // fledger nodes ask for the list as soon as they connect, before
            // they announce. The list is never given to an unauthenticated
            // connection; it comes with the successful Announce instead.
            (State::AwaitingAnnounce { .. }, NodeMessage::ListIDsRequest) => {}
            (State::AwaitingAnnounce { .. }, _) => self.refuse(Refusal::NotAnnounced, out),
            (State::Registered { .. }, NodeMessage::Announce(_)) => self.refuse(Refusal::AlreadyAnnounced, out),
            (State::Registered { .. }, NodeMessage::ListIDsRequest) => {
                if self.list_rate.try_take(now) {
                    out.push(Action::SendNodeList);
                } else {
                    // Not a protocol error: a person clicking "refresh"
                    // too often is told, not disconnected.
                    out.push(Action::Refuse(Refusal::ListRateLimited));
                }
            }
            (State::Registered { .. }, NodeMessage::NodeStats(_)) => {}
            (State::Registered { id, bound }, NodeMessage::PeerSetup(setup)) => {
                let (id, bound) = (*id, *bound);
                match setup.counterpart_of(&id) {
                    None => self.refuse(Refusal::SpoofedSender, out),
                    Some(to) if to == id => self.refuse(Refusal::SelfAddressed, out),
                    Some(to) => self.relay(to, bound, now, out),
                }
            }
            (State::Closed, _) => {}
        }
    }

    /// Relays a PeerSetup unless the sender is throttled; sending on while
    /// throttled is a strike too, so a flooder ends disconnected.
    fn relay(&mut self, to: NodeId, notify: bool, now: Instant, out: &mut Vec<Action>) {
        let limits = self.config.relay_abuse;
        if self.abuse.standing(&limits, now) == Standing::Good {
            return out.push(Action::Relay { to, notify });
        }
        match self.abuse.strike(&limits, now) {
            Standing::Disconnect => self.close(CloseReason::RelayAbuse, out),
            // Not a protocol error: the strikes decide when this ends.
            _ => out.push(Action::Refuse(Refusal::RelayThrottled)),
        }
    }

    fn refuse(&mut self, refusal: Refusal, out: &mut Vec<Action>) {
        out.push(Action::Refuse(refusal));
        self.protocol_errors += 1;
        if self.protocol_errors >= self.config.max_protocol_errors {
            self.close(CloseReason::ProtocolErrors, out);
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
