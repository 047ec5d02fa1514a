//! The TURN service's numbers in `/metrics` (`flsignal_turn_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{registered, Direction, Reason};

/// Why a request was refused (`flsignal_turn_refusals_total`).
pub const REFUSALS: &[&str] = &[
    "expired",
    "bad_username",
    "bad_password",
    "node_allocation_cap",
    "server_allocation_cap",
    "allocation_cap_race",
    "denied_peer",
    "no_relay_port",
    "tcp_allocation",
    "handshake_evicted",
    "rate_limited",
    "tcp_connections",
    "tls_handshake",
];
/// Why a datagram was not relayed (`flsignal_turn_dropped_total`).
pub const DROPS: &[&str] = &[
    "allocation_bandwidth",
    "node_bandwidth",
    "queues_full",
    "denied_peer",
    "send_failed",
];
/// Why an allocation ended (`flsignal_turn_allocations_ended_total`).
pub const ENDINGS: &[&str] = &["released", "max_age"];

/// Cheap to clone: every field is a handle on the registered metric.
#[derive(Clone, Default)]
pub struct TurnMetrics {
    /// Allocations held now.
    pub allocations: Gauge,
    /// Clients between their first request and an allocation.
    pub handshakes: Gauge,
    /// Allocations made.
    pub allocations_made: Counter,
    /// Allocations ended, by reason.
    pub allocations_ended: Family<Reason, Counter>,
    /// Bytes relayed as sent, `to_peer` and `to_client` (towards a client
    /// with TURN's framing: 4 bytes of ChannelData, or a Data indication).
    pub relayed_bytes: Family<Direction, Counter>,
    /// The two series of `relayed_bytes`, looked up once: they are counted
    /// for every relayed datagram.
    to_peer: Counter,
    to_client: Counter,
    /// Requests refused, by reason.
    pub refusals: Family<Reason, Counter>,
    /// Datagrams not relayed, by reason.
    pub dropped: Family<Reason, Counter>,
}

impl TurnMetrics {
    /// Registers every metric under `flsignal_turn_*`, the known label
    /// values at 0.
    pub fn register(registry: &mut Registry) -> TurnMetrics {
        let r = registry;
        let relayed_bytes: Family<Direction, Counter> =
            registered(r, "turn_relayed_bytes", "Bytes relayed by TURN by direction");
        let series = |direction| relayed_bytes.get_or_create(&Direction { direction }).clone();
        let (to_peer, to_client) = (series("to_peer"), series("to_client"));
        let metrics = TurnMetrics {
            allocations: registered(r, "turn_allocations", "TURN allocations held"),
            handshakes: registered(r, "turn_handshakes", "TURN clients authenticating"),
            allocations_made: registered(r, "turn_allocations_made", "TURN allocations made"),
            allocations_ended: registered(r, "turn_allocations_ended", "TURN allocations ended by reason"),
            relayed_bytes,
            to_peer,
            to_client,
            refusals: registered(r, "turn_refusals", "TURN requests refused by reason"),
            dropped: registered(r, "turn_dropped", "Datagrams TURN did not relay by reason"),
        };
        for &reason in REFUSALS {
            drop(metrics.refusals.get_or_create(&Reason { reason }));
        }
        for &reason in DROPS {
            drop(metrics.dropped.get_or_create(&Reason { reason }));
        }
        for &reason in ENDINGS {
            drop(metrics.allocations_ended.get_or_create(&Reason { reason }));
        }
        metrics
    }

    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&Reason { reason }).inc();
    }

    pub fn dropped(&self, reason: &'static str) {
        self.dropped.get_or_create(&Reason { reason }).inc();
    }

    pub fn ended(&self, reason: &'static str) {
        self.allocations_ended.get_or_create(&Reason { reason }).inc();
    }

    /// Counts `bytes` relayed from a client to its peer.
    pub fn relayed_to_peer(&self, bytes: usize) {
        self.to_peer.inc_by(bytes as u64);
    }

    /// Counts `bytes` relayed from a peer to its client.
    pub fn relayed_to_client(&self, bytes: usize) {
        self.to_client.inc_by(bytes as u64);
    }
}
