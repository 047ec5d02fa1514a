//! The data channels: WireGuard datagrams go out on `wg` (or wait briefly
//! while it opens), come in from it to the local WireGuard, and `ctl`
//! messages are answered (`crate::ctl`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::{Internal, Peer, CTL_CHANNEL, MAX_PENDING_DATAGRAMS, WG_CHANNEL};
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

    /// Reads one data channel: WireGuard datagrams go to the local
    /// WireGuard (never for a test peer); `ctl` messages are answered as
    /// [`crate::ctl`] says.
    pub(super) fn watch_channel(&self, channel: Arc<dyn DataChannel>) {
        let generation = self.generation;
        let internal = self.internal_tx.clone();
        let socket = self.config.socket.clone();
        let wireguard = self.config.wireguard;
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let label = channel.label().await.unwrap_or_default();
            let mut ctl = CtlResponder::default();
            while let Some(event) = channel.poll().await {
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
                            CtlAction::Reply(reply) => {
                                let _ = channel.try_send_text(&String::from_utf8_lossy(&reply)).await;
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

/// A datagram from the local WireGuard; never, for a test peer.
pub(super) async fn receive(socket: Option<&UdpSocket>, buffer: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buffer).await,
        None => std::future::pending().await,
    }
}
