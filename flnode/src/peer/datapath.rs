//! The WireGuard path of one configured peer, owned by one task: the local
//! WireGuard's socket, the `wg` channel of every connection that has one
//! (the current one and, during a handover, the one being replaced), which
//! of them carries what WireGuard sends, and the datagrams held while none
//! does. Channels arrive here straight from where they are made and are
//! read here; the peer's state machine only says which one carries.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use flproto::peer_setup::{Carrier, ConnId, Event};
use futures_util::stream::{self, SelectAll, StreamExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::relay_path::RelayPath;
use super::PeerStats;

/// Datagrams from WireGuard kept while no channel carries, so that its first
/// handshake is not lost (WireGuard would retry only after 5 s).
pub const MAX_PENDING_DATAGRAMS: usize = 16;
/// How long a kept datagram stays worth sending: WireGuard repeats a
/// handshake after 5 s, so anything older has been superseded.
pub const PENDING_DATAGRAM_MAX_AGE: Duration = Duration::from_secs(5);
/// Largest datagram read from the local WireGuard.
pub const MAX_DATAGRAM: usize = 65_535;
/// At most one log line per this interval for datagrams from foreign
/// sources, however many arrive; all are counted.
pub const FOREIGN_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What the peer's driver tells the data path.
pub(super) enum PathCommand {
    /// Connection `conn`'s `wg` channel: read it, and carry over it when told.
    Channel(ConnId, Arc<dyn DataChannel>),
    /// Datagrams go this way from now on (`None`: hold them).
    Carry(Option<Carrier>),
    /// The connection is closed: forget its channel.
    Close(ConnId),
}

/// How the rest of the peer reaches its data path.
pub(super) type PathSender = mpsc::UnboundedSender<PathCommand>;

type ChannelEvents = std::pin::Pin<Box<dyn futures_util::Stream<Item = (ConnId, DataChannelEvent)> + Send>>;

pub(super) struct DataPath {
    socket: Arc<UdpSocket>,
    /// The local WireGuard's own UDP address.
    wireguard: SocketAddr,
    stats: Arc<PeerStats>,
    /// Tells the peer's state machine when a `wg` channel opens.
    events: mpsc::UnboundedSender<Event>,
    channels: HashMap<ConnId, Arc<dyn DataChannel>>,
    carrier: Option<Carrier>,
    /// Where datagrams go when the relay carries.
    relay: RelayPath,
    pending: VecDeque<(tokio::time::Instant, BytesMut)>,
    /// When a datagram from a foreign source was last logged.
    foreign_logged: Option<tokio::time::Instant>,
}

impl DataPath {
    /// Starts the task; it ends when every [`PathSender`] is dropped.
    pub(super) fn spawn(
        socket: Arc<UdpSocket>,
        wireguard: SocketAddr,
        stats: Arc<PeerStats>,
        events: mpsc::UnboundedSender<Event>,
        relay: RelayPath,
    ) -> PathSender {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let path = DataPath {
            socket,
            wireguard,
            stats,
            events,
            channels: HashMap::new(),
            carrier: None,
            relay,
            pending: VecDeque::new(),
            foreign_logged: None,
        };
        tokio::spawn(path.run(commands_rx));
        commands
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<PathCommand>) {
        let mut readers: SelectAll<ChannelEvents> = SelectAll::new();
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        let socket = self.socket.clone();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command, &mut readers).await,
                    None => break,
                },
                Some((conn, event)) = readers.next(), if !readers.is_empty() => {
                    self.on_channel_event(conn, event).await;
                }
                received = socket.recv_from(&mut buffer) => match received {
                    Ok((len, source)) if from_wireguard(source, self.wireguard) => {
                        self.forward_to_peer(&buffer[..len]).await;
                    }
                    Ok((_, source)) => self.drop_foreign(source),
                    Err(_) => {}
                },
            }
        }
    }

    async fn on_command(&mut self, command: PathCommand, readers: &mut SelectAll<ChannelEvents>) {
        match command {
            PathCommand::Channel(conn, channel) => {
                self.channels.insert(conn, channel.clone());
                let events = stream::unfold(channel, move |channel| async move {
                    let event = channel.poll().await?;
                    Some(((conn, event), channel))
                });
                readers.push(Box::pin(events));
            }
            PathCommand::Carry(carrier) => {
                self.carrier = carrier;
                for (kept_at, datagram) in std::mem::take(&mut self.pending) {
                    if kept_at.elapsed() > PENDING_DATAGRAM_MAX_AGE {
                        self.stats.drops_not_open.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.forward_to_peer(&datagram).await;
                    }
                }
            }
            PathCommand::Close(conn) => {
                self.channels.remove(&conn);
                if self.carrier == Some(Carrier::Link(conn)) {
                    self.carrier = None;
                }
            }
        }
    }

    async fn on_channel_event(&mut self, conn: ConnId, event: DataChannelEvent) {
        match event {
            DataChannelEvent::OnOpen if self.channels.contains_key(&conn) => {
                let _ = self.events.send(Event::WgOpen(conn));
            }
            // Whatever a channel still delivers, even one being replaced,
            // is WireGuard's: hand it over.
            DataChannelEvent::OnMessage(message) => {
                self.stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .rx_bytes
                    .fetch_add(message.data.len() as u64, Ordering::Relaxed);
                let _ = self.socket.send_to(&message.data, self.wireguard).await;
            }
            DataChannelEvent::OnClose => {
                self.channels.remove(&conn);
            }
            _ => {}
        }
    }

    /// A datagram on the WireGuard-facing port from another local process:
    /// counted and dropped (one log line per [`FOREIGN_LOG_INTERVAL`]).
    fn drop_foreign(&mut self, source: SocketAddr) {
        let dropped = self.stats.drops_foreign.fetch_add(1, Ordering::Relaxed) + 1;
        let now = tokio::time::Instant::now();
        if self.foreign_logged.is_none_or(|at| now >= at + FOREIGN_LOG_INTERVAL) {
            self.foreign_logged = Some(now);
            tracing::warn!(
                %source,
                wireguard = %self.wireguard,
                dropped,
                "dropped a datagram that did not come from the local WireGuard"
            );
        }
    }

    async fn forward_to_peer(&mut self, datagram: &[u8]) {
        let channel = match self.carrier {
            Some(Carrier::Relay) => return self.relay.send_datagram(datagram),
            Some(Carrier::Link(conn)) => self.channels.get(&conn),
            None => None,
        };
        let Some(channel) = channel else {
            if self.pending.len() == MAX_PENDING_DATAGRAMS {
                self.pending.pop_front();
                self.stats.drops_not_open.fetch_add(1, Ordering::Relaxed);
            }
            self.pending
                .push_back((tokio::time::Instant::now(), BytesMut::from(datagram)));
            return;
        };
        match channel.try_send(BytesMut::from(datagram)).await {
            Ok(()) => {
                self.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                self.stats.tx_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.drops_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Whether a datagram on a WireGuard-facing port came from the local
/// WireGuard: its address exactly, or its port on a loopback address when
/// it is configured as the wildcard (it then sends from loopback).
fn from_wireguard(source: SocketAddr, wireguard: SocketAddr) -> bool {
    if wireguard.ip().is_unspecified() {
        return source.port() == wireguard.port() && source.ip().is_loopback();
    }
    source == wireguard
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
