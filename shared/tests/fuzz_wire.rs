//! Fuzz targets for the wire format: every frame a node or a server sends is
//! parsed by these types. Whatever parses must survive serialise → parse
//! unchanged (what the server repeats cannot change meaning on the way),
//! and whatever does not is an error, never a panic.

mod fuzz_support;

use flproto::cluster_message::InstanceId;
use flproto::ids::SignatureBytes;
use flproto::ids::{parse_hex32, IdError, NodeId};
use flproto::message::{NodeMessage, ServerMessage};
use flproto::node_info::{NodeInfo, NodeInfoError, MAX_CLIENT_LEN, MAX_MODULES_LEN, MAX_NAME_LEN, MODULE_FLAGS};
use flproto::setup_auth::SessionId;
use fuzz_support::CARGO_TEST_TIME;

/// Obsolete node infos parse (to get a precise refusal) but are never
/// serialised: they are refused before anything is repeated.
fn is_obsolete(info: &NodeInfo) -> bool {
    !matches!(info, NodeInfo::NodeInfoV3(_))
}

#[test]
fn node_messages_that_parse_round_trip() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|bytes: &[u8]| {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return;
            };
            let parsed = serde_json::from_str::<NodeMessage>(text);
            assert_eq!(
                flproto::inbound::parse(text).is_ok(),
                parsed.is_ok(),
                "the server's parse accepts exactly what NodeMessage accepts: {text}"
            );
            let Ok(message) = parsed else {
                return;
            };
            if let NodeMessage::Announce(announce) = &message {
                if is_obsolete(&announce.node_info) {
                    assert_eq!(announce.node_info.validated(), Err(NodeInfoError::Obsolete));
                    return;
                }
            }
            let json = message.to_json();
            let again: NodeMessage = serde_json::from_str(&json).expect("our own serialisation parses");
            assert_eq!(again, message, "{json}");
            assert_eq!(again.to_json(), json, "serialisation is canonical");
        });
}

#[test]
fn server_messages_that_parse_round_trip() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|bytes: &[u8]| {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return;
            };
            let Ok(message) = serde_json::from_str::<ServerMessage>(text) else {
                return;
            };
            let infos = match &message {
                ServerMessage::ListIDsReply(list) => list.as_slice(),
                ServerMessage::PresenceNews(news) => news.joined.as_slice(),
                _ => &[],
            };
            if infos.iter().any(is_obsolete) {
                return;
            }
            let json = message.to_json();
            let again: ServerMessage = serde_json::from_str(&json).expect("our own serialisation parses");
            assert_eq!(again, message, "{json}");
            assert_eq!(again.to_json(), json, "serialisation is canonical");
        });
}

#[test]
fn node_infos_are_validated_to_the_grammar_fledger_decodes() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|bytes: &[u8]| {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return;
            };
            let Ok(info) = serde_json::from_str::<NodeInfo>(text) else {
                return;
            };
            match info.validated() {
                Ok(v3) => {
                    assert!(v3.name.len() <= MAX_NAME_LEN);
                    assert!(v3.client.len() <= MAX_CLIENT_LEN);
                    assert!(v3.modules.len() <= MAX_MODULES_LEN);
                    if !v3.modules.trim().is_empty() {
                        for token in v3.modules.split('|').map(str::trim) {
                            let known = MODULE_FLAGS.iter().any(|(name, _)| *name == token);
                            // A `+` may lead the digits: fledger's flag parser
                            // (bitflags, through `from_str_radix`) takes it too.
                            let hex = token.strip_prefix("0x").is_some_and(|digits| {
                                let digits = digits.strip_prefix('+').unwrap_or(digits);
                                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit())
                            });
                            assert!(known || hex, "accepted module token {token:?}");
                        }
                    }
                }
                Err(error) => {
                    // The refusal goes back to the node: bounded, whatever it sent.
                    assert!(error.to_string().len() <= 512, "{error}");
                }
            }
            if is_obsolete(&info) {
                return;
            }
            let json = serde_json::to_string(&info).expect("a V3 info serialises");
            let again: NodeInfo = serde_json::from_str(&json).expect("our own serialisation parses");
            assert_eq!(again, info);
            assert_eq!(again.validated().is_ok(), info.validated().is_ok());
        });
}

/// The fixed-length hex fields of the protocol: node and challenge IDs (64),
/// setup sessions (16), instance IDs (16), signatures (128).
#[test]
fn hex_fields_accept_exactly_their_length_in_hex_digits() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|bytes: &[u8]| {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return;
            };
            let all_hex = text.bytes().all(|b| b.is_ascii_hexdigit());
            let quoted = serde_json::to_string(text).expect("a string serialises");

            let parsed = parse_hex32(text);
            match &parsed {
                Ok(raw) => {
                    assert!(text.len() == 64 && all_hex, "{text:?}");
                    let id = NodeId(*raw);
                    assert_eq!(id.to_hex(), text.to_ascii_lowercase());
                    assert_eq!(id.to_hex().parse::<NodeId>(), Ok(id));
                    let json = serde_json::to_string(&id).expect("an id serialises");
                    assert_eq!(serde_json::from_str::<NodeId>(&json).ok(), Some(id));
                }
                Err(IdError::Length(count)) => {
                    assert_ne!(text.len(), 64);
                    assert_eq!(*count, text.chars().count());
                }
                Err(IdError::NotHex) => assert!(text.len() == 64 && !all_hex, "{text:?}"),
            }
            let via_serde = serde_json::from_str::<NodeId>(&quoted).ok().map(|id| id.0);
            assert_eq!(via_serde, parsed.ok(), "serde and FromStr agree");

            let session = serde_json::from_str::<SessionId>(&quoted);
            assert_eq!(session.is_ok(), text.len() == 16 && all_hex, "session {text:?}");
            if let Ok(session) = session {
                assert_eq!(session.to_string(), text.to_ascii_lowercase());
            }

            let instance = text.parse::<InstanceId>();
            assert_eq!(instance.is_ok(), text.len() == 16 && all_hex, "instance {text:?}");
            if let Ok(instance) = instance {
                assert_eq!(instance.to_string(), text.to_ascii_lowercase());
                assert_eq!(instance.to_string().parse::<InstanceId>(), Ok(instance));
            }

            let signature = serde_json::from_str::<SignatureBytes>(&quoted);
            assert_eq!(signature.is_ok(), text.len() == 128 && all_hex, "signature {text:?}");
            if let Ok(signature) = signature {
                assert_eq!(const_hex::encode(signature.0), text.to_ascii_lowercase());
            }
        });
}
