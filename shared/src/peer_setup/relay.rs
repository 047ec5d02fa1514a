//! When the signalling server's datagram relay carries a peer's WireGuard
//! datagrams: only when no data channel does. A data channel (direct or
//! through TURN) is always preferred; the relay is the last resort.
//!
//! The relay carries once the peer has been without a working data
//! channel for [`RELAY_FALLBACK_AFTER`] (none opened since it came online,
//! or the one carrying died: failed, or its keepalives went unanswered),
//! provided the server granted this node the relay and the peer answered
//! a relay ping within the keepalive timeout — so a peer that cannot use
//! the relay is never sent datagrams that would be dropped. Meanwhile the
//! machine keeps attempting data channels (at most
//! [`MAX_RETRY_WHILE_RELAYED`] apart), and the moment one's `wg` opens it
//! carries instead, make-before-break: what the relay still delivers is
//! taken as well.

use std::time::{Duration, Instant};

use super::ConnId;

/// How long a peer may be without a data channel before the relay carries:
/// a direct path opens in well under a second, one through TURN within a
/// couple; waiting longer than that only prolongs the outage.
pub const RELAY_FALLBACK_AFTER: Duration = Duration::from_secs(3);
/// While the relay carries, the longest wait between two attempts at a
/// data channel (otherwise [`super::MAX_RETRY`]): a path that appears (UDP
/// unblocked, a network change) is found within this.
pub const MAX_RETRY_WHILE_RELAYED: Duration = Duration::from_secs(10);

/// Where WireGuard datagrams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Carrier {
    /// This connection's `wg` data channel.
    Link(ConnId),
    /// The signalling server's datagram relay.
    Relay,
}

/// What the server said about the relay on the current signalling
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// Not granted: refused, not asked, or no signalling connection.
    None,
    /// Granted; when the peer last answered a relay ping.
    Granted { last_pong: Option<Instant> },
}

/// The relay as the peer's state machine sees it.
#[derive(Debug)]
pub(super) struct RelayFallback {
    grant: Grant,
    /// Since when no data channel carries; `None` while one does.
    no_path_since: Option<Instant>,
    /// [`RELAY_FALLBACK_AFTER`], unless a test says otherwise.
    fallback_after: Duration,
    /// A relay pong older than this means the relay path is down.
    pong_timeout: Duration,
}

impl RelayFallback {
    pub(super) fn new(fallback_after: Duration, pong_timeout: Duration) -> Self {
        Self {
            grant: Grant::None,
            no_path_since: None,
            fallback_after,
            pong_timeout,
        }
    }

    /// The server granted the relay (`true`) or did not, or the signalling
    /// connection is gone (`false`).
    pub(super) fn set_granted(&mut self, granted: bool) {
        self.grant = match (granted, self.grant) {
            (false, _) => Grant::None,
            (true, Grant::Granted { last_pong }) => Grant::Granted { last_pong },
            (true, Grant::None) => Grant::Granted { last_pong: None },
        };
    }

    /// The peer answered a relay ping.
    pub(super) fn on_pong(&mut self, now: Instant) {
        if let Grant::Granted { last_pong } = &mut self.grant {
            *last_pong = Some(now);
        }
    }

    /// No data channel carries (any more): the fallback clock runs from
    /// the first moment that was so.
    pub(super) fn path_lost(&mut self, now: Instant) {
        self.no_path_since.get_or_insert(now);
    }

    /// The peer just came online with no data channel: its clock starts
    /// now, whatever happened before it went away.
    pub(super) fn path_awaited(&mut self, now: Instant) {
        self.no_path_since = Some(now);
    }

    /// A data channel carries.
    pub(super) fn path_found(&mut self) {
        self.no_path_since = None;
    }

    /// Whether the relay should carry at `now`: no data channel for the
    /// fallback time, granted, and the peer answering through it.
    pub(super) fn may_carry(&self, now: Instant) -> bool {
        let waited = self
            .no_path_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.fallback_after);
        waited && self.answering(now)
    }

    /// Whether relay pings should go out: the relay is granted and may be
    /// needed (no data channel carries).
    pub(super) fn wants_ping(&self) -> bool {
        matches!(self.grant, Grant::Granted { .. }) && self.no_path_since.is_some()
    }

    fn answering(&self, now: Instant) -> bool {
        match self.grant {
            Grant::Granted { last_pong: Some(at) } => now.saturating_duration_since(at) < self.pong_timeout,
            _ => false,
        }
    }
}
