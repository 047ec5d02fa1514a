//! The Linux kernel's WireGuard, configured over generic netlink (the
//! `wireguard` family, as `wg` does): messages from
//! `netlink-packet-wireguard`, sent through `genetlink`, which resolves
//! the family. Building and reading the messages is pure and tested; the
//! machines this project is tested on have no WireGuard module, so the
//! exchange itself runs only where the kernel has one.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use genetlink::GenetlinkHandle;
use ipnet::IpNet;
use netlink_packet_generic::GenlMessage;
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute, WireguardCmd,
    WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use tokio::sync::Mutex;

use super::device::{Backend, Device, DeviceError, DeviceView, PeerOp, PeerView};
use super::key::{WgKey, WgSecret};

/// Peers changed by one netlink message: the kernel takes a message of at
/// most a page or so more easily than one of any size.
pub const PEERS_PER_MESSAGE: usize = 16;
/// How long one netlink exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A kernel WireGuard interface.
pub struct KernelDevice {
    index: u32,
    handle: Mutex<GenetlinkHandle>,
}

impl KernelDevice {
    /// Opens a generic netlink connection for the interface with `index`.
    pub fn connect(index: u32) -> std::io::Result<KernelDevice> {
        let (connection, handle, _) = genetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(KernelDevice {
            index,
            handle: Mutex::new(handle),
        })
    }

    async fn exchange(&self, message: WireguardMessage, flags: u16) -> Result<Vec<WireguardMessage>, DeviceError> {
        let mut request = NetlinkMessage::from(GenlMessage::from_payload(message));
        request.header.flags = flags;
        let exchange = async {
            let mut handle = self.handle.lock().await;
            let mut answers = handle
                .request(request)
                .await
                .map_err(|error| DeviceError::Netlink(error.to_string()))?;
            let mut messages = Vec::new();
            while let Some(answer) = answers.next().await {
                let answer = answer.map_err(|error| DeviceError::Netlink(error.to_string()))?;
                match answer.payload {
                    NetlinkPayload::InnerMessage(genl) => messages.push(genl.payload),
                    NetlinkPayload::Error(error) if error.code.is_some() => return Err(DeviceError::Io(error.to_io())),
                    _ => {}
                }
            }
            Ok(messages)
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| DeviceError::Timeout(TIMEOUT))?
    }
}

#[async_trait::async_trait]
impl Device for KernelDevice {
    fn backend(&self) -> Backend {
        Backend::Kernel
    }

    async fn view(&self) -> Result<DeviceView, DeviceError> {
        let request = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::IfIndex(self.index)],
        };
        let answers = self.exchange(request, NLM_F_REQUEST | NLM_F_DUMP).await?;
        Ok(view_of(&answers))
    }

    async fn set_identity(&self, secret: &WgSecret, listen_port: u16) -> Result<(), DeviceError> {
        self.exchange(
            identity_message(self.index, secret, listen_port),
            NLM_F_REQUEST | NLM_F_ACK,
        )
        .await
        .map(drop)
    }

    async fn apply(&self, ops: &[PeerOp]) -> Result<(), DeviceError> {
        for message in peer_messages(self.index, ops) {
            self.exchange(message, NLM_F_REQUEST | NLM_F_ACK).await?;
        }
        Ok(())
    }
}

fn identity_message(index: u32, secret: &WgSecret, listen_port: u16) -> WireguardMessage {
    WireguardMessage {
        cmd: WireguardCmd::SetDevice,
        attributes: vec![
            WireguardAttribute::IfIndex(index),
            WireguardAttribute::PrivateKey(secret.0),
            WireguardAttribute::ListenPort(listen_port),
        ],
    }
}

/// The changes as `SetDevice` messages of [`PEERS_PER_MESSAGE`] peers each.
fn peer_messages(index: u32, ops: &[PeerOp]) -> Vec<WireguardMessage> {
    ops.chunks(PEERS_PER_MESSAGE)
        .map(|chunk| WireguardMessage {
            cmd: WireguardCmd::SetDevice,
            attributes: vec![
                WireguardAttribute::IfIndex(index),
                WireguardAttribute::Peers(chunk.iter().map(peer_attributes).collect()),
            ],
        })
        .collect()
}

