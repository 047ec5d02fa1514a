//! Fuzz target for setup authentication: a stream of signed (and forged,
//! altered, replayed) setup messages arrives at one node with a fixed key.
//! A message is accepted only if its sender signed exactly these fields,
//! and only if it is newer than everything accepted from that sender.
//!
//! The input is a script, one message per line: a frame as the node
//! receives it (`{"PeerSetup":…}`), or `s` and bytes: who signs (the peer,
//! a stranger, the node itself), which run (session), generation, seq,
//! kind, who is initiator, and what is altered after signing.

mod fuzz_support;

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use flproto::ids::NodeId;
use flproto::message::{PeerInfo, ServerMessage, SetupMessage};
use flproto::setup_auth::{signed_bytes, verify, Freshness, ReplayGuard, SessionId, SetupAuth, SetupAuthError};
use fuzz_support::{key, lines, CARGO_TEST_TIME};

/// The receiving node, its usual peer, and a third node: the roles of the
/// test vector in `setup_auth_tests.rs` (signed by key 1 for key 2).
const ME: u8 = 2;
const PEER: u8 = 1;
const STRANGER: u8 = 3;

#[test]
fn setups_are_accepted_only_signed_by_their_sender_and_fresh() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|script: &[u8]| run_script(script));
}

/// A message of the script, and whether it must verify.
struct Arrival {
    info: PeerInfo,
    /// `Some(sender)` when the script signed it honestly for this node.
    honest_sender: Option<NodeId>,
}

fn arrival(line: &[u8]) -> Option<Arrival> {
    let (&op, spec) = line.split_first()?;
    if op != b's' {
        return match serde_json::from_slice::<ServerMessage>(line).ok()? {
            ServerMessage::PeerSetup(info) => Some(Arrival {
                info,
                honest_sender: None,
            }),
            _ => None,
        };
    }
    let byte = |at: usize| spec.get(at).copied().unwrap_or(0);
    let signer = key([PEER, STRANGER, ME][usize::from(byte(0)) % 3]);
    let me = key(ME).id();
    let other = if signer.id() == me { key(PEER).id() } else { me };
    let session = SessionId([byte(1) % 3; 8]);
    let (generation, seq) = (u64::from(byte(2)), u32::from(byte(3)));
    let message = match byte(4) % 4 {
        0 => SetupMessage::Init,
        1 => SetupMessage::Offer("v=0\r\na=fingerprint:sha-256 AB:CD".into()),
        2 => SetupMessage::Answer("v=0".into()),
        _ => SetupMessage::IceCandidate("candidate:1 1 udp 1 192.0.2.1 9 typ host".into()),
    };
    let (id_init, id_follow) = match byte(5) % 3 {
        0 => (signer.id(), other),
        1 => (other, signer.id()),
        _ => (signer.id(), key(STRANGER + 1).id()),
    };
    let mut info = PeerInfo {
        id_init,
        id_follow,
        message,
        auth: None,
    };
    let signature = signer.sign(&signed_bytes(&info, &signer.id(), session, generation, seq));
    let mut auth = SetupAuth {
        session,
        generation,
        seq,
        signature,
    };
    let tamper = byte(6) % 8;
    match tamper {
        1 => auth.signature.0[usize::from(byte(7)) % 64] ^= 1,
        2 => info.message = SetupMessage::Offer("v=0\r\na=fingerprint:sha-256 EE:EE".into()),
        3 => auth.generation ^= 1,
        4 => auth.seq ^= 1,
        5 => auth.session.0[0] ^= 0x80,
        6 => std::mem::swap(&mut info.id_init, &mut info.id_follow),
        _ => {}
    }
    info.auth = Some(auth);
    let addressed_to_me = info.id_init == me || info.id_follow == me;
    let honest = matches!(tamper, 0 | 7) && signer.id() != me && addressed_to_me;
    Some(Arrival {
        info,
        honest_sender: honest.then(|| signer.id()),
    })
}

/// What the receiving side accepted last from one sender.
#[derive(Clone, Copy)]
struct Newest {
    session: SessionId,
    generation: u64,
    seq: u32,
}

fn run_script(script: &[u8]) {
    let me = key(ME).id();
    let mut guards: HashMap<NodeId, (ReplayGuard, Option<Newest>)> = HashMap::new();
    for arrival in lines(script).filter_map(arrival) {
        let verified = verify(&arrival.info, &me);
        if let Some(sender) = arrival.honest_sender {
            assert_eq!(
                verified.as_ref().map(|(from, _)| *from),
                Ok(sender),
                "an honest setup verifies"
            );
        }
        let (sender, auth) = match verified {
            Ok(verified) => verified,
            Err(error) => {
                assert!(error.to_string().len() <= 256, "{error}");
                continue;
            }
        };
        check_signature(&arrival.info, &me, &sender, &auth);
        let (guard, newest) = guards.entry(sender).or_default();
        let expected = match *newest {
            None => Ok(Freshness::NewSession),
            Some(last) if auth.generation < last.generation => Err(()),
            Some(last) if auth.generation == last.generation => {
                if auth.session == last.session && auth.seq > last.seq {
                    Ok(Freshness::SameAttempt)
                } else {
                    Err(())
                }
            }
            Some(last) if auth.session == last.session => Ok(Freshness::NewAttempt),
            Some(_) => Ok(Freshness::NewSession),
        };
        let accepted = guard.accept(&auth);
        match (&accepted, expected) {
            (Ok(freshness), Ok(wanted)) => assert_eq!(*freshness, wanted),
            (Err(SetupAuthError::Stale { .. } | SetupAuthError::Replayed { .. }), Err(())) => {}
            (got, wanted) => panic!("replay guard said {got:?} where {wanted:?} was due"),
        }
        if accepted.is_ok() {
            *newest = Some(Newest {
                session: auth.session,
                generation: auth.generation,
                seq: auth.seq,
            });
        }
    }
}

/// An accepted setup is signed by its sender, the party that is not this
/// node, over the documented bytes.
fn check_signature(info: &PeerInfo, me: &NodeId, sender: &NodeId, auth: &SetupAuth) {
    assert_ne!(sender, me, "never accepted as from ourselves");
    assert!(
        (info.id_init == *me && info.id_follow == *sender) || (info.id_follow == *me && info.id_init == *sender),
        "the sender is the other party of a setup addressed to us"
    );
    assert_eq!(info.auth.as_ref(), Some(auth));
    let bytes = signed_bytes(info, sender, auth.session, auth.generation, auth.seq);
    let key = VerifyingKey::from_bytes(&sender.0).expect("an accepted sender is a valid key");
    assert!(key
        .verify_strict(&bytes, &Signature::from_bytes(&auth.signature.0))
        .is_ok());
}
