//! A node's relay queue: relay frames waiting for the node's writer, from
//! whoever sends to it, each sender kept to a fair share when it is full
//! (the rule is [`flproto::fair_queue`]). The hub offers frames through a
//! [`DatagramOutbox`]; the node's connection takes them from its
//! [`DatagramInbox`], and dropping that closes the queue.

use std::sync::Arc;

use bytes::Bytes;
use flproto::fair_queue::{FairQueue, Offered, QueueDrop};
use flproto::NodeId;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// The sending side of a node's relay queue, held by the registry's handle
/// for the node.
#[derive(Debug, Clone)]
pub struct DatagramOutbox(Arc<Queue>);

/// The receiving side, held by the node's connection.
#[derive(Debug)]
pub struct DatagramInbox(Arc<Queue>);

#[derive(Debug)]
struct Queue {
    state: Mutex<State>,
    /// Wakes the writer when a frame arrives in an empty queue.
    arrived: Notify,
}

#[derive(Debug)]
enum State {
    Open(FairQueue<NodeId, Bytes>),
    /// The connection is gone; nothing is queued any more.
    Closed,
}

/// What became of a frame offered to a node's relay queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued, nothing dropped.
    Yes,
    /// Queued in place of a frame of the sender with the most queued
    /// (which is counted as dropped over its share).
    DisplacingOverShare,
    /// Dropped, for this `flsignal_datagram_drops_total` reason.
    Dropped(&'static str),
}

/// A relay queue holding at most `bound` frames.
pub fn datagram_queue(bound: usize) -> (DatagramOutbox, DatagramInbox) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State::Open(FairQueue::new(bound))),
        arrived: Notify::new(),
    });
    (DatagramOutbox(queue.clone()), DatagramInbox(queue))
}

impl DatagramOutbox {
    /// Offers `frame` from `sender`, within the sender's share of the queue.
    pub fn offer(&self, sender: NodeId, frame: Bytes) -> Queued {
        let (queued, was_empty) = {
            let mut state = self.0.state.lock();
            let State::Open(queue) = &mut *state else {
                return Queued::Dropped("closing");
            };
            let was_empty = queue.is_empty();
            (queue.offer(sender, frame), was_empty)
        };
        if was_empty {
            // Only a frame into an empty queue can find the writer waiting.
            self.0.arrived.notify_one();
        }
        match queued {
            Offered::Queued => Queued::Yes,
            Offered::Displaced { .. } => Queued::DisplacingOverShare,
            Offered::Dropped(QueueDrop::Full) => Queued::Dropped("queue_full"),
            Offered::Dropped(QueueDrop::OverShare) => Queued::Dropped("over_share"),
        }
    }
}

impl DatagramInbox {
    /// The next frame, once there is one.
    ///
    /// The wait is boxed: this future is part of every connection's
    /// driver, relaying or not, and tokio's `Notified` would add 64 bytes
    /// to each idle connection. A frame that arrives between the look and
    /// the wait is not missed: `notify_one` leaves a permit when no one
    /// waits.
    pub async fn next(&self) -> Bytes {
        loop {
            if let Some(frame) = self.try_next() {
                return frame;
            }
            Box::pin(self.0.arrived.notified()).await;
        }
    }

    /// The next frame, if one waits.
    pub fn try_next(&self) -> Option<Bytes> {
        match &mut *self.0.state.lock() {
            State::Open(queue) => queue.pop(),
            State::Closed => None,
        }
    }

    pub fn len(&self) -> usize {
        match &*self.0.state.lock() {
            State::Open(queue) => queue.len(),
            State::Closed => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for DatagramInbox {
    /// Frees what waits and refuses what comes: the connection is gone.
    fn drop(&mut self) {
        *self.0.state.lock() = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    #[tokio::test]
    async fn frames_wait_for_the_writer_and_a_full_queue_is_shared() {
        let (outbox, inbox) = datagram_queue(2);
        let writer = tokio::spawn(async move {
            let first = inbox.next().await;
            (first, inbox)
        });
        tokio::task::yield_now().await;
        assert_eq!(outbox.offer(node(1), Bytes::from_static(b"a")), Queued::Yes);
        let (first, inbox) = writer.await.unwrap();
        assert_eq!(first, Bytes::from_static(b"a"));
        assert_eq!(outbox.offer(node(1), Bytes::from_static(b"b")), Queued::Yes);
        assert_eq!(outbox.offer(node(1), Bytes::from_static(b"c")), Queued::Yes);
        assert_eq!(
            outbox.offer(node(1), Bytes::from_static(b"d")),
            Queued::Dropped("queue_full")
        );
        assert_eq!(
            outbox.offer(node(2), Bytes::from_static(b"e")),
            Queued::DisplacingOverShare
        );
        assert_eq!(
            outbox.offer(node(2), Bytes::from_static(b"f")),
            Queued::Dropped("over_share")
        );
        assert_eq!(inbox.len(), 2);
        assert_eq!(inbox.try_next(), Some(Bytes::from_static(b"c")));
        assert_eq!(inbox.next().await, Bytes::from_static(b"e"));
        assert!(inbox.is_empty());
    }

    /// Every connection's driver holds this wait, relaying or not (flume's
    /// was 24 bytes; an unboxed `Notified` made it 88).
    #[test]
    fn the_wait_adds_little_to_every_connection() {
        let (_outbox, inbox) = datagram_queue(4);
        assert!(std::mem::size_of_val(&inbox.next()) <= 32);
    }

    #[test]
    fn a_closed_queue_refuses_frames() {
        let (outbox, inbox) = datagram_queue(4);
        assert_eq!(outbox.offer(node(1), Bytes::from_static(b"a")), Queued::Yes);
        drop(inbox);
        assert_eq!(
            outbox.offer(node(1), Bytes::from_static(b"b")),
            Queued::Dropped("closing")
        );
    }
}
