//! State shared by all connections: who is online (presence), how to reach
//! them (their outbound queues) and the metrics. Every cross-connection
//! effect — register, leave, relay, news — goes through here.
//!
//! In a cluster (`--nats`), nodes held by other instances are in the same
//! presence with a [`Holder::Remote`] handle: node lists and news cover the
//! cluster, a relay to such a node is handed to the NATS edge, and local
//! registrations and leaves are announced to the other instances. What
//! arrives from them is applied in `cluster_sync`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flproto::announce::VerifiedNode;
use flproto::close::CloseReason;
use flproto::cluster_message::{check_relayed, ClusterMessage, InstanceId, NodeEntry};
use flproto::cluster_presence::ClusterPresence;
use flproto::presence::{Presence, PresenceConfig};
use flproto::relay_share::RelayShare;
use flproto::NodeId;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;
pub use crate::outbox::{Delivery, Kill, Outbound, PeerHandle};
use crate::refusal_log::RefusalLog;

/// Who holds a node: a connection of this server, or another instance.
#[derive(Debug, Clone)]
pub enum Holder {
    Local(PeerHandle),
    Remote(InstanceId),
}

impl Holder {
    fn is_local(&self, conn: u64) -> bool {
        matches!(self, Holder::Local(handle) if handle.conn == conn)
    }
}

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

/// What became of a relayed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    Queued,
    NotConnected,
    /// Dropped at the destination's queue, for this reason.
    Dropped(Delivery),
}

/// Everything behind the hub's one lock.
pub(crate) struct State {
    pub(crate) presence: Presence<Holder>,
    /// Nodes held by connections of this server.
    pub(crate) local: usize,
    /// Who holds what across the cluster; `None` without `--nats`.
    pub(crate) cluster: Option<ClusterPresence>,
}

/// This server's link into the cluster, when there is one.
pub(crate) struct ClusterSide {
    pub(crate) instance: InstanceId,
    outgoing: mpsc::Sender<Outgoing>,
    /// Whether the NATS connection is up right now.
    pub(crate) connected: AtomicBool,
    /// How far another instance's registration times may be ahead of our
    /// clock (`--cluster-max-clock-skew`).
    pub(crate) max_clock_skew: std::time::Duration,
    /// What was refused from the other instances.
    pub(crate) refused: RefusalLog,
}

pub struct Hub {
    pub(crate) state: Mutex<State>,
    pub metrics: Metrics,
    next_conn: AtomicU64,
    pub(crate) cluster: Option<ClusterSide>,
}

impl Hub {
    pub fn new(config: PresenceConfig) -> Self {
        Self::build(config, Metrics::new(), None)
    }

    /// A hub that is one instance of a cluster; what it publishes goes into
    /// `outgoing`, for the NATS edge.
    pub fn clustered(
        config: PresenceConfig,
        instance: InstanceId,
        expiry: std::time::Duration,
        max_clock_skew: std::time::Duration,
        outgoing: mpsc::Sender<Outgoing>,
    ) -> Self {
        let metrics = Metrics::new();
        let side = ClusterSide {
            instance,
            outgoing,
            connected: AtomicBool::new(false),
            max_clock_skew,
            refused: RefusalLog::new(metrics.cluster_refused.clone()),
        };
        let hub = Self::build(config, metrics, Some(side));
        hub.state.lock().cluster = Some(ClusterPresence::new(instance, expiry));
        hub
    }

