//! The kernel heap: `linked_list_allocator::LockedHeap` as the global allocator, in its own
//! 512 GiB virtual region, backed by frames from the buddy allocator and grown on demand.
//!
//! Rule: the heap starts with [`INITIAL_BYTES`] mapped; when an allocation does not fit, the
//! heap maps more frames at its end (at least [`GROW_STEP`], and enough for the request) and
//! retries. It fails only when the frame allocator is out of frames (or the region is full),
//! and then prints why before returning null (the allocation-error path then panics).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use linked_list_allocator::LockedHeap;
use x86_64::structures::paging::PageTableFlags;

use super::buddy::FrameBlock;
use super::memmap::{self, FRAME_SIZE, flags};

/// Bytes mapped when the heap is created.
pub const INITIAL_BYTES: u64 = 1 << 20;
/// Smallest growth.
pub const GROW_STEP: u64 = 1 << 20;

/// The global allocator: a `LockedHeap` that grows.
pub struct GrowingHeap {
    heap: LockedHeap,
    start: AtomicU64,
    mapped: AtomicU64,
    limit: AtomicU64,
}

#[global_allocator]
static HEAP: GrowingHeap = GrowingHeap {
    heap: LockedHeap::empty(),
    start: AtomicU64::new(0),
    mapped: AtomicU64::new(0),
    limit: AtomicU64::new(0),
};

/// Heap figures.
#[derive(Debug, Clone, Copy)]
pub struct HeapStats {
    /// Bytes of virtual memory backed by frames.
    pub mapped: u64,
    /// Bytes in use by allocations.
    pub used: u64,
}

/// Heap figures now.
pub fn stats() -> HeapStats {
    let used =
        x86_64::instructions::interrupts::without_interrupts(|| HEAP.heap.lock().used() as u64);
    HeapStats {
        mapped: HEAP.mapped.load(Ordering::Relaxed),
        used,
    }
}

/// Creates the heap in a fresh virtual region. Call once, after paging and the buddy allocator.
pub fn init() {
    let start = super::paging::claim_l4_slot();
    HEAP.start.store(start, Ordering::Relaxed);
    HEAP.limit
        .store(super::paging::L4_SLOT_BYTES, Ordering::Relaxed);
    map_frames_at(start, INITIAL_BYTES).expect("frames for the initial heap");
    HEAP.mapped.store(INITIAL_BYTES, Ordering::Relaxed);
    x86_64::instructions::interrupts::without_interrupts(|| {
        // SAFETY: [start, start + INITIAL_BYTES) was just mapped writable for the heap alone
        // and is never used for anything else.
        unsafe {
            HEAP.heap
                .lock()
                .init(start as *mut u8, INITIAL_BYTES as usize)
        };
    });
}

/// Maps `bytes` of fresh frames in a region of its own (a newly claimed top-level slot) and
/// returns its start: room for a private heap, such as the density baseline's. The frames
/// stay mapped (and marked `HEAP`) for the rest of the boot.
pub fn map_private_region(bytes: u64) -> Result<u64, &'static str> {
    let base = super::paging::claim_l4_slot();
    map_frames_at(base, bytes)?;
    Ok(base)
}

/// Maps `bytes` of fresh frames at `at`, one frame at a time (the heap never needs
/// physically contiguous memory), marked `HEAP` (kernel memory nothing can move).
pub(super) fn map_frames_at(at: u64, bytes: u64) -> Result<(), &'static str> {
    let rw = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for page in (at..at + bytes).step_by(FRAME_SIZE as usize) {
        let frame = FrameBlock::alloc_frame().map_err(|_| "out of physical frames")?;
        let (pfn, _) = frame.into_raw();
        if let Some(d) = memmap::get().desc(pfn) {
            d.set(flags::HEAP)
                .expect("a frame fresh from the buddy allocator is a plain allocated one");
        }
        if super::paging::map_page(page, pfn, rw).is_err() {
            let _ = super::buddy::free_raw(pfn, 0);
            return Err("cannot map a page");
        }
    }
    Ok(())
}

impl GrowingHeap {
    /// Grows the heap so that `layout` can fit. Called with the heap locked.
    fn grow(
        &self,
        heap: &mut linked_list_allocator::Heap,
        layout: Layout,
    ) -> Result<(), &'static str> {
        let need = (layout.size() + layout.align()) as u64 + 64;
        let bytes = need.max(GROW_STEP).next_multiple_of(FRAME_SIZE);
        let mapped = self.mapped.load(Ordering::Relaxed);
        if mapped + bytes > self.limit.load(Ordering::Relaxed) {
            return Err("the heap's virtual region is full");
        }
        // Refuse up front rather than map frames one by one and strand them when they run out.
        if bytes / FRAME_SIZE > super::buddy::stats().free_frames {
            return Err("out of physical frames");
        }
        map_frames_at(self.start.load(Ordering::Relaxed) + mapped, bytes)?;
        self.mapped.store(mapped + bytes, Ordering::Relaxed);
        // SAFETY: the `bytes` just mapped directly follow the heap's current top.
        unsafe { heap.extend(bytes as usize) };
        Ok(())
    }
}

// SAFETY: allocation is delegated to linked_list_allocator's first-fit heap under its lock;
// growth only adds freshly mapped memory at the heap's top.
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut heap = self.heap.lock();
            loop {
                if let Ok(ptr) = heap.allocate_first_fit(layout) {
                    return ptr.as_ptr();
                }
                if let Err(why) = self.grow(&mut heap, layout) {
                    crate::println!(
                        "heap: cannot allocate {} bytes (align {}): {why}; heap has {} KiB mapped",
                        layout.size(),
                        layout.align(),
                        self.mapped.load(Ordering::Relaxed) / 1024
                    );
                    return ptr::null_mut();
                }
            }
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        x86_64::instructions::interrupts::without_interrupts(|| {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with this layout.
            unsafe {
                self.heap
                    .lock()
                    .deallocate(NonNull::new_unchecked(ptr), layout)
            };
        });
    }
}
