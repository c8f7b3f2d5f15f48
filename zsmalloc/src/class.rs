//! Size classes: how object sizes map to classes, and how many pages each class chains into
//! one zspage. The rules are Linux's (mm/zsmalloc.c, 6.3 and later):
//!
//! * 4 KiB pages; sizes from 32 bytes in 16-byte steps up to a page: 255 logical classes;
//! * a class's chain length is the number of pages, 1 to the maximum chain, that wastes the
//!   least at the zspage's end (the first minimum wins; powers of two use one page);
//! * walking from the largest class down, a class with the same pages-per-zspage and
//!   objects-per-zspage as the previous distinct class is merged into it;
//! * a class whose zspage is one page holding one object is *huge*: its object carries no
//!   handle header. `huge_class_size` is the smallest user size that lands in a huge class.

use alloc::vec::Vec;

/// Page size zsmalloc works in.
pub const PAGE_SIZE: usize = 4096;
/// Smallest class size.
pub const MIN_ALLOC_SIZE: usize = 32;
/// Largest object a user can allocate.
pub const MAX_ALLOC_SIZE: usize = PAGE_SIZE;
/// Step between class sizes (`PAGE_SIZE >> CLASS_BITS`).
pub const CLASS_DELTA: usize = 16;
/// Number of logical classes.
pub const NUM_CLASSES: usize = (MAX_ALLOC_SIZE - MIN_ALLOC_SIZE).div_ceil(CLASS_DELTA) + 1;
/// Bytes of the in-object header that records an allocated object's handle.
pub const HANDLE_SIZE: usize = 8;
/// Default maximum pages per zspage (Linux's `CONFIG_ZSMALLOC_CHAIN_SIZE` default).
pub const DEFAULT_MAX_CHAIN: usize = 8;
/// Range of accepted maximum chain lengths (Linux's Kconfig range).
pub const CHAIN_RANGE: core::ops::RangeInclusive<usize> = 4..=16;

/// One distinct (unmerged) class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLayout {
    /// The logical index (0..NUM_CLASSES) of this class; aliases point here.
    pub index: usize,
    /// Size of one object slot, header included.
    pub size: usize,
    /// Pages chained into one zspage.
    pub pages_per_zspage: usize,
    /// Objects one zspage holds.
    pub objs_per_zspage: usize,
    /// One page, one object: no header, the handle lives in the page descriptor.
    pub huge: bool,
}

impl ClassLayout {
    /// Bytes left unused at the end of each zspage.
    pub fn waste_per_zspage(&self) -> usize {
        self.pages_per_zspage * PAGE_SIZE - self.objs_per_zspage * self.size
    }
}

/// Pages per zspage for a class size: the chain length in `1..=max_chain` with the least
/// waste at the zspage's end, the first minimum winning; powers of two use one page.
pub const fn chain_length(size: usize, max_chain: usize) -> usize {
    // LAB 3: BEGIN the chain length Linux chooses for a class of this size (rule 1 of the handout)
    if size.is_power_of_two() {
        return 1;
    }
    let (mut best_waste, mut best_pages) = (usize::MAX, 1);
    let mut pages = 1;
    while pages <= max_chain {
        let waste = (pages * PAGE_SIZE) % size;
        if waste < best_waste {
            (best_waste, best_pages) = (waste, pages);
        }
        pages += 1;
    }
    best_pages
    // LAB 3: STUB
    // // Until you choose, every zspage is one page (a const fn: no todo!, the tables are
    // // built by the compiler).
    // let _ = (size, max_chain);
    // 1
    // LAB 3: END
}

