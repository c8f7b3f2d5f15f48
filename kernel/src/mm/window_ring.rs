//! The per-CPU *lazy* two-page window: a ring of two-page slots that trades the two `invlpg`s
//! of every unmap (`mm::window`) for one full TLB flush every [`SLOTS`] maps.
//!
//! Each map takes the next slot and writes its two PTEs; the unmap clears them without
//! flushing. A cleared slot may still be in this CPU's TLB, but its addresses are not used
//! again until the ring wraps, and the wrap reloads CR3 first, dropping every translation of
//! the ring (its entries are not global). After the wrap every slot's entries are not present,
//! and x86 never caches a not-present translation, so a map never needs a flush of its own.
//! As with the eager window, only this CPU touches its ring: no shootdown.
//!
//! Why: under QEMU TCG an `invlpg` with the refill after it costs about 470 cycles, a CR3
//! reload with 64 pages refilled about 20,000 (`bench speed`, 2026-11-30): spread over 255
//! maps, the flush costs about 80 cycles a map instead of about 940. The eager window stays
//! what `MapPath::Window` uses (Linux's `CONFIG_PGTABLE_MAPPING` did the eager thing);
//! `MapPath::LazyWindow` maps through this ring (`Backend::map_pair_lazy`).

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, compiler_fence};

use x86_64::instructions::tlb;
use x86_64::structures::paging::page_table::PageTableEntry;

use super::memmap::FRAME_SIZE;
use super::window::{Access, WindowError};
use crate::arch::irq::InterruptsOff;

/// Two-page slots per CPU: one leaf table (512 entries) holds the ring, whose first two pages
/// stay unmapped as a guard below slot 0.
pub const SLOTS: usize = 255;
/// Bytes of virtual space per CPU: one leaf table's reach (2 MiB).
const RING_BYTES: u64 = 512 * FRAME_SIZE;

/// Debug mode: each unmap also flushes its slot's two translations, so that a stale pointer
/// into an unmapped slot faults at once, as it does with the eager window, instead of reading
/// the old frame until the ring wraps. Off unless asked ([`set_fault_after_unmap`]): it costs
/// the two `invlpg`s the ring exists to save.
static FAULT_AFTER_UNMAP: AtomicBool = AtomicBool::new(false);

/// Turns the debug mode on or off (for every CPU's ring).
pub fn set_fault_after_unmap(on: bool) {
    FAULT_AFTER_UNMAP.store(on, Ordering::SeqCst);
}

/// The virtual region holding every CPU's ring (claimed once at boot).
static REGION_BASE: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());

/// Claims the virtual region for all rings. Call once before any CPU builds its ring.
pub fn init_region() {
    let base = super::paging::claim_l4_slot();
    REGION_BASE.store(base as *mut u8, Ordering::SeqCst);
}

/// One CPU's ring of two-page slots.
pub struct WindowRing {
    /// Address of slot 0 (2 pages above the start of this CPU's 2 MiB).
    base: u64,
    /// The first of this CPU's 512 consecutive leaf entries (one page table).
    entries: AtomicPtr<PageTableEntry>,
    /// The slot the next map takes.
    next: AtomicUsize,
    in_use: AtomicBool,
    /// Full flushes so far (for tests and the bench).
    wraps: AtomicUsize,
}

impl WindowRing {
    /// Address of slot 0 (slot `n` starts `n` x 8192 bytes above it).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Builds CPU `index`'s ring: its 2 MiB of the region and the page table behind it.
    pub fn new(index: usize) -> WindowRing {
        let region = REGION_BASE.load(Ordering::SeqCst) as u64;
        assert!(region != 0, "ring region is claimed before rings are built");
        let start = region + index as u64 * RING_BYTES;
        // One leaf table maps the whole 2 MiB-aligned block: build the path to its first
        // entry, and the other 511 are the entries after it in the same table.
        let first = super::paging::prebuild_leaf_entry(start);
        WindowRing {
            base: start + 2 * FRAME_SIZE,
            entries: AtomicPtr::new(first),
            next: AtomicUsize::new(0),
            in_use: AtomicBool::new(false),
            wraps: AtomicUsize::new(0),
        }
    }

    /// Full TLB flushes this ring has done.
    pub fn wraps(&self) -> usize {
        self.wraps.load(Ordering::Relaxed)
    }

