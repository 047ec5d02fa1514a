//! What the TURN state asks of the sockets ([`Sink`]), and how it names a
//! client ([`ClientAddr`]).

use std::net::SocketAddr;

use turn_server_proto::api::SocketAllocateError;
use turn_server_proto::types::{AddressFamily, TransportType};

/// How a client reaches the TURN service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn proto(self) -> TransportType {
        match self {
            Transport::Udp => TransportType::Udp,
            Transport::Tcp => TransportType::Tcp,
        }
    }
}

/// A client of the TURN service: its transport, the service's address it
/// reached (a listening socket), and its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr {
    pub transport: Transport,
    pub local: SocketAddr,
    pub addr: SocketAddr,
}

/// What the state asks of the sockets.
pub trait Sink {
    /// Sends `data` to a client from the listening socket (or connection).
    fn to_client(&mut self, client: ClientAddr, data: &[u8]);
    /// Sends `data` to a peer from relay socket `relay`.
    fn to_peer(&mut self, relay: SocketAddr, peer: SocketAddr, data: &[u8]);
    /// Binds a relay socket of `family`; its address as peers see it.
    fn bind_relay(&mut self, family: AddressFamily) -> Result<SocketAddr, SocketAllocateError>;
    /// Closes the relay socket at `relay`.
    fn close_relay(&mut self, relay: SocketAddr);
}
