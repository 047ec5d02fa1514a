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
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use flproto::identity::NodeKey;
use flproto::message::{PeerInfo, SetupMessage};
use flproto::setup_auth::{self, Attempt, ReplayGuard, SessionId, SetupSigner};
use flproto::NodeId;
use rtc::ice::mdns::MulticastDnsMode;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

use crate::ctl::{CtlAction, CtlResponder};
use crate::signal_client::SignalSender;

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

/// Counters for `flnode status`.
#[derive(Debug, Default)]
pub struct PeerStats {
    pub state: StateCell,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Datagrams from WireGuard dropped because the channel was not open.
    pub drops_not_open: AtomicU64,
    /// Datagrams dropped because the channel's send buffer was full.
    pub drops_full: AtomicU64,
    /// Setup messages refused: unsigned, badly signed, replayed or stale.
    pub setup_refused: AtomicU64,
    /// Connections rebuilt because the network changed or the path died.
    pub handovers: AtomicU64,
    /// The selected candidate pair and its RTT, refreshed every second.
    pub path: std::sync::Mutex<Option<crate::path_stats::PathInfo>>,
}

/// The connection state word shown by `flnode status`.
#[derive(Debug, Default)]
pub struct StateCell(AtomicU8);

/// The words [`StateCell`] can hold; `connected` means the data path is up.
/// `handover` means data still flows over the old connection while a new
/// one is set up.
pub const STATE_NAMES: [&str; 6] = ["offline", "waiting", "connecting", "connected", "failed", "handover"];

impl StateCell {
    pub fn set(&self, name: &str) {
        let index = STATE_NAMES.iter().position(|n| *n == name).unwrap_or(0);
        self.0.store(index as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> &'static str {
        STATE_NAMES[usize::from(self.0.load(Ordering::Relaxed)).min(STATE_NAMES.len() - 1)]
    }
}

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
    Pong(u64),
}

