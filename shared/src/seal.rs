//! Sealed setup messages: the Offer, Answer, candidates and Init a node
//! sends are encrypted to the receiver, so the signalling server relays
//! ciphertext and never reads a node's addresses, ports, ICE credentials
//! or DTLS fingerprint.
//!
//! The construction is HPKE (RFC 9180) in base mode with
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM, which the
//! browser page rebuilds from WebCrypto alone. The receiver's X25519 key
//! is the Montgomery form of its node key ([`crate::x25519`]), so the very
//! first message to a node can be sealed knowing only its ID.
//!
//! * `info` is [`SEAL_INFO`]: these keys seal nothing but setup messages.
//! * The associated data is the message's signed header
//!   ([`SetupHeader::to_bytes`]: ids, sender, session, generation, seq),
//!   and the sender then signs the sealed text ([`crate::setup_auth`]):
//!   a server that swaps, replays, reorders or re-addresses a sealed
//!   message is refused by the signature check exactly as for plain ones,
//!   and the ciphertext opens only under the header it was sealed with.
//! * The plaintext is the message's kind (1 byte: Init 0, Offer 1,
//!   Answer 2, IceCandidate 3), its payload length (u32 big-endian), the
//!   payload, and zeros up to the smallest of [`PADDED_SIZES`] that holds
//!   it, so sizes do not tell an Offer from a candidate.
//! * On the wire: `{"Sealed":"<base64 of enc ‖ ciphertext>"}` (standard
//!   alphabet, padded).
//!
//! Sealing and opening are pure functions: the ephemeral key's randomness
//! comes in as an [`EphemeralSeed`], so tests (and the shared test
//! vector) are deterministic.

use base64::Engine;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};

use crate::ids::NodeId;
use crate::setup_auth::SetupHeader;
use crate::setup_message::SetupMessage;
use crate::x25519::{self, X25519Secret};

/// HPKE's `info`: binds every key derived for a seal to this purpose.
pub const SEAL_INFO: &[u8] = b"flnode/sealed-setup/v1";

/// The sizes a sealed plaintext is padded to. Offers and Answers of flnode
/// and Chromium are 450–600 bytes and candidates under 200, so all of them
/// share the first class; an SDP that carries many candidates takes the
/// next. The last is the largest whose frame (base64, with ids and
/// signature) stays under flsignal's 64 KiB `--max-message-size`. A burst
/// of first-class frames (1.9 KB each) fits a receiver's relay share
/// (24 frames, 128 KiB) whole.
pub const PADDED_SIZES: [usize; 4] = [1024, 4 * 1024, 16 * 1024, 44 * 1024];

/// Kind and payload length in front of the payload.
pub const INNER_HEADER_LEN: usize = 1 + 4;

/// The largest payload (SDP or candidate text) that can be sealed.
pub const MAX_SEALED_PAYLOAD: usize = PADDED_SIZES[PADDED_SIZES.len() - 1] - INNER_HEADER_LEN;

/// The encapsulated key (the ephemeral X25519 public key) in front of the
/// ciphertext.
pub const ENCAPSULATED_KEY_LEN: usize = 32;

/// AES-GCM's tag at the end of the ciphertext.
pub const TAG_LEN: usize = 16;

/// The longest sealed text accepted for opening: the largest class in
/// base64. Checked before anything is decoded.
pub const MAX_SEALED_TEXT: usize =
    (ENCAPSULATED_KEY_LEN + MAX_SEALED_PAYLOAD + INNER_HEADER_LEN + TAG_LEN).div_ceil(3) * 4;

/// 32 random bytes for one seal: the input keying material of HPKE's
/// `DeriveKeyPair` for the ephemeral key. Never reuse one.
pub struct EphemeralSeed(pub [u8; 32]);

impl std::fmt::Debug for EphemeralSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EphemeralSeed(…)")
    }
}

/// Why a message was not sealed or a sealed one not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("node {0} has no X25519 key (not a valid Ed25519 key, or of small order)")]
    NoKey(NodeId),
    #[error("a {len}-byte payload is too large to seal (at most {MAX_SEALED_PAYLOAD})")]
    TooLarge { len: usize },
    #[error("a sealed message cannot be sealed again")]
    AlreadySealed,
    #[error("sealing failed (the ephemeral key gave a degenerate exchange)")]
    Seal,
    #[error("sealed text of {len} characters is longer than any padded message ({MAX_SEALED_TEXT})")]
    TextTooLong { len: usize },
    #[error("sealed text is not base64")]
    NotBase64,
    #[error("sealed message of {len} bytes is not the size of any padding class")]
    NotPadded { len: usize },
    #[error("sealed message does not open with this node's key (sealed to another node, or under another header)")]
    DoesNotOpen,
    #[error("sealed message opened but is malformed: {0}")]
    Malformed(&'static str),
}

