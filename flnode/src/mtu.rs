//! Packet sizes along flnode's data path, and the two it sets: the SCTP
//! packet budget of every PeerConnection ([`SCTP_MTU`]) and, derived from
//! it, the MTU of the WireGuard interface it manages ([`WIREGUARD_MTU`]).
//!
//! One WireGuard datagram must travel as one SCTP DATA chunk, in one DTLS
//! record, in one UDP datagram: the `wg` channel has no retransmissions,
//! so a datagram split in two is lost whenever either half is. With the
//! SCTP stack's default budget (1191 bytes) a datagram from a 1420-MTU
//! WireGuard interface (up to 1452 bytes) is split in two. From the inner
//! packet outwards, for a full-size packet:
//!
//! | layer | adds | size |
//! |---|---|---|
//! | inner IP packet ([`WIREGUARD_MTU`]) | | 1280 |
//! | WireGuard data message ([`WIREGUARD_OVERHEAD`]) | 32 | 1312 |
//! | SCTP packet, one DATA chunk ([`SCTP_MTU`]) | 28 | 1340 |
//! | DTLS 1.2 record, AES-128-GCM ([`DTLS_RECORD_OVERHEAD`]) | 37 | 1377 |
//! | UDP datagram over IPv4 / IPv6 ([`IPV4_PACKET`], [`IPV6_PACKET`]) | 28 / 48 | 1405 / 1425 |
//! | relayed: TURN Send indication over IPv6 ([`TURN_IPV6_PACKET`]) | 59 | 1484 |
//!
//! All within a 1500-byte path. 1280 is also the IPv6 minimum MTU (and what
//! Tailscale uses), so every inner IPv6 packet fits without fragmentation.

/// What WireGuard adds to an inner packet: a 16-byte header (type,
/// receiver index, counter) and a 16-byte Poly1305 tag. A full-size inner
/// packet needs no padding (1280 is a multiple of 16).
pub const WIREGUARD_OVERHEAD: u32 = 32;
/// SCTP common header.
pub const SCTP_COMMON_HEADER: u32 = 12;
/// SCTP DATA chunk header.
pub const SCTP_DATA_CHUNK_HEADER: u32 = 16;

/// The SCTP packet budget flnode gives every PeerConnection (the setting
/// engine's `with_sctp_mtu`): the largest DATA packet it emits. Chosen so
/// that a whole DTLS-wrapped UDP datagram stays within a 1500-byte path
/// even through a TURN relay over IPv6 ([`TURN_IPV6_PACKET`]), with room
/// for the [`WIREGUARD_MTU`] that the IPv6 minimum MTU asks for.
pub const SCTP_MTU: u32 = 1340;

/// The MTU flnode gives the WireGuard interface it manages: the largest
/// inner packet whose WireGuard datagram fits one DATA chunk of a
/// [`SCTP_MTU`] packet (1340 - 12 - 16 - 32 = 1280).
pub const WIREGUARD_MTU: u32 = SCTP_MTU - SCTP_COMMON_HEADER - SCTP_DATA_CHUNK_HEADER - WIREGUARD_OVERHEAD;

/// The largest WireGuard datagram sent as one message: one DATA chunk of
/// an [`SCTP_MTU`] packet. A larger one goes in two halves
/// (`flproto::halves`) to a peer that joins them.
pub const LARGEST_WHOLE_DATAGRAM: usize = (WIREGUARD_MTU + WIREGUARD_OVERHEAD) as usize;

/// The largest datagram sent in halves: each half, header included, fits
/// one DATA chunk (2 614 bytes, a WireGuard MTU of 2 582). A larger one (a
/// jumbo-MTU interface) goes whole and SCTP cuts it into as many chunks as
/// it needs, as before halves existed.
pub const LARGEST_HALVED_DATAGRAM: usize = 2 * (LARGEST_WHOLE_DATAGRAM - flproto::halves::HEADER_LEN);

/// A DTLS 1.2 record's overhead with the cipher suite webrtc negotiates
/// between two flnodes, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (seen in a
/// capture of the handshake): a 13-byte record header, an 8-byte explicit
/// nonce and a 16-byte GCM tag. ChaCha20-Poly1305 would add 29.
pub const DTLS_RECORD_OVERHEAD: u32 = 13 + 8 + 16;
/// The UDP payload carrying one full [`SCTP_MTU`] packet.
pub const UDP_PAYLOAD: u32 = SCTP_MTU + DTLS_RECORD_OVERHEAD;
/// That payload's IPv4 packet: 20 bytes of IPv4 and 8 of UDP header.
pub const IPV4_PACKET: u32 = UDP_PAYLOAD + 20 + 8;
/// That payload's IPv6 packet: 40 bytes of IPv6 and 8 of UDP header.
pub const IPV6_PACKET: u32 = UDP_PAYLOAD + 40 + 8;
/// The largest relayed form: a TURN Send indication (what webrtc's TURN
/// client sends before a channel is bound; ChannelData after it adds only
/// 4 bytes and padding) to an IPv6 peer, over IPv6: a 20-byte STUN header,
/// the DATA attribute (4-byte header, payload padded to 4 bytes), an IPv6
/// XOR-PEER-ADDRESS (24) and a FINGERPRINT (8).
pub const TURN_IPV6_PACKET: u32 = 40 + 8 + 20 + 4 + UDP_PAYLOAD.next_multiple_of(4) + 24 + 8;
/// The path MTU flnode assumes between nodes (Ethernet, most Wi-Fi and
/// DSL-less broadband).
pub const PATH_MTU: u32 = 1500;

// The promise of this module, checked when flnode is compiled: the largest
// form of a full-size datagram fits the path, and so do the plain ones.
const _: () = assert!(TURN_IPV6_PACKET <= PATH_MTU && IPV4_PACKET < IPV6_PACKET && IPV6_PACKET <= PATH_MTU);
// A peer takes every half this node sends.
const _: () = assert!(LARGEST_HALVED_DATAGRAM / 2 <= flproto::halves::MAX_HALF_BYTES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_full_size_packet_is_one_chunk_one_record_one_datagram() {
        assert_eq!(WIREGUARD_MTU, 1280);
        // The chunk payload budget the SCTP stack derives from SCTP_MTU
        // is exactly one full WireGuard datagram.
        assert_eq!(
            rtc::sctp::max_payload_size_for_mtu(SCTP_MTU),
            WIREGUARD_MTU + WIREGUARD_OVERHEAD
        );
        assert_eq!(LARGEST_WHOLE_DATAGRAM, 1312);
        // Each half of the largest datagram from a 1420-MTU interface
        // (1452 bytes) fits one chunk, header and all.
        let half = flproto::halves::HEADER_LEN + flproto::halves::split_at(1452);
        assert!(half as u32 <= rtc::sctp::max_payload_size_for_mtu(SCTP_MTU));
        // So does each half of the largest datagram sent in halves (and
        // the receiver takes halves that large: checked at compile time).
        let half = flproto::halves::HEADER_LEN + flproto::halves::split_at(LARGEST_HALVED_DATAGRAM);
        assert_eq!(half, LARGEST_WHOLE_DATAGRAM);
        assert_eq!((UDP_PAYLOAD, IPV4_PACKET, IPV6_PACKET), (1377, 1405, 1425));
        assert_eq!(TURN_IPV6_PACKET, 1484);
    }
}
