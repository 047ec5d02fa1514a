//! Who is online, and who has been told about whom.
//!
//! fledger's server pushes the full node list to every node on every join:
//! O(N²) messages and O(N³) bytes for N joins. Here every node has a *view*
//! of at most `max_list_len` other nodes — the ones it has been told about —
//! and news only ever concerns a node's view:
//!
//! * a join is added to the views of at most `join_fanout` nodes that still
//!   have room, so one join costs O(fanout) and a join storm of N nodes sends
//!   O(N × max_list_len) entries in total;
//! * a leave is news only to the nodes whose view held the leaver (its
//!   *watchers*), which is what makes leaves visible quickly and cheaply.
//!
//! News is coalesced: changes accumulate per node and [`Presence::drain_news`]
//! turns them into at most one frame per node per call (the server calls it
//! on a short tick). Nodes that announced with our protocol version get
//! deltas (`PresenceNews`); fledger nodes get their updated view as a
//! `ListIDsReply`, which is what they understand — at most once per
//! `min_list_push_interval`, however much changes: news that comes sooner
//! waits, merged, for the next drain after it.
//!
//! In a cluster, nodes held by other servers are members too
//! ([`Presence::join_remote`]): they are listed and their joins and leaves
//! are news, but they have no view here, as their own server keeps it.
//! Whether a member is held here or elsewhere is its [`Holder`], and
//! nothing else: the count of local members follows every change of it.
//!
//! `Presence` is generic over the handle `T` the server keeps per local
//! node (its outbound queue), so this file holds no I/O at all. The server
//! reaches it through [`crate::registry::Registry`], which keeps it in step
//! with the cluster's ownership table.

use std::collections::HashMap;
use std::time::Instant;

use indexmap::IndexSet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slab::Slab;

use crate::ids::NodeId;
use crate::node_info::NodeInfoJson;

mod config;
mod news;
mod slots;

pub use config::*;
use slots::{draw_others, remove_item, Members, Slot};

/// The tables shrink when fewer than one in this many of their slots is
/// used (see `Presence::shrink`).
const SHRINK_BELOW: usize = 4;

/// Who holds a member: a connection of this server (through its handle)
/// or another server of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder<T> {
    Local(T),
    /// Held by another server of a cluster: no view, never gets news.
    Remote,
}

impl<T> Holder<T> {
    pub fn local(&self) -> Option<&T> {
        match self {
            Holder::Local(handle) => Some(handle),
            Holder::Remote => None,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Holder::Local(_))
    }
}

struct Member<T> {
    id: NodeId,
    /// The node's `NodeInfo`, serialised once, repeated in lists.
    info: NodeInfoJson,
    /// Announced with our protocol version: understands `PresenceNews`.
    bound: bool,
    holder: Holder<T>,
    /// Index of this member in `Presence::all`.
    position: usize,
    /// Members this one has been told about.
    view: Vec<Slot>,
    /// Members whose view holds this one.
    watchers: Vec<Slot>,
    news: News,
    /// When the last full list was pushed to it as news.
    last_list_push: Option<Instant>,
    /// When its view was drawn; `None` while it has none drawn here (held
    /// by another server). A list asked for within
    /// `min_list_push_interval` of it is that view, not a new draw.
    view_drawn: Option<Instant>,
}

/// Changes to a member's view it has not been told about yet.
#[derive(Default)]
struct News {
    joined: Vec<Slot>,
    left: Vec<NodeId>,
    /// Too much changed for a delta: send the whole view.
    resync: bool,
    /// The member is in `Presence::queued`.
    queued: bool,
}

/// The result of a join.
pub(crate) struct Joined<T> {
    /// Who held the node before: an older connection of it, which lost, or
    /// another server.
    pub replaced: Option<Holder<T>>,
    /// The `ListIDsReply` frame for the joining node.
    pub node_list: String,
}

/// The registry of online nodes; see the module documentation.
pub(crate) struct Presence<T> {
    config: PresenceConfig,
    members: Members<T>,
    /// Members held here: changed only where a holder is set or removed
    /// ([`Presence::insert`], [`Presence::set_holder`], [`Presence::leave_if`]).
    local: usize,
    by_id: HashMap<NodeId, Slot>,
    /// Every slot, for uniform sampling.
    all: Vec<Slot>,
    /// Members whose view is not full.
    with_room: IndexSet<Slot>,
    /// Members with news, in the order they got it.
    queued: Vec<Slot>,
    rng: StdRng,
}

