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
use flproto::message::{NodeMessage, PeerInfo, ServerMessage, TurnCredentials};
use flproto::setup_message::Opens;
use flproto::{NodeId, NodeInfo};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::reconnect::{Reconnect, SessionEnd};
use crate::relay_link::RelayClientSide;
use crate::signal_socket::{next_frame, send, send_relay_frames, Unreachable};

/// Time the server has to answer each step of the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle connection is checked with a WebSocket ping: a TCP
/// connection whose path died can look open for many minutes.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Silence after a ping (periodic, or asked for by a peer whose data path
/// just died) that means the connection is dead: reconnect.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a frame may take to go out before the connection counts as dead.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest WebSocket message (and frame) taken from the server. tungstenite
/// would buffer up to 64 MiB per message; the server's largest frames are
/// a `ListIDsReply` of at most 100 node infos (names escaped in JSON: under
/// 4 KiB each) and relayed setups, which it caps at 64 KiB.
pub const DEFAULT_MAX_SIGNAL_MESSAGE: usize = 512 * 1024;
/// What `--max-signal-message` may be set to: a setup frame must fit.
pub const MAX_SIGNAL_MESSAGE_RANGE: std::ops::RangeInclusive<usize> = 64 * 1024..=16 * 1024 * 1024;
/// Setup messages waiting to go out; beyond this new ones are dropped
/// (peers retry their setup).
pub const OUTGOING_QUEUE: usize = 256;
/// Address losses waiting for the signalling task: each one means "check
/// the connection now", so a few coalesce into the next check.
const ADDRESS_CHANGE_QUEUE: usize = 4;
/// Keepalive failures asking for a probe of the signalling connection; one
/// pending probe is as good as many.
const PROBE_QUEUE: usize = 1;

/// What the signalling connection tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalEvent {
    /// Registered (again): these nodes are known to be online.
    Online(Vec<Listed>),
    /// Presence news: joined and left nodes.
    Presence { joined: Vec<Listed>, left: Vec<NodeId> },
    /// A setup message from another node.
    Setup(PeerInfo),
    /// A setup message could not be delivered: the node is offline.
    NotConnected(NodeId),
    /// A fresh credential for the server's TURN service.
    TurnCredentials(TurnCredentials),
    /// The connection to the server is gone; reconnecting.
    Disconnected,
    /// Whether the server relays datagrams for this node (it said so
    /// when the node registered).
    Relay(bool),
}

/// A node in a node list, with what its node info says it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub id: NodeId,
    pub opens: Opens,
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
    probes: mpsc::Sender<()>,
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

    /// Asks the client to check its connection now (a data path just died,
    /// so the path to the server may have died with it): a ping that gets
    /// no answer within [`PONG_TIMEOUT`] makes it reconnect.
    pub fn probe(&self) {
        let _ = self.probes.try_send(());
    }
}

/// The outcome of the very first connection: a node that cannot reach its
/// server at start-up is misconfigured, not in an outage.
pub type FirstRegistration = oneshot::Receiver<anyhow::Result<()>>;

/// Starts the signalling task; events arrive on `events`, relay frames
/// come and go through `relay`.
// Each argument is one setting or one channel of the client; a struct of
// them would only name them a second time.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    url: String,
    tls: Arc<rustls::ClientConfig>,
    key: Arc<NodeKey>,
    mode: AuthMode,
    info: NodeInfo,
    max_message: usize,
    events: mpsc::Sender<SignalEvent>,
    relay: RelayClientSide,
) -> (SignalSender, FirstRegistration) {
    let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    let (addresses_gone, addresses_gone_rx) = mpsc::channel(ADDRESS_CHANGE_QUEUE);
    let (probes, probes_rx) = mpsc::channel(PROBE_QUEUE);
    let (first_tx, first_rx) = oneshot::channel();
    let sender = SignalSender {
        outgoing,
        addresses_gone,
        probes,
    };
    let client = Client {
        url,
        tls,
        key,
        mode,
        info,
        max_message,
        events,
        first: Some(first_tx),
        addresses_gone: addresses_gone_rx,
        probes: probes_rx,
        relay,
    };
    tokio::spawn(client.run(outgoing_rx));
    (sender, first_rx)
}

struct Client {
    url: String,
    /// For `wss://` URLs.
    tls: Arc<rustls::ClientConfig>,
    key: Arc<NodeKey>,
    mode: AuthMode,
    /// What the node announces about itself (its name, and whether it
    /// opens sealed setups); the pubkey in it is `key`'s.
    info: NodeInfo,
    /// [`DEFAULT_MAX_SIGNAL_MESSAGE`] unless configured.
    max_message: usize,
    events: mpsc::Sender<SignalEvent>,
    /// Told the outcome of the first connection, then `None`.
    first: Option<oneshot::Sender<anyhow::Result<()>>>,
    addresses_gone: mpsc::Receiver<Vec<IpAddr>>,
    probes: mpsc::Receiver<()>,
    /// The datagram relay: frames to send, where received ones go, what
    /// the server granted.
    relay: RelayClientSide,
}

