//! The decisions of one flnode peer, without a socket, a task or a clock.
//!
//! A [`PeerSetup`] is told what happens — the peer came online, a setup
//! message arrived, a connection changed state, time passed — and answers
//! with [`Action`]s for the driver in flnode to carry out with the WebRTC
//! stack. Everything that decides *what* to do lives here: who offers, when
//! to (re)attempt and with what back-off, which setup messages are stale,
//! when candidates wait and when they are applied, when a handover starts
//! and when the old connection goes, keepalive deadlines and when a path
//! counts as dead.
//!
//! Roles are fixed by the keys, so two nodes never race to offer: the node
//! with the smaller public key initiates; the other asks for an offer with
//! `Init`. Handover is make-before-break: a fresh connection is built beside
//! the old one, which keeps carrying datagrams until the new `wg` channel
//! opens.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;

use crate::ids::NodeId;
use crate::message::SetupMessage;
use crate::setup_auth::{Attempt, ReplayGuard, SetupSigner};

mod attempts;
mod events;
mod incoming;
mod link;
mod relay;
mod sealing;
mod state;
mod timings;

pub use events::{Action, Event, HandoverCause};
use link::Link;
pub use link::{ConnId, LinkState};
use relay::RelayFallback;
pub use relay::{Carrier, MAX_RETRY_WHILE_RELAYED, RELAY_FALLBACK_AFTER};
use sealing::Sealing;
pub use sealing::{Local, Refusal, SealPolicy};
pub use state::PeerState;
pub use timings::*;

/// Which side of the pair this node is; fixed by the two keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Creates the data channels and sends the Offer.
    Initiator,
    /// Asks for an Offer with `Init` and answers it.
    Follower,
}

impl Role {
    pub fn between(me: &NodeId, peer: &NodeId) -> Role {
        if me < peer {
            Role::Initiator
        } else {
            Role::Follower
        }
    }
}

/// What the peer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// A configured peer: its connection carries WireGuard.
    WireGuard,
    /// A test peer (a browser page, say): `ctl` only, dropped when idle.
    Test,
}

/// One peer, from this node's side.
pub struct PeerSetup {
    local: Local,
    peer: NodeId,
    role: Role,
    kind: PeerKind,
    timings: PeerTimings,
    signer: SetupSigner,
    attempt: Attempt,
    /// The wall clock when this peer was made, and the monotonic time then:
    /// generations come from the wall clock so they grow across restarts.
    epoch: (u64, Instant),
    guard: ReplayGuard,
    sealing: Sealing,
    online: bool,
    /// The connection being set up or in use.
    current: Option<Link>,
    /// The connection being replaced; it carries data until `current`'s
    /// `wg` opens.
    previous: Option<ConnId>,
    next_conn: u64,
    /// Where WireGuard datagrams go, as last told.
    carrier: Option<Carrier>,
    /// The signalling server's relay, the last resort.
    relay: RelayFallback,
    handover_pending: bool,
    attempted_at: Option<Instant>,
    /// When the follower last answered an offer: that connection is still
    /// being set up and trickles candidates under the current generation.
    answered_at: Option<Instant>,
    retry_delay: Duration,
    last_alive: Instant,
    /// A test peer that used up its budget: nothing more is set up for it.
    exhausted: bool,
    next_retry_check: Instant,
    next_keepalive: Instant,
    refused: u64,
    refusal_logged_at: Option<Instant>,
}

impl PeerSetup {
    /// A peer that is not known to be online yet. `unix_millis` is the
    /// wall clock at `now`; `seeds` gives the randomness of every seal (a
    /// generator seeded from the OS in flnode, a fixed seed in tests).
    pub fn new(
        local: Local,
        peer: NodeId,
        kind: PeerKind,
        timings: PeerTimings,
        now: Instant,
        unix_millis: u64,
        seeds: StdRng,
    ) -> Self {
        let mut signer = SetupSigner::new(local.session);
        let attempt = signer.next_generation(unix_millis);
        let role = Role::between(&local.key.id(), &peer);
        Self {
            local,
            peer,
            role,
            kind,
            signer,
            attempt,
            epoch: (unix_millis, now),
            guard: ReplayGuard::default(),
            sealing: Sealing::new(seeds),
            online: false,
            current: None,
            previous: None,
            next_conn: 1,
            carrier: None,
            relay: RelayFallback::new(timings.relay_fallback_after, timings.keepalive_timeout),
            handover_pending: false,
            attempted_at: None,
            answered_at: None,
            retry_delay: timings.min_retry,
            last_alive: now,
            exhausted: false,
            next_retry_check: now + timings.retry_check,
            next_keepalive: now + timings.keepalive_interval,
            refused: 0,
            refusal_logged_at: None,
            timings,
        }
    }

