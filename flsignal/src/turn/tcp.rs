//! TURN over TCP and over TLS (`--turn-tcp-listen`, `--turn-tls-listen`),
//! for clients on networks that let no UDP out: browsers (WebRTC's TURN
//! over TCP and TLS), other TURN clients. flnode's WebRTC stack speaks TURN
//! over UDP only. The relays themselves are UDP, as for every client.
//!
//! One task per connection reads frames ([`super::framing`]) into the
//! state; what the state sends a client waits in a short queue its writer
//! drains. A connection that holds no allocation for
//! [`HANDSHAKE_TIMEOUT`] is closed; when the connection ends, so does its
//! allocation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::config::HANDSHAKE_TIMEOUT;
use super::framing::Framer;
use super::service::TurnService;
use super::sink::{ClientAddr, Transport};

/// Frames waiting to be written to one connection; more are dropped (as
/// a UDP socket's full buffer would drop them).
pub const WRITE_QUEUE: usize = 256;
/// Bytes asked of the socket per read.
pub const READ_CHUNK: usize = 16 * 1024;

/// Accepts connections on `listener` until shutdown, at most
/// `max_connections` at once (TCP and TLS listeners share them); with
/// `tls`, each starts with a TLS handshake.
pub async fn serve(
    listener: TcpListener,
    service: Arc<TurnService>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Semaphore>,
) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = service.shutdown().cancelled() => return,
        };
        let Ok((stream, remote)) = accepted else {
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            service.metrics().refused("tcp_connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = ClientAddr {
            transport: Transport::Tcp,
            local,
            addr: remote,
        };
        let (service, tls) = (service.clone(), tls.clone());
        tokio::spawn(async move {
            run(stream, client, &service, tls).await;
            service.tcp_closed(client);
            drop(permit);
        });
    }
}

async fn run(stream: TcpStream, client: ClientAddr, service: &Arc<TurnService>, tls: Option<TlsAcceptor>) {
    match tls {
        None => carry(stream, client, service).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => carry(stream, client, service).await,
            _ => service.metrics().refused("tls_handshake"),
        },
    }
}

/// Carries one connection's frames both ways until it ends.
async fn carry<S: AsyncRead + AsyncWrite>(stream: S, client: ClientAddr, service: &Arc<TurnService>) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (outgoing, mut queued) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    service.tcp_opened(client, outgoing);
    let write = async {
        while let Some(frame) = queued.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let read = async {
        let mut framer = Framer::default();
        let mut buffer = vec![0u8; READ_CHUNK];
        // Since when the client has held no allocation.
        let mut unallocated_since = Instant::now();
        let mut check = tokio::time::interval(HANDSHAKE_TIMEOUT / 4);
        loop {
            let read = tokio::select! {
                read = reader.read(&mut buffer) => read,
                _ = check.tick() => {
                    if service.is_allocated(&client) {
                        unallocated_since = Instant::now();
                    } else if unallocated_since.elapsed() >= HANDSHAKE_TIMEOUT {
                        return;
                    }
                    continue;
                }
                () = service.shutdown().cancelled() => return,
            };
            let len = match read {
                Ok(0) | Err(_) => return,
                Ok(len) => len,
            };
            framer.push(&buffer[..len]);
            loop {
                match framer.next_frame() {
                    Ok(Some(frame)) => service.on_stream_frame(client, &frame),
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = write => {}
    }
}

/// Binds a TURN stream listener; a port in use is a one-line error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