impl Client {
    async fn run(mut self, mut outgoing: mpsc::Receiver<String>) {
        let mut reconnect = Reconnect::default();
        loop {
            let mut registered = false;
            let result = self.session(&mut outgoing, &mut registered).await;
            self.relay.grant.set(None);
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
            while self.relay.outgoing.try_recv().is_ok() {}
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
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
        let limits = WebSocketConfig::default()
            .max_message_size(Some(self.max_message))
            .max_frame_size(Some(self.max_message));
        let connect = tokio_tungstenite::connect_async_tls_with_config(url, Some(limits), false, Some(connector));
        let (mut socket, _) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
            Err(_) => return Err(Unreachable("connect timed out".into()).into()),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Io(error))) => {
                return Err(Unreachable(format!("cannot connect: {error}")).into())
            }
            Ok(Err(error)) => return Err(anyhow::Error::new(error).context("cannot connect")),
            Ok(Ok(connected)) => connected,
        };
        crate::signal_socket::limit_unsent(&socket);
        let local_ip = match socket.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().ok().map(|local| local.ip()),
            tokio_tungstenite::MaybeTlsStream::Rustls(tls) => tls.get_ref().0.local_addr().ok().map(|local| local.ip()),
            _ => None,
        };
        let mut last_heard = Instant::now();
        let routes = self.relay.routes.clone();
        let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, next_frame(&mut socket, &mut last_heard, &routes))
            .await
            .map_err(|_| Unreachable("no challenge from the server".into()))?;
        let challenge = match first? {
            ServerMessage::Challenge(_, challenge) => challenge,
            other => bail!("expected a challenge, got {other:?}"),
        };
        let auth = match self.mode {
            AuthMode::FledgerCompat => AnnounceAuth::Fledger,
            AuthMode::Bound => AnnounceAuth::Bound {
                server: authority_of_url(url).context("signal URL has no host")?,
            },
        };
        let mut announce = sign_announce(&self.key, challenge, self.info.clone(), &auth);
        // Our own servers relay datagrams when nothing else gets through.
        announce.relay = self.mode == AuthMode::Bound;
        send(&mut socket, Message::text(NodeMessage::Announce(announce).to_json())).await?;
        let registration_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut ping_timer = tokio::time::interval(PING_INTERVAL);
        ping_timer.reset();
        // When the unanswered ping went out.
        let mut ping_sent: Option<Instant> = None;
        loop {
            if ping_sent.is_some_and(|sent| last_heard >= sent) {
                ping_sent = None;
            }
            let pong_deadline = ping_sent.map(|sent| sent + PONG_TIMEOUT);
            tokio::select! {
                frame = next_frame(&mut socket, &mut last_heard, &routes) => {
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
                        ServerMessage::TurnCredentials(credentials) => SignalEvent::TurnCredentials(credentials),
                        ServerMessage::Error(text) if !*registered => bail!("server refused us: {text}"),
                        ServerMessage::Error(text) => {
                            tracing::warn!("signalling server: {text}");
                            continue;
                        }
                        ServerMessage::Relay(answer) => SignalEvent::Relay(crate::relay_link::granted(&self.relay.grant, answer)),
                        ServerMessage::SystemConfig(_) | ServerMessage::Challenge(..) => continue,
                    };
                    if self.events.send(event).await.is_err() {
                        return Ok(());
                    }
                }
                Some(text) = outgoing.recv(), if *registered => {
                    send(&mut socket, Message::text(text)).await?;
                }
                Some(frame) = self.relay.outgoing.recv(), if *registered => {
                    if self.relay.grant.max_datagram().is_some() {
                        send_relay_frames(&mut socket, frame, outgoing, &mut self.relay.outgoing).await?;
                    }
                }
                _ = ping_timer.tick() => {
                    if ping_sent.is_none() {
                        send(&mut socket, Message::Ping(Default::default())).await?;
                        ping_sent = Some(Instant::now());
                    }
                }
                Some(()) = self.probes.recv() => {
                    if ping_sent.is_none() {
                        send(&mut socket, Message::Ping(Default::default())).await?;
                        ping_sent = Some(Instant::now());
                    }
                }
                () = tokio::time::sleep_until(pong_deadline.unwrap_or(registration_deadline)), if pong_deadline.is_some() || !*registered => {
                    if !*registered {
                        bail!("the server did not register us within {HANDSHAKE_TIMEOUT:?}");
                    }
                    if ping_sent.is_some_and(|sent| last_heard < sent) {
                        return Err(Unreachable(format!("no answer to a ping within {PONG_TIMEOUT:?}")).into());
                    }
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

/// The address our connection was made from is gone.
#[derive(Debug, thiserror::Error)]
#[error("local address {0} went away")]
struct LocalAddressGone(IpAddr);

/// Between half and all of `backoff`, so that many nodes cut off together
/// do not come back together.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

fn ids(list: &[NodeInfo]) -> Vec<Listed> {
    list.iter()
        .filter_map(|info| match info {
            NodeInfo::NodeInfoV3(v3) => Some(Listed {
                id: v3.pubkey,
                opens: v3.opens(),
            }),
            _ => None,
        })
        .collect()
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

#[cfg(test)]
#[path = "signal_client_tests.rs"]
mod limit_tests;
