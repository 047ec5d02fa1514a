use proptest::prelude::*;

use super::*;
use crate::identity::NodeKey;
use crate::setup_auth::{sign_with, verify};
use crate::setup_message::SessionId;
use crate::x25519::secret_of;

const CANDIDATE: &str = "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host";

/// The vector's sealed text (`docs/protocol.md`, the page's self-test and
/// `tests/browser/vector.mjs` open the same one).
const VECTOR_SEALED: &str = "kKt5DsvwcEIy/+lDb67MyRO2amDpnGiKQLuk1eLmFFAd8jwUOZ5sb5HBiMfl5GTwccjctcepjL1ZTSUueNX8mXwrYvN70tpA9vITnUdJ88ZavV6Iu7Gks3tcKQBma/PyHdAdG7Q8wGTY6FRH2hvvIhTy8XMF3O9t3xrols+wD9mKII3KYLrOQgv9L0bzwDrfWLeOzz4Fc0G1fi3orvQeMB7MCL+6ppelgbYn9QmLvluir0OMQlHeibrZxktElsLw8EbHd6Me3Ox/Wzhkbdpc3m3zfsT4KkIPwelJIVUwM2tj6QvcELhJaeWV0gx6u0/osl2EAkvbVRA8OC+v0j2y/81nGkcPjHeqEQA7lciuP4jRMwVVeYAWUrEKQSAdQSWmtcqS951jbMdb3CIxy5hQ1od/pfGN5JfQ78F71ujZKTwdFuMGpLGzyXWMrpmIUcRFo049wIF704q5tU4nroyovW26zxAIehl0xgBT61+NSWW3HIffp3WFkjd5JKw7mHMTQ4AyBddPilvxBdm2RXwrvGmtcQYd6SK5UTaNwT8HFbpbb6vasYsjM6vY/NWE14hm4UAkoHJe8+JlWJNMTd+W3Lopduswd+hKFGop/kWkMpQujgV2Tz+p1u/70qBODpKxPI23gM4ux+t8+OIgUOXWIl6vN3zyOEYfY4EBAI9G1vw9w2nibw3ZmfTESPRQr0VM/C5Y2dSjS8CsgXiX5VmMz3ozs/oUwXgfNV+GWQ5a4q59Gnx2QVcZSfAANhQRSWK6hWr1WlaJM/xiIwurFVzyb/rrZk+O/jT8pKotjUyk7mVku3K95NHqLTZm6go+/MiZWRwoalsqZlvUqOOeQZlYdDqLLXAOpjQO7UrTppd8KH1oJQ0AFTbeGttRKoxoqcWN6tuVekEoYO87GCtqiuwUr0hxlnQHaCvQ9dwB4+j1bwgBMzFPVp92FK2QzZrkWnKgqmYtKISBrQTqp6NCxuSdFhbTmWzvPE+U5IXwY5FjOgQujoak5j+55gyNfcquWXHG+AQ7tOSltQRzAjotppuU8bitjc4Sy68yU/coPNsl4pAwvok8myWj/DCIJg0Mk/63mP1guuFouDJBsvxcEX/A+DDPfAvXK0Xd5Ys205dWzBv++Xcxdm4pWGBEjovobVQIeBwFqQ/cy9meCRZVglyxm4r4j2crGvjikIAn+NG2KcNDPFD38jUnJv9hclZxVRdyEyCxTj8BqO3Ci+nZTzcQVusjPrQLw6b0muagWfMhbKpXo2Bzuuse4DKl5GeufsYoAatYC1dbZq1dpCJNAzZulscz0amt0oTt8sF3UeEyB+YABR89Q6U6mt6TXEHhC0idR8zqbA2eXuTORvidQdQNpOWhkx0ALcELuhAsOms1LEFq6dh6KhsPpe20lCP8gGe3Z7zBH/zNFwxOqWSxbwKQNA==";

fn key(seed: u8) -> NodeKey {
    NodeKey::from_seed([seed; 32])
}

