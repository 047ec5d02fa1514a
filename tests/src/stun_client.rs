//! A plain STUN client for tests: one Binding Request over a UDP socket,
//! built and read with `rtc-stun` (the codec the WebRTC stack uses).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use rtc_stun::message::{Getter, Message, TransactionId, BINDING_REQUEST, BINDING_SUCCESS};
use rtc_stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;

/// The bytes of a fresh Binding Request and its transaction ID.
pub fn binding_request() -> anyhow::Result<(TransactionId, Vec<u8>)> {
    let id = TransactionId::new();
    let mut message = Message::new();
    message.build(&[Box::new(id), Box::new(BINDING_REQUEST)])?;
    Ok((id, message.raw))
}

/// Sends a Binding Request from `socket` to `server` and returns the
/// XOR-MAPPED-ADDRESS of the answer, or `None` if none came within `wait`.
/// Anything received that is not the answer is an error.
pub async fn mapped_address(
    socket: &UdpSocket,
    server: SocketAddr,
    wait: Duration,
) -> anyhow::Result<Option<SocketAddr>> {
    let (id, request) = binding_request()?;
    socket.send_to(&request, server).await?;
    let mut buffer = [0u8; 1500];
    let Ok(received) = tokio::time::timeout(wait, socket.recv_from(&mut buffer)).await else {
        return Ok(None);
    };
    let (len, from) = received?;
    anyhow::ensure!(from == server, "answer from {from}, not {server}");
    let mut message = Message::new();
    message.raw = buffer[..len].to_vec();
    message.decode().context("the answer is not STUN")?;
    if message.typ != BINDING_SUCCESS || message.transaction_id != id {
        bail!("not the answer to our request: {message}");
    }
    let mut address = XorMappedAddress::default();
    address.get_from(&message).context("no XOR-MAPPED-ADDRESS")?;
    Ok(Some(SocketAddr::new(address.ip, address.port)))
}
