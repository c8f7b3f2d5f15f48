//! The pool: zsmalloc's public API (`zs_create_pool`, `zs_malloc`, `zs_free`,
//! `zs_map_object`/`zs_unmap_object`, `zs_obj_read_*`/`zs_obj_write`, statistics).
//!
//! Locking, as seed 2024 (`mm/zsmalloc: change back to per-size_class lock`), in this order:
//! 1. the pool's migrate lock, a reader/writer lock: read to turn a handle into a stable
//!    location (free, map, read, write), write to move objects (compaction, migration);
//! 2. one lock per size class, for allocation and freeing (and held by compaction and
//!    migration, which change the class's zspages);
//! 3. a per-zspage lock (in the zspage's first zsdesc): a mapping holds it for reading from
//!    map to unmap, so that compaction and migration, which only ever *try* it for writing,
//!    skip that zspage and never move bytes under a user.
//!
//! Map, read and write take no class lock at all. Debug builds check the order per CPU.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};

use spin::{Mutex, RwLock};

use crate::backend::{Backend, PairMapping, Pfn};
use crate::class::{self, ClassTable, HANDLE_SIZE, MAX_ALLOC_SIZE, PAGE_SIZE};
use crate::handle::{self, Handle, HandleParts, MAX_TAG};
use crate::slots::{Slot, SlotState, SlotTable, WRITE_MAPPED};
use crate::stats::{ClassStats, PoolStats};
use crate::zsdesc;
use crate::zspage::ClassState;

/// How objects that span two pages are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapPath {
    /// Both pages mapped contiguously through this CPU's two-page PTE window.
    Window,
    /// Copied into a per-CPU buffer at map (not for write-only) and back at unmap (not for
    /// read-only), as Linux did from 2012 to 6.14.
    Copy,
}

/// What a mapping may do (Linux's `zs_mapmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    /// Read only; the copy path skips the copy-back.
    ReadOnly,
    /// Write only (initialising a new object); the copy path skips the copy-in, so the
    /// mapped bytes are unspecified until written.
    WriteOnly,
    /// Read and write.
    ReadWrite,
}

/// A pool's settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Maximum pages per zspage, 4 to 16 (default 8, as Linux).
    pub max_chain: usize,
    /// How spanning objects are mapped.
    pub map_path: MapPath,
    /// The locking scheme.
    pub locking: Locking,
}

/// Which locks serialise the pool's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// Seed 2024: per-class locks, the migrate rwlock, per-zspage locks (the default).
    PerClass,
    /// One pool-wide lock around every allocation, free, handle lookup (map, read, write),
    /// compaction step and migration, as Linux had from 6.2 (`zsmalloc: consolidate
    /// zs_pool's migrate_lock and size_class's locks`) until seed 2024 reverted it. Kept only
    /// for the scalability comparison; the finer locks are still taken inside it.
    PoolWide,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_chain: class::DEFAULT_MAX_CHAIN,
            map_path: MapPath::Window,
            locking: Locking::PerClass,
        }
    }
}

/// Everything the pool refuses, and why. Nothing is changed by a refused call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Size 0, or above [`MAX_ALLOC_SIZE`].
    InvalidSize(usize),
    /// The backend has no frame for a new zspage.
    OutOfMemory,
    /// The handle belongs to another pool.
    ForeignHandle(Handle),
    /// The handle was never handed out by this pool (forged or corrupted).
    InvalidHandle(Handle),
    /// The handle's object was already freed.
    DoubleFree(Handle),
    /// The handle is stale: its slot was freed and reused since.
    StaleHandle(Handle),
    /// The object is mapped in a way that conflicts (free or write while mapped, or a
    /// second writer).
    ObjectBusy(Handle),
    /// This CPU's mapping resource (window or copy buffer) is in use: one spanning mapping
    /// per CPU at a time.
    MapBusy,
    /// The frame does not belong to a zspage of this pool.
    NotOurPage(Pfn),
    /// The frame's zspage has a mapped object: it cannot move now (try again after unmap).
    ZspageBusy(Pfn),
    /// The caller's buffer cannot hold the object (or the data exceeds it).
    BufferSize {
        /// Bytes needed (or the object's size).
        object: usize,
        /// Bytes given.
        given: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidSize(s) => write!(f, "invalid size {s} (must be 1..={MAX_ALLOC_SIZE})"),
            Error::OutOfMemory => write!(f, "out of memory"),
            Error::ForeignHandle(h) => {
                write!(f, "handle {:#x} belongs to another pool", h.to_raw())
            }
            Error::InvalidHandle(h) => write!(
                f,
                "handle {:#x} was not handed out by this pool",
                h.to_raw()
            ),
            Error::DoubleFree(h) => write!(f, "handle {:#x} was already freed", h.to_raw()),
            Error::StaleHandle(h) => {
                write!(f, "handle {:#x} is stale (freed and reused)", h.to_raw())
            }
            Error::ObjectBusy(h) => write!(f, "object of handle {:#x} is mapped", h.to_raw()),
            Error::MapBusy => write!(f, "this CPU already has a spanning object mapped"),
            Error::NotOurPage(p) => write!(f, "frame {p:#x} is not a page of this pool"),
            Error::ZspageBusy(p) => {
                write!(f, "frame {p:#x} belongs to a zspage with a mapped object")
            }
            Error::BufferSize { object, given } => {
                write!(f, "object is {object} bytes, buffer {given}")
            }
        }
    }
}

