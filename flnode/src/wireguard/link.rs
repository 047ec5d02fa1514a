//! The network interface under the WireGuard device, whichever backend
//! drives it, through rtnetlink (as `ip` does): find it and tell what it
//! is, create a kernel WireGuard link, set MTU, addresses and state, keep
//! the host routes to peers' overlay addresses, delete it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flproto::overlay::{is_overlay_v4, is_overlay_v6, OverlayAddresses};
use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteProtocol, RouteType};
use rtnetlink::{Handle, LinkUnspec, LinkWireguard, RouteMessageBuilder};

/// What an interface of a given name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A kernel WireGuard link.
    WireGuard,
    /// A TUN device, such as wireguard-go's.
    Tun,
    /// Anything else, by its kind (`veth`, `dummy`, …; empty if none).
    Other(String),
}

/// An interface found by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLink {
    pub index: u32,
    pub kind: LinkKind,
}

/// Why creating a kernel WireGuard link failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("no permission to create network interfaces")]
    Permission,
    #[error("the kernel has no WireGuard support")]
    Unsupported,
    #[error("{0}")]
    Other(rtnetlink::Error),
}

/// An rtnetlink connection.
#[derive(Clone)]
pub struct Links {
    handle: Handle,
}

impl Links {
    pub fn connect() -> std::io::Result<Links> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Links { handle })
    }

    /// The interface called `name`, if there is one.
    pub async fn find(&self, name: &str) -> Result<Option<FoundLink>, rtnetlink::Error> {
        let mut links = self.handle.link().get().match_name(name.to_owned()).execute();
        let link = match links.try_next().await {
            Ok(link) => link,
            // No such device.
            Err(rtnetlink::Error::NetlinkError(error)) if error.raw_code().abs() == nix::libc::ENODEV => None,
            Err(error) => return Err(error),
        };
        Ok(link.map(|link| {
            let kind = link.attributes.iter().find_map(|attribute| match attribute {
                LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
                    LinkInfo::Kind(kind) => Some(kind.clone()),
                    _ => None,
                }),
                _ => None,
            });
            FoundLink {
                index: link.header.index,
                kind: match kind {
                    Some(InfoKind::Wireguard) => LinkKind::WireGuard,
                    Some(InfoKind::Tun) => LinkKind::Tun,
                    Some(other) => LinkKind::Other(other.to_string()),
                    None => LinkKind::Other(String::new()),
                },
            }
        }))
    }

    /// Creates a kernel WireGuard link called `name` (`ip link add NAME
    /// type wireguard`); returns its index.
    pub async fn create_wireguard(&self, name: &str) -> Result<u32, CreateError> {
        let created = self.handle.link().add(LinkWireguard::new(name).build()).execute().await;
        match created {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(error)) => {
                return Err(match error.raw_code().abs() {
                    nix::libc::EPERM | nix::libc::EACCES => CreateError::Permission,
                    nix::libc::EOPNOTSUPP | nix::libc::EINVAL | nix::libc::ENOENT => CreateError::Unsupported,
                    _ => CreateError::Other(rtnetlink::Error::NetlinkError(error)),
                })
            }
            Err(error) => return Err(CreateError::Other(error)),
        }
        match self.find(name).await {
            Ok(Some(link)) => Ok(link.index),
            Ok(None) => Err(CreateError::Other(rtnetlink::Error::RequestFailed)),
            Err(error) => Err(CreateError::Other(error)),
        }
    }

    pub async fn delete(&self, index: u32) -> Result<(), rtnetlink::Error> {
        self.handle.link().del(index).execute().await
    }

    /// Sets the MTU, gives the interface exactly `own` among overlay
    /// addresses (as host addresses: routes to peers come one by one) and
    /// brings it up.
    pub async fn configure(&self, index: u32, mtu: u32, own: OverlayAddresses) -> Result<(), rtnetlink::Error> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await?;
        let wanted = [IpAddr::V4(own.v4), IpAddr::V6(own.v6)];
        let mut addresses = self.handle.address().get().set_link_index_filter(index).execute();
        let mut stale = Vec::new();
        while let Some(message) = addresses.try_next().await? {
            let address = message.attributes.iter().find_map(|attribute| match attribute {
                AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            // Overlay addresses of an earlier run with another --address.
            if address.is_some_and(|ip| is_overlay(ip) && !wanted.contains(&ip)) {
                stale.push(message);
            }
        }
        for message in stale {
            self.handle.address().del(message).execute().await?;
        }
        for ip in wanted {
            let host = if ip.is_ipv4() { 32 } else { 128 };
            self.handle.address().add(index, ip, host).replace().execute().await?;
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
    }

    /// The host routes to overlay addresses through the interface: the
    /// ones flnode manages.
    pub async fn overlay_routes(&self, index: u32) -> Result<Vec<IpNet>, rtnetlink::Error> {
        let mut routes = Vec::new();
        let families = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for family in families {
            let mut messages = self.handle.route().get(family).execute();
            while let Some(route) = messages.try_next().await? {
                // Static unicast routes in the main table only: the
                // kernel's own (the local table's route to this node's
                // address, IPv6's route to its own /128) are not flnode's.
                let through_us = route.header.table == RouteHeader::RT_TABLE_MAIN
                    && route.header.kind == RouteType::Unicast
                    && route.header.protocol == RouteProtocol::Static
                    && route.attributes.contains(&RouteAttribute::Oif(index));
                let destination = route.attributes.iter().find_map(|attribute| match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
                    RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
                    _ => None,
                });
                let Some(destination) = destination.filter(|ip| through_us && is_overlay(*ip)) else {
                    continue;
                };
                if let Ok(net) = IpNet::new(destination, route.header.destination_prefix_length) {
                    if net.prefix_len() == net.max_prefix_len() {
                        routes.push(net);
                    }
                }
            }
        }
        Ok(routes)
    }

    /// A host route to `net` through the interface, from this node's own
    /// overlay address of that family.
    pub async fn add_route(&self, index: u32, net: IpNet, own: OverlayAddresses) -> Result<(), rtnetlink::Error> {
        let source = match net {
            IpNet::V4(_) => IpAddr::V4(own.v4),
            IpNet::V6(_) => IpAddr::V6(own.v6),
        };
        let message = route_message(index, net, Some(source))?;
        self.handle.route().add(message).replace().execute().await
    }

    /// Removes the host route to `net`, whatever source it names; one
    /// that is gone already is fine.
    pub async fn remove_route(&self, index: u32, net: IpNet) -> Result<(), rtnetlink::Error> {
        let message = route_message(index, net, None)?;
        match self.handle.route().del(message).execute().await {
            Err(rtnetlink::Error::NetlinkError(error)) if error.raw_code().abs() == nix::libc::ESRCH => Ok(()),
            done => done,
        }
    }
}

fn route_message(
    index: u32,
    net: IpNet,
    source: Option<IpAddr>,
) -> Result<rtnetlink::packet_route::route::RouteMessage, rtnetlink::Error> {
    fn invalid(error: impl std::fmt::Display) -> rtnetlink::Error {
        rtnetlink::Error::InvalidNla(error.to_string())
    }
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(net.addr(), net.prefix_len())
        .map_err(invalid)?;
    if let Some(source) = source {
        builder = builder.pref_source(source).map_err(invalid)?;
    }
    Ok(builder.output_interface(index).protocol(RouteProtocol::Static).build())
}

fn is_overlay(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_overlay_v4(v4),
        IpAddr::V6(v6) => is_overlay_v6(v6),
    }
}
