//! The pool's handle slots (Linux allocates a word per handle from a kmem cache; here a slot
//! table). A slot holds where its object is (`obj`, `pfn << 24 | index`) and what the object is
//! doing (`state`: live, generation, class, size, mappings), both atomic, at addresses that
//! never change: the table grows by whole chunks and never moves one.
//!
//! Who may change what:
//! * `obj` is written by malloc (before the handle exists), and by compaction and migration
//!   under the pool's migrate lock held for writing; readers hold it for reading.
//! * `state` changes by compare-and-swap only, so a free and a map of the same handle are
//!   ordered: either the free sees the mapping and refuses, or the map sees the object gone.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;

use crate::handle::GEN_MASK;

/// Slots per chunk.
const CHUNK: usize = 2048;
/// Chunks at most: 16 Mi slots, far more objects than any pool here holds.
const MAX_CHUNKS: usize = 8 * 1024;

/// `maps` value while the object is mapped for writing.
pub const WRITE_MAPPED: u16 = u16::MAX;

const SIZE_SHIFT: u32 = 0;
const MAPS_SHIFT: u32 = 16;
const GEN_SHIFT: u32 = 32;
const CLASS_SHIFT: u32 = 48;
const LIVE: u64 = 1 << 63;

/// A slot's state, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    /// The object is allocated.
    pub live: bool,
    /// Changes each time the slot is reused.
    pub generation: u16,
    /// Position of the object's class in the pool's table.
    pub class: u8,
    /// The object's size as the user asked for it.
    pub size: u16,
    /// Readers mapping the object, or [`WRITE_MAPPED`].
    pub maps: u16,
}

impl SlotState {
    fn pack(self) -> u64 {
        (self.size as u64) << SIZE_SHIFT
            | (self.maps as u64) << MAPS_SHIFT
            | (self.generation as u64) << GEN_SHIFT
            | (self.class as u64) << CLASS_SHIFT
            | if self.live { LIVE } else { 0 }
    }

    fn unpack(v: u64) -> SlotState {
        SlotState {
            size: (v >> SIZE_SHIFT) as u16,
            maps: (v >> MAPS_SHIFT) as u16,
            generation: (v >> GEN_SHIFT) as u16,
            class: (v >> CLASS_SHIFT) as u8,
            live: v & LIVE != 0,
        }
    }
}

/// One slot.
#[derive(Debug, Default)]
pub struct Slot {
    obj: AtomicU64,
    state: AtomicU64,
}

impl Slot {
    /// The object's encoded location. Stable while the caller holds the migrate lock (either
    /// way) or the object's class lock.
    pub fn obj(&self) -> u64 {
        self.obj.load(Ordering::Relaxed)
    }

    /// Records where the object now is: by malloc before the handle is handed out, and by
    /// compaction and migration under the migrate lock held for writing.
    pub fn set_obj(&self, obj: u64) {
        self.obj.store(obj, Ordering::Relaxed);
    }

    /// The current state.
    pub fn state(&self) -> SlotState {
        SlotState::unpack(self.state.load(Ordering::Acquire))
    }

