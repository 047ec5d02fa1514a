//! flnode's UDP sockets: bound with kernel buffers large enough for bursts.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::udp_batch::BatchSocket;

/// Kernel buffer size for flnode's UDP sockets (the WireGuard-facing ones
/// and those the WebRTC stack opens): the default 208 KiB drops bursts
/// even on loopback.
pub const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Binds a UDP socket with [`UDP_BUFFER_BYTES`] of kernel buffers each way,
/// read and written in batches.
pub fn bind(local: SocketAddr) -> anyhow::Result<BatchSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    Ok(BatchSocket::new(UdpSocket::from_std(socket.into())?)?)
}
