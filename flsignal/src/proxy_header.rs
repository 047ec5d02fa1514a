//! The PROXY protocol (HAProxy's, versions 1 and 2) that load balancers
//! put in front of a TCP connection to say whose it is. Only connections
//! from `--trusted-proxy` addresses are read for one; from anyone else the
//! bytes are the client's own, so a header there is just bad HTTP.
//!
//! [`parse`] decides on bytes alone (ppp does the parsing); [`read`] is the
//! socket edge that feeds it.

use std::net::{IpAddr, SocketAddr};

use ppp::v2;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest PROXY header accepted, type-length-value extensions included.
/// A version 2 header with an IPv6 address is 52 bytes; load balancers add
/// a few TLVs (AWS: the VPC endpoint, a few dozen bytes), so this leaves
/// room without letting a connection hold much before it is known.
pub const DEFAULT_MAX_PROXY_HEADER: usize = 1024;

/// The smallest `--max-proxy-header-size` allowed: a version 2 header with
/// UNIX socket addresses, the longest without extensions, is 232 bytes
/// (version 1 headers are at most 107).
pub const MIN_MAX_PROXY_HEADER: usize = 232;

/// What the first bytes of a connection from a trusted proxy say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preamble {
    /// No PROXY header: the bytes are the connection's own (HTTP or TLS).
    Absent,
    /// The start of a PROXY header: more bytes are needed.
    Incomplete,
    /// A whole header of `length` bytes. `client` is `None` for the
    /// proxy's own connections (v1 `UNKNOWN`, v2 `LOCAL`, non-IP families).
    Header { length: usize, client: Option<SocketAddr> },
    /// Starts like a PROXY header but is not a valid one.
    Invalid(String),
}

const V1_PREFIX: &[u8] = b"PROXY ";

/// Reads `bytes` (everything received so far) as the start of a
/// connection that may begin with a PROXY header of at most `max_len` bytes.
pub fn parse(bytes: &[u8], max_len: usize) -> Preamble {
    if bytes.is_empty() {
        return Preamble::Incomplete;
    }
    if starts_like(bytes, v2::PROTOCOL_PREFIX) {
        parse_v2(bytes, max_len)
    } else if starts_like(bytes, V1_PREFIX) {
        parse_v1(bytes)
    } else {
        Preamble::Absent
    }
}

/// Whether `bytes` and `prefix` agree as far as both go.
fn starts_like(bytes: &[u8], prefix: &[u8]) -> bool {
    let common = bytes.len().min(prefix.len());
    bytes[..common] == prefix[..common]
}

fn parse_v2(bytes: &[u8], max_len: usize) -> Preamble {
    // The fixed part: 12 bytes of signature, version, family, length.
    const FIXED: usize = 16;
    if bytes.len() >= FIXED {
        let length = FIXED + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        if length > max_len {
            return Preamble::Invalid(format!(
                "PROXY v2 header of {length} bytes is over the {max_len}-byte limit"
            ));
        }
    }
    match v2::Header::try_from(bytes) {
        Ok(header) => Preamble::Header {
            length: header.len(),
            client: match (header.command, header.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, _) => None,
            },
        },
        Err(v2::ParseError::Incomplete(_) | v2::ParseError::Partial(..)) => Preamble::Incomplete,
        Err(error) => Preamble::Invalid(format!("PROXY v2 header: {error}")),
    }
}

fn parse_v1(bytes: &[u8]) -> Preamble {
    // The line, CRLF included, is at most 107 bytes (the spec's limit).
    const V1_MAX: usize = 107;
    let searched = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = searched.windows(2).position(|pair| pair == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Preamble::Invalid(format!("PROXY v1 header without a line end in {V1_MAX} bytes"))
        } else {
            Preamble::Incomplete
        };
    };
    match ppp::v1::Header::try_from(&bytes[..end + 2]) {
        Ok(header) => Preamble::Header {
            length: end + 2,
            client: match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
                ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
                ppp::v1::Addresses::Unknown => None,
            },
        },
        Err(error) => Preamble::Invalid(format!("PROXY v1 header: {error}")),
    }
}

