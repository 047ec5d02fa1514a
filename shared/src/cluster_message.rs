//! What flsignal instances of one cluster tell each other over NATS about
//! presence: which instance holds which node, and that an instance is alive.
//!
//! Relayed `PeerSetup` frames do not go through these types: they travel as
//! the sender's exact bytes on a subject of their own (see `docs/cluster.md`).
//!
//! Nothing from NATS is taken on trust: whoever can publish there could
//! otherwise hand our nodes anything. A [`NodeEntry`]'s node info is parsed,
//! checked by the rules an Announce's is and serialised again
//! ([`NodeEntry::checked_info`]); a relayed frame must be a `PeerSetup`
//! between its named sender and its destination ([`check_relayed`]).

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::ids::NodeId;
use crate::inbound::InboundMessage;
use crate::node_info::{NodeInfo, NodeInfoError, NodeInfoJson};

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

/// Why a [`NodeEntry`] from another instance is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("node info is not NodeInfo JSON")]
    Malformed,
    #[error(transparent)]
    NodeInfo(#[from] NodeInfoError),
    #[error("node info names another node than the entry")]
    OtherNode,
}

impl NodeEntry {
    /// The node info as our nodes will see it: parsed, held to the rules of
    /// an Announce's node info, and serialised by us, so that no field or
    /// byte the other instance added survives.
    pub fn checked_info(&self) -> Result<NodeInfoJson, EntryError> {
        let info: NodeInfo = serde_json::from_str(self.info.get()).map_err(|_| EntryError::Malformed)?;
        let v3 = info.validated()?;
        if v3.pubkey != self.node {
            return Err(EntryError::OtherNode);
        }
        Ok(NodeInfoJson::of(v3))
    }
}

/// Why a frame another instance relayed is not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayRefusal {
    #[error("relayed frame is not a PeerSetup")]
    NotPeerSetup,
    #[error("the sender of a relayed PeerSetup is neither id_init nor id_follow")]
    WrongSender,
    #[error("a relayed PeerSetup is not for the node it was sent to")]
    NotForDestination,
    #[error("a relayed PeerSetup is addressed to its sender")]
    SelfAddressed,
}

impl RelayRefusal {
    pub const ALL: [RelayRefusal; 4] = [
        RelayRefusal::NotPeerSetup,
        RelayRefusal::WrongSender,
        RelayRefusal::NotForDestination,
        RelayRefusal::SelfAddressed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RelayRefusal::NotPeerSetup => "relay_not_setup",
            RelayRefusal::WrongSender => "relay_wrong_sender",
            RelayRefusal::NotForDestination => "relay_not_for_destination",
            RelayRefusal::SelfAddressed => "relay_self_addressed",
        }
    }
}