struct Handler {
    generation: u64,
    internal: mpsc::UnboundedSender<Internal>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self
                .internal
                .send(Internal::LocalCandidate(self.generation, init.candidate));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.internal.send(Internal::State(self.generation, state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.internal.send(Internal::Channel(self.generation, channel));
    }
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
    /// STUN and TURN servers for ICE.
    pub ice_servers: Vec<webrtc::peer_connection::RTCIceServer>,
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
    wg: Option<Arc<dyn DataChannel>>,
    ctl: Option<Arc<dyn DataChannel>>,
    /// When the current connection last answered a keepalive.
    last_pong: Option<tokio::time::Instant>,
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
            wg: None,
            ctl: None,
            last_pong: None,
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

    /// Signs `message` as the next of the current attempt and sends it.
    fn send_setup(&mut self, message: SetupMessage) {
        let (id_init, id_follow) = if self.initiator() {
            (self.me, self.config.id)
        } else {
            (self.config.id, self.me)
        };
        let info = PeerInfo {
            id_init,
            id_follow,
            message,
            auth: None,
        };
        let signed = self.signer.sign(&self.key, &mut self.attempt, info);
        self.signal.send(signed);
    }

    /// Starts a new attempt: what we send from now on has a newer
    /// generation, so the peer can tell it from anything sent before.
    fn new_attempt(&mut self) {
        self.attempt = self.signer.next_generation(unix_millis());
    }

    /// Checks signature and freshness; the peer's generation if accepted.
    fn authenticate(&mut self, info: &PeerInfo) -> Result<u64, setup_auth::SetupAuthError> {
        let (sender, auth) = setup_auth::verify(info, &self.me)?;
        if sender != self.config.id {
            return Err(setup_auth::SetupAuthError::NotForUs);
        }
        let freshness = self.guard.accept(&auth)?;
        if freshness == setup_auth::Freshness::NewSession {
            tracing::debug!(peer = %self.config.id, session = %auth.session, "peer started a new session");
        }
        Ok(auth.generation)
    }

    fn refuse(&mut self, error: setup_auth::SetupAuthError) {
        self.stats.setup_refused.fetch_add(1, Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        if self.refusal_logged.is_none_or(|at| now >= at + Duration::from_secs(1)) {
            self.refusal_logged = Some(now);
            tracing::warn!(
                peer = %self.config.id,
                refused = self.stats.setup_refused.load(Ordering::Relaxed),
                "refused a setup message: {error}"
            );
        }
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
                    if let Ok((len, _)) = received {
                        self.forward_to_peer(&buffer[..len]).await;
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
                    self.attempted_at = None;
                    self.retry_delay = MIN_RETRY;
                    self.attempt().await;
                }
            }
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

    /// The initiator offers; the follower asks for an offer. At most one
    /// attempt per `retry_delay`.
    async fn attempt(&mut self) {
        let now = tokio::time::Instant::now();
        // A follower that answered an offer less than MIN_RETRY ago waits:
        // the initiator ignores an `Init` while its offer is in flight, and
        // a new generation now would make it drop the candidates the
        // answered connection still trickles (signed as the new attempt's),
        // TURN relay candidates above all, which come last.
        if !self.initiator() && !self.connected && self.answered_at.is_some_and(|at| now < at + MIN_RETRY) {
            return;
        }
        if let Some(at) = self.attempted_at {
            if now < at + self.retry_delay {
                return;
            }
            self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY);
        }
        self.attempted_at = Some(now);
        if self.initiator() {
            if let Err(error) = self.offer().await {
                tracing::warn!(peer = %self.config.id, "cannot create an offer: {error:#}");
            }
        } else {
            self.stats.state.set("waiting");
            self.new_attempt();
            self.send_setup(SetupMessage::Init);
        }
    }

    /// Acts on an authenticated setup message of the peer's `generation`.
    async fn on_setup(&mut self, message: SetupMessage, generation: u64) -> anyhow::Result<()> {
        match message {
            // The follower asks when it has no connection (it may have
            // restarted, so ours is stale even if it still looks up) or
            // wants a handover: offer at once, unless an offer of ours is
            // still in flight (a second one would cross its answer).
            SetupMessage::Init if self.initiator() => {
                let in_flight = !self.connected && self.attempted_at.is_some_and(|at| at.elapsed() < MIN_RETRY);
                if self.connected {
                    self.handover("the peer asked for a new connection").await;
                } else if !in_flight {
                    self.attempted_at = None;
                    self.retry_delay = MIN_RETRY;
                    self.attempt().await;
                }
            }
            SetupMessage::Offer(sdp) if !self.initiator() => {
                let connection = self.new_connection().await?;
                connection
                    .set_remote_description(RTCSessionDescription::offer(sdp)?)
                    .await?;
                self.remote_described = true;
                self.remote_generation = Some(generation);
                let answer = connection.create_answer(None).await?;
                connection.set_local_description(answer.clone()).await?;
                self.send_setup(SetupMessage::Answer(answer.sdp));
                self.answered_at = Some(tokio::time::Instant::now());
                self.flush_candidates().await;
            }
            SetupMessage::Answer(sdp) if self.initiator() => {
                let Some(connection) = self.connection.clone() else {
                    return Ok(());
                };
                connection
                    .set_remote_description(RTCSessionDescription::answer(sdp)?)
                    .await?;
                self.remote_described = true;
                self.remote_generation = Some(generation);
                self.flush_candidates().await;
            }
            SetupMessage::IceCandidate(candidate) => {
                if !self.remote_described {
                    if self.pending_candidates.len() < MAX_PENDING_CANDIDATES {
                        self.pending_candidates.push((generation, candidate));
                    }
                } else if self.remote_generation == Some(generation) {
                    self.add_candidate(candidate).await;
                } else {
                    tracing::debug!(peer = %self.config.id, generation, "candidate of another attempt; ignored");
                }
            }
            other => tracing::debug!(peer = %self.config.id, ?other, "setup message not for our role; ignored"),
        }
        Ok(())
    }

    async fn offer(&mut self) -> anyhow::Result<()> {
        let connection = self.new_connection().await?;
        if !self.is_test_peer() {
            let wg_init = RTCDataChannelInit {
                ordered: false,
                max_retransmits: Some(0),
                ..Default::default()
            };
            let wg = connection.create_data_channel(WG_CHANNEL, Some(wg_init)).await?;
            self.watch_channel(wg);
        }
        let ctl = connection.create_data_channel(CTL_CHANNEL, None).await?;
        self.watch_channel(ctl);
        let offer = connection.create_offer(None).await?;
        connection.set_local_description(offer.clone()).await?;
        self.send_setup(SetupMessage::Offer(offer.sdp));
        Ok(())
    }

    /// Rebuilds the connection beside the old one, which keeps carrying
    /// datagrams until the new one is up.
    async fn handover(&mut self, why: &str) {
        tracing::info!(peer = %self.config.id, "handover: {why}");
        self.stats.handovers.fetch_add(1, Ordering::Relaxed);
        self.handover_pending = true;
        self.attempted_at = None;
        self.retry_delay = MIN_RETRY;
        self.attempt().await;
    }

    /// Pings the peer over `ctl`; a connection that stopped answering is
    /// handed over.
    async fn keepalive(&mut self) {
        let (Some(ctl), true) = (&self.ctl, self.connected) else {
            return;
        };
        let now = tokio::time::Instant::now();
        let last = *self.last_pong.get_or_insert(now);
        if now.duration_since(last) >= KEEPALIVE_TIMEOUT {
            // Once per timeout at most; the handover itself retries.
            self.last_pong = Some(now);
            // The path to the signalling server may have died too, and
            // the handover needs it: have it checked now.
            self.signal.probe();
            self.handover("keepalives went unanswered").await;
            return;
        }
        let _ = ctl.try_send_text("ping").await;
    }

    /// Replaces the current connection with a fresh one; a working one is
    /// kept as `previous` until the new one's `wg` opens.
    async fn new_connection(&mut self) -> anyhow::Result<Arc<dyn PeerConnection>> {
        if let Some(old) = self.connection.take() {
            match (self.connected, self.wg.take()) {
                (true, Some(wg)) => {
                    if let Some((older, _)) = self.previous.replace((old, wg)) {
                        let _ = older.close().await;
                    }
                }
                _ => {
                    let _ = old.close().await;
                }
            }
        }
        self.ctl = None;
        self.last_pong = None;
        self.generation += 1;
        self.new_attempt();
        self.remote_described = false;
        self.remote_generation = None;
        self.pending_candidates.clear();
        self.wg = None;
        self.connected = false;
        self.stats.state.set(if self.previous.is_some() {
            "handover"
        } else {
            "connecting"
        });
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_discard_local_candidates_during_ice_restart(true)
            // Checks every 50 ms (not 200) for as long in all (1.4 s): the
            // agent acts on its timer ticks, so this shortens every step of
            // connection setup, which is what a handover waits for.
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .build();
        let connection = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(self.config.ice_servers.clone())
                    .build(),
            )
            .with_setting_engine(settings)
            .with_handler(Arc::new(Handler {
                generation: self.generation,
                internal: self.internal_tx.clone(),
            }))
            .with_runtime(crate::runtime::BufferedRuntime::shared())
            .with_udp_addrs(crate::host_addresses::bind_addresses())
            .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
            .build()
            .await?;
        let connection: Arc<dyn PeerConnection> = Arc::new(connection);
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    /// Adds the buffered candidates of the attempt we just described.
    async fn flush_candidates(&mut self) {
        for (generation, candidate) in std::mem::take(&mut self.pending_candidates) {
            if Some(generation) == self.remote_generation {
                self.add_candidate(candidate).await;
            }
        }
    }

    async fn add_candidate(&self, candidate: String) {
        let Some(connection) = &self.connection else {
            return;
        };
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid: Some(String::new()),
            sdp_mline_index: Some(0),
            ..Default::default()
        };
        if let Err(error) = connection.add_ice_candidate(init).await {
            tracing::debug!(peer = %self.config.id, %error, "remote candidate refused");
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
            Internal::Pong(generation) if generation == self.generation => {
                self.last_pong = Some(tokio::time::Instant::now());
            }
            _ => {}
        }
    }

