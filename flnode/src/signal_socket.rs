//! The one WebSocket to the signalling server, as the signalling client
//! uses it: frames that must go out within [`SEND_TIMEOUT`] (or the
//! connection counts as dead), relay frames batched behind any setup
//! message that waits, and the next server message with relay frames
//! handed to their peers on the way.

use anyhow::{bail, Context};
use flproto::message::ServerMessage;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::relay_link::{RelayRoutes, RELAY_WRITE_BATCH};
use crate::signal_client::SEND_TIMEOUT;

/// The server could not be reached at all (as opposed to refusing us).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unreachable(pub(crate) String);

/// Bytes the kernel may hold unsent on the connection to the server
/// (`TCP_NOTSENT_LOWAT`): relay frames beyond them wait in our queue, where
/// setup messages go first, instead of in the socket buffer ahead of them.
pub const UNSENT_LIMIT: libc::c_int = 64 * 1024;

/// Sets [`UNSENT_LIMIT`] on the connection; where the kernel refuses,
/// relay frames may delay setups by what the socket buffer holds.
pub(crate) fn limit_unsent(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let fd = match socket.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.as_raw_fd(),
        tokio_tungstenite::MaybeTlsStream::Rustls(tls) => tls.get_ref().0.as_raw_fd(),
        _ => return,
    };
    // SAFETY: setsockopt on the connection's own descriptor, with a pointer
    // to an int that lives across the call and its exact size.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&UNSENT_LIMIT as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "TCP_NOTSENT_LOWAT not set");
    }
}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one frame, or fails if it cannot go out within [`SEND_TIMEOUT`]
/// (the path to the server is dead and the socket's buffer full).
pub(crate) async fn send(socket: &mut Socket, message: Message) -> anyhow::Result<()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Unreachable("a frame to the server did not go out".into()).into()),
    }
}

/// Writes relay frames, `first` and what else waits (up to
/// [`RELAY_WRITE_BATCH`]), with one flush; setup messages that wait go
/// first, so relaying never holds up signalling on our side.
pub(crate) async fn send_relay_frames(
    socket: &mut Socket,
    first: bytes::Bytes,
    setups: &mut mpsc::Receiver<String>,
    frames: &mut mpsc::Receiver<bytes::Bytes>,
) -> anyhow::Result<()> {
    let batch = async {
        while let Ok(text) = setups.try_recv() {
            socket.feed(Message::text(text)).await?;
        }
        socket.feed(Message::Binary(first)).await?;
        for _ in 1..RELAY_WRITE_BATCH {
            let Ok(frame) = frames.try_recv() else { break };
            socket.feed(Message::Binary(frame)).await?;
        }
        socket.flush().await
    };
    match tokio::time::timeout(SEND_TIMEOUT, batch).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Unreachable("relay frames to the server did not go out".into()).into()),
    }
}

/// The next server message; every frame, pongs included, counts as a sign
/// of life in `last_heard`. Pings are answered by tungstenite; relay frames
/// go to their peer through `routes`.
pub(crate) async fn next_frame(
    socket: &mut Socket,
    last_heard: &mut Instant,
    routes: &RelayRoutes,
) -> anyhow::Result<ServerMessage> {
    loop {
        let frame = match socket.next().await.context("server closed the connection")? {
            Ok(frame) => frame,
            Err(tokio_tungstenite::tungstenite::Error::Capacity(error)) => {
                bail!("the server sent more than this node takes ({error}); see --max-signal-message")
            }
            Err(error) => return Err(error.into()),
        };
        *last_heard = Instant::now();
        match frame {
            Message::Text(text) => match serde_json::from_str(text.as_str()) {
                Ok(message) => return Ok(message),
                Err(error) => tracing::debug!(%error, "ignoring an unknown server frame"),
            },
            Message::Close(frame) => bail!("server closed the connection: {frame:?}"),
            Message::Binary(frame) => routes.deliver(frame),
            _ => continue,
        }
    }
}
