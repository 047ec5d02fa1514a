//! Where a connection's data channels go once they exist, whoever made
//! them (our offer, or the peer's through `on_data_channel`): `wg` straight
//! to the peer's data path, `ctl` to a reader of its own that answers the
//! `ctl` protocol (`crate::ctl`) and reports keepalives to the state machine.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use flproto::peer_setup::{ConnId, Event};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::datapath::{PathCommand, PathSender};
use super::{PeerStats, CTL_CHANNEL, WG_CHANNEL};
use crate::ctl::{CtlAction, CtlResponder};

/// The `ctl` channel of one connection, once it exists: keepalive pings go
/// out on it.
pub(super) type CtlSlot = Arc<OnceLock<Arc<dyn DataChannel>>>;

/// What a connection's channels are handed to.
#[derive(Clone)]
pub(super) struct ChannelSinks {
    pub(super) events: mpsc::UnboundedSender<Event>,
    /// `None` for a test peer: it never gets the WireGuard path.
    pub(super) path: Option<PathSender>,
    pub(super) stats: Arc<PeerStats>,
    /// The clock keepalive pings carry (see [`crate::ctl::ping`]).
    pub(super) clock: std::time::Instant,
}

impl ChannelSinks {
    /// Takes charge of `channel` of connection `conn`.
    pub(super) fn adopt(&self, conn: ConnId, label: &str, channel: Arc<dyn DataChannel>, ctl: &CtlSlot) {
        match label {
            WG_CHANNEL => match &self.path {
                Some(path) => {
                    let _ = path.send(PathCommand::Channel(conn, channel));
                }
                None => tracing::debug!("a test peer opened a wg channel; ignored"),
            },
            CTL_CHANNEL => {
                if ctl.set(channel.clone()).is_ok() {
                    tokio::spawn(read_ctl(conn, channel, self.clone()));
                }
            }
            other => tracing::debug!(label = other, "unknown data channel; ignored"),
        }
    }
}

/// Microseconds on the peer's keepalive clock.
pub(super) fn clock_micros(clock: std::time::Instant) -> u64 {
    clock.elapsed().as_micros() as u64
}

/// Reads one `ctl` channel until it closes. Replies go out as text: the
/// browser page reads `ctl` as text.
async fn read_ctl(conn: ConnId, channel: Arc<dyn DataChannel>, sinks: ChannelSinks) {
    let mut responder = CtlResponder::default();
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                let _ = sinks.events.send(Event::CtlOpen(conn));
            }
            DataChannelEvent::OnMessage(message) => match responder.on_message(&message.data) {
                CtlAction::Reply(reply) => {
                    let _ = channel.try_send_text(&String::from_utf8_lossy(&reply)).await;
                }
                CtlAction::Pong { sent_micros } => {
                    // A pong from before a restart of ours could carry a
                    // time ahead of this clock: no RTT from it.
                    if let Some(rtt) = sent_micros.and_then(|sent| clock_micros(sinks.clock).checked_sub(sent)) {
                        sinks.stats.ctl_rtt_micros.store(rtt, Ordering::Relaxed);
                    }
                    let _ = sinks.events.send(Event::Pong(conn));
                }
                CtlAction::Nothing => {}
            },
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
}
