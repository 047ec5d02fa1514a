//! A node's X25519 key, for Diffie-Hellman (WireGuard's static key, sealing
//! setup messages to a node): not a second key but the Montgomery form of
//! the node's Ed25519 key, exactly as libsodium's
//! `crypto_sign_ed25519_pk_to_curve25519` / `…_sk_to_curve25519` compute it.
//!
//! Deriving it means that anyone who knows a node ID knows that node's
//! X25519 public key, with no message, no signature and nothing a
//! signalling server could substitute or withhold; the reasoning and what
//! it costs are in docs/protocol.md ("One key per node").

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::identity::{NodeKey, SignatureError};
use crate::ids::NodeId;

/// An X25519 public key (a Montgomery u-coordinate, little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct X25519Public(pub [u8; 32]);

/// An X25519 secret key, clamped as RFC 7748 uses it.
#[derive(Clone)]
pub struct X25519Secret(pub [u8; 32]);

impl std::fmt::Debug for X25519Public {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X25519Public({})", const_hex::encode(self.0))
    }
}

impl std::fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("X25519Secret(…)")
    }
}

/// The X25519 public key of `node`. Refuses what [`crate::identity::verify`]
/// refuses: an encoding that is not a curve point, and small-order keys
/// (their Diffie-Hellman result is predictable).
pub fn public_of(node: &NodeId) -> Result<X25519Public, SignatureError> {
    let key = VerifyingKey::from_bytes(node.as_bytes()).map_err(|_| SignatureError::BadPublicKey)?;
    if key.is_weak() {
        return Err(SignatureError::BadPublicKey);
    }
    Ok(X25519Public(key.to_montgomery().to_bytes()))
}

/// The X25519 secret key of `key`: the clamped first half of SHA-512 of the
/// Ed25519 seed, the scalar Ed25519 signs with. Whoever holds it can sign
/// as the node, so it is guarded like the node key itself.
pub fn secret_of(key: &NodeKey) -> X25519Secret {
    let mut scalar = SigningKey::from_bytes(&key.seed()).to_scalar_bytes();
    scalar[0] &= 248;
    scalar[31] &= 127;
    scalar[31] |= 64;
    X25519Secret(scalar)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libsodium (PyNaCl 1.6.2) for the reference seed `01`×32:
    /// `crypto_sign_ed25519_pk_to_curve25519` and `…_sk_to_curve25519`.
    #[test]
    fn matches_libsodium_for_the_reference_key() {
        let key = NodeKey::from_seed([1; 32]);
        assert_eq!(
            const_hex::encode(public_of(&key.id()).unwrap().0),
            "1b1b58dd50ea14b60da17b790cd02754d970c9bab864ebb3c0f3016fe51d3f57"
        );
        assert_eq!(
            const_hex::encode(secret_of(&key).0),
            "58e86efb75fa4e2c410f46e16de9f6acae1a1703528651b69bc176c088bef36e"
        );
    }

    #[test]
    fn the_public_key_belongs_to_the_secret_key() {
        for seed in 0..32u8 {
            let key = NodeKey::from_seed([seed; 32]);
            let from_secret = curve25519_dalek::MontgomeryPoint::mul_base_clamped(secret_of(&key).0);
            assert_eq!(public_of(&key.id()).unwrap().0, from_secret.to_bytes(), "seed {seed}");
        }
    }

    #[test]
    fn small_order_and_invalid_node_ids_have_no_x25519_key() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(public_of(&NodeId(identity)), Err(SignatureError::BadPublicKey));
        // Not the encoding of a point (y = 2 has no x on the curve).
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(public_of(&NodeId(off_curve)), Err(SignatureError::BadPublicKey));
    }
}
