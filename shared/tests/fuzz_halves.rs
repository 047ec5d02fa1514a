//! Fuzz target for datagrams in halves as a hostile peer could send them:
//! any sequence of messages, from any connections, at any times. The
//! reassembly never holds more than its limit, never holds a half longer
//! than its age limit once time has moved on, and only ever joins a first
//! and a second half of the same id from the same connection, each as it
//! arrived.

mod fuzz_support;

use std::time::{Duration, Instant};

use flproto::halves::{Half, Message, Reassembly, ReassemblyLimits, HEADER_LEN, MAX_HALF_BYTES};
use fuzz_support::CARGO_TEST_TIME;

const LIMITS: ReassemblyLimits = ReassemblyLimits {
    max_held: 8,
    max_age: Duration::from_millis(100),
};

#[test]
fn any_messages_from_a_peer_join_only_true_pairs_within_the_limits() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .with_type::<Vec<(u8, u8, Vec<u8>)>>()
        .for_each(|messages| {
            let start = Instant::now();
            let mut now = start;
            let mut reassembly = Reassembly::new(LIMITS);
            for (conn, advance, bytes) in messages {
                now += Duration::from_millis(u64::from(*advance % 64));
                let conn = conn % 3;
                let kind = Message::of(bytes);
                match kind {
                    Message::Whole => assert!(bytes.first().is_none_or(|b| *b != 0xF0 && *b != 0xF1)),
                    Message::Malformed => {
                        assert!(bytes.len() < HEADER_LEN || bytes.len() - HEADER_LEN > MAX_HALF_BYTES)
                    }
                    Message::Half { half, id } => {
                        let step = reassembly.on_half(conn, half, id, (conn, half, id, bytes.clone()), now);
                        if let Some((first, second)) = step.joined {
                            assert_eq!((first.1, second.1), (Half::First, Half::Second));
                            assert_eq!((first.0, first.2), (second.0, second.2));
                            assert_eq!((first.0, first.2), (conn, id));
                            assert_eq!(Message::of(&first.3), Message::Half { half: Half::First, id });
                            assert_eq!(Message::of(&second.3), Message::Half { half: Half::Second, id });
                        }
                    }
                }
                assert!(reassembly.len() <= LIMITS.max_held);
            }
            reassembly.expire(now + LIMITS.max_age + Duration::from_millis(1));
            assert!(reassembly.is_empty(), "everything is given up after the age limit");
        });
}
