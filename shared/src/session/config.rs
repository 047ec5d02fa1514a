//! The per-connection limits of a [`super::ServerSession`], with their
//! defaults (each is a flag of flsignal's).

use std::time::Duration;

use crate::datagram_relay::DatagramRelayLimits;
use crate::rate::RateLimit;
use crate::relay_share::AbuseLimits;

/// Default time a new connection has to announce itself.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time without any inbound frame (pongs included) before closing.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default interval between the server's WebSocket pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default number of refused Announces before the connection is closed.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;
/// Default number of refused messages of other kinds before closing.
pub const DEFAULT_MAX_PROTOCOL_ERRORS: u32 = 16;
/// Default message rate: generous for trickled ICE candidates, far below
/// what it takes to load the server.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 50,
    burst: 200,
};
/// Default rate of `ListIDsRequest`s one connection may make: each costs
/// a fresh sample and up to ~70 KB of answer for 16 bytes asked, while
/// a fledger node asks with its Announce and otherwise gets its list
/// pushed; the browser page asks when its user clicks "refresh".
pub const DEFAULT_LIST_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 1,
    burst: 4,
};
/// Default time a fragmented WebSocket message may take to complete;
/// pings between its fragments do not extend it.
pub const DEFAULT_FRAGMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The per-connection limits.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub max_auth_failures: u32,
    pub max_protocol_errors: u32,
    pub rate_limit: RateLimit,
    pub list_rate_limit: RateLimit,
    pub relay_abuse: AbuseLimits,
    pub fragment_timeout: Duration,
    /// The datagram relay's per-node limits; `None`: the server does not
    /// relay (`--relay off`).
    pub datagram_relay: Option<DatagramRelayLimits>,
    /// How often a version-4 node is sent a fresh TURN credential (half
    /// its lifetime, see `turn_credentials`); `None` while the server runs
    /// no TURN service.
    pub turn_renewal: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            max_protocol_errors: DEFAULT_MAX_PROTOCOL_ERRORS,
            rate_limit: DEFAULT_RATE_LIMIT,
            list_rate_limit: DEFAULT_LIST_RATE_LIMIT,
            relay_abuse: AbuseLimits::default(),
            fragment_timeout: DEFAULT_FRAGMENT_TIMEOUT,
            datagram_relay: Some(DatagramRelayLimits::default()),
            turn_renewal: None,
        }
    }
}
