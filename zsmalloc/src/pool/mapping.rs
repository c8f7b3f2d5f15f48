//! Reaching an object's bytes: pinning a handle, mapping (in place, through this CPU's
//! two-page window, or through the per-CPU copy buffer), unmapping, and the copying
//! `read`/`write`/`read_object` calls.

use ::alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use super::{Error, Location, MapMode, MapPath, Pool};
use crate::backend::{Backend, PairMapping, Pfn};
use crate::class::{HANDLE_SIZE, PAGE_SIZE};
use crate::handle::{self, Handle};
use crate::slots::{SlotState, WRITE_MAPPED};
use crate::zsdesc;

/// A per-CPU copy buffer for the copy path.
pub(super) struct CopyBuf {
    pub(super) busy: AtomicBool,
    pub(super) bytes: Box<UnsafeCell<[u8; PAGE_SIZE]>>,
}

// SAFETY: the buffer is only touched by whoever set `busy` (on the CPU that owns it).
unsafe impl Sync for CopyBuf {}
// SAFETY: as above.
unsafe impl Send for CopyBuf {}

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

impl<B: Backend> Pool<B> {
    /// Pins a handle's object for access in `mode` (Linux's first half of `zs_map_object`):
    /// under the migrate lock held for reading, the slot counts the access (refusing one that
    /// conflicts) and the object's zspage lock is taken for reading. No class lock is taken.
    fn pin(&self, handle: Handle, mode: MapMode) -> Result<Resolved, Error> {
        let (p, slot) = self.slot_of(handle)?;
        let _pool = self.pool_wide();
        let _migrate = self.read_migrate();
        // LAB 5: BEGIN in one atomic update of the slot's state (Slot::update), check the handle against it and count this access: readers share an object, a writer has it alone; refuse a conflict with ObjectBusy
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
        // LAB 5: STUB
        // // Until you count accesses, nothing ever conflicts.
        // let st = slot.state();
        // Self::check_state(handle, &p, st)?;
        // let _: (MapMode, u16, Option<SlotState>) = (mode, WRITE_MAPPED, None);
        // LAB 5: END
        let (pfn, idx) = handle::decode_obj(slot.obj());
        let desc = self.backend.desc(pfn);
        let first = zsdesc::first_page(desc);
        // The class the object is in now (the handle names its own; it may be lent another's).
        let class = zsdesc::owner(desc)
            .expect("a live object's page belongs to a zspage")
            .class as usize;
        zsdesc::zspage_read_lock(self.backend.desc(first));
        Ok(Resolved {
            class,
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
        // LAB 5: BEGIN the access ends: the slot stops counting it
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
        // LAB 5: STUB
        // let _ = r.slot;
        // LAB 5: END
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
        // LAB 4: BEGIN where the object's user bytes are: the page and offset they begin at, and the next page if they continue there
        let off = idx as usize * layout.size % PAGE_SIZE;
        let data = off + if layout.huge { 0 } else { HANDLE_SIZE };
        if data + size <= PAGE_SIZE {
            (pfn, data, None)
        } else {
            let next =
                zsdesc::next(self.backend.desc(pfn)).expect("a spanning object has a next page");
            (pfn, data, Some(next))
        }
        // LAB 4: STUB
        // let _ = (layout, pfn, idx, size, HANDLE_SIZE, PAGE_SIZE);
        // todo!("lab 4: where an object's bytes are, and whether they span two pages (zsmalloc/src/pool/mapping.rs, Pool::object_bytes)")
        // LAB 4: END
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
            Some(second) => match self.map_path.for_slot(self.table.classes[r.class].size) {
                path @ (MapPath::Window | MapPath::LazyWindow | MapPath::PerClass) => {
                    let writable = mode != MapMode::ReadOnly;
                    let object = data..data + r.size;
                    let pair = if path == MapPath::LazyWindow {
                        self.backend.map_pair_lazy(first, second, object, writable)
                    } else {
                        self.backend.map_pair(first, second, object, writable)
                    }
                    .ok_or(Error::MapBusy)?;
                    m.ptr = pair.ptr().wrapping_add(data);
                    m.kind = MapKind::Window(pair);
                }
                MapPath::Copy => {
                    // LAB 5: BEGIN map a spanning object through this CPU's copy buffer, copying in only what the mode needs
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
                    // LAB 5: STUB
                    // // What a copy mapping is, for when you write it:
                    // let _ = |cpu, _pin, first, data, second| MapKind::<B>::Copy { cpu, _pin, first, data, second };
                    // let _ = (self.copy_bufs.first().map(|b| b.bytes.get()), CopyDir::ToBuffer, r.size);
                    // todo!("lab 5: map a spanning object through this CPU's copy buffer (zsmalloc/src/pool/mapping.rs, Pool::map)")
                    // LAB 5: END
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
                // LAB 5: BEGIN unmap a copied object: write back what the mode allows
                if m.mode != MapMode::ReadOnly {
                    // SAFETY: as at map time; the object is still pinned and mapped by us.
                    unsafe {
                        self.copy_object(first, data, second, m.ptr, m.r.size, CopyDir::ToObject)
                    };
                }
                // LAB 5: STUB
                // let _ = (first, data, second);
                // LAB 5: END
                self.copy_bufs[cpu].busy.store(false, Ordering::Release);
                drop(_pin);
            }
        }
        self.unpin(&m.r);
    }

    /// Copies an object's bytes into `buf` (at least the object's size); returns the size.
    pub fn read(&self, handle: Handle, buf: &mut [u8]) -> Result<usize, Error> {
        self.copy_with_object(handle, buf.as_mut_ptr(), buf.len(), CopyDir::ToBuffer)
    }

    /// Copies `data` into the start of an object (Linux: `zs_obj_write`); `data` may be
    /// shorter than the object.
    pub fn write(&self, handle: Handle, data: &[u8]) -> Result<(), Error> {
        // `data` is only read: ToObject copies from the buffer into the object.
        self.copy_with_object(
            handle,
            data.as_ptr().cast_mut(),
            data.len(),
            CopyDir::ToObject,
        )
        .map(|_| ())
    }

    /// `read` and `write`: pins the object (shared to read it, exclusive to write it), copies
    /// between it and the `len` bytes at `buf`, unpins. Reading needs `len` ≥ the object's
    /// size and copies the whole object; writing needs `len` ≤ it and copies `len` bytes.
    /// Returns the object's size.
    fn copy_with_object(
        &self,
        handle: Handle,
        buf: *mut u8,
        len: usize,
        dir: CopyDir,
    ) -> Result<usize, Error> {
        let mode = match dir {
            CopyDir::ToBuffer => MapMode::ReadOnly,
            CopyDir::ToObject => MapMode::WriteOnly,
        };
        let r = self.pin(handle, mode)?;
        let fits = match dir {
            CopyDir::ToBuffer => len >= r.size,
            CopyDir::ToObject => len <= r.size,
        };
        if !fits {
            self.unpin(&r);
            return Err(Error::BufferSize {
                object: r.size,
                given: len,
            });
        }
        let count = match dir {
            CopyDir::ToBuffer => r.size,
            CopyDir::ToObject => len,
        };
        let (first, data, second) = self.object_bytes(r.class, r.pfn, r.idx, r.size);
        // SAFETY: the object is pinned (nothing moves it), shared with readers only when we
        // read and exclusive when we write; `buf` is valid for `len` ≥ `count` bytes (the
        // caller's slice), and is only read when copying into the object.
        unsafe { self.copy_object(first, data, second.unwrap_or(first), buf, count, dir) };
        self.unpin(&r);
        Ok(r.size)
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
        let zspage = crate::zsdesc::owner(self.backend.desc(pfn))
            .expect("a live object's page belongs to a zspage");
        let (pfn, data, second) = self.object_bytes(zspage.class as usize, pfn, idx, size);
        Ok(Location {
            zspage,
            pfn,
            index: idx,
            data_offset: data,
            second_page: second,
            size,
            class_index: self.table.classes[zspage.class as usize].index,
        })
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
