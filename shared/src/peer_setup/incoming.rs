//! What the peer does with a setup message: authenticate it (signature,
//! sender, freshness) before anything else, then act on it as its role
//! says.

use std::time::Instant;

use super::link::CandidateFate;
use super::{Action, HandoverCause, PeerSetup, Role, MAX_PENDING_CANDIDATES, REFUSAL_LOG_INTERVAL};
use crate::message::{PeerInfo, SetupMessage};
use crate::setup_auth::{self, SetupAuthError};

impl PeerSetup {
    pub(super) fn on_setup(&mut self, info: PeerInfo, now: Instant, out: &mut Vec<Action>) {
        let generation = match self.authenticate(&info) {
            Ok(generation) => generation,
            Err(error) => return self.refuse(error, now, out),
        };
        self.online = true;
        self.last_alive = now;
        match (info.message, self.role) {
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

    /// Checks signature and freshness; the peer's generation if accepted.
    fn authenticate(&mut self, info: &PeerInfo) -> Result<u64, SetupAuthError> {
        let (sender, auth) = setup_auth::verify(info, &self.key.id())?;
        if sender != self.peer {
            return Err(SetupAuthError::NotForUs);
        }
        self.guard.accept(&auth)?;
        Ok(auth.generation)
    }

    fn refuse(&mut self, error: SetupAuthError, now: Instant, out: &mut Vec<Action>) {
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
