//! State shared by all connections: who is online and where (the
//! registry), how to reach them (their outbound queues) and the metrics.
//! Every cross-connection effect — register, leave, relay, news — goes
//! through here.
//!
//! The hub locks and delivers; it decides nothing about presence. Who is
//! online, who hears what and, in a cluster (`--nats`), which instance
//! holds which node are `flproto::registry`'s decisions: the hub hands it
//! events with the time, and carries out the effects that come back
//! (close a connection that lost its node, publish to the NATS edge, count
//! a refusal). A relay to a node held by another instance goes to the NATS
//! edge too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flproto::announce::VerifiedNode;
use flproto::close::CloseReason;
use flproto::cluster_message::{check_relayed, ClusterMessage, InstanceId};
use flproto::presence::PresenceConfig;
use flproto::registry::{ClusterConfig, Effects, Publish, Registry, Route};
use flproto::relay_share::RelayShare;
use flproto::NodeId;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;
pub use crate::outbox::{Delivery, Kill, Outbound, PeerHandle};
use crate::refusal_log::RefusalLog;

/// What the hub asks the NATS edge to publish.
#[derive(Debug)]
pub enum Outgoing {
    /// A relayed frame, verbatim, from `from` for `to` held by `instance`.
    Relay {
        from: NodeId,
        to: NodeId,
        instance: InstanceId,
        text: Bytes,
    },
    /// Presence news for every instance.
    Broadcast(ClusterMessage),
    /// An answer for one instance.
    Direct(InstanceId, ClusterMessage),
}

impl From<Publish> for Outgoing {
    fn from(publish: Publish) -> Self {
        match publish {
            Publish::Broadcast(message) => Outgoing::Broadcast(message),
            Publish::Direct(instance, message) => Outgoing::Direct(instance, message),
        }
    }
}

/// What became of a relayed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    Queued,
    NotConnected,
    /// Dropped at the destination's queue, for this reason.
    Dropped(Delivery),
}

/// This server's link into the cluster, when there is one.
pub(crate) struct ClusterSide {
    outgoing: mpsc::Sender<Outgoing>,
    /// Whether the NATS connection is up right now.
    connected: AtomicBool,
    /// What was refused from the other instances.
    refused: RefusalLog,
}

pub struct Hub {
    /// Who is online. Lock order: the registry first, then a connection's
    /// books of what is in its queue (`PeerHandle::in_flight`), then the
    /// queue itself (flume's own lock). A relayed frame is offered to its
    /// receiver with the registry held ([`Hub::relay`]); nothing takes the
    /// registry while holding either of the other two, so that cannot
    /// deadlock.
    registry: Mutex<Registry<PeerHandle>>,
    pub metrics: Metrics,
    next_conn: AtomicU64,
    cluster: Option<ClusterSide>,
}

impl Hub {
    pub fn new(config: PresenceConfig) -> Self {
        Self {
            registry: Mutex::new(Registry::new(config)),
            metrics: Metrics::new(),
            next_conn: AtomicU64::new(1),
            cluster: None,
        }
    }