/// The logical class index for an object of `size` bytes, header already included.
pub fn logical_index(size_with_header: usize) -> usize {
    // LAB 3: BEGIN the logical class of the smallest size that holds this many bytes (sizes below the smallest class go to it; the largest class takes everything above it)
    if size_with_header <= MIN_ALLOC_SIZE {
        return 0;
    }
    ((size_with_header - MIN_ALLOC_SIZE).div_ceil(CLASS_DELTA)).min(NUM_CLASSES - 1)
    // LAB 3: STUB
    // // Until you compute it, every object is in the largest class.
    // let _ = (size_with_header, MIN_ALLOC_SIZE, CLASS_DELTA);
    // NUM_CLASSES - 1
    // LAB 3: END
}

/// The whole class table for one maximum chain length.
#[derive(Debug, Clone)]
pub struct ClassTable {
    /// For each logical class, the position in `classes` of the class that serves it.
    pub alias: [u8; NUM_CLASSES],
    /// The distinct classes, smallest first.
    pub classes: Vec<ClassLayout>,
    /// Smallest user size (header not counted) that lands in a huge class.
    pub huge_class_size: usize,
    /// The maximum chain length the table was built for.
    pub max_chain: usize,
}

/// A class table as plain arrays, so that it can be built at compile time.
struct BuiltTable {
    /// The distinct classes, smallest first, in `classes[..count]`.
    classes: [ClassLayout; NUM_CLASSES],
    count: usize,
    alias: [u8; NUM_CLASSES],
    huge_class_size: usize,
}

/// Builds the table for `max_chain` as Linux's `zs_create_pool` does: walking the logical
/// classes from the largest down, each gets its chain length and object count; one with the
/// same pages and objects as the previous distinct class is merged into it.
const fn build_table(max_chain: usize) -> BuiltTable {
    const EMPTY: ClassLayout = ClassLayout {
        index: 0,
        size: 0,
        pages_per_zspage: 0,
        objs_per_zspage: 0,
        huge: false,
    };
    // LAB 3: BEGIN the table for max_chain: every logical class's chain and objects, the huge range and huge_class_size (rule 3), merging (rule 2); distinct classes smallest first, and for each logical class the position of the class that serves it
    // Distinct classes are found largest first; `alias_rev` numbers them in that order.
    let mut rev = [EMPTY; NUM_CLASSES];
    let mut n = 0;
    let mut alias_rev = [0usize; NUM_CLASSES];
    let mut huge_class_size = 0;
    let mut i = NUM_CLASSES;
    while i > 0 {
        i -= 1;
        let size = MIN_ALLOC_SIZE + i * CLASS_DELTA;
        let size = if size > MAX_ALLOC_SIZE {
            MAX_ALLOC_SIZE
        } else {
            size
        };
        let pages = chain_length(size, max_chain);
        let objs = pages * PAGE_SIZE / size;
        // Walking down, the first class that is not one page holding one object ends the
        // huge range.
        if pages != 1 && objs != 1 && huge_class_size == 0 {
            huge_class_size = size - (HANDLE_SIZE - 1);
        }
        let merges =
            n > 0 && rev[n - 1].pages_per_zspage == pages && rev[n - 1].objs_per_zspage == objs;
        if !merges {
            rev[n] = ClassLayout {
                index: i,
                size,
                pages_per_zspage: pages,
                objs_per_zspage: objs,
                huge: pages == 1 && objs == 1,
            };
            n += 1;
        }
        alias_rev[i] = n - 1;
    }
    // Smallest first.
    let mut classes = [EMPTY; NUM_CLASSES];
    let mut k = 0;
    while k < n {
        classes[k] = rev[n - 1 - k];
        k += 1;
    }
    let mut alias = [0u8; NUM_CLASSES];
    let mut j = 0;
    while j < NUM_CLASSES {
        alias[j] = (n - 1 - alias_rev[j]) as u8;
        j += 1;
    }
    BuiltTable {
        classes,
        count: n,
        alias,
        huge_class_size,
    }
    // LAB 3: STUB
    // // Until you build it: every logical size a class of its own, of one page, none huge
    // // (a const fn: the compiler builds the tables; while loops, no todo!).
    // let _ = (max_chain, HANDLE_SIZE, chain_length);
    // let mut table = BuiltTable {
    //     classes: [EMPTY; NUM_CLASSES],
    //     count: NUM_CLASSES,
    //     alias: [0; NUM_CLASSES],
    //     huge_class_size: MAX_ALLOC_SIZE + 1,
    // };
    // let mut c = 0;
    // while c < NUM_CLASSES {
    //     let bytes = MIN_ALLOC_SIZE + c * CLASS_DELTA;
    //     let bytes = if bytes < MAX_ALLOC_SIZE { bytes } else { MAX_ALLOC_SIZE };
    //     table.classes[c] = ClassLayout {
    //         index: c,
    //         size: bytes,
    //         pages_per_zspage: 1,
    //         objs_per_zspage: PAGE_SIZE / bytes,
    //         huge: false,
    //     };
    //     table.alias[c] = c as u8;
    //     c += 1;
    // }
    // table
    // LAB 3: END
}

