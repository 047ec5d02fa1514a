//! flnode's end of the signalling server's datagram relay
//! (`flproto::datagram_relay`): a queue of relay frames towards the server,
//! which the signalling client sends after any setup message that waits,
//! and the way frames from the server reach the peer they came from.
//!
//! Frames go out only while the server has granted the relay on the
//! current signalling connection (a binary frame would otherwise close
//! it); what is queued meanwhile, or does not fit the queue, is dropped:
//! WireGuard is UDP, and what it sends again is what matters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use flproto::datagram_relay::frame::{Frame, FrameKind};
use flproto::datagram_relay::RelayAnswer;
use flproto::NodeId;
use tokio::sync::mpsc;

/// Relay frames waiting for the signalling connection: about 0.2 s of a
/// server's default per-node bandwidth in full-size packets.
pub const RELAY_OUT_QUEUE: usize = 256;
/// Relay frames from the server waiting for one peer's task.
pub const RELAY_IN_QUEUE: usize = 256;
/// Relay frames written to the server between two flushes at most.
pub const RELAY_WRITE_BATCH: usize = 64;

/// What the server granted on the current signalling connection, shared
/// between the client (which sets it) and the peers (which obey it).
#[derive(Debug, Default)]
pub struct RelayGrantCell {
    /// Largest datagram the server relays; 0 while the relay is not
    /// granted.
    max_datagram: AtomicU32,
}

