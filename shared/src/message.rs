//! Every frame of the signalling protocol, as Rust types whose serde form is
//! fledger's wire format byte for byte (externally tagged enums, compact
//! JSON, one document per WebSocket text frame).
//!
//! Extension variants are marked: fledger's decoders treat an unknown
//! variant as an error, so the server only sends them to nodes that
//! announced with [`crate::BOUND_PROTOCOL_VERSION`].

use serde::{Deserialize, Serialize};

use crate::ids::{ChallengeNonce, NodeId, RealmId, SignatureBytes};
use crate::node_info::{NodeInfo, NodeInfoJson};
pub use crate::setup_message::{PeerInfo, SetupMessage};

/// A frame the server sends to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// `[protocol version, challenge]`, sent once on connect.
    Challenge(u32, ChallengeNonce),
    SystemConfig(SystemConfig),
    ListIDsReply(Vec<NodeInfo>),
    /// A setup message from another node. The server relays the sender's
    /// exact text, so this variant is what a node *receives*.
    PeerSetup(PeerInfo),
    Error(String),
    /// Extension: nodes that joined or left since the last news, limited to
    /// the nodes the receiver has been told about (see `presence`).
    PresenceNews(PresenceNews),
    /// Extension: a `PeerSetup` could not be delivered because the other
    /// party is not connected to this server.
    NotConnected(NodeId),
    /// Extension: the answer to a node that asked for the datagram relay.
    Relay(crate::datagram_relay::RelayAnswer),
    /// Extension: a short-lived credential for this server's TURN service,
    /// sent after registration and again before it expires (see
    /// [`crate::turn_credentials`]).
    TurnCredentials(TurnCredentials),
}

/// Extension: a TURN REST API credential (username `EXPIRY:NODEID`,
/// password `base64(HMAC-SHA1(secret, username))`) and where to use it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
    /// Seconds from now the credential makes new allocations.
    pub ttl: u64,
    /// The UDP port of the TURN service, on the host the node dialled.
    pub port: u16,
    /// Its TCP port, if it listens for TURN over TCP (for clients that
    /// speak it: browsers; flnode's WebRTC stack does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
    /// Its TLS port (`turns:`), if it listens for TURN over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
}

impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TurnCredentials({}, ttl {} s, port {}, password hidden)",
            self.username, self.ttl, self.port
        )
    }
}

/// fledger's system configuration; this server never assigns a realm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemConfig {
    pub system_realm: Option<RealmId>,
}

/// Extension: incremental presence for our own nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceNews {
    pub joined: Vec<NodeInfo>,
    pub left: Vec<NodeId>,
}

/// The frames that list nodes, [`ServerMessage::ListIDsReply`] and
/// [`ServerMessage::PresenceNews`], as the server sends them: with each
/// `NodeInfo` as the JSON it keeps per online node ([`NodeInfoJson`])
/// instead of parsed, and the lists borrowed. Same variants, same fields,
/// same serde form, so the text is byte for byte what those variants
/// serialise to (tested below); it only serialises.
#[derive(Debug, Serialize)]
#[serde(bound = "Infos<I>: Serialize")]
pub enum ListingFrame<'a, I> {
    ListIDsReply(Infos<I>),
    PresenceNews { joined: Infos<I>, left: &'a [NodeId] },
}

/// Node infos serialised as a JSON array, from an iterator over the
/// server's stored ones (cloned for serialising, as serde takes `&self`).
#[derive(Debug)]
pub struct Infos<I>(pub I);

impl<'a, I: Iterator<Item = &'a NodeInfoJson> + Clone> Serialize for Infos<I> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.clone())
    }
}

/// Bytes a [`ListingFrame`] adds to its infos and IDs: the variant and
/// field names, brackets and quotes (`{"PresenceNews":{"joined":[],"left":[]}}`
/// is 38), rounded up.
const LISTING_FRAME_OVERHEAD: usize = 40;

