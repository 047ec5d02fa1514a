//! The node's side of flsignal: connect, authenticate, follow presence,
//! send and receive setup messages, and reconnect with backoff when the
//! server goes away. A signalling outage never touches established data
//! channels: peers only lose the ability to set up new ones meanwhile.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use flproto::announce::{authority_of_url, sign_announce, AnnounceAuth};
use flproto::identity::NodeKey;
use flproto::message::{NodeMessage, PeerInfo, ServerMessage};
use flproto::{NodeId, NodeInfo};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::reconnect::{Reconnect, SessionEnd};

/// Time the server has to answer each step of the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Setup messages waiting to go out; beyond this new ones are dropped
/// (peers retry their setup).
pub const OUTGOING_QUEUE: usize = 256;

/// What the signalling connection tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalEvent {
    /// Registered (again): these nodes are known to be online.
    Online(Vec<NodeId>),
    /// Presence news: joined and left nodes.
    Presence { joined: Vec<NodeId>, left: Vec<NodeId> },
    /// A setup message from another node.
    Setup(PeerInfo),
    /// A setup message could not be delivered: the node is offline.
    NotConnected(NodeId),
    /// The connection to the server is gone; reconnecting.
    Disconnected,
}

/// How the node authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Our bound, domain-separated announce (version 4).
    Bound,
    /// fledger's plain version-3 announce, for fledger servers.
    FledgerCompat,
}

/// Sends setup messages through the current signalling connection.
#[derive(Clone)]
pub struct SignalSender {
    outgoing: mpsc::Sender<String>,
    addresses_gone: mpsc::Sender<Vec<IpAddr>>,
}

impl SignalSender {
    /// Queues a (signed) setup message; dropped while disconnected or when
    /// [`OUTGOING_QUEUE`] is full (peers retry their setup).
    pub fn send(&self, info: PeerInfo) {
        let _ = self.outgoing.try_send(NodeMessage::PeerSetup(info).to_json());
    }

    /// Tells the client that these local addresses are gone: a connection
    /// from one of them is dead, even if TCP has not noticed yet, so it
    /// reconnects at once.
    pub fn addresses_gone(&self, removed: Vec<IpAddr>) {
        let _ = self.addresses_gone.try_send(removed);
    }
}

/// The outcome of the very first connection: a node that cannot reach its
/// server at start-up is misconfigured, not in an outage.
pub type FirstRegistration = oneshot::Receiver<anyhow::Result<()>>;

/// Starts the signalling task; events arrive on `events`.
pub fn spawn(
    url: String,
    key: Arc<NodeKey>,
    mode: AuthMode,
    name: String,
    events: mpsc::Sender<SignalEvent>,
) -> (SignalSender, FirstRegistration) {
    let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    let (addresses_gone, addresses_gone_rx) = mpsc::channel(4);
    let (first_tx, first_rx) = oneshot::channel();
    let sender = SignalSender {
        outgoing,
        addresses_gone,
    };
    let client = Client {
        url,
        key,
        mode,
        name,
        events,
        first: Some(first_tx),
        addresses_gone: addresses_gone_rx,
    };
    tokio::spawn(client.run(outgoing_rx));
    (sender, first_rx)
}

struct Client {
    url: String,
    key: Arc<NodeKey>,
    mode: AuthMode,
    name: String,
    events: mpsc::Sender<SignalEvent>,
    /// Told the outcome of the first connection, then `None`.
    first: Option<oneshot::Sender<anyhow::Result<()>>>,
    addresses_gone: mpsc::Receiver<Vec<IpAddr>>,
}

impl Client {
    async fn run(mut self, mut outgoing: mpsc::Receiver<String>) {
        let mut reconnect = Reconnect::default();
        loop {
            let mut registered = false;
            let result = self.session(&mut outgoing, &mut registered).await;
            let end = match &result {
                Err(error) if error.is::<LocalAddressGone>() => SessionEnd::LocalAddressGone,
                _ if registered => SessionEnd::AfterRegistering,
                Err(error) if error.is::<Unreachable>() => SessionEnd::Unreachable,
                _ => SessionEnd::Refused,
            };
            if let Err(error) = result {
                if let Some(first) = self.first.take() {
                    let _ = first.send(Err(error));
                    return;
                }
                tracing::warn!(url = %self.url, "signalling: {error:#}");
            }
            if self.events.send(SignalEvent::Disconnected).await.is_err() {
                return;
            }
            // Drop what was queued for the old connection: peers resend.
            while outgoing.try_recv().is_ok() {}
            let wait = jittered(reconnect.after(end));
            tracing::info!(?wait, "reconnecting to the signalling server");
            tokio::time::sleep(wait).await;
        }
    }

