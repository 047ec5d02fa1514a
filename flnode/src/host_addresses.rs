//! The local addresses ICE may gather host candidates on.
//!
//! Everything that is up, except loopback, link-local, and tunnels: a
//! WireGuard interface (kernel `wireguard`, or the TUN device wireguard-go
//! drives) holds the overlay addresses that flnode itself carries. A path
//! through the tunnel would work only while the tunnel works over another
//! path; if ICE picked it, for instance while a handover still kept the old
//! connection alive, the tunnel would collapse as soon as that old path
//! went. webrtc 0.21 has no interface filter of its own, so flnode binds
//! the addresses it chose explicitly.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

use crate::netwatch::usable;

/// Where the PeerConnection binds its UDP sockets: one ephemeral port on
/// each usable address, or the wildcard when there is none (the connection
/// can still come up over a relay).
pub fn bind_addresses() -> Vec<String> {
    let chosen: Vec<String> = usable_addresses()
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 0).to_string())
        .collect();
    if chosen.is_empty() {
        vec!["0.0.0.0:0".to_owned()]
    } else {
        chosen
    }
}

fn usable_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = getifaddrs() else {
        return Vec::new();
    };
    let mut addresses = Vec::new();
    for interface in interfaces {
        if !interface.flags.contains(InterfaceFlags::IFF_UP) || interface.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        let Some(address) = interface.address else {
            continue;
        };
        let ip = if let Some(v4) = address.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = address.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !usable(ip) || is_link_local_v4(ip) || is_tunnel(&interface.interface_name) || addresses.contains(&ip) {
            continue;
        }
        addresses.push(ip);
    }
    addresses
}

fn is_link_local_v4(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_link_local())
}

/// A TUN device (it has `tun_flags`) or a kernel WireGuard link.
pub fn is_tunnel(name: &str) -> bool {
    if name.contains('/') || name.starts_with('.') {
        return false;
    }
    let dir = Path::new("/sys/class/net").join(name);
    dir.join("tun_flags").exists()
        || std::fs::read_to_string(dir.join("uevent"))
            .is_ok_and(|uevent| uevent.lines().any(|l| l == "DEVTYPE=wireguard"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_never_chosen_and_something_is_always_bound() {
        let chosen = bind_addresses();
        assert!(!chosen.is_empty());
        assert!(chosen
            .iter()
            .all(|addr| !addr.starts_with("127.") && !addr.starts_with("[::1]")));
    }

    #[test]
    fn odd_interface_names_are_not_paths() {
        assert!(!is_tunnel("../etc"));
        assert!(!is_tunnel("no-such-interface-here"));
    }
}
