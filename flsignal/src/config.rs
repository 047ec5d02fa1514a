//! Command-line flags and `FLSIGNAL_*` environment variables. Every limit
//! the server enforces is here, with its default and why it exists.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::edge_config::EdgeConfig;
use crate::{stun, stun_limit};
use clap::{Parser, ValueEnum};
use flproto::presence::{PresenceConfig, DEFAULT_JOIN_FANOUT, DEFAULT_MAX_LIST_LEN};
use flproto::rate::RateLimit;
use flproto::session::{SessionConfig, DEFAULT_MAX_AUTH_FAILURES, DEFAULT_MAX_PROTOCOL_ERRORS, DEFAULT_RATE_LIMIT};

pub use crate::fairness_config::FairnessConfig;

/// Largest accepted WebSocket message (and frame); larger closes with 1009.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Frames waiting for a client; one that does not fit is dropped.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 128;
/// Simultaneous TCP connections, all kinds.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// Simultaneous TCP connections from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// Time a TCP connection may spend before its WebSocket upgrade (or its
/// plain HTTP answer) is done, PROXY header and TLS handshake included.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client may go without taking a single frame while frames wait
/// for it before it is dropped as a slow reader.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval at which presence news is sent (a leave is visible within it).
pub const DEFAULT_PRESENCE_INTERVAL: Duration = Duration::from_millis(250);
/// WebSocket read buffer per connection; small, as idle memory is a target.
pub const DEFAULT_WS_READ_BUFFER: usize = 1024;
/// Time given to connections to close on shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// First token of every NATS subject a cluster uses; clusters that share
/// one NATS system use different prefixes.
pub const DEFAULT_NATS_PREFIX: &str = "flsignal";
/// Messages (relays and presence) waiting to be published to NATS; more are
/// dropped, as is everything while NATS is unreachable.
pub const DEFAULT_NATS_QUEUE: usize = 8192;

/// Where the STUN service listens: a UDP address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunListen(pub Option<SocketAddr>);

