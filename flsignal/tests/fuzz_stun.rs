//! Fuzz targets for the STUN service's decisions: any datagram in, a reply
//! or silence out. Only a well-formed Binding Request is answered, the
//! answer describes the source it came from, and no reply is ever big
//! enough to make the port worth using as a reflector.
//!
//! Under `cargo test` each target replays its corpus
//! (`tests/__fuzz__/<target>/corpus`) and then random inputs for
//! [`CARGO_TEST_TIME`]; `scripts/fuzz.sh` runs them under a real fuzzer.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use flproto::rate::RateLimit;
use flsignal::stun::{answer, Ignored, DEFAULT_MAX_REQUEST};
use flsignal::stun_limit::ReplyBudget;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::message::{Getter, Message, BINDING_ERROR, BINDING_SUCCESS, MAGIC_COOKIE};
use rtc_stun::xoraddr::XorMappedAddress;

/// Random inputs per target and `cargo test` run (a few seconds in all).
const CARGO_TEST_TIME: Duration = Duration::from_secs(2);

/// Largest reply: a 420 error listing the most unknown attributes (20
/// header, 4 + 24 ERROR-CODE, 4 + 16 UNKNOWN-ATTRIBUTES, 8 FINGERPRINT).
const MAX_REPLY: usize = 76;

/// Sources the same request is answered for: v4, v6, and v4 seen through a
/// dual-stack socket.
fn sources() -> [SocketAddr; 3] {
    [
        "198.51.100.7:40123".parse().unwrap(),
        "[2001:db8::5]:3333".parse().unwrap(),
        "[::ffff:192.0.2.1]:9".parse().unwrap(),
    ]
}

#[test]
fn stun_answers_only_binding_requests_and_never_amplifies() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|request: &[u8]| {
            for source in sources() {
                check_answer(request, source);
            }
            if !request.is_empty() {
                let limit = request.len() - 1;
                assert_eq!(answer(request, sources()[0], limit), Err(Ignored::TooLarge));
            }
        });
}

/// Header facts about `bytes`, read here without the codec.
fn is_binding_request_header(bytes: &[u8]) -> bool {
    bytes.len() >= 20
        && bytes[..2] == [0x00, 0x01]
        && bytes[4..8] == MAGIC_COOKIE.to_be_bytes()
        && usize::from(u16::from_be_bytes([bytes[2], bytes[3]])) == bytes.len() - 20
        && bytes.len().is_multiple_of(4)
}

fn check_answer(request: &[u8], source: SocketAddr) {
    let outcome = answer(request, source, DEFAULT_MAX_REQUEST);
    if request.len() > DEFAULT_MAX_REQUEST {
        assert_eq!(outcome, Err(Ignored::TooLarge));
        return;
    }
    let reply = match outcome {
        Ok(reply) => reply,
        Err(Ignored::NotBindingRequest) => {
            assert!(request.len() >= 20 && request[..2] != [0x00, 0x01]);
            return;
        }
        Err(Ignored::TooLarge | Ignored::RateLimited | Ignored::SendFailed) => {
            panic!("answer() does not decide that")
        }
        Err(_) => return,
    };
    assert!(is_binding_request_header(request), "answered {request:02x?}");
    assert!(reply.len() <= MAX_REPLY, "{} byte reply", reply.len());
    assert!(reply.len() <= DEFAULT_MAX_REQUEST);
    assert_eq!(reply[4..20], request[4..20], "same cookie and transaction");
    assert_eq!(usize::from(u16::from_be_bytes([reply[2], reply[3]])), reply.len() - 20);

    let mut message = Message::new();
    message.raw = reply;
    message.decode().expect("our reply decodes");
    FINGERPRINT.check(&message).expect("our reply's fingerprint is right");
    if message.typ == BINDING_SUCCESS {
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&message).expect("a success names the source");
        assert_eq!(
            SocketAddr::new(mapped.ip, mapped.port),
            SocketAddr::new(source.ip().to_canonical(), source.port())
        );
    } else {
        assert_eq!(message.typ, BINDING_ERROR);
    }
}

/// The per-source budgets under any sequence of sources and pauses: the
/// table stays bounded and a source never seen before gets an answer.
#[test]
fn stun_source_budgets_stay_bounded() {
    const MAX_SOURCES: usize = 8;
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|input: &[u8]| {
            let limit = RateLimit {
                per_second: 2,
                burst: 3,
            };
            let global = RateLimit {
                per_second: 5,
                burst: 10,
            };
            let start = Instant::now();
            let mut budget = ReplyBudget::new(limit, global, 64, MAX_SOURCES, start);
            let mut now = start;
            // The sources the budget should remember, least recently heard first.
            let mut remembered: Vec<IpAddr> = Vec::new();
            let mut replies = 0u64;
            for pair in input.chunks(2) {
                let source = IpAddr::from([192, 0, 2, pair[0] % 32]);
                now += Duration::from_millis(u64::from(pair.get(1).copied().unwrap_or(0)) * 10);
                let fresh = match remembered.iter().position(|known| *known == source) {
                    Some(index) => {
                        remembered.remove(index);
                        false
                    }
                    None => {
                        if remembered.len() == MAX_SOURCES {
                            remembered.remove(0);
                        }
                        true
                    }
                };
                remembered.push(source);
                let allowed = budget.source_allows(source, now);
                assert!(!fresh || allowed, "a new (or forgotten) source has its burst");
                assert!(budget.tracked() <= MAX_SOURCES);
                if allowed && budget.global_allows(now) {
                    replies += 1;
                }
                let elapsed = now.duration_since(start).as_secs_f64();
                let most = f64::from(global.burst) + f64::from(global.per_second) * elapsed;
                assert!(replies as f64 <= most + 1.0, "replies over the global budget");
            }
        });
}