impl<'a, I: Iterator<Item = &'a NodeInfoJson> + Clone> ListingFrame<'a, I> {
    /// The frame's text, allocated once with room for it and hardly more:
    /// thousands of these may wait in queues during a join storm.
    pub fn render(&self) -> String {
        let (infos, left) = match self {
            ListingFrame::ListIDsReply(infos) => (infos, &[][..]),
            ListingFrame::PresenceNews { joined, left } => (joined, *left),
        };
        let infos_len: usize = infos.0.clone().map(|info| info.len() + 1).sum();
        // An ID is 64 hex digits, two quotes and a comma.
        let capacity = LISTING_FRAME_OVERHEAD + infos_len + left.len() * 67;
        let mut text = Vec::with_capacity(capacity);
        // Writing to a Vec cannot fail, nor can serialising stored JSON and
        // hex IDs; the text is UTF-8 as serde_json writes nothing else.
        if serde_json::to_writer(&mut text, self).is_err() {
            return String::new();
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

/// A frame a node sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeMessage {
    Announce(Announce),
    /// Serialised as the bare string `"ListIDsRequest"`; `{"ListIDsRequest":null}`
    /// is accepted as well, as fledger does.
    ListIDsRequest,
    PeerSetup(PeerInfo),
    NodeStats(Vec<NodeStat>),
}

/// A node's proof of identity for this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// 3 for fledger's plain signature, 4 for our bound one.
    pub version: u32,
    /// The challenge the node believes it is answering. Informational only:
    /// the server verifies against the challenge it stored.
    pub challenge: ChallengeNonce,
    pub node_info: NodeInfo,
    pub signature: SignatureBytes,
    /// Extension (version 4): the server authority (`host:port`) the node
    /// dialled and signed. fledger's decoders ignore unknown fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Extension (version 4): the node asks for the datagram relay (see
    /// [`crate::datagram_relay`]). Not signed: it grants nothing a server
    /// would not give any node that asks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relay: bool,
}

/// Statistics fledger nodes report about their peers. Accepted and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStat {
    pub id: NodeId,
    pub version: String,
    pub ping_ms: u32,
    pub ping_rx: u32,
}

impl ServerMessage {
    /// Compact JSON, as sent on the wire.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys,
        // no fallible custom serialisers.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl NodeMessage {
    /// Compact JSON, as sent on the wire.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Literal frames as fledger 0.10 and its server send them.
    const ID: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
    const INFO: &str = r#"{"NodeInfoV3":{"name":"node-a","client":"libc","pubkey":"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c","modules":"STAT | RAND | GOSSIP | WEBPROXY | WEBPROXY_REQUESTS | DHT_ROUTER | DHT_STORAGE"}}"#;
    const SIG: &str = "b5cb8d5f58cd3aea4e44d1ebbebb386bda26e5a3996fc0f13193c84ec689d1fd61c59e7056d6b3a1e789fff8eb95202b8323de5c32e61487f41119cece42ec01";

    fn server_round_trip(json: &str) {
        let msg: ServerMessage = serde_json::from_str(json).unwrap();
        assert_eq!(msg.to_json(), json);
    }

    fn node_round_trip(json: &str) {
        let msg: NodeMessage = serde_json::from_str(json).unwrap();
        assert_eq!(msg.to_json(), json);
    }

