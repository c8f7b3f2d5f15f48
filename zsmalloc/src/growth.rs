//! Growth: how many pages a class's next zspage chains.
//!
//! Linux gives every zspage of a class the same length, the one (up to the pool's maximum
//! chain) that wastes least at its end. A long zspage packs a large population best, but while
//! a class is small its last zspage is mostly empty, and after frees a long zspage stays as
//! long as one of its many objects lives. [`Growth::Proportional`] sizes each new zspage by the
//! class's population instead: the length Linux's shortest chain (4) would give the slot
//! while the class is small, longer zspages (never longer than the class's length) as it
//! grows. Zspages of one class may then differ in length;
//! everything else (slot size, fullness groups by each zspage's own capacity, compaction,
//! migration) is the same.

use crate::class::PAGE_SIZE;
use crate::zspage::ClassState;

/// How long a class's new zspage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Growth {
    /// Linux's rule: always the class's length.
    #[default]
    Fixed,
    /// Among the lengths up to the class's that are no longer than the least-waste length of
    /// at most `min_chain` pages, or whose zspage holds at most 1 / `divisor` of the class's
    /// live objects, the one that wastes the smallest share of its bytes at its end (the
    /// longest of equals).
    Proportional {
        /// A new zspage holds at most the class's live objects divided by this (unless it is
        /// no longer than the `min_chain` length).
        divisor: u8,
        /// Lengths up to Linux's choice for this chain are always allowed.
        min_chain: u8,
    },
}

impl Growth {
    /// The rule of zsos's policy: a new zspage is at least as long as Linux's chain-4 rule
    /// makes it, and longer only while it holds at most as many objects as the class has live
    /// (chosen from `bench policies`; see `docs/policies.md`).
    pub const ZSOS: Growth = Growth::Proportional {
        divisor: 1,
        min_chain: 4,
    };

    /// Pages for the next zspage of `class`.
    pub(crate) fn pages_for(self, class: &ClassState) -> usize {
        let full = class.layout.pages_per_zspage;
        match self {
            Growth::Fixed => full,
            Growth::Proportional { .. } if class.layout.huge => full,
            Growth::Proportional { divisor, min_chain } => {
                let most = (class.objs_inuse / divisor.max(1) as u64) as usize;
                let size = class.layout.size;
                let always = crate::class::chain_length(size, min_chain.max(1) as usize);
                let mut best = (1, usize::MAX);
                for pages in 1..=full {
                    let objs = class.capacity(pages);
                    if objs == 0 || (pages > always && objs > most) {
                        continue;
                    }
                    // The share of the zspage's bytes left over at its end, in millionths.
                    let waste = (pages * PAGE_SIZE - objs * size) * 1_000_000 / (pages * PAGE_SIZE);
                    if waste <= best.1 {
                        best = (pages, waste);
                    }
                }
                best.0
            }
        }
    }
}
