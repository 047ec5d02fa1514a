//! The server's per-connection state machine.
//!
//! A [`ServerSession`] is fed what arrives on one WebSocket ([`Inbound`]) and
//! the passing of time, and answers with [`Action`]s for the driver in
//! `flsignal` to carry out. It never touches a socket, a task or a clock,
//! which is why every rule about a single connection — handshake, rate,
//! liveness, who may relay what — lives here and is tested without a network.

use std::time::Instant;

use crate::announce::{verify_announce, AnnouncePolicy};
use crate::close::CloseReason;
use crate::ids::{ChallengeNonce, NodeId};
use crate::inbound::{self, InboundMessage};
use crate::message::{ServerMessage, SystemConfig};
use crate::rate::TokenBucket;
use crate::relay_share::{AbuseMeter, Standing};
use crate::FLEDGER_PROTOCOL_VERSION;

mod config;
mod datagrams;
mod events;

pub use config::*;
use datagrams::RelayGate;
pub use datagrams::{DatagramDrop, DatagramVerdict};
pub use events::{Action, Inbound, Refusal, REPLACED_ERROR};

/// Longest serde error text passed back to a client.
const MAX_ERROR_DETAIL: usize = 160;

#[derive(Debug)]
enum State {
    AwaitingAnnounce {
        deadline: Instant,
        failures: u32,
    },
    /// The announce verified; the server is entering the node.
    Registering {
        id: NodeId,
        bound: bool,
    },
    Registered {
        id: NodeId,
        bound: bool,
    },
    /// Nothing follows. `registered` is the node the server may hold for
    /// this connection, which it removes when the connection ends.
    Closed {
        registered: Option<NodeId>,
    },
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
    /// Whether binary frames are relay frames, and the node's budget.
    relay: RelayGate,
    /// Since when a fragmented message has been incomplete, if one is.
    partial_since: Option<Instant>,
    protocol_errors: u32,
    last_heard: Instant,
    next_ping: Instant,
    /// When the node is due a fresh TURN credential: set once a version-4
    /// node is registered and the server runs TURN.
    turn_due: Option<Instant>,
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
            relay: RelayGate::NotAsked,
            partial_since: None,
            protocol_errors: 0,
            last_heard: now,
            next_ping: now + config.ping_interval,
            turn_due: None,
            config,
            policy,
            challenge,
        }
    }

    /// The node this connection speaks for, once it is registered and
    /// until it closes.
    pub fn node_id(&self) -> Option<NodeId> {
        match self.state {
            State::Registered { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The node the server may hold for this connection, open or closed:
    /// what to remove from the registry when the connection ends.
    pub fn registered_node(&self) -> Option<NodeId> {
        match self.state {
            State::Registering { id, .. } | State::Registered { id, .. } => Some(id),
            State::Closed { registered } => registered,
            State::AwaitingAnnounce { .. } => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// Whether the node was granted the datagram relay (it asked, with a
    /// version-4 announce, and the server relays).
    pub fn relay_granted(&self) -> bool {
        self.relay.is_granted()
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
        if let Some(due) = self.turn_due {
            deadline = deadline.min(due);
        }
        deadline
    }

    /// Handles the passing of time.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Closed { .. } => {}
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
        self.renew_turn_credentials(now, out);
    }

    /// Sends a registered node its next TURN credential once it is due.
    fn renew_turn_credentials(&mut self, now: Instant, out: &mut Vec<Action>) {
        let (Some(due), Some(renewal)) = (self.turn_due, self.config.turn_renewal) else {
            return;
        };
        if now < due || self.node_id().is_none() {
            return;
        }
        self.turn_due = Some(now + renewal);
        out.push(Action::SendTurnCredentials);
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

    /// Handles one binary frame. For a node granted the relay it is a
    /// relay frame, and the verdict says whether to forward it; for any
    /// other it closes the connection (1003) as [`Inbound::Binary`] does,
    /// and the verdict is `None`.
    pub fn on_binary(&mut self, frame: &[u8], now: Instant, out: &mut Vec<Action>) -> Option<DatagramVerdict> {
        let verdict = match self.state {
            State::Registered { id, .. } => self.relay.admit(frame, &id, now),
            _ => None,
        };
        match verdict {
            // Relay frames have a byte budget of their own instead of the
            // message rate, which counts signalling.
            Some(_) => self.last_heard = now,
            None => self.on_inbound(Inbound::Binary, now, out),
        }
        verdict
    }

    /// Tells the session whether a fragmented message is incomplete on the
    /// connection, and since when; it is closed if that lasts past the
    /// fragment timeout, whatever else arrives meanwhile.
    pub fn on_partial_message(&mut self, since: Option<Instant>) {
        self.partial_since = since;
    }

    /// The server entered the node this session verified: it is told the
    /// system configuration, the answer to its request for the datagram
    /// relay (if it asked), gets its TURN credential (a version-4 node,
    /// while the server runs TURN) and `first_list`, the node list the
    /// registry rendered for it, in that order; from now on it speaks for
    /// its node.
    pub fn on_registered(&mut self, first_list: String, out: &mut Vec<Action>) {
        let State::Registering { id, bound } = self.state else {
            return;
        };
        self.state = State::Registered { id, bound };
        out.push(Action::Send(ServerMessage::SystemConfig(SystemConfig::default())));
        if let Some(answer) = self.relay.answer() {
            out.push(Action::Send(ServerMessage::Relay(answer)));
        }
        // Before the list: a node starts connecting to the nodes it lists,
        // and those connections should already have the TURN relay.
        if let (true, Some(renewal)) = (bound, self.config.turn_renewal) {
            out.push(Action::SendTurnCredentials);
            // The announce that led here is the last thing heard: now.
            self.turn_due = Some(self.last_heard + renewal);
        }
        out.push(Action::SendListing(first_list));
    }

    /// The server will not register the node it just verified: its source
    /// address announced too often. It is told so and closed as rate
    /// limited (try again later).
    pub fn refuse_registration(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Registering { .. }) {
            return;
        }
        out.push(Action::Refuse(Refusal::SourceRateLimited));
        // The server never held it.
        self.state = State::Closed { registered: None };
        out.push(Action::Close(CloseReason::RateLimited));
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
        self.state = State::Closed {
            registered: self.registered_node(),
        };
        self.turn_due = None;
        out.push(Action::Close(reason));
    }

    fn on_text(&mut self, text: &str, now: Instant, out: &mut Vec<Action>) {
        let message = match inbound::parse(text) {
            Ok(message) => message,
            Err(error) => {
                let mut detail = error.to_string();
                detail.truncate(detail.floor_char_boundary(MAX_ERROR_DETAIL));
                return self.refuse(Refusal::Malformed(detail), out);
            }
        };
        match (&mut self.state, message) {
            (State::AwaitingAnnounce { failures, .. }, InboundMessage::Announce(announce)) => {
                match verify_announce(&announce, &self.challenge, &self.policy) {
                    Ok(node) => {
                        let asked = announce.relay && node.bound;
                        self.relay = RelayGate::for_node(asked, self.config.datagram_relay, now);
                        self.state = State::Registering {
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
            (State::AwaitingAnnounce { .. }, InboundMessage::ListIDsRequest) => {}
            (State::AwaitingAnnounce { .. }, _) => self.refuse(Refusal::NotAnnounced, out),
            // The server answers a Register before it reads on, so nothing
            // arrives meanwhile from a real connection; what would is
            // treated as before the Announce.
            (State::Registering { .. }, InboundMessage::Announce(_)) => self.refuse(Refusal::AlreadyAnnounced, out),
            (State::Registering { .. }, InboundMessage::ListIDsRequest) => {}
            (State::Registering { .. }, _) => self.refuse(Refusal::NotAnnounced, out),
            (State::Registered { .. }, InboundMessage::Announce(_)) => self.refuse(Refusal::AlreadyAnnounced, out),
            (State::Registered { .. }, InboundMessage::ListIDsRequest) => {
                if self.list_rate.try_take(now) {
                    out.push(Action::SendNodeList);
                } else {
                    // Not a protocol error: a person clicking "refresh"
                    // too often is told, not disconnected.
                    out.push(Action::Refuse(Refusal::ListRateLimited));
                }
            }
            (State::Registered { .. }, InboundMessage::NodeStats(_)) => {}
            (State::Registered { id, bound }, InboundMessage::PeerSetup(setup)) => {
                let (id, bound) = (*id, *bound);
                match setup.counterpart_of(&id) {
                    None => self.refuse(Refusal::SpoofedSender, out),
                    Some(to) if to == id => self.refuse(Refusal::SelfAddressed, out),
                    Some(to) => self.relay(to, bound, now, out),
                }
            }
            (State::Closed { .. }, _) => {}
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

#[cfg(test)]
#[path = "session_handshake_tests.rs"]
mod handshake_tests;

#[cfg(test)]
#[path = "session_datagram_tests.rs"]
mod datagram_tests;

#[cfg(test)]
#[path = "session_turn_tests.rs"]
mod turn_tests;
