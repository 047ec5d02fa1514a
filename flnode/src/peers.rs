//! The configured peers of a running node and their tasks: fixed at start
//! in manual mode (each with the local port the user's WireGuard sends
//! to), the allow-list in managed mode, where peers come and go at run
//! time (`flnode peers add` / `remove`) and the WireGuard manager follows
//! the list.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::udp_batch::BatchSocket;
use anyhow::Context;
use flproto::overlay::OverlayAddresses;
use flproto::peer_setup::Local;
use flproto::NodeId;
use tokio::sync::{mpsc, watch, Notify};

use crate::allow_list::{Added, AllowList, AllowedPeer, PeerName};
use crate::peer::{ChangeSignal, Peer, PeerConfig, PeerInput, PeerStats};
use crate::relay_link::RelayPeers;
use crate::signal_client::{SignalEvent, SignalSender};
use crate::wireguard::manager::ManagedPeer;

/// Inputs queued for one peer task.
const PEER_INPUT_QUEUE: usize = 256;

/// Where managed mode binds each peer's WireGuard-facing socket: a port of
/// the kernel's choosing on loopback, named as the peer's endpoint.
const MANAGED_PEER_BIND: &str = "127.0.0.1:0";

pub struct PeerEntry {
    pub inputs: mpsc::Sender<PeerInput>,
    pub stats: Arc<PeerStats>,
    /// The WireGuard-facing port; `None` for a test peer.
    pub local: Option<SocketAddr>,
}

/// What every peer task is started with.
pub struct PeerFactory {
    /// This node's key, session and sealing policy, shared by every peer.
    pub local: Local,
    pub signal: SignalSender,
    /// The local WireGuard's own UDP address.
    pub wireguard: SocketAddr,
    /// The configured servers and the signalling server's TURN relay.
    pub ice_servers: watch::Receiver<Vec<webrtc::peer_connection::RTCIceServer>>,
    /// STUN only: a test peer never gets the user's TURN relay.
    pub test_peer_ice_servers: Vec<webrtc::peer_connection::RTCIceServer>,
    pub test_peer_budget: u64,
    /// Each configured peer's end of the signalling server's relay.
    pub relay: RelayPeers,
    /// Managed mode: this node's overlay addresses (announced to each
    /// peer) and who to tell when a peer's state changes.
    pub managed: Option<(OverlayAddresses, Arc<Notify>)>,
    /// Whether (and within what) peers' datagrams in halves are joined.
    pub halves: Option<flproto::halves::ReassemblyLimits>,
}

impl PeerFactory {
    /// Starts the task of a configured peer, with its socket and its end
    /// of the signalling server's relay.
    fn start(&self, id: NodeId, socket: Arc<BatchSocket>) -> PeerEntry {
        self.start_with(PeerConfig {
            id,
            socket: Some(socket),
            wireguard: self.wireguard,
            ice_servers: self.ice_servers.clone(),
            budget: None,
            announce: self.managed.as_ref().map(|(own, _)| *own),
            relay: Some(self.relay.attach(id)),
            halves: self.halves,
        })
    }

    /// Starts the task of a test peer: no socket, no TURN, a byte budget.
    pub fn start_test_peer(&self, id: NodeId) -> PeerEntry {
        self.start_with(PeerConfig {
            id,
            socket: None,
            wireguard: self.wireguard,
            ice_servers: watch::channel(self.test_peer_ice_servers.clone()).1,
            budget: Some(Arc::new(crate::admission::ByteBudget::new(self.test_peer_budget))),
            announce: None,
            relay: None,
            halves: None,
        })
    }

    fn start_with(&self, config: PeerConfig) -> PeerEntry {
        let local = config.socket.as_ref().and_then(|socket| socket.local_addr().ok());
        let stats = Arc::new(PeerStats {
            changes: match (&self.managed, &config.socket) {
                (Some((_, notify)), Some(_)) => ChangeSignal::to(notify.clone()),
                _ => ChangeSignal::default(),
            },
            ..PeerStats::default()
        });
        let peer = Peer::new(self.local.clone(), config, self.signal.clone(), stats.clone());
        let (inputs, inputs_rx) = mpsc::channel(PEER_INPUT_QUEUE);
        tokio::spawn(peer.run(inputs_rx));
        PeerEntry { inputs, stats, local }
    }
}