/// A per-CPU copy buffer for the copy path.
struct CopyBuf {
    busy: AtomicBool,
    bytes: Box<UnsafeCell<[u8; PAGE_SIZE]>>,
}

// SAFETY: the buffer is only touched by whoever set `busy` (on the CPU that owns it).
unsafe impl Sync for CopyBuf {}
// SAFETY: as above.
unsafe impl Send for CopyBuf {}

static NEXT_TAG: AtomicU16 = AtomicU16::new(0);

/// A zsmalloc pool.
pub struct Pool<B: Backend> {
    name: String,
    backend: B,
    table: ClassTable,
    /// Seed 2024's `pool->migrate_lock`: held for reading to turn a handle into a stable
    /// object location (free, map, read, write), for writing to move objects (compaction,
    /// migration).
    migrate: RwLock<()>,
    classes: Vec<Mutex<ClassState>>,
    slots: SlotTable,
    order: LockOrder,
    tag: u16,
    map_path: MapPath,
    /// The pool-wide lock of [`Locking::PoolWide`] (`None` under the default locking).
    pool_lock: Option<Mutex<()>>,
    copy_bufs: Vec<CopyBuf>,
    pages_allocated: AtomicUsize,
    pages_compacted: AtomicUsize,
    objs_moved: AtomicU64,
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
}

/// A handle's object, pinned: its slot counts the mapping and its zspage's lock is held for
/// reading, so nothing moves it until [`Pool::unpin`].
#[derive(Clone, Copy)]
struct Resolved {
    class: usize,
    slot: u32,
    /// First page of the zspage (where its lock is).
    first: Pfn,
    pfn: Pfn,
    idx: u32,
    size: usize,
}

/// The pool's locks, in the order they must be taken (seed 2024): the migrate lock, then a
/// class lock, then a zspage lock. The zspage lock is only ever *tried* for writing (by
/// compaction and migration, which skip a busy zspage), so a mapping may hold it for reading
/// across other pool calls without risk of deadlock; only the first two are checked.
#[derive(Debug, Clone, Copy)]
enum Level {
    Migrate = 0,
    Class = 1,
}

/// Debug builds check the lock order per CPU: taking a lock while holding one that comes
/// later in the order panics with both named.
pub(crate) struct LockOrder {
    #[cfg(debug_assertions)]
    held: Vec<core::sync::atomic::AtomicU8>,
}

/// Proof that a level was entered in order; leaves it when dropped.
pub(crate) struct Held<'a> {
    #[cfg(debug_assertions)]
    order: &'a LockOrder,
    #[cfg(debug_assertions)]
    cpu: usize,
    #[cfg(debug_assertions)]
    bit: u8,
    #[cfg(not(debug_assertions))]
    _order: core::marker::PhantomData<&'a LockOrder>,
}

impl LockOrder {
    fn new(_cpus: usize) -> LockOrder {
        LockOrder {
            #[cfg(debug_assertions)]
            held: (0.._cpus)
                .map(|_| core::sync::atomic::AtomicU8::new(0))
                .collect(),
        }
    }

    fn enter<B: Backend>(&self, _backend: &B, level: Level) -> Held<'_> {
        #[cfg(debug_assertions)]
        {
            let (cpu, _pin) = _backend.pin_cpu();
            let bit = 1u8 << level as u8;
            let held = self.held[cpu].load(Ordering::Relaxed);
            assert!(
                held & !(bit - 1) == 0,
                "zsmalloc lock order violated on CPU {cpu}: taking the {level:?} lock while \
                 holding {held:#04b} (order: migrate lock, class lock, zspage lock)"
            );
            self.held[cpu].store(held | bit, Ordering::Relaxed);
            Held {
                order: self,
                cpu,
                bit,
            }
        }
        #[cfg(not(debug_assertions))]
        {
            let _ = level;
            Held {
                _order: core::marker::PhantomData,
            }
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        self.order.held[self.cpu].fetch_and(!self.bit, Ordering::Relaxed);
    }
}

/// A lock guard that also keeps its place in the lock order (the guard goes first).
pub(crate) struct Ordered<'a, G> {
    guard: G,
    _held: Held<'a>,
}

impl<G: Deref> Deref for Ordered<'_, G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: DerefMut> DerefMut for Ordered<'_, G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

