//! What flsignal instances of one cluster tell each other over NATS about
//! presence: which instance holds which node, and that an instance is alive.
//!
//! Relayed `PeerSetup` frames do not go through these types: they travel as
//! the sender's exact bytes on a subject of their own (see `docs/cluster.md`).

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::ids::NodeId;

/// One running flsignal process in a cluster, random per start, so that a
/// restarted instance is a new one and nothing of its predecessor lingers
/// beyond expiry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u64);

impl InstanceId {
    pub fn random() -> Self {
        InstanceId(rand::random())
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({self})")
    }
}

impl std::str::FromStr for InstanceId {
    type Err = std::num::ParseIntError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // `from_str_radix` alone would also take a leading `+`.
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Forces the same error kind as a bad digit.
            return u64::from_str_radix("-", 16).map(InstanceId);
        }
        u64::from_str_radix(text, 16).map(InstanceId)
    }
}

impl Serialize for InstanceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| de::Error::custom("instance ID is not 16 hex digits"))
    }
}

/// A node as an instance announces it to the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEntry {
    pub node: NodeId,
    /// When the instance registered it, in microseconds since the Unix
    /// epoch; with the instance ID it decides which of two connections of
    /// the same node is the newest.
    pub at: u64,
    /// Announced with our protocol version (gets `PresenceNews`).
    pub bound: bool,
    /// The node's `NodeInfo` as the holding instance serialised it after
    /// checking it, repeated verbatim in node lists.
    pub info: Box<RawValue>,
}

/// A presence message between instances (JSON on NATS).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterMessage {
    /// The sender (re)connected to NATS and may have missed news: whoever
    /// receives it answers with a `Snapshot` addressed to the sender.
    Hello { instance: InstanceId },
    /// The sender now holds this node.
    Join { instance: InstanceId, entry: NodeEntry },
    /// The sender no longer holds this node.
    Leave { instance: InstanceId, node: NodeId },
    /// The sender is alive and holds this many nodes.
    Heartbeat { instance: InstanceId, nodes: u64 },
    /// Part of everything the sender holds; the part with `last` ends it,
    /// and nodes of the sender not named since the first part are gone.
    Snapshot {
        instance: InstanceId,
        nodes: Vec<NodeEntry>,
        last: bool,
    },
    /// The sender is shutting down: forget everything it held.
    Goodbye { instance: InstanceId },
}

impl ClusterMessage {
    /// The instance that sent this message.
    pub fn instance(&self) -> InstanceId {
        match self {
            ClusterMessage::Hello { instance }
            | ClusterMessage::Join { instance, .. }
            | ClusterMessage::Leave { instance, .. }
            | ClusterMessage::Heartbeat { instance, .. }
            | ClusterMessage::Snapshot { instance, .. }
            | ClusterMessage::Goodbye { instance } => *instance,
        }
    }

    pub fn to_json(&self) -> String {
        // Only strings, numbers and already valid raw JSON: cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_sixteen_hex_digits() {
        let id = InstanceId(0x0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert_eq!("0123456789abcdef".parse::<InstanceId>().unwrap(), id);
        assert!("123".parse::<InstanceId>().is_err());
        assert!("0123456789abcdeg".parse::<InstanceId>().is_err());
    }

    /// Found by the `hex-fields` fuzz target: a sign is not a hex digit.
    #[test]
    fn instance_ids_with_a_plus_sign_are_refused() {
        assert!("+111111111cb8d5F".parse::<InstanceId>().is_err());
        assert!(serde_json::from_str::<InstanceId>(r#""+123456789abcdef""#).is_err());
    }

    #[test]
    fn messages_round_trip_with_raw_info() {
        let info = r#"{"NodeInfoV3":{"name":"a","client":"c","pubkey":"0101010101010101010101010101010101010101010101010101010101010101","modules":""}}"#;
        let message = ClusterMessage::Join {
            instance: InstanceId(7),
            entry: NodeEntry {
                node: NodeId([1; 32]),
                at: 42,
                bound: true,
                info: RawValue::from_string(info.to_owned()).unwrap(),
            },
        };
        let json = message.to_json();
        assert!(json.contains(info), "info kept verbatim: {json}");
        let back: ClusterMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back.instance(), InstanceId(7));
        assert_eq!(back.to_json(), json);
    }
}