impl RelayGrantCell {
    pub fn set(&self, max_datagram: Option<u32>) {
        self.max_datagram.store(max_datagram.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn max_datagram(&self) -> Option<usize> {
        match self.max_datagram.load(Ordering::Relaxed) {
            0 => None,
            max => Some(max as usize),
        }
    }
}

/// Takes in the server's answer to our request for the relay: records
/// what was granted, logs it, and says whether it was granted.
pub fn granted(cell: &RelayGrantCell, answer: RelayAnswer) -> bool {
    match answer {
        RelayAnswer::Granted(grant) => {
            tracing::info!(
                max_datagram = grant.max_datagram,
                bytes_per_second = grant.bytes_per_second,
                "the signalling server relays datagrams for this node when no data channel gets through"
            );
            cell.set(Some(grant.max_datagram.max(1)));
            true
        }
        RelayAnswer::Refused(reason) => {
            tracing::warn!("the signalling server does not relay datagrams for this node: {reason}");
            cell.set(None);
            false
        }
    }
}

/// Why a frame was not queued for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// The relay is not granted (now).
    NotGranted,
    /// Larger than the server relays.
    TooLarge,
    /// The queue towards the server is full.
    Full,
}

/// A peer's handle on the relay: sends frames to it through the server.
#[derive(Clone)]
pub struct RelaySender {
    peer: NodeId,
    outgoing: mpsc::Sender<Bytes>,
    grant: Arc<RelayGrantCell>,
}

impl RelaySender {
    /// Queues a frame of `kind` for the peer.
    pub fn send(&self, kind: FrameKind, payload: &[u8]) -> Result<(), Unsent> {
        let max = self.grant.max_datagram().ok_or(Unsent::NotGranted)?;
        if payload.len() > max {
            return Err(Unsent::TooLarge);
        }
        let frame = Frame {
            kind,
            node: self.peer,
            payload,
        };
        self.outgoing
            .try_send(Bytes::from(frame.encode()))
            .map_err(|_| Unsent::Full)
    }
}

/// Where frames from the server go: the task of the peer that sent them.
/// Only configured peers are here (managed mode adds and removes them as
/// the allow-list changes); a frame from anyone else is dropped.
pub struct RelayRoutes {
    peers: parking_lot::RwLock<HashMap<NodeId, mpsc::Sender<Bytes>>>,
    /// Frames dropped: from a node that is not a peer, malformed, or for
    /// a peer whose queue was full.
    pub dropped: AtomicU64,
}

impl RelayRoutes {
    /// Hands a frame from the server to its peer's task.
    pub fn deliver(&self, frame: Bytes) {
        let delivered = Frame::parse(&frame).ok().is_some_and(|parsed| {
            let peers = self.peers.read();
            let queue = peers.get(&parsed.node);
            queue.is_some_and(|queue| queue.try_send(frame.clone()).is_ok())
        });
        if !delivered {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The client's side: frames to send, and where frames received go.
pub struct RelayClientSide {
    pub outgoing: mpsc::Receiver<Bytes>,
    pub routes: Arc<RelayRoutes>,
    pub grant: Arc<RelayGrantCell>,
}

/// One peer's side: its sender and the frames that arrive for it.
pub struct RelayPeerSide {
    pub sender: RelaySender,
    pub incoming: mpsc::Receiver<Bytes>,
}

/// The node's side: gives each configured peer its end of the relay.
#[derive(Clone)]
pub struct RelayPeers {
    outgoing: mpsc::Sender<Bytes>,
    grant: Arc<RelayGrantCell>,
    routes: Arc<RelayRoutes>,
}

impl RelayPeers {
    /// Routes frames from `peer` to the side returned (replacing any
    /// earlier side of the same peer).
    pub fn attach(&self, peer: NodeId) -> RelayPeerSide {
        let (incoming, incoming_rx) = mpsc::channel(RELAY_IN_QUEUE);
        self.routes.peers.write().insert(peer, incoming);
        RelayPeerSide {
            sender: RelaySender {
                peer,
                outgoing: self.outgoing.clone(),
                grant: self.grant.clone(),
            },
            incoming: incoming_rx,
        }
    }

    /// Frames from `peer` are dropped from now on.
    pub fn detach(&self, peer: &NodeId) {
        self.routes.peers.write().remove(peer);
    }
}

/// The relay's plumbing: the signalling client's side and the peers'.
pub fn plumb() -> (RelayClientSide, RelayPeers) {
    let (outgoing, outgoing_rx) = mpsc::channel(RELAY_OUT_QUEUE);
    let grant = Arc::new(RelayGrantCell::default());
    let routes = Arc::new(RelayRoutes {
        peers: parking_lot::RwLock::new(HashMap::new()),
        dropped: AtomicU64::new(0),
    });
    let client = RelayClientSide {
        outgoing: outgoing_rx,
        routes: routes.clone(),
        grant: grant.clone(),
    };
    (
        client,
        RelayPeers {
            outgoing,
            grant,
            routes,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_go_out_only_while_granted_and_within_the_largest_datagram() {
        let peer = NodeId([5; 32]);
        let (mut client, peers) = plumb();
        let side = peers.attach(peer);
        assert_eq!(side.sender.send(FrameKind::Datagram, b"x"), Err(Unsent::NotGranted));
        client.grant.set(Some(4));
        assert_eq!(side.sender.send(FrameKind::Datagram, b"12345"), Err(Unsent::TooLarge));
        side.sender.send(FrameKind::Ping, b"1234").unwrap();
        let frame = client.outgoing.try_recv().unwrap();
        let parsed = Frame::parse(&frame).unwrap();
        assert_eq!(
            (parsed.kind, parsed.node, parsed.payload),
            (FrameKind::Ping, peer, &b"1234"[..])
        );
        client.grant.set(None);
        assert_eq!(side.sender.send(FrameKind::Datagram, b"x"), Err(Unsent::NotGranted));
    }

    #[test]
    fn frames_from_the_server_reach_their_peer_and_nobody_else() {
        let (peer, stranger) = (NodeId([5; 32]), NodeId([6; 32]));
        let (client, peers) = plumb();
        let mut side = peers.attach(peer);
        let from = |node| {
            Bytes::from(
                Frame {
                    kind: FrameKind::Datagram,
                    node,
                    payload: b"p",
                }
                .encode(),
            )
        };
        client.routes.deliver(from(peer));
        client.routes.deliver(from(stranger));
        client.routes.deliver(Bytes::from_static(b"short"));
        assert_eq!(side.incoming.try_recv().unwrap(), from(peer));
        assert!(side.incoming.try_recv().is_err());
        assert_eq!(client.routes.dropped.load(Ordering::Relaxed), 2);
        peers.detach(&peer);
        client.routes.deliver(from(peer));
        assert!(side.incoming.try_recv().is_err());
        assert_eq!(client.routes.dropped.load(Ordering::Relaxed), 3);
    }
}
