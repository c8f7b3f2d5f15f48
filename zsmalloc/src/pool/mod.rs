//! The pool: zsmalloc's public API (Linux's `zs_create_pool`, `zs_malloc`, `zs_free`,
//! `zs_map_object`/`zs_unmap_object`, `zs_obj_read_*`/`zs_obj_write`, statistics).
//!
//! One file per concern: [`config`] and [`error`] (what a pool is asked and what it refuses),
//! `lock_order` (the locks and the debug-build order check), `alloc` (malloc, free, handle
//! checks), `release` (an emptied zspage's frames given back after the class lock), `mapping`
//! (map/unmap, the copy path, read and write), `migration` (compaction and page migration),
//! `invariants` (the from-scratch consistency check).
//!
//! Locking, as Linux 6.11's return to per-size-class locks (2024, "mm/zsmalloc: change back
//! to per-size_class lock"), in this order:
//! 1. the pool's migrate lock, a reader/writer lock: read to turn a handle into a stable
//!    location (free, map, read, write), write to move objects (compaction, migration);
//! 2. one lock per size class, for allocation and freeing (and held by compaction and
//!    migration, which change the class's zspages);
//! 3. a per-zspage lock (in the zspage's first zsdesc): a mapping holds it for reading from
//!    map to unmap, so that compaction and migration, which only ever *try* it for writing,
//!    skip that zspage and never move bytes under a user.
//!
//! Map, read and write take no class lock at all. Debug builds check the order per CPU.

mod alloc;
pub mod config;
pub mod error;
mod invariants;
mod lock_order;
mod mapping;
mod migration;
pub mod profile;
mod release;
mod writer_first;

use ::alloc::boxed::Box;
use ::alloc::string::String;
use ::alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;

use crate::backend::{Backend, Pfn};
use crate::class::{ClassTable, PAGE_SIZE};
use crate::growth::Growth;
use crate::handle::MAX_TAG;
use crate::placement::{ClassView, Placement};
use crate::slots::SlotTable;
use crate::stats::{ClassStats, PoolStats};
use crate::zspage::ClassState;

pub use config::{AutoCompact, COPY_UP_TO_SLOT, Locking, MapMode, MapPath, Policy, PoolConfig};
pub use error::Error;
use lock_order::LockOrder;
use mapping::CopyBuf;
pub use mapping::{Mapping, ReadGuard};
pub use migration::MoveKind;
use profile::PhaseCounters;
use writer_first::WriterFirst;

/// Where the search for a free pool tag starts: tags go round, so a dropped pool's tag
/// comes back only after every other tag was handed out since.
static NEXT_TAG: AtomicU16 = AtomicU16::new(0);
/// The tags of the live pools (bit `t` of the bitmap; tag 0 is never used): no two live
/// pools share a tag, so a handle of one is always foreign to the other.
static TAGS_IN_USE: [AtomicU64; (MAX_TAG as usize + 1).div_ceil(64)] =
    [const { AtomicU64::new(0) }; (MAX_TAG as usize + 1).div_ceil(64)];

/// A tag no live pool has.
fn take_tag() -> u16 {
    take_tag_from(&NEXT_TAG, &TAGS_IN_USE)
        .unwrap_or_else(|| panic!("zsmalloc: {MAX_TAG} pools are alive: no pool tag is left"))
}

/// Claims the first tag not in `in_use`, searching every tag once from where `next` says (a
/// position in `0..MAX_TAG`); `None` only if all `MAX_TAG` tags are taken.
fn take_tag_from(next: &AtomicU16, in_use: &[AtomicU64]) -> Option<u16> {
    let start = next.load(Ordering::Relaxed) % MAX_TAG;
    for i in 0..MAX_TAG {
        // Tags are 1..=MAX_TAG; positions wrap at MAX_TAG exactly, so each is tried once.
        let tag = (start + i) % MAX_TAG + 1;
        let bit = 1u64 << (tag % 64);
        if in_use[tag as usize / 64].fetch_or(bit, Ordering::AcqRel) & bit == 0 {
            // The next search starts after it (a race here only changes where it starts).
            next.store(tag % MAX_TAG, Ordering::Relaxed);
            return Some(tag);
        }
    }
    None
}

