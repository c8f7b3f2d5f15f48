//! The pool: zsmalloc's public API (`zs_create_pool`, `zs_malloc`, `zs_free`,
//! `zs_map_object`/`zs_unmap_object`, `zs_obj_read_*`/`zs_obj_write`, statistics).
//!
//! Locking: each class has its own lock (seed 2024), held for allocation, free, and while a
//! handle is resolved to its object and the object's zspage pinned. A mapping pins the zspage
//! (so nothing can move it) and is done outside the class lock; unmapping unpins it.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};

use spin::Mutex;

use crate::backend::{Backend, PairMapping, Pfn};
use crate::class::{self, ClassTable, HANDLE_SIZE, MAX_ALLOC_SIZE, PAGE_SIZE};
use crate::handle::{self, Handle, HandleParts, MAX_TAG};
use crate::stats::{ClassStats, PoolStats};
use crate::zsdesc;
use crate::zspage::{ClassState, WRITE_MAPPED};

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
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_chain: class::DEFAULT_MAX_CHAIN,
            map_path: MapPath::Window,
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
    classes: Vec<Mutex<ClassState>>,
    tag: u16,
    map_path: MapPath,
    copy_bufs: Vec<CopyBuf>,
    pages_allocated: AtomicUsize,
    pages_compacted: AtomicUsize,
    objs_moved: core::sync::atomic::AtomicU64,
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