/// The header of the signed-setup vector: `from` signs its seq 2 of
/// generation 1763800000000 in session `11…11`.
fn header(from: &NodeKey, to: &NodeKey) -> SetupHeader {
    let (id_init, id_follow) = if from.id() < to.id() {
        (from.id(), to.id())
    } else {
        (to.id(), from.id())
    };
    SetupHeader {
        id_init,
        id_follow,
        sender: from.id(),
        session: SessionId([0x11; 8]),
        generation: 1_763_800_000_000,
        seq: 2,
    }
}

fn sealed_text(message: &SetupMessage) -> &str {
    match message {
        SetupMessage::Sealed(text) => text,
        other => panic!("not sealed: {other:?}"),
    }
}

fn raw(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// Node 1 seals the signed-setup vector's candidate to node 2 with the
/// ephemeral seed `03`×32, and signs the sealed message.
#[test]
fn test_vector() {
    let (a, b) = (key(1), key(2));
    let header = header(&a, &b);
    let sealed = seal(
        &b.id(),
        &header,
        &SetupMessage::IceCandidate(CANDIDATE.into()),
        EphemeralSeed([3; 32]),
    )
    .unwrap();
    assert_eq!(sealed_text(&sealed), VECTOR_SEALED);
    // The encapsulated key is the ephemeral public key HPKE derives from
    // the seed (its secret is a8b12021…0049).
    assert_eq!(
        const_hex::encode(&raw(VECTOR_SEALED)[..32]),
        "90ab790ecbf0704232ffe9436faeccc913b66a60e99c688a40bba4d5e2e61450"
    );
    assert_eq!(raw(VECTOR_SEALED).len(), 32 + 1024 + 16);
    assert_eq!(
        open(&secret_of(&b), &header, VECTOR_SEALED),
        Ok(SetupMessage::IceCandidate(CANDIDATE.into()))
    );
    let signed = sign_with(&a, &header, sealed);
    assert_eq!(
        const_hex::encode(signed.auth.unwrap().signature.0),
        "bf717885546fb8c11ad87f06381e63c9ae628a86dd9c07bf512b233bd83a08a3fb024c2496b2bc4bb648e57c0ad4b2dfe622dd883b8d5137d7931fe3c104dc0c"
    );
    assert_eq!(verify(&signed, &b.id()).map(|(sender, _)| sender), Ok(a.id()));
}

#[test]
fn every_kind_opens_as_it_was_sealed() {
    let (a, b) = (key(1), key(2));
    let header = header(&a, &b);
    for message in [
        SetupMessage::Init,
        SetupMessage::Offer("v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n".into()),
        SetupMessage::Answer("v=0\r\n".repeat(300)),
        SetupMessage::IceCandidate(CANDIDATE.into()),
        SetupMessage::IceCandidate(String::new()),
    ] {
        let sealed = seal(&b.id(), &header, &message, EphemeralSeed([9; 32])).unwrap();
        assert_eq!(open(&secret_of(&b), &header, sealed_text(&sealed)), Ok(message));
    }
}

#[test]
fn offers_answers_and_candidates_share_the_smallest_size() {
    let (a, b) = (key(1), key(2));
    let header = header(&a, &b);
    let typical = [
        SetupMessage::Init,
        SetupMessage::Offer("o".repeat(600)),
        SetupMessage::Answer("a".repeat(472)),
        SetupMessage::IceCandidate(CANDIDATE.into()),
    ];
    let lengths: Vec<usize> = typical
        .iter()
        .map(|message| sealed_text(&seal(&b.id(), &header, message, EphemeralSeed([5; 32])).unwrap()).len())
        .collect();
    assert!(lengths.iter().all(|&len| len == lengths[0]), "{lengths:?}");
    assert_eq!(padded_len(1024 - INNER_HEADER_LEN), Some(1024));
    assert_eq!(padded_len(1024 - INNER_HEADER_LEN + 1), Some(4096));
    assert_eq!(padded_len(MAX_SEALED_PAYLOAD), Some(44 * 1024));
    assert_eq!(padded_len(MAX_SEALED_PAYLOAD + 1), None);
}

#[test]
fn the_largest_sealed_frame_fits_flsignals_message_limit() {
    let (a, b) = (key(1), key(2));
    let header = header(&a, &b);
    let message = SetupMessage::Offer("x".repeat(MAX_SEALED_PAYLOAD));
    let sealed = seal(&b.id(), &header, &message, EphemeralSeed([5; 32])).unwrap();
    assert_eq!(sealed_text(&sealed).len(), MAX_SEALED_TEXT);
    let frame = crate::message::NodeMessage::PeerSetup(sign_with(&a, &header, sealed)).to_json();
    assert!(frame.len() < 64 * 1024, "{} bytes", frame.len());
    let too_large = SetupMessage::Offer("x".repeat(MAX_SEALED_PAYLOAD + 1));
    assert_eq!(
        seal(&b.id(), &header, &too_large, EphemeralSeed([5; 32])),
        Err(SealError::TooLarge {
            len: MAX_SEALED_PAYLOAD + 1
        })
    );
}

#[test]
fn only_the_recipient_opens_it() {
    let (a, b, c) = (key(1), key(2), key(3));
    let header = header(&a, &b);
    let sealed = seal(&b.id(), &header, &SetupMessage::Init, EphemeralSeed([7; 32])).unwrap();
    for wrong in [&a, &c] {
        assert_eq!(
            open(&secret_of(wrong), &header, sealed_text(&sealed)),
            Err(SealError::DoesNotOpen)
        );
    }
}

/// Every field of the header is bound to the ciphertext: the same bytes
/// under another header (re-addressed, replayed under other counters,
/// claimed by another sender) do not open.
#[test]
fn it_opens_only_under_the_header_it_was_sealed_with() {
    let (a, b, c) = (key(1), key(2), key(3));
    let sealed_under = header(&a, &b);
    let sealed = seal(&b.id(), &sealed_under, &SetupMessage::Init, EphemeralSeed([7; 32])).unwrap();
    let text = sealed_text(&sealed);
    let swapped = SetupHeader {
        id_init: sealed_under.id_follow,
        id_follow: sealed_under.id_init,
        ..sealed_under
    };
    let others = [
        swapped,
        SetupHeader {
            id_init: c.id(),
            ..sealed_under
        },
        SetupHeader {
            sender: c.id(),
            ..sealed_under
        },
        SetupHeader {
            session: SessionId([0x12; 8]),
            ..sealed_under
        },
        SetupHeader {
            generation: sealed_under.generation + 1,
            ..sealed_under
        },
        SetupHeader {
            seq: sealed_under.seq + 1,
            ..sealed_under
        },
    ];
    for other in others {
        assert_eq!(
            open(&secret_of(&b), &other, text),
            Err(SealError::DoesNotOpen),
            "{other:?}"
        );
    }
}

#[test]
fn nothing_is_sealed_to_a_node_without_an_x25519_key() {
    let a = key(1);
    let mut small_order = [0u8; 32];
    small_order[0] = 1;
    let nobody = NodeId(small_order);
    let header = SetupHeader {
        id_follow: nobody,
        ..header(&a, &key(2))
    };
    assert_eq!(
        seal(&nobody, &header, &SetupMessage::Init, EphemeralSeed([1; 32])),
        Err(SealError::NoKey(nobody))
    );
    assert_eq!(
        seal(
            &key(2).id(),
            &header,
            &SetupMessage::Sealed("x".into()),
            EphemeralSeed([1; 32])
        ),
        Err(SealError::AlreadySealed)
    );
}

#[test]
fn malformed_sealed_texts_get_precise_errors() {
    let b = key(2);
    let header = header(&key(1), &b);
    let secret = secret_of(&b);
    assert_eq!(open(&secret, &header, "not base64!"), Err(SealError::NotBase64));
    assert_eq!(open(&secret, &header, "AAAA"), Err(SealError::NotPadded { len: 3 }));
    let long = "A".repeat(MAX_SEALED_TEXT + 4);
    assert_eq!(
        open(&secret, &header, &long),
        Err(SealError::TextTooLong { len: long.len() })
    );
    let unpadded = base64::engine::general_purpose::STANDARD.encode([0u8; 32 + 1000 + 16]);
    assert_eq!(
        open(&secret, &header, &unpadded),
        Err(SealError::NotPadded { len: 1048 })
    );
    let right_size_garbage = base64::engine::general_purpose::STANDARD.encode([7u8; 32 + 1024 + 16]);
    assert_eq!(open(&secret, &header, &right_size_garbage), Err(SealError::DoesNotOpen));
}

#[test]
fn what_opens_must_be_padded_exactly_as_sealing_pads() {
    let mut plaintext = pad(&SetupMessage::IceCandidate("c".into())).unwrap();
    assert_eq!(unpad(&plaintext), Ok(SetupMessage::IceCandidate("c".into())));
    plaintext[100] = 1;
    assert_eq!(unpad(&plaintext), Err(SealError::Malformed("padding is not zeros")));
    let mut plaintext = pad(&SetupMessage::Init).unwrap();
    plaintext[4] = 2;
    assert_eq!(unpad(&plaintext), Err(SealError::Malformed("Init with a payload")));
    let mut plaintext = pad(&SetupMessage::Init).unwrap();
    plaintext[0] = 4;
    assert_eq!(unpad(&plaintext), Err(SealError::Malformed("unknown kind")));
    let mut plaintext = pad(&SetupMessage::Offer("o".into())).unwrap();
    plaintext[1] = 0xff;
    assert_eq!(
        unpad(&plaintext),
        Err(SealError::Malformed("payload length beyond the message"))
    );
    let mut plaintext = pad(&SetupMessage::Offer("o".into())).unwrap();
    plaintext[5] = 0xff;
    assert_eq!(unpad(&plaintext), Err(SealError::Malformed("payload is not UTF-8")));
    assert_eq!(unpad(&[1, 0, 0]), Err(SealError::Malformed("no payload length")));
    assert_eq!(unpad(&[]), Err(SealError::Malformed("empty")));
}

fn message() -> impl Strategy<Value = SetupMessage> {
    let text =
        proptest::collection::vec(any::<char>(), 0..1500).prop_map(|chars| chars.into_iter().collect::<String>());
    prop_oneof![
        Just(SetupMessage::Init),
        text.clone().prop_map(SetupMessage::Offer),
        text.clone().prop_map(SetupMessage::Answer),
        text.prop_map(SetupMessage::IceCandidate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is sealed opens as itself, is padded to a size class, and
    /// two seals of one message look nothing alike.
    #[test]
    fn seal_then_open_is_the_identity(
        message in message(),
        seed in any::<[u8; 32]>(),
        generation in any::<u64>(),
        seq in any::<u32>(),
    ) {
        let (a, b) = (key(1), key(2));
        let header = SetupHeader { generation, seq, ..header(&a, &b) };
        let sealed = seal(&b.id(), &header, &message, EphemeralSeed(seed)).unwrap();
        let text = sealed_text(&sealed);
        let len = raw(text).len() - ENCAPSULATED_KEY_LEN - TAG_LEN;
        prop_assert!(PADDED_SIZES.contains(&len));
        prop_assert_eq!(open(&secret_of(&b), &header, text), Ok(message.clone()));
        let mut other_seed = seed;
        other_seed[0] ^= 1;
        let again = seal(&b.id(), &header, &message, EphemeralSeed(other_seed)).unwrap();
        prop_assert_ne!(sealed_text(&again), text);
    }

    /// Any byte changed anywhere in the sealed bytes, and it does not open.
    #[test]
    fn any_altered_byte_stops_it_opening(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (a, b) = (key(1), key(2));
        let header = header(&a, &b);
        let mut bytes = raw(VECTOR_SEALED);
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        prop_assert_eq!(open(&secret_of(&b), &header, &text), Err(SealError::DoesNotOpen));
    }

    /// No text makes opening panic or accept garbage.
    #[test]
    fn arbitrary_text_never_opens(text in ".{0,2000}") {
        let b = key(2);
        prop_assert!(open(&secret_of(&b), &header(&key(1), &b), &text).is_err());
    }
}
