//! One configured peer: a WebRTC connection set up through signalling, and
//! the WireGuard datagrams it carries.
//!
//! Roles are fixed by the keys, so two nodes never race to offer: the node
//! with the smaller public key initiates (creates the data channels, sends
//! the Offer); the other asks for an offer with `Init`. Both trickle
//! candidates, before and after the connection is up; candidates that arrive
//! before the remote description are buffered. While the peer is online and
//! the connection is not up, attempts are repeated with exponential backoff
//! from [`MIN_RETRY`] to [`MAX_RETRY`].
//!
//! Handover: when the machine's addresses change (netlink) or the `ctl`
//! keepalives stop coming back for [`KEEPALIVE_TIMEOUT`], the node builds a
//! fresh connection beside the old one (make-before-break: a fresh
//! PeerConnection also sheds the SCTP backoff an old one may have built up
//! during the outage) and keeps sending over the old one until the new
//! `wg` channel opens. The initiator offers; the follower asks with `Init`,
//! which the initiator answers at once while connected.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use flproto::identity::NodeKey;
use flproto::message::{PeerInfo, SetupMessage};
use flproto::setup_auth::{Attempt, ReplayGuard, SessionId, SetupSigner};
use flproto::NodeId;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

use crate::signal_client::SignalSender;

mod attempts;
mod channels;
mod connection;
mod handover;
mod signing;
mod stats;

use channels::{from_wireguard, receive};
use signing::unix_millis;
pub use stats::PeerStats;

/// Shortest time between two attempts: long enough for one attempt's offer
/// and answer not to cross the next one's.
pub const MIN_RETRY: Duration = Duration::from_secs(3);
/// Longest time between attempts to reach an online peer.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// Remote candidates kept while waiting for the remote description.
pub const MAX_PENDING_CANDIDATES: usize = 64;
/// Bytes one data channel may hold unsent; beyond it datagrams are dropped
/// (right for WireGuard, which is UDP).
pub const SEND_BUFFER_LIMIT: usize = 1024 * 1024;
/// Datagrams from WireGuard kept while the channel opens, so that its first
/// handshake is not lost (WireGuard would retry only after 5 s).
pub const MAX_PENDING_DATAGRAMS: usize = 16;
/// How long a kept datagram stays worth sending: WireGuard repeats a
/// handshake after 5 s, so anything older has been superseded.
pub const PENDING_DATAGRAM_MAX_AGE: Duration = Duration::from_secs(5);
/// Largest datagram read from the local WireGuard.
pub const MAX_DATAGRAM: usize = 65_535;

/// Time between ICE connectivity checks of one candidate pair.
pub const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// Checks per pair before giving up on it (28 × 50 ms = webrtc's 1.4 s).
pub const ICE_MAX_BINDING_REQUESTS: u16 = 28;
/// How often a `ping` goes out on `ctl` while connected.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// No `pong` for this long means the path is dead: hand over.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// A test peer that has not been connected for this long is dropped.
pub const TEST_PEER_IDLE: Duration = Duration::from_secs(30);

/// Label of the unordered, unreliable channel carrying WireGuard datagrams.
pub const WG_CHANNEL: &str = "wg";
/// Label of the reliable control channel (ping, stats).
pub const CTL_CHANNEL: &str = "ctl";

/// What the node tells a peer task.
#[derive(Debug)]
pub enum PeerInput {
    /// The peer may be online: try to connect.
    Kick,
    /// The peer is offline: stop trying until the next kick.
    Offline,
    /// A setup message naming this peer, not yet verified.
    Setup(PeerInfo),
    /// The machine's addresses changed: rebuild the connection.
    NetworkChanged,
}

/// What the WebRTC stack tells a peer task, tagged with the connection's
/// generation so that events of a replaced connection are ignored.
enum Internal {
    LocalCandidate(u64, String),
    State(u64, RTCPeerConnectionState),
    Channel(u64, Arc<dyn DataChannel>),
    WgOpen(u64, Arc<dyn DataChannel>),
    CtlOpen(u64, Arc<dyn DataChannel>),
    /// The connection generation, and the send time our ping carried.
    Pong(u64, Option<u64>),
    /// A test peer used up its byte budget on this generation's connection.
    BudgetSpent(u64),
}

/// Where a peer's datagrams come from and go to.
pub struct PeerConfig {
    pub id: NodeId,
    /// Bound local socket: the local WireGuard's endpoint for this peer.
    /// `None` for a test peer (a browser, say): it gets the `ctl` channel's
    /// echo services and never the WireGuard path.
    pub socket: Option<Arc<UdpSocket>>,
    /// The local WireGuard's own UDP address.
    pub wireguard: SocketAddr,
    /// STUN and TURN servers for ICE (STUN only for a test peer).
    pub ice_servers: Vec<webrtc::peer_connection::RTCIceServer>,
    /// What a test peer may still move over its data channels; `None` for
    /// a configured peer.
    pub budget: Option<Arc<crate::admission::ByteBudget>>,
}