/// Gives a dropped pool's tag back.
fn give_back_tag(tag: u16) {
    TAGS_IN_USE[tag as usize / 64].fetch_and(!(1u64 << (tag % 64)), Ordering::AcqRel);
}

/// A zsmalloc pool.
pub struct Pool<B: Backend> {
    name: String,
    backend: B,
    table: ClassTable,
    /// Linux's `pool->migrate_lock`: held for reading to turn a handle into a stable
    /// object location (free, map, read, write), for writing to move objects (compaction,
    /// migration).
    migrate: WriterFirst,
    classes: Vec<Mutex<ClassState>>,
    /// Which class a new object goes to.
    placement: Placement,
    /// How long a class's new zspage is.
    growth: Growth,
    /// Whether frees compact.
    auto_compact: AutoCompact,
    /// Classes queued for compaction by frees under [`AutoCompact::Deferred`] (bit `pos`).
    pending: [AtomicU64; 4],
    /// Free slots per class, stored under the class lock whenever they change, read without
    /// it by the placement rule (a hint).
    free_slots: Vec<AtomicU64>,
    /// Bit `pos` set while class `pos` has free slots (kept with `free_slots`, for a
    /// placement rule other than Linux's, which never asks).
    room: [AtomicU64; 4],
    /// Live objects per own class (the class Linux would put them in), wherever they were
    /// placed; counted only under a placement rule other than Linux's, which never asks.
    demand: Vec<AtomicU64>,
    slots: SlotTable,
    order: LockOrder,
    tag: u16,
    map_path: MapPath,
    /// The pool-wide lock of [`Locking::PoolWide`] (`None` under the default locking).
    pool_lock: Option<Mutex<()>>,
    copy_bufs: Vec<CopyBuf>,
    pages_allocated: AtomicUsize,
    /// Times the migrate lock was taken for writing (for tests of how long it is held).
    #[cfg(test)]
    pub(crate) write_holds: AtomicUsize,
    pages_compacted: AtomicUsize,
    objs_moved: AtomicU64,
    /// Object bytes (whole slots) moved by compaction, asked for or automatic.
    bytes_moved: AtomicU64,
    /// Pages freed by automatic compaction (also counted in `pages_compacted`).
    pages_auto_compacted: AtomicUsize,
    /// Bytes moved by automatic compaction (also counted in `bytes_moved`).
    bytes_auto_moved: AtomicU64,
    /// `bytes_moved` by the kind of move, indexed by [`MoveKind`].
    bytes_moved_by: [AtomicU64; MoveKind::ALL.len()],
    /// Pages given back (net) by moves of one kind, indexed by [`MoveKind`].
    pages_freed_by: [AtomicUsize; MoveKind::ALL.len()],
    /// Cycles per phase of malloc and free, while profiling is on.
    phases: PhaseCounters,
}

/// Where an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The page the object starts in.
    pub pfn: Pfn,
    /// The object's index in its zspage.
    pub index: u32,
    /// Offset of the object's first user byte in that page (after the header).
    pub data_offset: usize,
    /// The next page, if the object's bytes continue there (it spans a page boundary).
    pub second_page: Option<Pfn>,
    /// The object's size.
    pub size: usize,
    /// Logical index of its class.
    pub class_index: usize,
    /// Its class's position in [`Pool::classes`] and its zspage's id there (as a
    /// [`crate::snapshot::Snapshot`] names them; `index` is its slot).
    pub zspage: crate::zsdesc::ZsPageRef,
}

