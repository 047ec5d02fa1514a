//! The task that keeps the managed interface's peer table and routes what
//! the allow-list and the peers' states say they should be: on every
//! change of either, and every [`RECONCILE_INTERVAL`] (for grace periods
//! that run out, and for anyone who changed the interface behind flnode's
//! back). It also reads WireGuard's own view of each peer (handshake,
//! bytes) for `flnode status`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flproto::peer_setup::PeerState;
use flproto::NodeId;
use tokio::sync::{watch, Notify};

use super::device::{Backend, DeviceView, PeerOp, PeerView};
use super::interface::ManagedInterface;
use super::plan::{plan, Clash, Fate, PeerFacts, PeerPlan, Presence, Reach};
use super::reconcile::{peer_ops, route_ops, RouteOp};
use crate::peer::PeerStats;

/// How often the table is checked when nothing changed.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);
/// At most one log line per this interval for a failure that repeats
/// (the device not answering, say); `flnode status` shows the last one.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One allowed peer as the node runs it.
#[derive(Clone)]
pub struct ManagedPeer {
    pub id: NodeId,
    /// flnode's local port for the peer.
    pub local: SocketAddr,
    pub stats: Arc<PeerStats>,
}

/// What `flnode status` shows of the interface.
#[derive(Debug, Clone)]
pub struct WgStatus {
    pub interface: String,
    pub backend: Backend,
    pub listen_port: u16,
    pub own: flproto::overlay::OverlayAddresses,
    /// Each allowed peer's plan and its entry as the device has it.
    pub peers: Vec<(PeerPlan, Option<PeerView>)>,
    /// The last failure, while it lasts.
    pub error: Option<String>,
}

impl WgStatus {
    pub fn peer(&self, id: &NodeId) -> Option<&(PeerPlan, Option<PeerView>)> {
        self.peers.iter().find(|(plan, _)| plan.id == *id)
    }
}

/// Starts the task; it runs until `peers`' sender is dropped.
pub fn spawn(
    me: NodeId,
    interface: Arc<ManagedInterface>,
    grace: Duration,
    peers: watch::Receiver<Vec<ManagedPeer>>,
    changes: Arc<Notify>,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<WgStatus>) {
    let (status_tx, status) = watch::channel(WgStatus {
        interface: interface.name.to_string(),
        backend: interface.backend(),
        listen_port: interface.listen_port,
        own: interface.own,
        peers: Vec::new(),
        error: None,
    });
    let manager = Manager {
        me,
        interface,
        grace,
        presence: Presence::default(),
        reported: HashSet::new(),
        logged_error: None,
        status: status_tx,
    };
    (tokio::spawn(manager.run(peers, changes)), status)
}

struct Manager {
    me: NodeId,
    interface: Arc<ManagedInterface>,
    grace: Duration,
    presence: Presence,
    /// Clashes already logged (a line when one appears, not every pass).
    reported: HashSet<(NodeId, IpAddr)>,
    logged_error: Option<(String, Instant)>,
    status: watch::Sender<WgStatus>,
}

