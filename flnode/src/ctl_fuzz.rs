//! Fuzz target for the `ctl` protocol: any sequence of data channel
//! messages from a peer. Replies are never more than a few bytes longer
//! than what provoked them, and the responder's state stays within its
//! limits, whatever the peer sends.
//!
//! The input is a script, one message per line. Under `cargo test` it
//! replays the corpus in `src/__fuzz__/` and then random inputs for
//! [`CARGO_TEST_TIME`]; `scripts/fuzz.sh ctl` runs it under a real fuzzer.

use std::time::Duration;

use super::*;

/// Random inputs per `cargo test` run.
const CARGO_TEST_TIME: Duration = Duration::from_secs(2);

/// Longest acknowledgement: `bulkack `, an id, a space, a u64.
const MAX_BULKACK: usize = 8 + MAX_BULK_ID + 1 + 20;

/// What `msg:` becomes in the echo (`msg:echo: `).
const ECHO_GROWTH: usize = 6;

#[test]
fn ctl_replies_and_state_stay_bounded_under_any_messages() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|script: &[u8]| {
            let mut ctl = CtlResponder::default();
            // Bytes of every `bulk <id> ` message so far, per id: an
            // acknowledgement never claims more.
            let mut sent: Vec<(Vec<u8>, u64)> = Vec::new();
            for message in script.split(|&byte| byte == b'\n') {
                if let Some(id) = message
                    .strip_prefix(b"bulk ")
                    .and_then(|rest| rest.split(|&byte| byte == b' ').next())
                {
                    match sent.iter_mut().find(|(known, _)| known == id) {
                        Some((_, bytes)) => *bytes += message.len() as u64,
                        None => sent.push((id.to_vec(), message.len() as u64)),
                    }
                }
                let action = ctl.on_message(message);
                check_action(message, &action, &sent);
                assert!(
                    ctl.bulk.len() <= MAX_BULK_TESTS,
                    "at most {MAX_BULK_TESTS} tests at once"
                );
                for (id, _) in &ctl.bulk {
                    assert!(!id.is_empty() && id.len() <= MAX_BULK_ID, "kept id {id:?}");
                }
            }
        });
}

fn check_action(message: &[u8], action: &CtlAction, sent: &[(Vec<u8>, u64)]) {
    match action {
        CtlAction::Nothing => {}
        CtlAction::JoinsHalves => assert_eq!(message, JOINS_HALVES.as_bytes()),
        CtlAction::Pong { .. } => assert!(message.starts_with(b"pong")),
        // Only a well-formed end of a test, with a short plain id.
        CtlAction::BulkEnd(id) => {
            assert!(message.starts_with(b"bulkend ") && message.ends_with(id.as_bytes()));
            assert!(!id.is_empty() && id.len() <= MAX_BULK_ID && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        // Only a short, well-formed announcement inside the overlay ranges.
        CtlAction::Addresses(addresses) => {
            assert!(message.starts_with(b"addr ") && message.len() <= MAX_ADDR_MESSAGE);
            assert!(flproto::overlay::is_overlay_v4(addresses.v4) && flproto::overlay::is_overlay_v6(addresses.v6));
        }
        CtlAction::Reply(reply) if message.starts_with(b"ping") => {
            assert_eq!(reply[4..], message[4..]);
            assert!(reply.starts_with(b"pong"));
        }
        CtlAction::Reply(reply) if message.starts_with(b"msg:") => {
            assert!(reply.len() <= message.len() + ECHO_GROWTH);
            assert!(reply.starts_with(b"msg:echo: ") && reply.ends_with(&message[4..]));
        }
        CtlAction::Reply(reply) => {
            assert!(message.starts_with(b"bulk "), "only ping, msg: and bulk are answered");
            assert!(reply.len() <= MAX_BULKACK, "{} byte ack", reply.len());
            let text = std::str::from_utf8(reply).expect("acks are text");
            let mut words = text.split(' ');
            assert_eq!(words.next(), Some("bulkack"));
            let id = words.next().expect("an ack names its test");
            let bytes: u64 = words.next().and_then(|n| n.parse().ok()).expect("an ack counts bytes");
            let total = sent
                .iter()
                .find(|(known, _)| known == id.as_bytes())
                .map(|(_, total)| *total);
            assert!(
                total.is_some_and(|total| bytes <= total),
                "ack of {bytes} for {id:?}, sent {total:?}"
            );
        }
    }
}
