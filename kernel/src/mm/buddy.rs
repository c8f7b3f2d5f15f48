//! The buddy frame allocator over the memmap (orders 0 to 10, 4 KiB to 4 MiB).
//!
//! Free blocks are kept in one doubly-linked list per order, linked through their head
//! frame (pfns: in its 64-byte descriptor's `lru_next`/`lru_prev` in the wide memmap, in the
//! free frame's first two words in the memdesc memmap), so allocation and free never
//! allocate. A free block's head is marked free with its order (`FrameDesc::free_order`); an
//! allocated block's head is marked allocated; every other frame of a block defers to its
//! head. Order-0 allocation pops a list head in O(1); free merges a block with its buddy while the buddy is free and of the same order
//! (at most 10 steps). Bad frees (twice, reserved, outside memory, misaligned) are refused
//! with an error naming the pfn, before any list is touched.

use spin::Mutex;

use super::memmap::{self, FrameDesc, Memmap, NO_PFN, flags};

/// Largest block order (2^10 frames = 4 MiB).
pub const MAX_ORDER: usize = 10;
/// Number of orders.
pub const ORDERS: usize = MAX_ORDER + 1;

/// Why the frame allocator refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// No free block of the requested order (or larger) remains.
    OutOfMemory {
        /// The order that was asked for.
        order: usize,
    },
    /// The order is above [`MAX_ORDER`].
    BadOrder(usize),
    /// The pfn is outside the memmap.
    OutOfRange(u64),
    /// The frame is reserved (firmware, kernel, memmap, ...), never the allocator's.
    Reserved(u64),
    /// The frame is already free.
    DoubleFree(u64),
    /// Another range is being emptied.
    RangeBusy,
    /// The frame is in use.
    NotFree(u64),
    /// The pfn is not aligned to the block order being freed.
    Misaligned {
        /// The pfn.
        pfn: u64,
        /// The order.
        order: usize,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::OutOfMemory { order } => {
                write!(f, "out of memory (no free block of order {order})")
            }
            FrameError::BadOrder(o) => write!(f, "order {o} is above the maximum {MAX_ORDER}"),
            FrameError::OutOfRange(p) => write!(f, "pfn {p:#x} is outside physical memory"),
            FrameError::Reserved(p) => write!(f, "pfn {p:#x} is reserved, not allocator memory"),
            FrameError::DoubleFree(p) => write!(f, "pfn {p:#x} is already free (double free)"),
            FrameError::RangeBusy => write!(f, "another range is being emptied"),
            FrameError::NotFree(p) => write!(f, "pfn {p:#x} is in use"),
            FrameError::Misaligned { pfn, order } => {
                write!(f, "pfn {pfn:#x} is not aligned to order {order}")
            }
        }
    }
}

/// Counters of the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuddyStats {
    /// Free blocks per order.
    pub free_blocks: [u64; ORDERS],
    /// Free frames in total.
    pub free_frames: u64,
    /// Frames handed out and not yet freed.
    pub allocated_frames: u64,
}

/// The allocator's state: list heads per order, and counters.
pub struct Buddy {
    heads: [u64; ORDERS],
    stats: BuddyStats,
    memmap: &'static Memmap,
    /// A range `[start, end)` being emptied: its free frames are held back, marked
    /// `ISOLATED`, instead of sitting on the free lists.
    isolated: Option<(u64, u64)>,
}

impl Buddy {
    fn desc(&self, pfn: u64) -> FrameDesc {
        self.memmap
            .desc(pfn)
            .expect("buddy lists only hold pfns inside the memmap")
    }

    fn push(&mut self, pfn: u64, order: usize) {
        let d = self.desc(pfn);
        let head = self.heads[order];
        d.set_list_prev(NO_PFN);
        d.set_list_next(head);
        if head != NO_PFN {
            self.desc(head).set_list_prev(pfn);
        }
        self.heads[order] = pfn;
        d.set_free_head(order);
        self.stats.free_blocks[order] += 1;
        self.stats.free_frames += 1 << order;
    }

    fn unlink(&mut self, pfn: u64, order: usize) {
        let d = self.desc(pfn);
        let (prev, next) = (d.list_prev(), d.list_next());
        if prev == NO_PFN {
            self.heads[order] = next;
        } else {
            self.desc(prev).set_list_next(next);
        }
        if next != NO_PFN {
            self.desc(next).set_list_prev(prev);
        }
        d.clear_list_links();
        d.set_tail();
        self.stats.free_blocks[order] -= 1;
        self.stats.free_frames -= 1 << order;
    }