/// A handle's object, resolved under its class lock.
#[derive(Clone, Copy)]
struct Resolved {
    class: usize,
    slot: u32,
    zspage: u32,
    pfn: Pfn,
    idx: u32,
    size: usize,
}

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
        Pool {
            name: String::from(name),
            backend,
            table,
            classes,
            tag,
            map_path: config.map_path,
            copy_bufs,
            pages_allocated: AtomicUsize::new(0),
            pages_compacted: AtomicUsize::new(0),
            objs_moved: core::sync::atomic::AtomicU64::new(0),
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
    /// Handles stay valid. Zspages with mapped objects are not emptied. Returns pages freed.
    pub fn compact(&self) -> usize {
        let mut freed = 0;
        for lock in self.classes.iter().rev() {
            let mut class = lock.lock();
            if class.freeable_zspages() == 0 {
                continue;
            }
            let (pages, moved) = class.compact(&self.backend);
            freed += pages;
            self.objs_moved.fetch_add(moved, Ordering::Relaxed);
        }
        self.pages_allocated.fetch_sub(freed, Ordering::Relaxed);
        self.pages_compacted.fetch_add(freed, Ordering::Relaxed);
        freed
    }

    /// Moves one page of a zspage to a fresh frame (Linux: `zs_page_migrate`): the bytes are
    /// copied, the chain and the page's zsdesc move to the new frame, the slots of the objects
    /// that start in the page are repointed, and the old frame goes back to the backend.
    /// Handles stay valid. Refused, with nothing changed, if the frame is not this pool's, if
    /// its zspage has a mapped object, or if no frame is free. Returns the new frame.
    pub fn migrate_page(&self, pfn: Pfn) -> Result<Pfn, Error> {
        let owner = zsdesc::owner(self.backend.desc(pfn)).ok_or(Error::NotOurPage(pfn))?;
        let mut class = self
            .classes
            .get(owner.class as usize)
            .ok_or(Error::NotOurPage(pfn))?
            .lock();
        let new = class.migrate_page(&self.backend, owner.id, pfn)?;
        Ok(new)
    }

    /// Every page the pool holds, zspage by zspage (for migration and checks).
    pub fn pages(&self) -> Vec<Pfn> {
        let mut out = Vec::with_capacity(self.total_pages());
        for lock in &self.classes {
            let c = lock.lock();
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

    /// Allocates an object of `size` bytes (Linux: `zs_malloc`).
    pub fn malloc(&self, size: usize) -> Result<Handle, Error> {
        if size == 0 || size > MAX_ALLOC_SIZE {
            return Err(Error::InvalidSize(size));
        }
        let pos = self.table.class_for(size);
        let mut class = self.classes[pos].lock();
        let id = match class.find_zspage() {
            Some(id) => id,
            None => {
                let id = class
                    .alloc_zspage(&self.backend)
                    .ok_or(Error::OutOfMemory)?;
                self.pages_allocated
                    .fetch_add(class.layout.pages_per_zspage, Ordering::Relaxed);
                id
            }
        };
        let (slot, generation) = class.alloc_slot(size as u16);
        let obj = class.obj_malloc(&self.backend, id, slot);
        class.slots[slot as usize].obj = obj;
        class.fix_group(id);
        Ok(Handle::new(HandleParts {
            tag: self.tag,
            class: pos as u8,
            generation,
            slot,
        }))
    }

    /// Finds a handle's object; the class lock must be held (`class` is its state).
    fn resolve(&self, class: &ClassState, handle: Handle) -> Result<Resolved, Error> {
        let p = handle.parts();
        let slot = class
            .slots
            .get(p.slot as usize)
            .ok_or(Error::InvalidHandle(handle))?;
        if slot.generation != p.generation {
            return Err(if slot.generation < p.generation && !slot.live {
                Error::InvalidHandle(handle)
            } else {
                Error::StaleHandle(handle)
            });
        }
        if !slot.live {
            return Err(Error::DoubleFree(handle));
        }
        let (pfn, idx) = handle::decode_obj(slot.obj);
        let owner = zsdesc::owner(self.backend.desc(pfn))
            .expect("a live object's page belongs to a zspage");
        debug_assert_eq!(owner.class as usize, p.class as usize);
        Ok(Resolved {
            class: p.class as usize,
            slot: p.slot,
            zspage: owner.id,
            pfn,
            idx,
            size: slot.size as usize,
        })
    }

    /// Locks the class a handle names, after checking the handle is this pool's.
    fn class_of(&self, handle: Handle) -> Result<spin::MutexGuard<'_, ClassState>, Error> {
        let p = handle.parts();
        if p.tag != self.tag {
            return Err(if p.tag == 0 {
                Error::InvalidHandle(handle)
            } else {
                Error::ForeignHandle(handle)
            });
        }
        self.classes
            .get(p.class as usize)
            .map(|c| c.lock())
            .ok_or(Error::InvalidHandle(handle))
    }

    /// Frees an object (Linux: `zs_free`). A zspage left empty is freed at once.
    pub fn free(&self, handle: Handle) -> Result<(), Error> {
        let mut class = self.class_of(handle)?;
        let r = self.resolve(&class, handle)?;
        if class.slots[r.slot as usize].maps != 0 {
            return Err(Error::ObjectBusy(handle));
        }
        class.obj_free(&self.backend, r.zspage, r.pfn, r.idx);
        class.release_slot(r.slot);
        if class.fix_group(r.zspage) == crate::zspage::GROUP_EMPTY {
            let freed = class.free_zspage(&self.backend, r.zspage);
            self.pages_allocated.fetch_sub(freed, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Where an object's bytes are: (page, offset of the first user byte, second page if the
    /// object spans two).
    fn object_bytes(&self, class: &ClassState, r: &Resolved) -> (Pfn, usize, Option<Pfn>) {
        let off = r.idx as usize * class.layout.size % PAGE_SIZE;
        let data = off + if class.layout.huge { 0 } else { HANDLE_SIZE };
        if data + r.size <= PAGE_SIZE {
            (r.pfn, data, None)
        } else {
            let next =
                zsdesc::next(self.backend.desc(r.pfn)).expect("a spanning object has a next page");
            (r.pfn, data, Some(next))
        }
    }

    /// Maps an object (Linux: `zs_map_object`); the returned guard derefs to exactly its
    /// bytes and unmaps on drop. One spanning mapping per CPU at a time ([`Error::MapBusy`]).
    pub fn map(&self, handle: Handle, mode: MapMode) -> Result<Mapping<'_, B>, Error> {
        let (r, first, data, second) = {
            let mut class = self.class_of(handle)?;
            let r = self.resolve(&class, handle)?;
            let slot = &mut class.slots[r.slot as usize];
            let conflict = match mode {
                MapMode::ReadOnly => slot.maps == WRITE_MAPPED || slot.maps == WRITE_MAPPED - 1,
                MapMode::WriteOnly | MapMode::ReadWrite => slot.maps != 0,
            };
            if conflict {
                return Err(Error::ObjectBusy(handle));
            }
            slot.maps = if mode == MapMode::ReadOnly {
                slot.maps + 1
            } else {
                WRITE_MAPPED
            };
            class.zspage_mut(r.zspage).pins += 1;
            let (first, data, second) = self.object_bytes(&class, &r);
            (r, first, data, second)
        };
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
        let mut class = self.classes[m.r.class].lock();
        let slot = &mut class.slots[m.r.slot as usize];
        slot.maps = if slot.maps == WRITE_MAPPED {
            0
        } else {
            slot.maps - 1
        };
        class.zspage_mut(m.r.zspage).pins -= 1;
    }

    /// Copies an object's bytes into `buf` (at least the object's size); returns the size.
    pub fn read(&self, handle: Handle, buf: &mut [u8]) -> Result<usize, Error> {
        let class = self.class_of(handle)?;
        let r = self.resolve(&class, handle)?;
        if buf.len() < r.size {
            return Err(Error::BufferSize {
                object: r.size,
                given: buf.len(),
            });
        }
        if class.slots[r.slot as usize].maps == WRITE_MAPPED {
            return Err(Error::ObjectBusy(handle));
        }
        let (first, data, second) = self.object_bytes(&class, &r);
        // SAFETY: the class lock keeps the object in place and no writer has it mapped; `buf`
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
        Ok(r.size)
    }

    /// Copies `data` into the start of an object (Linux: `zs_obj_write`); `data` may be
    /// shorter than the object.
    pub fn write(&self, handle: Handle, data: &[u8]) -> Result<(), Error> {
        let class = self.class_of(handle)?;
        let r = self.resolve(&class, handle)?;
        if data.len() > r.size {
            return Err(Error::BufferSize {
                object: r.size,
                given: data.len(),
            });
        }
        if class.slots[r.slot as usize].maps != 0 {
            return Err(Error::ObjectBusy(handle));
        }
        let (first, off, second) = self.object_bytes(&class, &r);
        // SAFETY: as for `read`, and nobody has the object mapped; `data` is only read.
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
        let mut m = self.map_for_read(handle)?;
        let (first, data, second) = {
            let class = self.classes[m.r.class].lock();
            self.object_bytes(&class, &m.r)
        };
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
                        m.r.size,
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

    fn map_for_read(&self, handle: Handle) -> Result<Mapping<'_, B>, Error> {
        let mut class = self.class_of(handle)?;
        let r = self.resolve(&class, handle)?;
        let slot = &mut class.slots[r.slot as usize];
        if slot.maps >= WRITE_MAPPED - 1 {
            return Err(Error::ObjectBusy(handle));
        }
        slot.maps += 1;
        class.zspage_mut(r.zspage).pins += 1;
        Ok(Mapping {
            pool: self,
            r,
            mode: MapMode::ReadOnly,
            ptr: core::ptr::null_mut(),
            kind: MapKind::Direct,
        })
    }

    /// Where a handle's object is now: for tests, demos and teaching.
    pub fn location(&self, handle: Handle) -> Result<Location, Error> {
        let class = self.class_of(handle)?;
        let r = self.resolve(&class, handle)?;
        let (pfn, data, second) = self.object_bytes(&class, &r);
        Ok(Location {
            pfn,
            index: r.idx,
            data_offset: data,
            second_page: second,
            size: r.size,
            class_index: class.layout.index,
        })
    }

    /// Statistics of one class (by position in [`Pool::classes`]).
    pub fn class_stats(&self, pos: usize) -> ClassStats {
        let c = self.classes[pos].lock();
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
        let mut total_pages = 0;
        for (pos, lock) in self.classes.iter().enumerate() {
            let c = lock.lock();
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
            for (i, s) in c.slots.iter().enumerate().filter(|(_, s)| s.live) {
                live_slots += 1;
                let (pfn, idx) = handle::decode_obj(s.obj);
                let owner = zsdesc::owner(self.backend.desc(pfn));
                if owner.map(|o| o.class as usize) != Some(pos) {
                    return Err(format!(
                        "class {pos} slot {i}: object page {pfn:#x} is not this class's"
                    ));
                }
                if c.header_slot(&self.backend, pfn, idx) != Some(i as u32) {
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
                let z = c.zspage_mut(id);
                z.inuse = 0;
                z.pins = 0;
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
