//! What happens when another instance's presence message arrives, when an
//! instance falls silent, and what this instance tells the others about
//! itself. The decisions are `flproto::cluster_presence`'s; this applies
//! them to the node registry and closes connections that lost.

use std::time::Instant;

use flproto::close::CloseReason;
use flproto::cluster_message::{ClusterMessage, InstanceId, NodeEntry};
use flproto::cluster_presence::{believable_at, ClusterPresence, RemoteJoin};
use flproto::presence::Presence;
use flproto::NodeId;

use crate::hub::{raw_json, wall_clock_us, ClusterSide, Holder, Hub, Outgoing, PeerHandle, State};

/// Nodes per `Snapshot` message: about 60 KiB of JSON, far below NATS's
/// default 1 MiB payload limit.
pub const SNAPSHOT_CHUNK: usize = 200;

impl Hub {
    /// Applies a presence message from another instance.
    pub fn apply_cluster_message(&self, message: ClusterMessage, now: Instant) {
        let Some(side) = &self.cluster else {
            return;
        };
        if message.instance() == side.instance {
            // Our own broadcast, echoed by NATS.
            return;
        }
        let mut losers = Vec::new();
        let mut replies = Vec::new();
        {
            let mut guard = self.state.lock();
            let State {
                presence,
                local,
                cluster,
            } = &mut *guard;
            let Some(cluster) = cluster.as_mut() else {
                return;
            };
            let mut registry = Registry { presence, local, side };
            match message {
                ClusterMessage::Hello { instance } => {
                    let snapshot = snapshot_of(registry.presence, cluster, side.instance);
                    replies.extend(snapshot.into_iter().map(|m| Outgoing::Direct(instance, m)));
                }
                ClusterMessage::Join { instance, entry } => {
                    losers.extend(registry.remote_join(cluster, instance, entry, now));
                }
                ClusterMessage::Leave { instance, node } => {
                    if cluster.remote_leave(instance, &node, now) {
                        registry.remove_remote(instance, &node);
                    }
                }
                ClusterMessage::Heartbeat { instance, nodes } => {
                    if cluster.remote_heartbeat(instance, nodes, now) {
                        tracing::info!(%instance, "presence of an instance disagrees with ours; asking for a snapshot");
                        let hello = ClusterMessage::Hello {
                            instance: side.instance,
                        };
                        replies.push(Outgoing::Direct(instance, hello));
                    }
                }
                ClusterMessage::Snapshot { instance, nodes, last } => {
                    cluster.snapshot_begins(instance, now);
                    for entry in nodes {
                        losers.extend(registry.remote_join(cluster, instance, entry, now));
                    }
                    if last {
                        for node in cluster.snapshot_ends(instance) {
                            registry.remove_remote(instance, &node);
                        }
                    }
                }
                ClusterMessage::Goodbye { instance } => {
                    for node in cluster.remove_instance(instance) {
                        registry.remove_remote(instance, &node);
                    }
                    tracing::info!(%instance, "instance left the cluster");
                }
            }
            self.update_cluster_gauges(&guard);
        }
        for loser in losers {
            loser.kill.kill(CloseReason::Replaced);
        }
        for reply in replies {
            self.publish(reply);
        }
    }

    /// Forgets instances that have not been heard from within the expiry.
    pub fn expire_instances(&self, now: Instant) {
        let Some(side) = &self.cluster else {
            return;
        };
        let mut guard = self.state.lock();
        let State {
            presence,
            local,
            cluster,
        } = &mut *guard;
        let Some(cluster) = cluster.as_mut() else {
            return;
        };
        let gone = cluster.expire(now);
        if !gone.is_empty() {
            tracing::info!(nodes = gone.len(), "instances fell silent; their nodes are gone");
        }
        let mut registry = Registry { presence, local, side };
        for (instance, node) in gone {
            registry.remove_remote(instance, &node);
        }
        self.update_cluster_gauges(&guard);
    }

    /// This instance's heartbeat.
    pub fn heartbeat(&self) -> Option<ClusterMessage> {
        let side = self.cluster.as_ref()?;
        let nodes = self.state.lock().local as u64;
        Some(ClusterMessage::Heartbeat {
            instance: side.instance,
            nodes,
        })
    }

