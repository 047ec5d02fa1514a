//! The server names a bound (version 4) announce may be signed for, decided
//! once at startup.
//!
//! A bound announce proves that the node meant *this* server only if the
//! name it signed is one that belongs to this server. The Host header is
//! no such proof: a malicious server that relays our challenge to a node
//! can present its own name in Host and log in here as that node. So the
//! list never comes from a request:
//!
//! * with `--public-host`, exactly the names given;
//! * without it, this machine's own names, each with the listening port:
//!   the loopback names (`localhost`, `127.0.0.1`, `[::1]`), the addresses
//!   of its interfaces, its hostname and, for a hostname without a dot,
//!   `hostname.local` (its mDNS name on a LAN). Listening on one specific
//!   address narrows this to that address (and `localhost` if it is a
//!   loopback address), since no other name reaches the listener.
//!
//! The fully qualified name is not looked up: that would ask the resolver,
//! which can stall startup for seconds where DNS is unreachable. A hostname
//! that is already fully qualified counts as is; other public names need
//! `--public-host`, as does any server behind a reverse proxy or TLS
//! terminator (the name and port the node dials are then the proxy's).
//!
//! Only the listening port counts. A node fills in the scheme's default
//! port before signing (`ws://host` is `host:80`), so a listener on port
//! 80 is matched by `ws://host`; `wss://` on 443 always means a TLS proxy
//! in front, hence `--public-host`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use flproto::announce::normalize_authority;

/// What the machine says about itself, read once at startup.
#[derive(Debug, Clone, Default)]
pub struct OwnIdentity {
    /// Addresses of the machine's network interfaces.
    pub interfaces: Vec<IpAddr>,
    /// The kernel's hostname, if it has one.
    pub hostname: Option<String>,
}

impl OwnIdentity {
    /// Reads the interface addresses and the hostname. A failure to read
    /// either leaves it out (and is logged): loopback names still work.
    pub fn read() -> OwnIdentity {
        let interfaces = match nix::ifaddrs::getifaddrs() {
            Ok(addresses) => addresses
                .filter_map(|interface| {
                    let address = interface.address?;
                    if let Some(v4) = address.as_sockaddr_in() {
                        Some(IpAddr::V4(v4.ip()))
                    } else {
                        address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                    }
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list network interfaces; bound announces accept loopback names only");
                Vec::new()
            }
        };
        let hostname = match nix::unistd::gethostname() {
            Ok(name) => name.into_string().ok().filter(|name| !name.is_empty()),
            Err(error) => {
                tracing::warn!(%error, "cannot read the hostname");
                None
            }
        };
        OwnIdentity { interfaces, hostname }
    }
}

/// The accepted server names: `public_hosts` normalised if any are given,
/// else the names of `own` that reach the listener bound at `listen`.
pub fn accepted_names(public_hosts: &[String], listen: SocketAddr, own: &OwnIdentity) -> Vec<String> {
    if !public_hosts.is_empty() {
        return public_hosts
            .iter()
            .map(|host| normalize_authority(host, "ws"))
            .collect();
    }
    let port = listen.port();
    let mut hosts: Vec<String> = Vec::new();
    let ip = listen.ip();
    if ip.is_unspecified() {
        // `0.0.0.0` takes IPv4 only; `::` takes both on Linux by default.
        let takes = |address: &IpAddr| address.is_ipv4() || ip.is_ipv6();
        hosts.push("localhost".into());
        hosts.push(host_literal(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        if ip.is_ipv6() {
            hosts.push(host_literal(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        }
        hosts.extend(
            own.interfaces
                .iter()
                .filter(|address| takes(address) && dialable(address))
                .map(|address| host_literal(*address)),
        );
        if let Some(hostname) = &own.hostname {
            let hostname = hostname.to_ascii_lowercase();
            if !hostname.contains('.') {
                hosts.push(format!("{hostname}.local"));
            }
            hosts.push(hostname);
        }
    } else {
        if ip.is_loopback() {
            hosts.push("localhost".into());
        }
        hosts.push(host_literal(ip));
    }
    let mut names: Vec<String> = Vec::new();
    for host in hosts {
        let name = normalize_authority(&format!("{host}:{port}"), "ws");
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// An address as it stands in a URL's authority: IPv6 in brackets.
fn host_literal(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Whether a URL can name the address without a zone: IPv6 link-local
/// addresses need one (`%eth0`), which nodes do not sign.
fn dialable(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> OwnIdentity {
        OwnIdentity {
            interfaces: vec![
                "127.0.0.1".parse().unwrap(),
                "10.1.2.3".parse().unwrap(),
                "::1".parse().unwrap(),
                "2001:db8::7".parse().unwrap(),
                "fe80::1".parse().unwrap(),
            ],
            hostname: Some("Relay".into()),
        }
    }

    #[test]
    fn public_hosts_are_the_only_names_when_given() {
        let hosts = vec!["Signal.Example:443".to_owned(), "other.example".to_owned()];
        let names = accepted_names(&hosts, "0.0.0.0:8765".parse().unwrap(), &machine());
        assert_eq!(names, vec!["signal.example:443", "other.example:80"]);
    }

    #[test]
    fn a_wildcard_ipv4_listener_accepts_loopback_interfaces_and_hostname_with_its_port() {
        let names = accepted_names(&[], "0.0.0.0:8765".parse().unwrap(), &machine());
        assert_eq!(
            names,
            vec![
                "localhost:8765",
                "127.0.0.1:8765",
                "10.1.2.3:8765",
                "relay.local:8765",
                "relay:8765"
            ]
        );
    }

    #[test]
    fn a_wildcard_ipv6_listener_adds_ipv6_addresses_but_not_link_local_ones() {
        let names = accepted_names(&[], "[::]:80".parse().unwrap(), &machine());
        assert!(names.contains(&"[::1]:80".to_owned()), "{names:?}");
        assert!(names.contains(&"[2001:db8::7]:80".to_owned()), "{names:?}");
        assert!(names.contains(&"10.1.2.3:80".to_owned()), "{names:?}");
        assert!(!names.iter().any(|name| name.contains("fe80")), "{names:?}");
    }

    #[test]
    fn a_specific_address_is_the_only_name_besides_localhost_for_loopback() {
        let names = accepted_names(&[], "10.1.2.3:9000".parse().unwrap(), &machine());
        assert_eq!(names, vec!["10.1.2.3:9000"]);
        let names = accepted_names(&[], "127.0.0.1:9000".parse().unwrap(), &machine());
        assert_eq!(names, vec!["localhost:9000", "127.0.0.1:9000"]);
        let names = accepted_names(&[], "[::1]:9000".parse().unwrap(), &machine());
        assert_eq!(names, vec!["localhost:9000", "[::1]:9000"]);
    }

    #[test]
    fn a_fully_qualified_hostname_gets_no_local_suffix() {
        let own = OwnIdentity {
            interfaces: Vec::new(),
            hostname: Some("signal.example.org".into()),
        };
        let names = accepted_names(&[], "0.0.0.0:8765".parse().unwrap(), &own);
        assert!(names.contains(&"signal.example.org:8765".to_owned()));
        assert!(!names.iter().any(|name| name.ends_with(".local:8765")));
    }

    #[test]
    fn reading_this_machine_finds_at_least_loopback() {
        let own = OwnIdentity::read();
        assert!(own.interfaces.iter().any(IpAddr::is_loopback), "{own:?}");
    }
}
