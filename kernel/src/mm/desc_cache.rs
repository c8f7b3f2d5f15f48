//! A cache of fixed-size descriptors carved out of whole frames (a slab in miniature), for
//! owners whose descriptors live outside the memmap: zsmalloc's zsdesc in the memdesc layout.
//!
//! * Its frames come from the buddy allocator, never from the heap, so allocating a
//!   descriptor never recurses into an allocator that might need one; they come in aligned
//!   blocks of 16 ([`GROW_ORDER`]), which keeps them out of the way of range emptying.
//! * Its frames are never given back: memory that once held a descriptor holds descriptors for
//!   the kernel's life (type-stable memory, as Linux's `SLAB_TYPESAFE_BY_RCU` caches), so a
//!   stale pointer read through a memmap word still reaches atomics of some descriptor, never
//!   unmapped or foreign memory.
//! * Free slots are chained through their second word, under one lock; a free slot's first
//!   word reads 0, so a stale reader of an owner descriptor's flags (the first word of every
//!   one, `memmap::OwnerHeader`) sees no flags rather than a list link.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::buddy::FrameBlock;
use super::memmap::FRAME_SIZE;

/// The cache grows by an aligned block of 2^`GROW_ORDER` frames (64 KiB): its frames are
/// unmovable, and taken one at a time they landed among zsmalloc's movable pages, one in
/// every range that range emptying then had to refuse (Linux keeps unmovable allocations in
/// pageblocks of their own for the same reason). Measured with single frames: 41 to 57
/// ranges refused in a 10-million-operation soak, against 8 to 34 in the wide memmap.
pub const GROW_ORDER: usize = 4;

/// What a cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DescCacheStats {
    /// Descriptors handed out and not given back.
    pub in_use: u64,
    /// Frames the cache has taken from the buddy allocator.
    pub frames: u64,
    /// Bytes of one descriptor slot.
    pub slot_bytes: u64,
}

struct Inner {
    /// Address of the first free slot, 0 if none.
    free: u64,
    in_use: u64,
    frames: u64,
}

/// A cache of `slot`-byte descriptors.
pub struct DescCache {
    slot: u64,
    inner: Mutex<Inner>,
}

impl DescCache {
    /// A cache of slots of `slot` bytes (rounded up to 8, the alignment every slot gets).
    pub const fn new(slot: usize) -> DescCache {
        let slot = (slot as u64).next_multiple_of(8);
        assert!(slot >= 16 && slot <= FRAME_SIZE);
        DescCache {
            slot,
            inner: Mutex::new(Inner {
                free: 0,
                in_use: 0,
                frames: 0,
            }),
        }
    }

    /// An uninitialised, 8-byte aligned slot; `None` if no frame is left to grow into.
    pub fn alloc(&self) -> Option<NonNull<u8>> {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut inner = self.inner.lock();
            if inner.free == 0 {
                // An aligned block if there is one, else any frame.
                let block = FrameBlock::alloc(GROW_ORDER)
                    .or_else(|_| FrameBlock::alloc_frame())
                    .ok()?;
                let (base, frames) = (block.addr(), 1u64 << block.order());
                // The frames are the cache's for good (see the module comment).
                let _ = block.into_raw();
                inner.frames += frames;
                // Pushed from the top, so slots go out in address order.
                let per_frame = FRAME_SIZE / self.slot;
                for f in (0..frames).rev() {
                    for i in (0..per_frame).rev() {
                        let at = base + f * FRAME_SIZE + i * self.slot;
                        Self::link(at).store(inner.free, Ordering::Relaxed);
                        inner.free = at;
                    }
                }
            }
            let at = inner.free;
            inner.free = Self::link(at).load(Ordering::Relaxed);
            Self::link(at).store(0, Ordering::Relaxed);
            inner.in_use += 1;
            NonNull::new(at as *mut u8)
        })
    }

    /// Gives a slot back.
    ///
    /// # Safety
    /// `slot` came from this cache's [`DescCache::alloc`], was not given back already, and
    /// nothing will use it as the descriptor it was (a stale reader may still load from it).
    pub unsafe fn free(&self, slot: NonNull<u8>) {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut inner = self.inner.lock();
            let at = slot.as_ptr() as u64;
            Self::first_word(at).store(0, Ordering::Release);
            Self::link(at).store(inner.free, Ordering::Relaxed);
            inner.free = at;
            inner.in_use -= 1;
        })
    }

    /// The second word of the slot at `at`, which chains free slots.
    fn link(at: u64) -> &'static AtomicU64 {
        Self::first_word(at + 8)
    }

    /// The word at `at`, inside a slot.
    fn first_word(at: u64) -> &'static AtomicU64 {
        // SAFETY: `at` is an 8-byte aligned word inside a slot of a frame the cache owns for
        // good, in the direct map; while the slot is free only the cache (under its lock)
        // writes it, and a stale reader of a descriptor there only ever loads atomics.
        unsafe { &*(at as *const AtomicU64) }
    }

    /// The cache's counters.
    pub fn stats(&self) -> DescCacheStats {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let inner = self.inner.lock();
            DescCacheStats {
                in_use: inner.in_use,
                frames: inner.frames,
                slot_bytes: self.slot,
            }
        })
    }
}

