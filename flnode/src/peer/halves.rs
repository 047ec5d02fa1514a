//! The data path's side of datagrams in halves (`flproto::halves`):
//! splitting what goes to a peer that joins halves, and joining what
//! arrives, with the drops counted for `flnode status`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use flproto::halves::{self, Half, Ids, Message, Reassembly, ReassemblyLimits, HEADER_LEN};
use flproto::peer_setup::ConnId;

use super::PeerStats;

/// A half as it goes out: its header, then its bytes.
pub(super) type OutgoingHalf<'a> = ([u8; HEADER_LEN], &'a [u8]);

/// What a message from a `wg` channel gave.
pub(super) enum Joined {
    /// A datagram for WireGuard.
    Datagram(BytesMut),
    /// Nothing for WireGuard: a half waiting for its partner, or one
    /// dropped (malformed, or pushing out an older one), counted.
    Nothing,
}

pub(super) struct Halves {
    ids: Ids,
    /// Connections whose peer said it joins halves.
    send_to: Vec<ConnId>,
    reassembly: Reassembly<ConnId, BytesMut>,
    stats: Arc<PeerStats>,
}

impl Halves {
    /// `None`: this node joins no halves (it did not ask for them), and
    /// every half that arrives anyway is dropped and counted.
    pub(super) fn new(limits: Option<ReassemblyLimits>, stats: Arc<PeerStats>) -> Self {
        let limits = limits.unwrap_or(ReassemblyLimits {
            max_held: 0,
            ..ReassemblyLimits::default()
        });
        Self {
            ids: Ids::default(),
            send_to: Vec::new(),
            reassembly: Reassembly::new(limits),
            stats,
        }
    }

    /// The peer joins halves sent on connection `conn`.
    pub(super) fn send_to(&mut self, conn: ConnId) {
        if !self.send_to.contains(&conn) {
            self.send_to.push(conn);
        }
    }

    pub(super) fn sends_to(&self, conn: ConnId) -> bool {
        self.send_to.contains(&conn)
    }

    /// Connection `conn` is gone, and with it whatever of its halves waited.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.send_to.retain(|known| *known != conn);
        let dropped = self.reassembly.forget(conn);
        self.count_dropped(dropped);
    }

    /// `datagram` as two halves with their headers.
    pub(super) fn split<'a>(&mut self, datagram: &'a [u8]) -> (OutgoingHalf<'a>, OutgoingHalf<'a>) {
        let id = self.ids.take();
        let (first, second) = datagram.split_at(halves::split_at(datagram.len()));
        (
            (halves::header(Half::First, id), first),
            (halves::header(Half::Second, id), second),
        )
    }

    /// A message from connection `conn`'s channel.
    pub(super) fn on_message(&mut self, conn: ConnId, message: BytesMut) -> Joined {
        match Message::of(&message) {
            Message::Whole => Joined::Datagram(message),
            Message::Malformed => {
                self.count_dropped(1);
                Joined::Nothing
            }
            Message::Half { half, id } => {
                let step = self.reassembly.on_half(conn, half, id, message, Instant::now());
                self.count_dropped(step.dropped);
                match step.joined {
                    Some((first, second)) => {
                        let (first, second) = (&first[HEADER_LEN..], &second[HEADER_LEN..]);
                        let mut datagram = BytesMut::with_capacity(first.len() + second.len());
                        datagram.extend_from_slice(first);
                        datagram.extend_from_slice(second);
                        Joined::Datagram(datagram)
                    }
                    None => Joined::Nothing,
                }
            }
        }
    }

    fn count_dropped(&self, halves: usize) {
        if halves > 0 {
            self.stats.drops_halves.fetch_add(halves as u64, Ordering::Relaxed);
        }
    }
}