/// Which mode the peers are in.
enum Mode {
    Manual,
    Managed {
        allow: AllowList,
        /// The peers the WireGuard manager follows.
        published: watch::Sender<Vec<ManagedPeer>>,
    },
}

/// The configured peers.
pub struct Peers {
    pub factory: PeerFactory,
    entries: HashMap<NodeId, PeerEntry>,
    mode: Mode,
}

impl Peers {
    /// Manual mode: binds every peer's port first, so that a port in use
    /// is reported before anything starts.
    pub fn manual(factory: PeerFactory, peers: &[(NodeId, SocketAddr)]) -> anyhow::Result<Peers> {
        let mut sockets = Vec::new();
        for (id, local) in peers {
            let socket = crate::udp::bind(*local)
                .with_context(|| format!("cannot bind {local} for peer {id} (is the port in use?)"))?;
            sockets.push((*id, Arc::new(socket)));
        }
        let entries = sockets
            .into_iter()
            .map(|(id, socket)| (id, factory.start(id, socket)))
            .collect();
        Ok(Peers {
            factory,
            entries,
            mode: Mode::Manual,
        })
    }

    /// Managed mode: a task for every allowed peer; the receiver is what
    /// the WireGuard manager follows.
    pub fn managed(
        factory: PeerFactory,
        allow: AllowList,
    ) -> anyhow::Result<(Peers, watch::Receiver<Vec<ManagedPeer>>)> {
        let (published, followed) = watch::channel(Vec::new());
        let ids: Vec<NodeId> = allow.iter().map(|peer| peer.id).collect();
        let mut peers = Peers {
            factory,
            entries: HashMap::new(),
            mode: Mode::Managed { allow, published },
        };
        for id in ids {
            peers.start_managed(id)?;
        }
        peers.publish();
        Ok((peers, followed))
    }

    fn start_managed(&mut self, id: NodeId) -> anyhow::Result<()> {
        let bind = MANAGED_PEER_BIND.parse().context("loopback address")?;
        let socket = crate::udp::bind(bind).with_context(|| format!("cannot bind a local port for peer {id}"))?;
        let entry = self.factory.start(id, Arc::new(socket));
        self.entries.insert(id, entry);
        Ok(())
    }

