//! State shared by all connections: who is online (presence), how to reach
//! them (their outbound queues) and the metrics. Every cross-connection
//! effect — register, leave, relay, news — goes through here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use flproto::announce::VerifiedNode;
use flproto::close::CloseReason;
use flproto::presence::{Presence, PresenceConfig};
use flproto::NodeId;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;

/// A frame waiting in a connection's outbound queue.
#[derive(Debug)]
pub struct Outbound {
    pub text: Utf8Bytes,
    /// When a relayed frame arrived at the server, for the latency histogram.
    pub relayed_at: Option<Instant>,
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
#[derive(Debug, Clone)]
pub struct PeerHandle {
    pub conn: u64,
    pub outbox: mpsc::Sender<Outbound>,
    pub kill: Arc<Kill>,
}

/// What became of a relayed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    Queued,
    NotConnected,
    DestinationSlow,
}

pub struct Hub {
    presence: Mutex<Presence<PeerHandle>>,
    pub metrics: Metrics,
    next_conn: AtomicU64,
}

impl Hub {
    pub fn new(config: PresenceConfig) -> Self {
        Self {
            presence: Mutex::new(Presence::new(config)),
            metrics: Metrics::new(),
            next_conn: AtomicU64::new(1),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub fn online(&self) -> usize {
        self.presence.lock().len()
    }

    /// Enters an authenticated node and returns its first node list. An
    /// older connection with the same ID is told and closed.
    pub fn register(&self, node: &VerifiedNode, handle: PeerHandle) -> String {
        let info = flproto::NodeInfo::NodeInfoV3(node.info.clone());
        // Serialising a validated NodeInfo cannot fail.
        let info_json: Box<str> = serde_json::to_string(&info).unwrap_or_default().into();
        let joined = {
            let mut presence = self.presence.lock();
            let joined = presence.join(node.id(), info_json, node.bound, handle);
            self.metrics.registered_nodes.set(presence.len() as i64);
            joined
        };
        if let Some(old) = joined.replaced {
            old.kill.kill(CloseReason::Replaced);
        }
        joined.node_list
    }

    /// Removes the node if `conn` still holds it.
    pub fn leave(&self, id: &NodeId, conn: u64) {
        let mut presence = self.presence.lock();
        if presence.leave_if(id, |handle| handle.conn == conn) {
            self.metrics.registered_nodes.set(presence.len() as i64);
        }
    }

    pub fn node_list(&self, id: &NodeId) -> Option<String> {
        self.presence.lock().node_list(id)
    }

    /// Queues `text` for node `to`, unchanged.
    pub fn relay(&self, to: &NodeId, text: Utf8Bytes, arrived: Instant) -> RelayOutcome {
        let handle = match self.presence.lock().get(to) {
            Some(handle) => handle.clone(),
            None => {
                Metrics::count(&self.metrics.drops, "not_connected");
                return RelayOutcome::NotConnected;
            }
        };
        if self.deliver(&handle, text, Some(arrived)) {
            self.metrics.relayed.inc();
            RelayOutcome::Queued
        } else {
            RelayOutcome::DestinationSlow
        }
    }

    /// Sends every node its pending join/leave news.
    pub fn flush_news(&self) {
        let news = self.presence.lock().drain_news();
        for (handle, frame) in news {
            self.deliver(&handle, frame.into(), None);
        }
    }

    /// Tries the queue; a full queue means the client does not read, so it
    /// is disconnected rather than allowed to hold anyone up.
    fn deliver(&self, handle: &PeerHandle, text: Utf8Bytes, relayed_at: Option<Instant>) -> bool {
        match handle.outbox.try_send(Outbound { text, relayed_at }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                Metrics::count(&self.metrics.drops, "slow_reader");
                handle.kill.kill(CloseReason::SlowReader);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Metrics::count(&self.metrics.drops, "closing");
                false
            }
        }
    }
}
