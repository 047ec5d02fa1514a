//! Fuzz target for opening sealed setup messages, the one parser of
//! network bytes behind the ciphertext. The input's first byte picks what
//! the rest is:
//!
//! * `t`: a sealed text as a server might relay it. Only the one text
//!   sealed to the receiver under this header that the target knows (the
//!   test vector) opens: a forgery would need the receiver's key or an
//!   ephemeral one; anything else ends in an error, never a panic.
//! * `p`: a plaintext, which the target itself encrypts to the receiver
//!   under the header (so it gets past the AEAD to the padding rules). It
//!   opens only if it is padded exactly as sealing pads: a size class,
//!   a known kind, the payload length, UTF-8, zeros to the end; and then
//!   it opens as the message it encodes.

mod fuzz_support;

use base64::Engine;
use flproto::message::SetupMessage;
use flproto::seal::{open, SealError, INNER_HEADER_LEN, PADDED_SIZES, SEAL_INFO};
use flproto::setup_auth::SetupHeader;
use flproto::setup_message::SessionId;
use flproto::x25519;
use fuzz_support::{key, CARGO_TEST_TIME};
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeS, Serializable};

const SENDER: u8 = 1;
const RECEIVER: u8 = 2;

/// The test vector of `shared/src/seal_tests.rs` (also in the corpus).
const VECTOR_SEALED: &str = "kKt5DsvwcEIy/+lDb67MyRO2amDpnGiKQLuk1eLmFFAd8jwUOZ5sb5HBiMfl5GTwccjctcepjL1ZTSUueNX8mXwrYvN70tpA9vITnUdJ88ZavV6Iu7Gks3tcKQBma/PyHdAdG7Q8wGTY6FRH2hvvIhTy8XMF3O9t3xrols+wD9mKII3KYLrOQgv9L0bzwDrfWLeOzz4Fc0G1fi3orvQeMB7MCL+6ppelgbYn9QmLvluir0OMQlHeibrZxktElsLw8EbHd6Me3Ox/Wzhkbdpc3m3zfsT4KkIPwelJIVUwM2tj6QvcELhJaeWV0gx6u0/osl2EAkvbVRA8OC+v0j2y/81nGkcPjHeqEQA7lciuP4jRMwVVeYAWUrEKQSAdQSWmtcqS951jbMdb3CIxy5hQ1od/pfGN5JfQ78F71ujZKTwdFuMGpLGzyXWMrpmIUcRFo049wIF704q5tU4nroyovW26zxAIehl0xgBT61+NSWW3HIffp3WFkjd5JKw7mHMTQ4AyBddPilvxBdm2RXwrvGmtcQYd6SK5UTaNwT8HFbpbb6vasYsjM6vY/NWE14hm4UAkoHJe8+JlWJNMTd+W3Lopduswd+hKFGop/kWkMpQujgV2Tz+p1u/70qBODpKxPI23gM4ux+t8+OIgUOXWIl6vN3zyOEYfY4EBAI9G1vw9w2nibw3ZmfTESPRQr0VM/C5Y2dSjS8CsgXiX5VmMz3ozs/oUwXgfNV+GWQ5a4q59Gnx2QVcZSfAANhQRSWK6hWr1WlaJM/xiIwurFVzyb/rrZk+O/jT8pKotjUyk7mVku3K95NHqLTZm6go+/MiZWRwoalsqZlvUqOOeQZlYdDqLLXAOpjQO7UrTppd8KH1oJQ0AFTbeGttRKoxoqcWN6tuVekEoYO87GCtqiuwUr0hxlnQHaCvQ9dwB4+j1bwgBMzFPVp92FK2QzZrkWnKgqmYtKISBrQTqp6NCxuSdFhbTmWzvPE+U5IXwY5FjOgQujoak5j+55gyNfcquWXHG+AQ7tOSltQRzAjotppuU8bitjc4Sy68yU/coPNsl4pAwvok8myWj/DCIJg0Mk/63mP1guuFouDJBsvxcEX/A+DDPfAvXK0Xd5Ys205dWzBv++Xcxdm4pWGBEjovobVQIeBwFqQ/cy9meCRZVglyxm4r4j2crGvjikIAn+NG2KcNDPFD38jUnJv9hclZxVRdyEyCxTj8BqO3Ci+nZTzcQVusjPrQLw6b0muagWfMhbKpXo2Bzuuse4DKl5GeufsYoAatYC1dbZq1dpCJNAzZulscz0amt0oTt8sF3UeEyB+YABR89Q6U6mt6TXEHhC0idR8zqbA2eXuTORvidQdQNpOWhkx0ALcELuhAsOms1LEFq6dh6KhsPpe20lCP8gGe3Z7zBH/zNFwxOqWSxbwKQNA==";
const VECTOR_CANDIDATE: &str = "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host";

