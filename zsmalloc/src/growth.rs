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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::{ClassTable, DEFAULT_MAX_CHAIN};

    /// The rule as `Growth::Proportional` states it, computed apart: Linux's length for
    /// `min_chain` (its class-table rule, tested against Linux's own tables elsewhere) is
    /// always allowed, a longer one only while its zspage holds at most `live / divisor`
    /// objects; of the allowed lengths the one whose end wastes the smallest share of its
    /// bytes wins, compared as exact fractions, the longest of equals.
    fn rule_apart(size: usize, full: usize, live: u64, divisor: u8, min_chain: u8) -> usize {
        let always = crate::class::chain_length(size, min_chain.max(1) as usize);
        let most = live / divisor.max(1) as u64;
        let mut best: Option<(usize, usize)> = None;
        for pages in 1..=full {
            let objs = pages * PAGE_SIZE / size;
            if objs == 0 || (pages > always && objs as u64 > most) {
                continue;
            }
            let waste = pages * PAGE_SIZE - objs * size;
            // waste / pages <= best_waste / best_pages, as integers.
            if best.is_none_or(|(bp, bw)| waste * bp <= bw * pages) {
                best = Some((pages, waste));
            }
        }
        best.map_or(1, |(p, _)| p)
    }

    fn class_of(size: usize) -> ClassState {
        let table = ClassTable::new(DEFAULT_MAX_CHAIN);
        let pos = table.class_for(size - crate::class::HANDLE_SIZE);
        let layout = table.classes[pos];
        assert_eq!(layout.size, size, "a class of exactly {size} bytes");
        ClassState::new(layout, pos as u8)
    }

    /// Lengths worked out by hand for chosen classes and populations under zsos's rule.
    #[test]
    fn zsos_rule_gives_the_lengths_worked_out_by_hand() {
        for (size, live, want) in [
            // 3504 bytes: Linux's chain 8 length is 6 pages (7 objects), chain 4's is 1 (1
            // object, 592 bytes wasted). 5 live: 5 pages hold 5 (6 pages' 7 are too many);
            // 9 live: 6 pages.
            (3504, 0, 1),
            (3504, 5, 5),
            (3504, 9, 6),
            // 1280 bytes: 1 page holds 3 (256 wasted, 6.25 %), 3 pages 9 (768, 6.25 %: equal,
            // the longer wins), 5 pages 16 (none wasted). 5 live: 2 pages' 6 are too many.
            (1280, 5, 1),
            (1280, 9, 3),
            (1280, 16, 5),
            // 3264 bytes: chain 4's length is 4 pages (5 objects): allowed with 1 live.
            (3264, 1, 4),
        ] {
            let mut class = class_of(size);
            class.objs_inuse = live;
            assert_eq!(
                Growth::ZSOS.pages_for(&class),
                want,
                "{size}-byte class with {live} live"
            );
        }
        // The divisor: 18 live over 2 allow 9 per zspage, as 9 live over 1 do.
        let mut class = class_of(1280);
        class.objs_inuse = 18;
        let halves = Growth::Proportional {
            divisor: 2,
            min_chain: 4,
        };
        assert_eq!(halves.pages_for(&class), 3);
        class.objs_inuse = 17;
        assert_eq!(
            halves.pages_for(&class),
            2,
            "17 / 2 = 8 allow 2 pages' 6 (512 wasted, 6.25 % as 1 page's: the longer) not 3's 9"
        );
    }

    /// Every class, populations 0..300, divisors 1..4 and chains 1..8: the rule computed apart.
    #[test]
    #[cfg_attr(miri, ignore = "pure arithmetic, no unsafe code: natively only")]
    fn proportional_growth_follows_its_rule_for_every_class_and_population() {
        let table = ClassTable::new(DEFAULT_MAX_CHAIN);
        for (pos, layout) in table.classes.iter().enumerate() {
            let mut class = ClassState::new(*layout, pos as u8);
            for divisor in 1..=4u8 {
                for min_chain in 1..=8u8 {
                    let growth = Growth::Proportional { divisor, min_chain };
                    for live in 0..300 {
                        class.objs_inuse = live;
                        let want = if layout.huge {
                            layout.pages_per_zspage
                        } else {
                            rule_apart(
                                layout.size,
                                layout.pages_per_zspage,
                                live,
                                divisor,
                                min_chain,
                            )
                        };
                        assert_eq!(
                            growth.pages_for(&class),
                            want,
                            "class {} ({} bytes), {live} live, {growth:?}",
                            layout.index,
                            layout.size
                        );
                    }
                }
            }
            assert_eq!(Growth::Fixed.pages_for(&class), layout.pages_per_zspage);
        }
    }
}
