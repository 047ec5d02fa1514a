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

/// A peer entry as flnode wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub key: WgKey,
    /// flnode's local port for this peer.
    pub endpoint: SocketAddr,
    /// The peer's overlay addresses, as host networks, sorted.
    pub allowed_ips: Vec<IpNet>,
    /// Persistent keepalive in seconds.
    pub keepalive: Option<u16>,
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
