//! Which of the two ways flnode carries WireGuard a node runs in, from its
//! `--peer` entries: bare node IDs are the managed mode (flnode creates and
//! configures the WireGuard interface), `ID=ADDR` entries the manual mode
//! (the user's own WireGuard sends to local ports of flnode). Mixing them,
//! or giving one mode's settings to the other, is a one-line error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use flproto::overlay::{is_overlay_v4, is_overlay_v6};
use flproto::NodeId;
use serde::Deserialize;

use crate::allow_list::{AllowedPeer, PeerArg, PeerName};
use crate::wireguard::{BackendChoice, InterfaceName};

/// WireGuard's usual listen address (manual mode).
pub const DEFAULT_WIREGUARD: &str = "127.0.0.1:51820";
/// How long a managed peer that went offline keeps its WireGuard entry
/// (and its tunnel state) before it is removed: longer than a restart or
/// a change of network takes, so that those do not churn the table.
pub const DEFAULT_PEER_GRACE: Duration = Duration::from_secs(60);
/// Longest `--peer-grace`: an entry for a peer that is gone for good
/// should not linger for days.
pub const MAX_PEER_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How the node carries WireGuard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tunnel {
    /// The user's own WireGuard at `wireguard`; each peer's datagrams come
    /// and go through a local port of flnode that WireGuard's peer entry
    /// names as its endpoint.
    Manual {
        wireguard: SocketAddr,
        peers: Vec<(NodeId, SocketAddr)>,
    },
    /// flnode's own WireGuard interface.
    Managed(ManagedSettings),
}

/// The managed interface and who may have an entry on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedSettings {
    pub peers: Vec<AllowedPeer>,
    pub interface: InterfaceName,
    pub backend: BackendChoice,
    pub addresses: AddressOverride,
    pub keep_interface: bool,
    pub peer_grace: Duration,
}

/// `--address`: this node's overlay addresses instead of the derived ones,
/// each family on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressOverride {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl AddressOverride {
    /// One IPv4 and one IPv6 address at most, each inside its overlay
    /// range: peers refuse anything else.
    pub fn parse(texts: &[String]) -> anyhow::Result<AddressOverride> {
        let mut addresses = AddressOverride::default();
        for text in texts {
            let ip: IpAddr = text
                .trim()
                .parse()
                .with_context(|| format!("--address {text:?}: expected an IPv4 or IPv6 address"))?;
            match ip {
                IpAddr::V4(v4) if !is_overlay_v4(v4) => {
                    bail!("--address {v4}: IPv4 overlay addresses lie in 100.64.0.0/10 (not its first or last address)")
                }
                IpAddr::V6(v6) if !is_overlay_v6(v6) => {
                    bail!("--address {v6}: IPv6 overlay addresses lie in fd50:e038:65e7::/48")
                }
                IpAddr::V4(_) if addresses.v4.is_some() => bail!("--address: give at most one IPv4 address"),
                IpAddr::V6(_) if addresses.v6.is_some() => bail!("--address: give at most one IPv6 address"),
                IpAddr::V4(v4) => addresses.v4 = Some(v4),
                IpAddr::V6(v6) => addresses.v6 = Some(v6),
            }
        }
        Ok(addresses)
    }
}

/// A `peers` entry in flnode.toml: a string as on the command line, or a
/// table with a name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FilePeer {
    Text(String),
    Named {
        id: String,
        #[serde(default)]
        name: Option<String>,
    },
}

/// What the managed mode's settings were given as (flags and environment
/// merged by clap, or the file), before they are checked.
#[derive(Debug, Default)]
pub struct TunnelInputs {
    pub peers: Vec<FilePeer>,
    pub wireguard: Option<SocketAddr>,
    pub interface: Option<String>,
    pub backend: Option<BackendChoice>,
    pub addresses: Vec<String>,
    pub keep_interface: bool,
    pub peer_grace: Option<Duration>,
}