/// Checks a frame another instance relayed from `from` to `to` the way the
/// session checked it at the sender's: a `PeerSetup` whose sender is one
/// of its two parties and whose other party is `to`.
pub fn check_relayed(text: &str, from: &NodeId, to: &NodeId) -> Result<(), RelayRefusal> {
    let Ok(InboundMessage::PeerSetup(setup)) = crate::inbound::parse(text) else {
        return Err(RelayRefusal::NotPeerSetup);
    };
    match setup.counterpart_of(from) {
        None => Err(RelayRefusal::WrongSender),
        Some(other) if other == *from => Err(RelayRefusal::SelfAddressed),
        Some(other) if other != *to => Err(RelayRefusal::NotForDestination),
        Some(_) => Ok(()),
    }
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

    fn entry_with_info(node: NodeId, info: &str) -> NodeEntry {
        NodeEntry {
            node,
            at: 1,
            bound: true,
            info: RawValue::from_string(info.to_owned()).unwrap(),
        }
    }

    #[test]
    fn entry_info_is_checked_and_serialised_again() {
        let id = NodeId([1; 32]);
        let spaced = format!(
            r#"{{ "NodeInfoV3" : {{"name":"a","client":"c","pubkey":"{id}","modules":"STAT","extra":"dropped"}} }}"#
        );
        let info = entry_with_info(id, &spaced).checked_info().unwrap();
        assert_eq!(info.as_str(), NodeInfo::v3("a", "c", id, "STAT").to_json());
        assert!(!info.as_str().contains("extra"));
    }

    /// What a node advertises about sealed setups reaches the nodes of
    /// every instance: the field is part of the info, not an extra.
    #[test]
    fn the_sealed_setup_advertisement_survives_the_cluster() {
        let id = NodeId([1; 32]);
        let advertised = NodeInfo::v3("a", "c", id, "").advertising(crate::setup_message::Opens::Sealed);
        let info = entry_with_info(id, &advertised.to_json()).checked_info().unwrap();
        assert_eq!(info.as_str(), advertised.to_json());
        assert!(info.as_str().contains(r#""sealed_setup":1"#), "{}", info.as_str());
    }

    #[test]
    fn entry_info_is_held_to_the_announce_rules() {
        let id = NodeId([1; 32]);
        let bad_modules = NodeInfo::v3("a", "c", id, "NOPE").to_json();
        assert!(matches!(
            entry_with_info(id, &bad_modules).checked_info(),
            Err(EntryError::NodeInfo(NodeInfoError::UnknownModule(_)))
        ));
        let long = NodeInfo::v3(&"x".repeat(10_000), "c", id, "").to_json();
        assert!(matches!(
            entry_with_info(id, &long).checked_info(),
            Err(EntryError::NodeInfo(NodeInfoError::TooLong { .. }))
        ));
        let other = NodeInfo::v3("a", "c", NodeId([2; 32]), "").to_json();
        assert_eq!(entry_with_info(id, &other).checked_info(), Err(EntryError::OtherNode));
        for malformed in ["null", "42", r#"{"NodeInfoV9":{}}"#, r#""text""#] {
            assert_eq!(
                entry_with_info(id, malformed).checked_info(),
                Err(EntryError::Malformed),
                "{malformed}"
            );
        }
        let obsolete = entry_with_info(id, r#"{"NodeInfoV1":{"x":1}}"#);
        assert_eq!(
            obsolete.checked_info(),
            Err(EntryError::NodeInfo(NodeInfoError::Obsolete))
        );
    }

    fn setup(init: NodeId, follow: NodeId) -> String {
        format!(r#"{{"PeerSetup":{{"id_init":"{init}","id_follow":"{follow}","message":"Init"}}}}"#)
    }

    #[test]
    fn a_relayed_setup_must_be_between_its_sender_and_its_destination() {
        let (from, to, third) = (NodeId([1; 32]), NodeId([2; 32]), NodeId([3; 32]));
        assert_eq!(check_relayed(&setup(from, to), &from, &to), Ok(()));
        assert_eq!(check_relayed(&setup(to, from), &from, &to), Ok(()));
        assert_eq!(
            check_relayed(&setup(third, to), &from, &to),
            Err(RelayRefusal::WrongSender)
        );
        assert_eq!(
            check_relayed(&setup(from, third), &from, &to),
            Err(RelayRefusal::NotForDestination)
        );
        assert_eq!(
            check_relayed(&setup(from, from), &from, &from),
            Err(RelayRefusal::SelfAddressed)
        );
        for not_setup in [
            "",
            "{}",
            r#""ListIDsRequest""#,
            r#"{"PeerSetup":{"id_init":"00","id_follow":"11","message":"Init"}}"#,
            r#"{"Error":"x"}"#,
        ] {
            assert_eq!(
                check_relayed(not_setup, &from, &to),
                Err(RelayRefusal::NotPeerSetup),
                "{not_setup}"
            );
        }
    }

    /// A sealed setup crosses the cluster like a plain one: the check reads
    /// ids only, and every setup kind a node may send passes it.
    #[test]
    fn every_setup_kind_may_be_relayed_between_instances() {
        let (from, to) = (NodeId([1; 32]), NodeId([2; 32]));
        for message in [
            r#""Init""#,
            r#"{"Offer":"v=0"}"#,
            r#"{"Answer":"v=0"}"#,
            r#"{"IceCandidate":"candidate:1 1 udp 1 10.0.0.1 1 typ host"}"#,
            r#"{"Sealed":"AAAA"}"#,
        ] {
            let text = format!(r#"{{"PeerSetup":{{"id_init":"{from}","id_follow":"{to}","message":{message}}}}}"#);
            assert_eq!(check_relayed(&text, &from, &to), Ok(()), "{message}");
        }
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
