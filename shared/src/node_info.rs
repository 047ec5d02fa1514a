//! What a node says about itself when it announces: fledger's `NodeInfoV3`.
//!
//! The server keeps one of these per online node and repeats it to other
//! nodes in every node list, so each field is length-capped and `modules` is
//! checked against the grammar fledger's own parser accepts: a node must not
//! be able to hand other nodes a list they cannot decode.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::NodeId;
use crate::setup_message::Opens;

/// The sealed-setup scheme a node advertises in [`NodeInfoV3::sealed_setup`]
/// when it opens sealed setup messages: [`crate::seal`]'s construction.
pub const SEALED_SETUP_SCHEME: u32 = 1;

/// Longest accepted `name`, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest accepted `client`, in bytes.
pub const MAX_CLIENT_LEN: usize = 64;
/// Longest accepted `modules`, in bytes (all eight flag names take 80).
pub const MAX_MODULES_LEN: usize = 256;

/// Module flag names fledger 0.10 knows, with their bit values.
pub const MODULE_FLAGS: [(&str, u32); 8] = [
    ("STAT", 0x1),
    ("RAND", 0x2),
    ("GOSSIP", 0x4),
    ("PING", 0x8),
    ("WEBPROXY", 0x10),
    ("WEBPROXY_REQUESTS", 0x20),
    ("DHT_ROUTER", 0x40),
    ("DHT_STORAGE", 0x80),
];

/// The announced description of a node. Field order matches fledger's
/// serialisation byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfoV3 {
    pub name: String,
    pub client: String,
    pub pubkey: NodeId,
    pub modules: String,
    /// Extension: the sealed-setup scheme this node opens
    /// ([`SEALED_SETUP_SCHEME`]), so that others seal what they send it.
    /// Absent for fledger and for nodes that open plain setups only; fledger
    /// ignores it, and the server keeps it when it re-serialises the info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_setup: Option<u32>,
}

impl NodeInfoV3 {
    /// What the node says it opens (a scheme other than ours is no use).
    pub fn opens(&self) -> Opens {
        if self.sealed_setup == Some(SEALED_SETUP_SCHEME) {
            Opens::Sealed
        } else {
            Opens::Plain
        }
    }
}

/// fledger wraps node info in a versioned enum. Only `V3` is accepted; the
/// older forms are recognised so that they get a precise error instead of a
/// generic parse failure (fledger's own server panics on `NodeInfoV1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeInfo {
    NodeInfoV3(NodeInfoV3),
    #[serde(skip_serializing)]
    NodeInfoV2(Obsolete),
    #[serde(skip_serializing)]
    NodeInfoV1(Obsolete),
}

/// The content of an obsolete node info, skipped unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obsolete;

impl<'de> Deserialize<'de> for Obsolete {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Obsolete)
    }
}

/// Why a node's self-description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeInfoError {
    #[error("NodeInfoV1 and NodeInfoV2 are no longer supported; announce NodeInfoV3")]
    Obsolete,
    #[error("node info field `{field}` is {len} bytes; the limit is {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("node info `modules` has an unknown flag {0:?}")]
    UnknownModule(String),
}

impl NodeInfo {
    /// Wraps version-3 info the way fledger puts it on the wire.
    pub fn v3(name: &str, client: &str, pubkey: NodeId, modules: &str) -> Self {
        NodeInfo::NodeInfoV3(NodeInfoV3 {
            name: name.to_owned(),
            client: client.to_owned(),
            pubkey,
            modules: modules.to_owned(),
            sealed_setup: None,
        })
    }

    /// The same info, advertising that the node opens what `opens` says.
    pub fn advertising(mut self, opens: Opens) -> Self {
        if let NodeInfo::NodeInfoV3(info) = &mut self {
            info.sealed_setup = (opens == Opens::Sealed).then_some(SEALED_SETUP_SCHEME);
        }
        self
    }

