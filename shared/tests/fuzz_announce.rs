//! Fuzz target for Announce verification: arbitrary announces against
//! arbitrary policies. An accepted announce must carry a signature by its
//! own node key over exactly the documented bytes for the challenge the
//! server stored; nothing the announce merely quotes may matter.
//!
//! The input is two lines. The first is the policy: `b` requires bound
//! announces, `s` accepts [`SERVER`], `o` accepts [`OTHER_SERVER`]. The
//! second is either an Announce frame as sent (`{"Announce":…}`), or `S`
//! and bytes: a key seed, the version (even: 3, odd: 4), a server choice,
//! then (operation, argument) pairs that alter the signed announce.

mod fuzz_support;

use ed25519_dalek::{Signature, VerifyingKey};
use flproto::announce::{sign_announce, verify_announce, AnnounceAuth, AnnouncePolicy, BOUND_ANNOUNCE_CONTEXT};
use flproto::ids::ChallengeNonce;
use flproto::message::{Announce, NodeMessage};
use flproto::node_info::NodeInfo;
use flproto::{BOUND_PROTOCOL_VERSION, FLEDGER_PROTOCOL_VERSION};
use fuzz_support::{key, lines, CARGO_TEST_TIME, CHALLENGE, SERVER};

const OTHER_SERVER: &str = "other.example:443";

/// Longest refusal text; it goes back to the node and quotes at most 64
/// characters (of up to 4 bytes) of what the node sent.
const MAX_ERROR_TEXT: usize = 512;

#[test]
fn announces_verify_only_when_signed_for_the_stored_challenge_and_server() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|input: &[u8]| {
            let mut parts = lines(input);
            let policy_line = parts.next().unwrap_or_default();
            let policy = AnnouncePolicy {
                require_bound: policy_line.contains(&b'b'),
                server_names: [(b's', SERVER), (b'o', OTHER_SERVER)]
                    .into_iter()
                    .filter(|(letter, _)| policy_line.contains(letter))
                    .map(|(_, name)| name.to_owned())
                    .collect(),
            };
            let Some(announce) = parts.next().and_then(announce_from) else {
                return;
            };
            check(&announce, &policy);
        });
}

fn announce_from(line: &[u8]) -> Option<Announce> {
    match line.split_first()? {
        (b'S', spec) => Some(built(spec)),
        _ => match serde_json::from_slice::<NodeMessage>(line).ok()? {
            NodeMessage::Announce(announce) => Some(announce),
            _ => None,
        },
    }
}

fn server_choice(byte: u8) -> Option<String> {
    match byte % 6 {
        0 => Some(SERVER.into()),
        1 => Some(OTHER_SERVER.into()),
        2 => Some(SERVER.to_ascii_uppercase()),
        3 => Some(String::new()),
        4 => Some(format!("{}:1", "a".repeat(300))),
        _ => None,
    }
}

/// A correctly signed announce, then altered as `spec` says.
fn built(spec: &[u8]) -> Announce {
    let byte = |at: usize| spec.get(at).copied().unwrap_or(0);
    let signer = key(byte(0));
    let auth = match server_choice(byte(2)) {
        Some(server) if byte(1) % 2 == 1 => AnnounceAuth::Bound { server },
        _ => AnnounceAuth::Fledger,
    };
    let info = NodeInfo::v3("fuzz", "flproto", signer.id(), "");
    let mut announce = sign_announce(&signer, CHALLENGE, info, &auth);
    for pair in spec.get(3..).unwrap_or_default().chunks(2) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        let NodeInfo::NodeInfoV3(info) = &mut announce.node_info else {
            unreachable!("built announces carry V3 info");
        };
        match op % 7 {
            0 => announce.signature.0[usize::from(arg) % 64] ^= 1 << (arg % 8),
            1 => announce.version = u32::from(arg),
            2 => announce.server = server_choice(arg),
            3 => info.pubkey = key(arg).id(),
            4 => info.name = "n".repeat(usize::from(arg) * 2),
            5 => info.modules = ["", "STAT", "STAT | 0x100", "stat", "0x", "PING||RAND"][usize::from(arg) % 6].into(),
            _ => announce.challenge = ChallengeNonce([arg; 32]),
        }
    }
    announce
}

/// The documented bytes of a bound announce, built here without the crate.
fn bound_bytes(server: &str, challenge: &ChallengeNonce, node: &[u8; 32]) -> Vec<u8> {
    let mut bytes = BOUND_ANNOUNCE_CONTEXT.to_vec();
    bytes.extend_from_slice(&(server.len() as u16).to_be_bytes());
    bytes.extend_from_slice(server.as_bytes());
    bytes.extend_from_slice(&challenge.0);
    bytes.extend_from_slice(node);
    bytes
}

fn signed_by(node: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(node)
        .is_ok_and(|key| key.verify_strict(message, &Signature::from_bytes(signature)).is_ok())
}

fn check(announce: &Announce, policy: &AnnouncePolicy) {
    let result = verify_announce(announce, &CHALLENGE, policy);
    // What the announce quotes as its challenge is informational only.
    let mut quoting_stored = announce.clone();
    quoting_stored.challenge = CHALLENGE;
    assert_eq!(verify_announce(&quoting_stored, &CHALLENGE, policy), result);

    let node = match result {
        Err(error) => {
            assert!(error.to_string().len() <= MAX_ERROR_TEXT, "{error}");
            return;
        }
        Ok(node) => node,
    };
    let NodeInfo::NodeInfoV3(info) = &announce.node_info else {
        panic!("accepted an obsolete node info");
    };
    assert_eq!(&node.info, info);
    assert!(announce.node_info.validated().is_ok());
    let id = &info.pubkey.0;
    let signature = &announce.signature.0;
    match announce.version {
        FLEDGER_PROTOCOL_VERSION => {
            assert!(!node.bound);
            assert!(!policy.require_bound, "v3 accepted although bound is required");
            assert!(signed_by(id, &CHALLENGE.0, signature), "v3 signs the raw challenge");
        }
        BOUND_PROTOCOL_VERSION => {
            assert!(node.bound);
            let server = announce.server.as_deref().expect("a bound announce names its server");
            assert!(
                policy.server_names.iter().any(|name| name == server),
                "bound to {server:?}"
            );
            assert!(
                signed_by(id, &bound_bytes(server, &CHALLENGE, id), signature),
                "v4 signs the documented bytes"
            );
        }
        other => panic!("accepted version {other}"),
    }
    // Another stored challenge, and the same signature is worthless.
    let mut other = CHALLENGE;
    other.0[31] ^= 1;
    assert!(verify_announce(announce, &other, policy).is_err());
}