impl<T: Clone> Presence<T> {
    pub fn new(config: PresenceConfig) -> Self {
        Self::with_rng(config, StdRng::from_entropy())
    }

    /// A presence whose sampling is reproducible, for tests.
    pub fn with_seed(config: PresenceConfig, seed: u64) -> Self {
        Self::with_rng(config, StdRng::seed_from_u64(seed))
    }

    fn with_rng(config: PresenceConfig, rng: StdRng) -> Self {
        Self {
            config,
            members: Members(Slab::new()),
            local: 0,
            by_id: HashMap::new(),
            all: Vec::new(),
            with_room: IndexSet::new(),
            queued: Vec::new(),
            rng,
        }
    }

    /// Members, here and elsewhere.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Members held by connections of this server.
    pub fn local_len(&self) -> usize {
        self.local
    }

    /// Who holds an online node.
    pub fn get(&self, id: &NodeId) -> Option<&Holder<T>> {
        self.by_id.get(id).map(|&slot| &self.members[slot].holder)
    }

    /// Enters a node that proved its identity here at `now`. A node already
    /// present keeps its place in others' views; its old holder is returned
    /// so the server can close that connection.
    pub fn join(&mut self, id: NodeId, info: NodeInfoJson, bound: bool, handle: T, now: Instant) -> Joined<T> {
        if let Some(&slot) = self.by_id.get(&id) {
            let replaced = self.set_holder(slot, Holder::Local(handle));
            let member = &mut self.members[slot];
            member.info = info;
            member.bound = bound;
            self.resample_view(slot, now);
            return Joined {
                replaced: Some(replaced),
                node_list: self.node_list_frame(slot),
            };
        }
        let slot = self.insert(id, info, bound, Holder::Local(handle));
        self.tell_nodes_with_room(slot);
        self.resample_view(slot, now);
        Joined {
            replaced: None,
            node_list: self.node_list_frame(slot),
        }
    }

    fn insert(&mut self, id: NodeId, info: NodeInfoJson, bound: bool, holder: Holder<T>) -> Slot {
        self.local += usize::from(holder.is_local());
        let entry = self.members.0.vacant_entry();
        let slot = entry.key() as Slot;
        entry.insert(Member {
            id,
            info,
            bound,
            holder,
            position: self.all.len(),
            view: Vec::new(),
            watchers: Vec::new(),
            news: News::default(),
            last_list_push: None,
            view_drawn: None,
        });
        self.all.push(slot);
        self.by_id.insert(id, slot);
        slot
    }

    /// Replaces a member's holder, keeping the local count.
    fn set_holder(&mut self, slot: Slot, holder: Holder<T>) -> Holder<T> {
        self.local += usize::from(holder.is_local());
        let previous = std::mem::replace(&mut self.members[slot].holder, holder);
        self.local -= usize::from(previous.is_local());
        previous
    }

    /// Enters a node held by another server of a cluster. It is listed and
    /// its joins and leaves are news like anyone's, but it has no view of
    /// its own (its own server keeps that). A node present already keeps its
    /// place in others' views; its old holder is returned.
    pub fn join_remote(&mut self, id: NodeId, info: NodeInfoJson, bound: bool) -> Option<Holder<T>> {
        if let Some(&slot) = self.by_id.get(&id) {
            let replaced = self.set_holder(slot, Holder::Remote);
            let member = &mut self.members[slot];
            member.info = info;
            member.bound = bound;
            member.view_drawn = None;
            for subject in std::mem::take(&mut member.view) {
                remove_item(&mut self.members[subject].watchers, slot);
            }
            self.drop_news(slot);
            self.with_room.swap_remove(&slot);
            return Some(replaced);
        }
        let slot = self.insert(id, info, bound, Holder::Remote);
        self.tell_nodes_with_room(slot);
        None
    }

    /// Every member with its `NodeInfo` JSON, protocol flag and holder.
    pub fn members(&self) -> impl Iterator<Item = (NodeId, &NodeInfoJson, bool, &Holder<T>)> {
        self.members
            .0
            .iter()
            .map(|(_, member)| (member.id, &member.info, member.bound, &member.holder))
    }

