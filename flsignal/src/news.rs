//! At most one presence news frame per connection between the hub and the
//! socket.
//!
//! News frames are rendered on every presence tick for each node whose view
//! changed; for a fledger node each is its whole view (~20 KiB at 100
//! entries). In a join storm, connections that write slower than the ticks
//! come would queue one such frame per tick, so the storm's memory would
//! grow with its length. Instead the hub renders news for a connection only
//! once the previous news frame has left its queue; what changes meanwhile
//! waits in presence (a few bytes per change) and goes into the next frame.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether a news frame for one connection is queued and not yet taken
/// out to be written. Shared by the hub and that connection's queue.
#[derive(Debug, Clone, Default)]
pub struct NewsInFlight(Arc<AtomicBool>);

impl NewsInFlight {
    /// True while a news frame waits in the queue.
    pub fn is_queued(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Marks a news frame as queued; the mark goes when the returned guard
    /// (which travels with the frame) is dropped.
    pub fn mark(&self) -> NewsGuard {
        self.0.store(true, Ordering::Release);
        NewsGuard(self.0.clone())
    }
}

/// Travels with a queued news frame and clears [`NewsInFlight`] when the
/// frame is dropped: written out, or discarded with its connection.
#[derive(Debug)]
pub struct NewsGuard(Arc<AtomicBool>);

impl Drop for NewsGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use flproto::announce::VerifiedNode;
    use flproto::identity::NodeKey;
    use flproto::message::ServerMessage;
    use flproto::node_info::NodeInfoV3;
    use flproto::presence::PresenceConfig;

    use super::*;
    use crate::hub::{Hub, Outbound, PeerHandle};

    fn node() -> VerifiedNode {
        VerifiedNode {
            info: NodeInfoV3 {
                name: "n".into(),
                client: "test".into(),
                pubkey: NodeKey::generate().id(),
                modules: String::new(),
                sealed_setup: None,
            },
            bound: true,
        }
    }

    fn handle(conn: u64) -> (PeerHandle, flume::Receiver<Outbound>) {
        let (outbox, inbox) = flume::bounded(8);
        (PeerHandle::new(conn, outbox), inbox)
    }

    fn joined_in(frame: &Outbound) -> usize {
        match serde_json::from_str(frame.text.as_str()) {
            Ok(ServerMessage::PresenceNews(news)) => news.joined.len(),
            other => panic!("not news: {other:?}"),
        }
    }

    #[test]
    fn the_hub_queues_one_news_frame_per_connection_until_it_is_taken() {
        let hub = Hub::new(PresenceConfig::default());
        let (watcher, inbox) = handle(1);
        hub.register(&node(), watcher);
        let mut others = Vec::new();
        for conn in 2..6 {
            let (other, other_inbox) = handle(conn);
            hub.register(&node(), other);
            others.push(other_inbox);
            hub.flush_news();
        }
        assert_eq!(inbox.len(), 1, "one news frame, however many ticks");
        let first = inbox.try_recv().expect("news");
        assert_eq!(joined_in(&first), 1);
        hub.flush_news();
        assert!(inbox.is_empty(), "the first frame is taken but not yet written");
        drop(first);
        hub.flush_news();
        let second = inbox.try_recv().expect("news");
        assert_eq!(joined_in(&second), 3, "what waited comes in one frame");
    }

    #[test]
    fn the_mark_lasts_as_long_as_its_guard() {
        let flight = NewsInFlight::default();
        assert!(!flight.is_queued());
        let guard = flight.mark();
        assert!(flight.clone().is_queued(), "clones share the mark");
        drop(guard);
        assert!(!flight.is_queued());
    }
}
