//! What flnode asks of a WireGuard device, whichever implementation drives
//! it (the kernel over generic netlink, wireguard-go over its control
//! socket): read its state, set its identity, set and remove peers.

use std::net::SocketAddr;
use std::time::SystemTime;

use ipnet::IpNet;

use super::key::{WgKey, WgSecret};

/// Which implementation drives the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Kernel,
    Userspace,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Userspace => "userspace (wireguard-go)",
        }
    }
}

/// Which side of a pair starts WireGuard's handshake (the other must
/// never: two handshakes that cross are both dropped, and WireGuard tries
/// again only after 5 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// This side: the entry names flnode's port for the peer as its
    /// endpoint, with a persistent keepalive of this many seconds.
    Starts { keepalive: u16 },
    /// The peer: the entry has no endpoint, so WireGuard cannot start a
    /// handshake from here; it learns the endpoint from the peer's first
    /// handshake, which can only come through flnode's port for the peer.
    Answers,
}

/// A peer entry as flnode wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub key: WgKey,
    /// flnode's local port for this peer.
    pub endpoint: SocketAddr,
    /// The peer's overlay addresses, as host networks, sorted.
    pub allowed_ips: Vec<IpNet>,
    pub handshake: Handshake,
}

impl PeerConfig {
    /// The endpoint flnode sets on the device, if it sets one.
    pub fn set_endpoint(&self) -> Option<SocketAddr> {
        match self.handshake {
            Handshake::Starts { .. } => Some(self.endpoint),
            Handshake::Answers => None,
        }
    }

    pub fn keepalive(&self) -> Option<u16> {
        match self.handshake {
            Handshake::Starts { keepalive } => Some(keepalive),
            Handshake::Answers => None,
        }
    }

    /// Whether the device's endpoint for the peer is one this entry
    /// allows: flnode's port, or none yet on the answering side.
    pub fn endpoint_fits(&self, endpoint: Option<SocketAddr>) -> bool {
        endpoint == Some(self.endpoint) || (self.handshake == Handshake::Answers && endpoint.is_none())
    }
}

/// A peer entry as the device has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub key: WgKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub keepalive: Option<u16>,
    /// When the last handshake completed; `None` if none has.
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The device's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceView {
    /// The public key of its private key; `None` if it has none.
    pub public_key: Option<WgKey>,
    pub listen_port: u16,
    pub peers: Vec<PeerView>,
}

/// A change to the peer table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOp {
    /// Add the peer, or make its entry exactly this.
    Set(PeerConfig),
    Remove(WgKey),
}

/// Why the device did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the WireGuard device refused the request (errno {0})")]
    Refused(i64),
    #[error("the WireGuard device gave an answer flnode does not understand: {0}")]
    Garbled(String),
    #[error("the WireGuard device did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("netlink: {0}")]
    Netlink(String),
}

/// One WireGuard device.
#[async_trait::async_trait]
pub trait Device: Send + Sync {
    fn backend(&self) -> Backend;

    async fn view(&self) -> Result<DeviceView, DeviceError>;

    /// Sets the private key and listen port (0: the device picks one).
    async fn set_identity(&self, secret: &WgSecret, listen_port: u16) -> Result<(), DeviceError>;

    async fn apply(&self, ops: &[PeerOp]) -> Result<(), DeviceError>;
}
