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
//! `ListIDsReply`, which is what they understand.
//!
//! In a cluster, nodes held by other servers are members too
//! ([`Presence::join_remote`]): they are listed and their joins and leaves
//! are news, but they have no view here, as their own server keeps it.
//!
//! `Presence` is generic over the handle `T` the server keeps per node (its
//! outbound queue), so this file holds no I/O at all.

use std::collections::HashMap;

use indexmap::IndexSet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slab::Slab;

use crate::ids::NodeId;

/// Default upper bound of a node list, and of a node's view.
pub const DEFAULT_MAX_LIST_LEN: usize = 100;
/// Default number of views one join is added to, at most.
pub const DEFAULT_JOIN_FANOUT: usize = 256;

/// Limits of the presence bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceConfig {
    pub max_list_len: usize,
    pub join_fanout: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            max_list_len: DEFAULT_MAX_LIST_LEN,
            join_fanout: DEFAULT_JOIN_FANOUT,
        }
    }
}

/// A member's index in the slab, stored as `u32` because views and watcher
/// lists hold hundreds of them per node.
type Slot = u32;

struct Member<T> {
    id: NodeId,
    /// The node's `NodeInfo`, serialised once at announce time so that lists
    /// are built by concatenation.
    info_json: Box<str>,
    /// Announced with our protocol version: understands `PresenceNews`.
    bound: bool,
    /// Held by another server of a cluster: no view, never gets news.
    remote: bool,
    handle: T,
    /// Index of this member in `Presence::all`.
    position: usize,
    /// Members this one has been told about.
    view: Vec<Slot>,
    /// Members whose view holds this one.
    watchers: Vec<Slot>,
    news: News,
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
pub struct Joined<T> {
    /// The handle of an older connection of the same node, which lost.
    pub replaced: Option<T>,
    /// The `ListIDsReply` frame for the joining node.
    pub node_list: String,
}

/// The registry of online nodes; see the module documentation.
pub struct Presence<T> {
    config: PresenceConfig,
    members: Members<T>,
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
            by_id: HashMap::new(),
            all: Vec::new(),
            with_room: IndexSet::new(),
            queued: Vec::new(),
            rng,
        }
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The handle of an online node.
    pub fn get(&self, id: &NodeId) -> Option<&T> {
        self.by_id.get(id).map(|&slot| &self.members[slot].handle)
    }

    /// Enters a node that proved its identity. A node already present keeps
    /// its place in others' views; its old handle is returned so the server
    /// can close that connection.
    pub fn join(&mut self, id: NodeId, info_json: Box<str>, bound: bool, handle: T) -> Joined<T> {
        if let Some(&slot) = self.by_id.get(&id) {
            let member = &mut self.members[slot];
            let replaced = std::mem::replace(&mut member.handle, handle);
            member.info_json = info_json;
            member.bound = bound;
            member.remote = false;
            self.resample_view(slot);
            return Joined {
                replaced: Some(replaced),
                node_list: self.node_list_frame(slot),
            };
        }
        let slot = self.insert(id, info_json, bound, handle);
        self.tell_nodes_with_room(slot);
        self.resample_view(slot);
        Joined {
            replaced: None,
            node_list: self.node_list_frame(slot),
        }
    }

    fn insert(&mut self, id: NodeId, info_json: Box<str>, bound: bool, handle: T) -> Slot {
        let entry = self.members.0.vacant_entry();
        let slot = entry.key() as Slot;
        entry.insert(Member {
            id,
            info_json,
            bound,
            remote: false,
            handle,
            position: self.all.len(),
            view: Vec::new(),
            watchers: Vec::new(),
            news: News::default(),
        });
        self.all.push(slot);
        self.by_id.insert(id, slot);
        slot
    }

    /// Enters a node held by another server of a cluster. It is listed and
    /// its joins and leaves are news like anyone's, but it has no view of
    /// its own (its own server keeps that). A node present already keeps its
    /// place in others' views; its old handle is returned.
    pub fn join_remote(&mut self, id: NodeId, info_json: Box<str>, bound: bool, handle: T) -> Option<T> {
        if let Some(&slot) = self.by_id.get(&id) {
            let member = &mut self.members[slot];
            let replaced = std::mem::replace(&mut member.handle, handle);
            member.info_json = info_json;
            member.bound = bound;
            member.remote = true;
            for subject in std::mem::take(&mut member.view) {
                remove_item(&mut self.members[subject].watchers, slot);
            }
            let member = &mut self.members[slot];
            member.news = News {
                queued: member.news.queued,
                ..News::default()
            };
            self.with_room.swap_remove(&slot);
            return Some(replaced);
        }
        let slot = self.insert(id, info_json, bound, handle);
        self.members[slot].remote = true;
        self.tell_nodes_with_room(slot);
        None
    }

    /// Every member with its `NodeInfo` JSON and protocol flag.
    pub fn members(&self) -> impl Iterator<Item = (NodeId, &str, bool, &T)> {
        self.members
            .0
            .iter()
            .map(|(_, member)| (member.id, &*member.info_json, member.bound, &member.handle))
    }