    /// Allocates a block of 2^`order` frames; returns its first pfn.
    pub fn alloc(&mut self, order: usize) -> Result<u64, FrameError> {
        if order > MAX_ORDER {
            return Err(FrameError::BadOrder(order));
        }
        let from = (order..ORDERS)
            .find(|&o| self.heads[o] != NO_PFN)
            .ok_or(FrameError::OutOfMemory { order })?;
        let pfn = self.heads[from];
        self.unlink(pfn, from);
        // LAB 1: BEGIN hand out a block of the order asked for from the larger block taken off the lists, and give the rest back to the free lists
        for o in (order..from).rev() {
            self.push(pfn + (1 << o), o);
        }
        // LAB 1: STUB
        // // Until you split, the rest of the block goes back frame by frame, never merged.
        // for f in pfn + (1 << order)..pfn + (1 << from) {
        //     self.push(f, 0);
        // }
        // LAB 1: END
        self.desc(pfn).set_allocated();
        self.stats.allocated_frames += 1 << order;
        Ok(pfn)
    }

    /// Checks that `pfn` can be freed as a block of `order`, without changing anything.
    fn check_free(&self, pfn: u64, order: usize) -> Result<(), FrameError> {
        if order > MAX_ORDER {
            return Err(FrameError::BadOrder(order));
        }
        // LAB 1: BEGIN refuse, before anything changes, every other free the allocator cannot trust: each with the FrameError that names what is wrong
        let end = pfn
            .checked_add(1 << order)
            .ok_or(FrameError::OutOfRange(pfn))?;
        if end > self.memmap.frames() {
            return Err(FrameError::OutOfRange(pfn));
        }
        let d = self.desc(pfn);
        if d.has(flags::RESERVED) {
            return Err(FrameError::Reserved(pfn));
        }
        if pfn & ((1 << order) - 1) != 0 {
            return Err(FrameError::Misaligned { pfn, order });
        }
        if !d.is_allocated() {
            return Err(FrameError::DoubleFree(pfn));
        }
        Ok(())
        // LAB 1: STUB
        // // Until you check, every free is trusted.
        // let _ = (pfn, order);
        // Ok(())
        // LAB 1: END
    }

    /// Frees the block of 2^`order` frames at `pfn`, merging it with free buddies.
    pub fn free(&mut self, pfn: u64, order: usize) -> Result<(), FrameError> {
        self.check_free(pfn, order)?;
        self.desc(pfn).reset_on_free();
        self.stats.allocated_frames -= 1 << order;
        // LAB 1: BEGIN give the block back: onto the free lists, merged; but a frame inside the range being emptied is held back instead
        match self.isolated {
            Some((start, end)) if pfn < end && pfn + (1 << order) > start => {
                // Frames of the range being emptied are held back; the rest go back singly.
                for f in pfn..pfn + (1 << order) {
                    if (start..end).contains(&f) {
                        self.hold_isolated(f);
                    } else {
                        self.insert_merging(f, 0);
                    }
                }
            }
            _ => self.insert_merging(pfn, order),
        }
        // LAB 1: STUB
        // // Until you hold frames back, no range is ever isolated: the block goes back whole.
        // self.insert_merging(pfn, order);
        // LAB 1: END
        Ok(())
    }

    fn hold_isolated(&mut self, pfn: u64) {
        self.desc(pfn).set_isolated();
    }

    /// The free block that contains `pfn`, as (first pfn, order), if `pfn` is free.
    pub fn free_block_containing(&self, pfn: u64) -> Option<(u64, usize)> {
        // LAB 1: BEGIN find the free block pfn lies in, if it lies in one: its head and order
        (0..ORDERS).find_map(|order| {
            let head = pfn & !((1u64 << order) - 1);
            (self.memmap.desc(head)?.free_order() == Some(order)).then_some((head, order))
        })
        // LAB 1: STUB
        // // Until you look, no frame is in a free block.
        // let _ = pfn;
        // None
        // LAB 1: END
    }