/// Why a connection from a trusted proxy was given up before HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Invalid(String),
    #[error("connection closed inside the PROXY header")]
    Closed,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`read`] found. `rest` is what was read past the header (or all
/// that was read, without one): it belongs to TLS or HTTP.
#[derive(Debug)]
pub enum Received {
    /// No PROXY header.
    Bare { rest: Vec<u8> },
    /// A header; `client` as in [`Preamble::Header`].
    Header { client: Option<SocketAddr>, rest: Vec<u8> },
}

/// Reads from `stream` until [`parse`] decides, keeping at most `max_len`
/// bytes. The caller bounds the time.
pub async fn read(stream: &mut TcpStream, max_len: usize) -> Result<Received, ReadError> {
    let mut buffer = Vec::with_capacity(max_len);
    loop {
        match parse(&buffer, max_len) {
            Preamble::Absent => return Ok(Received::Bare { rest: buffer }),
            Preamble::Header { length, client } => {
                return Ok(Received::Header {
                    client,
                    rest: buffer.split_off(length),
                })
            }
            Preamble::Invalid(reason) => return Err(ReadError::Invalid(reason)),
            Preamble::Incomplete if buffer.len() >= max_len => {
                return Err(ReadError::Invalid(format!(
                    "no complete PROXY header within {max_len} bytes"
                )))
            }
            Preamble::Incomplete => {
                // `read_buf` reads at most the spare capacity: max_len in all.
                if stream.read_buf(&mut buffer).await? == 0 {
                    return Err(ReadError::Closed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = DEFAULT_MAX_PROXY_HEADER;

    fn v2_tcp4(client: [u8; 4], port: u16, tlv: &[u8]) -> Vec<u8> {
        let mut header = v2::PROTOCOL_PREFIX.to_vec();
        header.extend([0x21, 0x11]);
        header.extend(u16::try_from(12 + tlv.len()).unwrap().to_be_bytes());
        header.extend(client);
        header.extend([127, 0, 0, 1]);
        header.extend(port.to_be_bytes());
        header.extend(8765u16.to_be_bytes());
        header.extend(tlv);
        header
    }

    #[test]
    fn a_v1_header_names_the_client_and_its_length() {
        let bytes = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 8765\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(bytes, MAX),
            Preamble::Header {
                length: 44,
                client: Some("203.0.113.7:5555".parse().unwrap())
            }
        );
        let v6 = b"PROXY TCP6 2001:db8::7 ::1 5555 8765\r\n";
        assert!(
            matches!(parse(v6, MAX), Preamble::Header { client: Some(addr), .. } if addr.ip() == "2001:db8::7".parse::<IpAddr>().unwrap())
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n", MAX),
            Preamble::Header {
                length: 15,
                client: None
            }
        );
    }

    #[test]
    fn a_v2_header_names_the_client_and_local_names_nobody() {
        let mut bytes = v2_tcp4([203, 0, 113, 7], 5555, &[]);
        let length = bytes.len();
        bytes.extend(b"\x16\x03\x01");
        assert_eq!(
            parse(&bytes, MAX),
            Preamble::Header {
                length,
                client: Some("203.0.113.7:5555".parse().unwrap())
            }
        );
        let mut local = v2::PROTOCOL_PREFIX.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local, MAX),
            Preamble::Header {
                length: 16,
                client: None
            }
        );
    }

    #[test]
    fn partial_headers_ask_for_more_and_other_bytes_are_not_headers() {
        let whole = v2_tcp4([203, 0, 113, 7], 5555, &[]);
        for cut in 1..whole.len() {
            assert_eq!(parse(&whole[..cut], MAX), Preamble::Incomplete, "{cut}");
        }
        assert_eq!(parse(b"PROXY TCP4 203.0", MAX), Preamble::Incomplete);
        assert_eq!(parse(b"P", MAX), Preamble::Incomplete);
        assert_eq!(parse(b"POST / HTTP/1.1\r\n", MAX), Preamble::Absent);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", MAX), Preamble::Absent);
        assert_eq!(parse(b"\x16\x03\x01\x02\x00", MAX), Preamble::Absent);
    }

    #[test]
    fn bad_and_oversize_headers_are_invalid() {
        assert!(matches!(parse(b"PROXY TCP4 nonsense\r\n", MAX), Preamble::Invalid(_)));
        assert!(matches!(
            parse(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'A'].repeat(20), MAX),
            Preamble::Invalid(_)
        ));
        let big = v2_tcp4([203, 0, 113, 7], 5555, &[0xEE; 2000]);
        assert!(matches!(parse(&big[..16], MAX), Preamble::Invalid(reason) if reason.contains("limit")));
        let mut bad_version = v2_tcp4([203, 0, 113, 7], 5555, &[]);
        bad_version[12] = 0x11;
        assert!(matches!(parse(&bad_version, MAX), Preamble::Invalid(_)));
    }

    proptest! {
        #[test]
        fn any_bytes_get_an_answer_within_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Preamble::Header { length, .. } = parse(&bytes, MAX) {
                prop_assert!(length <= bytes.len() && length <= MAX);
            }
        }

        #[test]
        fn garbage_after_a_v2_signature_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = v2::PROTOCOL_PREFIX.to_vec();
            bytes.extend(tail);
            if let Preamble::Header { length, .. } = parse(&bytes, MAX) {
                prop_assert!(length <= bytes.len());
            }
        }
    }
}
