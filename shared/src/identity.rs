//! Node keys: an Ed25519 signing key whose public half is the node ID.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::ids::NodeId;
use crate::ids::SignatureBytes;

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("node ID is not a valid Ed25519 public key")]
    BadPublicKey,
    #[error("signature does not verify")]
    BadSignature,
}

/// A node's secret key. The node ID is its public key.
pub struct NodeKey {
    signing: SigningKey,
}

impl NodeKey {
    /// A new random key from the operating system's RNG.
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The key for a 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> SignatureBytes {
        SignatureBytes(self.signing.sign(message).to_bytes())
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({:?})", self.id())
    }
}

/// Verifies `signature` by `signer` over `message` with strict RFC 8032
/// rules (no malleable signatures, no small-order keys).
pub fn verify(signer: &NodeId, message: &[u8], signature: &SignatureBytes) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(signer.as_bytes()).map_err(|_| SignatureError::BadPublicKey)?;
    if key.is_weak() {
        return Err(SignatureError::BadPublicKey);
    }
    key.verify_strict(message, &Signature::from_bytes(&signature.0))
        .map_err(|_| SignatureError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_test_vector() {
        let key = NodeKey::from_seed([1; 32]);
        assert_eq!(
            key.id().to_hex(),
            "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
        );
        let signature = key.sign(&[0xab; 32]);
        assert_eq!(
            const_hex::encode(signature.0),
            "b5cb8d5f58cd3aea4e44d1ebbebb386bda26e5a3996fc0f13193c84ec689d1fd61c59e7056d6b3a1e789fff8eb95202b8323de5c32e61487f41119cece42ec01"
        );
        assert_eq!(verify(&key.id(), &[0xab; 32], &signature), Ok(()));
        assert_eq!(
            verify(&key.id(), &[0xac; 32], &signature),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn small_order_and_invalid_keys_are_refused() {
        // The identity point is a valid encoding of a small-order key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let signature = SignatureBytes([0; 64]);
        assert_eq!(
            verify(&NodeId(identity), b"x", &signature),
            Err(SignatureError::BadPublicKey)
        );
    }
}
