//! Why the server ends a connection, and the WebSocket close code it uses.
//! Standard codes where one fits, application codes (4000–4999) otherwise,
//! so a client can tell "fix your software" from "try again later".

/// The reasons a server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The server is shutting down (1001).
    Shutdown,
    /// A binary frame arrived; the protocol is text only (1003).
    BinaryFrame,
    /// A frame or message exceeded the size limit (1009).
    TooLarge,
    /// No valid Announce within the handshake timeout (4000).
    HandshakeTimeout,
    /// Too many failed Announce attempts (4001).
    AuthFailed,
    /// The same node announced on a newer connection (4002).
    Replaced,
    /// More messages than the rate limit allows (4003).
    RateLimited,
    /// Nothing received, not even a pong, within the idle timeout (4004).
    IdleTimeout,
    /// Nothing could be written to the client for the write timeout while
    /// frames waited: it does not read (4005).
    SlowReader,
    /// Too many malformed or out-of-order messages (4006).
    ProtocolErrors,
    /// Kept sending PeerSetups over its share of a receiver's queue after
    /// being throttled (4007): the cost of a flood lands on the flooder.
    RelayAbuse,
    /// A fragmented message was not completed in time (4008).
    FragmentTimeout,
}

impl CloseReason {
    pub const ALL: [CloseReason; 12] = [
        CloseReason::Shutdown,
        CloseReason::BinaryFrame,
        CloseReason::TooLarge,
        CloseReason::HandshakeTimeout,
        CloseReason::AuthFailed,
        CloseReason::Replaced,
        CloseReason::RateLimited,
        CloseReason::IdleTimeout,
        CloseReason::SlowReader,
        CloseReason::ProtocolErrors,
        CloseReason::RelayAbuse,
        CloseReason::FragmentTimeout,
    ];

    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Shutdown => 1001,
            CloseReason::BinaryFrame => 1003,
            CloseReason::TooLarge => 1009,
            CloseReason::HandshakeTimeout => 4000,
            CloseReason::AuthFailed => 4001,
            CloseReason::Replaced => 4002,
            CloseReason::RateLimited => 4003,
            CloseReason::IdleTimeout => 4004,
            CloseReason::SlowReader => 4005,
            CloseReason::ProtocolErrors => 4006,
            CloseReason::RelayAbuse => 4007,
            CloseReason::FragmentTimeout => 4008,
        }
    }

    /// A short machine-friendly label, used in close frames and metrics.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Shutdown => "shutdown",
            CloseReason::BinaryFrame => "binary_frame",
            CloseReason::TooLarge => "too_large",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::AuthFailed => "auth_failed",
            CloseReason::Replaced => "replaced",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::SlowReader => "slow_reader",
            CloseReason::ProtocolErrors => "protocol_errors",
            CloseReason::RelayAbuse => "relay_abuse",
            CloseReason::FragmentTimeout => "fragment_timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let mut codes: Vec<u16> = CloseReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CloseReason::ALL.len());
    }
}
