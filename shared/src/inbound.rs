//! A node's frame as the server reads it: [`crate::NodeMessage`] checked to the
//! same rules, without building what the server only relays.
//!
//! The server forwards a PeerSetup's text verbatim, so the SDP or ICE
//! candidate inside it is never used, only checked: it must be a JSON
//! string a node's decoder accepts. Parsed into a [`NodeMessage`](crate::NodeMessage), every
//! relayed frame had its SDP unescaped into a new `String` and freed
//! again. Here the payload stays a slice of the frame ([`SetupPayload`]),
//! and everything else (ids, the optional `auth`, announces, node stats)
//! is parsed as `NodeMessage` parses it. [`InboundMessage`] accepts
//! exactly the frames `NodeMessage` accepts; the tests hold the two to that.

use serde::{de, Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::ids::NodeId;
use crate::message::{Announce, NodeStat};
use crate::setup_message::SetupAuth;

/// A frame a node sends, as the server reads it; see the module
/// documentation.
#[derive(Debug, Deserialize)]
pub enum InboundMessage<'a> {
    Announce(Announce),
    ListIDsRequest,
    #[serde(borrow)]
    PeerSetup(PeerSetupRef<'a>),
    NodeStats(Vec<NodeStat>),
}

/// A PeerSetup with its payload left in the frame.
#[derive(Debug, Deserialize)]
pub struct PeerSetupRef<'a> {
    pub id_init: NodeId,
    pub id_follow: NodeId,
    #[serde(borrow)]
    pub message: SetupStep<'a>,
    #[serde(default)]
    pub auth: Option<SetupAuth>,
}

impl PeerSetupRef<'_> {
    /// The other party of the setup, if `sender` is one of the two.
    pub fn counterpart_of(&self, sender: &NodeId) -> Option<NodeId> {
        if *sender == self.id_init {
            Some(self.id_follow)
        } else if *sender == self.id_follow {
            Some(self.id_init)
        } else {
            None
        }
    }
}

/// [`crate::message::SetupMessage`] with its text left in the frame.
#[derive(Debug, Deserialize)]
pub enum SetupStep<'a> {
    Init,
    #[serde(borrow)]
    Offer(SetupPayload<'a>),
    #[serde(borrow)]
    Answer(SetupPayload<'a>),
    #[serde(borrow)]
    IceCandidate(SetupPayload<'a>),
    /// Any of the four, sealed to the receiver (see [`crate::seal`]).
    #[serde(borrow)]
    Sealed(SetupPayload<'a>),
}

/// A JSON string, exactly as it stands in the frame (quotes and escapes
/// included), checked to decode as a Rust `String` does.
#[derive(Debug, Clone, Copy)]
pub struct SetupPayload<'a>(&'a RawValue);

impl<'a> SetupPayload<'a> {
    /// The payload's JSON text, quotes and escapes included.
    pub fn json(&self) -> &'a str {
        self.0.get()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for SetupPayload<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&RawValue>::deserialize(deserializer)?;
        let json = raw.get();
        if !json.starts_with('"') {
            return Err(de::Error::invalid_type(
                de::Unexpected::Other(&excerpt(json)),
                &"a string",
            ));
        }
        // Skipping a string checks its escapes but not that a `\u` escape
        // is a valid character (a lone surrogate is not): those few are
        // decoded in full, as a node's decoder would.
        if json.contains("\\u") {
            serde_json::from_str::<String>(json).map_err(de::Error::custom)?;
        }
        Ok(SetupPayload(raw))
    }
}

/// The start of a refused value, for its error message.
fn excerpt(json: &str) -> String {
    json.chars().take(16).collect()
}

/// Parses `text` as a node's frame, to the rules of [`NodeMessage`](crate::NodeMessage).
pub fn parse(text: &str) -> Result<InboundMessage<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