/// Decides the mode from the peer entries and checks that every other
/// setting belongs to it.
pub fn resolve(inputs: TunnelInputs) -> anyhow::Result<Tunnel> {
    if inputs.peers.is_empty() {
        bail!(
            "no peers: give --peer ID (managed: flnode sets up WireGuard) or --peer ID=127.0.0.1:PORT \
             (your own WireGuard); the ID comes from `flnode id` on the other machine"
        );
    }
    let mut managed = Vec::new();
    let mut manual = Vec::new();
    for peer in &inputs.peers {
        match peer {
            FilePeer::Text(text) => match PeerArg::parse(text).with_context(|| format!("--peer {text:?}"))? {
                PeerArg::Managed(id) => managed.push(AllowedPeer { id, name: None }),
                PeerArg::Manual(id, addr) => manual.push((id, addr)),
            },
            FilePeer::Named { id, name } => managed.push(AllowedPeer {
                id: crate::allow_list::parse_peer_id(id).with_context(|| format!("peer {id:?}"))?,
                name: name.as_deref().map(PeerName::parse).transpose()?,
            }),
        }
    }
    if !managed.is_empty() && !manual.is_empty() {
        bail!(
            "--peer: either bare node IDs (flnode manages WireGuard) or ID=ADDR entries (your own WireGuard), not both"
        );
    }
    if !manual.is_empty() {
        let managed_only = [
            ("--wg-interface", inputs.interface.is_some()),
            ("--wg-backend", inputs.backend.is_some()),
            ("--address", !inputs.addresses.is_empty()),
            ("--keep-interface", inputs.keep_interface),
            ("--peer-grace", inputs.peer_grace.is_some()),
        ];
        if let Some((flag, _)) = managed_only.iter().find(|(_, given)| *given) {
            bail!("{flag} is for managed mode (--peer ID); with ID=ADDR peers WireGuard is yours to configure");
        }
        let wireguard = match inputs.wireguard {
            Some(addr) => addr,
            None => DEFAULT_WIREGUARD.parse()?,
        };
        return Ok(Tunnel::Manual {
            wireguard,
            peers: manual,
        });
    }
    if let Some(wireguard) = inputs.wireguard {
        bail!(
            "--wireguard {wireguard} is for manual mode (--peer ID=ADDR); in managed mode flnode runs WireGuard itself"
        );
    }
    let peer_grace = inputs.peer_grace.unwrap_or(DEFAULT_PEER_GRACE);
    if peer_grace > MAX_PEER_GRACE {
        bail!("--peer-grace {peer_grace:?}: at most {MAX_PEER_GRACE:?}");
    }
    Ok(Tunnel::Managed(ManagedSettings {
        peers: managed,
        interface: match inputs.interface {
            Some(name) => InterfaceName::parse(&name).context("--wg-interface")?,
            None => InterfaceName::default(),
        },
        backend: inputs.backend.unwrap_or_default(),
        addresses: AddressOverride::parse(&inputs.addresses)?,
        keep_interface: inputs.keep_interface,
        peer_grace,
    }))
}

#[cfg(test)]
mod tests {
    use flproto::identity::NodeKey;

    use super::*;

    fn id(seed: u8) -> String {
        NodeKey::from_seed([seed; 32]).id().to_string()
    }

    fn inputs(peers: &[String]) -> TunnelInputs {
        TunnelInputs {
            peers: peers.iter().cloned().map(FilePeer::Text).collect(),
            ..TunnelInputs::default()
        }
    }

    fn error(inputs: TunnelInputs) -> String {
        format!("{:#}", resolve(inputs).unwrap_err())
    }

    #[test]
    fn bare_ids_mean_managed_mode_with_its_defaults() {
        let Tunnel::Managed(managed) = resolve(inputs(&[id(2), id(3)])).unwrap() else {
            panic!("bare IDs are managed mode");
        };
        assert_eq!(managed.peers.len(), 2);
        assert_eq!(managed.interface.as_str(), "flnode0");
        assert_eq!(managed.backend, BackendChoice::Auto);
        assert_eq!(managed.addresses, AddressOverride::default());
        assert!(!managed.keep_interface);
        assert_eq!(managed.peer_grace, DEFAULT_PEER_GRACE);
    }

