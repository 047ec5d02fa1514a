//! The datagram relay's numbers in `/metrics`: what it forwarded, what it
//! dropped and why, how many nodes use it, and the limits it runs under.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::Reason;

/// Where a relayed datagram went.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Path {
    /// `local` (to a node of this server), `cluster_out` (to another
    /// instance), `cluster_in` (from another instance, to a node here).
    pub path: &'static str,
}

/// Which limit a gauge shows.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Limit {
    pub limit: &'static str,
}

/// Why a relay frame was dropped at the server, besides the sender's own
/// (`flproto::session::DatagramDrop`).
pub const DROP_REASONS: [&str; 9] = [
    "server_rate",
    "not_connected",
    "not_relaying",
    "queue_full",
    "over_share",
    "closing",
    "cluster_queue",
    "cluster_down",
    "slow_reader",
];

#[derive(Clone)]
pub struct DatagramMetrics {
    /// Frames handed on, by path.
    pub relayed: Family<Path, Counter>,
    /// Bytes of those frames (headers included).
    pub bytes: Counter,
    /// Frames dropped, by reason.
    pub drops: Family<Reason, Counter>,
    /// Nodes on this server that were granted the relay.
    pub nodes: Gauge,
    /// The configured limits, in bytes (per second for rates).
    pub limits: Family<Limit, Gauge>,
}

impl DatagramMetrics {
    /// Registers the relay's metrics, with every known series at 0.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = DatagramMetrics {
            relayed: Family::default(),
            bytes: Counter::default(),
            drops: Family::default(),
            nodes: Gauge::default(),
            limits: Family::default(),
        };
        registry.register(
            "datagrams_relayed",
            "Relay frames handed on, by path",
            metrics.relayed.clone(),
        );
        registry.register(
            "datagram_bytes_relayed",
            "Bytes of relay frames handed on",
            metrics.bytes.clone(),
        );
        registry.register(
            "datagram_drops",
            "Relay frames dropped, by reason",
            metrics.drops.clone(),
        );
        registry.register(
            "datagram_relay_nodes",
            "Nodes here granted the datagram relay",
            metrics.nodes.clone(),
        );
        registry.register(
            "datagram_relay_limit_bytes",
            "Limits of the datagram relay (rates per second)",
            metrics.limits.clone(),
        );
        for path in ["local", "cluster_out", "cluster_in"] {
            drop(metrics.relayed.get_or_create(&Path { path }));
        }
        let session_drops = flproto::session::DatagramDrop::ALL.map(|drop| drop.label());
        for reason in session_drops.into_iter().chain(DROP_REASONS) {
            drop(metrics.drops.get_or_create(&Reason { reason }));
        }
        metrics
    }

    /// Shows the limits the server runs under.
    pub fn show_limits(&self, config: &crate::Config) {
        let relay = &config.relay;
        let on = relay.limits(config.max_message_size).is_some();
        let values = [
            ("node_rate", relay.relay_node_bytes_per_second as usize),
            ("node_burst", relay.relay_node_burst as usize),
            ("server_rate", relay.relay_server_bytes_per_second as usize),
            ("server_burst", relay.relay_server_burst as usize),
            ("max_datagram", relay.max_datagram(config.max_message_size)),
        ];
        for (limit, value) in values {
            // Off relays nothing: every limit is 0.
            let value = if on { value as i64 } else { 0 };
            self.limits.get_or_create(&Limit { limit }).set(value);
        }
    }

    pub fn drop(&self, reason: &'static str) {
        self.drops.get_or_create(&Reason { reason }).inc();
    }

    pub fn relayed(&self, path: &'static str, bytes: usize) {
        self.relayed.get_or_create(&Path { path }).inc();
        self.bytes.inc_by(bytes as u64);
    }
}