fn peer_attributes(op: &PeerOp) -> WireguardPeer {
    match op {
        PeerOp::Set(peer) => {
            let mut attributes = vec![WireguardPeerAttribute::PublicKey(peer.key.0)];
            attributes.extend(peer.set_endpoint().map(WireguardPeerAttribute::Endpoint));
            attributes.extend([
                WireguardPeerAttribute::PersistentKeepalive(peer.keepalive().unwrap_or(0)),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
                WireguardPeerAttribute::AllowedIps(peer.allowed_ips.iter().map(allowed_ip).collect()),
            ]);
            WireguardPeer(attributes)
        }
        PeerOp::Remove(key) => WireguardPeer(vec![
            WireguardPeerAttribute::PublicKey(key.0),
            WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
        ]),
    }
}

fn allowed_ip(net: &IpNet) -> WireguardAllowedIp {
    let family = match net.addr() {
        IpAddr::V4(_) => WireguardAddressFamily::Ipv4,
        IpAddr::V6(_) => WireguardAddressFamily::Ipv6,
    };
    WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(family),
        WireguardAllowedIpAttr::IpAddr(net.addr()),
        WireguardAllowedIpAttr::Cidr(net.prefix_len()),
    ])
}

/// The device as a dump describes it; a large peer table arrives in
/// several messages, each repeating the device and naming some peers
/// (a peer's allowed IPs may continue in the next message).
fn view_of(messages: &[WireguardMessage]) -> DeviceView {
    let mut view = DeviceView::default();
    for attribute in messages.iter().flat_map(|message| &message.attributes) {
        match attribute {
            WireguardAttribute::PublicKey(key) if *key != [0; 32] => view.public_key = Some(WgKey(*key)),
            WireguardAttribute::ListenPort(port) => view.listen_port = *port,
            WireguardAttribute::Peers(peers) => {
                for peer in peers {
                    merge_peer(&mut view.peers, peer);
                }
            }
            _ => {}
        }
    }
    for peer in &mut view.peers {
        peer.allowed_ips.sort();
    }
    view
}

fn merge_peer(peers: &mut Vec<PeerView>, attributes: &WireguardPeer) {
    let Some(key) = attributes.0.iter().find_map(|attribute| match attribute {
        WireguardPeerAttribute::PublicKey(key) => Some(WgKey(*key)),
        _ => None,
    }) else {
        return;
    };
    let at = match peers.iter().position(|peer| peer.key == key) {
        Some(at) => at,
        None => {
            peers.push(PeerView {
                key,
                endpoint: None,
                allowed_ips: Vec::new(),
                keepalive: None,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            });
            peers.len() - 1
        }
    };
    let peer = &mut peers[at];
    for attribute in &attributes.0 {
        match attribute {
            WireguardPeerAttribute::Endpoint(endpoint) => peer.endpoint = Some(*endpoint),
            WireguardPeerAttribute::PersistentKeepalive(seconds) => {
                peer.keepalive = (*seconds != 0).then_some(*seconds)
            }
            WireguardPeerAttribute::LastHandshake(time) if time.seconds > 0 || time.nano_seconds > 0 => {
                peer.last_handshake = SystemTime::UNIX_EPOCH.checked_add(Duration::new(
                    time.seconds.max(0) as u64,
                    time.nano_seconds.clamp(0, 999_999_999) as u32,
                ));
            }
            WireguardPeerAttribute::RxBytes(bytes) => peer.rx_bytes = *bytes,
            WireguardPeerAttribute::TxBytes(bytes) => peer.tx_bytes = *bytes,
            WireguardPeerAttribute::AllowedIps(ips) => peer.allowed_ips.extend(ips.iter().filter_map(net_of)),
            _ => {}
        }
    }
}

