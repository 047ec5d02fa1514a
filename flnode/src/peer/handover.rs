//! Moving a live peer to a new connection when the network changes or the
//! path dies, without dropping the old one first.

use std::sync::atomic::Ordering;

use super::{Peer, KEEPALIVE_TIMEOUT};

impl Peer {
    /// Rebuilds the connection beside the old one, which keeps carrying
    /// datagrams until the new one is up.
    pub(super) async fn handover(&mut self, why: &str) {
        tracing::info!(peer = %self.config.id, "handover: {why}");
        self.stats.handovers.fetch_add(1, Ordering::Relaxed);
        self.handover_pending = true;
        self.attempt_now().await;
    }

    /// Pings the peer over `ctl`; a connection that stopped answering is
    /// handed over.
    pub(super) async fn keepalive(&mut self) {
        let (Some(ctl), true) = (&self.ctl, self.connected) else {
            return;
        };
        let now = tokio::time::Instant::now();
        let last = *self.last_pong.get_or_insert(now);
        if now.duration_since(last) >= KEEPALIVE_TIMEOUT {
            // Once per timeout at most; the handover itself retries.
            self.last_pong = Some(now);
            // The path to the signalling server may have died too, and
            // the handover needs it: have it checked now.
            self.signal.probe();
            self.handover("keepalives went unanswered").await;
            return;
        }
        let ping = crate::ctl::ping(self.clock_micros());
        let _ = ctl.try_send_text(&ping).await;
    }
}
