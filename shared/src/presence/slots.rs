//! How presence stores its members: in a slab, addressed by a compact
//! [`Slot`] that views and watcher lists hold by the hundred.

use rand::Rng;
use slab::Slab;

use super::Member;

/// A member's index in the slab, stored as `u32` because views and watcher
/// lists hold hundreds of them per node.
pub(super) type Slot = u32;

/// The slab of members, indexed by the compact [`Slot`].
pub(super) struct Members<T>(pub(super) Slab<Member<T>>);

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
pub(super) fn remove_item(items: &mut Vec<Slot>, item: Slot) -> bool {
    match items.iter().position(|&x| x == item) {
        Some(index) => {
            items.swap_remove(index);
            true
        }
        None => false,
    }
}

/// `count` members other than `exclude`, drawn uniformly at random from
/// `all` (every member's slot, each member knowing its `position` there):
/// a partial Fisher–Yates shuffle puts a random `count + 1` of them (one
/// extra, in case `exclude` is drawn) at the front of `all`. That costs
/// O(count), where sampling indices (`rand::seq::index::sample`) built a
/// table of all N members for every join.
pub(super) fn draw_others<T>(
    all: &mut [Slot],
    members: &mut Members<T>,
    rng: &mut impl Rng,
    exclude: Slot,
    count: usize,
) -> Vec<Slot> {
    let len = all.len();
    let picks = (count + 1).min(len);
    for front in 0..picks {
        let drawn = rng.gen_range(front..len);
        all.swap(front, drawn);
        members[all[front]].position = front;
        members[all[drawn]].position = drawn;
    }
    let mut view = Vec::with_capacity(count);
    view.extend(
        all[..picks]
            .iter()
            .copied()
            .filter(|&other| other != exclude)
            .take(count),
    );
    view
}