    /// One connection, until it ends; `registered` tells whether it got as
    /// far as registering.
    async fn session(&mut self, outgoing: &mut mpsc::Receiver<String>, registered: &mut bool) -> anyhow::Result<()> {
        let url = self.url.clone();
        let url = url.as_str();
        let (mut socket, _) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(url)).await
        {
            Err(_) => return Err(Unreachable("connect timed out".into()).into()),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Io(error))) => {
                return Err(Unreachable(format!("cannot connect: {error}")).into())
            }
            Ok(Err(error)) => return Err(anyhow::Error::new(error).context("cannot connect")),
            Ok(Ok(connected)) => connected,
        };
        let local_ip = match socket.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().ok().map(|local| local.ip()),
            _ => None,
        };
        let challenge = match next_frame(&mut socket).await? {
            ServerMessage::Challenge(_, challenge) => challenge,
            other => bail!("expected a challenge, got {other:?}"),
        };
        let auth = match self.mode {
            AuthMode::FledgerCompat => AnnounceAuth::Fledger,
            AuthMode::Bound => AnnounceAuth::Bound {
                server: authority_of_url(url).context("signal URL has no host")?,
            },
        };
        let info = NodeInfo::v3(&self.name, "flnode", self.key.id(), "");
        let announce = sign_announce(&self.key, challenge, info, &auth);
        socket
            .send(Message::text(NodeMessage::Announce(announce).to_json()))
            .await?;
        loop {
            tokio::select! {
                frame = next_frame(&mut socket) => {
                    let event = match frame? {
                        ServerMessage::ListIDsReply(list) => {
                            *registered = true;
                            if let Some(first) = self.first.take() {
                                let _ = first.send(Ok(()));
                            }
                            SignalEvent::Online(ids(&list))
                        }
                        ServerMessage::PresenceNews(news) => SignalEvent::Presence {
                            joined: ids(&news.joined),
                            left: news.left,
                        },
                        ServerMessage::PeerSetup(setup) => SignalEvent::Setup(setup),
                        ServerMessage::NotConnected(id) => SignalEvent::NotConnected(id),
                        ServerMessage::Error(text) if !*registered => bail!("server refused us: {text}"),
                        ServerMessage::Error(text) => {
                            tracing::warn!("signalling server: {text}");
                            continue;
                        }
                        ServerMessage::SystemConfig(_) | ServerMessage::Challenge(..) => continue,
                    };
                    if self.events.send(event).await.is_err() {
                        return Ok(());
                    }
                }
                Some(text) = outgoing.recv(), if *registered => {
                    socket.send(Message::text(text)).await?;
                }
                Some(removed) = self.addresses_gone.recv() => {
                    if let Some(ip) = local_ip.filter(|ip| removed.contains(ip)) {
                        return Err(LocalAddressGone(ip).into());
                    }
                }
            }
        }
    }
}

/// The server could not be reached at all (as opposed to refusing us).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unreachable(String);

/// The address our connection was made from is gone.
#[derive(Debug, thiserror::Error)]
#[error("local address {0} went away")]
struct LocalAddressGone(IpAddr);

/// Between half and all of `backoff`, so that many nodes cut off together
/// do not come back together.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

fn ids(list: &[NodeInfo]) -> Vec<NodeId> {
    list.iter()
        .filter_map(|info| match info {
            NodeInfo::NodeInfoV3(v3) => Some(v3.pubkey),
            _ => None,
        })
        .collect()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next server frame; pings are answered by tungstenite.
async fn next_frame(socket: &mut Socket) -> anyhow::Result<ServerMessage> {
    loop {
        match socket.next().await.context("server closed the connection")?? {
            Message::Text(text) => match serde_json::from_str(text.as_str()) {
                Ok(message) => return Ok(message),
                Err(error) => tracing::debug!(%error, "ignoring an unknown server frame"),
            },
            Message::Close(frame) => bail!("server closed the connection: {frame:?}"),
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full_backoff() {
        for _ in 0..1000 {
            let wait = jittered(Duration::from_secs(2));
            assert!(
                wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2),
                "{wait:?}"
            );
        }
    }
}
