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
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flproto::announce::VerifiedNode;
use flproto::close::CloseReason;
use flproto::cluster_message::{ClusterMessage, InstanceId, NodeEntry};
use flproto::cluster_presence::ClusterPresence;
use flproto::presence::{Presence, PresenceConfig};
use flproto::NodeId;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;
use crate::news::{NewsGuard, NewsInFlight};

/// A frame waiting in a connection's outbound queue.
#[derive(Debug)]
pub struct Outbound {
    pub text: Utf8Bytes,
    /// When a relayed frame arrived at the server, for the latency histogram.
    pub relayed_at: Option<Instant>,
    /// Set on presence news: lets the hub render the next news frame for
    /// this connection once this one is out of the queue.
    pub news: Option<NewsGuard>,
}

/// Lets other tasks end a connection whose queue they cannot use (it is
/// full, or the node announced elsewhere).
#[derive(Debug, Default)]
pub struct Kill {
    reason: Mutex<Option<CloseReason>>,
    notify: Notify,
}

impl Kill {
    pub fn kill(&self, reason: CloseReason) {
        self.reason.lock().get_or_insert(reason);
        self.notify.notify_one();
    }

    /// Waits until someone asks this connection to close, and says why.
    pub async fn killed(&self) -> CloseReason {
        loop {
            self.notify.notified().await;
            if let Some(reason) = *self.reason.lock() {
                return reason;
            }
        }
    }
}

/// How the hub reaches one connection.
///
/// The queue is flume's rather than tokio's: tokio's mpsc keeps a few
/// 32-slot blocks per channel (3.9 KiB per idle node under heaptrack,
/// the largest single cost), flume's a deque only as deep as the queue
/// has been.
#[derive(Debug, Clone)]
pub struct PeerHandle {
    pub conn: u64,
    pub outbox: flume::Sender<Outbound>,
    pub kill: Arc<Kill>,
    pub news: NewsInFlight,
}

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
    /// A relayed frame, verbatim, for `to` held by `instance`.
    Relay {
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
    DestinationSlow,
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
}

pub struct Hub {
    pub(crate) state: Mutex<State>,
    pub metrics: Metrics,
    next_conn: AtomicU64,
    pub(crate) cluster: Option<ClusterSide>,
}

impl Hub {
    pub fn new(config: PresenceConfig) -> Self {
        Self::build(config, None)
    }

    /// A hub that is one instance of a cluster; what it publishes goes into
    /// `outgoing`, for the NATS edge.
    pub fn clustered(
        config: PresenceConfig,
        instance: InstanceId,
        expiry: std::time::Duration,
        outgoing: mpsc::Sender<Outgoing>,
    ) -> Self {
        let side = ClusterSide {
            instance,
            outgoing,
            connected: AtomicBool::new(false),
        };
        let hub = Self::build(config, Some(side));
        hub.state.lock().cluster = Some(ClusterPresence::new(instance, expiry));
        hub
    }

    fn build(config: PresenceConfig, cluster: Option<ClusterSide>) -> Self {
        Self {
            state: Mutex::new(State {
                presence: Presence::new(config),
                local: 0,
                cluster: None,
            }),
            metrics: Metrics::new(),
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
        let info = flproto::NodeInfo::NodeInfoV3(node.info.clone());
        // Serialising a validated NodeInfo cannot fail.
        let info_json: Box<str> = serde_json::to_string(&info).unwrap_or_default().into();
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

    /// Queues `text` for node `to`, unchanged: into its connection's queue
    /// here, or to NATS for the instance that holds it.
    pub fn relay(&self, to: &NodeId, text: Utf8Bytes, arrived: Instant) -> RelayOutcome {
        let holder = self.state.lock().presence.get(to).cloned();
        match holder {
            Some(Holder::Local(handle)) => {
                if self.deliver(&handle, text, Some(arrived)) {
                    self.metrics.relayed.inc();
                    RelayOutcome::Queued
                } else {
                    RelayOutcome::DestinationSlow
                }
            }
            Some(Holder::Remote(instance)) => {
                let text = Bytes::from(text);
                if self.publish(Outgoing::Relay {
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

    /// A frame another instance relayed to `to`, which this server holds.
    pub fn relay_from_cluster(&self, to: &NodeId, text: Utf8Bytes) {
        let holder = self.state.lock().presence.get(to).cloned();
        match holder {
            Some(Holder::Local(handle)) => {
                if self.deliver(&handle, text, Some(Instant::now())) {
                    self.metrics.count_relay("in");
                }
            }
            _ => Metrics::count(&self.metrics.drops, "not_connected"),
        }
    }

    /// Sends every node its pending join/leave news, except nodes whose
    /// previous news frame is still queued: theirs waits for a later tick
    /// (see [`crate::news`]).
    pub fn flush_news(&self) {
        let ready = |holder: &Holder| match holder {
            Holder::Local(handle) => !handle.news.is_queued(),
            Holder::Remote(_) => true,
        };
        let news = self.state.lock().presence.drain_news_where(ready);
        for (holder, frame) in news {
            if let Holder::Local(handle) = holder {
                let news = handle.news.mark();
                self.enqueue(
                    &handle,
                    Outbound {
                        text: frame.into(),
                        relayed_at: None,
                        news: Some(news),
                    },
                );
            }
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

    /// Tries the queue; a full queue means the client does not read, so it
    /// is disconnected rather than allowed to hold anyone up.
    pub(crate) fn deliver(&self, handle: &PeerHandle, text: Utf8Bytes, relayed_at: Option<Instant>) -> bool {
        self.enqueue(
            handle,
            Outbound {
                text,
                relayed_at,
                news: None,
            },
        )
    }

    fn enqueue(&self, handle: &PeerHandle, outbound: Outbound) -> bool {
        match handle.outbox.try_send(outbound) {
            Ok(()) => true,
            Err(flume::TrySendError::Full(_)) => {
                Metrics::count(&self.metrics.drops, "slow_reader");
                handle.kill.kill(CloseReason::SlowReader);
                false
            }
            Err(flume::TrySendError::Disconnected(_)) => {
                Metrics::count(&self.metrics.drops, "closing");
                false
            }
        }
    }
}

/// Microseconds since the Unix epoch, for newest-wins across instances.
fn wall_clock_us() -> u64 {
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
