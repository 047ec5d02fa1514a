//! Which instance of a cluster holds which node, decided without I/O.
//!
//! Every instance keeps one `ClusterPresence`, inside its
//! [`crate::registry::Registry`]. Its own registrations go in through
//! `local_join` / `local_leave`; what other instances announce over NATS
//! goes in through the `remote_*` methods, and time through `expire`. The
//! answers say what the registry must change in presence, which it does in
//! the same step; nothing here sends, sleeps or reads a clock.
//!
//! Rules:
//!
//! * **Newest wins, cluster-wide.** A node held by two instances belongs to
//!   the registration with the larger `(at, instance)`. Every instance
//!   compares the same pair, so exactly one connection survives and the
//!   other instance closes its own (as it does for a local takeover). A
//!   local registration that displaces a remote one takes an `at` above the
//!   remote's, so clock skew between machines cannot make the newer
//!   connection lose.
//! * **Liveness by heartbeat.** An instance not heard from for `expiry` is
//!   gone with all its nodes: that is how a crashed instance, or one cut off
//!   from NATS, disappears.
//! * **No claims from the future.** A registration time later than our wall
//!   clock plus [`DEFAULT_MAX_CLOCK_SKEW`] cannot come from an instance
//!   whose clock is right ([`believable_at`]): such a claim is refused,
//!   not clamped, since even a clamped one would be newer than every real
//!   registration and evict the node (and `at = u64::MAX` would have held
//!   it against every later registration for good).
//! * **Snapshots replace.** A snapshot of an instance lists all it holds;
//!   when its last part arrives, the instance's other nodes are gone.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::cluster_message::InstanceId;
use crate::ids::NodeId;

/// Default time between an instance's heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default silence after which an instance and its nodes are gone.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(3);
/// Default allowance for another instance's clock running ahead of ours;
/// NTP keeps machines within milliseconds, so seconds leave ample room.
/// It must cover the largest difference between any two instances' clocks.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);
/// Heartbeats in a row whose node count disagrees with ours before we ask
/// that instance for a snapshot (one can be in flight with a change).
pub const MISMATCHES_BEFORE_RESYNC: u8 = 2;

/// Whether `at`, a registration time (microseconds since the Unix epoch)
/// another instance announced, is possible at our wall-clock time `now_us`
/// with clocks apart by at most `max_skew`.
pub fn believable_at(at: u64, now_us: u64, max_skew: Duration) -> bool {
    let skew = u64::try_from(max_skew.as_micros()).unwrap_or(u64::MAX);
    at <= now_us.saturating_add(skew)
}

/// Who holds a node, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    instance: InstanceId,
    at: u64,
}

impl Owner {
    fn newer_than(&self, other: &Owner) -> bool {
        (self.at, self.instance) > (other.at, other.instance)
    }
}

#[derive(Debug)]
struct Remote {
    last_seen: Instant,
    nodes: HashSet<NodeId>,
    /// Nodes named since the first part of a snapshot that has not ended.
    snapshot: Option<HashSet<NodeId>>,
    mismatches: u8,
}

/// What became of another instance's claim on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteJoin {
    /// The node is now held by that instance: list it as such. If this
    /// server held it, its connection lost and must be closed.
    Accepted,
    /// A newer registration exists (possibly ours); ignore the claim.
    Stale,
}

/// The cluster-wide ownership table of one instance; see the module docs.
/// The server reaches it through [`crate::registry::Registry`], which
/// applies each of its answers to presence in the same step.
#[derive(Debug)]
pub(crate) struct ClusterPresence {
    me: InstanceId,
    expiry: Duration,
    owners: HashMap<NodeId, Owner>,
    remotes: HashMap<InstanceId, Remote>,
}

impl ClusterPresence {
    pub fn new(me: InstanceId, expiry: Duration) -> Self {
        Self {
            me,
            expiry,
            owners: HashMap::new(),
            remotes: HashMap::new(),
        }
    }

    /// Instances other than this one that are alive.
    pub fn remote_instances(&self) -> usize {
        self.remotes.len()
    }

    /// Nodes held by other instances.
    #[cfg(test)]
    pub fn remote_nodes(&self) -> usize {
        self.remotes.values().map(|remote| remote.nodes.len()).sum()
    }

    /// This instance registered `node` at wall-clock time `now_us`; returns
    /// the `at` to announce, above any remote registration it displaces.
    pub fn local_join(&mut self, node: NodeId, now_us: u64) -> u64 {
        let at = match self.owners.get(&node).copied() {
            Some(owner) if owner.instance != self.me => {
                self.forget_remote_node(owner.instance, &node);
                now_us.max(owner.at.saturating_add(1))
            }
            _ => now_us,
        };
        self.owners.insert(node, Owner { instance: self.me, at });
        at
    }

    /// This instance's connection of `node` ended (and was the current one).
    pub fn local_leave(&mut self, node: &NodeId) {
        if self.owners.get(node).is_some_and(|owner| owner.instance == self.me) {
            self.owners.remove(node);
        }
    }

