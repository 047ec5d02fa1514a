//! What the peer does with a setup message: authenticate it (signature,
//! sender, freshness), open it or refuse it as plain, before anything else;
//! then act on it as its role says.

use std::time::Instant;

use super::link::CandidateFate;
use super::{Action, HandoverCause, PeerSetup, Refusal, Role, MAX_PENDING_CANDIDATES, REFUSAL_LOG_INTERVAL};
use crate::message::{PeerInfo, SetupMessage};
use crate::setup_auth::{self, SetupAuthError, SetupHeader};

impl PeerSetup {
    pub(super) fn on_setup(&mut self, info: PeerInfo, now: Instant, out: &mut Vec<Action>) {
        let sealed_before = self.seals();
        let accepted = self.authenticate(info);
        // The peer's signature just told us it opens sealed setups, and
        // ours went plain (a server hid its advertisement, and so probably
        // ours from it, which makes it refuse our plain ones): the attempt
        // under way is dead. A new one, sealed, starts at once. This
        // happens once per change of what the peer's session says.
        let learnt_to_seal = !sealed_before && self.seals();
        if learnt_to_seal {
            self.attempted_at = None;
        }
        let (generation, message) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let downgraded = error == Refusal::Downgrade;
                self.refuse(error, now, out);
                if downgraded && !self.is_connected() {
                    // Signed and fresh: the peer is there, and a sealed
                    // message of ours shows it that we open them. At most
                    // once per back-off, unless the attempt just died; a
                    // working connection is left alone.
                    self.online = true;
                    self.attempt(now, out);
                }
                return;
            }
        };
        self.online = true;
        self.last_alive = now;
        match (message, self.role) {
            // The follower asks when it has no connection (it may have
            // restarted, so ours is stale even if it still looks up) or
            // wants a handover: offer at once, unless an offer of ours is
            // still in flight (a second one would cross its answer).
            (SetupMessage::Init, Role::Initiator) => {
                let in_flight =
                    !self.is_connected() && self.attempted_at.is_some_and(|at| now < at + self.timings.min_retry);
                if self.is_connected() {
                    self.handover(HandoverCause::PeerAsked, now, out);
                } else if !in_flight {
                    self.attempt_now(now, out);
                }
            }
            (SetupMessage::Offer(sdp), Role::Follower) => self.connect(Some((sdp, generation)), now, out),
            (SetupMessage::Answer(sdp), Role::Initiator) => {
                let Some(link) = self.current.as_mut().filter(|link| !link.is_described()) else {
                    return;
                };
                out.push(Action::ApplyAnswer { conn: link.id, sdp });
                let conn = link.id;
                for candidate in link.describe(generation) {
                    out.push(Action::ApplyCandidate { conn, candidate });
                }
            }
            (SetupMessage::IceCandidate(candidate), _) => {
                let Some(link) = self.current.as_mut() else {
                    return;
                };
                if let CandidateFate::Apply(candidate) = link.candidate(generation, candidate, MAX_PENDING_CANDIDATES) {
                    out.push(Action::ApplyCandidate {
                        conn: link.id,
                        candidate,
                    });
                }
            }
            // Not for our role (a confused or hostile peer): ignored.
            _ => {}
        }
    }

    /// Checks signature and freshness, learns what the peer opens, and
    /// opens a sealed message or admits a plain one: the peer's generation
    /// and the message it carries, if accepted.
    fn authenticate(&mut self, info: PeerInfo) -> Result<(u64, SetupMessage), Refusal> {
        let (sender, auth) = setup_auth::verify(&info, &self.local.key.id())?;
        if sender != self.peer {
            return Err(SetupAuthError::NotForUs.into());
        }
        self.guard.accept(&auth)?;
        self.sealing.heard(auth.session);
        let header = SetupHeader::of(&info, sender, &auth);
        let message = self.sealing.incoming(&self.local, &header, info.message)?;
        Ok((auth.generation, message))
    }

    fn refuse(&mut self, error: Refusal, now: Instant, out: &mut Vec<Action>) {
        self.refused += 1;
        let log = self.refusal_logged_at.is_none_or(|at| now >= at + REFUSAL_LOG_INTERVAL);
        if log {
            self.refusal_logged_at = Some(now);
        }
        out.push(Action::Refused {
            error,
            total: self.refused,
            log,
        });
    }
}
