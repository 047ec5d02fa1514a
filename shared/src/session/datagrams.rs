//! One connection's part in the datagram relay (see
//! [`crate::datagram_relay`]): whether it may send binary relay frames at
//! all, and whether the next one goes on or is dropped.

use std::time::Instant;

use crate::datagram_relay::frame::Frame;
use crate::datagram_relay::{DatagramRelayLimits, RelayAnswer, RelayGrant, RELAY_OFF};
use crate::ids::NodeId;
use crate::rate::TokenBucket;

/// Whether the node's binary frames are relay frames.
#[derive(Debug)]
pub(super) enum RelayGate {
    /// The node did not ask (a fledger node never can): a binary frame
    /// closes the connection (1003), as in protocol version 3.
    NotAsked,
    /// It asked and the server does not relay: the same.
    Refused,
    /// Frames within the limits are forwarded. Boxed: every idle session
    /// holds a gate, and most never relay.
    Granted(Box<Grant>),
}

/// A granted relay's limits, and what the node may still send (bytes).
#[derive(Debug)]
pub(super) struct Grant {
    limits: DatagramRelayLimits,
    bucket: TokenBucket,
}

/// What becomes of one relay frame from a node whose relay was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramVerdict {
    /// Forward it to `to`, readdressed to the sender.
    Forward { to: NodeId },
    /// Drop it and count why; the connection stays.
    Drop(DatagramDrop),
}

/// Why a relay frame was dropped at the sender's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramDrop {
    /// Not a relay frame (too short, unknown kind).
    Malformed,
    /// Its payload is larger than the largest datagram relayed.
    TooLarge,
    /// Addressed to its sender.
    SelfAddressed,
    /// Over the node's bandwidth.
    NodeRate,
}

impl DatagramDrop {
    pub const ALL: [DatagramDrop; 4] = [
        DatagramDrop::Malformed,
        DatagramDrop::TooLarge,
        DatagramDrop::SelfAddressed,
        DatagramDrop::NodeRate,
    ];

    /// The `flsignal_datagram_drops_total` reason.
    pub fn label(self) -> &'static str {
        match self {
            DatagramDrop::Malformed => "malformed",
            DatagramDrop::TooLarge => "too_large",
            DatagramDrop::SelfAddressed => "self_addressed",
            DatagramDrop::NodeRate => "node_rate",
        }
    }
}

impl RelayGate {
    /// The gate of a node that verified: `asked` if it is a version-4
    /// node that asked for the relay; `limits` are the server's, `None`
    /// when it does not relay.
    pub(super) fn for_node(asked: bool, limits: Option<DatagramRelayLimits>, now: Instant) -> RelayGate {
        match (asked, limits) {
            (false, _) => RelayGate::NotAsked,
            (true, None) => RelayGate::Refused,
            (true, Some(limits)) => RelayGate::Granted(Box::new(Grant {
                limits,
                bucket: TokenBucket::new(limits.node_rate, now),
            })),
        }
    }

    /// What the node is told, if it asked.
    pub(super) fn answer(&self) -> Option<RelayAnswer> {
        match self {
            RelayGate::NotAsked => None,
            RelayGate::Refused => Some(RelayAnswer::Refused(RELAY_OFF.into())),
            RelayGate::Granted(grant) => Some(RelayAnswer::Granted(RelayGrant::of(&grant.limits))),
        }
    }

    pub(super) fn is_granted(&self) -> bool {
        matches!(self, RelayGate::Granted(_))
    }

    /// Decides about one frame from `sender`; `None` if the relay was not
    /// granted (the frame is then an ordinary binary frame).
    pub(super) fn admit(&mut self, frame: &[u8], sender: &NodeId, now: Instant) -> Option<DatagramVerdict> {
        let RelayGate::Granted(grant) = self else {
            return None;
        };
        let Grant { limits, bucket } = grant.as_mut();
        let verdict = match Frame::parse(frame) {
            Err(_) => DatagramVerdict::Drop(DatagramDrop::Malformed),
            Ok(parsed) if parsed.payload.len() > limits.max_datagram => DatagramVerdict::Drop(DatagramDrop::TooLarge),
            Ok(parsed) if parsed.node == *sender => DatagramVerdict::Drop(DatagramDrop::SelfAddressed),
            Ok(_) if !bucket.try_take_many(DatagramRelayLimits::cost(frame.len()), now) => {
                DatagramVerdict::Drop(DatagramDrop::NodeRate)
            }
            Ok(parsed) => DatagramVerdict::Forward { to: parsed.node },
        };
        Some(verdict)
    }
}
