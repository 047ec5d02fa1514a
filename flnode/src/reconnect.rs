//! When to try the signalling server again.
//!
//! Two kinds of failure want different waits. A server that cannot be
//! reached (refused, reset, timed out: it is restarting, or the network is
//! down) is polled at a short, capped interval, so that nodes are
//! registered again within [`UNREACHABLE_POLL_CAP`] plus one handshake of
//! its return: that costs one refused TCP connection per node per poll. A
//! server that answered and refused us (over capacity, rate limited, a bad
//! announce) is asked again only after an exponentially growing wait, up
//! to [`MAX_BACKOFF`]: asking sooner would only add to its load. Every
//! wait is jittered by the caller so that nodes cut off together do not
//! come back together.

use std::time::Duration;

/// First wait before reconnecting; doubles after each failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait after the server refused us.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Wait after our own address went away: just enough for the new address
/// to be usable (routes follow the address within milliseconds).
pub const AFTER_MOVING: Duration = Duration::from_millis(20);
/// Longest wait while the server cannot be reached at all.
pub const UNREACHABLE_POLL_CAP: Duration = Duration::from_millis(1500);

/// How one connection to the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// It registered, then ended (the server went away, or the link).
    AfterRegistering,
    /// No connection could be made.
    Unreachable,
    /// The server answered but did not register us.
    Refused,
    /// Our own address went away under the connection (we moved to
    /// another network): the server is fine, so come back at once.
    LocalAddressGone,
}

/// The waits between attempts; pure, so the policy is tested without time.
#[derive(Debug, Clone)]
pub struct Reconnect {
    backoff: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect { backoff: MIN_BACKOFF }
    }
}

impl Reconnect {
    /// The wait (before jitter) after a connection ended as `end`.
    pub fn after(&mut self, end: SessionEnd) -> Duration {
        match end {
            SessionEnd::AfterRegistering => {
                self.backoff = MIN_BACKOFF;
                MIN_BACKOFF
            }
            SessionEnd::LocalAddressGone => {
                self.backoff = MIN_BACKOFF;
                AFTER_MOVING
            }
            SessionEnd::Unreachable => {
                let wait = self.backoff.min(UNREACHABLE_POLL_CAP);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                wait
            }
            SessionEnd::Refused => {
                let wait = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_server_is_polled_at_most_every_cap() {
        let mut reconnect = Reconnect::default();
        let waits: Vec<_> = (0..20).map(|_| reconnect.after(SessionEnd::Unreachable)).collect();
        assert_eq!(waits[0], MIN_BACKOFF);
        assert_eq!(waits[1], MIN_BACKOFF * 2);
        assert!(waits.iter().all(|wait| *wait <= UNREACHABLE_POLL_CAP));
        assert_eq!(waits[19], UNREACHABLE_POLL_CAP);
    }

    #[test]
    fn a_refusing_server_is_backed_off_up_to_the_maximum() {
        let mut reconnect = Reconnect::default();
        let waits: Vec<_> = (0..20).map(|_| reconnect.after(SessionEnd::Refused)).collect();
        assert!(waits.windows(2).all(|pair| pair[1] >= pair[0]));
        assert_eq!(waits[19], MAX_BACKOFF);
    }

    #[test]
    fn a_server_that_comes_back_after_refusing_is_polled_quickly_when_it_goes_away() {
        let mut reconnect = Reconnect::default();
        for _ in 0..10 {
            reconnect.after(SessionEnd::Refused);
        }
        // Still refusing-sized backoff remembered, but unreachable polls
        // stay capped.
        assert_eq!(reconnect.after(SessionEnd::Unreachable), UNREACHABLE_POLL_CAP);
        assert_eq!(reconnect.after(SessionEnd::AfterRegistering), MIN_BACKOFF);
        assert_eq!(reconnect.after(SessionEnd::Unreachable), MIN_BACKOFF);
    }

    #[test]
    fn moving_to_another_network_reconnects_at_once() {
        let mut reconnect = Reconnect::default();
        for _ in 0..10 {
            reconnect.after(SessionEnd::Unreachable);
        }
        assert_eq!(reconnect.after(SessionEnd::LocalAddressGone), AFTER_MOVING);
        assert_eq!(reconnect.after(SessionEnd::Unreachable), MIN_BACKOFF);
    }
}
