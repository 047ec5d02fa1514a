use proptest::prelude::*;
use rtc_stun::attributes::{ATTR_CHANGE_REQUEST, ATTR_ICE_CONTROLLING, ATTR_SOFTWARE, ATTR_UNKNOWN_ATTRIBUTES};
use rtc_stun::message::{
    Getter, MessageType, TransactionId, BINDING_SUCCESS, CLASS_INDICATION, CLASS_REQUEST, METHOD_ALLOCATE,
    METHOD_BINDING,
};

use super::*;

const MAX: usize = DEFAULT_MAX_REQUEST;

fn source() -> SocketAddr {
    "198.51.100.7:40123".parse().unwrap()
}

/// A Binding Request with `extra` attributes (type, value), and FINGERPRINT
/// if asked.
fn request(extra: &[(AttrType, &[u8])], fingerprint: bool) -> (TransactionId, Vec<u8>) {
    let id = TransactionId::new();
    let mut message = Message::new();
    message.build(&[Box::new(id), Box::new(BINDING_REQUEST)]).unwrap();
    for (typ, value) in extra {
        message.add(*typ, value);
    }
    if fingerprint {
        FINGERPRINT.add_to(&mut message).unwrap();
    }
    (id, message.raw)
}

fn decoded(bytes: &[u8]) -> Message {
    let mut message = Message::new();
    message.raw = bytes.to_vec();
    message.decode().unwrap();
    message
}

fn mapped(reply: &[u8]) -> SocketAddr {
    let message = decoded(reply);
    let mut address = XorMappedAddress::default();
    address.get_from(&message).unwrap();
    SocketAddr::new(address.ip, address.port)
}

#[test]
fn a_binding_request_is_answered_with_the_source_address() {
    for (with_fingerprint, source) in [
        (false, source()),
        (true, "[2001:db8::5]:3333".parse().unwrap()),
        (false, "[::ffff:192.0.2.1]:9".parse().unwrap()),
    ] {
        let (id, bytes) = request(&[], with_fingerprint);
        let reply = answer(&bytes, source, MAX).unwrap();
        let message = decoded(&reply);
        assert_eq!(message.typ, BINDING_SUCCESS);
        assert_eq!(message.transaction_id, id);
        FINGERPRINT.check(&message).unwrap();
        let expected = SocketAddr::new(source.ip().to_canonical(), source.port());
        assert_eq!(mapped(&reply), expected);
        // The reply is small: no amplification worth the name.
        assert!(reply.len() <= 20 + 24 + 8, "{} bytes", reply.len());
    }
}

#[test]
fn ice_style_requests_are_answered() {
    // What an ICE agent puts in a connectivity check; a STUN server without
    // credentials answers it all the same.
    let (_, bytes) = request(
        &[
            (ATTR_USERNAME, b"abcd:efgh"),
            (ATTR_PRIORITY, &[0, 0, 1, 2]),
            (ATTR_ICE_CONTROLLING, &[7; 8]),
            (ATTR_SOFTWARE, b"test"),
            (ATTR_MESSAGE_INTEGRITY, &[9; 20]),
            // An unknown comprehension-optional attribute is skipped.
            (AttrType(0xC0FE), b"x"),
        ],
        true,
    );
    assert_eq!(mapped(&answer(&bytes, source(), MAX).unwrap()), source());
}

#[test]
fn unknown_required_attributes_get_a_420() {
    let (id, bytes) = request(&[(ATTR_CHANGE_REQUEST, &[0, 0, 0, 6]), (AttrType(0x7777), b"")], false);
    let message = decoded(&answer(&bytes, source(), MAX).unwrap());
    assert_eq!(message.typ, BINDING_ERROR);
    assert_eq!(message.transaction_id, id);
    assert_eq!(
        message.get(ATTR_UNKNOWN_ATTRIBUTES).unwrap(),
        vec![0x00, 0x03, 0x77, 0x77]
    );
    let mut error = ErrorCodeAttribute::default();
    error.get_from(&message).unwrap();
    assert_eq!(error.code.0, CODE_UNKNOWN_ATTRIBUTE.0);
    // A request full of unknown attributes gets a bounded list.
    let many: Vec<(AttrType, &[u8])> = (0x7000..0x7040).map(|t| (AttrType(t), &b""[..])).collect();
    let (_, bytes) = request(&many, false);
    let listed = decoded(&answer(&bytes, source(), MAX).unwrap())
        .get(ATTR_UNKNOWN_ATTRIBUTES)
        .unwrap();
    assert_eq!(listed.len(), 2 * MAX_UNKNOWN_LISTED);
}