    #[test]
    fn id_equals_addr_means_manual_mode_as_before() {
        let tunnel = resolve(inputs(&[format!("{}=127.0.0.1:51900", id(2))])).unwrap();
        let Tunnel::Manual { wireguard, peers } = tunnel else {
            panic!("ID=ADDR is manual mode");
        };
        assert_eq!(wireguard, DEFAULT_WIREGUARD.parse::<SocketAddr>().unwrap());
        assert_eq!(peers[0].1.port(), 51900);
    }

    #[test]
    fn named_file_entries_are_managed() {
        let peers = vec![
            FilePeer::Named {
                id: id(2),
                name: Some("laptop".into()),
            },
            FilePeer::Text(id(3)),
        ];
        let Tunnel::Managed(managed) = resolve(TunnelInputs {
            peers,
            ..TunnelInputs::default()
        })
        .unwrap() else {
            panic!("managed");
        };
        assert_eq!(managed.peers[0].name.as_ref().unwrap().as_str(), "laptop");
        assert_eq!(managed.peers[1].name, None);
    }

    #[test]
    fn mixing_modes_or_their_settings_is_a_one_line_error() {
        let mixed = error(inputs(&[id(2), format!("{}=127.0.0.1:1", id(3))]));
        assert!(mixed.contains("not both"), "{mixed}");
        let manual = format!("{}=127.0.0.1:1", id(3));
        for (inputs, flag) in [
            (
                TunnelInputs {
                    interface: Some("wg0".into()),
                    ..inputs(std::slice::from_ref(&manual))
                },
                "--wg-interface",
            ),
            (
                TunnelInputs {
                    keep_interface: true,
                    ..inputs(std::slice::from_ref(&manual))
                },
                "--keep-interface",
            ),
            (
                TunnelInputs {
                    wireguard: Some("127.0.0.1:1".parse().unwrap()),
                    ..inputs(&[id(2)])
                },
                "--wireguard",
            ),
        ] {
            let error = error(inputs);
            assert!(error.starts_with(flag) && !error.contains('\n'), "{error}");
        }
        let no_peers = error(inputs(&[]));
        assert!(no_peers.starts_with("no peers"), "{no_peers}");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let not_an_id = error(inputs(&["laptop".into()]));
        assert!(not_an_id.contains("is not a node ID"), "{not_an_id}");
        let bad_name = error(TunnelInputs {
            peers: vec![FilePeer::Named {
                id: id(2),
                name: Some("two words".into()),
            }],
            ..TunnelInputs::default()
        });
        assert!(bad_name.contains("peer name"), "{bad_name}");
        let bad_interface = error(TunnelInputs {
            interface: Some("a/b".into()),
            ..inputs(&[id(2)])
        });
        assert!(bad_interface.contains("interface name"), "{bad_interface}");
        let grace = error(TunnelInputs {
            peer_grace: Some(MAX_PEER_GRACE * 2),
            ..inputs(&[id(2)])
        });
        assert!(grace.starts_with("--peer-grace"), "{grace}");
    }

    #[test]
    fn address_overrides_stay_inside_the_overlay_ranges() {
        let parse = |texts: &[&str]| AddressOverride::parse(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        let both = parse(&["100.100.1.2", "fd50:e038:65e7::7"]).unwrap();
        assert_eq!(both.v4, Some(Ipv4Addr::new(100, 100, 1, 2)));
        assert_eq!(both.v6, Some("fd50:e038:65e7::7".parse().unwrap()));
        for (bad, says) in [
            (&["10.0.0.1"][..], "100.64.0.0/10"),
            (&["100.64.0.0"], "100.64.0.0/10"),
            (&["fd00::1"], "fd50:e038:65e7::/48"),
            (&["100.64.0.1", "100.64.0.2"], "at most one IPv4"),
            (&["nonsense"], "expected an IPv4 or IPv6"),
        ] {
            let error = format!("{:#}", parse(bad).unwrap_err());
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}