type ClassGuard<'a> = Ordered<'a, spin::MutexGuard<'a, ClassState>>;

impl<B: Backend> Pool<B> {
    /// Creates a pool named `name` over `backend` (Linux: `zs_create_pool`).
    pub fn new(name: &str, backend: B, config: PoolConfig) -> Pool<B> {
        let table = ClassTable::new(config.max_chain);
        let classes = table
            .classes
            .iter()
            .enumerate()
            .map(|(pos, l)| Mutex::new(ClassState::new(*l, pos as u8)))
            .collect();
        let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed) % MAX_TAG + 1;
        let copy_bufs = match config.map_path {
            MapPath::Copy => (0..backend.possible_cpus())
                .map(|_| CopyBuf {
                    busy: AtomicBool::new(false),
                    bytes: Box::new(UnsafeCell::new([0; PAGE_SIZE])),
                })
                .collect(),
            MapPath::Window => Vec::new(),
        };
        let slots = SlotTable::new(backend.possible_cpus());
        Pool {
            name: String::from(name),
            order: LockOrder::new(backend.possible_cpus()),
            backend,
            table,
            migrate: RwLock::new(()),
            classes,
            slots,
            tag,
            map_path: config.map_path,
            pool_lock: (config.locking == Locking::PoolWide).then(|| Mutex::new(())),
            copy_bufs,
            pages_allocated: AtomicUsize::new(0),
            pages_compacted: AtomicUsize::new(0),
            objs_moved: AtomicU64::new(0),
        }
    }

    /// The pool-wide lock, under [`Locking::PoolWide`]; taken before any other lock.
    fn pool_wide(&self) -> Option<spin::MutexGuard<'_, ()>> {
        self.pool_lock.as_ref().map(|l| l.lock())
    }

    /// The locking scheme.
    pub fn locking(&self) -> Locking {
        if self.pool_lock.is_some() {
            Locking::PoolWide
        } else {
            Locking::PerClass
        }
    }

    pub(crate) fn read_migrate(&self) -> Ordered<'_, spin::RwLockReadGuard<'_, ()>> {
        let held = self.order.enter(&self.backend, Level::Migrate);
        Ordered {
            guard: self.migrate.read(),
            _held: held,
        }
    }

    fn write_migrate(&self) -> Ordered<'_, spin::RwLockWriteGuard<'_, ()>> {
        let held = self.order.enter(&self.backend, Level::Migrate);
        Ordered {
            guard: self.migrate.write(),
            _held: held,
        }
    }

    pub(crate) fn lock_class(&self, pos: usize) -> ClassGuard<'_> {
        let held = self.order.enter(&self.backend, Level::Class);
        Ordered {
            guard: self.classes[pos].lock(),
            _held: held,
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

    /// Compacts every class, largest first (Linux: `zs_compact`): live objects move from the
    /// sparsest zspages into the fullest, emptied zspages go back to the frame allocator.
    /// Handles stay valid. Zspages with mapped objects are not emptied. Each class is
    /// compacted under the migrate lock held for writing and the class lock, released between
    /// classes. Returns pages freed.
    pub fn compact(&self) -> usize {
        let mut freed = 0;
        for pos in (0..self.classes.len()).rev() {
            if self.lock_class(pos).freeable_zspages() == 0 {
                continue;
            }
            let _pool = self.pool_wide();
            let _migrate = self.write_migrate();
            let mut class = self.lock_class(pos);
            let (pages, moved) = class.compact(&self.backend, &self.slots);
            freed += pages;
            self.objs_moved.fetch_add(moved, Ordering::Relaxed);
        }
        self.pages_allocated.fetch_sub(freed, Ordering::Relaxed);
        self.pages_compacted.fetch_add(freed, Ordering::Relaxed);
        freed
    }

    /// Moves one page of a zspage to a fresh frame from the backend (Linux:
    /// `zs_page_migrate`); see [`Pool::migrate_page_into`]. Returns the new frame.
    pub fn migrate_page(&self, pfn: Pfn) -> Result<Pfn, Error> {
        zsdesc::owner(self.backend.desc(pfn)).ok_or(Error::NotOurPage(pfn))?;
        let new = self.backend.alloc_page().ok_or(Error::OutOfMemory)?;
        match self.migrate_page_into(pfn, new) {
            Ok(()) => Ok(new),
            Err(e) => {
                // SAFETY: `new` came from alloc_page just now and migration left it unused.
                unsafe { self.backend.free_page(new) };
                Err(e)
            }
        }
    }

    /// Moves page `pfn` of a zspage into the frame `new` (Linux: `zs_page_migrate`): the bytes
    /// are copied, the chain and the page's zsdesc move to the new frame, the slots of the
    /// objects that start in the page are repointed, and the old frame goes back to the
    /// backend through `free_page`. Handles stay valid. `new` must be a frame the backend's
    /// `free_page` may take back later (from the same allocator as `alloc_page`); on success
    /// the pool owns it. Refused, with nothing changed and `new` still the caller's, if the
    /// frame is not this pool's or its zspage has a mapped object.
    pub fn migrate_page_into(&self, pfn: Pfn, new: Pfn) -> Result<(), Error> {
        let _pool = self.pool_wide();
        let _migrate = self.write_migrate();
        let owner = zsdesc::owner(self.backend.desc(pfn)).ok_or(Error::NotOurPage(pfn))?;
        if owner.class as usize >= self.classes.len() {
            return Err(Error::NotOurPage(pfn));
        }
        let mut class = self.lock_class(owner.class as usize);
        class.migrate_page(&self.backend, &self.slots, owner.id, pfn, new)
    }

    /// Claims a page of this pool for migration (Linux: `zs_page_isolate`): marks it isolated
    /// so that no other migrator takes it. Refused if the page is not the pool's or is already
    /// isolated. Its zspage may still be freed meanwhile; migration then reports
    /// [`Error::NotOurPage`].
    pub fn isolate_page(&self, pfn: Pfn) -> Result<(), Error> {
        let _pool = self.pool_wide();
        let _migrate = self.read_migrate();
        let owner = zsdesc::owner(self.backend.desc(pfn)).ok_or(Error::NotOurPage(pfn))?;
        if owner.class as usize >= self.classes.len() {
            return Err(Error::NotOurPage(pfn));
        }
        let class = self.lock_class(owner.class as usize);
        if !class.holds_page(&self.backend, owner.id, pfn) {
            return Err(Error::NotOurPage(pfn));
        }
        if !zsdesc::try_isolate(self.backend.desc(pfn)) {
            return Err(Error::ZspageBusy(pfn));
        }
        Ok(())
    }

    /// Undoes [`Pool::isolate_page`] for a page that was not migrated (Linux:
    /// `zs_page_putback`). A page that is no longer the pool's is left alone.
    pub fn putback_page(&self, pfn: Pfn) {
        let _pool = self.pool_wide();
        let _migrate = self.read_migrate();
        let Some(owner) = zsdesc::owner(self.backend.desc(pfn)) else {
            return;
        };
        if (owner.class as usize) < self.classes.len() {
            let class = self.lock_class(owner.class as usize);
            if class.holds_page(&self.backend, owner.id, pfn) {
                zsdesc::clear_isolated(self.backend.desc(pfn));
            }
        }
    }

    /// Every page the pool holds, zspage by zspage (for migration and checks).
    pub fn pages(&self) -> Vec<Pfn> {
        let mut out = Vec::with_capacity(self.total_pages());
        for pos in 0..self.classes.len() {
            let c = self.lock_class(pos);
            for id in c.live_zspages() {
                let mut pfn = Some(c.zspage(id).first);
                while let Some(p) = pfn {
                    out.push(p);
                    pfn = if c.layout.huge {
                        None
                    } else {
                        zsdesc::next(self.backend.desc(p))
                    };
                }
            }
        }
        out
    }

    /// Pages freed by compaction over the pool's life (Linux: `zs_pool_stats.pages_compacted`).
    pub fn pages_compacted(&self) -> usize {
        self.pages_compacted.load(Ordering::Relaxed)
    }

    /// Objects moved by compaction over the pool's life (zram's `objs_moved`).
    pub fn objs_moved(&self) -> u64 {
        self.objs_moved.load(Ordering::Relaxed)
    }

    /// Allocates an object of `size` bytes (Linux: `zs_malloc`). The handle's slot is taken
    /// before the class lock (as Linux takes its handle from a cache first).
    pub fn malloc(&self, size: usize) -> Result<Handle, Error> {
        if size == 0 || size > MAX_ALLOC_SIZE {
            return Err(Error::InvalidSize(size));
        }
        let pos = self.table.class_for(size);
        let _pool = self.pool_wide();
        let (slot, generation) = self
            .slots
            .reserve(self.backend.cpu_index(), pos as u8, size as u16)
            .ok_or(Error::OutOfMemory)?;
        let mut class = self.lock_class(pos);
        let id = match class.find_zspage() {
            Some(id) => id,
            None => match class.alloc_zspage(&self.backend) {
                Some(id) => {
                    self.pages_allocated
                        .fetch_add(class.layout.pages_per_zspage, Ordering::Relaxed);
                    id
                }
                None => {
                    drop(class);
                    self.slots.release(self.backend.cpu_index(), slot);
                    return Err(Error::OutOfMemory);
                }
            },
        };
        let obj = class.obj_malloc(&self.backend, id, slot);
        self.slots
            .get(slot)
            .expect("a reserved slot exists")
            .set_obj(obj);
        class.fix_group(id);
        drop(class);
        self.slots.publish(slot);
        Ok(Handle::new(HandleParts {
            tag: self.tag,
            class: pos as u8,
            generation,
            slot,
        }))
    }

    /// The slot a handle names, after checking the handle is this pool's (no lock needed: the
    /// slot's address never changes).
    fn slot_of(&self, handle: Handle) -> Result<(HandleParts, &Slot), Error> {
        let p = handle.parts();
        if p.tag != self.tag {
            return Err(if p.tag == 0 {
                Error::InvalidHandle(handle)
            } else {
                Error::ForeignHandle(handle)
            });
        }
        if p.class as usize >= self.classes.len() {
            return Err(Error::InvalidHandle(handle));
        }
        let slot = self.slots.get(p.slot).ok_or(Error::InvalidHandle(handle))?;
        Ok((p, slot))
    }

    /// Checks that a slot's state still belongs to the handle's object.
    fn check_state(handle: Handle, p: &HandleParts, st: SlotState) -> Result<(), Error> {
        if st.generation != p.generation {
            return Err(if st.generation < p.generation && !st.live {
                Error::InvalidHandle(handle)
            } else {
                Error::StaleHandle(handle)
            });
        }
        if st.class != p.class {
            return Err(Error::InvalidHandle(handle));
        }
        if !st.live {
            return Err(Error::DoubleFree(handle));
        }
        Ok(())
    }

    /// Frees an object (Linux: `zs_free`): the migrate lock for reading, then the class lock,
    /// then the migrate lock is dropped. A zspage left empty is freed at once.
    pub fn free(&self, handle: Handle) -> Result<(), Error> {
        let (p, slot) = self.slot_of(handle)?;
        let _pool = self.pool_wide();
        let migrate = self.read_migrate();
        let mut class = self.lock_class(p.class as usize);
        drop(migrate);
        slot.update(|st| {
            Self::check_state(handle, &p, st)?;
            if st.maps != 0 {
                return Err(Error::ObjectBusy(handle));
            }
            Ok(SlotState { live: false, ..st })
        })?;
        let (pfn, idx) = handle::decode_obj(slot.obj());
        let owner = zsdesc::owner(self.backend.desc(pfn))
            .expect("a live object's page belongs to a zspage");
        class.obj_free(&self.backend, owner.id, pfn, idx);
        if class.fix_group(owner.id) == crate::zspage::GROUP_EMPTY {
            let freed = class.free_zspage(&self.backend, owner.id);
            self.pages_allocated.fetch_sub(freed, Ordering::Relaxed);
        }
        drop(class);
        self.slots.release(self.backend.cpu_index(), p.slot);
        Ok(())
    }

    /// Pins a handle's object for access in `mode` (Linux's first half of `zs_map_object`):
    /// under the migrate lock held for reading, the slot counts the access (refusing one that
    /// conflicts) and the object's zspage lock is taken for reading. No class lock is taken.
    fn pin(&self, handle: Handle, mode: MapMode) -> Result<Resolved, Error> {
        let (p, slot) = self.slot_of(handle)?;
        let _pool = self.pool_wide();
        let _migrate = self.read_migrate();
        let st = slot.update(|st| {
            Self::check_state(handle, &p, st)?;
            let conflict = match mode {
                MapMode::ReadOnly => st.maps >= WRITE_MAPPED - 1,
                MapMode::WriteOnly | MapMode::ReadWrite => st.maps != 0,
            };
            if conflict {
                return Err(Error::ObjectBusy(handle));
            }
            let maps = if mode == MapMode::ReadOnly {
                st.maps + 1
            } else {
                WRITE_MAPPED
            };
            Ok(SlotState { maps, ..st })
        })?;
        let (pfn, idx) = handle::decode_obj(slot.obj());
        let first = zsdesc::first_page(self.backend.desc(pfn));
        zsdesc::zspage_read_lock(self.backend.desc(first));
        Ok(Resolved {
            class: p.class as usize,
            slot: p.slot,
            first,
            pfn,
            idx,
            size: st.size as usize,
        })
    }

    /// Undoes [`Pool::pin`]: the zspage lock first (the slot's count keeps the object, and so
    /// its zspage, alive until then), then the slot's count.
    fn unpin(&self, r: &Resolved) {
        zsdesc::zspage_read_unlock(self.backend.desc(r.first));
        let slot = self
            .slots
            .get(r.slot)
            .expect("a pinned object's slot exists");
        let _ = slot.update(|st| {
            let maps = if st.maps == WRITE_MAPPED {
                0
            } else {
                st.maps - 1
            };
            Ok::<_, ()>(SlotState { maps, ..st })
        });
    }

    /// Where an object's bytes are: (page, offset of the first user byte, second page if the
    /// object spans two). The object must be pinned or the migrate lock held.
    fn object_bytes(
        &self,
        class: usize,
        pfn: Pfn,
        idx: u32,
        size: usize,
    ) -> (Pfn, usize, Option<Pfn>) {
        let layout = &self.table.classes[class];
        let off = idx as usize * layout.size % PAGE_SIZE;
        let data = off + if layout.huge { 0 } else { HANDLE_SIZE };
        if data + size <= PAGE_SIZE {
            (pfn, data, None)
        } else {
            let next =
                zsdesc::next(self.backend.desc(pfn)).expect("a spanning object has a next page");
            (pfn, data, Some(next))
        }
    }

    /// Maps an object (Linux: `zs_map_object`); the returned guard derefs to exactly its
    /// bytes and unmaps on drop. One spanning mapping per CPU at a time ([`Error::MapBusy`]).
    /// The object's zspage cannot move (compaction and migration skip it) until the unmap.
    pub fn map(&self, handle: Handle, mode: MapMode) -> Result<Mapping<'_, B>, Error> {
        let r = self.pin(handle, mode)?;
        let (first, data, second) = self.object_bytes(r.class, r.pfn, r.idx, r.size);
        // From here, dropping `m` unpins, on every path.
        let mut m = Mapping {
            pool: self,
            r,
            mode,
            ptr: core::ptr::null_mut(),
            kind: MapKind::Direct,
        };
        match second {
            None => m.ptr = self.backend.page_ptr(first).wrapping_add(data),
            Some(second) => match self.map_path {
                MapPath::Window => {
                    let pair = self
                        .backend
                        .map_pair(first, second, mode != MapMode::ReadOnly)
                        .ok_or(Error::MapBusy)?;
                    m.ptr = pair.ptr().wrapping_add(data);
                    m.kind = MapKind::Window(pair);
                }
                MapPath::Copy => {
                    let (cpu, pin) = self.backend.pin_cpu();
                    let buf = &self.copy_bufs[cpu];
                    if buf.busy.swap(true, Ordering::Acquire) {
                        return Err(Error::MapBusy);
                    }
                    m.ptr = buf.bytes.get().cast::<u8>();
                    m.kind = MapKind::Copy {
                        cpu,
                        _pin: pin,
                        first,
                        data,
                        second,
                    };
                    if mode != MapMode::WriteOnly {
                        // SAFETY: the zspage is pinned (nothing moves it), the object is mapped
                        // by us alone for writing or shared for reading, and the buffer is ours
                        // while `busy` is set.
                        unsafe {
                            self.copy_object(first, data, second, m.ptr, r.size, CopyDir::ToBuffer)
                        };
                    }
                }
            },
        }
        Ok(m)
    }

    /// Copies an object between its two pages and a buffer.
    ///
    /// # Safety
    /// The object is pinned and not written by anyone else; `buf` is valid for `len` bytes.
    unsafe fn copy_object(
        &self,
        first: Pfn,
        data: usize,
        second: Pfn,
        buf: *mut u8,
        len: usize,
        dir: CopyDir,
    ) {
        let head = (PAGE_SIZE - data).min(len);
        let parts = [
            (self.backend.page_ptr(first).wrapping_add(data), 0, head),
            (self.backend.page_ptr(second), head, len - head),
        ];
        for (page, at, n) in parts {
            // SAFETY: the page pointers cover the object's bytes (the backend's promise), the
            // buffer covers `len`, and they never overlap.
            unsafe {
                match dir {
                    CopyDir::ToBuffer => core::ptr::copy_nonoverlapping(page, buf.add(at), n),
                    CopyDir::ToObject => core::ptr::copy_nonoverlapping(buf.add(at), page, n),
                }
            }
        }
    }

    fn unmap(&self, m: &mut Mapping<'_, B>) {
        match core::mem::replace(&mut m.kind, MapKind::Direct) {
            MapKind::Direct => {}
            MapKind::Window(pair) => drop(pair),
            MapKind::Copy {
                cpu,
                _pin,
                first,
                data,
                second,
            } => {
                if m.mode != MapMode::ReadOnly {
                    // SAFETY: as at map time; the object is still pinned and mapped by us.
                    unsafe {
                        self.copy_object(first, data, second, m.ptr, m.r.size, CopyDir::ToObject)
                    };
                }
                self.copy_bufs[cpu].busy.store(false, Ordering::Release);
                drop(_pin);
            }
        }
        self.unpin(&m.r);
    }

    /// Copies an object's bytes into `buf` (at least the object's size); returns the size.
    pub fn read(&self, handle: Handle, buf: &mut [u8]) -> Result<usize, Error> {
        let r = self.pin(handle, MapMode::ReadOnly)?;
        if buf.len() < r.size {
            self.unpin(&r);
            return Err(Error::BufferSize {
                object: r.size,
                given: buf.len(),
            });
        }
        let (first, data, second) = self.object_bytes(r.class, r.pfn, r.idx, r.size);
        // SAFETY: the object is pinned (nothing moves it) and no writer has it mapped; `buf`
        // holds at least `size` bytes.
        unsafe {
            self.copy_object(
                first,
                data,
                second.unwrap_or(first),
                buf.as_mut_ptr(),
                r.size,
                CopyDir::ToBuffer,
            )
        };
        self.unpin(&r);
        Ok(r.size)
    }

    /// Copies `data` into the start of an object (Linux: `zs_obj_write`); `data` may be
    /// shorter than the object.
    pub fn write(&self, handle: Handle, data: &[u8]) -> Result<(), Error> {
        let r = self.pin(handle, MapMode::WriteOnly)?;
        if data.len() > r.size {
            self.unpin(&r);
            return Err(Error::BufferSize {
                object: r.size,
                given: data.len(),
            });
        }
        let (first, off, second) = self.object_bytes(r.class, r.pfn, r.idx, r.size);
        // SAFETY: the object is pinned for writing (nobody else has it mapped, nothing moves
        // it); `data` is only read.
        unsafe {
            self.copy_object(
                first,
                off,
                second.unwrap_or(first),
                data.as_ptr().cast_mut(),
                data.len(),
                CopyDir::ToObject,
            )
        };
        self.unpin(&r);
        Ok(())
    }

    /// The current way to read (Linux: `zs_obj_read_begin`): an object within one page is
    /// shown in place; one that spans two pages is copied into `local_copy`. The zspage stays
    /// pinned until the guard is dropped.
    pub fn read_object<'a>(
        &'a self,
        handle: Handle,
        local_copy: &'a mut [u8; PAGE_SIZE],
    ) -> Result<ReadGuard<'a, B>, Error> {
        let r = self.pin(handle, MapMode::ReadOnly)?;
        let mut m = Mapping {
            pool: self,
            r,
            mode: MapMode::ReadOnly,
            ptr: core::ptr::null_mut(),
            kind: MapKind::Direct,
        };
        let (first, data, second) = self.object_bytes(r.class, r.pfn, r.idx, r.size);
        m.ptr = match second {
            None => self.backend.page_ptr(first).wrapping_add(data),
            Some(second) => {
                // SAFETY: pinned, shared for reading; `local_copy` holds a page.
                unsafe {
                    self.copy_object(
                        first,
                        data,
                        second,
                        local_copy.as_mut_ptr(),
                        r.size,
                        CopyDir::ToBuffer,
                    )
                };
                local_copy.as_mut_ptr()
            }
        };
        Ok(ReadGuard {
            mapping: m,
            _local: core::marker::PhantomData,
        })
    }

    /// Where a handle's object is now: for tests, demos and teaching. Works while the object
    /// is mapped.
    pub fn location(&self, handle: Handle) -> Result<Location, Error> {
        let (p, slot) = self.slot_of(handle)?;
        let _migrate = self.read_migrate();
        let st = slot.state();
        Self::check_state(handle, &p, st)?;
        let (pfn, idx) = handle::decode_obj(slot.obj());
        let size = st.size as usize;
        let (pfn, data, second) = self.object_bytes(p.class as usize, pfn, idx, size);
        Ok(Location {
            pfn,
            index: idx,
            data_offset: data,
            second_page: second,
            size,
            class_index: self.table.classes[p.class as usize].index,
        })
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

    /// Checks every invariant of the pool's structures and returns the first broken one: object
    /// counts, fullness placement, freelists, headers, slots, page ownership, page totals.
    pub fn check_invariants(&self) -> Result<(), String> {
        use alloc::format;
        let _migrate = self.read_migrate();
        let mut live: Vec<Vec<(u32, u64)>> = (0..self.classes.len()).map(|_| Vec::new()).collect();
        for (i, slot) in self.slots.iter() {
            let st = slot.state();
            if st.live {
                let class = live
                    .get_mut(st.class as usize)
                    .ok_or_else(|| format!("slot {i}: class {} out of range", st.class))?;
                class.push((i, slot.obj()));
            }
        }
        let mut total_pages = 0;
        for (pos, live) in live.iter().enumerate() {
            let c = self.lock_class(pos);
            let objs = c.layout.objs_per_zspage as u32;
            let mut inuse_sum = 0u64;
            let mut zspages = 0u64;
            for id in c.live_zspages() {
                let z = c.zspage(id);
                zspages += 1;
                inuse_sum += z.inuse as u64;
                let group = crate::zspage::fullness_group(z.inuse, objs);
                if group != z.group as usize || !c.group_members(group).any(|m| m == id) {
                    return Err(format!(
                        "class {pos} zspage {id}: inuse {} but listed in group {}",
                        z.inuse, z.group
                    ));
                }
                if group == crate::zspage::GROUP_EMPTY {
                    return Err(format!("class {pos} zspage {id}: empty zspage kept"));
                }
                let free = c.freelist(&self.backend, id);
                if free.len() as u32 != objs - z.inuse {
                    return Err(format!(
                        "class {pos} zspage {id}: freelist has {} of {} free objects",
                        free.len(),
                        objs - z.inuse
                    ));
                }
                let mut pfn = Some(z.first);
                for n in 0..c.layout.pages_per_zspage {
                    let p = pfn.ok_or_else(|| {
                        format!("class {pos} zspage {id}: chain ends at page {n}")
                    })?;
                    let d = self.backend.desc(p);
                    if zsdesc::first_page(d) != z.first {
                        return Err(format!(
                            "class {pos} zspage {id}: page {n} ({p:#x}) names another first page"
                        ));
                    }
                    if zsdesc::movable_ops(d) != self.backend.movable_ops()
                        || zsdesc::is_movable(d) != (self.backend.movable_ops() != 0)
                    {
                        return Err(format!(
                            "class {pos} zspage {id}: page {n} ({p:#x}) has the wrong movable mark"
                        ));
                    }
                    if zsdesc::owner(d)
                        != Some(zsdesc::ZsPageRef {
                            class: pos as u8,
                            id,
                        })
                        || zsdesc::is_first(d) != (n == 0)
                    {
                        return Err(format!(
                            "class {pos} zspage {id}: page {n} ({p:#x}) has the wrong zsdesc"
                        ));
                    }
                    let page_start = n * PAGE_SIZE;
                    let first_obj = page_start.div_ceil(c.layout.size) * c.layout.size - page_start;
                    if zsdesc::first_obj_offset(d) as usize != first_obj {
                        return Err(format!(
                            "class {pos} zspage {id}: page {n} has first_obj_offset {}",
                            zsdesc::first_obj_offset(d)
                        ));
                    }
                    pfn = if c.layout.huge { None } else { zsdesc::next(d) };
                }
                total_pages += c.layout.pages_per_zspage;
            }
            if zspages * objs as u64 != c.objs_allocated || inuse_sum != c.objs_inuse {
                return Err(format!("class {pos}: counters disagree with its zspages"));
            }
            let mut live_slots = 0;
            for &(i, obj) in live {
                live_slots += 1;
                let (pfn, idx) = handle::decode_obj(obj);
                let owner = zsdesc::owner(self.backend.desc(pfn));
                if owner.map(|o| o.class as usize) != Some(pos) {
                    return Err(format!(
                        "class {pos} slot {i}: object page {pfn:#x} is not this class's"
                    ));
                }
                if c.header_slot(&self.backend, pfn, idx) != Some(i) {
                    return Err(format!(
                        "class {pos} slot {i}: object header names another slot"
                    ));
                }
            }
            if live_slots != c.objs_inuse {
                return Err(format!(
                    "class {pos}: {live_slots} live slots for {} objects",
                    c.objs_inuse
                ));
            }
        }
        if total_pages != self.total_pages() {
            return Err(format!(
                "pool: {total_pages} pages in zspages, {} counted",
                self.total_pages()
            ));
        }
        Ok(())
    }
}