    /// The wire form, as repeated in node lists.
    pub fn to_json(&self) -> String {
        // Strings and a hex ID only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Returns the version-3 info if it is acceptable to relay to others.
    pub fn validated(&self) -> Result<&NodeInfoV3, NodeInfoError> {
        let NodeInfo::NodeInfoV3(info) = self else {
            return Err(NodeInfoError::Obsolete);
        };
        check_len("name", &info.name, MAX_NAME_LEN)?;
        check_len("client", &info.client, MAX_CLIENT_LEN)?;
        check_len("modules", &info.modules, MAX_MODULES_LEN)?;
        check_modules(&info.modules)?;
        Ok(info)
    }
}

/// A node's `NodeInfo` as the JSON this server repeats in node lists:
/// serialised once, when the node announced here or when another instance
/// named it and the info passed [`NodeInfo::validated`]. Lists and news are
/// rendered from it verbatim (see [`crate::message::ListingFrame`]), never
/// parsed back.
#[derive(Debug, Clone)]
pub struct NodeInfoJson(Box<RawValue>);

impl NodeInfoJson {
    /// The wire form of version-3 info, `{"NodeInfoV3":{…}}`.
    pub fn of(info: &NodeInfoV3) -> Self {
        /// `NodeInfo::NodeInfoV3` by reference, so that nothing is cloned.
        #[derive(Serialize)]
        enum Wire<'a> {
            NodeInfoV3(&'a NodeInfoV3),
        }
        // Strings and a hex ID only: serialising cannot fail, and `null`
        // would only stand in if it ever did.
        let json = serde_json::value::to_raw_value(&Wire::NodeInfoV3(info));
        NodeInfoJson(json.unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Bytes of the JSON text.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// The same JSON as a raw value, for a cluster message.
    pub fn to_raw(&self) -> Box<RawValue> {
        self.0.clone()
    }
}

impl PartialEq for NodeInfoJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NodeInfoJson {}

impl Serialize for NodeInfoJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), NodeInfoError> {
    if value.len() > max {
        return Err(NodeInfoError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Accepts what fledger's flag parser accepts: `""`, or flag names and
/// `0x` hex numbers joined by `|` with optional spaces.
fn check_modules(modules: &str) -> Result<(), NodeInfoError> {
    if modules.trim().is_empty() {
        return Ok(());
    }
    for token in modules.split('|').map(str::trim) {
        let known = MODULE_FLAGS.iter().any(|(name, _)| *name == token);
        let hex = token
            .strip_prefix("0x")
            .is_some_and(|digits| !digits.is_empty() && u32::from_str_radix(digits, 16).is_ok());
        if !known && !hex {
            return Err(NodeInfoError::UnknownModule(token.chars().take(32).collect()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = r#"{"NodeInfoV3":{"name":"node-a","client":"libc","pubkey":"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c","modules":"STAT | RAND | GOSSIP | WEBPROXY | WEBPROXY_REQUESTS | DHT_ROUTER | DHT_STORAGE"}}"#;

    #[test]
    fn reference_json_round_trips_byte_exact() {
        let info: NodeInfo = serde_json::from_str(REFERENCE).unwrap();
        assert!(info.validated().is_ok());
        assert_eq!(serde_json::to_string(&info).unwrap(), REFERENCE);
    }

    #[test]
    fn stored_json_is_the_wire_form() {
        let info: NodeInfo = serde_json::from_str(REFERENCE).unwrap();
        let NodeInfo::NodeInfoV3(v3) = &info else {
            panic!("not v3");
        };
        assert_eq!(NodeInfoJson::of(v3).as_str(), REFERENCE);
        assert_eq!(serde_json::to_string(&NodeInfoJson::of(v3)).unwrap(), REFERENCE);
    }

    #[test]
    fn obsolete_versions_get_a_precise_error() {
        for old in [r#"{"NodeInfoV1":{"x":1}}"#, r#"{"NodeInfoV2":{"pubkey":"AAAA"}}"#] {
            let info: NodeInfo = serde_json::from_str(old).unwrap();
            assert_eq!(info.validated(), Err(NodeInfoError::Obsolete));
        }
    }

    #[test]
    fn modules_grammar() {
        let id = NodeId([1; 32]);
        for ok in ["", "STAT", "STAT | PING", "STAT|0x100", " DHT_STORAGE "] {
            assert!(NodeInfo::v3("n", "c", id, ok).validated().is_ok(), "{ok}");
        }
        for bad in ["stat", "STAT | ", "FOO", "0x", "0xzz", "STAT || RAND"] {
            assert!(NodeInfo::v3("n", "c", id, bad).validated().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sealed_setup_advertisement_rides_along_and_is_kept() {
        let id = NodeId([1; 32]);
        let plain = NodeInfo::v3("n", "c", id, "");
        assert!(!plain.to_json().contains("sealed_setup"), "fledger's form is unchanged");
        let sealed = plain.advertising(Opens::Sealed);
        let json = sealed.to_json();
        assert!(json.ends_with(r#","sealed_setup":1}}"#), "{json}");
        let parsed: NodeInfo = serde_json::from_str(&json).unwrap();
        let info = parsed.validated().unwrap();
        assert_eq!(info.opens(), Opens::Sealed);
        assert_eq!(NodeInfo::NodeInfoV3(info.clone()).to_json(), json);
        let other_scheme: NodeInfo = serde_json::from_str(&json.replace(":1}", ":7}")).unwrap();
        assert_eq!(other_scheme.validated().unwrap().opens(), Opens::Plain);
        assert_eq!(
            sealed.advertising(Opens::Plain).to_json(),
            NodeInfo::v3("n", "c", id, "").to_json()
        );
    }

    #[test]
    fn long_fields_are_refused() {
        let info = NodeInfo::v3(&"x".repeat(MAX_NAME_LEN + 1), "c", NodeId([1; 32]), "");
        assert!(matches!(
            info.validated(),
            Err(NodeInfoError::TooLong { field: "name", .. })
        ));
    }
}
