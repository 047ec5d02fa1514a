//! The running node: one signalling connection, one task per configured
//! peer, the control socket that `flnode status` and `flnode peers` talk
//! to, and in managed mode the WireGuard interface and the task that keeps
//! its peer table.

use std::path::PathBuf;
use std::sync::Arc;

use flproto::identity::NodeKey;
use flproto::overlay::OverlayAddresses;
use flproto::peer_setup::{Local, SealPolicy};
use flproto::{NodeId, NodeInfo};
use tokio::sync::{mpsc, watch, Notify};

use crate::admission::TestPeerPolicy;
use crate::allow_list::AllowList;
use crate::control::{Asked, ControlSocket, Reply, Request, REQUEST_QUEUE};
use crate::ice_servers::IceServer;
use crate::peers::{PeerFactory, Peers};
use crate::signal_client::{self, AuthMode, SignalEvent};
use crate::test_peers::TestPeers;
use crate::tunnel_settings::{ManagedSettings, Tunnel};
use crate::turn_relay::IceServerList;
use crate::wireguard::interface::ManagedInterface;
use crate::wireguard::manager::{self, WgStatus};

/// Signalling events (node lists, setups) waiting for the node's loop; the
/// signalling client waits when it is full rather than dropping setups.
const SIGNAL_EVENT_QUEUE: usize = 1024;

/// What `flnode up` runs with.
#[derive(Debug)]
pub struct NodeSettings {
    pub config_dir: PathBuf,
    pub signal: String,
    /// Manual or managed WireGuard, with the peers.
    pub tunnel: Tunnel,
    pub auth: AuthMode,
    /// Whether setup messages are sealed (`--require-sealed`, `--plain-setups`).
    pub sealing: SealPolicy,
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
    /// How many halves of large datagrams are held for their partners,
    /// and how long; `None`: peers are asked for whole datagrams.
    pub halves: Option<flproto::halves::ReassemblyLimits>,
}

/// This node's overlay addresses: `--address` where given, else derived.
pub fn own_addresses(me: &NodeId, managed: &ManagedSettings) -> OverlayAddresses {
    let derived = OverlayAddresses::of(me);
    OverlayAddresses {
        v4: managed.addresses.v4.unwrap_or(derived.v4),
        v6: managed.addresses.v6.unwrap_or(derived.v6),
    }
}

/// Runs until `shutdown` resolves. In managed mode the interface is set up
/// first and removed at the end, whatever ended the run.
pub async fn run(
    key: NodeKey,
    settings: NodeSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // First: a second node with the same directory must not touch the
    // interface of the first.
    let mut control = ControlSocket::bind(&settings.config_dir)?;
    let Tunnel::Managed(managed) = &settings.tunnel else {
        return serve(key, &settings, None, &mut control, shutdown).await;
    };
    let me = key.id();
    let allow = AllowList::new(managed.peers.iter().cloned(), &me)?;
    let own = own_addresses(&me, managed);
    let interface =
        ManagedInterface::open(&key, &managed.interface, managed.backend, own, managed.keep_interface).await?;
    tracing::info!(
        interface = %interface.name,
        backend = interface.backend().name(),
        port = interface.listen_port,
        v4 = %own.v4,
        v6 = %own.v6,
        "WireGuard interface ready"
    );
    let interface = Arc::new(interface);
    let outcome = serve(key, &settings, Some((allow, interface.clone())), &mut control, shutdown).await;
    match Arc::try_unwrap(interface) {
        Ok(interface) => interface.close().await,
        Err(_) => tracing::warn!("the WireGuard interface is still in use; not removed"),
    }
    outcome
}

