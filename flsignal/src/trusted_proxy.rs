//! Which peers may say whose connection they carry, and how to read what
//! they say over HTTP (`X-Forwarded-For`). The PROXY protocol, the other
//! way, is in [`crate::proxy_header`].

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The `--trusted-proxy` networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client a request from `peer` (a trusted proxy) was forwarded
    /// for: walking `X-Forwarded-For` from the right, the first address
    /// that is not itself a trusted proxy. Entries left of it were written
    /// by the client and prove nothing. An entry that is not an address
    /// ends the walk at the last address known good; no header at all
    /// means the proxy's own request.
    pub fn forwarded_client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|value| value.to_str().unwrap_or("").rsplit(','));
        for entry in entries {
            if !self.contains(client) {
                break;
            }
            match forwarded_address(entry) {
                Some(ip) => client = ip,
                None => break,
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port
/// (`203.0.113.7:5555`, `[2001:db8::7]:5555`), as some proxies write it.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .map(|ip| ip.to_canonical())
}

/// Parses one `--trusted-proxy` value: a network (`10.0.0.0/8`) or a
/// single address (`127.0.0.1`).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is neither an address nor a network like 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|text| parse_network(text).unwrap()).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(
            trusted.forwarded_client(peer, &forwarded(&["203.0.113.7"])),
            ip("203.0.113.7")
        );
        // The client claimed to be 198.51.100.1; an inner proxy at 10.1.2.3 saw 203.0.113.7.
        let chain = forwarded(&["198.51.100.1, 203.0.113.7, 10.1.2.3"]);
        assert_eq!(trusted.forwarded_client(peer, &chain), ip("203.0.113.7"));
        // Two header lines read as one list.
        let lines = forwarded(&["198.51.100.1", "203.0.113.7"]);
        assert_eq!(trusted.forwarded_client(peer, &lines), ip("203.0.113.7"));
    }

    #[test]
    fn ports_and_brackets_are_understood() {
        let trusted = proxies(&["127.0.0.1"]);
        let peer = ip("127.0.0.1");
        assert_eq!(
            trusted.forwarded_client(peer, &forwarded(&["203.0.113.7:5555"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.forwarded_client(peer, &forwarded(&["[2001:db8::7]:5555"])),
            ip("2001:db8::7")
        );
        assert_eq!(
            trusted.forwarded_client(peer, &forwarded(&[" 2001:db8::8 "])),
            ip("2001:db8::8")
        );
    }

    #[test]
    fn without_a_usable_header_the_proxy_is_the_client() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(trusted.forwarded_client(peer, &HeaderMap::new()), peer);
        assert_eq!(trusted.forwarded_client(peer, &forwarded(&["unknown"])), peer);
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            trusted.forwarded_client(peer, &forwarded(&["203.0.113.7, junk, 10.0.0.5"])),
            ip("10.0.0.5")
        );
        // Everyone in the list is a proxy: the leftmost one is all there is.
        assert_eq!(
            trusted.forwarded_client(peer, &forwarded(&["10.0.0.9, 10.0.0.5"])),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn networks_and_single_addresses_parse_and_mapped_peers_match() {
        let trusted = proxies(&["10.1.2.3/8", "::1", "2001:db8::/32"]);
        assert_eq!(trusted.0[0].to_string(), "10.0.0.0/8");
        assert!(trusted.contains(ip("10.200.0.1")));
        assert!(trusted.contains(ip("::ffff:10.0.0.1")));
        assert!(trusted.contains(ip("::1")));
        assert!(trusted.contains(ip("2001:db8:ff::1")));
        assert!(!trusted.contains(ip("127.0.0.1")));
        assert!(parse_network("nonsense").is_err());
        assert!(parse_network("10.0.0.0/33").is_err());
    }

    proptest! {
        #[test]
        fn any_header_yields_the_peer_or_an_address_written_in_it(value in "[0-9a-f.:, \\[\\]]{0,80}") {
            let trusted = proxies(&["127.0.0.1"]);
            let Ok(header) = HeaderValue::from_str(&value) else { return Ok(()) };
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", header);
            let client = trusted.forwarded_client(ip("127.0.0.1"), &headers);
            prop_assert!(client == ip("127.0.0.1") || value.split(',').any(|entry| forwarded_address(entry) == Some(client)));
        }
    }
}