#[cfg(feature = "ktest")]
mod ktests {
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;

    use super::*;

    /// More slots than two frames hold: each is distinct, aligned, inside the aligned block
    /// the cache took; freed slots are reused before the cache grows, and its frames stay its
    /// own.
    fn slots_are_distinct_reused_and_their_frames_kept() {
        let cache = DescCache::new(56);
        let per_frame = FRAME_SIZE / 56;
        let n = 2 * per_frame + 1;
        let slots: Vec<NonNull<u8>> = (0..n).map(|_| cache.alloc().unwrap()).collect();
        let addrs: BTreeSet<u64> = slots.iter().map(|s| s.as_ptr() as u64).collect();
        assert_eq!(addrs.len() as u64, n, "no slot handed out twice");
        assert!(addrs.iter().all(|a| a % 8 == 0));
        let frames: BTreeSet<u64> = addrs.iter().map(|a| a & !(FRAME_SIZE - 1)).collect();
        assert_eq!(
            frames.len(),
            3,
            "slots go out in address order, frame after frame"
        );
        let grown = 1 << GROW_ORDER;
        let block = frames.first().unwrap() & !(grown * FRAME_SIZE - 1);
        assert!(
            frames
                .iter()
                .all(|f| f & !(grown * FRAME_SIZE - 1) == block),
            "the frames of one aligned block"
        );
        assert!(
            addrs.iter().all(|a| a % FRAME_SIZE + 56 <= FRAME_SIZE),
            "no slot straddles"
        );
        assert_eq!(
            cache.stats(),
            DescCacheStats {
                in_use: n,
                frames: grown,
                slot_bytes: 56
            }
        );
        for &s in &slots {
            // Stand-in for a live owner descriptor's flags.
            DescCache::first_word(s.as_ptr() as u64).store(u64::MAX, Ordering::Relaxed);
        }
        for &s in &slots {
            // SAFETY: from this cache, freed once, never used.
            unsafe { cache.free(s) };
        }
        assert!(
            slots
                .iter()
                .all(|s| DescCache::first_word(s.as_ptr() as u64).load(Ordering::Relaxed) == 0),
            "a free slot's first word (an owner's flags) reads 0, not a list link"
        );
        assert_eq!(cache.stats().in_use, 0);
        let again: Vec<NonNull<u8>> = (0..n).map(|_| cache.alloc().unwrap()).collect();
        assert!(again.iter().all(|s| addrs.contains(&(s.as_ptr() as u64))));
        assert_eq!(cache.stats().frames, grown, "reused, not grown");
        for s in again {
            // SAFETY: as above.
            unsafe { cache.free(s) };
        }
        for f in frames {
            let pfn = (f - crate::mm::memmap::get().phys_offset()) / FRAME_SIZE;
            assert!(
                crate::mm::buddy::with(|b| b.free_block_containing(pfn)).is_none(),
                "the cache keeps its frames"
            );
        }
    }

    crate::ktests! {
        slots_are_distinct_reused_and_their_frames_kept,
    }
}
