//! The protocol crate: everything flsignal and flnode must agree on, and
//! nothing that touches a socket, a task or a clock.
//!
//! * [`ids`], [`node_info`] and [`message`] are the wire format: fledger's
//!   signalling protocol version 3, byte-compatible with fledger 0.10, plus a
//!   few extensions that are only ever sent to nodes that asked for them.
//! * [`inbound`] reads a node's frame as the server needs it: checked like
//!   a [`message::NodeMessage`], a relayed setup's text left in the frame.
//! * [`identity`] and [`announce`] are node keys and what exactly they sign.
//! * [`session`] is the server's per-connection state machine and
//!   [`registry`] the server's one record of who is online: who knows whom
//!   ([`presence`]) and, in a cluster, which instance holds which node.
//!   Both take events (and the current time) in and hand actions out, so they
//!   are tested fast and exhaustively without a network.
//! * [`addr_key`] is the key per-source limits count under (IPv6 by prefix).
//! * [`cluster_message`] and [`cluster_presence`] are what instances of a
//!   cluster tell each other over NATS, and the rules (inside the registry)
//!   that decide which instance holds which node (newest wins, expiry by
//!   heartbeat).
//! * [`relay_share`] keeps each sender to a share of a receiver's queue,
//!   and [`source_rate`] with [`addr_key`] limits rates per source address.
//! * [`setup_message`] is the frame two nodes exchange through the server
//!   to set up a connection; [`setup_auth`] signs it and [`seal`] encrypts
//!   it to the receiver, so the server can neither forge nor read it.
//! * [`datagram_relay`] is the last-resort relay of WireGuard datagrams
//!   through the server: its binary frame and its limits; [`fair_queue`]
//!   shares a receiver's relay queue fairly among those who send to it.
//! * [`turn_credentials`] are the short-lived TURN credentials flsignal
//!   hands its nodes (the TURN REST API scheme) and checks again when they
//!   are used.
//! * [`halves`] splits a WireGuard datagram too large for one SCTP packet
//!   into two equal messages on the data channel, and joins them again.
//! * [`x25519`] is a node's Diffie-Hellman key (WireGuard, sealed setups):
//!   the Montgomery form of its node key, and [`overlay`] its overlay
//!   addresses inside the WireGuard tunnels flnode manages.

pub mod addr_key;
pub mod announce;
pub mod close;
pub mod cluster_message;
pub mod cluster_presence;
pub mod datagram_relay;
pub mod fair_queue;
pub mod halves;
pub mod identity;
pub mod ids;
pub mod inbound;
pub mod message;
pub mod node_info;
pub mod overlay;
pub mod peer_setup;
pub mod presence;
pub mod rate;
pub mod registry;
pub mod relay_share;
pub mod seal;
pub mod session;
pub mod setup_auth;
pub mod setup_message;
pub mod source_rate;
pub mod turn_credentials;
pub mod x25519;

pub use ids::{ChallengeNonce, NodeId};
pub use message::{NodeMessage, PeerInfo, ServerMessage, SetupMessage};
pub use node_info::NodeInfo;

/// The signalling protocol version fledger 0.10 speaks. fledger nodes panic
/// on any other number in `Challenge`, so the server always sends this one.
pub const FLEDGER_PROTOCOL_VERSION: u32 = 3;

/// The `Announce.version` our own nodes use: the signature is domain
/// separated and bound to the server (see [`announce`]). It also opts the
/// node in to our extension messages.
pub const BOUND_PROTOCOL_VERSION: u32 = 4;