enum CopyDir {
    ToBuffer,
    ToObject,
}

enum MapKind<'p, B: Backend + 'p> {
    Direct,
    Window(B::PairMap<'p>),
    Copy {
        cpu: usize,
        _pin: B::CpuPin,
        first: Pfn,
        data: usize,
        second: Pfn,
    },
}

/// A mapped object; derefs to exactly its bytes; unmaps when dropped.
pub struct Mapping<'p, B: Backend> {
    pool: &'p Pool<B>,
    r: Resolved,
    mode: MapMode,
    ptr: *mut u8,
    kind: MapKind<'p, B>,
}

impl<B: Backend> Mapping<'_, B> {
    /// The mode it was mapped with.
    pub fn mode(&self) -> MapMode {
        self.mode
    }
}

impl<B: Backend> Deref for Mapping<'_, B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` shows the object's `size` bytes (in place, through the window, or in
        // this CPU's copy buffer) for as long as the mapping lives; the slot's map count
        // excludes writers while it does.
        unsafe { core::slice::from_raw_parts(self.ptr, self.r.size) }
    }
}

impl<B: Backend> DerefMut for Mapping<'_, B> {
    /// Panics on a read-only mapping.
    fn deref_mut(&mut self) -> &mut [u8] {
        assert!(
            self.mode != MapMode::ReadOnly,
            "writing through a read-only zsmalloc mapping"
        );
        // SAFETY: as for `deref`; a writable mapping is exclusive (the slot is WRITE_MAPPED).
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.r.size) }
    }
}

impl<B: Backend> Drop for Mapping<'_, B> {
    fn drop(&mut self) {
        let pool = self.pool;
        pool.unmap(self);
    }
}

/// An object's bytes for reading (in place or in the caller's copy); unpins when dropped.
pub struct ReadGuard<'a, B: Backend> {
    mapping: Mapping<'a, B>,
    _local: core::marker::PhantomData<&'a mut [u8; PAGE_SIZE]>,
}

impl<B: Backend> Deref for ReadGuard<'_, B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.mapping
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
    }
}
