//! The running node: one signalling connection, one task per configured
//! peer, and the local control socket that `flnode status` reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use flproto::identity::NodeKey;
use flproto::setup_auth::SessionId;
use flproto::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::{mpsc, watch};

use crate::admission::{ByteBudget, TestPeerPolicy};
use crate::ice_servers::IceServer;
use crate::peer::{Peer, PeerConfig, PeerInput, PeerStats};
use crate::signal_client::{self, AuthMode, SignalEvent, SignalSender};
use crate::test_peers::TestPeers;
use crate::turn_relay::IceServerList;

/// Signalling events (node lists, setups) waiting for the node's loop; the
/// signalling client waits when it is full rather than dropping setups.
const SIGNAL_EVENT_QUEUE: usize = 1024;

/// Inputs queued for one peer task.
const PEER_INPUT_QUEUE: usize = 256;

/// What `flnode up` runs with.
#[derive(Debug)]
pub struct NodeSettings {
    pub config_dir: PathBuf,
    pub signal: String,
    pub wireguard: SocketAddr,
    pub peers: Vec<(NodeId, SocketAddr)>,
    pub auth: AuthMode,
    pub name: String,
    /// STUN and TURN servers for ICE, the default one included.
    pub ice_servers: Vec<IceServer>,
    /// Which nodes that are not configured peers (browsers testing this
    /// node) may connect, to the `ctl` channel only, and how many at once.
    pub test_peers: TestPeerPolicy,
    /// Bytes each test peer may move over its data channels.
    pub test_peer_budget: u64,
    /// Largest message taken from the signalling server.
    pub max_signal_message: usize,
    /// Extra trusted certificates (PEM) for a `wss://` signalling server.
    pub signal_ca: Option<PathBuf>,
    /// Threads of the async runtime (1: everything on one thread).
    pub threads: usize,
}

pub struct PeerEntry {
    pub inputs: mpsc::Sender<PeerInput>,
    pub stats: Arc<PeerStats>,
    /// The WireGuard-facing port; `None` for a test peer.
    local: Option<SocketAddr>,
}

/// What every peer task is started with.
pub struct PeerFactory {
    key: Arc<NodeKey>,
    session: SessionId,
    signal: SignalSender,
    wireguard: SocketAddr,
    /// The configured servers and the signalling server's TURN relay.
    ice_servers: watch::Receiver<Vec<webrtc::peer_connection::RTCIceServer>>,
    /// STUN only: a test peer never gets the user's TURN relay.
    test_peer_ice_servers: Vec<webrtc::peer_connection::RTCIceServer>,
    test_peer_budget: u64,
}

impl PeerFactory {
    /// Starts the task of a configured peer, with its socket.
    fn start(&self, id: NodeId, socket: Arc<UdpSocket>) -> PeerEntry {
        self.start_with(PeerConfig {
            id,
            socket: Some(socket),
            wireguard: self.wireguard,
            ice_servers: self.ice_servers.clone(),
            budget: None,
        })
    }

    /// Starts the task of a test peer: no socket, no TURN, a byte budget.
    pub fn start_test_peer(&self, id: NodeId) -> PeerEntry {
        self.start_with(PeerConfig {
            id,
            socket: None,
            wireguard: self.wireguard,
            ice_servers: watch::channel(self.test_peer_ice_servers.clone()).1,
            budget: Some(Arc::new(ByteBudget::new(self.test_peer_budget))),
        })
    }

