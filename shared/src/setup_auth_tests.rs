use proptest::prelude::*;

use super::*;
use crate::ids::SignatureBytes;

fn key(seed: u8) -> NodeKey {
    NodeKey::from_seed([seed; 32])
}

fn info(from: &NodeKey, to: &NodeKey, message: SetupMessage) -> PeerInfo {
    let (id_init, id_follow) = if from.id() < to.id() {
        (from.id(), to.id())
    } else {
        (to.id(), from.id())
    };
    PeerInfo {
        id_init,
        id_follow,
        message,
        auth: None,
    }
}

fn signed(
    from: &NodeKey,
    to: &NodeKey,
    signer: &SetupSigner,
    attempt: &mut Attempt,
    message: SetupMessage,
) -> PeerInfo {
    signer.sign(from, attempt, info(from, to, message))
}

/// The vector the browser page checks its WebCrypto implementation with.
#[test]
fn test_vector() {
    let (a, b) = (key(1), key(2));
    let signer = SetupSigner::new(SessionId([0x11; 8]));
    let mut attempt = Attempt {
        generation: 1_763_800_000_000,
        next_seq: 2,
    };
    let message = signed(
        &a,
        &b,
        &signer,
        &mut attempt,
        SetupMessage::IceCandidate("candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host".into()),
    );
    let auth = message.auth.unwrap();
    let bytes = signed_bytes(&message, &a.id(), auth.session, auth.generation, auth.seq);
    assert_eq!(bytes.len(), 16 + 96 + 8 + 8 + 4 + 1 + 4 + 51);
    assert_eq!(&bytes[..16], b"flnode/setup/v1\0");
    assert_eq!(
        serde_json::to_string(&message).unwrap(),
        format!(
            r#"{{"id_init":"{}","id_follow":"{}","message":{{"IceCandidate":"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host"}},"auth":{{"session":"1111111111111111","generation":1763800000000,"seq":2,"signature":"{}"}}}}"#,
            message.id_init,
            message.id_follow,
            const_hex::encode(auth.signature.0)
        )
    );
    assert_eq!(
        const_hex::encode(auth.signature.0),
        "2ab8219cbc45ff0862ec0fde91fddeda4070adfc6e1e047682c560de934f9111fc3f299060783a8f92e17bdfcc4daa72b24390d8d1914e8ece752a3b9c54450c"
    );
    assert_eq!(verify(&message, &b.id()), Ok((a.id(), auth)));
}

#[test]
fn every_kind_round_trips_through_json_and_verifies() {
    let (a, b) = (key(1), key(2));
    let mut signer = SetupSigner::new(SessionId::random(crate::setup_message::Opens::Plain));
    let mut attempt = signer.next_generation(1000);
    for message in [
        SetupMessage::Init,
        SetupMessage::Offer("v=0\r\na=fingerprint:sha-256 AA:BB\r\n".into()),
        SetupMessage::Answer("v=0\r\n".into()),
        SetupMessage::IceCandidate("candidate:1 1 udp 1 10.0.0.1 1 typ host".into()),
    ] {
        let sent = signed(&a, &b, &signer, &mut attempt, message);
        let json = serde_json::to_string(&crate::NodeMessage::PeerSetup(sent.clone())).unwrap();
        let crate::NodeMessage::PeerSetup(received) = serde_json::from_str(&json).unwrap() else {
            panic!("not a PeerSetup");
        };
        assert_eq!(verify(&received, &b.id()).map(|(sender, _)| sender), Ok(a.id()));
    }
}

#[test]
fn a_rewritten_fingerprint_breaks_the_signature() {
    let (a, b) = (key(1), key(2));
    let mut signer = SetupSigner::new(SessionId::random(crate::setup_message::Opens::Plain));
    let mut attempt = signer.next_generation(1000);
    let mut sent = signed(
        &a,
        &b,
        &signer,
        &mut attempt,
        SetupMessage::Offer("a=fingerprint:sha-256 AA:BB\r\n".into()),
    );
    sent.message = SetupMessage::Offer("a=fingerprint:sha-256 CC:DD\r\n".into());
    assert_eq!(
        verify(&sent, &b.id()),
        Err(SetupAuthError::BadSignature { sender: a.id() })
    );
}