    /// Maps frame `pfn_a` and `pfn_b` right after it at the next slot. Interrupts stay off on
    /// this CPU until the mapping is dropped. Refused if this CPU's ring is already mapped.
    /// Frames are checked as the eager window checks them.
    pub fn map(
        &self,
        pfn_a: u64,
        pfn_b: u64,
        access: Access,
    ) -> Result<RingMapping<'_>, WindowError> {
        // LAB 2: BEGIN claim this CPU's ring as the eager window is claimed, take the next slot (wrapping with one full TLB flush once every slot was used) and map the frames there
        let irq_guard = InterruptsOff::new();
        if self.in_use.swap(true, Ordering::Acquire) {
            return Err(WindowError::Busy);
        }
        let frames = match (
            super::window::Window::check_frame(pfn_a),
            super::window::Window::check_frame(pfn_b),
        ) {
            (Ok(a), Ok(b)) => [a, b],
            (Err(e), _) | (_, Err(e)) => {
                self.in_use.store(false, Ordering::Release);
                return Err(e);
            }
        };
        let mut slot = self.next.load(Ordering::Relaxed);
        if slot == SLOTS {
            // Every slot was used since the last flush: drop their translations at once.
            tlb::flush_all();
            self.wraps.fetch_add(1, Ordering::Relaxed);
            slot = 0;
        }
        self.next.store(slot + 1, Ordering::Relaxed);
        let [a, b] = frames.map(|frame| super::window::leaf_entry(frame, access));
        self.store_entry(2 + 2 * slot, a);
        self.store_entry(3 + 2 * slot, b);
        compiler_fence(Ordering::SeqCst);
        Ok(RingMapping {
            ring: self,
            slot,
            _irq: irq_guard,
            _not_send: PhantomData,
        })
        // LAB 2: STUB
        // // Until you claim it, the ring is always busy.
        // let _ = (pfn_a, pfn_b, access, InterruptsOff::new, tlb::flush_all, Self::store_entry);
        // let _ = (&self.next, &self.wraps, SLOTS);
        // Err(WindowError::Busy)
        // LAB 2: END
    }

    /// Sets leaf entry `n` (0..512) of this CPU's ring table with one volatile store. Only on
    /// this ring's CPU, with interrupts off and the ring held.
    fn store_entry(&self, n: usize, value: u64) {
        debug_assert!(n < 512);
        let entries = self.entries.load(Ordering::Relaxed).cast::<u64>();
        // SAFETY: the ring's 512 entries are one page table that lives as long as the kernel
        // (built by `prebuild_leaf_entry` for this CPU's 2 MiB-aligned block); `n` < 512, so
        // the entry is inside it, and not null; only this CPU writes them, with interrupts off
        // and the ring held.
        let entry = unsafe { core::ptr::NonNull::new_unchecked(entries.add(n)) };
        // SAFETY: as above: an 8-aligned entry of a live page table that only this CPU writes.
        unsafe { volatile::VolatilePtr::new(entry) }.write(value);
    }

    fn unmap(&self, slot: usize) {
        // LAB 2: BEGIN end the mapping of `slot`: after every access through it, clear its PTEs without a flush (the module doc says why that is safe) and free the ring
        compiler_fence(Ordering::SeqCst);
        // Cleared but not flushed: see the module doc.
        self.store_entry(2 + 2 * slot, 0);
        self.store_entry(3 + 2 * slot, 0);
        self.in_use.store(false, Ordering::Release);
        // LAB 2: STUB
        // let _ = (slot, compiler_fence);
        // LAB 2: END
    }
}

/// A live ring mapping; dropping it clears the slot's entries, then lets interrupts back on.
pub struct RingMapping<'r> {
    ring: &'r WindowRing,
    slot: usize,
    // Field order matters: `Drop` unmaps first, then this restores IF.
    _irq: InterruptsOff,
    _not_send: PhantomData<*const ()>,
}

impl RingMapping<'_> {
    /// Address of the first mapped byte (the start of frame `pfn_a`).
    pub fn addr(&self) -> u64 {
        self.ring.base + self.slot as u64 * 2 * FRAME_SIZE
    }
}

impl Drop for RingMapping<'_> {
    fn drop(&mut self) {
        self.ring.unmap(self.slot);
        if FAULT_AFTER_UNMAP.load(Ordering::Relaxed) {
            // Still on this CPU with interrupts off: the translations are this CPU's alone.
            for page in [self.addr(), self.addr() + FRAME_SIZE] {
                tlb::flush(x86_64::VirtAddr::new(page));
            }
        }
    }
}
