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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    pub direction: &'static str,
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
    /// 1 while the NATS connection is up, 0 while it is not (or none is
    /// configured).
    pub cluster_up: Gauge,
    /// Instances of the cluster alive, this one included.
    pub cluster_instances: Gauge,
    /// Nodes online in the whole cluster.
    pub cluster_nodes: Gauge,
    /// PeerSetup frames to (`out`) and from (`in`) other instances.
    pub cluster_relays: Family<Direction, Counter>,
    /// Messages from other instances refused, by reason (forged or broken:
    /// bad node info, a registration time from the future, a relayed frame
    /// that is not a PeerSetup between its sender and destination).
    pub cluster_refused: Family<Reason, Counter>,
    /// STUN Binding Requests answered (success or 420).
    pub stun_answered: Counter,
    /// STUN datagrams not answered, by reason.
    pub stun_ignored: Family<Reason, Counter>,
    /// The datagram relay's.
    pub datagrams: crate::datagram_metrics::DatagramMetrics,
    /// The TURN service's.
    pub turn: crate::turn::metrics::TurnMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flsignal");
        let r = &mut registry;
        // 10 µs to ~1.3 s.
        let relay_latency = Histogram::new(exponential_buckets(0.000_01, 2.0, 18));
        r.register(
            "relay_latency_seconds",
            "PeerSetup arrival to write at destination",
            relay_latency.clone(),
        );
        let metrics = Metrics {
            connections: registered(r, "connections", "Open TCP connections"),
            sessions: registered(r, "sessions", "Open WebSocket sessions"),
            registered_nodes: registered(r, "registered_nodes", "Announced nodes online"),
            rejected_connections: registered(r, "rejected_connections", "Connections closed at accept"),
            handshakes: registered(r, "handshakes", "Announces by outcome"),
            refusals: registered(r, "refusals", "Refused messages by reason"),
            relayed: registered(r, "relayed_messages", "PeerSetup frames relayed"),
            drops: registered(r, "drops", "Frames not delivered by reason"),
            closes: registered(r, "closes", "Connections closed by the server by reason"),
            relay_latency,
            cluster_up: registered(r, "cluster_up", "Whether the NATS connection is up"),
            cluster_instances: registered(r, "cluster_instances", "Cluster instances alive, this one included"),
            cluster_nodes: registered(r, "cluster_nodes", "Nodes online in the whole cluster"),
            cluster_relays: registered(r, "cluster_relayed_messages", "PeerSetup frames via NATS by direction"),
            cluster_refused: registered(r, "cluster_refused", "Messages from other instances refused by reason"),
            stun_answered: registered(r, "stun_answered", "STUN Binding Requests answered"),
            stun_ignored: registered(r, "stun_ignored", "STUN datagrams not answered by reason"),
            datagrams: crate::datagram_metrics::DatagramMetrics::register(r),
            turn: crate::turn::metrics::TurnMetrics::register(r),
            registry,
        };
        metrics.zero_known_series();
        metrics
    }

    /// Creates the series whose labels are known up front, so that they
    /// show as 0 instead of being absent until the first event.
    fn zero_known_series(&self) {
        let zero = |family: &Family<Reason, Counter>, reason: &'static str| {
            drop(family.get_or_create(&Reason { reason }));
        };
        zero(&self.handshakes, "ok");
        zero(&self.handshakes, "source_rate_limited");
        for reason in ["list_rate_limited", "relay_throttled"] {
            zero(&self.refusals, reason);
        }
        for reason in ["max_connections", "per_ip"] {
            zero(&self.rejected_connections, reason);
        }
        for direction in ["in", "out"] {
            drop(self.cluster_relays.get_or_create(&Direction { direction }));
        }
        for reason in [
            "not_connected",
            "over_share",
            "queue_full",
            "slow_reader",
            "closing",
            "cluster_queue",
            "cluster_down",
        ] {
            zero(&self.drops, reason);
        }
        for reason in ["malformed", "bad_node_info", "future_at", "relay_no_sender"] {
            zero(&self.cluster_refused, reason);
        }
        for refusal in flproto::cluster_message::RelayRefusal::ALL {
            zero(&self.cluster_refused, refusal.label());
        }
        for refusal in crate::datagram_relay::ClusterDatagramRefusal::ALL {
            zero(&self.cluster_refused, refusal.label());
        }
        zero(&self.cluster_refused, "datagram_no_sender");
        for reason in crate::stun::Ignored::ALL {
            zero(&self.stun_ignored, reason.label());
        }
        for reason in flproto::close::CloseReason::ALL {
            zero(&self.closes, reason.label());
        }
    }

    pub fn count(family: &Family<Reason, Counter>, reason: &'static str) {
        family.get_or_create(&Reason { reason }).inc();
    }

    pub fn count_relay(&self, direction: &'static str) {
        self.cluster_relays.get_or_create(&Direction { direction }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// A new metric, registered under `name`.
pub(crate) fn registered<M>(registry: &mut Registry, name: &str, help: &str) -> M
where
    M: prometheus_client::registry::Metric + Default + Clone,
{
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