impl<B: Backend> Pool<B> {
    /// Creates a pool named `name` over `backend` (Linux: `zs_create_pool`). Panics if
    /// 4,095 pools are alive already (each needs its own tag).
    pub fn new(name: &str, backend: B, config: PoolConfig) -> Pool<B> {
        let table = ClassTable::new(config.max_chain);
        let classes = table
            .classes
            .iter()
            .enumerate()
            .map(|(pos, l)| Mutex::new(ClassState::new(*l, pos as u8)))
            .collect();
        let free_slots = table.classes.iter().map(|_| AtomicU64::new(0)).collect();
        let demand = table.classes.iter().map(|_| AtomicU64::new(0)).collect();
        let tag = take_tag();
        let copy_bufs = match config.map_path {
            MapPath::Copy | MapPath::PerClass => (0..backend.possible_cpus())
                .map(|_| CopyBuf {
                    busy: AtomicBool::new(false),
                    bytes: Box::new(UnsafeCell::new([0; PAGE_SIZE])),
                })
                .collect(),
            MapPath::Window | MapPath::LazyWindow => Vec::new(),
        };
        let slots = SlotTable::new(backend.possible_cpus());
        Pool {
            name: String::from(name),
            order: LockOrder::new(backend.possible_cpus()),
            backend,
            table,
            migrate: WriterFirst::new(),
            classes,
            placement: config.placement,
            growth: config.growth,
            auto_compact: config.auto_compact,
            pending: [const { AtomicU64::new(0) }; 4],
            free_slots,
            room: [const { AtomicU64::new(0) }; 4],
            demand,
            slots,
            tag,
            map_path: config.map_path,
            pool_lock: (config.locking == Locking::PoolWide).then(|| Mutex::new(())),
            copy_bufs,
            pages_allocated: AtomicUsize::new(0),
            #[cfg(test)]
            write_holds: AtomicUsize::new(0),
            pages_compacted: AtomicUsize::new(0),
            objs_moved: AtomicU64::new(0),
            bytes_moved: AtomicU64::new(0),
            pages_auto_compacted: AtomicUsize::new(0),
            bytes_auto_moved: AtomicU64::new(0),
            bytes_moved_by: [const { AtomicU64::new(0) }; MoveKind::ALL.len()],
            pages_freed_by: [const { AtomicUsize::new(0) }; MoveKind::ALL.len()],
            phases: PhaseCounters::new(),
        }
    }