impl std::str::FromStr for StunListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(StunListen(None));
        }
        text.parse()
            .map(|addr| StunListen(Some(addr)))
            .map_err(|_| format!("{text:?} is neither IP:PORT nor `off`"))
    }
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// flsignal: a fledger-compatible WebRTC signalling server.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on for WebSocket, HTTP, /healthz and /metrics.
    #[arg(long, env = "FLSIGNAL_LISTEN", default_value = "0.0.0.0:8765")]
    pub listen: SocketAddr,

    /// Public name(s) of this server as `host:port` (comma separated), the
    /// only names bound announces may be signed for. Unset: this machine's
    /// own names (loopback, interface addresses, hostname) with the
    /// listening port.
    #[arg(long, env = "FLSIGNAL_PUBLIC_HOST", value_delimiter = ',')]
    pub public_host: Vec<String>,

    /// Refuse fledger's plain (version 3) announces; only bound ones count.
    #[arg(long, env = "FLSIGNAL_REQUIRE_BOUND_AUTH")]
    pub require_bound_auth: bool,

    /// Largest WebSocket message in bytes; larger closes with 1009.
    #[arg(long, env = "FLSIGNAL_MAX_MESSAGE_SIZE", default_value_t = DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,

    /// Frames queued for one client; more are dropped (the client stays).
    #[arg(long, env = "FLSIGNAL_OUTBOUND_QUEUE", default_value_t = DEFAULT_OUTBOUND_QUEUE)]
    pub outbound_queue: usize,

    /// Messages per second one connection may send on average.
    #[arg(long, env = "FLSIGNAL_RATE_PER_SECOND", default_value_t = DEFAULT_RATE_LIMIT.per_second)]
    pub rate_per_second: u32,

    /// Messages one connection may send in a burst.
    #[arg(long, env = "FLSIGNAL_RATE_BURST", default_value_t = DEFAULT_RATE_LIMIT.burst)]
    pub rate_burst: u32,

    /// Simultaneous TCP connections; more are closed at accept.
    #[arg(long, env = "FLSIGNAL_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Simultaneous TCP connections from one IP address.
    #[arg(long, env = "FLSIGNAL_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,

    /// Time to send a valid Announce after connecting.
    #[arg(long, env = "FLSIGNAL_HANDSHAKE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub handshake_timeout: Duration,

    /// Time without any frame from a node (pongs count) before it is closed.
    #[arg(long, env = "FLSIGNAL_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,

    /// Interval of the server's WebSocket pings.
    #[arg(long, env = "FLSIGNAL_PING_INTERVAL", value_parser = parse_duration, default_value = "20s")]
    pub ping_interval: Duration,

    /// Failed announces before a connection is closed.
    #[arg(long, env = "FLSIGNAL_MAX_AUTH_FAILURES", default_value_t = DEFAULT_MAX_AUTH_FAILURES)]
    pub max_auth_failures: u32,

    /// Refused messages (malformed, out of order, spoofed) before a connection is closed.
    #[arg(long, env = "FLSIGNAL_MAX_PROTOCOL_ERRORS", default_value_t = DEFAULT_MAX_PROTOCOL_ERRORS)]
    pub max_protocol_errors: u32,

    /// Most nodes in one ListIDsReply (a random sample when there are more).
    #[arg(long, env = "FLSIGNAL_MAX_LIST_LEN", default_value_t = DEFAULT_MAX_LIST_LEN)]
    pub max_list_len: usize,

    /// Most nodes told about one join.
    #[arg(long, env = "FLSIGNAL_JOIN_FANOUT", default_value_t = DEFAULT_JOIN_FANOUT)]
    pub join_fanout: usize,

    /// Interval at which join/leave news goes out.
    #[arg(long, env = "FLSIGNAL_PRESENCE_INTERVAL", value_parser = parse_duration, default_value = "250ms")]
    pub presence_interval: Duration,

    /// Time a connection has for its PROXY header, TLS handshake and HTTP
    /// request or WebSocket upgrade, together.
    #[arg(long, env = "FLSIGNAL_HTTP_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub http_timeout: Duration,

    /// Time a client may take no frame at all while frames wait before it is dropped.
    #[arg(long, env = "FLSIGNAL_WRITE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub write_timeout: Duration,

    /// WebSocket read buffer per connection, in bytes.
    #[arg(long, env = "FLSIGNAL_WS_READ_BUFFER", default_value_t = DEFAULT_WS_READ_BUFFER)]
    pub ws_read_buffer: usize,

    /// Time connections get to close on SIGTERM/SIGINT.
    #[arg(long, env = "FLSIGNAL_DRAIN_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub drain_timeout: Duration,

    /// NATS server(s) to cluster through, e.g. `nats://10.0.0.5:4222`
    /// (comma separated for several). Unset: this server is alone.
    #[arg(long, env = "FLSIGNAL_NATS", value_delimiter = ',')]
    pub nats: Vec<String>,

    /// NATS credentials file (JWT and NKey seed, `.creds`).
    #[arg(long, env = "FLSIGNAL_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,

    /// File holding this instance's NATS NKey seed (`SU…`), for a NATS
    /// server that lists the instance's public NKey among its users.
    #[arg(long, env = "FLSIGNAL_NATS_NKEY")]
    pub nats_nkey: Option<PathBuf>,

    /// Require TLS to NATS (also implied by a `tls://` URL).
    #[arg(long, env = "FLSIGNAL_NATS_TLS")]
    pub nats_tls: bool,

    /// PEM file of CA certificates that NATS server certificates are checked against.
    #[arg(long, env = "FLSIGNAL_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// PEM client certificate for NATS (needs --nats-tls-key).
    #[arg(long, env = "FLSIGNAL_NATS_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,

    /// PEM private key of --nats-tls-cert.
    #[arg(long, env = "FLSIGNAL_NATS_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,

    /// First token of the NATS subjects this cluster uses.
    #[arg(long, env = "FLSIGNAL_NATS_PREFIX", default_value = DEFAULT_NATS_PREFIX)]
    pub nats_prefix: String,

    /// Messages waiting to be published to NATS before more are dropped.
    #[arg(long, env = "FLSIGNAL_NATS_QUEUE", default_value_t = DEFAULT_NATS_QUEUE)]
    pub nats_queue: usize,

    /// Interval of this instance's heartbeat to the cluster.
    #[arg(long, env = "FLSIGNAL_CLUSTER_HEARTBEAT", value_parser = parse_duration, default_value = "1s")]
    pub cluster_heartbeat: Duration,

    /// Silence after which another instance and its nodes count as gone.
    #[arg(long, env = "FLSIGNAL_CLUSTER_EXPIRY", value_parser = parse_duration, default_value = "3s")]
    pub cluster_expiry: Duration,

    /// How far another instance's registration times may be ahead of this
    /// one's clock; later ones are refused as forged.
    #[arg(long, env = "FLSIGNAL_CLUSTER_MAX_CLOCK_SKEW", value_parser = parse_duration, default_value = "5s")]
    pub cluster_max_clock_skew: Duration,

    /// UDP address of the STUN service (Binding Requests, RFC 8489) that
    /// nodes behind NAT learn their public address from; `off` disables it.
    #[arg(long, env = "FLSIGNAL_STUN_LISTEN", default_value = "0.0.0.0:3478")]
    pub stun_listen: StunListen,

    /// Largest STUN request read, in bytes; longer datagrams are dropped.
    #[arg(long, env = "FLSIGNAL_STUN_MAX_REQUEST", default_value_t = stun::DEFAULT_MAX_REQUEST)]
    pub stun_max_request: usize,

    /// STUN requests per second answered for one source IP on average.
    #[arg(long, env = "FLSIGNAL_STUN_RATE_PER_SECOND", default_value_t = stun_limit::DEFAULT_RATE.per_second)]
    pub stun_rate_per_second: u32,

    /// STUN requests answered for one source IP in a burst.
    #[arg(long, env = "FLSIGNAL_STUN_RATE_BURST", default_value_t = stun_limit::DEFAULT_RATE.burst)]
    pub stun_rate_burst: u32,

    /// STUN replies per second to all sources together on average (caps
    /// reflection by spoofed sources).
    #[arg(long, env = "FLSIGNAL_STUN_GLOBAL_RATE_PER_SECOND", default_value_t = stun_limit::DEFAULT_GLOBAL_RATE.per_second)]
    pub stun_global_rate_per_second: u32,

    /// STUN replies to all sources together in a burst.
    #[arg(long, env = "FLSIGNAL_STUN_GLOBAL_BURST", default_value_t = stun_limit::DEFAULT_GLOBAL_RATE.burst)]
    pub stun_global_burst: u32,

    /// STUN sources whose budgets are remembered; the least recently heard is forgotten first.
    #[arg(long, env = "FLSIGNAL_STUN_MAX_SOURCES", default_value_t = stun_limit::DEFAULT_MAX_SOURCES)]
    pub stun_max_sources: usize,

    /// Fair shares, per-source and per-request rates, fragment timeout.
    #[command(flatten)]
    pub fairness: FairnessConfig,

    /// TLS, trusted proxies and how clients are told apart.
    #[command(flatten)]
    pub edge: EdgeConfig,

    /// The datagram relay: on or off, bandwidth, datagram size, queues.
    #[command(flatten)]
    pub relay: crate::relay_config::RelayConfig,
    /// The TURN service.
    #[command(flatten)]
    pub turn: crate::turn::config::TurnConfig,

    /// Log format.
    #[arg(long, env = "FLSIGNAL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub trim: crate::heap::TrimConfig,

    #[command(flatten)]
    pub malloc: crate::malloc_tunable::MallocConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["flsignal"])
    }
}

impl Config {
    pub fn session(&self) -> SessionConfig {
        SessionConfig {
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            ping_interval: self.ping_interval,
            max_auth_failures: self.max_auth_failures,
            max_protocol_errors: self.max_protocol_errors,
            rate_limit: RateLimit {
                per_second: self.rate_per_second,
                burst: self.rate_burst,
            },
            list_rate_limit: self.fairness.list_rate(),
            relay_abuse: self.fairness.relay_abuse(),
            fragment_timeout: self.fairness.fragment_timeout,
            datagram_relay: self.relay.limits(self.max_message_size),
            // Set by the server while its TURN service runs.
            turn_renewal: None,
        }
    }

    pub fn presence(&self) -> PresenceConfig {
        PresenceConfig {
            max_list_len: self.max_list_len,
            join_fanout: self.join_fanout,
            min_list_push_interval: self.fairness.min_list_push_interval,
        }
    }

    pub fn stun_rate(&self) -> RateLimit {
        RateLimit {
            per_second: self.stun_rate_per_second,
            burst: self.stun_rate_burst,
        }
    }

    pub fn stun_global_rate(&self) -> RateLimit {
        RateLimit {
            per_second: self.stun_global_rate_per_second,
            burst: self.stun_global_burst,
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
