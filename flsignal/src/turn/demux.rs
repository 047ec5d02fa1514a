//! Which datagrams on a socket shared by STUN and TURN are TURN's: STUN
//! messages of TURN's methods, and ChannelData from clients that hold an
//! allocation. Binding requests stay with the STUN service (and its
//! budgets), whoever sends them, and so does everything else, which the
//! STUN service counts as it always has.

/// What a datagram on the shared socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A STUN Binding request: the STUN service answers.
    Binding,
    /// A STUN message of a TURN method (Allocate, Refresh, Send,
    /// CreatePermission, ChannelBind…): TURN's.
    Turn,
    /// ChannelData: TURN's if its source holds an allocation, else no
    /// more than noise for the STUN service to count.
    ChannelData,
    /// Anything else (another STUN method, a response, not STUN): the
    /// STUN service ignores it and counts why.
    Other,
}

/// STUN's magic cookie (RFC 8489), bytes 4 to 8 of every message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Message type of a Binding request.
const BINDING_REQUEST: u16 = 0x0001;
/// STUN header length.
const HEADER: usize = 20;
/// TURN's methods: Allocate (3) to ConnectionAttempt (0xc), RFC 8656 and
/// RFC 6062.
const TURN_METHODS: std::ops::RangeInclusive<u16> = 0x003..=0x00c;

/// The method of a STUN message type (its class bits taken out).
fn method(message_type: u16) -> u16 {
    ((message_type & 0x3e00) >> 2) | ((message_type & 0x00e0) >> 1) | (message_type & 0x000f)
}

/// Looks at the first bytes only; the owner parses the rest.
pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        // The two top bits of a STUN message are zero.
        Some(0x00..=0x3f) if datagram.len() >= HEADER && datagram[4..8] == MAGIC_COOKIE => {
            let message_type = u16::from_be_bytes([datagram[0], datagram[1]]);
            if message_type == BINDING_REQUEST {
                Kind::Binding
            } else if TURN_METHODS.contains(&method(message_type)) {
                Kind::Turn
            } else {
                Kind::Other
            }
        }
        // ChannelData: a four-byte header, channel numbers 0x4000 to
        // 0x7fff (RFC 8656 narrows them to 0x4fff, but clients of RFC
        // 5766, coturn's among them, use the rest). Text starting with
        // `@` to DEL looks like it too, hence the allocation check.
        Some(0x40..=0x7f) if datagram.len() >= 4 => Kind::ChannelData,
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
    fn binding_requests_go_to_stun_turns_methods_to_turn() {
        assert_eq!(classify(&stun([0x00, 0x01])), Kind::Binding);
        // Allocate request, Refresh, CreatePermission, ChannelBind, a Send
        // indication.
        for message_type in [[0x00, 0x03], [0x00, 0x04], [0x00, 0x08], [0x00, 0x09], [0x00, 0x16]] {
            assert_eq!(classify(&stun(message_type)), Kind::Turn, "{message_type:?}");
        }
        // A Binding success or indication, an unknown method: STUN's to
        // count.
        for message_type in [[0x01, 0x01], [0x00, 0x11], [0x00, 0x02], [0x00, 0x0d]] {
            assert_eq!(classify(&stun(message_type)), Kind::Other, "{message_type:?}");
        }
    }

    #[test]
    fn channel_data_is_turns() {
        assert_eq!(classify(&[0x40, 0x00, 0x00, 0x00]), Kind::ChannelData);
        assert_eq!(classify(&[0x4f, 0xff, 0x00, 0x04, 1, 2, 3, 4]), Kind::ChannelData);
        assert_eq!(classify(&[0x5e, 0xfa, 0x00, 0x00]), Kind::ChannelData);
        assert_eq!(classify(&[0x7f, 0xff, 0x00, 0x00]), Kind::ChannelData);
        assert_eq!(classify(&[0x80, 0x00, 0x00, 0x00]), Kind::Other);
        assert_eq!(classify(&[0x40, 0x00]), Kind::Other);
    }

    #[test]
    fn everything_else_is_other() {
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(b"\x80junk that is no STUN"), Kind::Other);
        assert_eq!(classify(b"GET / HTTP/1.1"), Kind::ChannelData);
        let mut no_cookie = stun([0x00, 0x03]);
        no_cookie[4] = 0;
        assert_eq!(classify(&no_cookie), Kind::Other);
        assert_eq!(classify(&stun([0x00, 0x03])[..19]), Kind::Other);
        assert_eq!(classify(&[0xff; 40]), Kind::Other);
    }
}
