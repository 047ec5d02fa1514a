//! 32-byte identifiers as they travel on the wire: 64 hex characters,
//! lower case on output, either case accepted on input.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Errors from parsing a 32-byte hex identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected 64 hex characters, got {0} characters")]
    Length(usize),
    #[error("not a hex string")]
    NotHex,
}

/// Parses exactly 64 hex characters into 32 bytes. The length is checked
/// before anything is decoded, so no input size costs more than 64 bytes.
pub fn parse_hex32(text: &str) -> Result<[u8; 32], IdError> {
    if text.len() != 64 {
        return Err(IdError::Length(text.chars().count()));
    }
    let mut bytes = [0u8; 32];
    const_hex::decode_to_slice(text, &mut bytes).map_err(|_| IdError::NotHex)?;
    Ok(bytes)
}

/// Deserialises a string through `parse` without allocating it: serde's
/// `Cow<str>` always makes an owned copy, which cost an allocation per id
/// on every relayed frame (two ids each).
pub(crate) fn deserialize_str_with<'de, D, T, E>(
    deserializer: D,
    expecting: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    struct Parse<F> {
        expecting: &'static str,
        parse: F,
    }
    impl<'de, T, E: fmt::Display, F: FnOnce(&str) -> Result<T, E>> de::Visitor<'de> for Parse<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<Error: de::Error>(self, text: &str) -> Result<T, Error> {
            (self.parse)(text).map_err(Error::custom)
        }
    }
    deserializer.deserialize_str(Parse { expecting, parse })
}

macro_rules! hex32_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            pub fn to_hex(&self) -> String {
                const_hex::encode(self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                parse_hex32(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), &self.to_hex()[..8])
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut buf = [0u8; 64];
                // Cannot fail: the buffer is exactly twice the input length.
                const_hex::encode_to_slice(self.0, &mut buf).map_err(serde::ser::Error::custom)?;
                serializer.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_str_with(deserializer, "64 hex characters", parse_hex32).map(Self)
            }
        }
    };
}

hex32_type!(
    /// A node's identity: its raw 32-byte Ed25519 public key (fledger uses
    /// the key itself, not a hash of it).
    NodeId
);

hex32_type!(
    /// The 32 random bytes a server hands each new connection. A node proves
    /// it owns its key by signing it; a fresh one per connection makes old
    /// signatures worthless.
    ChallengeNonce
);

hex32_type!(
    /// A fledger realm: a set of nodes sharing one configuration. Carried in
    /// `SystemConfig`; this server runs no realms and always sends `null`.
    RealmId
);

impl ChallengeNonce {
    /// A fresh, unpredictable challenge: from the thread's CSPRNG
    /// (`rand::thread_rng`, ChaCha12 seeded and periodically reseeded from
    /// the operating system), which spares every connection a `getrandom`
    /// system call.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }
}

/// A 64-byte Ed25519 signature as 128 hex characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl std::fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignatureBytes({}…)", const_hex::encode(&self.0[..4]))
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&const_hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_str_with(deserializer, "128 hex characters", |text| {
            if text.len() != 128 {
                return Err(format!("signature must be 128 hex characters, got {}", text.len()));
            }
            let mut bytes = [0u8; 64];
            const_hex::decode_to_slice(text.as_bytes(), &mut bytes).map_err(|_| "signature is not hex".to_owned())?;
            Ok(bytes)
        })
        .map(SignatureBytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_lower_case_and_accepts_upper_case() {
        let id: NodeId = "AB".repeat(32).parse().unwrap();
        assert_eq!(id.to_hex(), "ab".repeat(32));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
    }

    #[test]
    fn rejects_wrong_lengths_and_non_hex() {
        assert_eq!(parse_hex32("abc"), Err(IdError::Length(3)));
        assert_eq!(parse_hex32(&"a".repeat(66)), Err(IdError::Length(66)));
        assert_eq!(parse_hex32(&"zz".repeat(32)), Err(IdError::NotHex));
        // 64 bytes but multi-byte characters: not hex, and no panic.
        assert_eq!(parse_hex32(&"é".repeat(32)), Err(IdError::NotHex));
    }

    #[test]
    fn escaped_characters_decode_and_other_types_say_what_was_expected() {
        let hex = "ab".repeat(32);
        // "\u0061" is "a": serde_json hands over an unescaped copy.
        let escaped = format!("\"\\u0061{}\"", &hex[1..]);
        let id: NodeId = serde_json::from_str(&escaped).unwrap();
        assert_eq!(id.to_hex(), hex);
        let error = serde_json::from_str::<NodeId>("42").unwrap_err().to_string();
        assert!(error.contains("expected 64 hex characters"), "{error}");
        let error = serde_json::from_str::<NodeId>("\"abc\"").unwrap_err().to_string();
        assert!(error.contains("got 3 characters"), "{error}");
    }

    #[test]
    fn fresh_challenges_differ() {
        assert_ne!(ChallengeNonce::random(), ChallengeNonce::random());
    }
}
