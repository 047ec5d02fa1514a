//! The WireGuard path of one configured peer, owned by one task: the local
//! WireGuard's socket, the `wg` channel of every connection that has one
//! (the current one and, during a handover, the one being replaced), which
//! of them carries what WireGuard sends, and the datagrams held while none
//! does. Channels arrive here straight from where they are made and are
//! read here; the peer's state machine only says which one carries.
//!
//! Both ways go in batches: what WireGuard sent is read with one
//! `recvmmsg` and handed to the carrying channel one message each, which
//! lets the WebRTC stack's driver wake once and send the whole batch (as
//! UDP GSO when it is long enough); what the channels delivered is taken
//! while it is there and sent to WireGuard in runs of one `sendmsg`.
//! A datagram too large for one SCTP packet goes as two equal halves to a
//! peer that joins them, and halves from the peer are joined here
//! (`super::halves`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use flproto::peer_setup::{Carrier, ConnId, Event};
use futures_util::stream::{self, SelectAll, StreamExt};
use futures_util::FutureExt;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::halves::{Halves, Joined};
use super::relay_path::RelayPath;
use super::PeerStats;
use crate::udp_batch::{BatchSocket, Received, RecvSlots};

/// Datagrams from WireGuard kept while no channel carries, so that its first
/// handshake is not lost (WireGuard would retry only after 5 s).
pub const MAX_PENDING_DATAGRAMS: usize = 16;
/// How long a kept datagram stays worth sending: WireGuard repeats a
/// handshake after 5 s, so anything older has been superseded.
pub const PENDING_DATAGRAM_MAX_AGE: Duration = Duration::from_secs(5);
/// At most one log line per this interval for datagrams from foreign
/// sources, however many arrive; all are counted.
pub const FOREIGN_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Most datagrams from the channels taken before they are sent on to
/// WireGuard: one wake-up's worth, as many as one `recvmmsg` reads.
pub const TO_WIREGUARD_BATCH: usize = crate::udp_batch::RECV_BATCH;
/// Bytes of each buffer that datagrams from WireGuard are copied into on
/// their way to the channel: one allocation serves many datagrams, and is
/// used again once the stack has released all of them.
pub const OUTGOING_BUFFER_BYTES: usize = 64 * 1024;

/// What the peer's driver tells the data path.
pub(super) enum PathCommand {
    /// Connection `conn`'s `wg` channel: read it, and carry over it when told.
    Channel(ConnId, Arc<dyn DataChannel>),
    /// Datagrams go this way from now on (`None`: hold them).
    Carry(Option<Carrier>),
    /// The connection is closed: forget its channel.
    Close(ConnId),
    /// The peer joins datagrams sent in halves on connection `conn`'s
    /// channel (it said so on `ctl`).
    SendHalves(ConnId),
}

/// How the rest of the peer reaches its data path.
pub(super) type PathSender = mpsc::UnboundedSender<PathCommand>;

type ChannelEvents = std::pin::Pin<Box<dyn futures_util::Stream<Item = (ConnId, DataChannelEvent)> + Send>>;

/// Where datagrams from WireGuard go: a connection's channel, looked up
/// once when the state machine names it rather than for every datagram,
/// or the signalling server's relay.
enum Route {
    Link {
        conn: ConnId,
        channel: Arc<dyn DataChannel>,
    },
    Relay,
}

pub(super) struct DataPath {
    socket: Arc<BatchSocket>,
    /// The local WireGuard's own UDP address.
    wireguard: SocketAddr,
    stats: Arc<PeerStats>,
    /// Tells the peer's state machine when a `wg` channel opens.
    events: mpsc::UnboundedSender<Event>,
    channels: HashMap<ConnId, Arc<dyn DataChannel>>,
    route: Option<Route>,
    /// Where datagrams go when the relay carries.
    relay: RelayPath,
    pending: VecDeque<(tokio::time::Instant, BytesMut)>,
    /// When a datagram from a foreign source was last logged.
    foreign_logged: Option<tokio::time::Instant>,
    /// Where the next datagram from WireGuard is copied to (see
    /// [`OUTGOING_BUFFER_BYTES`]).
    outgoing: BytesMut,
    /// Datagrams in halves, both ways.
    halves: Halves,
}

