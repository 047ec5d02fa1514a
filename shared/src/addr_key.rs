//! Which addresses count as one source for per-source limits.
//!
//! An IPv4 address is one subscriber at most (many, behind a NAT). An IPv6
//! subscriber usually gets a whole /64 or more and can pick any address in
//! it, so keying limits by the full address would hand one host 2^64
//! budgets; they are keyed by prefix instead.

use std::net::{IpAddr, Ipv6Addr};

/// Leading bits of an IPv6 address that name one source: a /64 is the
/// smallest prefix an end site is normally given.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// The key of `address` for per-source limits: an IPv4 address (also one
/// seen as v4-mapped IPv6) as is, an IPv6 address cut to its first
/// `ipv6_prefix_len` bits (at most 128).
pub fn addr_key(address: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match address.to_canonical() {
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
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_addresses_are_their_own_key_also_when_v4_mapped() {
        assert_eq!(addr_key(ip("192.0.2.1"), 64), ip("192.0.2.1"));
        assert_eq!(addr_key(ip("::ffff:192.0.2.1"), 64), ip("192.0.2.1"));
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_a_key() {
        assert_eq!(addr_key(ip("2001:db8:1:2:aaaa::1"), 64), ip("2001:db8:1:2::"));
        assert_eq!(
            addr_key(ip("2001:db8:1:2:ffff::9"), DEFAULT_IPV6_PREFIX_LEN),
            addr_key(ip("2001:db8:1:2::5"), DEFAULT_IPV6_PREFIX_LEN)
        );
        assert_ne!(addr_key(ip("2001:db8:1:3::1"), 64), addr_key(ip("2001:db8:1:2::1"), 64));
        assert_eq!(addr_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(addr_key(ip("2001:db8::1"), 200), ip("2001:db8::1"));
        assert_eq!(addr_key(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(addr_key(ip("2001:db8:ffff::1"), 33), ip("2001:db8:8000::"));
    }

    proptest! {
        #[test]
        fn a_key_is_its_own_key(bits: u128, len in 0u8..=128) {
            let key = addr_key(IpAddr::V6(Ipv6Addr::from(bits)), len);
            prop_assert_eq!(addr_key(key, len), key);
        }
    }
}