    fn publish(&self) {
        if let Mode::Managed { allow, published } = &self.mode {
            let list = allow
                .iter()
                .filter_map(|peer| {
                    let entry = self.entries.get(&peer.id)?;
                    Some(ManagedPeer {
                        id: peer.id,
                        local: entry.local?,
                        stats: entry.stats.clone(),
                    })
                })
                .collect();
            published.send_replace(list);
        }
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.entries.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The allow-list (managed mode).
    pub fn allow_list(&self) -> Option<&AllowList> {
        match &self.mode {
            Mode::Managed { allow, .. } => Some(allow),
            Mode::Manual => None,
        }
    }

    /// Every configured peer, in allow-list order in managed mode.
    pub fn entries(&self) -> Vec<(&NodeId, &PeerEntry)> {
        match &self.mode {
            Mode::Managed { allow, .. } => allow
                .iter()
                .filter_map(|peer| self.entries.get_key_value(&peer.id))
                .collect(),
            Mode::Manual => {
                let mut entries: Vec<_> = self.entries.iter().collect();
                entries.sort_by_key(|(id, _)| **id);
                entries
            }
        }
    }

    /// Adds `id` to the allow-list (or renames it) and starts its task; a
    /// new peer is asked to connect at once if the node is registered.
    pub fn add(&mut self, me: &NodeId, id: &str, name: Option<&str>, registered: bool) -> Result<String, String> {
        let Mode::Managed { allow, .. } = &mut self.mode else {
            return Err(manual_refusal());
        };
        let peer = AllowedPeer {
            id: crate::allow_list::parse_peer_id(id).map_err(|error| error.to_string())?,
            name: name
                .map(PeerName::parse)
                .transpose()
                .map_err(|error| error.to_string())?,
        };
        let id = peer.id;
        let label = peer.label();
        let added = allow.add(peer, me).map_err(|error| error.to_string())?;
        if added == Added::New {
            if let Err(error) = self.start_managed(id) {
                if let Mode::Managed { allow, .. } = &mut self.mode {
                    allow.remove(&id);
                }
                return Err(format!("{error:#}"));
            }
            if registered {
                self.tell(&id, PeerInput::Kick(None));
            }
            tracing::info!(peer = %id, name = %label, "peer added to the allow-list");
        }
        self.publish();
        let addresses = OverlayAddresses::of(&id);
        Ok(match added {
            Added::New => format!("added {id} ({label}) {addresses}"),
            Added::Renamed => format!("renamed {id} to {label}"),
            Added::Unchanged => format!("{id} ({label}) is on the list already"),
        })
    }

    /// Takes `id` off the allow-list; its task ends and the WireGuard
    /// manager removes its entry.
    pub fn remove(&mut self, id: &str) -> Result<String, String> {
        let Mode::Managed { allow, .. } = &mut self.mode else {
            return Err(manual_refusal());
        };
        let id = crate::allow_list::parse_peer_id(id).map_err(|error| error.to_string())?;
        if !allow.remove(&id) {
            return Err(format!("{id} is not on the allow-list"));
        }
        // Dropping the entry closes the task's inputs; it closes its
        // connections and ends.
        self.entries.remove(&id);
        self.factory.relay.detach(&id);
        self.publish();
        tracing::info!(peer = %id, "peer removed from the allow-list");
        Ok(format!("removed {id}"))
    }

    fn tell(&self, id: &NodeId, input: PeerInput) {
        if let Some(peer) = self.entries.get(id) {
            let _ = peer.inputs.try_send(input);
        }
    }

    /// Hands a signalling event to the peers it concerns.
    pub fn dispatch(&self, me: &NodeId, event: SignalEvent) {
        match event {
            // Lists are capped samples, so absence proves nothing: on every
            // (re)registration every peer tries; an offline one is reported
            // back as NotConnected.
            SignalEvent::Online(listed) => self.entries.keys().for_each(|id| {
                let opens = listed.iter().find(|node| node.id == *id).map(|node| node.opens);
                self.tell(id, PeerInput::Kick(opens));
            }),
            SignalEvent::Presence { joined, left } => {
                joined
                    .iter()
                    .for_each(|node| self.tell(&node.id, PeerInput::Kick(Some(node.opens))));
                left.iter().for_each(|id| self.tell(id, PeerInput::Offline));
            }
            SignalEvent::NotConnected(id) => self.tell(&id, PeerInput::Offline),
            SignalEvent::Setup(setup) => {
                if let Some(other) = setup.counterpart_of(me) {
                    self.tell(&other, PeerInput::Setup(setup));
                }
            }
            // The node loop takes them (new connections use them).
            SignalEvent::TurnCredentials(_) => {}
            SignalEvent::Relay(granted) => self
                .entries
                .keys()
                .for_each(|id| self.tell(id, PeerInput::Relay(granted))),
            SignalEvent::Disconnected => self
                .entries
                .keys()
                .for_each(|id| self.tell(id, PeerInput::Relay(false))),
        }
    }

    /// The machine's addresses changed: every peer rebuilds.
    pub fn network_changed(&self) {
        for peer in self.entries.values() {
            let _ = peer.inputs.try_send(PeerInput::NetworkChanged);
        }
    }
}

fn manual_refusal() -> String {
    "this node runs in manual mode (--peer ID=ADDR): its peers are fixed at start, with your own WireGuard".into()
}