impl DataPath {
    /// Starts the task; it ends when every [`PathSender`] is dropped.
    pub(super) fn spawn(
        socket: Arc<BatchSocket>,
        wireguard: SocketAddr,
        stats: Arc<PeerStats>,
        events: mpsc::UnboundedSender<Event>,
        relay: RelayPath,
        halves: Option<flproto::halves::ReassemblyLimits>,
    ) -> PathSender {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let halves = Halves::new(halves, stats.clone());
        let path = DataPath {
            socket,
            wireguard,
            stats,
            events,
            channels: HashMap::new(),
            route: None,
            relay,
            pending: VecDeque::new(),
            foreign_logged: None,
            outgoing: BytesMut::new(),
            halves,
        };
        tokio::spawn(path.run(commands_rx));
        commands
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<PathCommand>) {
        let mut readers: SelectAll<ChannelEvents> = SelectAll::new();
        let mut slots = RecvSlots::default();
        let mut to_wireguard: Vec<BytesMut> = Vec::with_capacity(TO_WIREGUARD_BATCH);
        let mut scratch = Vec::new();
        let socket = self.socket.clone();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command, &mut readers).await,
                    None => break,
                },
                Some((conn, event)) = readers.next(), if !readers.is_empty() => {
                    self.on_channel_event(conn, event, &mut to_wireguard);
                    // Whatever else the channels already hold goes in the
                    // same batch; a reader that is not ready ends it.
                    while to_wireguard.len() < TO_WIREGUARD_BATCH {
                        let Some(Some((conn, event))) = readers.next().now_or_never() else {
                            break;
                        };
                        self.on_channel_event(conn, event, &mut to_wireguard);
                    }
                    if !to_wireguard.is_empty() {
                        // A send that fails (WireGuard not listening) loses
                        // what WireGuard would have lost on a UDP path too.
                        let _ = socket.send_all(self.wireguard, &to_wireguard, &mut scratch).await;
                        to_wireguard.clear();
                    }
                }
                received = socket.recv(&mut slots) => {
                    if received.is_ok() {
                        self.on_wireguard_batch(&slots).await;
                    }
                    socket.recycle(&mut slots);
                }
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
                self.route = carrier.and_then(|carrier| match carrier {
                    Carrier::Relay => Some(Route::Relay),
                    Carrier::Link(conn) => {
                        let channel = self.channels.get(&conn)?.clone();
                        Some(Route::Link { conn, channel })
                    }
                });
                for (kept_at, datagram) in std::mem::take(&mut self.pending) {
                    if kept_at.elapsed() > PENDING_DATAGRAM_MAX_AGE {
                        self.stats.drops_not_open.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.forward_to_peer(&datagram).await;
                    }
                }
            }
            PathCommand::Close(conn) => self.forget(conn),
            PathCommand::SendHalves(conn) => self.halves.send_to(conn),
        }
    }

    /// Handles one event of a `wg` channel; a message is added to
    /// `to_wireguard`, to be sent with the rest of its batch.
    fn on_channel_event(&mut self, conn: ConnId, event: DataChannelEvent, to_wireguard: &mut Vec<BytesMut>) {
        match event {
            DataChannelEvent::OnOpen if self.channels.contains_key(&conn) => {
                let _ = self.events.send(Event::WgOpen(conn));
            }
            // Whatever a channel still delivers, even one being replaced,
            // is WireGuard's: hand it over.
            DataChannelEvent::OnMessage(message) => {
                let datagram = match self.halves.on_message(conn, message.data) {
                    Joined::Datagram(datagram) => datagram,
                    Joined::Nothing => return,
                };
                self.stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                self.stats.rx_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
                to_wireguard.push(datagram);
            }
            DataChannelEvent::OnClose => self.forget(conn),
            _ => {}
        }
    }

    /// Connection `conn`'s channel is gone: datagrams are held until the
    /// state machine names another.
    fn forget(&mut self, conn: ConnId) {
        self.channels.remove(&conn);
        self.halves.forget(conn);
        if matches!(&self.route, Some(Route::Link { conn: carrying, .. }) if *carrying == conn) {
            self.route = None;
        }
    }

    /// The datagrams of one read from the WireGuard-facing socket.
    async fn on_wireguard_batch(&mut self, slots: &RecvSlots) {
        for received in slots.received() {
            match received {
                Received::Datagram { source, data } if from_wireguard(source, self.wireguard) => {
                    self.forward_to_peer(data).await;
                }
                Received::Datagram { source, .. } => self.drop_foreign(source),
                Received::Truncated { source } if from_wireguard(source, self.wireguard) => {
                    self.stats.drops_oversize.fetch_add(1, Ordering::Relaxed);
                }
                Received::Truncated { source } => self.drop_foreign(source),
            }
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
        let (channel, in_halves) = match &self.route {
            Some(Route::Relay) => return self.relay.send_datagram(datagram),
            Some(Route::Link { conn, channel }) => (channel, needs_halves(datagram) && self.halves.sends_to(*conn)),
            None => {
                if self.pending.len() == MAX_PENDING_DATAGRAMS {
                    self.pending.pop_front();
                    self.stats.drops_not_open.fetch_add(1, Ordering::Relaxed);
                }
                let kept = BytesMut::from(datagram);
                self.pending.push_back((tokio::time::Instant::now(), kept));
                return;
            }
        };
        let sent = if in_halves {
            let (first, second) = self.halves.split(datagram);
            let first = carve(&mut self.outgoing, &[&first.0, first.1]);
            let second = carve(&mut self.outgoing, &[&second.0, second.1]);
            channel.try_send(first).await.is_ok() && channel.try_send(second).await.is_ok()
        } else {
            let whole = carve(&mut self.outgoing, &[datagram]);
            channel.try_send(whole).await.is_ok()
        };
        if sent {
            self.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
            self.stats.tx_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
        } else {
            self.stats.drops_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `parts` in one buffer of its own that the channel can take, carved from
/// the current `outgoing` buffer (a new one only when it is spent and the
/// stack still holds datagrams of the old one). A free function, not a
/// method, so that it borrows only the buffer while the route is borrowed.
fn carve(outgoing: &mut BytesMut, parts: &[&[u8]]) -> BytesMut {
    let len = parts.iter().map(|part| part.len()).sum();
    if outgoing.capacity() < len {
        outgoing.reserve(OUTGOING_BUFFER_BYTES.max(len));
    }
    for part in parts {
        outgoing.extend_from_slice(part);
    }
    outgoing.split()
}

/// Whether `datagram` goes in halves to a peer that joins them: too large
/// for one SCTP packet, and each half small enough for one (see
/// [`crate::mtu::LARGEST_HALVED_DATAGRAM`]).
fn needs_halves(datagram: &[u8]) -> bool {
    (crate::mtu::LARGEST_WHOLE_DATAGRAM + 1..=crate::mtu::LARGEST_HALVED_DATAGRAM).contains(&datagram.len())
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
    use super::{from_wireguard, needs_halves};

    #[test]
    fn only_datagrams_between_one_and_two_chunks_go_in_halves() {
        for (len, halves) in [
            (64, false),
            (1312, false),
            (1313, true),
            (1452, true),
            (2614, true),
            (2615, false),
            (9032, false),
        ] {
            assert_eq!(needs_halves(&vec![4; len]), halves, "{len}");
        }
    }

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