    /// A hub that is one instance of a cluster; what it publishes goes into
    /// `outgoing`, for the NATS edge.
    pub fn clustered(config: PresenceConfig, cluster: ClusterConfig, outgoing: mpsc::Sender<Outgoing>) -> Self {
        let metrics = Metrics::new();
        let side = ClusterSide {
            outgoing,
            connected: AtomicBool::new(false),
            refused: RefusalLog::new(metrics.cluster_refused.clone()),
        };
        Self {
            registry: Mutex::new(Registry::clustered(config, cluster)),
            metrics,
            next_conn: AtomicU64::new(1),
            cluster: Some(side),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Nodes connected to this server.
    pub fn online(&self) -> usize {
        self.registry.lock().local_len()
    }

    /// Nodes online in the whole cluster (this server's alone without one).
    pub fn online_in_cluster(&self) -> usize {
        self.registry.lock().len()
    }

    /// The instance holding `node` and its registration time, in a cluster.
    pub fn owner(&self, node: &NodeId) -> Option<(InstanceId, u64)> {
        self.registry.lock().owner(node)
    }

    /// Records whether the NATS connection is up, for `/healthz` and
    /// `/metrics`.
    pub fn set_cluster_connected(&self, up: bool) {
        if let Some(side) = &self.cluster {
            side.connected.store(up, Ordering::Relaxed);
            self.metrics.cluster_up.set(i64::from(up));
        }
    }

    /// For `/healthz`: this instance, whether NATS is up, and how many
    /// instances are alive (this one included); `None` without a cluster.
    pub fn cluster_status(&self) -> Option<(InstanceId, bool, usize)> {
        let side = self.cluster.as_ref()?;
        let (me, instances) = {
            let registry = self.registry.lock();
            (registry.me()?, registry.instances()?)
        };
        Some((me, side.connected.load(Ordering::Relaxed), instances))
    }

    /// Enters an authenticated node and returns its first node list. An
    /// older connection with the same ID is told and closed; in a cluster,
    /// the other instances learn that this server holds the node now.
    pub fn register(&self, node: &VerifiedNode, handle: PeerHandle) -> String {
        let registered = {
            let mut registry = self.registry.lock();
            let registered = registry.register(node, handle, Instant::now(), wall_clock_us());
            self.update_gauges(&registry);
            registered
        };
        self.carry_out(registered.effects);
        registered.node_list
    }

    /// Removes the node if `conn` still holds it.
    pub fn leave(&self, id: &NodeId, conn: u64) {
        let effects = {
            let mut registry = self.registry.lock();
            let effects = registry.leave(id, |handle| handle.conn == conn);
            self.update_gauges(&registry);
            effects
        };
        self.carry_out(effects);
    }

    /// Where a relay frame for `to` goes: the relay queue of its
    /// connection here (`None` if it did not ask for the relay), or the
    /// instance that holds it.
    pub fn datagram_route(&self, to: &NodeId) -> Option<Route<Option<crate::datagram_relay::DatagramOutbox>>> {
        self.registry.lock().route_by(to, |handle| handle.datagrams.clone())
    }

    /// The node list `id` asked for (see `flproto::presence`).
    pub fn node_list(&self, id: &NodeId) -> Option<String> {
        self.registry.lock().node_list(id, Instant::now())
    }

    /// Queues `text` from node `from` (on connection `from_conn`) for node
    /// `to`, unchanged: into its connection's queue here, within the
    /// sender's `share` of it, or to NATS for the instance that holds it.
    pub fn relay(
        &self,
        from_conn: u64,
        from: &NodeId,
        to: &NodeId,
        text: Utf8Bytes,
        arrived: Instant,
        share: RelayShare,
    ) -> RelayOutcome {
        let registry = self.registry.lock();
        let instance = match registry.route_ref(to) {
            // Offered with the registry held (see its lock order): the
            // handle is lent, not cloned, once per frame.
            Some(Route::Local(handle)) => {
                let delivery = self.deliver(handle, text, Some(arrived), Some((from_conn, share)));
                drop(registry);
                if delivery != Delivery::Queued {
                    return RelayOutcome::Dropped(delivery);
                }
                self.metrics.relayed.inc();
                return RelayOutcome::Queued;
            }
            Some(Route::Remote(instance)) => instance,
            None => {
                drop(registry);
                Metrics::count(&self.metrics.drops, "not_connected");
                return RelayOutcome::NotConnected;
            }
        };
        drop(registry);
        let text = Bytes::from(text);
        if self.publish(Outgoing::Relay {
            from: *from,
            to: *to,
            instance,
            text,
        }) {
            self.metrics.count_relay("out");
            self.metrics.relayed.inc();
        }
        RelayOutcome::Queued
    }

    /// A frame another instance relayed from `from` to `to`, which this
    /// server holds. Delivered only if it is a PeerSetup between the two,
    /// as the sender's session checked; anything else is refused and
    /// counted, never shown to the node.
    pub fn relay_from_cluster(&self, from: &NodeId, to: &NodeId, text: Utf8Bytes) {
        if let Err(refusal) = check_relayed(text.as_str(), from, to) {
            if let Some(side) = &self.cluster {
                side.refused.refuse(refusal.label(), to, &refusal);
            }
            return;
        }
        let local = self.registry.lock().local(to);
        match local {
            Some(handle) => {
                if self.deliver(&handle, text, Some(Instant::now()), None) == Delivery::Queued {
                    self.metrics.count_relay("in");
                }
            }
            None => Metrics::count(&self.metrics.drops, "not_connected"),
        }
    }

    /// Where refusals of cluster messages are counted; `None` without one.
    pub fn cluster_refusals(&self) -> Option<&RefusalLog> {
        self.cluster.as_ref().map(|side| &side.refused)
    }

    /// Sends every node its pending join/leave news, except nodes whose
    /// previous news frame is still queued: theirs waits for a later tick
    /// (see [`crate::news`]). A frame that does not fit a full queue is
    /// lost, so that node's next news is its whole view.
    pub fn flush_news(&self) {
        let ready = |handle: &PeerHandle| !handle.news.is_queued();
        let news = self.registry.lock().drain_news_where(Instant::now(), ready);
        let mut lost = Vec::new();
        for (id, handle, frame) in news {
            if self.deliver_news(&handle, frame.into()) == Delivery::QueueFull {
                lost.push(id);
            }
        }
        if !lost.is_empty() {
            let mut registry = self.registry.lock();
            lost.iter().for_each(|id| registry.resync(id));
        }
    }

    /// Applies a presence message from another instance.
    pub fn apply_cluster_message(&self, message: ClusterMessage, now: Instant) {
        if self.cluster.is_none() {
            return;
        }
        let from = message.instance();
        let goodbye = matches!(message, ClusterMessage::Goodbye { .. });
        let heartbeat = matches!(message, ClusterMessage::Heartbeat { .. });
        let (me, effects) = {
            let mut registry = self.registry.lock();
            let effects = registry.apply(message, now, wall_clock_us());
            self.update_gauges(&registry);
            (registry.me(), effects)
        };
        if goodbye && Some(from) != me {
            tracing::info!(instance = %from, "instance left the cluster");
        }
        if heartbeat && !effects.publish.is_empty() {
            tracing::info!(instance = %from, "presence of an instance disagrees with ours; asking for a snapshot");
        }
        self.carry_out(effects);
    }

    /// Forgets instances that have not been heard from within the expiry.
    pub fn expire_instances(&self, now: Instant) {
        let mut registry = self.registry.lock();
        let gone = registry.expire(now);
        if gone > 0 {
            tracing::info!(nodes = gone, "instances fell silent; their nodes are gone");
        }
        self.update_gauges(&registry);
    }

    /// This instance's heartbeat.
    pub fn heartbeat(&self) -> Option<ClusterMessage> {
        self.registry.lock().heartbeat()
    }

    /// After (re)connecting to NATS: ask everyone for their nodes and tell
    /// everyone ours, since news may have been lost either way.
    pub fn rejoin_cluster(&self) {
        let messages = self.registry.lock().rejoin();
        for message in messages {
            self.publish(message.into());
        }
    }

    /// Said on shutdown, so that the others forget our nodes at once.
    pub fn goodbye(&self) -> Option<ClusterMessage> {
        self.registry.lock().goodbye()
    }

    /// Carries out what a change to the registry asks for.
    fn carry_out(&self, effects: Effects<PeerHandle>) {
        for loser in effects.replaced {
            loser.kill.kill(CloseReason::Replaced);
        }
        if let Some(side) = &self.cluster {
            for (instance, refusal) in &effects.refused {
                side.refused.refuse(refusal.label(), instance, refusal);
            }
        }
        for message in effects.publish {
            self.publish(message.into());
        }
    }

    fn update_gauges(&self, registry: &Registry<PeerHandle>) {
        self.metrics.registered_nodes.set(registry.local_len() as i64);
        if let Some(instances) = registry.instances() {
            self.metrics.cluster_instances.set(instances as i64);
            self.metrics.cluster_nodes.set(registry.len() as i64);
        }
    }

    /// Hands a message to the NATS edge; false if it was dropped (its
    /// queue is full). Presence lost this way is repaired by the snapshot
    /// other instances ask for when heartbeats disagree.
    pub(crate) fn publish(&self, message: Outgoing) -> bool {
        let Some(side) = &self.cluster else {
            return false;
        };
        match side.outgoing.try_send(message) {
            Ok(()) => true,
            Err(_) => {
                Metrics::count(&self.metrics.drops, "cluster_queue");
                false
            }
        }
    }

    /// Offers a frame to a connection's queue; one that does not fit is
    /// dropped and counted, and the receiver stays.
    pub(crate) fn deliver(
        &self,
        handle: &PeerHandle,
        text: Utf8Bytes,
        relayed_at: Option<Instant>,
        sender: Option<(u64, RelayShare)>,
    ) -> Delivery {
        let delivery = handle.offer(text, relayed_at, sender);
        if let Some(reason) = delivery.drop_label() {
            Metrics::count(&self.metrics.drops, reason);
        }
        delivery
    }

    /// Offers a news frame, marked so that no other is rendered for this
    /// connection until it has left the queue.
    fn deliver_news(&self, handle: &PeerHandle, text: Utf8Bytes) -> Delivery {
        let delivery = handle.offer_news(text);
        if let Some(reason) = delivery.drop_label() {
            Metrics::count(&self.metrics.drops, reason);
        }
        delivery
    }
}

/// Microseconds since the Unix epoch, for newest-wins across instances.
pub(crate) fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "hub_cluster_tests.rs"]
mod cluster_tests;

#[cfg(test)]
#[path = "hub_lock_tests.rs"]
mod lock_tests;
