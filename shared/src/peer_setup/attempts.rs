//! Connection attempts: when one is due, what it builds and sends, how a
//! handover starts, and the keepalives that find a dead path.

use std::time::Instant;

use super::link::Link;
use super::{Action, Carrier, ConnId, HandoverCause, LinkState, PeerKind, PeerSetup, Role};
use crate::message::SetupMessage;
use crate::setup_auth::sign_with;

impl PeerSetup {
    pub(super) fn handover(&mut self, cause: HandoverCause, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Handover(cause));
        self.handover_pending = true;
        self.attempt_now(now, out);
    }

    pub(super) fn attempt_now(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.attempted_at = None;
        self.retry_delay = self.timings.min_retry;
        self.attempt(now, out);
    }

    /// The initiator offers; the follower asks for an offer. At most one
    /// attempt per back-off.
    pub(super) fn attempt(&mut self, now: Instant, out: &mut Vec<Action>) {
        // A follower that answered an offer less than `min_retry` ago
        // waits: the initiator ignores an `Init` while its offer is in
        // flight, and a new generation now would make it drop the
        // candidates the answered connection still trickles (TURN relay
        // candidates above all, which come last).
        let answered_recently = self.answered_at.is_some_and(|at| now < at + self.timings.min_retry);
        if self.role == Role::Follower && !self.is_connected() && answered_recently {
            return;
        }
        if let Some(at) = self.attempted_at {
            if now < at + self.retry_delay {
                return;
            }
            let max_retry = match self.carrier {
                Some(Carrier::Relay) => self.timings.max_retry_while_relayed.min(self.timings.max_retry),
                _ => self.timings.max_retry,
            };
            self.retry_delay = (self.retry_delay * 2).min(max_retry).max(self.timings.min_retry);
        }
        self.attempted_at = Some(now);
        match self.role {
            Role::Initiator => self.connect(None, now, out),
            Role::Follower => {
                self.new_attempt(now);
                self.send(SetupMessage::Init, out);
            }
        }
    }

    /// Replaces the current connection with a fresh one; a working one is
    /// kept as `previous` until the new one's `wg` opens.
    /// `offer` is the follower's: the peer's SDP and the generation it was
    /// signed under.
    pub(super) fn connect(&mut self, offer: Option<(String, u64)>, now: Instant, out: &mut Vec<Action>) {
        if let Some(old) = self.current.take() {
            if old.state == LinkState::Connected && old.wg_open {
                if let Some(older) = self.previous.replace(old.id) {
                    out.push(Action::Close(older));
                }
            } else {
                out.push(Action::Close(old.id));
            }
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.new_attempt(now);
        let mut link = Link::new(conn);
        let offer = offer.map(|(sdp, generation)| {
            // The offer's generation is the one its candidates carry.
            link.describe(generation);
            sdp
        });
        self.current = Some(link);
        out.push(Action::Connect { conn, offer });
        self.update_carrier(now, out);
    }

    pub(super) fn keepalive(&mut self, now: Instant, out: &mut Vec<Action>) {
        let connected = self.is_connected();
        let Some(link) = self.current.as_mut().filter(|link| link.ctl_open && connected) else {
            return;
        };
        let last = *link.last_pong.get_or_insert(now);
        if now.duration_since(last) >= self.timings.keepalive_timeout {
            // Once per timeout at most; the handover itself retries.
            link.last_pong = Some(now);
            // The path that carried is dead: the relay's clock starts.
            self.relay.path_lost(now);
            out.push(Action::ProbeSignalling);
            self.handover(HandoverCause::KeepalivesUnanswered, now, out);
            return;
        }
        out.push(Action::Ping(link.id));
    }

    /// Starts a new attempt: what we send from now on has a newer
    /// generation, so the peer can tell it from anything sent before.
    pub(super) fn new_attempt(&mut self, now: Instant) {
        let (unix_millis, at) = self.epoch;
        let elapsed = now.saturating_duration_since(at).as_millis() as u64;
        self.attempt = self.signer.next_generation(unix_millis.saturating_add(elapsed));
    }

    /// Signs `message` as the next of the current attempt, sealed to the
    /// peer if it opens sealed setups (or the policy requires it).
    pub(super) fn send(&mut self, message: SetupMessage, out: &mut Vec<Action>) {
        let me = self.local.key.id();
        let (id_init, id_follow) = match self.role {
            Role::Initiator => (me, self.peer),
            Role::Follower => (self.peer, me),
        };
        let header = self
            .signer
            .next_header(&self.local.key, &mut self.attempt, id_init, id_follow);
        match self.sealing.outgoing(&self.local, &header, message) {
            Ok(message) => out.push(Action::Send(sign_with(&self.local.key, &header, message))),
            // Never sent plain instead: that is what sealing is for.
            Err(error) => out.push(Action::Unsent(error)),
        }
    }

    /// Tells the driver where datagrams go when that changed: the current
    /// connection once its `wg` is open; else the relay, if it may carry
    /// (see [`super::relay`]); else the connection being replaced.
    pub(super) fn update_carrier(&mut self, now: Instant, out: &mut Vec<Action>) {
        let current = self
            .current
            .as_ref()
            .filter(|link| link.wg_open)
            .map(|link| Carrier::Link(link.id));
        match current {
            Some(_) => self.relay.path_found(),
            // A connection being replaced still carries, unless its
            // keepalives said it is dead (which starts the relay's clock).
            None if self.previous.is_none() => self.relay.path_lost(now),
            None => {}
        }
        let relay = (self.kind == PeerKind::WireGuard && self.relay.may_carry(now)).then_some(Carrier::Relay);
        let carrier = current.or(relay).or(self.previous.map(Carrier::Link));
        if carrier != self.carrier {
            self.carrier = carrier;
            out.push(Action::CarryData(carrier));
        }
    }
}
