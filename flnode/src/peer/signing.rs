//! Every setup message we send is signed; every one we receive is checked
//! for signature and freshness before anything acts on it
//! (`flproto::setup_auth`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use flproto::message::{PeerInfo, SetupMessage};
use flproto::setup_auth;

use super::Peer;

impl Peer {
    /// Signs `message` as the next of the current attempt and sends it.
    pub(super) fn send_setup(&mut self, message: SetupMessage) {
        let (id_init, id_follow) = if self.initiator() {
            (self.me, self.config.id)
        } else {
            (self.config.id, self.me)
        };
        let info = PeerInfo {
            id_init,
            id_follow,
            message,
            auth: None,
        };
        let signed = self.signer.sign(&self.key, &mut self.attempt, info);
        self.signal.send(signed);
    }

    /// Starts a new attempt: what we send from now on has a newer
    /// generation, so the peer can tell it from anything sent before.
    pub(super) fn new_attempt(&mut self) {
        self.attempt = self.signer.next_generation(unix_millis());
    }

    /// Checks signature and freshness; the peer's generation if accepted.
    pub(super) fn authenticate(&mut self, info: &PeerInfo) -> Result<u64, setup_auth::SetupAuthError> {
        let (sender, auth) = setup_auth::verify(info, &self.me)?;
        if sender != self.config.id {
            return Err(setup_auth::SetupAuthError::NotForUs);
        }
        let freshness = self.guard.accept(&auth)?;
        if freshness == setup_auth::Freshness::NewSession {
            tracing::debug!(peer = %self.config.id, session = %auth.session, "peer started a new session");
        }
        Ok(auth.generation)
    }

    pub(super) fn refuse(&mut self, error: setup_auth::SetupAuthError) {
        self.stats.setup_refused.fetch_add(1, Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        if self.refusal_logged.is_none_or(|at| now >= at + Duration::from_secs(1)) {
            self.refusal_logged = Some(now);
            tracing::warn!(
                peer = %self.config.id,
                refused = self.stats.setup_refused.load(Ordering::Relaxed),
                "refused a setup message: {error}"
            );
        }
    }
}

pub(super) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
