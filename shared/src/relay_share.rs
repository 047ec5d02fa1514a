//! Fair shares of one receiver's outbound queue, and what happens to a
//! sender that keeps reaching past its share.
//!
//! Any registered node may send a PeerSetup to any online node, so without
//! a rule a few senders can fill one victim's queue with large frames and
//! crowd out everyone else who wants to reach it. Here each sender may
//! have at most a [`RelayShare`] (frames and bytes) queued for one
//! receiver at a time; a frame over it is dropped, not queued. The books
//! are kept on the receiver's side ([`InFlight`]) and only for senders
//! with frames still queued, so an idle node holds nothing.
//!
//! Every such drop is a strike on the sender's [`AbuseMeter`]. Strikes
//! are forgiven slowly; a sender with many is throttled (its PeerSetups
//! are refused), and one that keeps sending while throttled is
//! disconnected with [`CloseReason::RelayAbuse`](crate::close::CloseReason).
//! A sender that stays inside its shares never gets a strike.

use std::time::Instant;

/// Default frames one sender may have queued for one receiver: an ICE
/// trickle is a handful of candidates, and four senders at this share
/// still leave room in the default 128-frame queue.
pub const DEFAULT_RELAY_SHARE_FRAMES: usize = 24;
/// Default bytes one sender may have queued for one receiver: two
/// largest-possible messages (64 KiB each), far above an Offer's few KB.
pub const DEFAULT_RELAY_SHARE_BYTES: usize = 128 * 1024;
/// Default strikes (frames dropped over a share) before a sender is
/// throttled; a few drops can happen to anyone who writes to a stalled node.
pub const DEFAULT_RELAY_THROTTLE_AFTER: u32 = 8;
/// Default strikes before a throttled sender is disconnected.
pub const DEFAULT_RELAY_DISCONNECT_AFTER: u32 = 32;
/// Default strikes forgiven per second, so old drops do not add up over a
/// long-lived honest connection.
pub const DEFAULT_RELAY_FORGIVE_PER_SECOND: u32 = 1;

/// What one sender may have queued for one receiver at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayShare {
    pub frames: usize,
    pub bytes: usize,
}

impl Default for RelayShare {
    fn default() -> Self {
        Self {
            frames: DEFAULT_RELAY_SHARE_FRAMES,
            bytes: DEFAULT_RELAY_SHARE_BYTES,
        }
    }
}

/// Frames one receiver has queued, per sender, only while they are queued.
///
/// A list rather than a map: it holds at most one entry per sender with a
/// frame in the queue, which is bounded by the queue length, and it is
/// freed as soon as the queue is drained.
#[derive(Debug, Default)]
pub struct InFlight<S> {
    entries: Vec<Entry<S>>,
}

#[derive(Debug)]
struct Entry<S> {
    sender: S,
    frames: usize,
    bytes: usize,
}

impl<S: PartialEq + Copy> InFlight<S> {
    /// Books a frame of `bytes` from `sender` if it fits the share; false
    /// (and nothing booked) if it does not.
    pub fn try_admit(&mut self, sender: S, bytes: usize, share: RelayShare) -> bool {
        let (frames, booked) = self.of(sender);
        if frames + 1 > share.frames || booked + bytes > share.bytes {
            return false;
        }
        match self.entries.iter_mut().find(|entry| entry.sender == sender) {
            Some(entry) => {
                entry.frames += 1;
                entry.bytes += bytes;
            }
            None => self.entries.push(Entry {
                sender,
                frames: 1,
                bytes,
            }),
        }
        true
    }

    /// Un-books a frame admitted earlier (written, or never queued).
    pub fn release(&mut self, sender: S, bytes: usize) {
        let Some(index) = self.entries.iter().position(|entry| entry.sender == sender) else {
            return;
        };
        let entry = &mut self.entries[index];
        entry.frames = entry.frames.saturating_sub(1);
        entry.bytes = entry.bytes.saturating_sub(bytes);
        if entry.frames == 0 {
            self.entries.swap_remove(index);
            if self.entries.is_empty() {
                // Free it: an idle node keeps no books.
                self.entries = Vec::new();
            }
        }
    }

    /// Frames and bytes `sender` has queued here.
    pub fn of(&self, sender: S) -> (usize, usize) {
        self.entries
            .iter()
            .find(|entry| entry.sender == sender)
            .map_or((0, 0), |entry| (entry.frames, entry.bytes))
    }

    /// Whether no frame is booked (and no memory held).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.entries.capacity() == 0
    }
}

/// When a sender is throttled and when it is disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbuseLimits {
    pub throttle_after: u32,
    pub disconnect_after: u32,
    pub forgive_per_second: u32,
}

pub const DEFAULT_ABUSE_LIMITS: AbuseLimits = AbuseLimits {
    throttle_after: DEFAULT_RELAY_THROTTLE_AFTER,
    disconnect_after: DEFAULT_RELAY_DISCONNECT_AFTER,
    forgive_per_second: DEFAULT_RELAY_FORGIVE_PER_SECOND,
};

impl Default for AbuseLimits {
    fn default() -> Self {
        DEFAULT_ABUSE_LIMITS
    }
}

/// What a sender's strikes allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its PeerSetups are relayed.
    Good,
    /// Its PeerSetups are refused until strikes are forgiven.
    Throttled,
    /// It is to be disconnected.
    Disconnect,
}

/// One sender's strikes: a leaky bucket that fills by one per frame
/// dropped over a share (or sent while throttled) and drains at
/// `forgive_per_second`.
#[derive(Debug, Clone, Default)]
pub struct AbuseMeter {
    strikes: f32,
    updated: Option<Instant>,
}

impl AbuseMeter {
    /// The sender's standing now.
    pub fn standing(&mut self, limits: &AbuseLimits, now: Instant) -> Standing {
        self.forgive(limits, now);
        Self::judge(self.strikes, limits)
    }

    /// Adds a strike and says where that leaves the sender.
    pub fn strike(&mut self, limits: &AbuseLimits, now: Instant) -> Standing {
        self.forgive(limits, now);
        self.strikes += 1.0;
        Self::judge(self.strikes, limits)
    }

    fn forgive(&mut self, limits: &AbuseLimits, now: Instant) {
        if let Some(updated) = self.updated {
            let elapsed = now.saturating_duration_since(updated).as_secs_f32();
            self.strikes = (self.strikes - elapsed * limits.forgive_per_second as f32).max(0.0);
        }
        self.updated = Some(now);
    }

    fn judge(strikes: f32, limits: &AbuseLimits) -> Standing {
        if strikes >= limits.disconnect_after as f32 {
            Standing::Disconnect
        } else if strikes >= limits.throttle_after as f32 {
            Standing::Throttled
        } else {
            Standing::Good
        }
    }
}

#[cfg(test)]
#[path = "relay_share_tests.rs"]
mod tests;