    /// `instance` says it holds `node` since `at`.
    pub fn remote_join(&mut self, instance: InstanceId, node: NodeId, at: u64, now: Instant) -> RemoteJoin {
        if instance == self.me {
            return RemoteJoin::Stale;
        }
        let claim = Owner { instance, at };
        let remote = self.seen(instance, now);
        if let Some(snapshot) = &mut remote.snapshot {
            snapshot.insert(node);
        }
        match self.owners.get(&node).copied() {
            Some(owner) if owner == claim => RemoteJoin::Accepted,
            Some(owner) if !claim.newer_than(&owner) => RemoteJoin::Stale,
            previous => {
                if let Some(previous) = previous {
                    if previous.instance != self.me {
                        self.forget_remote_node(previous.instance, &node);
                    }
                }
                self.owners.insert(node, claim);
                if let Some(remote) = self.remotes.get_mut(&instance) {
                    remote.nodes.insert(node);
                }
                RemoteJoin::Accepted
            }
        }
    }

    /// `instance` says it no longer holds `node`; true if it did by our
    /// account (the node is gone from the cluster).
    pub fn remote_leave(&mut self, instance: InstanceId, node: &NodeId, now: Instant) -> bool {
        if instance == self.me {
            return false;
        }
        self.seen(instance, now);
        if self.owners.get(node).is_some_and(|owner| owner.instance == instance) {
            self.owners.remove(node);
            self.forget_remote_node(instance, node);
            true
        } else {
            false
        }
    }

    /// A heartbeat of `instance`, which holds `nodes` nodes. True when our
    /// account has disagreed for [`MISMATCHES_BEFORE_RESYNC`] heartbeats:
    /// ask it for a snapshot.
    pub fn remote_heartbeat(&mut self, instance: InstanceId, nodes: u64, now: Instant) -> bool {
        if instance == self.me {
            return false;
        }
        let remote = self.seen(instance, now);
        if remote.nodes.len() as u64 == nodes || remote.snapshot.is_some() {
            remote.mismatches = 0;
            return false;
        }
        remote.mismatches += 1;
        if remote.mismatches >= MISMATCHES_BEFORE_RESYNC {
            remote.mismatches = 0;
            return true;
        }
        false
    }

    /// The first part of a snapshot of `instance` is about to be applied
    /// (with [`ClusterPresence::remote_join`] for each entry).
    pub fn snapshot_begins(&mut self, instance: InstanceId, now: Instant) {
        if instance == self.me {
            return;
        }
        let remote = self.seen(instance, now);
        remote.snapshot.get_or_insert_with(HashSet::new);
    }

    /// The snapshot of `instance` ended: returns its nodes it did not name,
    /// which are gone.
    pub fn snapshot_ends(&mut self, instance: InstanceId) -> Vec<NodeId> {
        let Some(remote) = self.remotes.get_mut(&instance) else {
            return Vec::new();
        };
        let Some(named) = remote.snapshot.take() else {
            return Vec::new();
        };
        let gone: Vec<NodeId> = remote.nodes.difference(&named).copied().collect();
        for node in &gone {
            remote.nodes.remove(node);
            self.owners.remove(node);
        }
        gone
    }

    /// Forgets `instance` and returns the nodes it held (it said goodbye).
    pub fn remove_instance(&mut self, instance: InstanceId) -> Vec<NodeId> {
        let Some(remote) = self.remotes.remove(&instance) else {
            return Vec::new();
        };
        let gone: Vec<NodeId> = remote.nodes.into_iter().collect();
        for node in &gone {
            self.owners.remove(node);
        }
        gone
    }

    /// Forgets every instance silent for longer than the expiry; returns
    /// their nodes with the instance that held each.
    pub fn expire(&mut self, now: Instant) -> Vec<(InstanceId, NodeId)> {
        let expired: Vec<InstanceId> = self
            .remotes
            .iter()
            .filter(|(_, remote)| now.saturating_duration_since(remote.last_seen) > self.expiry)
            .map(|(&instance, _)| instance)
            .collect();
        let mut gone = Vec::new();
        for instance in expired {
            gone.extend(self.remove_instance(instance).into_iter().map(|node| (instance, node)));
        }
        gone
    }

    /// The instance holding `node` and its registration time, if any.
    pub fn owner(&self, node: &NodeId) -> Option<(InstanceId, u64)> {
        self.owners.get(node).map(|owner| (owner.instance, owner.at))
    }

    fn seen(&mut self, instance: InstanceId, now: Instant) -> &mut Remote {
        let remote = self.remotes.entry(instance).or_insert_with(|| Remote {
            last_seen: now,
            nodes: HashSet::new(),
            snapshot: None,
            mismatches: 0,
        });
        remote.last_seen = remote.last_seen.max(now);
        remote
    }

    fn forget_remote_node(&mut self, instance: InstanceId, node: &NodeId) {
        if let Some(remote) = self.remotes.get_mut(&instance) {
            remote.nodes.remove(node);
        }
    }
}

#[cfg(test)]
#[path = "cluster_presence_tests.rs"]
mod tests;
