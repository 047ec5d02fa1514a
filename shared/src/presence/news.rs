//! What a node hears: the frames presence news turns into (a delta for our
//! nodes, the whole view for fledger's), when they are due, and the node
//! lists asked for.

use std::time::Instant;

use super::{Holder, News, Presence, Slot};
use crate::ids::NodeId;
use crate::message::{Infos, ListingFrame};

impl<T: Clone> Presence<T> {
    /// A news frame for `id` could not be delivered: its next news is its
    /// whole view, as deltas after a lost one would not add up.
    pub fn resync(&mut self, id: &NodeId) {
        let Some(&slot) = self.by_id.get(id) else {
            return;
        };
        if !self.members[slot].holder.is_local() {
            return;
        }
        self.members[slot].news.resync = true;
        self.queue(slot);
    }

    /// The node list `id` asked for at `now`: a fresh random sample, which
    /// becomes its view, or — if its view was drawn less than
    /// `min_list_push_interval` ago — that view as it stands. fledger nodes
    /// ask right after their first list; drawing again would cost a sample
    /// and a walk of a hundred watcher lists for an answer no better.
    /// Either way the list supersedes the node's pending news.
    ///
    /// `None` for a node held by another server, which keeps its view: a
    /// list asked for here comes from a connection that has just lost the
    /// node.
    pub fn node_list(&mut self, id: &NodeId, now: Instant) -> Option<String> {
        let slot = *self.by_id.get(id)?;
        let member = &self.members[slot];
        if !member.holder.is_local() {
            return None;
        }
        let interval = self.config.min_list_push_interval;
        if member.view_drawn.is_some_and(|drawn| now < drawn + interval) {
            self.drop_news(slot);
        } else {
            self.resample_view(slot, now);
        }
        Some(self.node_list_frame(slot))
    }

    /// Takes every pending change as one frame per node that has news,
    /// with the node and its handle, except for nodes due a full list that
    /// had one too recently: they stay queued.
    pub fn drain_news(&mut self, now: Instant) -> Vec<(NodeId, T, String)> {
        self.drain_news_where(now, |_| true)
    }

    /// Like [`Presence::drain_news`], but only for nodes whose handle is
    /// `ready` for a frame; the others keep their news, which goes on
    /// accumulating (as slots, not as text, and up to a resync) until a
    /// later call finds them ready. The server uses it to hold at most one
    /// unsent news frame per node, however long a storm of joins lasts.
    pub fn drain_news_where(&mut self, now: Instant, mut ready: impl FnMut(&T) -> bool) -> Vec<(NodeId, T, String)> {
        let queued = std::mem::take(&mut self.queued);
        let mut frames = Vec::with_capacity(queued.len());
        let min_interval = self.config.min_list_push_interval;
        for slot in queued {
            let Some(member) = self.members.0.get_mut(slot as usize) else {
                continue;
            };
            if !member.news.queued {
                continue;
            }
            let full_list = !member.bound || member.news.resync;
            let too_soon = full_list && member.last_list_push.is_some_and(|last| now < last + min_interval);
            // A member that went remote while queued has no news left (see
            // `join_remote`): it only leaves the queue here.
            let ready = match &member.holder {
                Holder::Local(handle) => ready(handle),
                Holder::Remote => true,
            };
            if too_soon || !ready {
                self.queued.push(slot);
                continue;
            }
            let news = std::mem::take(&mut member.news);
            if news.joined.is_empty() && news.left.is_empty() && !news.resync {
                continue;
            }
            let frame = if full_list {
                member.last_list_push = Some(now);
                self.node_list_frame(slot)
            } else {
                self.news_frame(&news)
            };
            let member = &self.members[slot];
            if let Holder::Local(handle) = &member.holder {
                frames.push((member.id, handle.clone(), frame));
            }
        }
        frames
    }

    pub(super) fn queue(&mut self, slot: Slot) {
        let news = &mut self.members[slot].news;
        if !news.queued {
            news.queued = true;
            self.queued.push(slot);
        }
    }

    pub(super) fn node_list_frame(&self, slot: Slot) -> String {
        let view = &self.members[slot].view;
        ListingFrame::ListIDsReply(self.infos(view)).render()
    }

    pub(super) fn news_frame(&self, news: &News) -> String {
        ListingFrame::PresenceNews {
            joined: self.infos(&news.joined),
            left: &news.left,
        }
        .render()
    }

    /// The stored `NodeInfo`s of some members, for a frame.
    fn infos<'a>(
        &'a self,
        slots: &'a [Slot],
    ) -> Infos<impl Iterator<Item = &'a crate::node_info::NodeInfoJson> + Clone> {
        Infos(slots.iter().map(|&slot| &self.members[slot].info))
    }
}

#[cfg(test)]
#[path = "news_tests.rs"]
mod tests;