pub struct Peer {
    me: NodeId,
    key: Arc<NodeKey>,
    config: PeerConfig,
    signal: SignalSender,
    stats: Arc<PeerStats>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    generation: u64,
    connection: Option<Arc<dyn PeerConnection>>,
    remote_described: bool,
    /// Signs what we send: our session, a generation per attempt.
    signer: SetupSigner,
    /// The generation and sequence numbers of our current attempt.
    attempt: Attempt,
    /// Refuses replayed and stale setup messages from the peer.
    guard: ReplayGuard,
    /// The peer's generation whose description we applied: its candidates
    /// belong to that connection, any others to one we no longer have.
    remote_generation: Option<u64>,
    /// Candidates (with the peer's generation) waiting for the remote
    /// description.
    pending_candidates: Vec<(u64, String)>,
    /// When a refused setup message was last logged (one line a second at
    /// most, whatever a hostile server sends).
    refusal_logged: Option<tokio::time::Instant>,
    /// When a datagram from a foreign source was last logged (likewise).
    foreign_logged: Option<tokio::time::Instant>,
    wg: Option<Arc<dyn DataChannel>>,
    ctl: Option<Arc<dyn DataChannel>>,
    /// Data channels of the current connection (capped for a test peer).
    channels: usize,
    /// When the current connection last answered a keepalive.
    last_pong: Option<tokio::time::Instant>,
    /// The clock our keepalive pings carry (see [`Peer::clock_micros`]).
    clock: std::time::Instant,
    /// The connection being replaced, and its `wg` channel: it carries the
    /// datagrams until the new one's `wg` opens.
    previous: Option<(Arc<dyn PeerConnection>, Arc<dyn DataChannel>)>,
    /// A handover was asked for and the new `wg` channel is not open yet.
    handover_pending: bool,
    /// Newest datagrams from WireGuard while `wg` is not open.
    pending_datagrams: std::collections::VecDeque<(tokio::time::Instant, BytesMut)>,
    online: bool,
    connected: bool,
    /// When the current attempt started; the next one waits `retry_delay`,
    /// so offers and answers of successive attempts do not cross.
    attempted_at: Option<tokio::time::Instant>,
    /// When the follower last answered an offer: that connection is being
    /// set up and still trickles candidates under the current generation.
    answered_at: Option<tokio::time::Instant>,
    /// Doubles with every attempt that did not connect.
    retry_delay: Duration,
    /// When a test peer was last connected or heard from.
    last_alive: tokio::time::Instant,
}

