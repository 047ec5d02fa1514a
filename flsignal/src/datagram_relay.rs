//! Forwarding relay frames (`flproto::datagram_relay`) between nodes that
//! were granted the relay: into the receiver's relay queue here, or to
//! NATS for the instance that holds it.
//!
//! The sender's session has checked the frame and charged the sender's
//! budget; here the server's own budget is charged, the frame is
//! readdressed (the sender's ID where the destination's was) and offered
//! to a queue. Each connection granted the relay has a second bounded
//! queue for relay frames beside its signalling queue, which its writer
//! serves only when no signalling frame waits, and which its senders share
//! fairly when it is full ([`crate::datagram_queue`]); what does not fit
//! is dropped and counted, never queued without bound.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use flproto::cluster_message::InstanceId;
use flproto::datagram_relay::frame::{readdress, Frame};
use flproto::datagram_relay::DatagramRelayLimits;
use flproto::rate::TokenBucket;
use flproto::registry::Route;
use flproto::NodeId;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::datagram_queue::{datagram_queue, DatagramInbox, Queued};
use crate::hub::Hub;

/// A relay frame on its way to another instance, as the sender sent it
/// (addressed to `to`).
#[derive(Debug)]
pub struct ClusterDatagram {
    pub from: NodeId,
    pub to: NodeId,
    pub instance: InstanceId,
    pub frame: Bytes,
}

/// Why a relay frame from another instance is not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClusterDatagramRefusal {
    #[error("a relayed datagram frame is not a relay frame")]
    Malformed,
    #[error("a relayed datagram is larger than this server relays")]
    TooLarge,
    #[error("a relayed datagram is not addressed to the node of its subject")]
    NotForDestination,
    #[error("a relayed datagram is addressed to its sender")]
    SelfAddressed,
}

impl ClusterDatagramRefusal {
    pub const ALL: [ClusterDatagramRefusal; 4] = [
        ClusterDatagramRefusal::Malformed,
        ClusterDatagramRefusal::TooLarge,
        ClusterDatagramRefusal::NotForDestination,
        ClusterDatagramRefusal::SelfAddressed,
    ];

    /// The `flsignal_cluster_refused_total` reason.
    pub fn label(self) -> &'static str {
        match self {
            ClusterDatagramRefusal::Malformed => "datagram_malformed",
            ClusterDatagramRefusal::TooLarge => "datagram_too_large",
            ClusterDatagramRefusal::NotForDestination => "datagram_not_for_destination",
            ClusterDatagramRefusal::SelfAddressed => "datagram_self_addressed",
        }
    }
}

pub use crate::datagram_queue::DatagramOutbox;

pub struct DatagramRelay {
    /// What the server still relays for all nodes together, in bytes.
    budget: Mutex<TokenBucket>,
    max_datagram: usize,
    queue: usize,
    /// In a cluster: frames for the NATS edge.
    cluster: Option<mpsc::Sender<ClusterDatagram>>,
}

impl DatagramRelay {
    pub fn new(config: &Config, cluster: Option<mpsc::Sender<ClusterDatagram>>) -> Self {
        let relay = &config.relay;
        Self {
            budget: Mutex::new(TokenBucket::new(relay.server_rate(), Instant::now())),
            max_datagram: relay.max_datagram(config.max_message_size),
            queue: relay.relay_queue,
            cluster,
        }
    }

    /// A relay queue for a connection granted the relay.
    pub fn queue(&self) -> (DatagramOutbox, DatagramInbox) {
        datagram_queue(self.queue)
    }

    /// A frame from `from` that its session let through, for `to`.
    pub fn forward(&self, hub: &Hub, from: &NodeId, to: &NodeId, frame: Bytes) {
        let metrics = &hub.metrics.datagrams;
        let Some(route) = hub.datagram_route(to) else {
            return metrics.drop("not_connected");
        };
        if !self.charge(frame.len()) {
            return metrics.drop("server_rate");
        }
        match route {
            Route::Local(queue) => self.deliver(hub, queue.as_ref(), from, frame, "local"),
            Route::Remote(instance) => {
                let Some(cluster) = &self.cluster else {
                    return metrics.drop("not_connected");
                };
                let bytes = frame.len();
                let datagram = ClusterDatagram {
                    from: *from,
                    to: *to,
                    instance,
                    frame,
                };
                match cluster.try_send(datagram) {
                    Ok(()) => metrics.relayed("cluster_out", bytes),
                    Err(_) => metrics.drop("cluster_queue"),
                }
            }
        }
    }

    /// A frame another instance relayed from `from` to `to`, which this
    /// server holds: checked as the sender's session checked it, charged
    /// to this server's budget, delivered like a local one.
    pub fn from_cluster(
        &self,
        hub: &Hub,
        from: &NodeId,
        to: &NodeId,
        frame: Bytes,
    ) -> Result<(), ClusterDatagramRefusal> {
        let parsed = Frame::parse(&frame).map_err(|_| ClusterDatagramRefusal::Malformed)?;
        if parsed.payload.len() > self.max_datagram {
            return Err(ClusterDatagramRefusal::TooLarge);
        }
        if parsed.node != *to {
            return Err(ClusterDatagramRefusal::NotForDestination);
        }
        if from == to {
            return Err(ClusterDatagramRefusal::SelfAddressed);
        }
        let metrics = &hub.metrics.datagrams;
        match hub.datagram_route(to) {
            Some(Route::Local(queue)) if self.charge(frame.len()) => {
                self.deliver(hub, queue.as_ref(), from, frame, "cluster_in")
            }
            Some(Route::Local(_)) => metrics.drop("server_rate"),
            _ => metrics.drop("not_connected"),
        }
        Ok(())
    }

    fn charge(&self, len: usize) -> bool {
        self.budget
            .lock()
            .try_take_many(DatagramRelayLimits::cost(len), Instant::now())
    }

    /// Readdresses `frame` to its sender and offers it to the receiver's
    /// relay queue, if it has one (it asked for the relay), within the
    /// sender's share of it.
    fn deliver(&self, hub: &Hub, queue: Option<&DatagramOutbox>, from: &NodeId, frame: Bytes, path: &'static str) {
        let metrics = &hub.metrics.datagrams;
        let Some(queue) = queue else {
            return metrics.drop("not_relaying");
        };
        // A frame read off the socket shares its buffer; one copy of a
        // packet is cheaper than holding the buffer while it waits.
        let mut owned = frame
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        readdress(&mut owned, from);
        let bytes = owned.len();
        match queue.offer(*from, owned.freeze()) {
            Queued::Yes => metrics.relayed(path, bytes),
            Queued::DisplacingOverShare => {
                metrics.relayed(path, bytes);
                metrics.drop("over_share");
            }
            Queued::Dropped(reason) => metrics.drop(reason),
        }
    }
}
