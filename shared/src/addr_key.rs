//! The key one client address is counted under by per-source limits.
//!
//! An IPv4 address is one key. An IPv6 client usually holds a whole /64
//! (often more), so keying by the full address would let it dodge any
//! per-address limit by changing the interface identifier: IPv6 addresses
//! are keyed by their leading `ipv6_prefix_len` bits instead. IPv4-mapped
//! IPv6 addresses count as the IPv4 address they carry.

use std::net::{IpAddr, Ipv6Addr};

/// Default IPv6 prefix one client is assumed to hold: the /64 every
/// residential or hosting customer is handed at least.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// `ip` with the bits a client can choose freely cleared: an IPv4 address
/// as it is, an IPv6 address cut to its first `ipv6_prefix_len` bits
/// (values over 128 count as 128).
pub fn addr_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let len = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str, len: u8) -> String {
        addr_key(text.parse().unwrap(), len).to_string()
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_a_key() {
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:ffff::9", 64), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:3::1", 64), "2001:db8:1:3::");
        assert_eq!(key("2001:db8:1:2::1", 48), "2001:db8:1::");
        assert_eq!(key("2001:db8::1", 128), "2001:db8::1");
        assert_eq!(key("2001:db8::1", 200), "2001:db8::1");
        assert_eq!(key("2001:db8::1", 0), "::");
    }

    #[test]
    fn ipv4_and_mapped_ipv4_are_the_same_single_address() {
        assert_eq!(key("192.0.2.7", 64), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7", 64), "192.0.2.7");
        assert_ne!(key("192.0.2.7", 64), key("192.0.2.8", 64));
    }
}
