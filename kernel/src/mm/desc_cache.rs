//! A cache of fixed-size descriptors carved out of whole frames (a slab in miniature), for
//! owners whose descriptors live outside the memmap: zsmalloc's zsdesc in the memdesc layout.
//!
//! * Its frames come from the buddy allocator, never from the heap, so allocating a
//!   descriptor never recurses into an allocator that might need one; they come in aligned
//!   blocks of 16 ([`GROW_ORDER`]), which keeps them out of the way of range emptying.
//! * A block whose slots are all free goes back to the buddy allocator when the cache is
//!   asked to shrink ([`DescCache::shrink`]: zsmalloc's backend asks when a pool is dropped).
//!   A CPU may be reading a descriptor it does not own through a frame's memdesc word while
//!   the frame leaves its owner (page migration scans frames); such reads run inside
//!   [`read_foreign`], and a shrink gives its blocks back only once every such read that
//!   began before it is over (a grace period, as RCU's), so a stale reader only ever loads
//!   atomics of descriptor memory.
//! * Free slots are chained through their second word, under one lock; a free slot's first
//!   word reads 0, so a stale reader of an owner descriptor's flags (the first word of every
//!   one, `memmap::OwnerHeader`) sees no flags rather than a list link.

use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;

use super::buddy::{self, FrameBlock};
use super::memmap::FRAME_SIZE;
use crate::arch::cpu_local::{self, MAX_CPUS};

