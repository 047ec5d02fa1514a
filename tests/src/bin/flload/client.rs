//! One load-generating node: connect from a chosen loopback source address,
//! answer the challenge with a signed fledger-v3 Announce, wait for the node
//! list (or, with `--protocol matchbox`, wait for the id matchbox assigns,
//! see [`crate::matchbox`]). Every byte the server sends to any of these
//! sockets is counted.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{bail, Context};
use flproto::announce::{sign_announce, AnnounceAuth};
use flproto::identity::NodeKey;
use flproto::message::{NodeMessage, ServerMessage};
use flproto::NodeInfo;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::args::{Args, Protocol};
use crate::matchbox;

/// Longest a single join may take before it counts as failed.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes a client socket reads at a time. tungstenite's default (128 KiB)
/// would cost a lot of memory with 15 000 sockets in one process; longer
/// messages still arrive whole, in several reads.
const READ_BUFFER: usize = 8 * 1024;

/// Bytes received by all client sockets of this process, WebSocket framing
/// and the HTTP upgrade answer included: what the server sent.
static RECEIVED: AtomicU64 = AtomicU64::new(0);

pub fn bytes_received() -> u64 {
    RECEIVED.load(Ordering::Relaxed)
}

/// A TCP stream that adds what it reads to [`RECEIVED`].
pub struct CountedStream(TcpStream);

impl AsyncRead for CountedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.0).poll_read(cx, buf);
        RECEIVED.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        result
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

pub type Socket = tokio_tungstenite::WebSocketStream<CountedStream>;

/// Where to connect and how to announce; shared by every join of a run.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub server: SocketAddr,
    pub list_request: bool,
    pub protocol: Protocol,
}

impl Target {
    pub async fn new(url: &str, args: &Args) -> anyhow::Result<Target> {
        Ok(Target {
            url: url.to_owned(),
            server: resolve(url).await?,
            list_request: args.list_request,
            protocol: args.protocol,
        })
    }
}

/// 127.0.0.1 … 127.0.0.K: each source address has its own 28 000
/// ephemeral ports towards the server.
pub fn sources(count: u8) -> Vec<IpAddr> {
    (1..=count.max(1))
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect()
}

/// Connects from `source` with a new key, announces, waits for the node
/// list; for matchbox, joins a room of its own and waits for its id.
pub async fn join(target: &Target, source: IpAddr) -> anyhow::Result<Socket> {
    match target.protocol {
        Protocol::Fledger => join_as(target, source, &NodeKey::generate()).await,
        Protocol::Matchbox => Ok(matchbox::join_own_room(target, source).await?.0),
    }
}

/// [`join`] with a given key, failing after [`JOIN_TIMEOUT`].
pub async fn join_as(target: &Target, source: IpAddr, key: &NodeKey) -> anyhow::Result<Socket> {
    tokio::time::timeout(JOIN_TIMEOUT, join_unbounded(target, source, key, false))
        .await
        .context("join timed out")?
}

/// Joins as our own nodes do, with a bound (version-4) announce that asks
/// for the datagram relay; fails if the server does not grant it.
pub async fn join_relaying(target: &Target, source: IpAddr, key: &NodeKey) -> anyhow::Result<Socket> {
    tokio::time::timeout(JOIN_TIMEOUT, join_unbounded(target, source, key, true))
        .await
        .context("join timed out")?
}

/// Connects from `source` to `url` (on `target`'s server) and upgrades.
pub async fn connect(target: &Target, source: IpAddr, url: &str) -> anyhow::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(target.server).await.context("connect")?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, CountedStream(stream), Some(config))
        .await
        .context("upgrade")?;
    Ok(ws)
}

async fn join_unbounded(target: &Target, source: IpAddr, key: &NodeKey, relay: bool) -> anyhow::Result<Socket> {
    let mut ws = connect(target, source, &target.url).await?;
    let challenge = match next_text(&mut ws).await? {
        text if text.starts_with(r#"{"Challenge""#) => match serde_json::from_str(&text)? {
            ServerMessage::Challenge(_, challenge) => challenge,
            other => bail!("expected challenge, got {other:?}"),
        },
        other => bail!("expected challenge, got {other}"),
    };
    let info = NodeInfo::v3("flload", "flload", key.id(), "");
    let auth = match relay {
        false => AnnounceAuth::Fledger,
        true => AnnounceAuth::Bound {
            server: flproto::announce::authority_of_url(&target.url).context("bad URL")?,
        },
    };
    let mut announce = sign_announce(key, challenge, info, &auth);
    announce.relay = relay;
    ws.feed(Message::text(NodeMessage::Announce(announce).to_json()))
        .await?;
    if target.list_request {
        ws.feed(Message::text(NodeMessage::ListIDsRequest.to_json())).await?;
    }
    ws.flush().await?;
    // SystemConfig comes first; the list may be ours, or (fledger) another
    // node's join pushed to us: either way the server has registered us.
    loop {
        let text = next_text(&mut ws).await?;
        if text.starts_with(r#"{"ListIDsReply""#) {
            return Ok(ws);
        }
        if text.starts_with(r#"{"Error""#) || text.starts_with(r#"{"Relay":{"Refused""#) {
            bail!("server refused: {text}");
        }
    }
}

/// The next text frame, skipping pings.
pub async fn next_text(ws: &mut Socket) -> anyhow::Result<String> {
    loop {
        match ws.next().await.context("closed")?? {
            Message::Text(text) => return Ok(text.to_string()),
            Message::Close(frame) => bail!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Keeps reading (and counting) so pings are answered and news does not
/// pile up at the server, until the returned handle is aborted.
pub fn hold(mut ws: Socket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

/// The socket address of a `ws://` URL.
pub async fn resolve(url: &str) -> anyhow::Result<SocketAddr> {
    let authority = flproto::announce::authority_of_url(url).context("bad URL")?;
    let addr = tokio::net::lookup_host(&authority)
        .await?
        .next()
        .context("cannot resolve")?;
    Ok(addr)
}