fn net_of(allowed: &WireguardAllowedIp) -> Option<IpNet> {
    let address = allowed.0.iter().find_map(|attribute| match attribute {
        WireguardAllowedIpAttr::IpAddr(ip) => Some(*ip),
        _ => None,
    })?;
    let prefix = allowed.0.iter().find_map(|attribute| match attribute {
        WireguardAllowedIpAttr::Cidr(prefix) => Some(*prefix),
        _ => None,
    })?;
    IpNet::new(address, prefix).ok()
}

#[cfg(test)]
mod tests {
    use netlink_packet_wireguard::WireguardTimeSpec;

    use super::super::device::{Handshake, PeerConfig};
    use super::*;

    fn config(byte: u8) -> PeerConfig {
        PeerConfig {
            key: WgKey([byte; 32]),
            endpoint: "127.0.0.1:40000".parse().unwrap(),
            allowed_ips: vec![
                "100.64.0.7/32".parse().unwrap(),
                "fd50:e038:65e7::7/128".parse().unwrap(),
            ],
            handshake: Handshake::Starts { keepalive: 25 },
        }
    }

    #[test]
    fn peer_changes_become_set_device_messages_in_chunks() {
        let ops: Vec<PeerOp> = (0..PEERS_PER_MESSAGE as u8 + 1)
            .map(|byte| PeerOp::Set(config(byte)))
            .chain([PeerOp::Remove(WgKey([0xbb; 32]))])
            .collect();
        let messages = peer_messages(7, &ops);
        assert_eq!(messages.len(), 2);
        assert!(messages
            .iter()
            .all(|message| message.cmd == WireguardCmd::SetDevice
                && message.attributes[0] == WireguardAttribute::IfIndex(7)));
        let WireguardAttribute::Peers(last) = &messages[1].attributes[1] else {
            panic!("peers");
        };
        assert_eq!(
            last[1],
            WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey([0xbb; 32]),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
            ])
        );
        assert!(last[0]
            .0
            .contains(&WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps)));
    }

    #[test]
    fn a_dump_reads_back_as_the_entries_it_set() {
        let WireguardPeer(mut attributes) = peer_attributes(&PeerOp::Set(config(1)));
        attributes.push(WireguardPeerAttribute::RxBytes(5));
        attributes.push(WireguardPeerAttribute::LastHandshake(WireguardTimeSpec {
            seconds: 1_700_000_000,
            nano_seconds: 0,
        }));
        // The same peer continued in a second message, as a dump may split it.
        let more = WireguardPeer(vec![
            WireguardPeerAttribute::PublicKey([1; 32]),
            WireguardPeerAttribute::AllowedIps(vec![allowed_ip(&"100.64.0.8/32".parse().unwrap())]),
        ]);
        let messages = [
            WireguardMessage {
                cmd: WireguardCmd::GetDevice,
                attributes: vec![
                    WireguardAttribute::PublicKey([9; 32]),
                    WireguardAttribute::ListenPort(51820),
                    WireguardAttribute::Peers(vec![WireguardPeer(attributes)]),
                ],
            },
            WireguardMessage {
                cmd: WireguardCmd::GetDevice,
                attributes: vec![WireguardAttribute::Peers(vec![more])],
            },
        ];
        let view = view_of(&messages);
        assert_eq!(view.public_key, Some(WgKey([9; 32])));
        assert_eq!(view.listen_port, 51820);
        assert_eq!(view.peers.len(), 1);
        let peer = &view.peers[0];
        assert_eq!(peer.endpoint, Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(peer.keepalive, Some(25));
        assert_eq!(peer.rx_bytes, 5);
        assert!(peer.last_handshake.is_some());
        assert_eq!(peer.allowed_ips.len(), 3);
    }

    #[test]
    fn a_device_without_a_key_shows_none() {
        let message = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::PublicKey([0; 32])],
        };
        assert_eq!(view_of(&[message]).public_key, None);
    }
}
