//! Building a PeerConnection the way flnode needs it (settings that each
//! fixed a real failure, explained where they are set), making its offer or answer,
//! feeding it remote candidates, and reading its selected path.

use std::sync::Arc;
use std::time::Duration;

use flproto::peer_setup::{ConnId, Event, LinkState};
use rtc::ice::mdns::MulticastDnsMode;
use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

use super::channels::{ChannelSinks, CtlSlot};
use super::{CTL_CHANNEL, WG_CHANNEL};

/// Time between ICE connectivity checks of one candidate pair.
pub const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// Checks per pair before giving up on it (28 × 50 ms = webrtc's 1.4 s).
pub const ICE_MAX_BINDING_REQUESTS: u16 = 28;
/// Bytes one data channel may hold unsent; beyond it datagrams are dropped
/// (right for WireGuard, which is UDP).
pub const SEND_BUFFER_LIMIT: usize = 1024 * 1024;

/// One connection the driver holds, by the state machine's [`ConnId`].
pub(super) struct Link {
    pub(super) connection: Arc<dyn PeerConnection>,
    pub(super) ctl: CtlSlot,
}

/// Turns the stack's callbacks into the state machine's events, tagged with
/// the connection they are about.
struct Handler {
    conn: ConnId,
    sinks: ChannelSinks,
    ctl: CtlSlot,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.sinks.events.send(Event::LocalCandidate(self.conn, init.candidate));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::info!(conn = %self.conn, %state, "connection state");
        let state = match state {
            RTCPeerConnectionState::Connected => LinkState::Connected,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => LinkState::Failed,
            _ => return,
        };
        let _ = self.sinks.events.send(Event::Link(self.conn, state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let label = channel.label().await.unwrap_or_default();
        self.sinks.adopt(self.conn, &label, channel, &self.ctl);
    }
}

/// Builds connection `conn`.
pub(super) async fn build(
    conn: ConnId,
    ice_servers: Vec<webrtc::peer_connection::RTCIceServer>,
    sinks: &ChannelSinks,
) -> anyhow::Result<Link> {
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_discard_local_candidates_during_ice_restart(true)
        // Checks every 50 ms (not 200) for as long in all (1.4 s): the
        // agent acts on its timer ticks, so this shortens every step of
        // connection setup, which is what a handover waits for.
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS))
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        // One WireGuard datagram from a managed interface is one SCTP
        // packet, one DTLS record, one UDP datagram (crate::mtu).
        .with_sctp_mtu(crate::mtu::SCTP_MTU)
        .build();
    let ctl = CtlSlot::default();
    let connection = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().with_ice_servers(ice_servers).build())
        .with_setting_engine(settings)
        .with_handler(Arc::new(Handler {
            conn,
            sinks: sinks.clone(),
            ctl: ctl.clone(),
        }))
        .with_runtime(crate::runtime::BufferedRuntime::shared())
        .with_udp_addrs(crate::host_addresses::bind_addresses())
        .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
        .build()
        .await?;
    Ok(Link {
        connection: Arc::new(connection),
        ctl,
    })
}

impl Link {
    /// The initiator's side: the data channels (`wg` only for a WireGuard
    /// peer), then the local offer.
    pub(super) async fn offer(&self, conn: ConnId, sinks: &ChannelSinks) -> anyhow::Result<String> {
        if sinks.path.is_some() {
            let wg_init = RTCDataChannelInit {
                ordered: false,
                max_retransmits: Some(0),
                ..Default::default()
            };
            let wg = self.connection.create_data_channel(WG_CHANNEL, Some(wg_init)).await?;
            sinks.adopt(conn, WG_CHANNEL, wg, &self.ctl);
        }
        let ctl = self.connection.create_data_channel(CTL_CHANNEL, None).await?;
        sinks.adopt(conn, CTL_CHANNEL, ctl, &self.ctl);
        let offer = self.connection.create_offer(None).await?;
        self.connection.set_local_description(offer.clone()).await?;
        Ok(offer.sdp)
    }

    /// The follower's side: applies the peer's offer and makes the answer.
    pub(super) async fn answer(&self, offer: String) -> anyhow::Result<String> {
        self.connection
            .set_remote_description(RTCSessionDescription::offer(offer)?)
            .await?;
        let answer = self.connection.create_answer(None).await?;
        self.connection.set_local_description(answer.clone()).await?;
        Ok(answer.sdp)
    }

    pub(super) async fn apply_answer(&self, answer: String) -> anyhow::Result<()> {
        self.connection
            .set_remote_description(RTCSessionDescription::answer(answer)?)
            .await?;
        Ok(())
    }

    pub(super) async fn add_candidate(&self, candidate: String) {
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid: Some(String::new()),
            sdp_mline_index: Some(0),
            ..Default::default()
        };
        if let Err(error) = self.connection.add_ice_candidate(init).await {
            tracing::debug!(%error, "remote candidate refused");
        }
    }
}
