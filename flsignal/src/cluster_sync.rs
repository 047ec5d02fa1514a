//! What happens when another instance's presence message arrives, when an
//! instance falls silent, and what this instance tells the others about
//! itself. The decisions are `flproto::cluster_presence`'s; this applies
//! them to the node registry and closes connections that lost.

use std::time::Instant;

use flproto::close::CloseReason;
use flproto::cluster_message::{ClusterMessage, InstanceId, NodeEntry};
use flproto::cluster_presence::RemoteJoin;
use flproto::{NodeId, NodeInfo};

use crate::hub::{raw_json, Holder, Hub, Outgoing, PeerHandle, State};

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
            let state = &mut *guard;
            match message {
                ClusterMessage::Hello { instance } => {
                    let me = side.instance;
                    replies.extend(
                        snapshot_of(state, me)
                            .into_iter()
                            .map(|m| Outgoing::Direct(instance, m)),
                    );
                }
                ClusterMessage::Join { instance, entry } => {
                    losers.extend(remote_join(state, instance, entry, now));
                }
                ClusterMessage::Leave { instance, node } => {
                    let cluster = state.cluster.as_mut().expect("clustered hub");
                    if cluster.remote_leave(instance, &node, now) {
                        remove_remote(state, instance, &node);
                    }
                }
                ClusterMessage::Heartbeat { instance, nodes } => {
                    let cluster = state.cluster.as_mut().expect("clustered hub");
                    if cluster.remote_heartbeat(instance, nodes, now) {
                        tracing::info!(%instance, "presence of an instance disagrees with ours; asking for a snapshot");
                        let hello = ClusterMessage::Hello {
                            instance: side.instance,
                        };
                        replies.push(Outgoing::Direct(instance, hello));
                    }
                }
                ClusterMessage::Snapshot { instance, nodes, last } => {
                    let cluster = state.cluster.as_mut().expect("clustered hub");
                    cluster.snapshot_begins(instance, now);
                    for entry in nodes {
                        losers.extend(remote_join(state, instance, entry, now));
                    }
                    if last {
                        let cluster = state.cluster.as_mut().expect("clustered hub");
                        for node in cluster.snapshot_ends(instance) {
                            remove_remote(state, instance, &node);
                        }
                    }
                }
                ClusterMessage::Goodbye { instance } => {
                    let cluster = state.cluster.as_mut().expect("clustered hub");
                    for node in cluster.remove_instance(instance) {
                        remove_remote(state, instance, &node);
                    }
                    tracing::info!(%instance, "instance left the cluster");
                }
            }
            self.update_cluster_gauges(state);
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
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let Some(cluster) = state.cluster.as_mut() else {
            return;
        };
        let gone = cluster.expire(now);
        if !gone.is_empty() {
            tracing::info!(nodes = gone.len(), "instances fell silent; their nodes are gone");
        }
        for (instance, node) in gone {
            remove_remote(state, instance, &node);
        }
        self.update_cluster_gauges(state);
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
        let snapshot = snapshot_of(&self.state.lock(), side.instance);
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

/// Applies another instance's claim on a node; returns our connection of
/// that node if it lost.
fn remote_join(state: &mut State, instance: InstanceId, entry: NodeEntry, now: Instant) -> Option<PeerHandle> {
    if !plausible(&entry) {
        tracing::warn!(%instance, node = %entry.node, "ignoring a cluster entry with bad node info");
        return None;
    }
    let cluster = state.cluster.as_mut()?;
    if cluster.remote_join(instance, entry.node, entry.at, now) == RemoteJoin::Stale {
        return None;
    }
    let info: Box<str> = entry.info.get().into();
    match state
        .presence
        .join_remote(entry.node, info, entry.bound, Holder::Remote(instance))
    {
        Some(Holder::Local(handle)) => {
            state.local -= 1;
            Some(handle)
        }
        _ => None,
    }
}

/// The node info another instance sends is repeated to our nodes, so it is
/// held to the same rules as an Announce's.
fn plausible(entry: &NodeEntry) -> bool {
    match serde_json::from_str::<NodeInfo>(entry.info.get()) {
        Ok(info) => info.validated().is_ok_and(|v3| v3.pubkey == entry.node),
        Err(_) => false,
    }
}

fn remove_remote(state: &mut State, instance: InstanceId, node: &NodeId) {
    state
        .presence
        .leave_if(node, |holder| matches!(holder, Holder::Remote(i) if *i == instance));
}

/// Everything this instance holds, as `Snapshot` messages (at least one).
fn snapshot_of(state: &State, me: InstanceId) -> Vec<ClusterMessage> {
    let Some(cluster) = &state.cluster else {
        return Vec::new();
    };
    let entries: Vec<NodeEntry> = state
        .presence
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
