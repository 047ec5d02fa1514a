//! Connection attempts: the initiator offers, the follower asks with
//! `Init` and answers offers; at most one attempt per back-off step, so
//! that offers and answers of successive attempts never cross.

use flproto::message::SetupMessage;
use webrtc::data_channel::RTCDataChannelInit;
use webrtc::peer_connection::RTCSessionDescription;

use super::{Peer, CTL_CHANNEL, MAX_PENDING_CANDIDATES, MAX_RETRY, MIN_RETRY, WG_CHANNEL};

impl Peer {
    /// Forgets the back-off and attempts at once.
    pub(super) async fn attempt_now(&mut self) {
        self.attempted_at = None;
        self.retry_delay = MIN_RETRY;
        self.attempt().await;
    }

    /// The initiator offers; the follower asks for an offer. At most one
    /// attempt per `retry_delay`.
    pub(super) async fn attempt(&mut self) {
        let now = tokio::time::Instant::now();
        // A follower that answered an offer less than MIN_RETRY ago waits:
        // the initiator ignores an `Init` while its offer is in flight, and
        // a new generation now would make it drop the candidates the
        // answered connection still trickles (signed as the new attempt's),
        // TURN relay candidates above all, which come last.
        if !self.initiator() && !self.connected && self.answered_at.is_some_and(|at| now < at + MIN_RETRY) {
            return;
        }
        if let Some(at) = self.attempted_at {
            if now < at + self.retry_delay {
                return;
            }
            self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY);
        }
        self.attempted_at = Some(now);
        if self.initiator() {
            if let Err(error) = self.offer().await {
                tracing::warn!(peer = %self.config.id, "cannot create an offer: {error:#}");
            }
        } else {
            self.stats.state.set("waiting");
            self.new_attempt();
            self.send_setup(SetupMessage::Init);
        }
    }

    /// Acts on an authenticated setup message of the peer's `generation`.
    pub(super) async fn on_setup(&mut self, message: SetupMessage, generation: u64) -> anyhow::Result<()> {
        match message {
            // The follower asks when it has no connection (it may have
            // restarted, so ours is stale even if it still looks up) or
            // wants a handover: offer at once, unless an offer of ours is
            // still in flight (a second one would cross its answer).
            SetupMessage::Init if self.initiator() => {
                let in_flight = !self.connected && self.attempted_at.is_some_and(|at| at.elapsed() < MIN_RETRY);
                if self.connected {
                    self.handover("the peer asked for a new connection").await;
                } else if !in_flight {
                    self.attempt_now().await;
                }
            }
            SetupMessage::Offer(sdp) if !self.initiator() => {
                let connection = self.new_connection().await?;
                connection
                    .set_remote_description(RTCSessionDescription::offer(sdp)?)
                    .await?;
                self.remote_described = true;
                self.remote_generation = Some(generation);
                let answer = connection.create_answer(None).await?;
                connection.set_local_description(answer.clone()).await?;
                self.send_setup(SetupMessage::Answer(answer.sdp));
                self.answered_at = Some(tokio::time::Instant::now());
                self.flush_candidates().await;
            }
            SetupMessage::Answer(sdp) if self.initiator() => {
                let Some(connection) = self.connection.clone() else {
                    return Ok(());
                };
                connection
                    .set_remote_description(RTCSessionDescription::answer(sdp)?)
                    .await?;
                self.remote_described = true;
                self.remote_generation = Some(generation);
                self.flush_candidates().await;
            }
            SetupMessage::IceCandidate(candidate) => {
                if !self.remote_described {
                    if self.pending_candidates.len() < MAX_PENDING_CANDIDATES {
                        self.pending_candidates.push((generation, candidate));
                    }
                } else if self.remote_generation == Some(generation) {
                    self.add_candidate(candidate).await;
                } else {
                    tracing::debug!(peer = %self.config.id, generation, "candidate of another attempt; ignored");
                }
            }
            other => tracing::debug!(peer = %self.config.id, ?other, "setup message not for our role; ignored"),
        }
        Ok(())
    }

    pub(super) async fn offer(&mut self) -> anyhow::Result<()> {
        let connection = self.new_connection().await?;
        if !self.is_test_peer() {
            let wg_init = RTCDataChannelInit {
                ordered: false,
                max_retransmits: Some(0),
                ..Default::default()
            };
            let wg = connection.create_data_channel(WG_CHANNEL, Some(wg_init)).await?;
            self.watch_channel(wg);
        }
        let ctl = connection.create_data_channel(CTL_CHANNEL, None).await?;
        self.watch_channel(ctl);
        let offer = connection.create_offer(None).await?;
        connection.set_local_description(offer.clone()).await?;
        self.send_setup(SetupMessage::Offer(offer.sdp));
        Ok(())
    }
}
