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
/// Late answers to earlier requests on the same socket are skipped (a
/// readiness loop that timed out once would otherwise read each request's
/// predecessor's answer for ever); anything else received is an error.
pub async fn mapped_address(
    socket: &UdpSocket,
    server: SocketAddr,
    wait: Duration,
) -> anyhow::Result<Option<SocketAddr>> {
    let (id, request) = binding_request()?;
    socket.send_to(&request, server).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut buffer = [0u8; 1500];
    loop {
        let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await else {
            return Ok(None);
        };
        let (len, from) = received?;
        anyhow::ensure!(from == server, "answer from {from}, not {server}");
        let mut message = Message::new();
        message.raw = buffer[..len].to_vec();
        message.decode().context("the answer is not STUN")?;
        if message.typ == BINDING_SUCCESS && message.transaction_id != id {
            continue;
        }
        if message.typ != BINDING_SUCCESS {
            bail!("not the answer to our request: {message}");
        }
        let mut address = XorMappedAddress::default();
        address.get_from(&message).context("no XOR-MAPPED-ADDRESS")?;
        return Ok(Some(SocketAddr::new(address.ip, address.port)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding Success for `request`, mapping to `to`.
    fn answer(request: &[u8], to: SocketAddr) -> Vec<u8> {
        let mut asked = Message::new();
        asked.raw = request.to_vec();
        asked.decode().unwrap();
        let mut message = Message::new();
        let mapped = XorMappedAddress {
            ip: to.ip(),
            port: to.port(),
        };
        message
            .build(&[
                Box::new(asked.transaction_id),
                Box::new(BINDING_SUCCESS),
                Box::new(mapped),
            ])
            .unwrap();
        message.raw
    }

    #[tokio::test]
    async fn a_late_answer_to_an_earlier_request_is_skipped() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (server_addr, me) = (server.local_addr().unwrap(), client.local_addr().unwrap());
        // The first request gets no answer in time...
        assert_eq!(
            mapped_address(&client, server_addr, Duration::from_millis(50))
                .await
                .unwrap(),
            None
        );
        // ...and its answer arrives just before the second one's.
        let responder = tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            let (len, _) = server.recv_from(&mut buffer).await.unwrap();
            let first = buffer[..len].to_vec();
            let (len, _) = server.recv_from(&mut buffer).await.unwrap();
            let second = buffer[..len].to_vec();
            server.send_to(&answer(&first, me), me).await.unwrap();
            server.send_to(&answer(&second, me), me).await.unwrap();
        });
        assert_eq!(
            mapped_address(&client, server_addr, crate::PATIENCE).await.unwrap(),
            Some(me)
        );
        responder.await.unwrap();
    }
}