/// Per CPU, a count that is odd while the CPU is inside [`read_foreign`].
static FOREIGN_READS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Runs `f`, which reads descriptors this CPU does not own (through frames' memdesc words),
/// as one read section: no cache gives back the memory of a descriptor `f` may have reached
/// until `f` is over. Nothing `f` reads may outlive it. Interrupts are off meanwhile.
pub fn read_foreign<R>(f: impl FnOnce() -> R) -> R {
    without_interrupts(|| {
        let mine = &FOREIGN_READS[cpu_local::index()];
        if mine.load(Ordering::Relaxed) % 2 == 1 {
            // Already inside (a nested read): the outer section covers this one.
            return f();
        }
        mine.fetch_add(1, Ordering::SeqCst);
        let r = f();
        mine.fetch_add(1, Ordering::Release);
        r
    })
}

/// Waits until every read section open on any CPU now has ended (sections that begin later
/// cannot reach memory the caller already made unreachable).
fn wait_for_foreign_reads() {
    assert!(
        FOREIGN_READS[cpu_local::index()].load(Ordering::Relaxed) % 2 == 0,
        "a cache shrinks outside read sections (it would wait for itself)"
    );
    for count in &FOREIGN_READS {
        let seen = count.load(Ordering::SeqCst);
        if seen % 2 == 1 {
            while count.load(Ordering::Acquire) == seen {
                core::hint::spin_loop();
            }
        }
    }
}

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

/// A block of frames the cache holds: its direct-map address, first frame and order.
#[derive(Clone, Copy)]
struct Block {
    addr: u64,
    pfn: u64,
    order: usize,
}

struct Inner {
    /// Address of the first free slot, 0 if none.
    free: u64,
    in_use: u64,
    frames: u64,
    /// The blocks, by address.
    blocks: Vec<Block>,
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
                blocks: Vec::new(),
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
                // Room to list the block first (the heap may be out of frames too: then no
                // slot, and the block goes back as it is dropped).
                inner.blocks.try_reserve(1).ok()?;
                let (base, frames) = (block.addr(), 1u64 << block.order());
                let (pfn, order) = block.into_raw();
                let at = inner.blocks.partition_point(|b| b.addr < base);
                inner.blocks.insert(
                    at,
                    Block {
                        addr: base,
                        pfn,
                        order,
                    },
                );
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

    /// Gives back to the buddy allocator every block whose slots are all free, once no CPU
    /// may still be reading a descriptor in one ([`read_foreign`]). Returns frames given
    /// back.
    pub fn shrink(&self) -> u64 {
        without_interrupts(|| {
            let mut inner = self.inner.lock();
            let per_frame = FRAME_SIZE / self.slot;
            // Free slots per block (blocks are listed by address; a slot lies in the last
            // block that starts at or below it).
            let mut free_in = alloc::vec![0u64; inner.blocks.len()];
            let block_of = |blocks: &[Block], at: u64| blocks.partition_point(|b| b.addr <= at) - 1;
            let mut at = inner.free;
            while at != 0 {
                free_in[block_of(&inner.blocks, at)] += 1;
                at = Self::link(at).load(Ordering::Relaxed);
            }
            let empty: Vec<bool> = inner
                .blocks
                .iter()
                .zip(&free_in)
                .map(|(b, &n)| n == per_frame << b.order)
                .collect();
            if !empty.contains(&true) {
                return 0;
            }
            // Unchain the empty blocks' slots, keeping the others in their order.
            let (mut head, mut tail) = (0u64, 0u64);
            let mut at = inner.free;
            while at != 0 {
                let next = Self::link(at).load(Ordering::Relaxed);
                if !empty[block_of(&inner.blocks, at)] {
                    if tail == 0 {
                        head = at;
                    } else {
                        Self::link(tail).store(at, Ordering::Relaxed);
                    }
                    tail = at;
                }
                at = next;
            }
            if tail != 0 {
                Self::link(tail).store(0, Ordering::Relaxed);
            }
            inner.free = head;
            let mut given: Vec<Block> = Vec::new();
            let mut keep = Vec::with_capacity(inner.blocks.len());
            for (b, gone) in inner.blocks.iter().zip(&empty) {
                if *gone { given.push(*b) } else { keep.push(*b) }
            }
            inner.blocks = keep;
            // No slot of these blocks is reachable now (all free, none listed); a reader that
            // loaded a descriptor's address before it was freed is inside a read section.
            wait_for_foreign_reads();
            let mut frames = 0;
            for b in given {
                buddy::free_raw(b.pfn, b.order).expect("a block the cache took from the buddy");
                frames += 1 << b.order;
            }
            inner.frames -= frames;
            frames
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
        assert_eq!(cache.shrink(), grown, "until it is asked to shrink");
    }

    /// A shrink gives back exactly the blocks whose slots are all free: after freeing every
    /// slot of a cache grown to two blocks but one, the buddy allocator has its frames back
    /// but for the block still in use, and the cache hands out that block's slots and grows
    /// again as needed.
    fn shrinking_gives_back_the_empty_blocks_and_only_those() {
        let cache = DescCache::new(56);
        let per_block = (FRAME_SIZE / 56) << GROW_ORDER;
        // The test's own lists first: the heap they may grow into is not the cache's.
        let mut slots: Vec<NonNull<u8>> = Vec::with_capacity(2 * per_block as usize + 1);
        let mut again: Vec<NonNull<u8>> = Vec::with_capacity(per_block as usize);
        let before = crate::mm::buddy::stats();
        slots.extend((0..2 * per_block + 1).map(|_| cache.alloc().unwrap()));
        assert_eq!(cache.stats().frames, 3 << GROW_ORDER);
        let kept = slots[per_block as usize + 3];
        for &s in slots.iter().filter(|&&s| s != kept) {
            // SAFETY: from this cache, freed once, never used.
            unsafe { cache.free(s) };
        }
        assert_eq!(cache.shrink(), 2 << GROW_ORDER, "two blocks were empty");
        assert_eq!(cache.stats().frames, 1 << GROW_ORDER);
        assert_eq!(cache.shrink(), 0, "nothing more to give back");
        // The kept block's other slots are handed out before the cache grows.
        again.extend((0..per_block - 1).map(|_| cache.alloc().unwrap()));
        assert_eq!(cache.stats().frames, 1 << GROW_ORDER, "reused, not grown");
        let block = |s: &NonNull<u8>| s.as_ptr() as u64 & !((FRAME_SIZE << GROW_ORDER) - 1);
        assert!(again.iter().all(|s| block(s) == block(&kept)));
        for s in again.drain(..).chain([kept]) {
            // SAFETY: as above.
            unsafe { cache.free(s) };
        }
        assert_eq!(cache.shrink(), 1 << GROW_ORDER);
        assert_eq!(
            cache.stats(),
            DescCacheStats {
                in_use: 0,
                frames: 0,
                slot_bytes: 56
            }
        );
        assert_eq!(
            crate::mm::buddy::stats(),
            before,
            "the buddy allocator has every frame back"
        );
    }

    crate::ktests! {
        slots_are_distinct_reused_and_their_frames_kept,
        shrinking_gives_back_the_empty_blocks_and_only_those,
    }
}
