//! One peer: the driver of its state machine (`flproto::peer_setup`, where
//! every decision is made) against the WebRTC stack, the signalling client
//! and the peer's data path.
//!
//! What happens when a setup message arrives: the node hands it to this
//! peer's task as [`PeerInput::Setup`]; [`Peer::on_event`] gives it to the
//! state machine, which checks its signature and freshness and answers
//! with actions ([`Peer::execute`] carries them out: build a connection,
//! apply a description or candidate, send a signed reply). The WebRTC
//! callbacks come back in as events of the connection they are about
//! (`connection.rs`); `wg` channels go to the data path (`datapath.rs`),
//! which moves the datagrams between WireGuard and the carrying channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::udp_batch::BatchSocket;
use flproto::message::PeerInfo;
use flproto::peer_setup::{Action, Carrier, ConnId, Event, Local, PeerKind, PeerSetup, PeerState, PeerTimings};
use flproto::setup_message::Opens;
use flproto::NodeId;
use rand::SeedableRng;
use tokio::sync::mpsc;

use crate::signal_client::SignalSender;

mod channels;
mod connection;
mod datapath;
mod halves;
mod relay_path;
mod stats;

use channels::{clock_micros, ChannelSinks};
use connection::Link;
use datapath::DataPath;
pub use stats::{path_words, ChangeSignal, PeerStats};

/// Label of the unordered, unreliable channel carrying WireGuard datagrams.
pub const WG_CHANNEL: &str = "wg";
/// Label of the reliable control channel (ping, stats).
pub const CTL_CHANNEL: &str = "ctl";
/// How often the selected path shown by `flnode status` is read.
pub const PATH_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// What the node tells a peer task.
#[derive(Debug)]
pub enum PeerInput {
    /// The peer may be online: try to connect. What its node info says it
    /// opens, if the node list had it.
    Kick(Option<Opens>),
    /// The peer is offline: stop trying until the next kick.
    Offline,
    /// A setup message naming this peer, not yet verified.
    Setup(PeerInfo),
    /// The machine's addresses changed: rebuild the connection.
    NetworkChanged,
    /// The signalling server relays datagrams for this node (`true`), or
    /// not (refused, or the signalling connection is gone).
    Relay(bool),
}

impl From<PeerInput> for Event {
    fn from(input: PeerInput) -> Event {
        match input {
            PeerInput::Kick(opens) => Event::Online(opens),
            PeerInput::Offline => Event::Offline,
            PeerInput::Setup(info) => Event::Setup(info),
            PeerInput::NetworkChanged => Event::NetworkChanged,
            PeerInput::Relay(granted) => Event::RelayGranted(granted),
        }
    }
}

/// Where a peer's datagrams come from and go to.
pub struct PeerConfig {
    pub id: NodeId,
    /// Bound local socket: the local WireGuard's endpoint for this peer.
    /// `None` for a test peer (a browser, say): it gets the `ctl` channel's
    /// echo services and never the WireGuard path.
    pub socket: Option<Arc<BatchSocket>>,
    /// The local WireGuard's own UDP address.
    pub wireguard: SocketAddr,
    /// STUN and TURN servers for ICE (STUN only for a test peer), read
    /// afresh for each connection: the signalling server's TURN credential
    /// is renewed while the node runs.
    pub ice_servers: tokio::sync::watch::Receiver<Vec<webrtc::peer_connection::RTCIceServer>>,
    /// What a test peer may move over its data channels; `None` for a
    /// configured peer.
    pub budget: Option<Arc<crate::admission::ByteBudget>>,
    /// Managed mode: this node's overlay addresses, announced on `ctl`.
    pub announce: Option<flproto::overlay::OverlayAddresses>,
    /// The peer's end of the signalling server's relay; `None` for a test
    /// peer, which never gets it.
    pub relay: Option<crate::relay_link::RelayPeerSide>,
    /// Whether this node joins datagrams the peer sends in halves, and
    /// within what limits (`None`: the peer is not asked for halves).
    pub halves: Option<flproto::halves::ReassemblyLimits>,
}

