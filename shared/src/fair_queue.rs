//! A bounded queue that several senders share fairly: when it is full, the
//! frame dropped is one of the sender with the most frames in it.
//!
//! A node's relay queue (datagrams relayed to it) is filled by whoever
//! sends to it, and keys are free: first come, first served, a few
//! strangers sending at their own rate limit would keep it full and every
//! frame of the node's real peer would be dropped. Here, while there is
//! room, every frame is queued (a lone sender may use the whole queue);
//! once it is full, an arriving frame displaces the oldest frame of the
//! sender with the most queued — or is itself dropped if its sender is
//! that one (ties go against the arriving sender). This is "longest queue
//! drop": a sender's frame is only ever dropped while no other sender has
//! more frames queued than it would have with that frame, so a frame that
//! leaves its sender within an equal split of the queue
//! ([`FairQueue::bound`] / senders with frames queued, its own counted)
//! is never dropped for another's excess, however much the others send.
//!
//! Frames leave in the order they arrived, whoever sent them. The books
//! (frames per sender) are kept only for senders with frames queued.

use std::collections::VecDeque;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueDrop {
    /// The queue is full of its own sender's frames: the receiver is
    /// slower than its only sender.
    Full,
    /// Its sender had the most frames in a full queue that others share.
    OverShare,
}

/// What became of a frame offered to the queue.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Offered<S, T> {
    /// Queued, and nothing dropped.
    Queued,
    /// Queued in place of `dropped`, the oldest frame of `sender`, which
    /// had the most frames queued.
    Displaced { sender: S, dropped: T },
    /// Not queued.
    Dropped(QueueDrop),
}

/// A bounded first-in, first-out queue of `T` from senders `S`.
#[derive(Debug)]
pub struct FairQueue<S, T> {
    frames: VecDeque<(S, T)>,
    /// Frames queued per sender, for senders with any (at most one entry
    /// per queued frame, so bounded by the queue).
    books: Vec<(S, usize)>,
    bound: usize,
}

impl<S: PartialEq + Copy, T> FairQueue<S, T> {
    /// An empty queue holding at most `bound` frames (at least one).
    pub fn new(bound: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            books: Vec::new(),
            bound: bound.max(1),
        }
    }

    /// The most frames it holds.
    pub fn bound(&self) -> usize {
        self.bound
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames `sender` has queued.
    pub fn queued_by(&self, sender: S) -> usize {
        self.books
            .iter()
            .find(|(booked, _)| *booked == sender)
            .map_or(0, |(_, frames)| *frames)
    }

    /// Offers `frame` from `sender`: queued if there is room; if not, in
    /// place of the oldest frame of the sender with the most queued, unless
    /// that is `sender` itself.
    pub fn offer(&mut self, sender: S, frame: T) -> Offered<S, T> {
        if self.frames.len() < self.bound {
            self.push(sender, frame);
            return Offered::Queued;
        }
        let own = self.queued_by(sender);
        let Some(&(longest, most)) = self.books.iter().max_by_key(|(_, frames)| *frames) else {
            return Offered::Dropped(QueueDrop::Full);
        };
        // Ties go against the arriving frame: displacing would only make
        // its sender the one with the most.
        if own + 1 >= most {
            let reason = if own == self.frames.len() {
                QueueDrop::Full
            } else {
                QueueDrop::OverShare
            };
            return Offered::Dropped(reason);
        }
        let Some(index) = self.frames.iter().position(|(queued, _)| *queued == longest) else {
            return Offered::Dropped(QueueDrop::Full);
        };
        let Some((_, dropped)) = self.frames.remove(index) else {
            return Offered::Dropped(QueueDrop::Full);
        };
        self.unbook(longest);
        self.push(sender, frame);
        Offered::Displaced {
            sender: longest,
            dropped,
        }
    }

    /// The oldest frame, if any.
    pub fn pop(&mut self) -> Option<T> {
        let (sender, frame) = self.frames.pop_front()?;
        self.unbook(sender);
        Some(frame)
    }

    /// Empties the queue, and frees what it held; the number of frames
    /// that were in it.
    pub fn clear(&mut self) -> usize {
        let dropped = self.frames.len();
        self.frames = VecDeque::new();
        self.books = Vec::new();
        dropped
    }

    fn push(&mut self, sender: S, frame: T) {
        self.frames.push_back((sender, frame));
        match self.books.iter_mut().find(|(booked, _)| *booked == sender) {
            Some((_, frames)) => *frames += 1,
            None => self.books.push((sender, 1)),
        }
    }

    fn unbook(&mut self, sender: S) {
        let Some(index) = self.books.iter().position(|(booked, _)| *booked == sender) else {
            return;
        };
        let frames = &mut self.books[index].1;
        *frames -= 1;
        if *frames == 0 {
            self.books.swap_remove(index);
        }
    }
}

#[cfg(test)]
#[path = "fair_queue_tests.rs"]
mod tests;
