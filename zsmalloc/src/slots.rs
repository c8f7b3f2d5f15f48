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
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;

use crate::handle::{GEN_MASK, MAX_SLOT};

/// Slots per chunk.
const CHUNK: usize = 2048;
/// Chunks at most: 16 Mi slots (every index a handle's 24 bits can name), far more objects
/// than any pool here holds.
const MAX_CHUNKS: usize = 8 * 1024;
/// Slots the table can hold.
const MAX_SLOTS: usize = MAX_CHUNKS * CHUNK;
const _: () = assert!(MAX_SLOTS - 1 == MAX_SLOT as usize);

/// A freed slot waits behind this many slots freed after it on its CPU before it is reused
/// (first in, first out), so a stale handle meets a new generation of its slot only after
/// more than `QUARANTINE` × 2^20 frees.
pub const QUARANTINE: usize = 64;
/// A CPU keeps at most this many freed slots; beyond, its oldest [`BATCH`] go to the shared
/// list, where a CPU that allocates more than it frees takes them from (a producer on one
/// CPU and a consumer on another then reuse the same slots instead of growing the table).
const CPU_KEEP: usize = QUARANTINE + 2 * BATCH;
/// Slots moved at once between a CPU's list and the shared list.
const BATCH: usize = 128;

/// `maps` value while the object is mapped for writing.
pub const WRITE_MAPPED: u16 = u16::MAX;

const SIZE_SHIFT: u32 = 0;
const MAPS_SHIFT: u32 = 16;
const GEN_SHIFT: u32 = 32;
const CLASS_SHIFT: u32 = 52;
const LIVE: u64 = 1 << 63;

