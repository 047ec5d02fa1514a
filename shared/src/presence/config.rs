//! The limits of presence, with their defaults (flags of flsignal's).

use std::time::Duration;

/// Default upper bound of a node list, and of a node's view.
pub const DEFAULT_MAX_LIST_LEN: usize = 100;
/// Default number of views one join is added to, at most.
pub const DEFAULT_JOIN_FANOUT: usize = 256;
/// Default shortest time between two full lists pushed to one node: a
/// list is up to ~20 KB, and churn must not turn it into a stream.
pub const DEFAULT_MIN_LIST_PUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Limits of the presence bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceConfig {
    pub max_list_len: usize,
    pub join_fanout: usize,
    pub min_list_push_interval: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            max_list_len: DEFAULT_MAX_LIST_LEN,
            join_fanout: DEFAULT_JOIN_FANOUT,
            min_list_push_interval: DEFAULT_MIN_LIST_PUSH_INTERVAL,
        }
    }
}
