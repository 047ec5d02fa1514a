//! Which datagrams on a socket shared by STUN and TURN are TURN's: every
//! STUN message but a Binding request, and ChannelData. Binding requests
//! stay with the STUN service (and its budgets), whoever sends them.

/// What a datagram on the shared socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A STUN Binding request: the STUN service answers.
    Binding,
    /// Another STUN message, or ChannelData: the TURN service's.
    Turn,
    /// Neither: the STUN service ignores it (counted as not STUN).
    Other,
}

/// STUN's magic cookie (RFC 8489), bytes 4 to 8 of every message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Message type of a Binding request.
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
/// STUN header length.
const HEADER: usize = 20;

/// Looks at the first bytes only; the owner parses the rest.
pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        // The two top bits of a STUN message are zero.
        Some(0x00..=0x3f) if datagram.len() >= HEADER && datagram[4..8] == MAGIC_COOKIE => {
            if datagram[0..2] == BINDING_REQUEST {
                Kind::Binding
            } else {
                Kind::Turn
            }
        }
        // ChannelData: a four-byte header, channel numbers 0x4000 to
        // 0x7fff (RFC 8656 narrows them to 0x4fff, but clients of RFC
        // 5766, coturn's among them, use the rest). Text starting with
        // `@` to DEL lands here too; TURN drops what no client of its sent.
        Some(0x40..=0x7f) if datagram.len() >= 4 => Kind::Turn,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(message_type: [u8; 2]) -> Vec<u8> {
        let mut message = vec![message_type[0], message_type[1], 0, 0];
        message.extend_from_slice(&MAGIC_COOKIE);
        message.extend_from_slice(&[7; 12]);
        message
    }

    #[test]
    fn binding_requests_go_to_stun_the_rest_of_stun_to_turn() {
        assert_eq!(classify(&stun([0x00, 0x01])), Kind::Binding);
        // Allocate request, Refresh, CreatePermission, ChannelBind.
        for message_type in [[0x00, 0x03], [0x00, 0x04], [0x00, 0x08], [0x00, 0x09]] {
            assert_eq!(classify(&stun(message_type)), Kind::Turn, "{message_type:?}");
        }
        // A Send indication, and a Binding success a client should not send.
        assert_eq!(classify(&stun([0x00, 0x16])), Kind::Turn);
        assert_eq!(classify(&stun([0x01, 0x01])), Kind::Turn);
    }

    #[test]
    fn channel_data_is_turns() {
        assert_eq!(classify(&[0x40, 0x00, 0x00, 0x00]), Kind::Turn);
        assert_eq!(classify(&[0x4f, 0xff, 0x00, 0x04, 1, 2, 3, 4]), Kind::Turn);
        assert_eq!(classify(&[0x5e, 0xfa, 0x00, 0x00]), Kind::Turn);
        assert_eq!(classify(&[0x7f, 0xff, 0x00, 0x00]), Kind::Turn);
        assert_eq!(classify(&[0x80, 0x00, 0x00, 0x00]), Kind::Other);
        assert_eq!(classify(&[0x40, 0x00]), Kind::Other);
    }

    #[test]
    fn everything_else_is_other() {
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(b"\x80junk that is no STUN"), Kind::Other);
        let mut no_cookie = stun([0x00, 0x03]);
        no_cookie[4] = 0;
        assert_eq!(classify(&no_cookie), Kind::Other);
        assert_eq!(classify(&stun([0x00, 0x03])[..19]), Kind::Other);
        assert_eq!(classify(&[0xff; 40]), Kind::Other);
    }
}