    pub fn peer(&self) -> NodeId {
        self.peer
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// Whether what this node sends the peer now is sealed.
    pub fn seals(&self) -> bool {
        self.sealing.seals(self.local.policy)
    }

    /// The connection in use or being set up, and the one being replaced.
    pub fn connections(&self) -> (Option<ConnId>, Option<ConnId>) {
        (self.current.as_ref().map(|link| link.id), self.previous)
    }

    /// Where WireGuard datagrams go now.
    pub fn carrier(&self) -> Option<Carrier> {
        self.carrier
    }

    /// The current back-off between attempts.
    pub fn retry_delay(&self) -> Duration {
        self.retry_delay
    }

    /// When [`PeerSetup::on_timer`] must be called next.
    pub fn next_deadline(&self) -> Instant {
        self.next_retry_check.min(self.next_keepalive)
    }

    /// Feeds one event; the actions it causes are appended to `out`.
    pub fn on_event(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) {
        if self.exhausted {
            return;
        }
        match event {
            Event::Online(listed) => {
                if let Some(opens) = listed {
                    self.sealing.listed(opens);
                }
                self.on_online(now, out);
            }
            Event::Offline => self.on_offline(),
            Event::NetworkChanged => {
                if self.is_connected() || self.previous.is_some() {
                    self.handover(HandoverCause::NetworkChanged, now, out);
                } else if self.online {
                    self.attempt_now(now, out);
                }
            }
            Event::Setup(info) => self.on_setup(info, now, out),
            Event::OfferReady(conn, sdp) if self.is_current(conn) => self.send(SetupMessage::Offer(sdp), out),
            Event::AnswerReady(conn, sdp) if self.is_current(conn) => {
                self.send(SetupMessage::Answer(sdp), out);
                self.answered_at = Some(now);
            }
            Event::BuildFailed(conn) if self.is_current(conn) => {
                self.current = None;
                out.push(Action::Close(conn));
                self.update_carrier(now, out);
            }
            Event::LocalCandidate(conn, candidate) if self.is_current(conn) => {
                self.send(SetupMessage::IceCandidate(candidate), out);
            }
            Event::Link(conn, state) if self.is_current(conn) => self.on_link(state, now, out),
            Event::WgOpen(conn) if self.is_current(conn) => {
                if let Some(link) = &mut self.current {
                    link.wg_open = true;
                }
                self.handover_pending = false;
                // Switch first, then close: no datagram waits in between.
                let previous = self.previous.take();
                self.update_carrier(now, out);
                out.extend(previous.map(Action::Close));
            }
            Event::CtlOpen(conn) | Event::Pong(conn) if self.is_current(conn) => {
                if let Some(link) = &mut self.current {
                    link.ctl_open = true;
                    link.last_pong = Some(now);
                }
            }
            Event::Exhausted(conn) if self.is_current(conn) => {
                self.exhausted = true;
                self.online = false;
                self.current = None;
                out.push(Action::Close(conn));
                self.update_carrier(now, out);
            }
            Event::RelayGranted(granted) if self.kind == PeerKind::WireGuard => {
                self.relay.set_granted(granted);
                self.update_carrier(now, out);
            }
            Event::RelayPong => {
                self.relay.on_pong(now);
                self.update_carrier(now, out);
            }
            // Events of a connection that was replaced or closed.
            _ => {}
        }
    }

    /// Does what is due at `now`: attempts, keepalives, a test peer's end.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        if now >= self.next_retry_check {
            self.next_retry_check = now + self.timings.retry_check;
            if self.is_connected() {
                self.last_alive = now;
            } else if self.kind == PeerKind::Test && now.duration_since(self.last_alive) > self.timings.test_peer_idle {
                out.push(Action::Finished);
                return;
            }
            if self.online && !self.exhausted && (!self.is_connected() || self.handover_pending) {
                self.attempt(now, out);
            }
        }
        if now >= self.next_keepalive {
            self.next_keepalive = now + self.timings.keepalive_interval;
            self.keepalive(now, out);
            if self.online && self.relay.wants_ping() {
                out.push(Action::RelayPing);
            }
            // The fallback time may have passed, or the relay's pongs stopped.
            self.update_carrier(now, out);
        }
    }

    fn is_current(&self, conn: ConnId) -> bool {
        self.current.as_ref().is_some_and(|link| link.id == conn)
    }

    fn is_connected(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|link| link.state == LinkState::Connected)
    }

    fn on_online(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.online && !matches!(self.carrier, Some(Carrier::Link(_))) {
            // (Re)appeared: the whole fallback time to open a data channel.
            self.relay.path_awaited(now);
        }
        self.online = true;
        if self.handover_pending && self.role == Role::Follower {
            // (Re)registered: our `Init` may have been lost with the old
            // signalling connection. A second one is harmless: the
            // initiator ignores it while its offer is in flight.
            self.attempted_at = None;
            self.attempt(now, out);
        } else if !self.is_connected() || self.handover_pending {
            // An offer of ours may be in flight; a second one now would
            // cross its answer, so only after the back-off.
            self.attempt(now, out);
        }
    }

    fn on_offline(&mut self) {
        self.online = false;
        if !self.is_connected() {
            // The attempt went nowhere (our offer may have reached a server
            // the peer had not registered with yet): when the peer shows
            // up, try at once rather than after the back-off.
            self.attempted_at = None;
            self.retry_delay = self.timings.min_retry;
        }
    }

    fn on_link(&mut self, state: LinkState, now: Instant, out: &mut Vec<Action>) {
        let Some(link) = &mut self.current else {
            return;
        };
        link.state = state;
        match state {
            LinkState::Connected => self.retry_delay = self.timings.min_retry,
            LinkState::Failed => {
                link.wg_open = false;
                link.ctl_open = false;
                self.update_carrier(now, out);
            }
            LinkState::Connecting => {}
        }
    }
}

#[cfg(test)]
mod harness;

#[cfg(test)]
#[path = "peer_setup_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "peer_setup_props.rs"]
mod props;

#[cfg(test)]
#[path = "peer_setup_sealing_tests.rs"]
mod sealing_tests;

#[cfg(test)]
#[path = "peer_setup_relay_tests.rs"]
mod relay_tests;
