//! Watches the machine's addresses through netlink (kernel events, not
//! polling), so that a node that moves to another network restarts its
//! connections at once instead of waiting for them to time out.
//!
//! The kernel tells of every address added or removed; [`classify`] keeps
//! those that can carry a WebRTC path (not loopback, not IPv6 link-local)
//! and the watcher folds a burst of them (a DHCP renewal removes one
//! address and adds another within milliseconds) into one
//! [`NetworkChange`] after [`SETTLE`].

use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

/// How long a burst of address events may last before it is reported.
pub const SETTLE: Duration = Duration::from_millis(50);

/// One address appeared or went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressEvent {
    Added(IpAddr),
    Removed(IpAddr),
}

/// A settled burst of address events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkChange {
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
}

/// The address event in a netlink message, if it is one that matters.
pub fn classify(message: &RouteNetlinkMessage) -> Option<AddressEvent> {
    let (address, added) = match message {
        RouteNetlinkMessage::NewAddress(address) => (address, true),
        RouteNetlinkMessage::DelAddress(address) => (address, false),
        _ => return None,
    };
    let ip = address_of(address)?;
    if !usable(ip) {
        return None;
    }
    Some(if added {
        AddressEvent::Added(ip)
    } else {
        AddressEvent::Removed(ip)
    })
}

/// The interface's own address: `Local` on point-to-point links, else
/// `Address`.
fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    let local = message.attributes.iter().find_map(|attribute| match attribute {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        message.attributes.iter().find_map(|attribute| match attribute {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// Whether ICE could use this address for a path to another machine.
pub fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// Whether the event is about an address of a tunnel (a WireGuard
/// interface, flnode's own managed one included): those carry no path to
/// another machine, and flnode setting its overlay addresses must not look
/// like a change of network.
fn on_tunnel(message: &RouteNetlinkMessage) -> bool {
    let (RouteNetlinkMessage::NewAddress(address) | RouteNetlinkMessage::DelAddress(address)) = message else {
        return false;
    };
    nix::net::if_::if_indextoname(address.header.index)
        .ok()
        .and_then(|name| name.into_string().ok())
        .is_some_and(|name| crate::host_addresses::is_tunnel(&name))
}

/// Starts watching; settled changes arrive on the returned channel. Fails
/// where netlink is not available (then the node relies on its keepalives).
pub fn watch() -> std::io::Result<mpsc::Receiver<NetworkChange>> {
    let (connection, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Ipv4Ifaddr, MulticastGroup::Ipv6Ifaddr])?;
    tokio::spawn(connection);
    let (changes_tx, changes) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut change = NetworkChange::default();
        loop {
            let next = if change == NetworkChange::default() {
                messages.next().await
            } else {
                match tokio::time::timeout(SETTLE, messages.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        if changes_tx.send(std::mem::take(&mut change)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            };
            let Some((message, _)) = next else {
                return;
            };
            if let NetlinkPayload::InnerMessage(inner) = message.payload {
                if on_tunnel(&inner) {
                    continue;
                }
                match classify(&inner) {
                    Some(AddressEvent::Added(ip)) => change.added.push(ip),
                    Some(AddressEvent::Removed(ip)) => change.removed.push(ip),
                    None => {}
                }
            }
        }
    });
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attributes: Vec<AddressAttribute>) -> AddressMessage {
        let mut message = AddressMessage::default();
        message.attributes = attributes;
        message
    }

    #[test]
    fn new_and_deleted_addresses_are_events() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let new = RouteNetlinkMessage::NewAddress(message(vec![AddressAttribute::Address(ip)]));
        let del = RouteNetlinkMessage::DelAddress(message(vec![AddressAttribute::Address(ip)]));
        assert_eq!(classify(&new), Some(AddressEvent::Added(ip)));
        assert_eq!(classify(&del), Some(AddressEvent::Removed(ip)));
    }

    #[test]
    fn the_local_address_wins_on_point_to_point_links() {
        let local: IpAddr = "10.0.0.1".parse().unwrap();
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let new = RouteNetlinkMessage::NewAddress(message(vec![
            AddressAttribute::Address(peer),
            AddressAttribute::Local(local),
        ]));
        assert_eq!(classify(&new), Some(AddressEvent::Added(local)));
    }

    #[test]
    fn loopback_link_local_and_other_messages_are_not_events() {
        for ip in ["127.0.0.1", "::1", "fe80::1", "0.0.0.0"] {
            let ip: IpAddr = ip.parse().unwrap();
            let new = RouteNetlinkMessage::NewAddress(message(vec![AddressAttribute::Address(ip)]));
            assert_eq!(classify(&new), None, "{ip}");
        }
        assert_eq!(classify(&RouteNetlinkMessage::NewAddress(message(vec![]))), None);
        let link = RouteNetlinkMessage::NewLink(Default::default());
        assert_eq!(classify(&link), None);
    }

    #[test]
    fn global_ipv6_is_usable() {
        assert!(usable("2001:db8::1".parse().unwrap()));
        assert!(usable("fd00::1".parse().unwrap()));
    }
}