#[test]
fn sealed_setups_open_only_when_sealed_and_padded_as_flproto_seals() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|input: &[u8]| check(input));
}

fn header() -> SetupHeader {
    let (sender, receiver) = (key(SENDER).id(), key(RECEIVER).id());
    let (id_init, id_follow) = if sender < receiver {
        (sender, receiver)
    } else {
        (receiver, sender)
    };
    SetupHeader {
        id_init,
        id_follow,
        sender,
        session: SessionId([0x11; 8]),
        generation: 1_763_800_000_000,
        seq: 2,
    }
}

fn check(input: &[u8]) {
    let secret = x25519::secret_of(&key(RECEIVER));
    match input.split_first() {
        Some((b't', text)) => {
            let text = String::from_utf8_lossy(text);
            if let Ok(message) = open(&secret, &header(), &text) {
                assert_eq!(text, VECTOR_SEALED, "a text nobody sealed opened");
                assert_eq!(message, SetupMessage::IceCandidate(VECTOR_CANDIDATE.into()));
            }
        }
        Some((b'p', plaintext)) => {
            let opened = open(&secret, &header(), &encrypt(plaintext));
            match opened {
                Ok(message) => assert_padded_as(&message, plaintext),
                Err(SealError::NotPadded { .. } | SealError::Malformed(_)) => {}
                Err(other) => panic!("a sealed plaintext failed to open: {other}"),
            }
        }
        _ => {}
    }
}

/// `plaintext` sealed to the receiver under the header, as a sealed text.
fn encrypt(plaintext: &[u8]) -> String {
    let public = x25519::public_of(&key(RECEIVER).id()).unwrap();
    let public = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&public.0).unwrap();
    let (encapsulated, ciphertext) = hpke::single_shot_seal_with_rng::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeS::Base,
        &public,
        SEAL_INFO,
        plaintext,
        &header().to_bytes(),
        &mut Counter(7),
    )
    .unwrap();
    let mut sealed = encapsulated.to_bytes().to_vec();
    sealed.extend_from_slice(&ciphertext);
    base64::engine::general_purpose::STANDARD.encode(sealed)
}

fn assert_padded_as(message: &SetupMessage, plaintext: &[u8]) {
    let (kind, payload) = match message {
        SetupMessage::Init => (0, ""),
        SetupMessage::Offer(sdp) => (1, sdp.as_str()),
        SetupMessage::Answer(sdp) => (2, sdp.as_str()),
        SetupMessage::IceCandidate(candidate) => (3, candidate.as_str()),
        SetupMessage::Sealed(_) => panic!("a sealed message opened to a sealed one"),
    };
    assert!(PADDED_SIZES.contains(&plaintext.len()), "opened from an unpadded size");
    assert_eq!(plaintext[0], kind);
    assert_eq!(plaintext[1..INNER_HEADER_LEN], (payload.len() as u32).to_be_bytes());
    let end = INNER_HEADER_LEN + payload.len();
    assert_eq!(&plaintext[INNER_HEADER_LEN..end], payload.as_bytes());
    assert!(
        plaintext[end..].iter().all(|&byte| byte == 0),
        "opened with stray padding"
    );
}

/// Predictable "randomness" for the target's own ephemeral keys.
struct Counter(u8);

impl hpke::rand_core::TryRng for Counter {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(u32::from(self.0))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from(self.0))
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), Self::Error> {
        for byte in destination {
            self.0 = self.0.wrapping_mul(31).wrapping_add(11);
            *byte = self.0;
        }
        Ok(())
    }
}

impl hpke::rand_core::TryCryptoRng for Counter {}
