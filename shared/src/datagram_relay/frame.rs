//! The binary WebSocket frame of the datagram relay, the same both ways:
//!
//! ```text
//! kind       1 byte    0 datagram, 1 ping, 2 pong
//! node ID   32 bytes   to the server: the destination;
//!                      from the server: the sender
//! payload   the rest   a WireGuard datagram, or a ping's opaque bytes
//! ```
//!
//! The server reads the kind and the node ID, puts the sender's ID where
//! the destination's was, and forwards the frame; the payload is never
//! looked at. A full node ID rather than a shorter handle: 32 bytes are
//! about 2 % of a full-size WireGuard packet, and a handle would need a
//! table on both sides that a reconnect or a cluster move must keep in
//! step. Ping and pong are for the two nodes: a node answers a ping from
//! its peer with a pong carrying the same payload, which measures the
//! relayed path end to end (what `flnode status` shows as its RTT).

use crate::ids::NodeId;

/// Bytes before the payload: the kind and a node ID.
pub const HEADER_LEN: usize = 1 + 32;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A WireGuard datagram.
    Datagram = 0,
    /// A node asks its peer to echo the payload as a pong.
    Ping = 1,
    /// The echo of a ping's payload.
    Pong = 2,
}

impl FrameKind {
    pub const ALL: [FrameKind; 3] = [FrameKind::Datagram, FrameKind::Ping, FrameKind::Pong];

    fn from_byte(byte: u8) -> Option<FrameKind> {
        FrameKind::ALL.into_iter().find(|kind| *kind as u8 == byte)
    }
}

/// Why bytes are not a relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a relay frame is at least {HEADER_LEN} bytes, this one {0}")]
    TooShort(usize),
    #[error("unknown relay frame kind {0}")]
    UnknownKind(u8),
}

/// A frame's header and payload, borrowed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    /// The destination (to the server) or the sender (from it).
    pub node: NodeId,
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads a frame; only the header is checked.
    pub fn parse(bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::TooShort(bytes.len()));
        }
        let kind = FrameKind::from_byte(bytes[0]).ok_or(FrameError::UnknownKind(bytes[0]))?;
        let mut node = [0u8; 32];
        node.copy_from_slice(&bytes[1..HEADER_LEN]);
        Ok(Frame {
            kind,
            node: NodeId(node),
            payload: &bytes[HEADER_LEN..],
        })
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + self.payload.len());
        bytes.push(self.kind as u8);
        bytes.extend_from_slice(self.node.as_bytes());
        bytes.extend_from_slice(self.payload);
        bytes
    }
}

/// Puts `node` in the header of a frame that [`Frame::parse`] accepted:
/// what the server does to a frame before forwarding it.
pub fn readdress(frame: &mut [u8], node: &NodeId) {
    if let Some(id) = frame.get_mut(1..HEADER_LEN) {
        id.copy_from_slice(node.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_the_header_is_kind_then_node() {
        let node = NodeId([7; 32]);
        for kind in FrameKind::ALL {
            let bytes = Frame {
                kind,
                node,
                payload: b"ciphertext",
            }
            .encode();
            assert_eq!(bytes[0], kind as u8);
            assert_eq!(&bytes[1..33], &[7; 32]);
            assert_eq!(&bytes[33..], b"ciphertext");
            let frame = Frame::parse(&bytes).unwrap();
            assert_eq!(
                (frame.kind, frame.node, frame.payload),
                (kind, node, &b"ciphertext"[..])
            );
        }
    }

    #[test]
    fn short_frames_and_unknown_kinds_are_refused() {
        assert_eq!(Frame::parse(&[0; 32]), Err(FrameError::TooShort(32)));
        assert_eq!(Frame::parse(&[]), Err(FrameError::TooShort(0)));
        let mut bytes = vec![3u8];
        bytes.extend_from_slice(&[0; 40]);
        assert_eq!(Frame::parse(&bytes), Err(FrameError::UnknownKind(3)));
        // A bare header is a frame with an empty payload.
        assert_eq!(Frame::parse(&[1; 33]).unwrap().payload, b"");
    }

    #[test]
    fn readdressing_replaces_the_node_and_nothing_else() {
        let mut bytes = Frame {
            kind: FrameKind::Ping,
            node: NodeId([1; 32]),
            payload: &[9, 9],
        }
        .encode();
        readdress(&mut bytes, &NodeId([2; 32]));
        let frame = Frame::parse(&bytes).unwrap();
        assert_eq!(
            (frame.kind, frame.node, frame.payload),
            (FrameKind::Ping, NodeId([2; 32]), &[9, 9][..])
        );
        let mut short = vec![0u8; 10];
        readdress(&mut short, &NodeId([2; 32]));
        assert_eq!(short, vec![0u8; 10], "a frame too short to have a header is left alone");
    }
}
