//! How the hub reaches one connection: its bounded outbound queue, the
//! books of who has how much in it, and a way to end it.
//!
//! A full queue drops the frame that does not fit; it never ends the
//! receiver (that happens only when the receiver stops reading, see the
//! write timeout in `connection`). A relayed frame is also booked
//! against its sender's share of the queue ([`flproto::relay_share`]), so
//! a few flooding senders cannot take all of it.

use std::sync::Arc;
use std::time::Instant;

use flproto::close::CloseReason;
use flproto::relay_share::{InFlight, RelayShare};

use crate::news::{NewsGuard, NewsInFlight};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A frame waiting in a connection's outbound queue.
#[derive(Debug)]
pub struct Outbound {
    pub text: Utf8Bytes,
    /// When a relayed frame arrived at the server, for the latency histogram.
    pub relayed_at: Option<Instant>,
    /// The sending connection of a relayed frame, whose share of this
    /// queue the frame is booked against until it is written.
    pub sender: Option<u64>,
    /// Set on presence news: lets the hub render the next news frame for
    /// this connection once this one is out of the queue.
    pub news: Option<NewsGuard>,
}

/// Lets other tasks end a connection (the node announced elsewhere).
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

/// What became of a frame offered to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// The sender already has its share of this queue.
    OverShare,
    /// The queue is full.
    QueueFull,
    /// The connection is closing.
    Closing,
}

impl Delivery {
    /// The `flsignal_drops_total` reason of a frame not queued.
    pub fn drop_label(self) -> Option<&'static str> {
        match self {
            Delivery::Queued => None,
            Delivery::OverShare => Some("over_share"),
            Delivery::QueueFull => Some("queue_full"),
            Delivery::Closing => Some("closing"),
        }
    }
}

/// How the hub reaches one connection.
///
/// The queue is flume's rather than tokio's: tokio's mpsc keeps a few
/// 32-slot blocks per channel even when it is empty, which idle memory per
/// node cannot afford; flume's is a deque only as deep as the queue has
/// been.
#[derive(Debug, Clone)]
pub struct PeerHandle {
    pub conn: u64,
    pub outbox: flume::Sender<Outbound>,
    pub kill: Arc<Kill>,
    /// Relayed frames in the queue, by sender; empty and unallocated
    /// while none are.
    pub in_flight: Arc<Mutex<InFlight<u64>>>,
    /// Whether a news frame for this connection is in its queue.
    pub news: NewsInFlight,
    /// Its relay queue, if the node was granted the datagram relay.
    pub datagrams: Option<crate::datagram_relay::DatagramOutbox>,
}

impl PeerHandle {
    /// A handle for connection `conn` around the sending side of its queue.
    pub fn new(conn: u64, outbox: flume::Sender<Outbound>) -> Self {
        Self {
            conn,
            outbox,
            kill: Arc::default(),
            in_flight: Arc::default(),
            news: NewsInFlight::default(),
            datagrams: None,
        }
    }

    /// Queues `text` if it fits: in the queue, and for a relayed frame
    /// (`sender` set) in that sender's share of it.
    pub fn offer(&self, text: Utf8Bytes, relayed_at: Option<Instant>, sender: Option<(u64, RelayShare)>) -> Delivery {
        let bytes = text.len();
        if let Some((from, share)) = sender {
            if !self.in_flight.lock().try_admit(from, bytes, share) {
                return Delivery::OverShare;
            }
        }
        let outbound = Outbound {
            text,
            relayed_at,
            sender: sender.map(|(from, _)| from),
            news: None,
        };
        let delivery = self.push(outbound);
        if let (Some((from, _)), false) = (sender, delivery == Delivery::Queued) {
            self.in_flight.lock().release(from, bytes);
        }
        delivery
    }

    /// Queues a presence news frame if it fits, marked as this connection's
    /// one news frame in flight until it is written or dropped.
    pub fn offer_news(&self, text: Utf8Bytes) -> Delivery {
        self.push(Outbound {
            text,
            relayed_at: None,
            sender: None,
            news: Some(self.news.mark()),
        })
    }

    fn push(&self, outbound: Outbound) -> Delivery {
        match self.outbox.try_send(outbound) {
            Ok(()) => Delivery::Queued,
            Err(flume::TrySendError::Full(_)) => Delivery::QueueFull,
            Err(flume::TrySendError::Disconnected(_)) => Delivery::Closing,
        }
    }

    /// Un-books a relayed frame taken off the queue.
    pub fn written(&self, sender: Option<u64>, bytes: usize) {
        if let Some(from) = sender {
            self.in_flight.lock().release(from, bytes);
        }
    }
}
