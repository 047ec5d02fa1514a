//! The server's one record of who is online: which nodes, who has been
//! told about whom ([`crate::presence`]), and — in a cluster — which
//! instance holds each node ([`crate::cluster_presence`]).
//!
//! "Is this node held here or by another instance" is a fact both tables
//! need: presence gives local nodes a view and news and lists remote ones,
//! the ownership table decides between competing registrations. A
//! [`Registry`] is the only way to change either, and every change goes to
//! both at once, so they cannot disagree (the property tests check that
//! they never do); the number of local nodes is counted by presence where
//! a member's holder is set or removed, and nowhere else.
//!
//! Like the tables it joins, the registry does no I/O: the server passes
//! the time in (`now` for expiry and news, `now_us`, the wall clock, for
//! cluster-wide newest-wins) and carries out the [`Effects`] that come out
//! (close a connection that lost its node, publish to the cluster, log a
//! refusal). It is generic over the handle `T` the server keeps per local
//! node.

use std::time::{Duration, Instant};

use crate::announce::VerifiedNode;
use crate::cluster_message::{ClusterMessage, InstanceId, NodeEntry};
use crate::ids::NodeId;
use crate::node_info::NodeInfoJson;
use crate::presence::{Holder, Presence, PresenceConfig};

mod cluster;

pub use cluster::{EntryRefusal, SNAPSHOT_CHUNK};

/// This instance's place in a cluster.
#[derive(Debug, Clone, Copy)]
pub struct ClusterConfig {
    pub instance: InstanceId,
    /// Silence after which another instance and its nodes are gone.
    pub expiry: Duration,
    /// How far another instance's registration times may be ahead of our
    /// wall clock.
    pub max_clock_skew: Duration,
}

/// Where a frame for a node goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<T> {
    /// To this connection of ours.
    Local(T),
    /// To the instance that holds it.
    Remote(InstanceId),
}

/// A message for the other instances of the cluster.
#[derive(Debug)]
pub enum Publish {
    /// For every instance.
    Broadcast(ClusterMessage),
    /// An answer for one instance.
    Direct(InstanceId, ClusterMessage),
}

/// What the server must carry out after a change to the registry.
#[derive(Debug)]
pub struct Effects<T> {
    /// Connections of ours whose node a newer connection took: close them
    /// as replaced.
    pub replaced: Vec<T>,
    /// What the other instances must hear.
    pub publish: Vec<Publish>,
    /// Node entries refused from another instance, for the refusal log.
    pub refused: Vec<(InstanceId, EntryRefusal)>,
}

impl<T> Default for Effects<T> {
    fn default() -> Self {
        Self {
            replaced: Vec::new(),
            publish: Vec::new(),
            refused: Vec::new(),
        }
    }
}

/// The result of registering a node here.
#[derive(Debug)]
pub struct Registered<T> {
    /// Its first `ListIDsReply` frame.
    pub node_list: String,
    pub effects: Effects<T>,
}

/// Who is online; see the module documentation.
pub struct Registry<T> {
    presence: Presence<T>,
    /// The ownership table and its rules; `None` outside a cluster.
    cluster: Option<cluster::ClusterSide>,
}

impl<T: Clone> Registry<T> {
    /// The registry of a server on its own.
    pub fn new(config: PresenceConfig) -> Self {
        Self {
            presence: Presence::new(config),
            cluster: None,
        }
    }

    /// The registry of one instance of a cluster.
    pub fn clustered(config: PresenceConfig, cluster: ClusterConfig) -> Self {
        Self {
            presence: Presence::new(config),
            cluster: Some(cluster::ClusterSide::new(cluster)),
        }
    }

    /// A registry whose sampling is reproducible, for tests.
    pub fn with_seed(config: PresenceConfig, cluster: Option<ClusterConfig>, seed: u64) -> Self {
        Self {
            presence: Presence::with_seed(config, seed),
            cluster: cluster.map(cluster::ClusterSide::new),
        }
    }

    /// Nodes online in the whole cluster (this server's alone without one).
    pub fn len(&self) -> usize {
        self.presence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.presence.len() == 0
    }

    /// Nodes held by connections of this server.
    pub fn local_len(&self) -> usize {
        self.presence.local_len()
    }

    /// This instance, in a cluster.
    pub fn me(&self) -> Option<InstanceId> {
        self.cluster.as_ref().map(cluster::ClusterSide::me)
    }

    /// Instances alive in the cluster, this one included; `None` without
    /// a cluster.
    pub fn instances(&self) -> Option<usize> {
        self.cluster.as_ref().map(cluster::ClusterSide::instances)
    }

    /// In a cluster: the instance holding `node` and its registration time.
    pub fn owner(&self, node: &NodeId) -> Option<(InstanceId, u64)> {
        self.cluster.as_ref()?.owner(node)
    }

    /// Enters a node that proved its identity on connection `handle`, at
    /// `now` (wall-clock time `now_us`). An older connection of the same
    /// node, here or on another instance, loses it.
    pub fn register(&mut self, node: &VerifiedNode, handle: T, now: Instant, now_us: u64) -> Registered<T> {
        let info = NodeInfoJson::of(&node.info);
        let mut effects = Effects::default();
        if let Some(cluster) = &mut self.cluster {
            effects.publish.push(cluster.local_join(node, &info, now_us));
        }
        let joined = self.presence.join(node.id(), info, node.bound, handle, now);
        if let Some(Holder::Local(old)) = joined.replaced {
            effects.replaced.push(old);
        }
        Registered {
            node_list: joined.node_list,
            effects,
        }
    }