/// Every chain length's table, built by the compiler: the tables are fixed arithmetic, so a
/// pool only copies its own (which also keeps pool creation cheap under Miri).
static TABLES: [BuiltTable; 13] = {
    const FIRST: usize = *CHAIN_RANGE.start();
    let mut tables = [const {
        BuiltTable {
            classes: [ClassLayout {
                index: 0,
                size: 0,
                pages_per_zspage: 0,
                objs_per_zspage: 0,
                huge: false,
            }; NUM_CLASSES],
            count: 0,
            alias: [0; NUM_CLASSES],
            huge_class_size: 0,
        }
    }; 13];
    let mut c = 0;
    while c < tables.len() {
        tables[c] = build_table(FIRST + c);
        c += 1;
    }
    tables
};

impl ClassTable {
    /// The table for `max_chain`, as Linux's `zs_create_pool` builds it. `max_chain` must be
    /// in [`CHAIN_RANGE`].
    pub fn new(max_chain: usize) -> ClassTable {
        assert!(
            CHAIN_RANGE.contains(&max_chain),
            "max chain {max_chain} outside {CHAIN_RANGE:?}"
        );
        let built = &TABLES[max_chain - CHAIN_RANGE.start()];
        ClassTable {
            alias: built.alias,
            classes: built.classes[..built.count].to_vec(),
            huge_class_size: built.huge_class_size,
            max_chain,
        }
    }

    /// Position in `classes` of the class serving a user object of `size` bytes (the header
    /// is added here, as `zs_malloc` does). `size` must be 1..=MAX_ALLOC_SIZE.
    pub fn class_for(&self, size: usize) -> usize {
        self.alias[logical_index(size + HANDLE_SIZE)] as usize
    }

    /// The largest class that is not huge.
    pub fn largest_normal_class(&self) -> &ClassLayout {
        self.classes
            .iter()
            .rev()
            .find(|c| !c.huge)
            .expect("there are normal classes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::println;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn there_are_255_logical_classes_from_32_to_4096() {
        assert_eq!(NUM_CLASSES, 255);
        assert_eq!(logical_index(1), 0);
        assert_eq!(logical_index(32), 0);
        assert_eq!(logical_index(33), 1);
        assert_eq!(logical_index(48), 1);
        assert_eq!(logical_index(4096), 254);
        assert_eq!(logical_index(4096 + HANDLE_SIZE), 254);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn default_chain_matches_linux_huge_watermark() {
        let t = ClassTable::new(DEFAULT_MAX_CHAIN);
        assert_eq!(t.largest_normal_class().size, 3632);
        assert_eq!(t.huge_class_size, 3625);
        // A 3624-byte object (3632 with its header) is normal; 3625 bytes is huge.
        assert!(!t.classes[t.class_for(3624)].huge);
        assert!(t.classes[t.class_for(3625)].huge);
        assert!(t.classes[t.class_for(4096)].huge);
    }

    /// Linux's Documentation/mm/zsmalloc.rst table: huge watermark per chain length.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn huge_watermarks_for_every_chain_length_match_linux() {
        let expected = [
            (4, 3264),
            (5, 3408),
            (6, 3504),
            (7, 3584),
            (8, 3632),
            (9, 3680),
            (10, 3712),
            (11, 3744),
            (12, 3776),
            (13, 3792),
            (14, 3808),
            (15, 3840),
            (16, 3840),
        ];
        for (chain, watermark) in expected {
            let t = ClassTable::new(chain);
            assert_eq!(t.largest_normal_class().size, watermark, "chain {chain}");
            assert_eq!(
                t.huge_class_size,
                watermark - (HANDLE_SIZE - 1),
                "chain {chain}"
            );
        }
    }

    /// Linux's algorithm yields 69 / 119 / 192 distinct classes for chains 4 / 8 / 16.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn distinct_class_counts_match_linux() {
        for (chain, count) in [(4, 69), (8, 119), (16, 192)] {
            assert_eq!(ClassTable::new(chain).classes.len(), count, "chain {chain}");
        }
    }