/// A slot's state, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    /// The object is allocated.
    pub live: bool,
    /// Changes each time the slot is reused (20 bits).
    pub generation: u32,
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
            | ((self.generation & GEN_MASK) as u64) << GEN_SHIFT
            | (self.class as u64) << CLASS_SHIFT
            | if self.live { LIVE } else { 0 }
    }

    fn unpack(v: u64) -> SlotState {
        SlotState {
            size: (v >> SIZE_SHIFT) as u16,
            maps: (v >> MAPS_SHIFT) as u16,
            generation: (v >> GEN_SHIFT) as u32 & GEN_MASK,
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
/// meet on a slot lock; a CPU's surplus goes to a shared list that CPUs short of slots take
/// from, so slots freed on one CPU serve allocations on another.
pub struct SlotTable {
    chunks: Box<[AtomicPtr<Slot>]>,
    /// Indices handed out at least once (every index below it was, or is being, set up);
    /// never above `MAX_SLOTS`.
    used: AtomicUsize,
    /// Freed slots, per CPU, oldest first.
    free: Box<[Mutex<VecDeque<u32>>]>,
    /// Batches of freed slots that CPUs gave up, oldest slots first in each batch.
    shared: Mutex<Vec<Vec<u32>>>,
    /// Slots a freed slot waits behind before reuse ([`QUARANTINE`]; 0 in some tests).
    quarantine: usize,
    /// Serialises the allocation of a new chunk.
    grow: Mutex<()>,
}

impl SlotTable {
    /// An empty table for `cpus` CPUs.
    pub fn new(cpus: usize) -> SlotTable {
        SlotTable::with_quarantine(cpus, QUARANTINE)
    }

    /// An empty table whose freed slots wait behind `quarantine` others before reuse.
    pub fn with_quarantine(cpus: usize, quarantine: usize) -> SlotTable {
        SlotTable {
            chunks: zeroed_slice(MAX_CHUNKS),
            used: AtomicUsize::new(0),
            free: (0..cpus.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            shared: Mutex::new(Vec::new()),
            quarantine,
            grow: Mutex::new(()),
        }
    }

    /// The slot with this index, if it was ever handed out (any other index, forged ones
    /// included, gives `None`).
    pub fn get(&self, index: u32) -> Option<&Slot> {
        let i = index as usize;
        if i >= self.used.load(Ordering::Acquire).min(MAX_SLOTS) {
            return None;
        }
        let chunk = self.chunks[i / CHUNK].load(Ordering::Acquire);
        // SAFETY: a non-null chunk pointer was published (Release, matched by the Acquire
        // above) after the chunk, an array of CHUNK slots that lives until the table is
        // dropped, was fully built; slots are only accessed through atomics.
        (!chunk.is_null()).then(|| unsafe { &*chunk.add(i % CHUNK) })
    }

    /// Slot indices handed out so far: what the table has grown to.
    pub fn grown(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// A freed slot past its quarantine on CPU `cpu`'s list, refilled from the shared list
    /// if the CPU has none.
    fn recycle(&self, cpu: usize) -> Option<u32> {
        // LAB 5: BEGIN the oldest slot freed on this CPU once it has waited behind `quarantine` others, after refilling from the shared list if this CPU has too few
        let mut mine = self.free[cpu % self.free.len()].lock();
        if mine.len() <= self.quarantine
            && let Some(batch) = self.shared.lock().pop()
        {
            // A shared batch waited its quarantine on the CPU that gave it up: its slots are
            // older than any of this CPU's, so they go first.
            for &index in batch.iter().rev() {
                mine.push_front(index);
            }
        }
        if mine.len() > self.quarantine {
            mine.pop_front()
        } else {
            None
        }
        // LAB 5: STUB
        // // Until you recycle slots, every object gets a never-used one.
        // let _ = (cpu, &self.free, &self.shared, self.quarantine);
        // None
        // LAB 5: END
    }

    /// A never-used index, if the table is not full (it never counts past full).
    fn fresh_index(&self) -> Option<u32> {
        let i = self
            .used
            .try_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < MAX_SLOTS).then_some(u + 1)
            })
            .ok()?;
        let chunk = &self.chunks[i / CHUNK];
        if chunk.load(Ordering::Acquire).is_null() {
            let _grow = self.grow.lock();
            if chunk.load(Ordering::Acquire).is_null() {
                let fresh: Box<[Slot]> = zeroed_slice(CHUNK);
                chunk.store(Box::into_raw(fresh).cast::<Slot>(), Ordering::Release);
            }
        }
        Some(i as u32)
    }

    /// Reserves a slot for a new object of `size` bytes in class `class`, on CPU `cpu`:
    /// returns its index and generation. The slot is not live until [`SlotTable::publish`].
    /// `None` when the table is full.
    pub fn reserve(&self, cpu: usize, class: u8, size: u16) -> Option<(u32, u32)> {
        let index = match self.recycle(cpu) {
            Some(i) => i,
            None => self.fresh_index()?,
        };
        let slot = self.get(index).expect("a reserved slot exists");
        let old = slot.state();
        // LAB 5: BEGIN the generation of the slot's new life: a never-used slot starts at 0, a reused one moves on (wrapping at GEN_MASK)
        // A slot never used has state 0 (a used one always had a size).
        let generation = if old == SlotState::unpack(0) {
            0
        } else {
            (old.generation + 1) & GEN_MASK
        };
        // LAB 5: STUB
        // // Until you count lives, every life is the first.
        // let _ = (old, GEN_MASK);
        // let generation = 0;
        // LAB 5: END
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

    /// Gives a slot back on CPU `cpu` (its object was freed, or its reservation abandoned). It
    /// joins the end of the CPU's list; a CPU holding more than it needs passes its oldest
    /// slots to the shared list.
    pub fn release(&self, cpu: usize, index: u32) {
        if let Some(slot) = self.get(index) {
            slot.state.fetch_and(!LIVE, Ordering::Release);
            // LAB 5: BEGIN queue the slot on this CPU's list for reuse; a CPU that holds more than it needs gives its oldest batch to the shared list
            let mut mine = self.free[cpu % self.free.len()].lock();
            mine.push_back(index);
            if mine.len() > CPU_KEEP {
                let batch: Vec<u32> = mine.drain(..BATCH).collect();
                drop(mine);
                self.shared.lock().push(batch);
            }
            // LAB 5: STUB
            // // Until you queue them, freed slots are never used again.
            // let _ = (cpu, CPU_KEEP, BATCH);
            // LAB 5: END
        }
    }

    /// Every slot ever handed out, with its index.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> + '_ {
        let used = self.used.load(Ordering::Acquire).min(MAX_SLOTS);
        (0..used as u32).filter_map(|i| self.get(i).map(|s| (i, s)))
    }
}

impl Drop for SlotTable {
    fn drop(&mut self) {
        // Only chunks below `used` were ever allocated.
        let allocated = self
            .used
            .load(Ordering::Relaxed)
            .min(MAX_SLOTS)
            .div_ceil(CHUNK);
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

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    /// One object's life on a table: reserve on `on`, publish, release on `off`.
    fn cycle(t: &SlotTable, on: usize, off: usize) -> (u32, u32) {
        let (index, generation) = t.reserve(on, 3, 100).expect("the table has room");
        t.publish(index);
        t.release(off, index);
        (index, generation)
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of operations: natively only")]
    fn a_producer_on_one_cpu_and_a_consumer_on_another_run_in_bounded_slots() {
        let t = SlotTable::new(2);
        for _ in 0..2_000_000 {
            cycle(&t, 0, 1);
        }
        // Without the shared list, every allocation on CPU 0 would take a fresh slot.
        let bound = QUARANTINE + CPU_KEEP + 2 * BATCH;
        assert!(t.grown() <= bound, "the table grew to {} slots", t.grown());
    }

    #[test]
    #[cfg_attr(miri, ignore = "a million operations on two threads: natively only")]
    fn cpus_on_two_threads_handing_objects_over_run_in_bounded_slots() {
        let t = SlotTable::new(2);
        let (tx, rx) = std::sync::mpsc::sync_channel::<u32>(1024);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..1_000_000 {
                    let (index, _) = t.reserve(0, 1, 64).expect("the table has room");
                    t.publish(index);
                    tx.send(index).unwrap();
                }
                drop(tx);
            });
            s.spawn(|| {
                for index in rx {
                    t.release(1, index);
                }
            });
        });
        // Live at once: at most the channel's 1024 plus one each side.
        let bound = 1024 + 2 + QUARANTINE + CPU_KEEP + 2 * BATCH;
        assert!(t.grown() <= bound, "the table grew to {} slots", t.grown());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn a_freed_slot_waits_behind_the_quarantine_before_reuse() {
        let t = SlotTable::new(1);
        let (first, _) = cycle(&t, 0, 0);
        let mut others = 0;
        loop {
            let (index, generation) = cycle(&t, 0, 0);
            if index == first {
                assert_eq!(generation, 1);
                break;
            }
            others += 1;
        }
        assert_eq!(others, QUARANTINE, "reused after exactly the quarantine");
    }

    #[test]
    #[cfg_attr(miri, ignore = "a million operations: natively only")]
    fn generations_do_not_repeat_within_a_million_reuses_of_one_slot() {
        // No quarantine: the same slot every time.
        let t = SlotTable::with_quarantine(1, 0);
        let (index, first) = cycle(&t, 0, 0);
        for reuse in 1..=(GEN_MASK as u64 + 1) {
            let (i, generation) = cycle(&t, 0, 0);
            assert_eq!(i, index);
            if reuse < GEN_MASK as u64 + 1 {
                assert_ne!(
                    generation, first,
                    "reuse {reuse} repeats the first generation"
                );
            } else {
                assert_eq!(generation, first, "the generation wraps after 2^20 reuses");
            }
        }
        const { assert!(GEN_MASK >= 1_000_000) };
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn indices_never_handed_out_name_no_slot() {
        let t = SlotTable::new(1);
        assert!(t.get(0).is_none());
        let (index, _) = cycle(&t, 0, 0);
        assert!(t.get(index).is_some());
        for forged in [index + 1, MAX_SLOT, MAX_SLOT + 1, u32::MAX] {
            assert!(t.get(forged).is_none(), "{forged}");
        }
    }
}
