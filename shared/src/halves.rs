//! WireGuard datagrams too large for one SCTP packet, sent over the `wg`
//! channel as two messages of equal size and joined again on arrival.
//!
//! A datagram larger than one SCTP packet's payload (from a WireGuard
//! interface with the common MTU of 1420, up to 1452 bytes) is split by
//! the SCTP stack into a full chunk and a short remainder: two UDP
//! datagrams of different sizes per WireGuard datagram. The WebRTC stack
//! sends queued UDP datagrams with one GSO `sendmsg` only for a run of
//! equal sizes, so alternating sizes cost one system call per record.
//! Split here into halves of equal size, every full-size datagram becomes
//! two equal messages, one UDP datagram each, and a stream of them goes
//! out in GSO runs. Losing either half loses the datagram, as losing
//! either SCTP fragment did.
//!
//! A half is one message on the channel: a [`HEADER_LEN`]-byte header
//! (a marker byte, [`FIRST`] or [`SECOND`], and the datagram's 32-bit id
//! in big-endian order) and the half's bytes. No WireGuard message begins
//! with either marker (WireGuard's first byte is its message type, 1 to 4),
//! so whole datagrams and halves share the channel without a header on
//! the whole ones. A node sends halves only to a peer that said it joins
//! them; this module knows nothing of how that is said.
//!
//! [`Reassembly`] holds a first-arrived half until its partner comes,
//! within [`ReassemblyLimits`]: a peer that sends only halves, or halves
//! that never pair, holds at most `max_held` of them, each at most
//! [`MAX_HALF_BYTES`], for at most `max_age`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes in front of each half: the marker and the datagram's id.
pub const HEADER_LEN: usize = 5;
/// Marker byte of a datagram's first half.
pub const FIRST: u8 = 0xF0;
/// Marker byte of a datagram's second half.
pub const SECOND: u8 = 0xF1;
/// Largest half accepted, without its header. A half of the largest
/// datagram flnode reads from WireGuard (a 2 KiB receive slot) is 1 KiB;
/// anything larger did not come from a node following this module.
pub const MAX_HALF_BYTES: usize = 2048;
/// Halves held waiting for their partner, by default: a node's halves
/// arrive in the order they were sent unless the path reorders, so only
/// one is normally held; this bounds what lost partners and a hostile peer
/// leave behind (at most 64 × [`MAX_HALF_BYTES`] per peer).
pub const DEFAULT_MAX_HELD: usize = 64;
/// How long a half waits for its partner, by default. Both halves leave
/// together; one still alone after this long has lost its partner.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_millis(500);

/// Which half of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    First,
    Second,
}

/// What a message on the `wg` channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A whole datagram, to be handed to WireGuard as it is.
    Whole,
    /// One half of datagram `id`; its bytes follow the header.
    Half { half: Half, id: u32 },
    /// A half's marker on a message too short for its header, or a half
    /// larger than [`MAX_HALF_BYTES`]: dropped.
    Malformed,
}

impl Message {
    /// Reads what `message` is.
    pub fn of(message: &[u8]) -> Message {
        let half = match message.first() {
            Some(&FIRST) => Half::First,
            Some(&SECOND) => Half::Second,
            _ => return Message::Whole,
        };
        let Some(id) = message.get(1..HEADER_LEN) else {
            return Message::Malformed;
        };
        if message.len() - HEADER_LEN > MAX_HALF_BYTES {
            return Message::Malformed;
        }
        let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        Message::Half { half, id }
    }
}

/// The header of `half` of datagram `id`.
pub fn header(half: Half, id: u32) -> [u8; HEADER_LEN] {
    let marker = match half {
        Half::First => FIRST,
        Half::Second => SECOND,
    };
    let id = id.to_be_bytes();
    [marker, id[0], id[1], id[2], id[3]]
}

/// Where a datagram of `len` bytes is cut: the first half is
/// `..split_at(len)`, the second the rest; equal for an even length (every
/// WireGuard data message is a multiple of 16 bytes), the first one byte
/// longer otherwise.
pub fn split_at(len: usize) -> usize {
    len.div_ceil(2)
}

/// The sending side's ids: one per split datagram, in order, wrapping.
#[derive(Debug, Default)]
pub struct Ids(u32);

impl Ids {
    pub fn take(&mut self) -> u32 {
        let id = self.0;
        self.0 = self.0.wrapping_add(1);
        id
    }
}

/// How much a [`Reassembly`] may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Halves held at most; the oldest goes to make room.
    pub max_held: usize,
    /// How long a half waits for its partner.
    pub max_age: Duration,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            max_held: DEFAULT_MAX_HELD,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// What one arriving half gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Step<B> {
    /// Both halves of a datagram, in order (headers included): the
    /// datagram is `first[HEADER_LEN..]` followed by `second[HEADER_LEN..]`.
    pub joined: Option<(B, B)>,
    /// Halves given up (too old, or pushed out to make room, or a
    /// duplicate replaced) during this step.
    pub dropped: usize,
}

struct Held<K, B> {
    key: K,
    id: u32,
    half: Half,
    at: Instant,
    message: B,
}

/// Halves waiting for their partner, from the connections `K` of one peer.
pub struct Reassembly<K, B> {
    held: VecDeque<Held<K, B>>,
    limits: ReassemblyLimits,
}

impl<K: PartialEq + Copy, B> Reassembly<K, B> {
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            held: VecDeque::new(),
            limits,
        }
    }

    /// Halves held now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// `message`, `half` of datagram `id` from connection `key`, arrived
    /// at `now`.
    pub fn on_half(&mut self, key: K, half: Half, id: u32, message: B, now: Instant) -> Step<B> {
        let mut dropped = self.expire(now);
        // The partner is normally the newest held half: search from the back.
        if let Some(at) = self.held.iter().rposition(|h| h.key == key && h.id == id) {
            if self.held[at].half != half {
                let partner = self.held.remove(at).expect("found above").message;
                let joined = match half {
                    Half::First => (message, partner),
                    Half::Second => (partner, message),
                };
                return Step {
                    joined: Some(joined),
                    dropped,
                };
            }
            // The same half again: the newer one stays.
            self.held.remove(at);
            dropped += 1;
        }
        if self.limits.max_held == 0 {
            return Step {
                joined: None,
                dropped: dropped + 1,
            };
        }
        while self.held.len() >= self.limits.max_held {
            self.held.pop_front();
            dropped += 1;
        }
        self.held.push_back(Held {
            key,
            id,
            half,
            at: now,
            message,
        });
        Step { joined: None, dropped }
    }

    /// Drops what connection `key` left; how many halves that was.
    pub fn forget(&mut self, key: K) -> usize {
        let before = self.held.len();
        self.held.retain(|h| h.key != key);
        before - self.held.len()
    }

    /// Drops halves that waited longer than the limit; how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.held.len();
        while let Some(oldest) = self.held.front() {
            if now.saturating_duration_since(oldest.at) <= self.limits.max_age {
                break;
            }
            self.held.pop_front();
        }
        before - self.held.len()
    }
}

#[cfg(test)]
#[path = "halves_tests.rs"]
mod tests;