impl Manager {
    async fn run(mut self, mut peers: watch::Receiver<Vec<ManagedPeer>>, changes: Arc<Notify>) {
        let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let list = peers.borrow_and_update().clone();
            let outcome = self.reconcile(&list).await;
            self.note(outcome);
            tokio::select! {
                changed = peers.changed() => if changed.is_err() { return },
                () = changes.notified() => {}
                _ = tick.tick() => {}
            }
        }
    }

    /// One pass: plan, compare with the device, change what differs.
    async fn reconcile(&mut self, list: &[ManagedPeer]) -> Result<(), String> {
        let now = Instant::now();
        let facts: Vec<PeerFacts> = list
            .iter()
            .map(|peer| PeerFacts {
                id: peer.id,
                local: peer.local,
                reach: match peer.stats.state.state() {
                    PeerState::Offline => Reach::Offline,
                    PeerState::Connected | PeerState::Handover => Reach::Connected,
                    PeerState::Waiting | PeerState::Connecting | PeerState::Failed => Reach::Online,
                },
                announced: peer.stats.announced.lock().ok().and_then(|announced| *announced),
            })
            .collect();
        self.presence.update(&facts, now);
        let plans = plan(&self.me, self.interface.own, &facts, &self.presence, now, self.grace);
        self.report_clashes(&plans);
        let interface = &self.interface;
        let wanted: Vec<_> = plans.iter().filter_map(|plan| plan.entry.clone()).collect();
        let device = &interface.device;
        let mut view = device.view().await.map_err(|error| error.to_string())?;
        if view.public_key != Some(interface.public) || view.listen_port != interface.listen_port {
            tracing::warn!(interface = %interface.name, "the interface's key or port changed; setting them again");
            device
                .set_identity(&interface.secret, interface.listen_port)
                .await
                .map_err(|error| error.to_string())?;
        }
        let renew: Vec<_> = plans
            .iter()
            .filter(|plan| plan.renew)
            .filter_map(|plan| Some(plan.entry.as_ref()?.key))
            .collect();
        let ops = peer_ops(&wanted, &view.peers, &renew);
        if !ops.is_empty() {
            device.apply(&ops).await.map_err(|error| error.to_string())?;
            log_ops(&ops, &plans);
            view = device.view().await.map_err(|error| error.to_string())?;
        }
        // WireGuard's view is shown even when a route cannot be set.
        self.publish(plans, &view);
        let routes = interface
            .links
            .overlay_routes(interface.index)
            .await
            .map_err(|error| error.to_string())?;
        for op in route_ops(&wanted, &routes) {
            let done = match op {
                RouteOp::Add(net) => interface.links.add_route(interface.index, net, interface.own).await,
                RouteOp::Remove(net) => interface.links.remove_route(interface.index, net).await,
            };
            done.map_err(|error| format!("route {op:?}: {error}"))?;
        }
        Ok(())
    }

    fn publish(&self, plans: Vec<PeerPlan>, view: &DeviceView) {
        let peers = plans
            .into_iter()
            .map(|plan| {
                let entry = plan
                    .entry
                    .as_ref()
                    .and_then(|entry| view.peers.iter().find(|peer| peer.key == entry.key).cloned());
                (plan, entry)
            })
            .collect();
        self.status.send_modify(|status| status.peers = peers);
    }

    /// Logs a failure (once per [`ERROR_LOG_INTERVAL`] while it repeats)
    /// and shows it in the status until a pass succeeds.
    fn note(&mut self, outcome: Result<(), String>) {
        let Err(error) = outcome else {
            if self.logged_error.take().is_some() {
                tracing::info!(interface = %self.interface.name, "the WireGuard interface is in order again");
                self.status.send_modify(|status| status.error = None);
            }
            return;
        };
        let now = Instant::now();
        let due = match &self.logged_error {
            Some((last, at)) => *last != error || now.duration_since(*at) >= ERROR_LOG_INTERVAL,
            None => true,
        };
        if due {
            tracing::warn!(interface = %self.interface.name, "cannot update the WireGuard interface: {error}");
            self.logged_error = Some((error.clone(), now));
        }
        self.status.send_modify(|status| status.error = Some(error));
    }

    /// One log line for each address clash when it first appears.
    fn report_clashes(&mut self, plans: &[PeerPlan]) {
        let mut current = HashSet::new();
        for plan in plans {
            let clashes = [
                clash_of(&plan.v4).map(|(ip, clash)| (IpAddr::V4(ip), clash)),
                clash_of(&plan.v6).map(|(ip, clash)| (IpAddr::V6(ip), clash)),
            ];
            for (address, clash) in clashes.into_iter().flatten() {
                current.insert((plan.id, address));
                if self.reported.contains(&(plan.id, address)) {
                    continue;
                }
                let with = match clash {
                    Clash::ThisNode => "this node".to_owned(),
                    Clash::Peer(other) => format!("peer {other}"),
                };
                tracing::warn!(
                    peer = %plan.id,
                    %address,
                    "overlay address clash with {with}: routed to neither (reachable over the other family); \
                     give one of the two another --address"
                );
            }
        }
        self.reported = current;
    }
}

fn clash_of<A: Copy>(fate: &Fate<A>) -> Option<(A, Clash)> {
    match fate {
        Fate::Clashes(address, clash) => Some((*address, *clash)),
        Fate::Routed(_) => None,
    }
}

fn log_ops(ops: &[PeerOp], plans: &[PeerPlan]) {
    for op in ops {
        match op {
            PeerOp::Set(entry) => {
                let peer = plans
                    .iter()
                    .find(|plan| plan.entry.as_ref() == Some(entry))
                    .map(|plan| plan.id);
                tracing::info!(peer = ?peer, key = %entry.key, endpoint = %entry.endpoint, "WireGuard peer set");
            }
            PeerOp::Remove(key) => tracing::info!(%key, "WireGuard peer removed"),
        }
    }
}
