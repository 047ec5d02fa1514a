//! The last-resort relay: WireGuard datagrams carried over the nodes'
//! signalling WebSockets, through the server, when no data channel path
//! exists between two nodes (a network that blocks UDP).
//!
//! A version-4 node asks for it in its Announce (`"relay": true`); the
//! server answers with [`ServerMessage::Relay`](crate::message::ServerMessage)
//! — granted with its limits, or refused with a reason — and from then on
//! takes binary WebSocket frames from that node ([`frame`]). It forwards
//! each to the node it names, if that node asked for the relay too, with
//! the name replaced by the sender's: the server reads the 33-byte header
//! and never the payload, which is WireGuard ciphertext.
//!
//! What one node may send is limited per node (bytes per second and a
//! burst, a [`TokenBucket`](crate::rate::TokenBucket) over bytes), per
//! frame ([`DatagramRelayLimits::max_datagram`]) and for the server as a
//! whole; what does not fit is dropped and counted, never queued without
//! bound and never a reason to disconnect.

use serde::{Deserialize, Serialize};

use crate::rate::RateLimit;

pub mod frame;

/// Default relay bandwidth of one node: 10 Mbit/s, enough for a video call
/// or a shell through the tunnel, so that one node cannot take a large
/// part of a server that relays for many.
pub const DEFAULT_NODE_RATE: RateLimit = RateLimit {
    per_second: 1_250_000,
    burst: 256 * 1024,
};
/// Default relay bandwidth of the whole server: 400 Mbit/s, below what one
/// core moves through WebSockets, so that relaying never starves the
/// signalling the server is for.
pub const DEFAULT_SERVER_RATE: RateLimit = RateLimit {
    per_second: 50_000_000,
    burst: 4 * 1024 * 1024,
};
/// Default largest datagram relayed (the payload after the header): a
/// WireGuard packet from an interface MTU of up to 2016 bytes (MTU + 32).
pub const DEFAULT_MAX_DATAGRAM: usize = 2048;
/// What each relayed frame costs in the byte budgets on top of its length:
/// the work per frame (a header, WebSocket framing, a queue slot) does not
/// shrink with the payload, so tiny frames cannot buy many times the
/// server's effort of full ones.
pub const FRAME_COST_BYTES: u32 = 64;

/// The limits a server relays datagrams under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramRelayLimits {
    /// Bytes per second and burst one node may send through the relay.
    pub node_rate: RateLimit,
    /// Largest payload of one frame.
    pub max_datagram: usize,
}

impl Default for DatagramRelayLimits {
    fn default() -> Self {
        Self {
            node_rate: DEFAULT_NODE_RATE,
            max_datagram: DEFAULT_MAX_DATAGRAM,
        }
    }
}

impl DatagramRelayLimits {
    /// What a frame of `len` bytes (header included) costs in the budgets.
    pub fn cost(len: usize) -> u32 {
        u32::try_from(len).unwrap_or(u32::MAX).saturating_add(FRAME_COST_BYTES)
    }
}

/// Extension: the server's answer to a node that asked for the relay,
/// sent after `SystemConfig` and before the first node list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayAnswer {
    /// Binary frames are taken from now on, within these limits.
    Granted(RelayGrant),
    /// The server does not relay for this node; why, for its log.
    Refused(String),
}

/// The limits a granted relay runs under, so that a node can drop what the
/// server would drop anyway before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayGrant {
    /// Largest datagram (payload after the header).
    pub max_datagram: u32,
    /// What the node may send on average, in bytes per second.
    pub bytes_per_second: u32,
    /// What it may send at once, in bytes.
    pub burst: u32,
}

impl RelayGrant {
    pub fn of(limits: &DatagramRelayLimits) -> Self {
        Self {
            max_datagram: u32::try_from(limits.max_datagram).unwrap_or(u32::MAX),
            bytes_per_second: limits.node_rate.per_second,
            burst: limits.node_rate.burst,
        }
    }
}

/// Why a server refuses the relay; the text goes to the node.
pub const RELAY_OFF: &str = "this server does not relay datagrams (--relay off)";
