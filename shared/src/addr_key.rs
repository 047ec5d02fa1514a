//! The key per-source limits count under. An IPv4 client owns one address,
//! but an IPv6 client is usually handed a whole /64 (or more) and can pick
//! a fresh address from it for every connection; counting by address would
//! give it billions of separate allowances. So IPv6 addresses count by
//! their network prefix.

use std::net::{IpAddr, Ipv6Addr};

/// IPv6 prefix length clients are counted by: the /64 that SLAAC hands
/// every subnet, the smallest block one customer routinely controls.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// The key `ip` is counted under: IPv4 addresses (also IPv4-mapped IPv6
/// ones) as they are, IPv6 addresses with all but their first
/// `ipv6_prefix_len` bits cleared. A length above 128 counts as 128.
pub fn source_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
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
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_key() {
        let key = source_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), DEFAULT_IPV6_PREFIX_LEN);
        assert_eq!(key, ip("2001:db8:1:2::"));
        assert_eq!(source_key(ip("2001:db8:1:2::1"), 64), key);
        assert_ne!(source_key(ip("2001:db8:1:3::1"), 64), key);
    }

    #[test]
    fn ipv4_addresses_are_their_own_key() {
        assert_eq!(source_key(ip("203.0.113.7"), 64), ip("203.0.113.7"));
        assert_eq!(source_key(ip("::ffff:203.0.113.7"), 64), ip("203.0.113.7"));
        assert_eq!(source_key(ip("203.0.113.7"), 0), ip("203.0.113.7"));
    }

    #[test]
    fn prefix_lengths_zero_and_128_mean_everyone_and_each_address() {
        assert_eq!(source_key(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(source_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(source_key(ip("2001:db8::1"), 200), ip("2001:db8::1"));
        assert_eq!(source_key(ip("2001:db8::1"), 48), ip("2001:db8::"));
        assert_eq!(source_key(ip("2001:db8:ffff:ffff::1"), 33), ip("2001:db8:8000::"));
    }

    proptest! {
        #[test]
        fn a_key_is_its_own_key_and_only_keeps_prefix_bits(bits: u128, len in 0u8..=128) {
            let key = source_key(IpAddr::V6(Ipv6Addr::from(bits)), len);
            prop_assert_eq!(source_key(key, len), key);
            if let IpAddr::V6(v6) = key {
                let kept = u128::from(v6);
                prop_assert_eq!(kept & !bits, 0);
                if len < 128 {
                    prop_assert_eq!(kept & (u128::MAX >> len), 0);
                }
            }
        }
    }
}