    /// After (re)connecting to NATS: ask everyone for their nodes and tell
    /// everyone ours, since news may have been lost either way.
    pub fn rejoin_cluster(&self) {
        let Some(side) = &self.cluster else {
            return;
        };
        self.publish(Outgoing::Broadcast(ClusterMessage::Hello {
            instance: side.instance,
        }));
        let snapshot = {
            let state = self.state.lock();
            match &state.cluster {
                Some(cluster) => snapshot_of(&state.presence, cluster, side.instance),
                None => Vec::new(),
            }
        };
        for message in snapshot {
            self.publish(Outgoing::Broadcast(message));
        }
    }

    /// Said on shutdown, so that the others forget our nodes at once.
    pub fn goodbye(&self) -> Option<ClusterMessage> {
        let side = self.cluster.as_ref()?;
        Some(ClusterMessage::Goodbye {
            instance: side.instance,
        })
    }

    fn update_cluster_gauges(&self, state: &State) {
        // A connection that lost to a newer one elsewhere is no longer ours.
        self.metrics.registered_nodes.set(state.local as i64);
        if let Some(cluster) = &state.cluster {
            self.metrics
                .cluster_instances
                .set(cluster.remote_instances() as i64 + 1);
            self.metrics.cluster_nodes.set(state.presence.len() as i64);
        }
    }
}

/// The node registry and this server's share of it, borrowed apart from
/// the cluster table.
struct Registry<'a> {
    presence: &'a mut Presence<Holder>,
    local: &'a mut usize,
    side: &'a ClusterSide,
}

impl Registry<'_> {
    /// Applies another instance's claim on a node; returns our connection
    /// of that node if it lost.
    fn remote_join(
        &mut self,
        cluster: &mut ClusterPresence,
        instance: InstanceId,
        entry: NodeEntry,
        now: Instant,
    ) -> Option<PeerHandle> {
        let info = match entry.checked_info() {
            Ok(info) => info,
            Err(error) => {
                self.side.refused.refuse("bad_node_info", &instance, &error);
                return None;
            }
        };
        if !believable_at(entry.at, wall_clock_us(), self.side.max_clock_skew) {
            let detail = "registration time ahead of our clock by more than --cluster-max-clock-skew";
            self.side.refused.refuse("future_at", &instance, &detail);
            return None;
        }
        if cluster.remote_join(instance, entry.node, entry.at, now) == RemoteJoin::Stale {
            return None;
        }
        let info: Box<str> = info.into();
        match self
            .presence
            .join_remote(entry.node, info, entry.bound, Holder::Remote(instance))
        {
            Some(Holder::Local(handle)) => {
                *self.local -= 1;
                Some(handle)
            }
            _ => None,
        }
    }

    fn remove_remote(&mut self, instance: InstanceId, node: &NodeId) {
        self.presence
            .leave_if(node, |holder| matches!(holder, Holder::Remote(i) if *i == instance));
    }
}

/// Everything this instance holds, as `Snapshot` messages (at least one).
fn snapshot_of(presence: &Presence<Holder>, cluster: &ClusterPresence, me: InstanceId) -> Vec<ClusterMessage> {
    let entries: Vec<NodeEntry> = presence
        .members()
        .filter(|(_, _, _, holder)| matches!(holder, Holder::Local(_)))
        .map(|(node, info, bound, _)| NodeEntry {
            node,
            at: cluster.owner(&node).map_or(0, |(_, at)| at),
            bound,
            info: raw_json(info),
        })
        .collect();
    let mut messages: Vec<ClusterMessage> = entries
        .chunks(SNAPSHOT_CHUNK)
        .map(|chunk| ClusterMessage::Snapshot {
            instance: me,
            nodes: chunk.to_vec(),
            last: false,
        })
        .collect();
    match messages.last_mut() {
        Some(ClusterMessage::Snapshot { last, .. }) => *last = true,
        _ => messages.push(ClusterMessage::Snapshot {
            instance: me,
            nodes: Vec::new(),
            last: true,
        }),
    }
    messages
}

#[cfg(test)]
#[path = "cluster_sync_tests.rs"]
mod tests;