    /// The documentation's example: class #96 (1568 bytes) holds 13 objects in 5 pages when
    /// the chain may be 5 or longer; with chain 4 it merges into #100 (1632 B, 2 pages, 5 objs).
    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn class_96_example_from_linux_docs() {
        let t8 = ClassTable::new(8);
        let c = &t8.classes[t8.alias[96] as usize];
        assert_eq!(
            (c.index, c.size, c.pages_per_zspage, c.objs_per_zspage),
            (96, 1568, 5, 13)
        );
        let t4 = ClassTable::new(4);
        let c = &t4.classes[t4.alias[96] as usize];
        assert_eq!(
            (c.index, c.size, c.pages_per_zspage, c.objs_per_zspage),
            (100, 1632, 2, 5)
        );
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn every_class_layout_is_consistent() {
        for chain in CHAIN_RANGE {
            let t = ClassTable::new(chain);
            for (pos, c) in t.classes.iter().enumerate() {
                assert_eq!(c.objs_per_zspage, c.pages_per_zspage * PAGE_SIZE / c.size);
                assert!(
                    c.waste_per_zspage() < c.size,
                    "a whole object would fit in the waste"
                );
                assert_eq!(
                    t.alias[c.index] as usize, pos,
                    "a class must serve its own index"
                );
                assert_eq!(c.size % CLASS_DELTA, 0);
                // No chain length up to the maximum wastes less (first minimum wins).
                if !c.size.is_power_of_two() {
                    for pages in 1..=chain {
                        assert!((pages * PAGE_SIZE) % c.size >= c.waste_per_zspage());
                    }
                }
            }
            // Every logical class is served by a class at least as large.
            for i in 0..NUM_CLASSES {
                let size = (MIN_ALLOC_SIZE + i * CLASS_DELTA).min(MAX_ALLOC_SIZE);
                assert!(t.classes[t.alias[i] as usize].size >= size);
            }
        }
    }

    /// Prints the whole default class table, so anyone can compare it with Linux's
    /// (`cargo test -p zsmalloc print_class_table -- --nocapture`).
    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn print_class_table() {
        let t = ClassTable::new(DEFAULT_MAX_CHAIN);
        println!(
            "chain {}: {} classes, huge_class_size {}",
            t.max_chain,
            t.classes.len(),
            t.huge_class_size
        );
        println!(
            "{:>5} {:>5} {:>6} {:>5} {:>6} {:>5}",
            "class", "size", "pages", "objs", "waste", "huge"
        );
        for c in &t.classes {
            println!(
                "{:>5} {:>5} {:>6} {:>5} {:>6} {:>5}",
                c.index,
                c.size,
                c.pages_per_zspage,
                c.objs_per_zspage,
                c.waste_per_zspage(),
                if c.huge { "yes" } else { "" }
            );
        }
        assert_eq!(t.classes.len(), 119);
    }
}
