use proptest::prelude::*;

use super::*;
use crate::message::NodeMessage;

const A: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
const B: &str = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988";

fn setup_with(message: &str) -> String {
    format!(r#"{{"PeerSetup":{{"id_init":"{A}","id_follow":"{B}","message":{message}}}}}"#)
}

/// Both parsers give the same verdict on `text`.
fn same_verdict(text: &str) -> Result<(), TestCaseError> {
    let ours = parse(text).is_ok();
    let reference = serde_json::from_str::<NodeMessage>(text).is_ok();
    prop_assert_eq!(ours, reference, "{}", text);
    Ok(())
}

#[test]
fn frames_of_every_kind_get_the_verdict_node_message_gives() {
    let sig = "ab".repeat(64);
    let frames = [
        setup_with(r#""Init""#),
        setup_with(r#"{"Offer":"v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\n"}"#),
        setup_with(r#"{"Answer":"plain"}"#),
        setup_with(r#"{"IceCandidate":"candidate:1 1 udp 2130706431 10.0.0.1 1 typ host"}"#),
        setup_with(r#"{"Sealed":"AAECAwQFBgcICQ=="}"#),
        setup_with(r#"{"Sealed":7}"#),
        setup_with(r#"{"Offer":"\u00e9\ud83d\ude00"}"#),
        // A lone surrogate: skipping accepts it, a String does not.
        setup_with(r#"{"Offer":"\ud800"}"#),
        setup_with(r#"{"Offer":"\udc00x"}"#),
        setup_with(r#"{"Offer":"bad \q escape"}"#),
        setup_with("{\"Offer\":\"raw \u{1} control\"}"),
        setup_with(r#"{"Offer":42}"#),
        setup_with(r#"{"Offer":["v=0"]}"#),
        setup_with(r#"{"Offer":null}"#),
        setup_with(r#"{"Offer":"x","Answer":"y"}"#),
        setup_with(r#"{"Hello":"x"}"#),
        setup_with(r#""Offer""#),
        format!(r#"{{"PeerSetup":{{"id_init":"{A}","message":"Init"}}}}"#),
        format!(
            r#"{{"PeerSetup":{{"id_init":"{A}","id_follow":"{}","message":"Init"}}}}"#,
            &B[1..]
        ),
        format!(r#"{{"PeerSetup":{{"id_init":"{A}","id_follow":"{B}","message":"Init","extra":[1,{{}}]}}}}"#),
        format!(
            r#"{{"PeerSetup":{{"id_init":"{A}","id_follow":"{B}","message":"Init","auth":{{"session":"0011223344556677","generation":1,"seq":0,"signature":"{sig}"}}}}}}"#
        ),
        format!(
            r#"{{"PeerSetup":{{"id_init":"{A}","id_follow":"{B}","message":"Init","auth":{{"session":"00","generation":1,"seq":0,"signature":"{sig}"}}}}}}"#
        ),
        r#""ListIDsRequest""#.to_owned(),
        r#"{"ListIDsRequest":null}"#.to_owned(),
        format!(r#"{{"NodeStats":[{{"id":"{A}","version":"0.10.0","ping_ms":12,"ping_rx":3}}]}}"#),
        r#"{"NodeStats":[{"id":"nothex"}]}"#.to_owned(),
        r#"{"Announce":{"version":3}}"#.to_owned(),
        "not json".to_owned(),
        String::new(),
    ];
    for frame in &frames {
        same_verdict(frame).unwrap();
    }
}

#[test]
fn the_payload_is_the_frame_s_own_text_and_the_ids_are_read() {
    let frame = setup_with(r#"{"Offer":"v=0\r\n"}"#);
    let Ok(InboundMessage::PeerSetup(setup)) = parse(&frame) else {
        panic!("a setup");
    };
    let SetupStep::Offer(payload) = setup.message else {
        panic!("an offer");
    };
    assert_eq!(payload.json(), r#""v=0\r\n""#);
    let (a, b): (NodeId, NodeId) = (A.parse().unwrap(), B.parse().unwrap());
    assert_eq!(setup.counterpart_of(&a), Some(b));
    assert_eq!(setup.counterpart_of(&b), Some(a));
    assert_eq!(setup.counterpart_of(&NodeId([0; 32])), None);
}

proptest! {
    /// Any text at all in the payload's place: the same verdict.
    #[test]
    fn any_payload_gets_the_verdict_node_message_gives(payload in ".{0,40}") {
        same_verdict(&setup_with(&format!(r#"{{"Offer":{payload}}}"#)))?;
    }

    /// Strings made of escapes and odd characters, the likely differences.
    #[test]
    fn escape_heavy_strings_get_the_verdict_node_message_gives(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "a", "\\n", "\\r", "\\\"", "\\\\", "\\/", "\\u0041", "\\ud83d", "\\ude00", "\\uD800",
                "\\u", "\\x", "\u{7f}", "\u{1}", "é", "\"", "\\", "\\u12", "\\uzzzz",
            ]),
            0..8,
        )
    ) {
        same_verdict(&setup_with(&format!(r#"{{"Answer":"{}"}}"#, parts.concat())))?;
    }
}
