//! Where a connection's data channels go once they exist, whoever made
//! them (our offer, or the peer's through `on_data_channel`): `wg` straight
//! to the peer's data path, `ctl` to a reader of its own that answers the
//! `ctl` protocol (`crate::ctl`) and reports keepalives to the state machine.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use flproto::peer_setup::{ConnId, Event};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::datapath::{PathCommand, PathSender};
use super::{PeerStats, CTL_CHANNEL, WG_CHANNEL};
use crate::admission::{ByteBudget, MAX_TEST_PEER_CHANNELS};
use crate::ctl::{CtlAction, CtlResponder};

/// The data channels of one connection, as far as the driver needs them.
#[derive(Default)]
pub(super) struct LinkChannels {
    /// Its `ctl` channel, once it exists: keepalive pings go out on it.
    pub(super) ctl: OnceLock<Arc<dyn DataChannel>>,
    /// Channels adopted so far (capped for a test peer).
    adopted: AtomicUsize,
    /// Bytes a test peer sent on its other channel (the page's `wg`, where
    /// its throughput test goes) since its last `bulkend`.
    test_bytes: AtomicU64,
}

pub(super) type CtlSlot = Arc<LinkChannels>;

/// What a connection's channels are handed to.
#[derive(Clone)]
pub(super) struct ChannelSinks {
    pub(super) events: mpsc::UnboundedSender<Event>,
    /// `None` for a test peer: it never gets the WireGuard path.
    pub(super) path: Option<PathSender>,
    pub(super) stats: Arc<PeerStats>,
    /// The clock keepalive pings carry (see [`crate::ctl::ping`]).
    pub(super) clock: std::time::Instant,
    /// What a test peer may still move over its channels; `None` for a
    /// configured peer.
    pub(super) budget: Option<Arc<ByteBudget>>,
    /// Managed mode: this node's overlay addresses, told to the peer when
    /// `ctl` opens, and the sign that the peer's are wanted.
    pub(super) announce: Option<flproto::overlay::OverlayAddresses>,
    /// Whether the peer is asked (on `ctl`) to send large datagrams in
    /// halves, which this node joins (`flproto::halves`).
    pub(super) joins_halves: bool,
}

impl ChannelSinks {
    /// Takes charge of `channel` of connection `conn`. A test peer's
    /// channels beyond [`MAX_TEST_PEER_CHANNELS`] are closed at once.
    pub(super) fn adopt(&self, conn: ConnId, label: &str, channel: Arc<dyn DataChannel>, link: &CtlSlot) {
        let adopted = link.adopted.fetch_add(1, Ordering::Relaxed) + 1;
        if self.budget.is_some() && adopted > MAX_TEST_PEER_CHANNELS {
            tracing::debug!(%conn, max = MAX_TEST_PEER_CHANNELS, "test peer opened one data channel too many; closed");
            tokio::spawn(async move {
                let _ = channel.close().await;
            });
            return;
        }
        match (label, &self.path) {
            (WG_CHANNEL, Some(path)) => {
                let _ = path.send(PathCommand::Channel(conn, channel));
            }
            (CTL_CHANNEL, _) => {
                if link.ctl.set(channel.clone()).is_ok() {
                    tokio::spawn(read_ctl(conn, channel, self.clone(), link.clone()));
                }
            }
            // A test peer's other channels (the page's `wg`) carry nothing
            // for WireGuard: read, charged to its budget, and dropped.
            _ if self.budget.is_some() => {
                tokio::spawn(drain(conn, channel, self.clone(), link.clone()));
            }
            (other, _) => tracing::debug!(label = other, "unknown data channel; ignored"),
        }
    }

    /// Charges `bytes` to a test peer's budget; false once it is spent
    /// (the state machine is told, and the connection goes).
    fn charge(&self, conn: ConnId, bytes: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        if budget.charge(bytes) {
            return true;
        }
        tracing::info!(%conn, "test peer used up its byte budget (--test-peer-budget): connection closed");
        let _ = self.events.send(Event::Exhausted(conn));
        false
    }
}

impl ChannelSinks {
    /// Keeps the overlay addresses the peer announced, and tells the
    /// WireGuard manager if they are new.
    fn addresses_announced(&self, addresses: flproto::overlay::OverlayAddresses) {
        let Ok(mut announced) = self.stats.announced.lock() else {
            return;
        };
        if announced.replace(addresses) != Some(addresses) {
            tracing::info!(v4 = %addresses.v4, v6 = %addresses.v6, "the peer announced its overlay addresses");
            self.stats.changes.notify();
        }
    }
}

/// Microseconds on the peer's keepalive clock.
pub(super) fn clock_micros(clock: std::time::Instant) -> u64 {
    clock.elapsed().as_micros() as u64
}

/// Reads one `ctl` channel until it closes. Replies go out as text: the
/// browser page reads `ctl` as text.
async fn read_ctl(conn: ConnId, channel: Arc<dyn DataChannel>, sinks: ChannelSinks, link: CtlSlot) {
    let mut responder = CtlResponder::default();
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                if let Some(own) = &sinks.announce {
                    let _ = channel.try_send_text(&crate::ctl::addresses(own)).await;
                }
                if sinks.joins_halves && sinks.path.is_some() {
                    let _ = channel.try_send_text(crate::ctl::JOINS_HALVES).await;
                }
                let _ = sinks.events.send(Event::CtlOpen(conn));
            }
            DataChannelEvent::OnMessage(message) if !sinks.charge(conn, message.data.len()) => break,
            DataChannelEvent::OnMessage(message) => match responder.on_message(&message.data) {
                CtlAction::Reply(reply) if !sinks.charge(conn, reply.len()) => break,
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
                CtlAction::BulkEnd(id) if sinks.budget.is_some() => {
                    let reply = crate::ctl::bulk_ack(&id, link.test_bytes.swap(0, Ordering::Relaxed));
                    if !sinks.charge(conn, reply.len()) {
                        break;
                    }
                    let _ = channel.try_send_text(&reply).await;
                }
                CtlAction::BulkEnd(_) => {}
                CtlAction::Addresses(addresses) if sinks.announce.is_some() => sinks.addresses_announced(addresses),
                CtlAction::Addresses(_) | CtlAction::Nothing => {}
                CtlAction::JoinsHalves => {
                    if let Some(path) = &sinks.path {
                        let _ = path.send(PathCommand::SendHalves(conn));
                    }
                }
            },
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    let _ = channel.close().await;
}

/// Reads a test peer's channel that carries nothing we use, charging what
/// arrives to its budget and counting it for the throughput test.
async fn drain(conn: ConnId, channel: Arc<dyn DataChannel>, sinks: ChannelSinks, link: CtlSlot) {
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnMessage(message) if !sinks.charge(conn, message.data.len()) => break,
            DataChannelEvent::OnMessage(message) => {
                link.test_bytes.fetch_add(message.data.len() as u64, Ordering::Relaxed);
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    let _ = channel.close().await;
}