    #[test]
    fn server_frames_are_byte_exact() {
        server_round_trip(&format!(r#"{{"Challenge":[3,"{}"]}}"#, "ab".repeat(32)));
        server_round_trip(r#"{"SystemConfig":{"system_realm":null}}"#);
        server_round_trip(&format!(r#"{{"ListIDsReply":[{INFO}]}}"#));
        server_round_trip(&format!(
            r#"{{"PeerSetup":{{"id_init":"{ID}","id_follow":"{ID}","message":{{"Offer":"v=0\r\n..."}}}}}}"#
        ));
        server_round_trip(r#"{"Error":"New Connection with same ID"}"#);
        server_round_trip(r#"{"Relay":{"Granted":{"max_datagram":2048,"bytes_per_second":1250000,"burst":262144}}}"#);
        server_round_trip(r#"{"Relay":{"Refused":"no relay here"}}"#);
    }

    #[test]
    fn an_announce_asks_for_the_relay_with_a_field_fledger_ignores() {
        let plain = format!(
            r#"{{"Announce":{{"version":4,"challenge":"{}","node_info":{INFO},"signature":"{SIG}","server":"a:1"}}}}"#,
            "ab".repeat(32)
        );
        let NodeMessage::Announce(announce) = serde_json::from_str(&plain).unwrap() else {
            panic!("an Announce")
        };
        assert!(!announce.relay, "absent means not asked");
        node_round_trip(&plain);
        let asking = plain.replace(r#""server":"a:1""#, r#""server":"a:1","relay":true"#);
        node_round_trip(&asking);
    }

    #[test]
    fn turn_credentials_are_byte_exact_and_hide_the_password() {
        let json = format!(
            r#"{{"TurnCredentials":{{"username":"1700003600:{ID}","password":"NMttHA1r7MueHjkCbQiIBgq/dMk=","ttl":3600,"port":3478}}}}"#
        );
        server_round_trip(&json);
        let message: ServerMessage = serde_json::from_str(&json).unwrap();
        assert!(!format!("{message:?}").contains("NMtt"), "{message:?}");
        server_round_trip(&format!(
            r#"{{"TurnCredentials":{{"username":"1:{ID}","password":"p","ttl":60,"port":3478,"tcp_port":3478,"tls_port":443}}}}"#
        ));
    }

    #[test]
    fn node_frames_are_byte_exact() {
        node_round_trip(&format!(
            r#"{{"Announce":{{"version":3,"challenge":"{}","node_info":{INFO},"signature":"{SIG}"}}}}"#,
            "ab".repeat(32)
        ));
        node_round_trip(r#""ListIDsRequest""#);
        for message in [
            r#""Init""#.to_owned(),
            r#"{"Offer":"<sdp>"}"#.to_owned(),
            r#"{"Answer":"<sdp>"}"#.to_owned(),
            r#"{"IceCandidate":"candidate:506421950 1 udp 2130706431 10.99.0.1 37166 typ host"}"#.to_owned(),
        ] {
            node_round_trip(&format!(
                r#"{{"PeerSetup":{{"id_init":"{ID}","id_follow":"{ID}","message":{message}}}}}"#
            ));
        }
        node_round_trip(&format!(
            r#"{{"NodeStats":[{{"id":"{ID}","version":"0.10.0","ping_ms":12,"ping_rx":3}}]}}"#
        ));
    }

    #[test]
    fn list_request_in_map_form_is_accepted() {
        let msg: NodeMessage = serde_json::from_str(r#"{"ListIDsRequest":null}"#).unwrap();
        assert_eq!(msg, NodeMessage::ListIDsRequest);
    }

    #[test]
    fn unknown_fields_ride_along_and_are_ignored() {
        let json = format!(
            r#"{{"PeerSetup":{{"id_init":"{ID}","id_follow":"{ID}","message":"Init","session":7,"sig":"x"}}}}"#
        );
        assert!(matches!(
            serde_json::from_str::<NodeMessage>(&json).unwrap(),
            NodeMessage::PeerSetup(_)
        ));
    }

    /// Node infos with names that need escaping and some that do not.
    fn sample_infos(count: u8) -> Vec<crate::node_info::NodeInfoV3> {
        (0..count)
            .map(|n| crate::node_info::NodeInfoV3 {
                name: format!("n\"{n}\\ é \u{1F600}\n"),
                client: "c".into(),
                pubkey: NodeId([n; 32]),
                modules: "STAT | PING".into(),
                sealed_setup: None,
            })
            .collect()
    }

    #[test]
    fn listing_frames_are_the_server_messages_byte_for_byte() {
        for count in [0, 1, 3] {
            let infos = sample_infos(count);
            let stored: Vec<NodeInfoJson> = infos.iter().map(NodeInfoJson::of).collect();
            let parsed: Vec<NodeInfo> = infos.iter().cloned().map(NodeInfo::NodeInfoV3).collect();
            let left: Vec<NodeId> = (0..count).map(|n| NodeId([n + 100; 32])).collect();

            let list = ListingFrame::ListIDsReply(Infos(stored.iter())).render();
            assert_eq!(list, ServerMessage::ListIDsReply(parsed.clone()).to_json());
            let news = ListingFrame::PresenceNews {
                joined: Infos(stored.iter()),
                left: &left,
            }
            .render();
            let typed = ServerMessage::PresenceNews(PresenceNews {
                joined: parsed,
                left: left.clone(),
            });
            assert_eq!(news, typed.to_json());
            for frame in [&list, &news] {
                assert!(frame.capacity() >= frame.len());
                assert!(frame.capacity() - frame.len() <= LISTING_FRAME_OVERHEAD, "{frame}");
            }
        }
    }

    #[test]
    fn signatures_have_exact_length() {
        assert!(serde_json::from_str::<SignatureBytes>(r#""abcd""#).is_err());
        assert!(serde_json::from_str::<SignatureBytes>(&format!("\"{SIG}\"")).is_ok());
        assert!(serde_json::from_str::<SignatureBytes>(&format!("\"{}\"", "g".repeat(128))).is_err());
    }
}
