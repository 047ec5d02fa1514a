//! A node's overlay addresses: where other nodes reach it through the
//! WireGuard tunnels flnode manages. Both are derived from the node ID
//! alone, so every node computes every other node's addresses the same way
//! with nothing exchanged and nothing configured: an IPv6 address inside
//! flnode's own unique local /48 ([`ULA_PREFIX`]) and an IPv4 address
//! inside the shared address space 100.64.0.0/10 ([`IPV4_NET`]).
//!
//! The IPv6 address has 80 bits of a hash, so two nodes never share one in
//! practice; the IPv4 address has 22 bits, so in a network of a few hundred
//! nodes two may share one (about 1 % for 300 nodes). flnode detects that
//! and routes the shared IPv4 address to neither node; both stay reachable
//! over IPv6 (docs/protocol.md, "Overlay addresses").

use std::net::{Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

use crate::ids::NodeId;

/// flnode's unique local IPv6 prefix, `fd50:e038:65e7::/48`: `fd` and a
/// 40-bit global ID drawn at random once (RFC 4193, section 3.2), so that
/// it collides with no other network's ULA prefix in practice.
pub const ULA_PREFIX: [u8; 6] = [0xfd, 0x50, 0xe0, 0x38, 0x65, 0xe7];
/// Length of [`ULA_PREFIX`] in bits.
pub const ULA_PREFIX_LEN: u8 = 48;
/// The shared address space of RFC 6598 (also carrier-grade NAT's and
/// Tailscale's), where the IPv4 overlay addresses live.
pub const IPV4_NET: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// Length of [`IPV4_NET`] in bits.
pub const IPV4_NET_LEN: u8 = 10;
/// Domain separation of the hash the addresses come from, so that no
/// other use of SHA-256 over a node ID yields the same bits.
pub const DERIVATION_DOMAIN: &[u8] = b"flnode overlay addresses v1\0";

/// Host addresses inside [`IPV4_NET`]: all but the first and the last.
const IPV4_HOSTS: u32 = (1 << (32 - IPV4_NET_LEN)) - 2;

/// A node's two overlay addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OverlayAddresses {
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl OverlayAddresses {
    /// The addresses of `node`: SHA-256 of [`DERIVATION_DOMAIN`] and the
    /// node ID; its first 80 bits follow [`ULA_PREFIX`], its next 32 pick
    /// one of the [`IPV4_NET`] host addresses (never the network's first
    /// or last address).
    pub fn of(node: &NodeId) -> OverlayAddresses {
        let digest = Sha256::new()
            .chain_update(DERIVATION_DOMAIN)
            .chain_update(node.as_bytes())
            .finalize();
        let mut v6 = [0u8; 16];
        v6[..6].copy_from_slice(&ULA_PREFIX);
        v6[6..].copy_from_slice(&digest[..10]);
        let pick = u32::from_be_bytes([digest[10], digest[11], digest[12], digest[13]]);
        let host = 1 + pick % IPV4_HOSTS;
        OverlayAddresses {
            v4: Ipv4Addr::from(u32::from(IPV4_NET) | host),
            v6: Ipv6Addr::from(v6),
        }
    }
}

impl std::fmt::Display for OverlayAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.v4, self.v6)
    }
}

/// Whether `ip` may be a node's IPv4 overlay address: inside [`IPV4_NET`],
/// and neither its first nor its last address.
pub fn is_overlay_v4(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - IPV4_NET_LEN);
    let host = u32::from(ip) & !mask;
    u32::from(ip) & mask == u32::from(IPV4_NET) && host != 0 && host != !mask
}

/// Whether `ip` may be a node's IPv6 overlay address: inside [`ULA_PREFIX`],
/// and not the prefix's all-zero (subnet-router anycast) address.
pub fn is_overlay_v6(ip: Ipv6Addr) -> bool {
    let octets = ip.octets();
    octets[..6] == ULA_PREFIX && octets[6..].iter().any(|&byte| byte != 0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::identity::NodeKey;

    /// The addresses of the reference key (seed `01`×32), as
    /// docs/protocol.md lists them (computed independently with Python's
    /// hashlib): every implementation must agree.
    #[test]
    fn the_reference_node_has_the_documented_addresses() {
        let addresses = OverlayAddresses::of(&NodeKey::from_seed([1; 32]).id());
        assert_eq!(addresses.v4.to_string(), "100.101.91.115");
        assert_eq!(addresses.v6.to_string(), "fd50:e038:65e7:5115:876:c6e7:6fa9:721f");
    }

    #[test]
    fn the_ranges_exclude_their_edges_and_everything_outside() {
        assert!(is_overlay_v4(Ipv4Addr::new(100, 64, 0, 1)));
        assert!(is_overlay_v4(Ipv4Addr::new(100, 127, 255, 254)));
        for outside in [
            Ipv4Addr::new(100, 64, 0, 0),
            Ipv4Addr::new(100, 127, 255, 255),
            Ipv4Addr::new(100, 128, 0, 1),
            Ipv4Addr::new(100, 63, 255, 254),
            Ipv4Addr::new(10, 0, 0, 1),
        ] {
            assert!(!is_overlay_v4(outside), "{outside}");
        }
        assert!(is_overlay_v6("fd50:e038:65e7::1".parse().unwrap()));
        assert!(!is_overlay_v6("fd50:e038:65e7::".parse().unwrap()));
        assert!(!is_overlay_v6("fd50:e038:65e8::1".parse().unwrap()));
        assert!(!is_overlay_v6("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn distinct_nodes_rarely_share_an_ipv4_address_and_never_an_ipv6_one() {
        // 2000 nodes in 2^22 - 2 addresses: about 0.48 pairs expected to
        // share one (birthday bound n²/2m); more than 4 would mean the
        // derivation is far from uniform.
        let nodes: Vec<OverlayAddresses> = (0..2000u32)
            .map(|n| {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&n.to_le_bytes());
                OverlayAddresses::of(&NodeKey::from_seed(seed).id())
            })
            .collect();
        let v4: HashSet<Ipv4Addr> = nodes.iter().map(|a| a.v4).collect();
        let v6: HashSet<Ipv6Addr> = nodes.iter().map(|a| a.v6).collect();
        assert!(
            nodes.len() - v4.len() <= 4,
            "{} IPv4 collisions",
            nodes.len() - v4.len()
        );
        assert_eq!(v6.len(), nodes.len());
    }

    proptest! {
        #[test]
        fn every_node_id_gets_stable_addresses_inside_the_ranges(id in any::<[u8; 32]>()) {
            let node = NodeId(id);
            let addresses = OverlayAddresses::of(&node);
            prop_assert!(is_overlay_v4(addresses.v4), "{}", addresses.v4);
            prop_assert!(is_overlay_v6(addresses.v6), "{}", addresses.v6);
            prop_assert_eq!(addresses, OverlayAddresses::of(&NodeId(id)));
        }

        #[test]
        fn the_ipv4_host_part_covers_the_range(pick in any::<u32>()) {
            let host = 1 + pick % IPV4_HOSTS;
            prop_assert!(is_overlay_v4(Ipv4Addr::from(u32::from(IPV4_NET) | host)));
        }
    }
}