    fn start_with(&self, config: PeerConfig) -> PeerEntry {
        let local = config.socket.as_ref().and_then(|socket| socket.local_addr().ok());
        let stats = Arc::new(PeerStats::default());
        let peer = Peer::new(
            self.key.clone(),
            self.session,
            config,
            self.signal.clone(),
            stats.clone(),
        );
        let (inputs, inputs_rx) = mpsc::channel(PEER_INPUT_QUEUE);
        tokio::spawn(peer.run(inputs_rx));
        PeerEntry { inputs, stats, local }
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(
    key: NodeKey,
    settings: NodeSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let me = key.id();
    let key = Arc::new(key);
    // One session for this run: peers see a restart as a new session.
    let session = SessionId::random();
    // Bind every peer's socket first, so a port in use is reported at once.
    let mut sockets = Vec::new();
    for (id, local) in &settings.peers {
        let socket = crate::udp::bind(*local)
            .with_context(|| format!("cannot bind {local} for peer {id} (is the port in use?)"))?;
        sockets.push((*id, *local, Arc::new(socket)));
    }
    let control = control_socket(&settings.config_dir)?;

    let (events_tx, mut events) = mpsc::channel(SIGNAL_EVENT_QUEUE);
    let tls = crate::tls::client_config(settings.signal_ca.as_deref())?;
    let (signal, first_registration) = signal_client::spawn(
        settings.signal.clone(),
        tls,
        key.clone(),
        settings.auth,
        settings.name.clone(),
        settings.max_signal_message,
        events_tx,
    );
    let mut ice_servers = IceServerList::new(settings.ice_servers.clone(), settings.signal.clone());
    let factory = PeerFactory {
        key: key.clone(),
        session,
        signal: signal.clone(),
        wireguard: settings.wireguard,
        ice_servers: ice_servers.subscribe(),
        test_peer_ice_servers: crate::ice_servers::stun_only(&settings.ice_servers)
            .map(IceServer::to_rtc)
            .collect(),
        test_peer_budget: settings.test_peer_budget,
    };
    let mut peers: HashMap<NodeId, PeerEntry> = HashMap::new();
    for (id, _, socket) in sockets {
        peers.insert(id, factory.start(id, socket));
    }
    let mut test_peers = TestPeers::new(settings.test_peers.clone());
    // Until the first registration, a failure is a configuration error
    // (exit with it); `flnode status` answers meanwhile.
    let mut first_registration = Some(first_registration);
    let mut network = match crate::netwatch::watch() {
        Ok(changes) => Some(changes),
        Err(error) => {
            tracing::warn!("not watching addresses ({error}); dead paths are found by keepalives only");
            None
        }
    };

    tokio::pin!(shutdown);
    let mut registered = false;
    let registration_failed = |error: anyhow::Error| error.context(format!("cannot register with {}", settings.signal));
    // Every way out of the loop removes the control socket below.
    let outcome = loop {
        tokio::select! {
            first = async { first_registration.as_mut()?.await.ok() }, if first_registration.is_some() => {
                first_registration = None;
                match first {
                    Some(Ok(())) => tracing::info!(
                        node = %me,
                        peers = peers.len(),
                        ice_servers = ?settings.ice_servers,
                        "flnode up"
                    ),
                    Some(Err(error)) => break Err(registration_failed(error)),
                    None => break Err(anyhow::anyhow!("the signalling task ended")),
                }
            }
            event = events.recv() => match event {
                Some(event) => {
                    match event {
                        SignalEvent::Online(_) => registered = true,
                        SignalEvent::Disconnected => registered = false,
                        _ => {}
                    }
                    match event {
                        SignalEvent::TurnCredentials(credentials) => ice_servers.on_credentials(&credentials),
                        SignalEvent::Setup(setup) if setup.counterpart_of(&me).is_some_and(|id| !peers.contains_key(&id)) => {
                            test_peers.on_setup(&me, &factory, setup);
                        }
                        event => dispatch(&me, &peers, event),
                    }
                }
                // The signalling task ends only after a failed first
                // registration, whose error it has sent: report that one
                // (both arms may be ready at once; never exit 0 here).
                None => {
                    let error = match first_registration.take() {
                        Some(first) => first.await.ok().and_then(Result::err),
                        None => None,
                    };
                    break Err(error.map_or_else(|| anyhow::anyhow!("the signalling task ended"), registration_failed));
                }
            },
            accepted = control.accept() => {
                if let Ok((mut stream, _)) = accepted {
                    let report = status_report(&me, registered, &peers, &test_peers);
                    tokio::spawn(async move { let _ = stream.write_all(report.as_bytes()).await; });
                }
            }
            Some(change) = async { network.as_mut()?.recv().await }, if network.is_some() => {
                tracing::info!(added = ?change.added, removed = ?change.removed, "addresses changed");
                if !change.removed.is_empty() {
                    signal.addresses_gone(change.removed.clone());
                }
                for peer in peers.values() {
                    let _ = peer.inputs.try_send(PeerInput::NetworkChanged);
                }
            }
            () = &mut shutdown => break Ok(()),
        }
    };
    let _ = std::fs::remove_file(control_path(&settings.config_dir));
    outcome
}

fn dispatch(me: &NodeId, peers: &HashMap<NodeId, PeerEntry>, event: SignalEvent) {
    let tell = |id: &NodeId, input: PeerInput| {
        if let Some(peer) = peers.get(id) {
            let _ = peer.inputs.try_send(input);
        }
    };
    match event {
        // Lists are capped samples, so absence proves nothing: on every
        // (re)registration every peer tries; an offline one is reported back
        // as NotConnected.
        SignalEvent::Online(_) => peers.keys().for_each(|id| tell(id, PeerInput::Kick)),
        SignalEvent::Presence { joined, left } => {
            joined.iter().for_each(|id| tell(id, PeerInput::Kick));
            left.iter().for_each(|id| tell(id, PeerInput::Offline));
        }
        SignalEvent::NotConnected(id) => tell(&id, PeerInput::Offline),
        SignalEvent::Setup(setup) => {
            if let Some(other) = setup.counterpart_of(me) {
                tell(&other, PeerInput::Setup(setup));
            }
        }
        SignalEvent::Disconnected | SignalEvent::TurnCredentials(_) => {}
    }
}

pub fn control_path(dir: &std::path::Path) -> PathBuf {
    dir.join("flnode.sock")
}

fn control_socket(dir: &std::path::Path) -> anyhow::Result<UnixListener> {
    let path = control_path(dir);
    if path.exists() {
        // A stale socket from a node that died; a live one answers.
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            anyhow::bail!(
                "another flnode is running with {} (its control socket answers)",
                dir.display()
            );
        }
        std::fs::remove_file(&path)?;
    }
    UnixListener::bind(&path).with_context(|| format!("cannot create control socket {}", path.display()))
}

/// One line per peer, as `flnode status` prints it.
fn status_report(me: &NodeId, registered: bool, peers: &HashMap<NodeId, PeerEntry>, test_peers: &TestPeers) -> String {
    let signal = if registered { "registered" } else { "connecting" };
    let (taken, slots) = test_peers.slots();
    let mut report = format!(
        "node {me} signal {signal}  test-peer slots {taken}/{slots}  strangers refused {}\n",
        test_peers.refused()
    );
    for (id, peer) in peers {
        let s = &peer.stats;
        let path = s.path.lock().ok().and_then(|p| p.clone());
        let (path, ice_rtt) = match path {
            Some(info) => (info.path, format!("{:.2} ms", info.rtt_ms)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        // Our own keepalive's round trip is the one a user feels; ICE's
        // consent checks measure only the UDP path (and over TURN, webrtc
        // reports them hundreds of milliseconds high).
        let rtt = match s.ctl_rtt_micros.load(Ordering::Relaxed) {
            0 => "-".to_owned(),
            micros => format!("{:.2} ms", micros as f64 / 1000.0),
        };
        let rtt = format!("{rtt} (ctl ping; ICE check {ice_rtt})");
        report.push_str(&format!(
            "peer {id} {}\n  local {}  path {path}  rtt {rtt}\n  tx {} packets {} bytes  rx {} packets {} bytes  drops {} not-open {} full {} foreign  setup refused {}  handovers {}\n",
            s.state.get(),
            peer.local.map(|local| local.to_string()).unwrap_or_default(),
            s.tx_packets.load(Ordering::Relaxed),
            s.tx_bytes.load(Ordering::Relaxed),
            s.rx_packets.load(Ordering::Relaxed),
            s.rx_bytes.load(Ordering::Relaxed),
            s.drops_not_open.load(Ordering::Relaxed),
            s.drops_full.load(Ordering::Relaxed),
            s.drops_foreign.load(Ordering::Relaxed),
            s.setup_refused.load(Ordering::Relaxed),
            s.handovers.load(Ordering::Relaxed),
        ));
    }
    for (id, peer) in test_peers.live() {
        let s = &peer.stats;
        let path = s.path.lock().ok().and_then(|p| p.clone());
        let path = path.map(|info| info.path).unwrap_or_else(|| "-".to_owned());
        report.push_str(&format!("test-peer {id} {}  path {path}  (ctl only)\n", s.state.get()));
    }
    report
}
