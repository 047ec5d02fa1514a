//! The relay carrier of one configured peer: WireGuard datagrams through
//! the signalling server's datagram relay (`crate::relay_link`), when the
//! peer's state machine says the relay carries. The data path hands it
//! what WireGuard sends ([`RelayPath::send_datagram`]); a task of its own
//! ([`receive`]) takes what the relay delivers — datagrams to WireGuard,
//! whatever the carrier (make-before-break), pings answered with pongs,
//! pongs timed for `flnode status` and reported to the state machine.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::udp_batch::BatchSocket;
use bytes::Bytes;
use flproto::datagram_relay::frame::{Frame, FrameKind};
use flproto::peer_setup::Event;
use flproto::rate::{RateLimit, TokenBucket};
use tokio::sync::mpsc;

use super::channels::clock_micros;
use super::PeerStats;
use crate::relay_link::{RelaySender, Unsent};

/// Pongs sent for the peer's relay pings, per second and at once: the
/// peer pings twice a second, so this leaves room while a peer that
/// floods pings gets few answers (each costs our relay budget).
pub const PONG_RATE: RateLimit = RateLimit {
    per_second: 10,
    burst: 10,
};
/// Longest ping payload echoed: ours is 8 bytes.
pub const MAX_PING_PAYLOAD: usize = 16;

/// Sends to the peer through the relay.
#[derive(Clone)]
pub(super) struct RelayPath {
    sender: RelaySender,
    stats: Arc<PeerStats>,
    /// The keepalive clock pings carry (see `crate::ctl::ping`).
    clock: Instant,
}

impl RelayPath {
    pub(super) fn new(sender: RelaySender, stats: Arc<PeerStats>, clock: Instant) -> Self {
        Self { sender, stats, clock }
    }

    /// A datagram from WireGuard, while the relay carries: counted as
    /// sent, or as dropped when the server would not take it.
    pub(super) fn send_datagram(&self, datagram: &[u8]) {
        match self.sender.send(FrameKind::Datagram, datagram) {
            Ok(()) => {
                self.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                self.stats.tx_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
            }
            Err(Unsent::NotGranted) => {
                self.stats.drops_not_open.fetch_add(1, Ordering::Relaxed);
            }
            Err(Unsent::TooLarge | Unsent::Full) => {
                self.stats.drops_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Asks the peer for a pong through the relay.
    pub(super) fn ping(&self) {
        let sent = clock_micros(self.clock).to_be_bytes();
        let _ = self.sender.send(FrameKind::Ping, &sent);
    }
}

/// Reads what the relay delivers for this peer until its queue closes.
pub(super) async fn receive(
    mut incoming: mpsc::Receiver<Bytes>,
    path: RelayPath,
    socket: Arc<BatchSocket>,
    wireguard: SocketAddr,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut pongs = TokenBucket::new(PONG_RATE, Instant::now());
    while let Some(bytes) = incoming.recv().await {
        let Ok(frame) = Frame::parse(&bytes) else {
            continue;
        };
        match frame.kind {
            // Whatever carries now, a datagram the relay still delivers
            // is WireGuard's.
            FrameKind::Datagram => {
                path.stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                path.stats
                    .rx_bytes
                    .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
                let _ = socket.send_all(wireguard, &[frame.payload], &mut Vec::new()).await;
            }
            FrameKind::Ping if frame.payload.len() <= MAX_PING_PAYLOAD && pongs.try_take(Instant::now()) => {
                let _ = path.sender.send(FrameKind::Pong, frame.payload);
            }
            FrameKind::Ping => {}
            FrameKind::Pong => {
                let Some(rtt) = round_trip(frame.payload, clock_micros(path.clock)) else {
                    continue;
                };
                path.stats
                    .relay_rtt_micros
                    .store(rtt.as_micros() as u64, Ordering::Relaxed);
                let _ = events.send(Event::RelayPong);
            }
        }
    }
}

/// The round trip of a pong that echoes our ping sent at `payload`
/// (microseconds on our clock), now `now`; `None` for anything else.
fn round_trip(payload: &[u8], now: u64) -> Option<Duration> {
    let sent = u64::from_be_bytes(payload.try_into().ok()?);
    now.checked_sub(sent).map(Duration::from_micros)
}

#[cfg(test)]
mod tests {
    use super::round_trip;
    use std::time::Duration;

    #[test]
    fn a_pong_is_timed_only_if_it_echoes_one_of_our_pings() {
        assert_eq!(
            round_trip(&1_000u64.to_be_bytes(), 1_500),
            Some(Duration::from_micros(500))
        );
        assert_eq!(round_trip(&2_000u64.to_be_bytes(), 1_500), None, "from the future");
        assert_eq!(round_trip(b"short", 1_500), None);
    }
}