    /// Removes `id` if `is_current` holds for its handle — a connection that
    /// was already replaced must not remove its successor.
    pub fn leave_if(&mut self, id: &NodeId, is_current: impl FnOnce(&T) -> bool) -> bool {
        let Some(&slot) = self.by_id.get(id) else {
            return false;
        };
        if !is_current(&self.members[slot].handle) {
            return false;
        }
        let member = self.members.0.remove(slot as usize);
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
        true
    }

    /// A fresh random node list for `id`, which becomes its view. `None`
    /// for a node held by another server, which keeps its view: a list
    /// asked for here comes from a connection that has just lost the node.
    pub fn node_list(&mut self, id: &NodeId) -> Option<String> {
        let slot = *self.by_id.get(id)?;
        if self.members[slot].remote {
            return None;
        }
        self.resample_view(slot);
        Some(self.node_list_frame(slot))
    }

    /// Takes every pending change as one frame per node that has news.
    pub fn drain_news(&mut self) -> Vec<(T, String)> {
        let queued = std::mem::take(&mut self.queued);
        let mut frames = Vec::with_capacity(queued.len());
        for slot in queued {
            let Some(member) = self.members.0.get_mut(slot as usize) else {
                continue;
            };
            if !member.news.queued {
                continue;
            }
            let news = std::mem::take(&mut member.news);
            if news.joined.is_empty() && news.left.is_empty() && !news.resync {
                continue;
            }
            let frame = if member.bound && !news.resync {
                self.news_frame(&news)
            } else {
                self.node_list_frame(slot)
            };
            frames.push((self.members[slot].handle.clone(), frame));
        }
        frames
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

    /// Replaces a member's view with a uniform sample of the others.
    fn resample_view(&mut self, slot: Slot) {
        for subject in std::mem::take(&mut self.members[slot].view) {
            remove_item(&mut self.members[subject].watchers, slot);
        }
        let others = self.all.len() - 1;
        let wanted = others.min(self.config.max_list_len);
        // Sample one extra so that dropping ourselves still leaves `wanted`.
        let picks = rand::seq::index::sample(&mut self.rng, self.all.len(), (wanted + 1).min(self.all.len()));
        let view: Vec<Slot> = picks
            .into_iter()
            .map(|index| self.all[index])
            .filter(|&other| other != slot)
            .take(wanted)
            .collect();
        for &subject in &view {
            self.members[subject].watchers.push(slot);
        }
        let member = &mut self.members[slot];
        member.view = view;
        // The list supersedes whatever news was pending.
        member.news = News {
            queued: member.news.queued,
            ..News::default()
        };
        self.update_room(slot);
    }

    fn update_room(&mut self, slot: Slot) {
        let member = &self.members[slot];
        if !member.remote && member.view.len() < self.config.max_list_len {
            self.with_room.insert(slot);
        } else {
            self.with_room.swap_remove(&slot);
        }
    }

    fn queue(&mut self, slot: Slot) {
        let news = &mut self.members[slot].news;
        if !news.queued {
            news.queued = true;
            self.queued.push(slot);
        }
    }

    fn node_list_frame(&self, slot: Slot) -> String {
        let view = &self.members[slot].view;
        let mut frame = String::with_capacity(18 + view.len() * 200);
        frame.push_str(r#"{"ListIDsReply":["#);
        self.push_infos(&mut frame, view);
        frame.push_str("]}");
        frame
    }

    fn news_frame(&self, news: &News) -> String {
        let mut frame = String::with_capacity(40 + news.joined.len() * 200 + news.left.len() * 67);
        frame.push_str(r#"{"PresenceNews":{"joined":["#);
        self.push_infos(&mut frame, &news.joined);
        frame.push_str(r#"],"left":["#);
        for (index, id) in news.left.iter().enumerate() {
            if index > 0 {
                frame.push(',');
            }
            frame.push('"');
            frame.push_str(&id.to_hex());
            frame.push('"');
        }
        frame.push_str("]}}");
        frame
    }

    fn push_infos(&self, frame: &mut String, slots: &[Slot]) {
        for (index, &slot) in slots.iter().enumerate() {
            if index > 0 {
                frame.push(',');
            }
            frame.push_str(&self.members[slot].info_json);
        }
    }
}

/// The slab of members, indexed by the compact [`Slot`].
struct Members<T>(Slab<Member<T>>);

impl<T> std::ops::Index<Slot> for Members<T> {
    type Output = Member<T>;
    fn index(&self, slot: Slot) -> &Member<T> {
        &self.0[slot as usize]
    }
}

impl<T> std::ops::IndexMut<Slot> for Members<T> {
    fn index_mut(&mut self, slot: Slot) -> &mut Member<T> {
        &mut self.0[slot as usize]
    }
}

/// Removes one occurrence of `item`, not keeping order. Returns whether it
/// was there.
fn remove_item(items: &mut Vec<Slot>, item: Slot) -> bool {
    match items.iter().position(|&x| x == item) {
        Some(index) => {
            items.swap_remove(index);
            true
        }
        None => false,
    }
}

#[cfg(test)]
#[path = "presence_tests.rs"]
mod tests;
