//! The data channels: WireGuard datagrams go out on `wg` (or wait briefly
//! while it opens), come in from it to the local WireGuard, and `ctl`
//! messages are answered (`crate::ctl`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::{Internal, Peer, CTL_CHANNEL, MAX_PENDING_DATAGRAMS, WG_CHANNEL};
use crate::admission::MAX_TEST_PEER_CHANNELS;
use crate::ctl::{CtlAction, CtlResponder};

impl Peer {
    pub(super) async fn forward_to_peer(&mut self, datagram: &[u8]) {
        let wg = self.wg.as_ref().or(self.previous.as_ref().map(|(_, wg)| wg));
        let Some(wg) = wg else {
            if self.pending_datagrams.len() == MAX_PENDING_DATAGRAMS {
                self.pending_datagrams.pop_front();
                self.stats.drops_not_open.fetch_add(1, Ordering::Relaxed);
            }
            self.pending_datagrams
                .push_back((tokio::time::Instant::now(), BytesMut::from(datagram)));
            return;
        };
        match wg.try_send(BytesMut::from(datagram)).await {
            Ok(()) => {
                self.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                self.stats.tx_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.drops_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether this test peer has used up its byte budget.
    pub(super) fn budget_spent(&self) -> bool {
        self.config.budget.as_ref().is_some_and(|budget| budget.spent())
    }

    /// Closes a test peer's connection once its budget is spent; it stays
    /// closed (setups are ignored) until the task idles out.
    pub(super) async fn close_spent(&mut self) {
        tracing::info!(peer = %self.config.id, "test peer used up its byte budget (--test-peer-budget): connection closed");
        if let Some(connection) = self.connection.take() {
            let _ = connection.close().await;
        }
        self.connected = false;
        self.online = false;
        self.ctl = None;
        self.stats.state.set("failed");
    }

    /// A datagram on the WireGuard-facing port from another local process:
    /// counted and dropped (one log line a second at most).
    pub(super) fn drop_foreign(&mut self, source: SocketAddr) {
        let dropped = self.stats.drops_foreign.fetch_add(1, Ordering::Relaxed) + 1;
        let now = tokio::time::Instant::now();
        if self.foreign_logged.is_none_or(|at| now >= at + Duration::from_secs(1)) {
            self.foreign_logged = Some(now);
            tracing::warn!(
                peer = %self.config.id,
                %source,
                wireguard = %self.config.wireguard,
                dropped,
                "dropped a datagram that did not come from the local WireGuard"
            );
        }
    }

    /// Reads one data channel: WireGuard datagrams go to the local
    /// WireGuard (never for a test peer); `ctl` messages are answered as
    /// [`crate::ctl`] says. A test peer's channels beyond
    /// [`MAX_TEST_PEER_CHANNELS`] are closed, and every byte on its
    /// channels is charged to its budget; when that is spent the channel
    /// closes and the connection goes.
    pub(super) fn watch_channel(&mut self, channel: Arc<dyn DataChannel>) {
        self.channels += 1;
        let budget = self.config.budget.clone();
        if budget.is_some() && self.channels > MAX_TEST_PEER_CHANNELS {
            tracing::debug!(peer = %self.config.id, max = MAX_TEST_PEER_CHANNELS, "test peer opened one data channel too many; closed");
            tokio::spawn(async move {
                let _ = channel.close().await;
            });
            return;
        }
        let generation = self.generation;
        let internal = self.internal_tx.clone();
        let socket = self.config.socket.clone();
        let wireguard = self.config.wireguard;
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let label = channel.label().await.unwrap_or_default();
            let mut ctl = CtlResponder::default();
            let within_budget = |bytes: usize| budget.as_ref().is_none_or(|budget| budget.charge(bytes));
            while let Some(event) = channel.poll().await {
                if let DataChannelEvent::OnMessage(message) = &event {
                    if !within_budget(message.data.len()) {
                        let _ = internal.send(Internal::BudgetSpent(generation));
                        let _ = channel.close().await;
                        break;
                    }
                }
                match event {
                    DataChannelEvent::OnOpen if label == WG_CHANNEL => {
                        let _ = internal.send(Internal::WgOpen(generation, channel.clone()));
                    }
                    DataChannelEvent::OnOpen if label == CTL_CHANNEL => {
                        let _ = internal.send(Internal::CtlOpen(generation, channel.clone()));
                    }
                    DataChannelEvent::OnMessage(message) if label == WG_CHANNEL => {
                        if let Some(socket) = &socket {
                            stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                            stats.rx_bytes.fetch_add(message.data.len() as u64, Ordering::Relaxed);
                            let _ = socket.send_to(&message.data, wireguard).await;
                        }
                    }
                    DataChannelEvent::OnMessage(message) if label == CTL_CHANNEL => {
                        match ctl.on_message(&message.data) {
                            // Text messages: the browser page reads `ctl`
                            // as text.
                            CtlAction::Reply(reply) if within_budget(reply.len()) => {
                                let _ = channel.try_send_text(&String::from_utf8_lossy(&reply)).await;
                            }
                            CtlAction::Reply(_) => {
                                let _ = internal.send(Internal::BudgetSpent(generation));
                                let _ = channel.close().await;
                                break;
                            }
                            CtlAction::Pong { sent_micros } => {
                                let _ = internal.send(Internal::Pong(generation, sent_micros));
                            }
                            CtlAction::Nothing => {}
                        }
                    }
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
        });
    }
}

/// Whether a datagram on a WireGuard-facing port came from the local
/// WireGuard: its address exactly, or its port on a loopback address when
/// it is configured as the wildcard (it then sends from loopback).
pub(super) fn from_wireguard(source: SocketAddr, wireguard: SocketAddr) -> bool {
    if wireguard.ip().is_unspecified() {
        return source.port() == wireguard.port() && source.ip().is_loopback();
    }
    source == wireguard
}

/// A datagram on the WireGuard-facing port; never, for a test peer.
pub(super) async fn receive(socket: Option<&UdpSocket>, buffer: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buffer).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::from_wireguard;

    #[test]
    fn only_the_local_wireguard_may_send_to_its_ports() {
        let wireguard = "127.0.0.1:51820".parse().unwrap();
        assert!(from_wireguard(wireguard, wireguard));
        for foreign in ["127.0.0.1:40000", "127.0.0.2:51820", "10.0.0.1:51820"] {
            assert!(!from_wireguard(foreign.parse().unwrap(), wireguard), "{foreign}");
        }
        let wildcard = "0.0.0.0:51820".parse().unwrap();
        assert!(from_wireguard("127.0.0.1:51820".parse().unwrap(), wildcard));
        assert!(!from_wireguard("127.0.0.1:51821".parse().unwrap(), wildcard));
        assert!(!from_wireguard("192.0.2.7:51820".parse().unwrap(), wildcard));
    }
}