    /// Removes `id` if `is_current` holds for its holder — a connection
    /// that was already replaced must not remove its successor.
    pub fn leave_if(&mut self, id: &NodeId, is_current: impl FnOnce(&Holder<T>) -> bool) -> bool {
        let Some(&slot) = self.by_id.get(id) else {
            return false;
        };
        if !is_current(&self.members[slot].holder) {
            return false;
        }
        let member = self.members.0.remove(slot as usize);
        self.local -= usize::from(member.holder.is_local());
        self.by_id.remove(id);
        self.with_room.swap_remove(&slot);
        let last = self.all.len() - 1;
        self.all.swap_remove(member.position);
        if member.position < last {
            let moved = self.all[member.position];
            self.members[moved].position = member.position;
        }
        for &subject in &member.view {
            remove_item(&mut self.members[subject].watchers, slot);
        }
        for &watcher in &member.watchers {
            let max = self.config.max_list_len;
            let w = &mut self.members[watcher];
            remove_item(&mut w.view, slot);
            // Never told about the leaver? Then it is no news either.
            if !remove_item(&mut w.news.joined, slot) {
                if w.news.left.len() >= max {
                    w.news.resync = true;
                } else {
                    w.news.left.push(member.id);
                }
            }
            self.with_room.insert(watcher);
            self.queue(watcher);
        }
        if self.all.len() * SHRINK_BELOW < self.all.capacity() {
            self.shrink();
        }
        true
    }

    /// Gives back the room of members who left, once most have: after a
    /// crowd leaves, its tables should not stay at their largest for good.
    /// Shrinking at a quarter keeps it amortised O(1) per leave.
    fn shrink(&mut self) {
        self.members.0.shrink_to_fit();
        self.by_id.shrink_to_fit();
        self.all.shrink_to_fit();
        self.with_room.shrink_to_fit();
        self.queued.shrink_to_fit();
    }

    /// Adds a newly joined member to the views of up to `join_fanout`
    /// members that have room, starting at a random one.
    fn tell_nodes_with_room(&mut self, joined: Slot) {
        let candidates = self.with_room.len();
        if candidates == 0 {
            return;
        }
        let start = self.rng.gen_range(0..candidates);
        let chosen: Vec<Slot> = (0..candidates.min(self.config.join_fanout))
            .map(|i| self.with_room[(start + i) % candidates])
            .collect();
        for watcher in chosen {
            self.members[watcher].view.push(joined);
            self.members[watcher].news.joined.push(joined);
            self.members[joined].watchers.push(watcher);
            self.update_room(watcher);
            self.queue(watcher);
        }
    }

    /// Replaces a member's view with a uniform sample of the others, drawn
    /// at `now`.
    fn resample_view(&mut self, slot: Slot, now: Instant) {
        for subject in std::mem::take(&mut self.members[slot].view) {
            remove_item(&mut self.members[subject].watchers, slot);
        }
        let others = self.all.len() - 1;
        let count = others.min(self.config.max_list_len);
        let view = draw_others(&mut self.all, &mut self.members, &mut self.rng, slot, count);
        for &subject in &view {
            self.members[subject].watchers.push(slot);
        }
        let member = &mut self.members[slot];
        member.view = view;
        member.view_drawn = Some(now);
        // The list supersedes whatever news was pending.
        self.drop_news(slot);
        self.update_room(slot);
    }

    /// Forgets a member's pending news (it stays in the queue, where the
    /// next drain passes over it): a list of its whole view is going out,
    /// or it has no view here any more.
    fn drop_news(&mut self, slot: Slot) {
        let member = &mut self.members[slot];
        member.news = News {
            queued: member.news.queued,
            ..News::default()
        };
    }

    fn update_room(&mut self, slot: Slot) {
        let member = &self.members[slot];
        if member.holder.is_local() && member.view.len() < self.config.max_list_len {
            self.with_room.insert(slot);
        } else {
            self.with_room.swap_remove(&slot);
        }
    }
}

#[cfg(test)]
#[path = "presence_tests.rs"]
pub(crate) mod tests;
