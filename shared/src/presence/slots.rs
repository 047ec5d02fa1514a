//! How presence stores its members: in a slab, addressed by a compact
//! [`Slot`] that views and watcher lists hold by the hundred.

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