    /// Starts emptying `[start, end)`: takes every free frame of the range off the free lists
    /// (splitting blocks that straddle its edges) and holds it back, and from now on holds
    /// back every frame of the range that is freed, so that nothing allocates from it while
    /// its pages are migrated out. One range at a time.
    pub fn isolate_range(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        // LAB 1: BEGIN start emptying [start, end): refuse a bad or second range, then hold back every free frame of it, splitting the free blocks that reach outside it
        if end > self.memmap.frames() || start >= end {
            return Err(FrameError::OutOfRange(start));
        }
        if self.isolated.is_some() {
            return Err(FrameError::RangeBusy);
        }
        self.isolated = Some((start, end));
        let mut pfn = start;
        while pfn < end {
            match self.free_block_containing(pfn) {
                Some((head, order)) => {
                    self.unlink(head, order);
                    for f in head..head + (1 << order) {
                        if (start..end).contains(&f) {
                            self.hold_isolated(f);
                        } else {
                            self.insert_merging(f, 0);
                        }
                    }
                    pfn = head + (1 << order);
                }
                None => pfn += 1,
            }
        }
        Ok(())
        // LAB 1: STUB
        // // Until you hold frames back, a range cannot be emptied.
        // let _ = (start, end);
        // Err(FrameError::RangeBusy)
        // LAB 1: END
    }

    /// True if every frame of `[start, end)` is free and held back by the isolation.
    pub fn range_is_empty(&self, start: u64, end: u64) -> bool {
        // LAB 1: BEGIN whether every frame of the range is held back
        (start..end).all(|f| self.desc(f).has(flags::ISOLATED))
        // LAB 1: STUB
        // let _ = (start, end);
        // false
        // LAB 1: END
    }

    /// Ends the isolation: the held-back frames go back to the free lists.
    pub fn end_isolation(&mut self) {
        // LAB 1: BEGIN end the isolation: every frame held back goes back to the free lists, merged
        if let Some((start, end)) = self.isolated.take() {
            for f in start..end {
                let d = self.desc(f);
                if d.has(flags::ISOLATED) {
                    d.set_tail();
                    self.insert_merging(f, 0);
                }
            }
        }
        // LAB 1: STUB
        // // Until a range can be isolated, there is nothing to end.
        // LAB 1: END
    }

    /// Ends the isolation of an emptied range by allocating it whole: the block of
    /// 2^`order` frames at `start`, which must be the isolated range and all held back.
    pub fn take_isolated(&mut self, start: u64, order: usize) -> Result<u64, FrameError> {
        // LAB 1: BEGIN take the emptied range as one allocated block (the isolated range must be exactly this block, every frame of it held back), ending the isolation
        let end = start + (1 << order);
        if self.isolated != Some((start, end)) {
            return Err(FrameError::OutOfRange(start));
        }
        if let Some(busy) = (start..end).find(|&f| !self.desc(f).has(flags::ISOLATED)) {
            return Err(FrameError::NotFree(busy));
        }
        for f in start..end {
            self.desc(f).set_tail();
        }
        self.isolated = None;
        self.desc(start).set_allocated();
        self.stats.allocated_frames += 1 << order;
        Ok(start)
        // LAB 1: STUB
        // let _ = (start, order);
        // Err(FrameError::RangeBusy)
        // LAB 1: END
    }

    /// Puts a free block on the free lists, merged with its free buddies first.
    fn insert_merging(&mut self, pfn: u64, order: usize) {
        let (pfn, order) = self.merge_with_buddies(pfn, order);
        self.push(pfn, order);
    }

    /// Merges the free block of `order` at `pfn` with its buddy while the buddy is free and
    /// of the same order (taking the buddy off its list); returns the merged block.
    fn merge_with_buddies(&mut self, pfn: u64, order: usize) -> (u64, usize) {
        // LAB 1: BEGIN merge the freed block with its free buddies, as far up as they go; return the block that results
        let (mut pfn, mut order) = (pfn, order);
        while order < MAX_ORDER {
            let buddy = pfn ^ (1 << order);
            let Some(bd) = self.memmap.desc(buddy) else {
                break;
            };
            if bd.free_order() != Some(order) {
                break;
            }
            self.unlink(buddy, order);
            pfn = pfn.min(buddy);
            order += 1;
        }
        (pfn, order)
        // LAB 1: STUB
        // // Until you merge, the block goes back as it is.
        // (pfn, order)
        // LAB 1: END
    }

    /// Hands the frames `[start, end)` to the allocator at boot (they were reserved).
    fn add_range(&mut self, start: u64, end: u64) {
        let mut pfn = start;
        while pfn < end {
            // The largest block that is aligned at `pfn` and fits before `end`.
            let align = if pfn == 0 {
                MAX_ORDER
            } else {
                (pfn.trailing_zeros() as usize).min(MAX_ORDER)
            };
            let order = (0..=align)
                .rev()
                .find(|&o| pfn + (1 << o) <= end)
                .unwrap_or(0);
            for f in pfn..pfn + (1 << order) {
                self.desc(f).set_tail();
            }
            self.insert_merging(pfn, order);
            pfn += 1 << order;
        }
    }