pub struct Peer {
    setup: PeerSetup,
    ice_servers: tokio::sync::watch::Receiver<Vec<webrtc::peer_connection::RTCIceServer>>,
    signal: SignalSender,
    stats: Arc<PeerStats>,
    sinks: ChannelSinks,
    events: mpsc::UnboundedReceiver<Event>,
    /// The connections the state machine holds (two during a handover).
    links: HashMap<ConnId, Link>,
    /// Sends through the signalling server's relay; `None` for a test peer.
    relay: Option<relay_path::RelayPath>,
    actions: Vec<Action>,
    finished: bool,
}

impl Peer {
    pub fn new(local: Local, config: PeerConfig, signal: SignalSender, stats: Arc<PeerStats>) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let kind = if config.socket.is_some() {
            PeerKind::WireGuard
        } else {
            PeerKind::Test
        };
        let clock = Instant::now();
        let (path, relay) = match (config.socket, config.relay) {
            (Some(socket), Some(side)) => {
                let relay = relay_path::RelayPath::new(side.sender, stats.clone(), clock);
                let receive = relay_path::receive(
                    side.incoming,
                    relay.clone(),
                    socket.clone(),
                    config.wireguard,
                    events_tx.clone(),
                );
                tokio::spawn(receive);
                let path = DataPath::spawn(
                    socket,
                    config.wireguard,
                    stats.clone(),
                    events_tx.clone(),
                    relay.clone(),
                    config.halves,
                );
                (Some(path), Some(relay))
            }
            _ => (None, None),
        };
        let setup = PeerSetup::new(
            local,
            config.id,
            kind,
            PeerTimings::default(),
            Instant::now(),
            unix_millis(),
            // Every seal's ephemeral key comes from here.
            rand::rngs::StdRng::from_entropy(),
        );
        let sinks = ChannelSinks {
            events: events_tx,
            path,
            stats: stats.clone(),
            clock,
            budget: config.budget,
            announce: config.announce,
            joins_halves: config.halves.is_some(),
        };
        Peer {
            setup,
            ice_servers: config.ice_servers,
            signal,
            stats,
            sinks,
            events,
            links: HashMap::new(),
            relay,
            actions: Vec::new(),
            finished: false,
        }
    }

    /// Runs until `inputs` closes (or, for a test peer, until the state
    /// machine says it is finished).
    pub async fn run(mut self, mut inputs: mpsc::Receiver<PeerInput>) {
        let mut refresh = tokio::time::interval(PATH_REFRESH_INTERVAL);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timer = tokio::time::sleep_until(self.deadline());
        tokio::pin!(timer);
        self.show_state();
        while !self.finished {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.on_event(input.into()).await,
                    None => break,
                },
                Some(event) = self.events.recv() => self.on_event(event).await,
                () = &mut timer => {
                    self.setup.on_timer(Instant::now(), &mut self.actions);
                    self.execute().await;
                }
                _ = refresh.tick() => self.refresh_path().await,
            }
            timer.as_mut().reset(self.deadline());
        }
        if self.finished {
            tracing::info!(peer = %self.setup.peer(), "test peer gone");
        }
        for (_, link) in self.links.drain() {
            let _ = link.connection.close().await;
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.setup.next_deadline())
    }

    async fn on_event(&mut self, event: Event) {
        self.setup.on_event(event, Instant::now(), &mut self.actions);
        self.execute().await;
    }

    /// Carries out the state machine's actions in order, feeding back what
    /// the stack answers (an offer made, a build that failed) before
    /// anything else happens.
    async fn execute(&mut self) {
        let before = self.setup.state();
        while !self.actions.is_empty() {
            for action in std::mem::take(&mut self.actions) {
                if let Some(event) = self.apply(action).await {
                    self.setup.on_event(event, Instant::now(), &mut self.actions);
                }
            }
        }
        self.show_state();
        if self.setup.state() == PeerState::Connected && before != PeerState::Connected {
            self.refresh_path().await;
        }
    }

    /// Carries out one action; the event it produced, if any.
    async fn apply(&mut self, action: Action) -> Option<Event> {
        let peer = self.setup.peer();
        match action {
            Action::Send(info) => self.signal.send(info),
            Action::Unsent(error) => tracing::warn!(%peer, "a setup message was not sent: {error}"),
            Action::Connect { conn, offer } => {
                return Some(match self.connect(conn, offer).await {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!(%peer, %conn, "cannot set up a connection: {error:#}");
                        Event::BuildFailed(conn)
                    }
                });
            }
            Action::ApplyAnswer { conn, sdp } => {
                let link = self.links.get(&conn)?;
                if let Err(error) = link.apply_answer(sdp).await {
                    tracing::warn!(%peer, %conn, "cannot apply the answer: {error:#}");
                    return Some(Event::BuildFailed(conn));
                }
            }
            Action::ApplyCandidate { conn, candidate } => {
                if let Some(link) = self.links.get(&conn) {
                    link.add_candidate(candidate).await;
                }
            }
            Action::Close(conn) => self.close(conn),
            Action::CarryData(carrier) => self.carry(carrier),
            Action::RelayPing => {
                if let Some(relay) = &self.relay {
                    relay.ping();
                }
            }
            Action::Ping(conn) => {
                if let Some(ctl) = self.links.get(&conn).and_then(|link| link.ctl.ctl.get()) {
                    let ping = crate::ctl::ping(clock_micros(self.sinks.clock));
                    let _ = ctl.try_send_text(&ping).await;
                }
            }
            Action::ProbeSignalling => self.signal.probe(),
            Action::Handover(cause) => {
                tracing::info!(%peer, "handover: {cause}");
                self.stats.handovers.fetch_add(1, Ordering::Relaxed);
            }
            Action::Refused { error, total, log } => {
                self.stats.setup_refused.store(total, Ordering::Relaxed);
                if log {
                    tracing::warn!(%peer, refused = total, "refused a setup message: {error}");
                }
            }
            Action::Finished => self.finished = true,
        }
        None
    }

    /// Builds connection `conn` and makes its offer (initiator) or answers
    /// `offer` (follower).
    async fn connect(&mut self, conn: ConnId, offer: Option<String>) -> anyhow::Result<Event> {
        let ice_servers = self.ice_servers.borrow().clone();
        let link = connection::build(conn, ice_servers, &self.sinks).await?;
        let made = match offer {
            None => link
                .offer(conn, &self.sinks)
                .await
                .map(|sdp| Event::OfferReady(conn, sdp)),
            Some(offer) => link.answer(offer).await.map(|sdp| Event::AnswerReady(conn, sdp)),
        };
        // Held even when the offer or answer failed, so that the
        // `BuildFailed` the caller reports closes it.
        self.links.insert(conn, link);
        made
    }

    /// Tells the data path where datagrams go, and says so in the log when
    /// the relay takes over or hands back: the one line that matters on a
    /// network that blocks UDP.
    fn carry(&mut self, carrier: Option<Carrier>) {
        let peer = self.setup.peer();
        let relayed = carrier == Some(Carrier::Relay);
        let was_relayed = self.stats.relayed.swap(relayed, Ordering::Relaxed);
        match (was_relayed, carrier) {
            (false, Some(Carrier::Relay)) => tracing::warn!(
                %peer,
                "no data channel path to the peer (UDP blocked?); WireGuard goes through the signalling server's relay"
            ),
            (true, Some(Carrier::Link(conn))) => {
                tracing::info!(%peer, %conn, "a data channel opened; WireGuard left the signalling server's relay")
            }
            (true, None) => tracing::warn!(%peer, "the signalling server's relay stopped answering; datagrams wait"),
            _ => {}
        }
        if let Some(path) = &self.sinks.path {
            let _ = path.send(datapath::PathCommand::Carry(carrier));
        }
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(path) = &self.sinks.path {
            let _ = path.send(datapath::PathCommand::Close(conn));
        }
        if let Some(link) = self.links.remove(&conn) {
            tokio::spawn(async move {
                let _ = link.connection.close().await;
            });
        }
    }

    fn show_state(&self) {
        if self.stats.state.set(self.setup.state()) {
            self.stats.changes.notify();
        }
        self.stats.sealing.store(self.setup.seals(), Ordering::Relaxed);
    }

    async fn refresh_path(&self) {
        let (current, _) = self.setup.connections();
        let connected = self.setup.state() == PeerState::Connected;
        let path = match current.and_then(|conn| self.links.get(&conn)) {
            Some(link) if connected => crate::path_stats::selected_path(link.connection.as_ref()).await,
            _ => None,
        };
        if let Ok(mut slot) = self.stats.path.lock() {
            *slot = path;
        }
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
