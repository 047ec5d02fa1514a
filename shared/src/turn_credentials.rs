//! Short-lived TURN credentials, as the TURN REST API defines them
//! (draft-uberti-behave-turn-rest-00, the scheme coturn calls
//! `use-auth-secret`): the username is `EXPIRY:NODEID` (EXPIRY in seconds
//! since the Unix epoch, NODEID the node's 64 hex digits), the password is
//! `base64(HMAC-SHA1(secret, username))`.
//!
//! flsignal hands each authenticated node such a credential over
//! signalling; its TURN service later recomputes the password from the
//! username alone, so it keeps no table of what it handed out, and every
//! instance of a cluster that shares the secret accepts every other's.
//! Nothing here reads a clock: the time comes in as Unix seconds.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::ids::NodeId;

/// Shortest secret accepted: 128 bits, so that the HMAC cannot be guessed.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest secret accepted (a file of this size is surely not a secret).
pub const MAX_SECRET_BYTES: usize = 4096;
/// Bytes of a secret made up at startup.
pub const RANDOM_SECRET_BYTES: usize = 32;
/// Default time a credential stays good for new allocations. A node is sent
/// a fresh one every half of it, so it always holds one good for at least
/// half; a leaked one is useless for new allocations within an hour.
pub const DEFAULT_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest username looked at: ten digits of expiry, `:`, 64 hex digits,
/// with room to spare. Anything longer is refused before it is parsed.
pub const MAX_USERNAME_BYTES: usize = 128;

/// The server's secret. Its bytes never show in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(Box<[u8]>);

impl TurnSecret {
    /// A fresh secret from the operating system's random source.
    pub fn random() -> TurnSecret {
        let mut bytes = vec![0u8; RANDOM_SECRET_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        TurnSecret(bytes.into())
    }

    /// A secret read from a file: its bytes with surrounding whitespace (a
    /// trailing newline) removed.
    pub fn from_file_contents(contents: &[u8]) -> Result<TurnSecret, CredentialError> {
        let trimmed = contents.trim_ascii();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(CredentialError::SecretTooShort(trimmed.len()));
        }
        if trimmed.len() > MAX_SECRET_BYTES {
            return Err(CredentialError::SecretTooLong(trimmed.len()));
        }
        Ok(TurnSecret(trimmed.into()))
    }

    /// The password that belongs to `username`.
    pub fn password_for(&self, username: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.hmac(username))
    }

    fn hmac(&self, username: &str) -> [u8; 20] {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(username.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Issues the credential of `node` that expires at `expires` (Unix
    /// seconds).
    pub fn issue(&self, node: &NodeId, expires: u64) -> TurnCredential {
        let username = format!("{expires}:{node}");
        let password = self.password_for(&username);
        TurnCredential {
            username,
            password,
            expires,
        }
    }

    /// Checks a username and password as a client presents them: the
    /// username must be well formed and unexpired at `now` (Unix seconds),
    /// the password the one this secret gives it (compared in constant
    /// time). The TURN service itself never sees a password, only a
    /// message integrity made with it; it uses [`TurnSecret::check_username`]
    /// and [`TurnSecret::password_for`].
    pub fn verify(&self, username: &str, password: &str, now: u64) -> Result<CredentialUser, CredentialError> {
        let user = self.check_username(username, now)?;
        let presented = base64::engine::general_purpose::STANDARD
            .decode(password)
            .map_err(|_| CredentialError::WrongPassword)?;
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(username.as_bytes());
        mac.verify_slice(&presented)
            .map_err(|_| CredentialError::WrongPassword)?;
        Ok(user)
    }

    /// Whether `username` is a well-formed credential username that has
    /// not expired at `now` (Unix seconds); whose node it is.
    pub fn check_username(&self, username: &str, now: u64) -> Result<CredentialUser, CredentialError> {
        let user = CredentialUser::parse(username)?;
        if user.expires <= now {
            return Err(CredentialError::Expired {
                expired: user.expires,
                now,
            });
        }
        Ok(user)
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TurnSecret({} bytes)", self.0.len())
    }
}

/// A credential as it is handed to a node.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub password: String,
    /// Unix seconds after which it no longer makes new allocations.
    pub expires: u64,
}

impl fmt::Debug for TurnCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TurnCredential({}, password hidden)", self.username)
    }
}

/// What a credential's username says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialUser {
    pub node: NodeId,
    pub expires: u64,
}

impl CredentialUser {
    /// Parses `EXPIRY:NODEID`; nothing longer than [`MAX_USERNAME_BYTES`]
    /// is looked at.
    pub fn parse(username: &str) -> Result<CredentialUser, CredentialError> {
        if username.len() > MAX_USERNAME_BYTES {
            return Err(CredentialError::Malformed);
        }
        let (expires, node) = username.split_once(':').ok_or(CredentialError::Malformed)?;
        // Digits only: `u64::from_str` would take a leading `+`.
        if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CredentialError::Malformed);
        }
        let expires = expires.parse().map_err(|_| CredentialError::Malformed)?;
        let node = node.parse::<NodeId>().map_err(|_| CredentialError::Malformed)?;
        Ok(CredentialUser { node, expires })
    }
}

/// When a node gets its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialSchedule {
    /// How long each credential stays good.
    pub lifetime: Duration,
}

impl CredentialSchedule {
    /// The expiry of a credential issued at `now` (Unix seconds).
    pub fn expiry_at(&self, now: u64) -> u64 {
        now.saturating_add(self.lifetime.as_secs())
    }

    /// How long after issuing one credential the next is sent: half the
    /// lifetime, so the node never holds one about to expire.
    pub fn renewal_interval(&self) -> Duration {
        self.lifetime / 2
    }
}

impl Default for CredentialSchedule {
    fn default() -> Self {
        CredentialSchedule {
            lifetime: DEFAULT_CREDENTIAL_LIFETIME,
        }
    }
}

/// Why a secret or credential is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the TURN secret has {0} bytes; at least {MIN_SECRET_BYTES} are needed")]
    SecretTooShort(usize),
    #[error("the TURN secret has {0} bytes; at most {MAX_SECRET_BYTES} are taken")]
    SecretTooLong(usize),
    #[error("not a TURN REST username (EXPIRY:NODEID)")]
    Malformed,
    #[error("the credential expired at {expired} (now {now})")]
    Expired { expired: u64, now: u64 },
    #[error("wrong password for this username")]
    WrongPassword,
}

impl CredentialError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CredentialError::SecretTooShort(_) | CredentialError::SecretTooLong(_) => "bad_secret",
            CredentialError::Malformed => "bad_username",
            CredentialError::Expired { .. } => "expired",
            CredentialError::WrongPassword => "bad_password",
        }
    }
}

#[cfg(test)]
#[path = "turn_credentials_tests.rs"]
mod tests;