#[test]
fn garbage_is_ignored_with_a_reason() {
    let (_, good) = request(&[], false);
    let cases: Vec<(Vec<u8>, Ignored)> = vec![
        (Vec::new(), Ignored::NotStun),
        (good[..19].to_vec(), Ignored::NotStun),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Ignored::NotStun),
        // RFC 3489 style: no magic cookie.
        (
            {
                let mut b = good.clone();
                b[4] = 0;
                b
            },
            Ignored::NotStun,
        ),
        // The two leading bits of every STUN message are zero.
        (
            {
                let mut b = good.clone();
                b[0] |= 0x80;
                b
            },
            Ignored::NotStun,
        ),
        // Trailing bytes after the message.
        (
            {
                let mut b = good.clone();
                b.extend_from_slice(&[0; 4]);
                b
            },
            Ignored::Malformed,
        ),
        // A length that is not a multiple of four.
        (
            {
                let mut b = good.clone();
                b[3] = 2;
                b.extend_from_slice(&[0; 2]);
                b
            },
            Ignored::Malformed,
        ),
        // An attribute longer than the message.
        (
            {
                let mut b = good.clone();
                b[3] = 8;
                b.extend_from_slice(&[0x80, 0x22, 0x00, 0x40, 1, 2, 3, 4]);
                b
            },
            Ignored::Malformed,
        ),
        (vec![0; MAX + 1], Ignored::TooLarge),
    ];
    for (bytes, reason) in cases {
        assert_eq!(answer(&bytes, source(), MAX), Err(reason), "{bytes:?}");
    }
}

#[test]
fn only_binding_requests_are_answered() {
    let reply = answer(&request(&[], false).1, source(), MAX).unwrap();
    // Our own reply, reflected back at us (or a spoofed loop), is silence.
    assert_eq!(answer(&reply, source(), MAX), Err(Ignored::NotBindingRequest));
    for typ in [
        MessageType::new(METHOD_BINDING, CLASS_INDICATION),
        MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST),
    ] {
        let mut message = Message::new();
        message.build(&[Box::new(TransactionId::new()), Box::new(typ)]).unwrap();
        assert_eq!(answer(&message.raw, source(), MAX), Err(Ignored::NotBindingRequest));
    }
}

#[test]
fn a_wrong_or_misplaced_fingerprint_is_ignored() {
    let (_, mut bytes) = request(&[], true);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(answer(&bytes, source(), MAX), Err(Ignored::BadFingerprint));
    // A right fingerprint followed by another attribute.
    let (_, mut bytes) = request(&[], true);
    bytes.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
    let length = (bytes.len() - 20) as u16;
    bytes[2..4].copy_from_slice(&length.to_be_bytes());
    assert_eq!(answer(&bytes, source(), MAX), Err(Ignored::BadFingerprint));
}

proptest! {
    /// Whatever arrives, the answer is silence or a well-formed response to
    /// a request, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(reply) = answer(&bytes, source(), MAX) {
            let message = decoded(&reply);
            prop_assert_eq!(&message.raw[8..20], &bytes[8..20]);
        }
    }

    /// Mutated real requests (the interesting neighbourhood) do not panic
    /// either.
    #[test]
    fn mutated_requests_never_panic(flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..6)) {
        let (_, mut bytes) = request(&[(ATTR_USERNAME, b"user:name"), (ATTR_SOFTWARE, b"x")], true);
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let _ = answer(&bytes, source(), MAX);
    }
}
