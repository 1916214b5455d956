//! The literal edges of a [`super::Matcher`]'s busy nodes: one open-addressing table keyed by
//! (parent node, segment hash), and the hashes both it and the short child lists use.

use std::hash::Hasher;

use rustc_hash::FxHasher;

/// One literal edge; `child == 0` marks an empty slot.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Slot {
    /// In [`Edges`], [`edge_hash`] of (parent, segment); in [`Matcher::kids`], the segment's
    /// [`segment_hash`].
    pub(super) hash: u64,
    pub(super) parent: u32,
    pub(super) child: u32,
}

/// The literal edges of nodes with many children, in one linear-probing table (while
/// [`Matcher::new`] builds the trie, all of them).
///
/// Keys are pattern segments from the config, so their distribution is not chosen by an
/// attacker and a fast unkeyed hash is fine. Request segments *are* attacker-controlled, but
/// they are only looked up, never inserted: a crafted collision costs a longer probe at worst,
/// and every hash match is confirmed by comparing the text, so it can never forge a match.
#[derive(Debug, Clone)]
pub(super) struct Edges {
    /// Length a power of two, at most 3/4 full.
    slots: Box<[Slot]>,
    len: usize,
}

/// Hash of one path segment, combined with the parent's id by [`edge_hash`] for [`Edges`].
pub(super) fn segment_hash(seg: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(seg.as_bytes());
    h.finish()
}

pub(super) fn edge_hash(parent: u32, seg_hash: u64) -> u64 {
    // Fibonacci hashing: the multiply spreads both inputs into the high bits, which pick the slot.
    (seg_hash ^ u64::from(parent).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xA076_1D64_78BD_642F)
}

impl Edges {
    pub(super) fn with_capacity(n: usize) -> Edges {
        let size = (n * 4 / 3 + 1).next_power_of_two().max(8);
        Edges {
            slots: vec![Slot::default(); size].into_boxed_slice(),
            len: 0,
        }
    }

    /// Slot indices to probe for `hash`, starting at its home slot.
    fn probe(&self, hash: u64) -> impl Iterator<Item = usize> {
        let mask = self.slots.len() - 1;
        let home = (hash >> (64 - self.slots.len().trailing_zeros())) as usize;
        (0..self.slots.len()).map(move |i| (home + i) & mask)
    }

    /// The child of `parent` whose label `is` the looked-up segment.
    pub(super) fn find(&self, parent: u32, hash: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        for i in self.probe(hash) {
            let slot = self.slots.get(i)?;
            if slot.child == 0 {
                return None;
            }
            if slot.hash == hash && slot.parent == parent && is(slot.child) {
                return Some(slot.child);
            }
        }
        None
    }

    /// Every edge in the table.
    pub(super) fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.slots.iter().filter(|s| s.child != 0).copied()
    }

    /// Adds an edge known to be absent.
    pub(super) fn insert(&mut self, slot: Slot) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let old = std::mem::replace(self, Edges::with_capacity(self.slots.len()));
            for s in old.slots.iter().filter(|s| s.child != 0) {
                self.insert(*s);
            }
        }
        let free = self
            .probe(slot.hash)
            .find(|&i| self.slots.get(i).is_some_and(|s| s.child == 0));
        if let Some(s) = free.and_then(|i| self.slots.get_mut(i)) {
            *s = slot;
            self.len += 1;
        }
    }
}