/// Seals `message` (not itself sealed) to `recipient` under `header`, the
/// header it will be signed with.
pub fn seal(
    recipient: &NodeId,
    header: &SetupHeader,
    message: &SetupMessage,
    ephemeral: EphemeralSeed,
) -> Result<SetupMessage, SealError> {
    let public = x25519::public_of(recipient).map_err(|_| SealError::NoKey(*recipient))?;
    let public =
        <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&public.0).map_err(|_| SealError::NoKey(*recipient))?;
    let plaintext = pad(message)?;
    let mut randomness = OneSeed::new(ephemeral);
    let (encapsulated, ciphertext) = hpke::single_shot_seal_with_rng::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeS::Base,
        &public,
        SEAL_INFO,
        &plaintext,
        &header.to_bytes(),
        &mut randomness,
    )
    .map_err(|_| SealError::Seal)?;
    if randomness.overdrawn {
        return Err(SealError::Seal);
    }
    let mut sealed = Vec::with_capacity(ENCAPSULATED_KEY_LEN + ciphertext.len());
    sealed.extend_from_slice(&encapsulated.to_bytes());
    sealed.extend_from_slice(&ciphertext);
    Ok(SetupMessage::Sealed(
        base64::engine::general_purpose::STANDARD.encode(sealed),
    ))
}

/// Opens `sealed` (the text of a [`SetupMessage::Sealed`]) with this
/// node's X25519 `key` under the `header` it was signed with.
pub fn open(key: &X25519Secret, header: &SetupHeader, sealed: &str) -> Result<SetupMessage, SealError> {
    if sealed.len() > MAX_SEALED_TEXT {
        return Err(SealError::TextTooLong { len: sealed.len() });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(|_| SealError::NotBase64)?;
    let Some((encapsulated, ciphertext)) = bytes.split_at_checked(ENCAPSULATED_KEY_LEN) else {
        return Err(SealError::NotPadded { len: bytes.len() });
    };
    let padded_len = ciphertext.len().checked_sub(TAG_LEN);
    if !padded_len.is_some_and(|len| PADDED_SIZES.contains(&len)) {
        return Err(SealError::NotPadded { len: bytes.len() });
    }
    let encapsulated =
        <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(encapsulated).map_err(|_| SealError::DoesNotOpen)?;
    let secret = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(&key.0).map_err(|_| SealError::DoesNotOpen)?;
    let plaintext = hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &secret,
        &encapsulated,
        SEAL_INFO,
        ciphertext,
        &header.to_bytes(),
    )
    .map_err(|_| SealError::DoesNotOpen)?;
    unpad(&plaintext)
}

/// The size class a payload of `len` bytes is padded to, if any.
pub fn padded_len(payload_len: usize) -> Option<usize> {
    let needed = payload_len.checked_add(INNER_HEADER_LEN)?;
    PADDED_SIZES.iter().copied().find(|&size| size >= needed)
}

fn pad(message: &SetupMessage) -> Result<Vec<u8>, SealError> {
    let (kind, payload) = match message {
        SetupMessage::Init => (0u8, ""),
        SetupMessage::Offer(sdp) => (1, sdp.as_str()),
        SetupMessage::Answer(sdp) => (2, sdp.as_str()),
        SetupMessage::IceCandidate(candidate) => (3, candidate.as_str()),
        SetupMessage::Sealed(_) => return Err(SealError::AlreadySealed),
    };
    let size = padded_len(payload.len()).ok_or(SealError::TooLarge { len: payload.len() })?;
    let mut plaintext = Vec::with_capacity(size);
    plaintext.push(kind);
    // At most MAX_SEALED_PAYLOAD: fits.
    plaintext.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    plaintext.extend_from_slice(payload.as_bytes());
    plaintext.resize(size, 0);
    Ok(plaintext)
}

fn unpad(plaintext: &[u8]) -> Result<SetupMessage, SealError> {
    let Some((&kind, rest)) = plaintext.split_first() else {
        return Err(SealError::Malformed("empty"));
    };
    let Some((length, rest)) = rest.split_first_chunk::<4>() else {
        return Err(SealError::Malformed("no payload length"));
    };
    let length = u32::from_be_bytes(*length) as usize;
    if length > rest.len() {
        return Err(SealError::Malformed("payload length beyond the message"));
    }
    let (payload, padding) = rest.split_at(length);
    if padding.iter().any(|&byte| byte != 0) {
        return Err(SealError::Malformed("padding is not zeros"));
    }
    let payload = std::str::from_utf8(payload).map_err(|_| SealError::Malformed("payload is not UTF-8"))?;
    match kind {
        0 if payload.is_empty() => Ok(SetupMessage::Init),
        0 => Err(SealError::Malformed("Init with a payload")),
        1 => Ok(SetupMessage::Offer(payload.to_owned())),
        2 => Ok(SetupMessage::Answer(payload.to_owned())),
        3 => Ok(SetupMessage::IceCandidate(payload.to_owned())),
        _ => Err(SealError::Malformed("unknown kind")),
    }
}

/// Hands HPKE the caller's 32 bytes as its "random" ephemeral input. X25519
/// asks for exactly 32; should a future version ask for more, the seal
/// fails ([`OneSeed::overdrawn`]) instead of using predictable bytes.
struct OneSeed {
    seed: [u8; 32],
    used: usize,
    overdrawn: bool,
}

impl OneSeed {
    fn new(seed: EphemeralSeed) -> Self {
        OneSeed {
            seed: seed.0,
            used: 0,
            overdrawn: false,
        }
    }
}

impl hpke::rand_core::TryRng for OneSeed {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), Self::Error> {
        let available = &self.seed[self.used..];
        if destination.len() > available.len() {
            self.overdrawn = true;
            destination.fill(0);
            return Ok(());
        }
        destination.copy_from_slice(&available[..destination.len()]);
        self.used += destination.len();
        Ok(())
    }
}

impl hpke::rand_core::TryCryptoRng for OneSeed {}

impl Drop for OneSeed {
    fn drop(&mut self) {
        self.seed = [0; 32];
    }
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