    /// Reads one data channel: WireGuard datagrams go to the local
    /// WireGuard (never for a test peer); `ctl` messages are answered as
    /// [`crate::ctl`] says.
    fn watch_channel(&self, channel: Arc<dyn DataChannel>) {
        let generation = self.generation;
        let internal = self.internal_tx.clone();
        let socket = self.config.socket.clone();
        let wireguard = self.config.wireguard;
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let label = channel.label().await.unwrap_or_default();
            let mut ctl = CtlResponder::default();
            while let Some(event) = channel.poll().await {
                match event {
                    DataChannelEvent::OnOpen if label == WG_CHANNEL => {
                        let _ = internal.send(Internal::WgOpen(generation, channel.clone()));
                    }
                    DataChannelEvent::OnOpen if label == CTL_CHANNEL => {
                        let _ = internal.send(Internal::CtlOpen(generation, channel.clone()));
                    }
                    DataChannelEvent::OnMessage(message) if label == WG_CHANNEL => {
                        if let Some(socket) = &socket {
                            stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                            stats.rx_bytes.fetch_add(message.data.len() as u64, Ordering::Relaxed);
                            let _ = socket.send_to(&message.data, wireguard).await;
                        }
                    }
                    DataChannelEvent::OnMessage(message) if label == CTL_CHANNEL => {
                        match ctl.on_message(&message.data) {
                            // Text messages: the browser page reads `ctl`
                            // as text.
                            CtlAction::Reply(reply) => {
                                let _ = channel.try_send_text(&String::from_utf8_lossy(&reply)).await;
                            }
                            CtlAction::Pong => {
                                let _ = internal.send(Internal::Pong(generation));
                            }
                            CtlAction::Nothing => {}
                        }
                    }
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
        });
    }

    async fn refresh_path(&self) {
        let path = match (&self.connection, self.connected) {
            (Some(connection), true) => crate::path_stats::selected_path(connection.as_ref()).await,
            _ => None,
        };
        if let Ok(mut slot) = self.stats.path.lock() {
            *slot = path;
        }
    }

    async fn forward_to_peer(&mut self, datagram: &[u8]) {
        let wg = self.wg.as_ref().or(self.previous.as_ref().map(|(_, wg)| wg));
        let Some(wg) = wg else {
            if self.pending_datagrams.len() == MAX_PENDING_DATAGRAMS {
                self.pending_datagrams.pop_front();
                self.stats.drops_not_open.fetch_add(1, Ordering::Relaxed);
            }
            self.pending_datagrams
                .push_back((tokio::time::Instant::now(), BytesMut::from(datagram)));
            return;
        };
        match wg.try_send(BytesMut::from(datagram)).await {
            Ok(()) => {
                self.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                self.stats.tx_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.drops_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A datagram from the local WireGuard; never, for a test peer.
async fn receive(socket: Option<&UdpSocket>, buffer: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buffer).await,
        None => std::future::pending().await,
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The receiving half of a peer's internal events.
pub struct PeerTask {
    internal_rx: mpsc::UnboundedReceiver<Internal>,
}
