//! WireGuard keys as flnode uses them: a node's X25519 key
//! (`flproto::x25519`, the Montgomery form of its node key), written the
//! way each consumer wants it: hex for wireguard-go's control socket,
//! base64 for people and `wg`.

use base64::Engine;
use flproto::x25519::{public_of, X25519Public, X25519Secret};
use flproto::NodeId;

/// A WireGuard public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

impl WgKey {
    /// The WireGuard key of `node`; `None` for an ID that is no usable
    /// key (the allow-list refuses those before they get here).
    pub fn of(node: &NodeId) -> Option<WgKey> {
        public_of(node).ok().map(WgKey::from)
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn to_base64(self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl From<X25519Public> for WgKey {
    fn from(key: X25519Public) -> WgKey {
        WgKey(key.0)
    }
}

/// Base64, as `wg` shows keys.
impl std::fmt::Display for WgKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl std::fmt::Debug for WgKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgKey({})", self.to_base64())
    }
}

/// The interface's private key, never printed.
#[derive(Clone)]
pub struct WgSecret(pub [u8; 32]);

impl WgSecret {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<X25519Secret> for WgSecret {
    fn from(key: X25519Secret) -> WgSecret {
        WgSecret(key.0)
    }
}

impl std::fmt::Debug for WgSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WgSecret(…)")
    }
}

#[cfg(test)]
mod tests {
    use flproto::identity::NodeKey;

    use super::*;

    /// The reference key's WireGuard key as docs/protocol.md gives it.
    #[test]
    fn keys_are_base64_for_people_and_hex_for_the_control_socket() {
        let key = WgKey::of(&NodeKey::from_seed([1; 32]).id()).unwrap();
        assert_eq!(key.to_string(), "GxtY3VDqFLYNoXt5DNAnVNlwybq4ZOuzwPMBb+UdP1c=");
        assert_eq!(
            key.to_hex(),
            "1b1b58dd50ea14b60da17b790cd02754d970c9bab864ebb3c0f3016fe51d3f57"
        );
        let secret = WgSecret::from(flproto::x25519::secret_of(&NodeKey::from_seed([1; 32])));
        assert_eq!(format!("{secret:?}"), "WgSecret(…)");
    }
}
