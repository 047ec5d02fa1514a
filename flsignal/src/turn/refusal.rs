//! Error responses flsignal gives in place of the TURN state machine
//! (403 for a refused peer, 486 and 508 for the allocation caps), signed
//! with the credential the request proved it holds, as RFC 8656 asks of
//! every response to an authenticated request.

use turn_server_proto::types::stun::attribute::ErrorCode;
use turn_server_proto::types::stun::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageIntegrityCredentials, MessageWrite, MessageWriteExt,
    MessageWriteVec,
};

/// The error response `code` to `request`, with MESSAGE-INTEGRITY (of
/// `algorithm`, the one the request used) and FINGERPRINT.
pub fn signed_error(
    request: &Message<'_>,
    code: u16,
    credentials: &LongTermKeyCredentials,
    algorithm: IntegrityAlgorithm,
) -> Option<Vec<u8>> {
    let error = ErrorCode::builder(code).build().ok()?;
    let mut reply = Message::builder_error(request, MessageWriteVec::new());
    reply.add_attribute(&error).ok()?;
    let credentials = MessageIntegrityCredentials::from(credentials.clone());
    reply.add_message_integrity(&credentials, algorithm).ok()?;
    reply.add_fingerprint().ok()?;
    Some(reply.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use turn_server_proto::types::message::CREATE_PERMISSION;
    use turn_server_proto::types::stun::message::MessageClass;

    #[test]
    fn refusals_are_signed_error_responses_to_the_request() {
        let credentials = LongTermKeyCredentials::new("1:ab".into(), "pass".into(), "flsignal".into());
        let request = Message::builder_request(CREATE_PERMISSION, MessageWriteVec::new()).finish();
        let request = Message::from_bytes(&request).unwrap();
        for algorithm in [IntegrityAlgorithm::Sha1, IntegrityAlgorithm::Sha256] {
            let reply = signed_error(&request, ErrorCode::FORBIDDEN, &credentials, algorithm).unwrap();
            let reply = Message::from_bytes(&reply).unwrap();
            assert!(reply.has_class(MessageClass::Error));
            assert_eq!(reply.method(), CREATE_PERMISSION);
            assert_eq!(reply.transaction_id(), request.transaction_id());
            assert_eq!(reply.attribute::<ErrorCode>().unwrap().code(), 403);
            let integrity = MessageIntegrityCredentials::from(credentials.clone());
            assert_eq!(reply.validate_integrity(&integrity).unwrap(), algorithm);
            let wrong = LongTermKeyCredentials::new("1:ab".into(), "other".into(), "flsignal".into());
            assert!(reply
                .validate_integrity(&MessageIntegrityCredentials::from(wrong))
                .is_err());
        }
    }
}