    fn build(config: PresenceConfig, metrics: Metrics, cluster: Option<ClusterSide>) -> Self {
        Self {
            state: Mutex::new(State {
                presence: Presence::new(config),
                local: 0,
                cluster: None,
            }),
            metrics,
            next_conn: AtomicU64::new(1),
            cluster,
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Nodes connected to this server.
    pub fn online(&self) -> usize {
        self.state.lock().local
    }

    /// Nodes online in the whole cluster (this server's alone without one).
    pub fn online_in_cluster(&self) -> usize {
        self.state.lock().presence.len()
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
        let instances = self.state.lock().cluster.as_ref().map_or(0, |c| c.remote_instances()) + 1;
        Some((side.instance, side.connected.load(Ordering::Relaxed), instances))
    }

    /// Enters an authenticated node and returns its first node list. An
    /// older connection with the same ID is told and closed; in a cluster,
    /// the other instances learn that this server holds the node now.
    pub fn register(&self, node: &VerifiedNode, handle: PeerHandle) -> String {
        let info_json: Box<str> = flproto::NodeInfo::NodeInfoV3(node.info.clone()).to_json().into();
        let (joined, announce) = {
            let mut state = self.state.lock();
            let state = &mut *state;
            let announce = state.cluster.as_mut().map(|cluster| {
                let at = cluster.local_join(node.id(), wall_clock_us());
                NodeEntry {
                    node: node.id(),
                    at,
                    bound: node.bound,
                    info: raw_json(&info_json),
                }
            });
            let joined = state
                .presence
                .join(node.id(), info_json, node.bound, Holder::Local(handle));
            if !matches!(joined.replaced, Some(Holder::Local(_))) {
                state.local += 1;
            }
            self.metrics.registered_nodes.set(state.local as i64);
            (joined, announce)
        };
        if let Some(Holder::Local(old)) = joined.replaced {
            old.kill.kill(CloseReason::Replaced);
        }
        if let (Some(entry), Some(side)) = (announce, &self.cluster) {
            self.publish(Outgoing::Broadcast(ClusterMessage::Join {
                instance: side.instance,
                entry,
            }));
        }
        joined.node_list
    }

    /// Removes the node if `conn` still holds it.
    pub fn leave(&self, id: &NodeId, conn: u64) {
        let left = {
            let mut state = self.state.lock();
            if !state.presence.leave_if(id, |holder| holder.is_local(conn)) {
                return;
            }
            state.local -= 1;
            self.metrics.registered_nodes.set(state.local as i64);
            if let Some(cluster) = &mut state.cluster {
                cluster.local_leave(id);
            }
            true
        };
        if let (true, Some(side)) = (left, &self.cluster) {
            self.publish(Outgoing::Broadcast(ClusterMessage::Leave {
                instance: side.instance,
                node: *id,
            }));
        }
    }

    pub fn node_list(&self, id: &NodeId) -> Option<String> {
        self.state.lock().presence.node_list(id)
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
        let holder = self.state.lock().presence.get(to).cloned();
        match holder {
            Some(Holder::Local(handle)) => match self.deliver(&handle, text, Some(arrived), Some((from_conn, share))) {
                Delivery::Queued => {
                    self.metrics.relayed.inc();
                    RelayOutcome::Queued
                }
                dropped => RelayOutcome::Dropped(dropped),
            },
            Some(Holder::Remote(instance)) => {
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
            None => {
                Metrics::count(&self.metrics.drops, "not_connected");
                RelayOutcome::NotConnected
            }
        }
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
        let holder = self.state.lock().presence.get(to).cloned();
        match holder {
            Some(Holder::Local(handle)) => {
                if self.deliver(&handle, text, Some(Instant::now()), None) == Delivery::Queued {
                    self.metrics.count_relay("in");
                }
            }
            _ => Metrics::count(&self.metrics.drops, "not_connected"),
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
        let ready = |holder: &Holder| match holder {
            Holder::Local(handle) => !handle.news.is_queued(),
            Holder::Remote(_) => true,
        };
        let news = self.state.lock().presence.drain_news_where(Instant::now(), ready);
        let mut lost = Vec::new();
        for (id, holder, frame) in news {
            if let Holder::Local(handle) = holder {
                if self.deliver_news(&handle, frame.into()) == Delivery::QueueFull {
                    lost.push(id);
                }
            }
        }
        if !lost.is_empty() {
            let mut state = self.state.lock();
            lost.iter().for_each(|id| state.presence.resync(id));
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

/// `NodeInfo` JSON this server produced, as a raw JSON value.
pub(crate) fn raw_json(json: &str) -> Box<RawValue> {
    // Our own serialisation of a checked NodeInfo is valid JSON; `null`
    // would only stand in if it ever were not.
    RawValue::from_string(json.to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned())
}