    /// The counters.
    pub fn stats(&self) -> BuddyStats {
        self.stats
    }
}

static BUDDY: Mutex<Option<Buddy>> = Mutex::new(None);

/// Builds the allocator from the memmap and the bootloader's usable regions; returns the
/// number of frames it manages (every other frame stays reserved).
pub fn init(regions: &bootloader_api::info::MemoryRegions) -> u64 {
    let mut buddy = Buddy {
        heads: [NO_PFN; ORDERS],
        stats: BuddyStats::default(),
        memmap: memmap::get(),
        isolated: None,
    };
    for (start, end) in memmap::usable_ranges(regions) {
        buddy.add_range(start, end);
    }
    let managed = buddy.stats.free_frames;
    *BUDDY.lock() = Some(buddy);
    managed
}

/// Runs `f` with the allocator locked (interrupts masked, so no handler can deadlock on it).
pub fn with<R>(f: impl FnOnce(&mut Buddy) -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut guard = BUDDY.lock();
        f(guard
            .as_mut()
            .expect("frame allocator is initialised at boot"))
    })
}

/// The allocator's counters.
pub fn stats() -> BuddyStats {
    with(|b| b.stats())
}

/// An owned block of 2^order physical frames; freed when dropped.
#[must_use = "dropping a FrameBlock frees its frames"]
#[derive(Debug)]
pub struct FrameBlock {
    pfn: u64,
    order: usize,
}

impl FrameBlock {
    /// Allocates a block of 2^`order` frames.
    pub fn alloc(order: usize) -> Result<FrameBlock, FrameError> {
        with(|b| b.alloc(order)).map(|pfn| FrameBlock { pfn, order })
    }

    /// Allocates one frame.
    pub fn alloc_frame() -> Result<FrameBlock, FrameError> {
        Self::alloc(0)
    }

    /// First frame of the block.
    pub fn pfn(&self) -> u64 {
        self.pfn
    }

    /// Order of the block.
    pub fn order(&self) -> usize {
        self.order
    }

    /// Virtual address of the block in the direct map.
    pub fn addr(&self) -> u64 {
        memmap::get().frame_addr(self.pfn)
    }

    /// Takes ownership of an allocated block (from [`FrameBlock::into_raw`] or
    /// `Buddy::take_isolated`).
    ///
    /// # Safety
    /// The block is allocated and nobody else owns it (it will be freed when this drops).
    pub unsafe fn from_raw(pfn: u64, order: usize) -> FrameBlock {
        FrameBlock { pfn, order }
    }

    /// Gives up ownership without freeing; the frames stay allocated until [`free_raw`].
    pub fn into_raw(self) -> (u64, usize) {
        let raw = (self.pfn, self.order);
        core::mem::forget(self);
        raw
    }
}

impl Drop for FrameBlock {
    fn drop(&mut self) {
        // A FrameBlock always owns an allocated, aligned block, so this cannot fail.
        with(|b| b.free(self.pfn, self.order)).expect("a FrameBlock frees a block it owns");
    }
}

/// Frees a block given up with [`FrameBlock::into_raw`] (or any pfn a caller claims to own):
/// a bad pfn is refused with an error, and nothing changes.
pub fn free_raw(pfn: u64, order: usize) -> Result<(), FrameError> {
    with(|b| b.free(pfn, order))
}

/// Lets the `x86_64` crate's mapper take page-table frames from the buddy allocator.
pub struct PageTableFrames;

// SAFETY: every frame returned comes from the buddy allocator, which hands out each free
// frame once; it is marked PAGE_TABLE and never freed (page tables live forever here).
unsafe impl x86_64::structures::paging::FrameAllocator<x86_64::structures::paging::Size4KiB>
    for PageTableFrames
{
    fn allocate_frame(&mut self) -> Option<x86_64::structures::paging::PhysFrame> {
        let (pfn, _) = FrameBlock::alloc_frame().ok()?.into_raw();
        memmap::get()
            .desc(pfn)?
            .set(flags::PAGE_TABLE)
            .expect("a frame fresh from the buddy allocator is a plain allocated one");
        Some(x86_64::structures::paging::PhysFrame::containing_address(
            x86_64::PhysAddr::new(pfn * memmap::FRAME_SIZE),
        ))
    }
}