    /// Changes the state with `f` (which sees the current state and returns the new one or
    /// refuses), atomically; returns the state `f` accepted.
    pub fn update<E>(
        &self,
        mut f: impl FnMut(SlotState) -> Result<SlotState, E>,
    ) -> Result<SlotState, E> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let old = SlotState::unpack(cur);
            let new = f(old)?.pack();
            match self
                .state
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(old),
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Types whose all-zero bit pattern is a valid value.
///
/// # Safety
/// Implementors promise exactly that.
unsafe trait Zeroable {}
// SAFETY: a null pointer is all zeros.
unsafe impl<T> Zeroable for AtomicPtr<T> {}
// SAFETY: a slot is two `AtomicU64`s; zero is the state of a never-used slot.
unsafe impl Zeroable for Slot {}

/// A boxed slice of `n` zeroed values: one zeroed allocation, not `n` writes (which matters
/// under Miri, where a table of 8192 entries built one by one costs seconds per pool).
fn zeroed_slice<T: Zeroable>(n: usize) -> Box<[T]> {
    // SAFETY: `T: Zeroable` promises that all-zero memory is a valid `T`.
    unsafe { Box::<[T]>::new_zeroed_slice(n).assume_init() }
}

/// All slots of a pool. Freed slots wait on the freeing CPU's own list (as Linux's handles
/// come from a kmem cache with per-CPU caches), so CPUs allocating in different classes never
/// meet on a slot lock.
pub struct SlotTable {
    chunks: Box<[AtomicPtr<Slot>]>,
    /// Indices handed out at least once (every index below it was, or is being, set up).
    used: AtomicUsize,
    /// Freed slots, per CPU.
    free: Box<[Mutex<Vec<u32>>]>,
    /// Serialises the allocation of a new chunk.
    grow: Mutex<()>,
}

impl SlotTable {
    /// An empty table for `cpus` CPUs.
    pub fn new(cpus: usize) -> SlotTable {
        SlotTable {
            chunks: zeroed_slice(MAX_CHUNKS),
            used: AtomicUsize::new(0),
            free: (0..cpus.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            grow: Mutex::new(()),
        }
    }

    /// The slot with this index, if it was ever handed out.
    pub fn get(&self, index: u32) -> Option<&Slot> {
        let i = index as usize;
        if i >= self.used.load(Ordering::Acquire) {
            return None;
        }
        let chunk = self.chunks[i / CHUNK].load(Ordering::Acquire);
        // SAFETY: a non-null chunk pointer was published (Release, matched by the Acquire
        // above) after the chunk, an array of CHUNK slots that lives until the table is
        // dropped, was fully built; slots are only accessed through atomics.
        (!chunk.is_null()).then(|| unsafe { &*chunk.add(i % CHUNK) })
    }

    /// Reserves a slot for a new object of `size` bytes in class `class`, on CPU `cpu`:
    /// returns its index and generation. The slot is not live until [`SlotTable::publish`].
    /// `None` when the table is full.
    pub fn reserve(&self, cpu: usize, class: u8, size: u16) -> Option<(u32, u16)> {
        let recycled = self.free[cpu % self.free.len()].lock().pop();
        let index = match recycled {
            Some(i) => i,
            None => {
                let i = self.used.fetch_add(1, Ordering::AcqRel);
                if i >= MAX_CHUNKS * CHUNK {
                    return None;
                }
                let chunk = &self.chunks[i / CHUNK];
                if chunk.load(Ordering::Acquire).is_null() {
                    let _grow = self.grow.lock();
                    if chunk.load(Ordering::Acquire).is_null() {
                        let fresh: Box<[Slot]> = zeroed_slice(CHUNK);
                        chunk.store(Box::into_raw(fresh).cast::<Slot>(), Ordering::Release);
                    }
                }
                i as u32
            }
        };
        let slot = self.get(index).expect("a reserved slot exists");
        let old = slot.state();
        // A slot never used has state 0 (a used one always had a size).
        let generation = if old == SlotState::unpack(0) {
            0
        } else {
            (old.generation + 1) & GEN_MASK
        };
        slot.state.store(
            SlotState {
                live: false,
                generation,
                class,
                size,
                maps: 0,
            }
            .pack(),
            Ordering::Release,
        );
        Some((index, generation))
    }

    /// Makes a reserved slot's object live, once its location is recorded.
    pub fn publish(&self, index: u32) {
        let slot = self.get(index).expect("a reserved slot exists");
        slot.state.fetch_or(LIVE, Ordering::Release);
    }

    /// Gives a slot back on CPU `cpu` (its object was freed, or its reservation abandoned).
    pub fn release(&self, cpu: usize, index: u32) {
        if let Some(slot) = self.get(index) {
            slot.state.fetch_and(!LIVE, Ordering::Release);
            self.free[cpu % self.free.len()].lock().push(index);
        }
    }

    /// Every slot ever handed out, with its index.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> + '_ {
        let used = self.used.load(Ordering::Acquire).min(MAX_CHUNKS * CHUNK);
        (0..used as u32).filter_map(|i| self.get(i).map(|s| (i, s)))
    }
}

impl Drop for SlotTable {
    fn drop(&mut self) {
        // Only chunks below `used` were ever allocated.
        let allocated = self
            .used
            .load(Ordering::Relaxed)
            .div_ceil(CHUNK)
            .min(MAX_CHUNKS);
        for chunk in &self.chunks[..allocated] {
            let raw = chunk.load(Ordering::Relaxed);
            if !raw.is_null() {
                // SAFETY: the chunk came from `Box::into_raw` of a `Box<[Slot]>` of CHUNK slots
                // in `reserve`, and nothing can use it once the table is being dropped.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(raw, CHUNK)) });
            }
        }
    }
}
