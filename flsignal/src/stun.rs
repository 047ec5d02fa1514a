//! STUN Binding (RFC 8489, formerly RFC 5389) as plain functions: the bytes
//! of a datagram and its source address go in, the bytes of the reply (or
//! the reason to stay silent) come out. No socket, no clock; the UDP loop
//! is [`crate::stun_service`].
//!
//! The message codec is `rtc-stun`, the one the WebRTC stack of flnode uses
//! to ask: both ends agree on the encoding by construction, and no second
//! STUN implementation enters the build. Its decoder is lenient (it does not
//! insist on the length rules, the leading zero bits or where FINGERPRINT
//! sits), so those checks are made here before and after it.
//!
//! A server answers with what it saw; anything that is not a well-formed
//! Binding Request is dropped without a word, so the port is no reflector
//! for spoofed garbage. A request naming attributes it requires us to
//! understand and we do not gets the RFC's 420 error. How many replies go
//! out at all is [`crate::stun_limit`]'s decision.

use std::net::SocketAddr;

use rtc_stun::attributes::{
    AttrType, ATTR_ERROR_CODE, ATTR_FINGERPRINT, ATTR_MAPPED_ADDRESS, ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_NONCE, ATTR_PASSWORD_ALGORITHM, ATTR_PRIORITY, ATTR_REALM,
    ATTR_UNKNOWN_ATTRIBUTES, ATTR_USERNAME, ATTR_USER_HASH, ATTR_USE_CANDIDATE, ATTR_XORMAPPED_ADDRESS,
};
use rtc_stun::error_code::{ErrorCodeAttribute, CODE_UNKNOWN_ATTRIBUTE};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::message::{
    Message, Setter, BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, MAGIC_COOKIE, MESSAGE_HEADER_SIZE,
};
use rtc_stun::uattrs::UnknownAttributes;
use rtc_stun::xoraddr::XorMappedAddress;

/// Largest request read (bytes). A Binding Request is 20 bytes plus a few
/// small attributes; ICE agents send well under 200. Anything longer is
/// dropped unread rather than decoded.
pub const DEFAULT_MAX_REQUEST: usize = 548;
/// Most attribute types listed in a 420 reply; a longer list is cut, so the
/// reply never grows with the request.
const MAX_UNKNOWN_LISTED: usize = 8;

/// Comprehension-required attributes (type below 0x8000) that a Binding
/// server understands: the addresses, the authentication attributes it may
/// ignore (it asks for no credentials), and ICE's PRIORITY and
/// USE-CANDIDATE, which a Binding Request may carry.
const UNDERSTOOD: [AttrType; 13] = [
    ATTR_MAPPED_ADDRESS,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_XORMAPPED_ADDRESS,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_PASSWORD_ALGORITHM,
    ATTR_USER_HASH,
    ATTR_PRIORITY,
    ATTR_USE_CANDIDATE,
];

/// Why a datagram got no reply. Each is a label of
/// `flsignal_stun_ignored_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// Longer than the request size limit.
    TooLarge,
    /// Not STUN at all: too short, no magic cookie, or leading bits set.
    NotStun,
    /// STUN-looking but broken: lengths that do not add up, attributes that
    /// overrun the message.
    Malformed,
    /// A well-formed STUN message that is not a Binding Request (a
    /// response, an indication, another method).
    NotBindingRequest,
    /// A FINGERPRINT that is wrong or not the last attribute.
    BadFingerprint,
    /// The source (address, or IPv6 prefix) used up its budget.
    RateLimited,
    /// All sources together used up the global reply budget.
    GlobalRateLimited,
    /// The reply could not be sent (socket buffer full).
    SendFailed,
}

impl Ignored {
    pub const ALL: [Ignored; 8] = [
        Ignored::TooLarge,
        Ignored::NotStun,
        Ignored::Malformed,
        Ignored::NotBindingRequest,
        Ignored::BadFingerprint,
        Ignored::RateLimited,
        Ignored::GlobalRateLimited,
        Ignored::SendFailed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Ignored::TooLarge => "too_large",
            Ignored::NotStun => "not_stun",
            Ignored::Malformed => "malformed",
            Ignored::NotBindingRequest => "not_binding_request",
            Ignored::BadFingerprint => "bad_fingerprint",
            Ignored::RateLimited => "rate_limited",
            Ignored::GlobalRateLimited => "global_rate_limited",
            Ignored::SendFailed => "send_failed",
        }
    }
}

/// The reply to `request`, received from `source`, or why there is none.
///
/// A success reply carries XOR-MAPPED-ADDRESS (`source`) and FINGERPRINT;
/// nothing else, so it is barely longer than the smallest request.
pub fn answer(request: &[u8], source: SocketAddr, max_request: usize) -> Result<Vec<u8>, Ignored> {
    if request.len() > max_request {
        return Err(Ignored::TooLarge);
    }
    let message = decode(request)?;
    if message.typ != BINDING_REQUEST {
        return Err(Ignored::NotBindingRequest);
    }
    check_fingerprint(&message)?;
    let unknown: Vec<AttrType> = message
        .attributes
        .0
        .iter()
        .map(|attribute| attribute.typ)
        .filter(|typ| typ.required() && !UNDERSTOOD.contains(typ))
        .take(MAX_UNKNOWN_LISTED)
        .collect();
    let mut reply = Message::new();
    let built = if unknown.is_empty() {
        // A v4 client seen through a dual-stack socket is a v4 client.
        let ip = source.ip().to_canonical();
        reply.build(&[
            Box::new(message.transaction_id),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress {
                ip,
                port: source.port(),
            }),
            Box::new(FINGERPRINT),
        ])
    } else {
        reply.build(&[
            Box::new(message.transaction_id),
            Box::new(BINDING_ERROR),
            Box::new(ErrorCodeAttribute {
                code: CODE_UNKNOWN_ATTRIBUTE,
                reason: b"Unknown Attribute".to_vec(),
            }),
            Box::new(UnknownAttributes(unknown)) as Box<dyn Setter>,
            Box::new(FINGERPRINT),
        ])
    };
    // Building from these fixed, small attributes cannot fail; if the codec
    // ever says otherwise, stay silent rather than send half a message.
    built.map_err(|_| Ignored::Malformed)?;
    Ok(reply.raw)
}

/// Decodes a STUN message, with the checks the codec leaves out.
fn decode(bytes: &[u8]) -> Result<Message, Ignored> {
    if bytes.len() < MESSAGE_HEADER_SIZE
        || bytes[0] & 0xc0 != 0
        || u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) != MAGIC_COOKIE
    {
        return Err(Ignored::NotStun);
    }
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if length % 4 != 0 || MESSAGE_HEADER_SIZE + length != bytes.len() {
        return Err(Ignored::Malformed);
    }
    let mut message = Message::new();
    message.raw = bytes.to_vec();
    message.decode().map_err(|_| Ignored::Malformed)?;
    Ok(message)
}

/// FINGERPRINT is optional; if present it must be right, and last.
fn check_fingerprint(message: &Message) -> Result<(), Ignored> {
    let attributes = &message.attributes.0;
    let Some(at) = attributes.iter().position(|a| a.typ == ATTR_FINGERPRINT) else {
        return Ok(());
    };
    if at + 1 != attributes.len() {
        return Err(Ignored::BadFingerprint);
    }
    FINGERPRINT.check(message).map_err(|_| Ignored::BadFingerprint)
}

#[cfg(test)]
#[path = "stun_tests.rs"]
mod tests;