    /// Removes `id` if `is_current` holds for the connection holding it
    /// here: a connection that was already replaced must not remove its
    /// successor. What it returns is empty when nothing left.
    pub fn leave(&mut self, id: &NodeId, is_current: impl FnOnce(&T) -> bool) -> Effects<T> {
        let mut effects = Effects::default();
        let current = |holder: &Holder<T>| holder.local().is_some_and(is_current);
        if !self.presence.leave_if(id, current) {
            return effects;
        }
        if let Some(cluster) = &mut self.cluster {
            effects.publish.push(cluster.local_leave(id));
        }
        effects
    }

    /// Where a frame for `to` goes, if it is online anywhere.
    pub fn route(&self, to: &NodeId) -> Option<Route<T>> {
        self.route_by(to, T::clone)
    }

    /// [`Registry::route`], with only what `local` takes from the handle
    /// of a node held here (the one queue a relayed datagram needs, say,
    /// rather than a clone of the whole handle per frame).
    pub fn route_by<U>(&self, to: &NodeId, local: impl FnOnce(&T) -> U) -> Option<Route<U>> {
        Some(match self.route_ref(to)? {
            Route::Local(handle) => Route::Local(local(handle)),
            Route::Remote(instance) => Route::Remote(instance),
        })
    }

    /// [`Registry::route`] with the local handle lent, not cloned: the
    /// server hands a relayed frame to it while it holds the registry,
    /// which costs less than a copy of the handle per frame.
    pub fn route_ref(&self, to: &NodeId) -> Option<Route<&T>> {
        match self.presence.get(to)? {
            Holder::Local(handle) => Some(Route::Local(handle)),
            Holder::Remote => self.owner(to).map(|(instance, _)| Route::Remote(instance)),
        }
    }

    /// The connection holding `to` here, if one does.
    pub fn local(&self, to: &NodeId) -> Option<T> {
        self.presence.get(to)?.local().cloned()
    }

    /// The node list `id` asked for at `now` (a fresh sample, or its view
    /// if that was drawn within `min_list_push_interval`);
    /// `None` unless it is held here.
    pub fn node_list(&mut self, id: &NodeId, now: Instant) -> Option<String> {
        self.presence.node_list(id, now)
    }

    /// Pending news, one frame per local node that has some (see
    /// [`Presence::drain_news`]).
    pub fn drain_news(&mut self, now: Instant) -> Vec<(NodeId, T, String)> {
        self.presence.drain_news(now)
    }

    /// Pending news, one frame per local node whose handle is `ready` (see
    /// [`Presence::drain_news_where`]).
    pub fn drain_news_where(&mut self, now: Instant, ready: impl FnMut(&T) -> bool) -> Vec<(NodeId, T, String)> {
        self.presence.drain_news_where(now, ready)
    }

    /// A news frame for `id` was lost: its next news is its whole view.
    pub fn resync(&mut self, id: &NodeId) {
        self.presence.resync(id);
    }

    /// Applies a presence message from another instance, received at `now`
    /// (wall clock `now_us`). Our own, echoed back, changes nothing.
    pub fn apply(&mut self, message: ClusterMessage, now: Instant, now_us: u64) -> Effects<T> {
        let mut effects = Effects::default();
        if let Some(cluster) = &mut self.cluster {
            cluster.apply(&mut self.presence, message, now, now_us, &mut effects);
        }
        effects
    }

    /// Forgets instances not heard from within the expiry, and their nodes;
    /// returns how many nodes went.
    pub fn expire(&mut self, now: Instant) -> usize {
        match &mut self.cluster {
            Some(cluster) => cluster.expire(&mut self.presence, now),
            None => 0,
        }
    }

    /// This instance's heartbeat: it holds this many nodes.
    pub fn heartbeat(&self) -> Option<ClusterMessage> {
        let cluster = self.cluster.as_ref()?;
        Some(ClusterMessage::Heartbeat {
            instance: cluster.me(),
            nodes: self.presence.local_len() as u64,
        })
    }

    /// After (re)connecting to the cluster: ask everyone for their nodes
    /// and tell everyone ours, since news may have been lost either way.
    pub fn rejoin(&self) -> Vec<Publish> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        let hello = ClusterMessage::Hello { instance: cluster.me() };
        std::iter::once(hello)
            .chain(cluster.snapshot(&self.presence))
            .map(Publish::Broadcast)
            .collect()
    }

    /// Said on shutdown, so that the others forget our nodes at once.
    pub fn goodbye(&self) -> Option<ClusterMessage> {
        let instance = self.cluster.as_ref()?.me();
        Some(ClusterMessage::Goodbye { instance })
    }
}

/// The entry this instance announces for a node it holds.
fn entry_of(node: &VerifiedNode, info: &NodeInfoJson, at: u64) -> NodeEntry {
    NodeEntry {
        node: node.id(),
        at,
        bound: node.bound,
        info: info.to_raw(),
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "registry_props.rs"]
mod props;