    /// The locking scheme.
    pub fn locking(&self) -> Locking {
        if self.pool_lock.is_some() {
            Locking::PoolWide
        } else {
            Locking::PerClass
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// How spanning objects are mapped.
    pub fn map_path(&self) -> MapPath {
        self.map_path
    }

    /// Whether any class lock is held now (for tests of what runs unlocked).
    #[cfg(test)]
    pub(crate) fn any_class_locked(&self) -> bool {
        self.classes.iter().any(|c| c.is_locked())
    }

    /// Per-CPU copy buffers the pool holds (one per possible CPU on a copy-path pool, none
    /// on a window pool).
    pub fn copy_buffers(&self) -> usize {
        self.copy_bufs.len()
    }

    /// The placement rule.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// What the placement rule sees: the classes and their free slots now.
    pub fn class_view(&self) -> ClassView<'_> {
        ClassView::new(&self.table, &self.free_slots, &self.demand).with_room_map(&self.room)
    }

    /// Queues class `pos` for deferred compaction (a no-op if it is queued already).
    fn queue_compaction(&self, pos: usize) {
        let (word, bit) = (&self.pending[pos / 64], 1u64 << (pos % 64));
        if word.load(Ordering::Relaxed) & bit == 0 {
            word.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// Takes the largest queued class off the queue, if any.
    fn take_queued(&self) -> Option<usize> {
        for w in (0..self.pending.len()).rev() {
            let mut bits = self.pending[w].load(Ordering::Relaxed);
            while bits != 0 {
                let bit = 63 - bits.leading_zeros() as usize;
                let was = self.pending[w].fetch_and(!(1u64 << bit), Ordering::Relaxed);
                if was & (1u64 << bit) != 0 {
                    return Some(w * 64 + bit);
                }
                bits = was & !(1u64 << bit);
            }
        }
        None
    }

    /// Whether frees have queued classes for compaction that [`Pool::compact_pending`] has
    /// not drained yet.
    pub fn compaction_pending(&self) -> bool {
        self.pending.iter().any(|w| w.load(Ordering::Relaxed) != 0)
    }

    /// Publishes class `pos`'s free slots for the placement rule (under the class lock).
    fn note_free_slots(&self, pos: usize, class: &ClassState) {
        let now = class.objs_allocated - class.objs_inuse;
        // Only this class's lock holder writes its figure: a load and a store suffice.
        let was = self.free_slots[pos].load(Ordering::Relaxed);
        self.free_slots[pos].store(now, Ordering::Relaxed);
        if self.placement != Placement::Linux && (was > 0) != (now > 0) {
            let bit = 1u64 << (pos % 64);
            if now > 0 {
                self.room[pos / 64].fetch_or(bit, Ordering::Relaxed);
            } else {
                self.room[pos / 64].fetch_and(!bit, Ordering::Relaxed);
            }
        }
    }

    /// Counts a live object in or out of the demand of its own class, at position `own`
    /// (`delta` is 1 or -1), for a placement rule that asks.
    fn note_demand(&self, own: usize, delta: i64) {
        if self.placement != Placement::Linux {
            let counter = &self.demand[own];
            if delta > 0 {
                counter.fetch_add(1, Ordering::Relaxed);
            } else {
                counter.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The class table.
    pub fn classes(&self) -> &ClassTable {
        &self.table
    }

    /// Smallest user size that lands in a huge class (Linux: `zs_huge_class_size`).
    pub fn huge_class_size(&self) -> usize {
        self.table.huge_class_size
    }

    /// The logical index of the class serving objects of `size` bytes (Linux:
    /// `zs_lookup_class_index`). `size` must be 1..=MAX_ALLOC_SIZE.
    pub fn class_index(&self, size: usize) -> usize {
        self.table.classes[self.table.class_for(size)].index
    }

    /// Pages held by the pool (Linux: `zs_get_total_pages`).
    pub fn total_pages(&self) -> usize {
        self.pages_allocated.load(Ordering::Relaxed)
    }

    /// Pages freed by compaction over the pool's life (Linux: `zs_pool_stats.pages_compacted`).
    pub fn pages_compacted(&self) -> usize {
        self.pages_compacted.load(Ordering::Relaxed)
    }

    /// Objects moved by compaction over the pool's life (zram's `objs_moved`).
    pub fn objs_moved(&self) -> u64 {
        self.objs_moved.load(Ordering::Relaxed)
    }

    /// Object bytes (whole slots, headers included) compaction moved over the pool's life.
    pub fn bytes_moved(&self) -> u64 {
        self.bytes_moved.load(Ordering::Relaxed)
    }

    /// Object bytes moved over the pool's life by moves of one kind (their sum is
    /// [`Pool::bytes_moved`]).
    pub fn bytes_moved_by(&self, kind: MoveKind) -> u64 {
        self.bytes_moved_by[kind as usize].load(Ordering::Relaxed)
    }

    /// Pages moves of one kind gave back (net) over the pool's life.
    pub fn pages_freed_by(&self, kind: MoveKind) -> usize {
        self.pages_freed_by[kind as usize].load(Ordering::Relaxed)
    }

    /// Pages freed by automatic compaction (see [`AutoCompact`]) over the pool's life.
    pub fn pages_auto_compacted(&self) -> usize {
        self.pages_auto_compacted.load(Ordering::Relaxed)
    }

    /// Object bytes automatic compaction (see [`AutoCompact`]) moved over the pool's life.
    pub fn bytes_auto_moved(&self) -> u64 {
        self.bytes_auto_moved.load(Ordering::Relaxed)
    }

    /// The growth rule.
    pub fn growth(&self) -> Growth {
        self.growth
    }

    /// The automatic compaction rule.
    pub fn auto_compact(&self) -> AutoCompact {
        self.auto_compact
    }

    /// Every class with a zspage, each zspage with its allocated slots
    /// ([`crate::snapshot::Snapshot::of`] makes the whole picture). Each class is read under
    /// its lock.
    pub fn class_snapshots(&self) -> Vec<crate::snapshot::ClassSnapshot> {
        let mut out = Vec::new();
        for pos in 0..self.classes.len() {
            let c = self.lock_class(pos);
            let zspages: Vec<_> = c
                .live_zspages()
                .map(|id| crate::snapshot::ZspageSnapshot {
                    id,
                    pages: c.zspage(id).pages,
                    group: c.zspage(id).group,
                    allocated: c.allocated_slots(&self.backend, id),
                })
                .collect();
            if !zspages.is_empty() {
                out.push(crate::snapshot::ClassSnapshot {
                    pos,
                    index: self.table.classes[pos].index,
                    size: c.layout.size,
                    chain: c.layout.pages_per_zspage,
                    huge: c.layout.huge,
                    zspages,
                });
            }
        }
        out
    }

    /// Statistics of one class (by position in [`Pool::classes`]).
    pub fn class_stats(&self, pos: usize) -> ClassStats {
        let c = self.lock_class(pos);
        ClassStats::of(&c)
    }

    /// Statistics of every class and the pool's totals (Linux's debugfs `classes` file).
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            classes: (0..self.classes.len())
                .map(|pos| self.class_stats(pos))
                .collect(),
            total_pages: self.total_pages(),
        }
    }
}

impl<B: Backend> Drop for Pool<B> {
    fn drop(&mut self) {
        let mut live_objects = 0;
        let mut freed = 0;
        for lock in &self.classes {
            let mut c = lock.lock();
            live_objects += c.objs_inuse;
            let ids: Vec<u32> = c.live_zspages().collect();
            for id in ids {
                c.zspage_mut(id).inuse = 0;
                freed += c.free_zspage(&self.backend, id);
            }
        }
        if live_objects > 0 {
            self.backend.report(format_args!(
                "zsmalloc: pool '{}' dropped with {live_objects} live objects; freed its {freed} pages",
                self.name
            ));
        }
        give_back_tag(self.tag);
    }
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    fn bitmap() -> [AtomicU64; (MAX_TAG as usize + 1).div_ceil(64)] {
        [const { AtomicU64::new(0) }; (MAX_TAG as usize + 1).div_ceil(64)]
    }

    /// With every tag but one taken, the search finds that one from wherever it starts
    /// (including where a 16-bit counter would have wrapped), and with all taken says so.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic over 4,095 tags, no unsafe code: natively only"
    )]
    fn the_only_free_tag_is_found_from_every_start() {
        for free in [1, 2, 16, 17, 100, 4000, MAX_TAG] {
            for start in [0, 1, 15, 16, 2047, MAX_TAG - 1, u16::MAX - 5, u16::MAX] {
                let in_use = bitmap();
                for tag in 1..=MAX_TAG {
                    if tag != free {
                        in_use[tag as usize / 64].fetch_or(1 << (tag % 64), Ordering::Relaxed);
                    }
                }
                let next = AtomicU16::new(start);
                assert_eq!(
                    take_tag_from(&next, &in_use),
                    Some(free),
                    "free tag {free}, search from {start}"
                );
                assert_eq!(take_tag_from(&next, &in_use), None, "all taken now");
            }
        }
    }

    /// Tags go round: a tag given back is handed out again only after the others.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic over 4,095 tags, no unsafe code: natively only"
    )]
    fn tags_go_round_before_one_comes_back() {
        let (in_use, next) = (bitmap(), AtomicU16::new(0));
        let first = take_tag_from(&next, &in_use).unwrap();
        in_use[first as usize / 64].fetch_and(!(1 << (first % 64)), Ordering::Relaxed);
        let mut seen = Vec::new();
        for _ in 1..MAX_TAG {
            let tag = take_tag_from(&next, &in_use).unwrap();
            seen.push(tag);
            in_use[tag as usize / 64].fetch_and(!(1 << (tag % 64)), Ordering::Relaxed);
        }
        assert!(!seen.contains(&first), "the given-back tag came back early");
        assert_eq!(take_tag_from(&next, &in_use), Some(first));
    }
}