/// The node's loop, with the interface (managed mode) already set up.
async fn serve(
    key: NodeKey,
    settings: &NodeSettings,
    managed: Option<(AllowList, Arc<ManagedInterface>)>,
    control: &mut ControlSocket,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let me = key.id();
    let key = Arc::new(key);
    // One session for this run: peers see a restart as a new session.
    let local = Local::new(key.clone(), settings.sealing, rand::random());
    let (events_tx, mut events) = mpsc::channel(SIGNAL_EVENT_QUEUE);
    let (relay_client, relay_peers) = crate::relay_link::plumb();
    let tls = crate::tls::client_config(settings.signal_ca.as_deref())?;
    let (signal, first_registration) = signal_client::spawn(
        settings.signal.clone(),
        tls,
        key.clone(),
        settings.auth,
        NodeInfo::v3(&settings.name, "flnode", me, "").advertising(settings.sealing.opens()),
        settings.max_signal_message,
        events_tx,
        relay_client,
    );
    let mut ice_servers = IceServerList::new(settings.ice_servers.clone(), settings.signal.clone());
    let changes = Arc::new(Notify::new());
    let mut factory = PeerFactory {
        local,
        signal: signal.clone(),
        wireguard: "127.0.0.1:0".parse()?,
        ice_servers: ice_servers.subscribe(),
        test_peer_ice_servers: crate::ice_servers::stun_only(&settings.ice_servers)
            .map(IceServer::to_rtc)
            .collect(),
        test_peer_budget: settings.test_peer_budget,
        relay: relay_peers,
        managed: None,
        halves: settings.halves,
    };
    let mut wireguard: Option<(tokio::task::JoinHandle<()>, watch::Receiver<WgStatus>)> = None;
    let mut peers = match (&settings.tunnel, managed) {
        (Tunnel::Manual { wireguard, peers }, _) => {
            factory.wireguard = *wireguard;
            Peers::manual(factory, peers)?
        }
        (Tunnel::Managed(managed), Some((allow, interface))) => {
            factory.wireguard = std::net::SocketAddr::from(([127, 0, 0, 1], interface.listen_port));
            factory.managed = Some((interface.own, changes.clone()));
            let (peers, followed) = Peers::managed(factory, allow)?;
            wireguard = Some(manager::spawn(me, interface, managed.peer_grace, followed, changes));
            peers
        }
        (Tunnel::Managed(_), None) => anyhow::bail!("managed mode without an interface"),
    };
    let (requests_tx, mut requests) = mpsc::channel::<Asked>(REQUEST_QUEUE);
    let control_task = control.serve(requests_tx);

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
    // What the server said about relaying for us, for `flnode status`.
    let mut relay = "-";
    let registration_failed = |error: anyhow::Error| error.context(format!("cannot register with {}", settings.signal));
    let outcome = loop {
        tokio::select! {
            first = async { first_registration.as_mut()?.await.ok() }, if first_registration.is_some() => {
                first_registration = None;
                match first {
                    Some(Ok(())) => tracing::info!(
                        node = %me,
                        peers = peers.len(),
                        ice_servers = ?settings.ice_servers,
                        sealing = ?settings.sealing,
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
                        SignalEvent::Disconnected => (registered, relay) = (false, "-"),
                        SignalEvent::Relay(granted) => relay = if granted { "granted" } else { "refused" },
                        _ => {}
                    }
                    match event {
                        SignalEvent::TurnCredentials(credentials) => ice_servers.on_credentials(&credentials),
                        SignalEvent::Setup(setup) if setup.counterpart_of(&me).is_some_and(|id| !peers.contains(&id)) => {
                            test_peers.on_setup(&me, &peers.factory, setup);
                        }
                        event => peers.dispatch(&me, event),
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
            Some((request, reply)) = requests.recv() => {
                let status = wireguard.as_ref().map(|(_, status)| status.borrow().clone());
                let answer = match request {
                    Request::Status => Reply::Ok(crate::status::report(&crate::status::Inputs {
                        me: &me,
                        registered,
                        relay,
                        peers: &peers,
                        test_peers: &test_peers,
                        wireguard: status.as_ref(),
                    })),
                    Request::Peers => Reply::Ok(crate::status::peer_list(&peers, status.as_ref())),
                    Request::PeersAdd { id, name } => to_reply(peers.add(&me, &id, name.as_deref(), registered)),
                    Request::PeersRemove { id } => to_reply(peers.remove(&id)),
                };
                let _ = reply.send(answer);
            }
            Some(change) = async { network.as_mut()?.recv().await }, if network.is_some() => {
                tracing::info!(added = ?change.added, removed = ?change.removed, "addresses changed");
                if !change.removed.is_empty() {
                    signal.addresses_gone(change.removed.clone());
                }
                peers.network_changed();
            }
            () = &mut shutdown => break Ok(()),
        }
    };
    if let Some(task) = control_task {
        task.abort();
    }
    // The peers' tasks end with their inputs; the manager with the list
    // it follows. Wait for it, so that the interface is free to remove.
    drop(peers);
    if let Some((task, _)) = wireguard {
        let _ = task.await;
    }
    outcome
}

fn to_reply(result: Result<String, String>) -> Reply {
    match result {
        Ok(text) => Reply::Ok(text + "\n"),
        Err(error) => Reply::Error(error),
    }
}
