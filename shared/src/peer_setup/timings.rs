//! How long the peer's state machine waits for what: attempts and their
//! back-off, keepalives, a test peer's idleness, the relay's fallback —
//! each a named default, overridable together for tests.

use std::time::Duration;

use super::relay::{MAX_RETRY_WHILE_RELAYED, RELAY_FALLBACK_AFTER};

/// Shortest time between two attempts: long enough for one attempt's offer
/// and answer not to cross the next one's.
pub const MIN_RETRY: Duration = Duration::from_secs(3);
/// Longest time between attempts to reach an online peer.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often the peer checks whether an attempt is due.
pub const RETRY_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Remote candidates kept while waiting for the remote description.
pub const MAX_PENDING_CANDIDATES: usize = 64;
/// How often a `ping` goes out on `ctl` while connected.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// No `pong` for this long means the path is dead: hand over.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// A test peer that has not been connected for this long is dropped.
pub const TEST_PEER_IDLE: Duration = Duration::from_secs(30);
/// At most one refused setup message is logged per this interval, whatever
/// a hostile server sends; the rest are counted.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The timings, overridable for tests.
#[derive(Debug, Clone)]
pub struct PeerTimings {
    pub min_retry: Duration,
    pub max_retry: Duration,
    pub retry_check: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub test_peer_idle: Duration,
    pub relay_fallback_after: Duration,
    pub max_retry_while_relayed: Duration,
}

impl Default for PeerTimings {
    fn default() -> Self {
        Self {
            min_retry: MIN_RETRY,
            max_retry: MAX_RETRY,
            retry_check: RETRY_CHECK_INTERVAL,
            keepalive_interval: KEEPALIVE_INTERVAL,
            keepalive_timeout: KEEPALIVE_TIMEOUT,
            test_peer_idle: TEST_PEER_IDLE,
            relay_fallback_after: RELAY_FALLBACK_AFTER,
            max_retry_while_relayed: MAX_RETRY_WHILE_RELAYED,
        }
    }
}
