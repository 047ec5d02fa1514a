//! Building a PeerConnection the way flnode needs it (settings that each
//! fixed a real failure, see the webrtc notes), feeding it remote
//! candidates, and reading its selected path.

use std::sync::Arc;
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, SettingEngineBuilder,
};

use super::{Internal, Peer, ICE_CHECK_INTERVAL, ICE_MAX_BINDING_REQUESTS, SEND_BUFFER_LIMIT};

pub(super) struct Handler {
    pub(super) generation: u64,
    pub(super) internal: mpsc::UnboundedSender<Internal>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self
                .internal
                .send(Internal::LocalCandidate(self.generation, init.candidate));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.internal.send(Internal::State(self.generation, state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.internal.send(Internal::Channel(self.generation, channel));
    }
}

impl Peer {
    /// Replaces the current connection with a fresh one; a working one is
    /// kept as `previous` until the new one's `wg` opens.
    pub(super) async fn new_connection(&mut self) -> anyhow::Result<Arc<dyn PeerConnection>> {
        if let Some(old) = self.connection.take() {
            match (self.connected, self.wg.take()) {
                (true, Some(wg)) => {
                    if let Some((older, _)) = self.previous.replace((old, wg)) {
                        let _ = older.close().await;
                    }
                }
                _ => {
                    let _ = old.close().await;
                }
            }
        }
        self.ctl = None;
        self.channels = 0;
        self.last_pong = None;
        self.generation += 1;
        self.new_attempt();
        self.remote_described = false;
        self.remote_generation = None;
        self.pending_candidates.clear();
        self.wg = None;
        self.connected = false;
        self.stats.state.set(if self.previous.is_some() {
            "handover"
        } else {
            "connecting"
        });
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_discard_local_candidates_during_ice_restart(true)
            // Checks every 50 ms (not 200) for as long in all (1.4 s): the
            // agent acts on its timer ticks, so this shortens every step of
            // connection setup, which is what a handover waits for.
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .build();
        let connection = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(self.config.ice_servers.clone())
                    .build(),
            )
            .with_setting_engine(settings)
            .with_handler(Arc::new(Handler {
                generation: self.generation,
                internal: self.internal_tx.clone(),
            }))
            .with_runtime(crate::runtime::BufferedRuntime::shared())
            .with_udp_addrs(crate::host_addresses::bind_addresses())
            .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
            .build()
            .await?;
        let connection: Arc<dyn PeerConnection> = Arc::new(connection);
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    /// Adds the buffered candidates of the attempt we just described.
    pub(super) async fn flush_candidates(&mut self) {
        for (generation, candidate) in std::mem::take(&mut self.pending_candidates) {
            if Some(generation) == self.remote_generation {
                self.add_candidate(candidate).await;
            }
        }
    }

    pub(super) async fn add_candidate(&self, candidate: String) {
        let Some(connection) = &self.connection else {
            return;
        };
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid: Some(String::new()),
            sdp_mline_index: Some(0),
            ..Default::default()
        };
        if let Err(error) = connection.add_ice_candidate(init).await {
            tracing::debug!(peer = %self.config.id, %error, "remote candidate refused");
        }
    }

    pub(super) async fn refresh_path(&self) {
        let path = match (&self.connection, self.connected) {
            (Some(connection), true) => crate::path_stats::selected_path(connection.as_ref()).await,
            _ => None,
        };
        if let Ok(mut slot) = self.stats.path.lock() {
            *slot = path;
        }
    }
}
