//! The registry's cluster side: what happens when another instance's
//! presence message arrives, when an instance falls silent, and what this
//! instance tells the others. The ownership decisions are
//! [`ClusterPresence`]'s; this applies each to presence in the same step.

use std::time::Instant;

use crate::announce::VerifiedNode;
use crate::cluster_message::{ClusterMessage, EntryError, InstanceId, NodeEntry};
use crate::cluster_presence::{believable_at, ClusterPresence, RemoteJoin};
use crate::ids::NodeId;
use crate::node_info::NodeInfoJson;
use crate::presence::{Holder, Presence};

use super::{entry_of, ClusterConfig, Effects, Publish};

/// Nodes per `Snapshot` message: about 60 KiB of JSON, far below NATS's
/// default 1 MiB payload limit.
pub const SNAPSHOT_CHUNK: usize = 200;

/// Why a node entry from another instance was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryRefusal {
    #[error(transparent)]
    BadNodeInfo(#[from] EntryError),
    #[error("registration time ahead of our clock by more than --cluster-max-clock-skew")]
    FutureAt,
}

impl EntryRefusal {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            EntryRefusal::BadNodeInfo(_) => "bad_node_info",
            EntryRefusal::FutureAt => "future_at",
        }
    }
}

/// The ownership table and the rules entries from other instances are held
/// to.
pub(super) struct ClusterSide {
    pub(super) table: ClusterPresence,
    config: ClusterConfig,
}

impl ClusterSide {
    pub(super) fn new(config: ClusterConfig) -> Self {
        Self {
            table: ClusterPresence::new(config.instance, config.expiry),
            config,
        }
    }

    pub(super) fn me(&self) -> InstanceId {
        self.config.instance
    }

    pub(super) fn instances(&self) -> usize {
        self.table.remote_instances() + 1
    }

    pub(super) fn owner(&self, node: &NodeId) -> Option<(InstanceId, u64)> {
        self.table.owner(node)
    }

    /// This instance registered `node`: the `Join` to announce.
    pub(super) fn local_join(&mut self, node: &VerifiedNode, info: &NodeInfoJson, now_us: u64) -> Publish {
        let at = self.table.local_join(node.id(), now_us);
        Publish::Broadcast(ClusterMessage::Join {
            instance: self.me(),
            entry: entry_of(node, info, at),
        })
    }

    /// This instance's connection of `node` ended: the `Leave` to announce.
    pub(super) fn local_leave(&mut self, node: &NodeId) -> Publish {
        self.table.local_leave(node);
        Publish::Broadcast(ClusterMessage::Leave {
            instance: self.me(),
            node: *node,
        })
    }

    pub(super) fn apply<T: Clone>(
        &mut self,
        presence: &mut Presence<T>,
        message: ClusterMessage,
        now: Instant,
        now_us: u64,
        effects: &mut Effects<T>,
    ) {
        if message.instance() == self.me() {
            // Our own broadcast, echoed by NATS.
            return;
        }
        match message {
            ClusterMessage::Hello { instance } => {
                let snapshot = self.snapshot(presence);
                effects
                    .publish
                    .extend(snapshot.into_iter().map(|m| Publish::Direct(instance, m)));
            }
            ClusterMessage::Join { instance, entry } => {
                self.remote_join(presence, instance, entry, now, now_us, effects);
            }
            ClusterMessage::Leave { instance, node } => {
                if self.table.remote_leave(instance, &node, now) {
                    remove_remote(presence, &node);
                }
            }
            ClusterMessage::Heartbeat { instance, nodes } => {
                if self.table.remote_heartbeat(instance, nodes, now) {
                    let hello = ClusterMessage::Hello { instance: self.me() };
                    effects.publish.push(Publish::Direct(instance, hello));
                }
            }
            ClusterMessage::Snapshot { instance, nodes, last } => {
                self.table.snapshot_begins(instance, now);
                for entry in nodes {
                    self.remote_join(presence, instance, entry, now, now_us, effects);
                }
                if last {
                    for node in self.table.snapshot_ends(instance) {
                        remove_remote(presence, &node);
                    }
                }
            }
            ClusterMessage::Goodbye { instance } => {
                for node in self.table.remove_instance(instance) {
                    remove_remote(presence, &node);
                }
            }
        }
    }

    /// Forgets silent instances and their nodes; returns how many nodes.
    pub(super) fn expire<T: Clone>(&mut self, presence: &mut Presence<T>, now: Instant) -> usize {
        let gone = self.table.expire(now);
        for (_, node) in &gone {
            remove_remote(presence, node);
        }
        gone.len()
    }

    /// Applies another instance's claim on a node, once its entry passed
    /// the checks; our connection of that node, if it lost, goes into
    /// `effects.replaced`.
    fn remote_join<T: Clone>(
        &mut self,
        presence: &mut Presence<T>,
        instance: InstanceId,
        entry: NodeEntry,
        now: Instant,
        now_us: u64,
        effects: &mut Effects<T>,
    ) {
        let info = match entry.checked_info() {
            Ok(info) => info,
            Err(error) => return effects.refused.push((instance, error.into())),
        };
        if !believable_at(entry.at, now_us, self.config.max_clock_skew) {
            return effects.refused.push((instance, EntryRefusal::FutureAt));
        }
        if self.table.remote_join(instance, entry.node, entry.at, now) == RemoteJoin::Stale {
            return;
        }
        if let Some(Holder::Local(handle)) = presence.join_remote(entry.node, info, entry.bound) {
            effects.replaced.push(handle);
        }
    }

    /// Everything this instance holds, as `Snapshot` messages (at least one).
    pub(super) fn snapshot<T: Clone>(&self, presence: &Presence<T>) -> Vec<ClusterMessage> {
        let me = self.me();
        let entries: Vec<NodeEntry> = presence
            .members()
            .filter(|(_, _, _, holder)| holder.is_local())
            .map(|(node, info, bound, _)| NodeEntry {
                node,
                at: self.table.owner(&node).map_or(0, |(_, at)| at),
                bound,
                info: info.to_raw(),
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
}

/// Removes a node the ownership table just said another instance no longer
/// holds; by the table's account it was held remotely, so no connection of
/// ours can be the one removed.
fn remove_remote<T: Clone>(presence: &mut Presence<T>, node: &NodeId) {
    presence.leave_if(node, |holder| !holder.is_local());
}
