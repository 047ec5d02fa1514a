//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

/// Every number the server publishes.
pub struct Metrics {
    registry: Registry,
    /// Open TCP connections of any kind.
    pub connections: Gauge,
    /// Open WebSocket sessions (announced or not).
    pub sessions: Gauge,
    /// Nodes that announced and are online.
    pub registered_nodes: Gauge,
    /// Connections closed at accept, by reason.
    pub rejected_connections: Family<Reason, Counter>,
    /// Announces, `ok` or the refusal reason.
    pub handshakes: Family<Reason, Counter>,
    /// Other refused messages, by reason.
    pub refusals: Family<Reason, Counter>,
    /// PeerSetup frames handed to their destination's queue.
    pub relayed: Counter,
    /// Frames not delivered, by reason.
    pub drops: Family<Reason, Counter>,
    /// Connections the server closed, by reason.
    pub closes: Family<Reason, Counter>,
    /// Time from a PeerSetup's arrival to its write to the destination.
    pub relay_latency: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("flsignal"),
            connections: Gauge::default(),
            sessions: Gauge::default(),
            registered_nodes: Gauge::default(),
            rejected_connections: Family::default(),
            handshakes: Family::default(),
            refusals: Family::default(),
            relayed: Counter::default(),
            drops: Family::default(),
            closes: Family::default(),
            // 10 µs to ~1.3 s.
            relay_latency: Histogram::new(exponential_buckets(0.000_01, 2.0, 18)),
        };
        let r = &mut metrics.registry;
        r.register("connections", "Open TCP connections", metrics.connections.clone());
        r.register("sessions", "Open WebSocket sessions", metrics.sessions.clone());
        r.register(
            "registered_nodes",
            "Announced nodes online",
            metrics.registered_nodes.clone(),
        );
        r.register(
            "rejected_connections",
            "Connections closed at accept",
            metrics.rejected_connections.clone(),
        );
        r.register("handshakes", "Announces by outcome", metrics.handshakes.clone());
        r.register("refusals", "Refused messages by reason", metrics.refusals.clone());
        r.register("relayed_messages", "PeerSetup frames relayed", metrics.relayed.clone());
        r.register("drops", "Frames not delivered by reason", metrics.drops.clone());
        r.register(
            "closes",
            "Connections closed by the server by reason",
            metrics.closes.clone(),
        );
        r.register(
            "relay_latency_seconds",
            "PeerSetup arrival to write at destination",
            metrics.relay_latency.clone(),
        );
        metrics.zero_known_series();
        metrics
    }

    /// Creates the series whose labels are known up front, so that they
    /// show as 0 instead of being absent until the first event.
    fn zero_known_series(&self) {
        let zero = |family: &Family<Reason, Counter>, reason: &'static str| {
            family.get_or_create(&Reason { reason });
        };
        zero(&self.handshakes, "ok");
        for reason in ["max_connections", "per_ip"] {
            zero(&self.rejected_connections, reason);
        }
        for reason in ["not_connected", "slow_reader", "closing"] {
            zero(&self.drops, reason);
        }
        for reason in flproto::close::CloseReason::ALL {
            zero(&self.closes, reason.label());
        }
    }

    pub fn count(family: &Family<Reason, Counter>, reason: &'static str) {
        family.get_or_create(&Reason { reason }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