impl Peer {
    /// Microseconds on this peer's own clock, the time a keepalive carries.
    fn clock_micros(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    pub fn new(
        key: Arc<NodeKey>,
        session: SessionId,
        config: PeerConfig,
        signal: SignalSender,
        stats: Arc<PeerStats>,
    ) -> (Self, PeerTask) {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let mut signer = SetupSigner::new(session);
        let attempt = signer.next_generation(unix_millis());
        let peer = Peer {
            me: key.id(),
            key,
            config,
            signal,
            stats,
            internal_tx,
            generation: 0,
            connection: None,
            remote_described: false,
            signer,
            attempt,
            guard: ReplayGuard::default(),
            remote_generation: None,
            pending_candidates: Vec::new(),
            refusal_logged: None,
            foreign_logged: None,
            wg: None,
            ctl: None,
            channels: 0,
            last_pong: None,
            clock: std::time::Instant::now(),
            previous: None,
            handover_pending: false,
            pending_datagrams: std::collections::VecDeque::new(),
            online: false,
            connected: false,
            attempted_at: None,
            answered_at: None,
            retry_delay: MIN_RETRY,
            last_alive: tokio::time::Instant::now(),
        };
        (peer, PeerTask { internal_rx })
    }

    fn is_test_peer(&self) -> bool {
        self.config.socket.is_none()
    }

    fn initiator(&self) -> bool {
        self.me < self.config.id
    }

    /// Runs until `inputs` closes (or, for a test peer, until it has been
    /// gone for [`TEST_PEER_IDLE`]).
    pub async fn run(mut self, mut task: PeerTask, mut inputs: mpsc::Receiver<PeerInput>) {
        let socket = self.config.socket.clone();
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut keepalive = tokio::time::interval(KEEPALIVE_INTERVAL);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.stats.state.set("offline");
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.on_input(input).await,
                    None => break,
                },
                Some(event) = task.internal_rx.recv() => self.on_internal(event).await,
                received = receive(socket.as_deref(), &mut buffer) => {
                    match received {
                        Ok((len, source)) if from_wireguard(source, self.config.wireguard) => {
                            self.forward_to_peer(&buffer[..len]).await;
                        }
                        Ok((_, source)) => self.drop_foreign(source),
                        Err(_) => {}
                    }
                }
                _ = retry.tick() => {
                    if self.connected {
                        self.last_alive = tokio::time::Instant::now();
                    } else if self.is_test_peer() && self.last_alive.elapsed() > TEST_PEER_IDLE {
                        tracing::info!(peer = %self.config.id, "test peer gone");
                        break;
                    }
                    if self.online && (!self.connected || self.handover_pending) {
                        self.attempt().await;
                    }
                    self.refresh_path().await;
                }
                _ = keepalive.tick() => self.keepalive().await,
            }
        }
        if let Some(connection) = self.connection.take() {
            let _ = connection.close().await;
        }
        if let Some((previous, _)) = self.previous.take() {
            let _ = previous.close().await;
        }
    }

    async fn on_input(&mut self, input: PeerInput) {
        match input {
            PeerInput::Kick => {
                self.online = true;
                if self.handover_pending && !self.initiator() {
                    // (Re)registered: our `Init` may have been lost with the
                    // old signalling connection. A second one is harmless:
                    // the initiator ignores it while its offer is in flight.
                    self.attempted_at = None;
                    self.attempt().await;
                } else if !self.connected || self.handover_pending {
                    // An offer of ours may be in flight; a second one now
                    // would cross its answer, so only after `retry_delay`.
                    self.attempt().await;
                }
            }
            PeerInput::Offline => {
                self.online = false;
                if !self.connected {
                    self.stats.state.set("offline");
                    // The attempt went nowhere (say, our offer reached a server
                    // the peer had not registered with yet): when the peer
                    // shows up, try at once rather than after the back-off.
                    self.attempted_at = None;
                    self.retry_delay = MIN_RETRY;
                }
            }
            PeerInput::NetworkChanged => {
                if self.connected || self.previous.is_some() {
                    self.handover("the network changed").await;
                } else if self.online {
                    // Not up yet: try now, from the new addresses.
                    self.attempt_now().await;
                }
            }
            // Spent is spent for this session: no new connection, so no
            // more candidates of this machine go out either.
            PeerInput::Setup(_) if self.budget_spent() => {}
            PeerInput::Setup(info) => match self.authenticate(&info) {
                Ok(generation) => {
                    self.online = true;
                    self.last_alive = tokio::time::Instant::now();
                    if let Err(error) = self.on_setup(info.message, generation).await {
                        tracing::warn!(peer = %self.config.id, "setup failed: {error:#}");
                    }
                }
                Err(error) => self.refuse(error),
            },
        }
    }

    async fn on_internal(&mut self, event: Internal) {
        match event {
            Internal::LocalCandidate(generation, candidate) if generation == self.generation => {
                self.send_setup(SetupMessage::IceCandidate(candidate));
            }
            Internal::State(generation, state) if generation == self.generation => {
                tracing::info!(peer = %self.config.id, %state, "connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        self.connected = true;
                        self.retry_delay = MIN_RETRY;
                        self.stats.state.set("connected");
                        self.refresh_path().await;
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        self.connected = false;
                        self.wg = None;
                        self.ctl = None;
                        if self.previous.is_none() {
                            self.stats.state.set("failed");
                        }
                    }
                    _ => {}
                }
            }
            Internal::Channel(generation, channel) if generation == self.generation => self.watch_channel(channel),
            Internal::BudgetSpent(generation) if generation == self.generation => self.close_spent().await,
            Internal::WgOpen(generation, channel) if generation == self.generation => {
                self.wg = Some(channel);
                self.handover_pending = false;
                if let Some((previous, _)) = self.previous.take() {
                    tracing::info!(peer = %self.config.id, "handover: the new connection carries the data");
                    tokio::spawn(async move {
                        let _ = previous.close().await;
                    });
                }
                for (kept_at, datagram) in std::mem::take(&mut self.pending_datagrams) {
                    if kept_at.elapsed() > PENDING_DATAGRAM_MAX_AGE {
                        self.stats.drops_not_open.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.forward_to_peer(&datagram).await;
                    }
                }
            }
            Internal::CtlOpen(generation, channel) if generation == self.generation => {
                self.ctl = Some(channel);
                self.last_pong = Some(tokio::time::Instant::now());
            }
            Internal::Pong(generation, sent_micros) if generation == self.generation => {
                self.last_pong = Some(tokio::time::Instant::now());
                if let Some(sent) = sent_micros {
                    let now = self.clock_micros();
                    // A pong from before a restart of ours could carry a
                    // time ahead of this clock: no RTT from it.
                    if let Some(rtt) = now.checked_sub(sent) {
                        self.stats.ctl_rtt_micros.store(rtt, Ordering::Relaxed);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The receiving half of a peer's internal events.
pub struct PeerTask {
    internal_rx: mpsc::UnboundedReceiver<Internal>,
}