#[test]
fn every_signed_field_matters() {
    let (a, b, c) = (key(1), key(2), key(3));
    let mut signer = SetupSigner::new(SessionId([7; 8]));
    let mut attempt = signer.next_generation(1000);
    let sent = signed(&a, &b, &signer, &mut attempt, SetupMessage::Answer("x".into()));
    let bad = SetupAuthError::BadSignature { sender: a.id() };
    let mut kind = sent.clone();
    kind.message = SetupMessage::Offer("x".into());
    assert_eq!(verify(&kind, &b.id()), Err(bad.clone()));
    for change in [
        |auth: &mut SetupAuth| auth.session = SessionId([8; 8]),
        |auth: &mut SetupAuth| auth.generation += 1,
        |auth: &mut SetupAuth| auth.seq += 1,
    ] {
        let mut altered = sent.clone();
        change(altered.auth.as_mut().unwrap());
        assert_eq!(verify(&altered, &b.id()), Err(bad.clone()));
    }
    // The same signature presented as a message from `a` to `c`.
    let mut redirected = sent.clone();
    if redirected.id_init == b.id() {
        redirected.id_init = c.id();
    } else {
        redirected.id_follow = c.id();
    }
    assert_eq!(verify(&redirected, &c.id()), Err(bad));
    // Signed by someone else than the counterpart.
    let forged = signer.sign(&c, &mut attempt, info(&a, &b, SetupMessage::Init));
    assert_eq!(
        verify(&forged, &b.id()),
        Err(SetupAuthError::BadSignature { sender: a.id() })
    );
}

#[test]
fn unsigned_and_misaddressed_messages_are_refused() {
    let (a, b, c) = (key(1), key(2), key(3));
    assert_eq!(
        verify(&info(&a, &b, SetupMessage::Init), &b.id()),
        Err(SetupAuthError::Unsigned)
    );
    let mut signer = SetupSigner::new(SessionId::random(crate::setup_message::Opens::Plain));
    let mut attempt = signer.next_generation(1000);
    let sent = signed(&a, &b, &signer, &mut attempt, SetupMessage::Init);
    assert_eq!(verify(&sent, &c.id()), Err(SetupAuthError::NotForUs));
    let looped = signed(&a, &a, &signer, &mut attempt, SetupMessage::Init);
    assert_eq!(verify(&looped, &a.id()), Err(SetupAuthError::FromOurselves));
}

fn auth(session: u8, generation: u64, seq: u32) -> SetupAuth {
    SetupAuth {
        session: SessionId([session; 8]),
        generation,
        seq,
        signature: SignatureBytes([0; 64]),
    }
}

#[test]
fn replays_and_stale_generations_are_refused() {
    let mut guard = ReplayGuard::default();
    assert_eq!(guard.accept(&auth(1, 100, 0)), Ok(Freshness::NewSession));
    assert_eq!(guard.accept(&auth(1, 100, 1)), Ok(Freshness::SameAttempt));
    assert_eq!(
        guard.accept(&auth(1, 100, 1)),
        Err(SetupAuthError::Replayed {
            generation: 100,
            seq: 1,
            last: 1
        })
    );
    assert_eq!(guard.accept(&auth(1, 100, 5)), Ok(Freshness::SameAttempt));
    assert_eq!(guard.accept(&auth(1, 101, 0)), Ok(Freshness::NewAttempt));
    assert_eq!(
        guard.accept(&auth(1, 100, 9)),
        Err(SetupAuthError::Stale {
            generation: 100,
            newest: 101
        })
    );
    // The peer restarted: its clock-based generation is newer.
    assert_eq!(guard.accept(&auth(2, 5000, 0)), Ok(Freshness::NewSession));
    // Everything the previous run signed is now stale.
    assert!(guard.accept(&auth(1, 101, 7)).is_err());
    // A second session cannot take over a generation already in use.
    assert!(matches!(
        guard.accept(&auth(3, 5000, 9)),
        Err(SetupAuthError::Replayed { .. })
    ));
}

#[test]
fn generations_grow_even_when_the_clock_does_not() {
    let mut signer = SetupSigner::new(SessionId::random(crate::setup_message::Opens::Plain));
    assert_eq!(signer.next_generation(1000).generation, 1000);
    assert_eq!(signer.next_generation(1000).generation, 1001);
    assert_eq!(signer.next_generation(900).generation, 1002);
    assert_eq!(signer.next_generation(5000).generation, 5000);
}

proptest! {
    /// Whatever order a server replays frames in, each (generation, seq) is
    /// accepted at most once and accepted frames are in increasing order.
    #[test]
    fn no_frame_is_accepted_twice(frames in proptest::collection::vec((0u8..3, 0u64..6, 0u32..4), 0..64)) {
        let mut guard = ReplayGuard::default();
        let mut accepted: Vec<(u64, u32)> = Vec::new();
        for (session, generation, seq) in frames {
            if guard.accept(&auth(session, generation, seq)).is_ok() {
                if let Some(last) = accepted.last() {
                    prop_assert!((generation, seq) > *last);
                }
                accepted.push((generation, seq));
            }
        }
    }
}
