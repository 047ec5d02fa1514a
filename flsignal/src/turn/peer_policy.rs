//! Where the TURN service relays to: peers on the public internet only.
//!
//! A TURN server relays from its own addresses, inside whatever network it
//! stands in; without a policy a client could reach the server's loopback
//! services (its metrics, a database), its LAN, or other hosts' private
//! networks through it. So private, loopback, link-local, shared (CGNAT),
//! documentation, benchmarking, multicast and reserved ranges (the
//! special-purpose registries of RFC 6890, both families) and the server's
//! own addresses are refused as peers unless an operator allows a network
//! with `--turn-allow-peer`. IPv4 addresses inside IPv6 ones (mapped,
//! NAT64) are judged as the IPv4 address they reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why a peer address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{0} is a special-purpose address (private, loopback, link-local, reserved…)")]
    SpecialPurpose(IpAddr),
    #[error("{0} is this server's own address")]
    OwnAddress(IpAddr),
}

/// IPv4 networks that are not on the public internet (RFC 6890 and
/// successors).
const DENIED_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 networks that are not on the public internet. Mapped and NAT64
/// addresses are not here: they are judged by their IPv4 address.
const DENIED_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::UNSPECIFIED, 128),
    (Ipv6Addr::LOCALHOST, 128),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
    (Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0), 48),
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// The relay's rules, fixed at startup.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// `--turn-allow-peer`: allowed whatever else they are.
    allowed: Vec<IpNet>,
    /// The server's own addresses (interfaces, listen and relay addresses).
    own: Vec<IpAddr>,
}

impl PeerPolicy {
    pub fn new(allowed: Vec<IpNet>, own: Vec<IpAddr>) -> PeerPolicy {
        let own = own.into_iter().map(canonical).collect();
        PeerPolicy { allowed, own }
    }

    /// Whether the relay may send to `peer`.
    pub fn check(&self, peer: IpAddr) -> Result<(), Denied> {
        let judged = canonical(peer);
        if self
            .allowed
            .iter()
            .any(|net| net.contains(&peer) || net.contains(&judged))
        {
            return Ok(());
        }
        if self.own.contains(&judged) {
            return Err(Denied::OwnAddress(peer));
        }
        if is_special_purpose(judged) {
            return Err(Denied::SpecialPurpose(peer));
        }
        Ok(())
    }
}

/// The address a packet to `ip` reaches: the IPv4 address inside an
/// IPv4-mapped or NAT64 (64:ff9b::/96) IPv6 address, else `ip`.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let nat64 = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
    if nat64.contains(&v6) {
        let [.., a, b, c, d] = v6.octets();
        return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    }
    ip
}

fn is_special_purpose(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => DENIED_V4
            .iter()
            .any(|&(net, len)| Ipv4Net::new_assert(net, len).contains(&v4)),
        IpAddr::V6(v6) => DENIED_V6
            .iter()
            .any(|&(net, len)| Ipv6Net::new_assert(net, len).contains(&v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn public_addresses_are_relayed_to() {
        let policy = PeerPolicy::default();
        for peer in [
            "8.8.8.8",
            "1.1.1.1",
            "198.51.99.1",
            "2a00:1450:4001::1",
            "2001:4860::8888",
        ] {
            assert_eq!(policy.check(ip(peer)), Ok(()), "{peer}");
        }
    }

    #[test]
    fn special_purpose_addresses_are_refused() {
        let policy = PeerPolicy::default();
        for peer in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.2.7",
            "198.51.100.2",
            "203.0.113.10",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert_eq!(policy.check(ip(peer)), Err(Denied::SpecialPurpose(ip(peer))), "{peer}");
        }
        // Mapped and NAT64 forms of public addresses are public.
        assert_eq!(policy.check(ip("::ffff:8.8.8.8")), Ok(()));
        assert_eq!(policy.check(ip("64:ff9b::808:808")), Ok(()));
    }

    #[test]
    fn the_servers_own_addresses_are_refused_in_every_form() {
        let policy = PeerPolicy::new(Vec::new(), vec![ip("93.184.216.34"), ip("2a00:1::5")]);
        for peer in [
            "93.184.216.34",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2a00:1::5",
        ] {
            assert_eq!(policy.check(ip(peer)), Err(Denied::OwnAddress(ip(peer))), "{peer}");
        }
        assert_eq!(policy.check(ip("93.184.216.35")), Ok(()));
    }

    #[test]
    fn allowed_networks_win() {
        let policy = PeerPolicy::new(
            vec!["198.51.100.0/24".parse().unwrap(), "127.0.0.1/32".parse().unwrap()],
            vec![ip("198.51.100.1")],
        );
        assert_eq!(policy.check(ip("198.51.100.6")), Ok(()));
        assert_eq!(policy.check(ip("198.51.100.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert!(policy.check(ip("127.0.0.2")).is_err());
        assert!(policy.check(ip("192.168.20.2")).is_err());
    }
}
