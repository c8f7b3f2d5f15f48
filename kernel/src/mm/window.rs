//! The per-CPU two-page PTE window: two virtually contiguous pages into which any two
//! physical frames can be mapped, so that an object spanning two discontiguous frames reads
//! as one run of bytes (the 2012 linux-mm discussion of zsmalloc's two-page mapping; zsmalloc's `CONFIG_PGTABLE_MAPPING`).
//!
//! Layout per CPU: `[guard][page 0][page 1][guard]`, the guards never mapped. Every page-table
//! level down to the two leaf entries is built at boot, so mapping only writes two PTEs: it
//! never allocates, sleeps, takes a lock, or fails for lack of memory (the 2012 discussion: "mapping
//! must never fail"). Upstream dropped this path in 5.10 after an unmap that could reschedule
//! corrupted data; here map and unmap are a handful of instructions with interrupts off.
//!
//! What must be flushed: only the unmap invalidates (`invlpg` on both pages). After that the
//! entries are not present, and x86 never caches a not-present translation, so the next map
//! can write its PTEs without a flush. A window is used only by its own CPU (no other CPU
//! ever touches these addresses), so a CPU-local `invlpg` is enough; no shootdown is needed.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering, compiler_fence};

use x86_64::PhysAddr;
use x86_64::instructions::tlb;

use crate::arch::irq::InterruptsOff;
use x86_64::structures::paging::PageTableFlags;
use x86_64::structures::paging::page_table::PageTableEntry;

use super::memmap::{self, FRAME_SIZE, flags};

/// Pages of virtual space per CPU: guard, two window pages, guard.
const SLOT_PAGES: u64 = 4;

/// How a mapping may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Readable only: the PTEs are not writable, so a write faults.
    ReadOnly,
    /// Writable (the window does not copy, so write-only maps like read-write).
    WriteOnly,
    /// Readable and writable.
    ReadWrite,
}

/// Why a window mapping was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowError {
    /// This CPU's window is already mapped (nested mapping).
    Busy,
    /// The frame is outside physical memory.
    OutOfRange(u64),
    /// The frame is reserved (firmware, kernel, ...) and never mapped through the window.
    Reserved(u64),
}

/// The leaf page-table entry that maps `frame` for `access`: present, never executable, and
/// writable only if the access may write. Both windows (this one and the lazy ring) map
/// with it.
pub(super) fn leaf_entry(frame: PhysAddr, access: Access) -> u64 {
    // LAB 2: BEGIN the entry's value: the frame, and the flags a mapping of data for this access needs
    let mut pte_flags = PageTableFlags::PRESENT | PageTableFlags::NO_EXECUTE;
    if access != Access::ReadOnly {
        pte_flags |= PageTableFlags::WRITABLE;
    }
    frame.as_u64() | pte_flags.bits()
    // LAB 2: STUB
    // let _ = (frame, access, PageTableFlags::PRESENT);
    // todo!("lab 2: the value of a window PTE (mm/window.rs, leaf_entry)")
    // LAB 2: END
}

/// The virtual region holding every CPU's window slot (claimed once at boot).
static REGION_BASE: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());

/// Claims the virtual region for all windows. Call once before any CPU builds its window.
pub fn init_region() {
    let base = super::paging::claim_l4_slot();
    REGION_BASE.store(base as *mut u8, Ordering::SeqCst);
}

/// One CPU's window.
pub struct Window {
    base: u64,
    ptes: [AtomicPtr<PageTableEntry>; 2],
    in_use: AtomicBool,
    /// Test kernel only: skip the unmap flush once, to show what a missing `invlpg` does.
    #[cfg(feature = "ktest")]
    skip_next_flush: AtomicBool,
}

impl Window {
    /// Builds CPU `index`'s window: places it in the region and prebuilds its page tables.
    pub fn new(index: usize) -> Window {
        let region = REGION_BASE.load(Ordering::SeqCst) as u64;
        assert!(
            region != 0,
            "window region is claimed before windows are built"
        );
        // Page 0 of the slot is the lower guard.
        let base = region + (index as u64 * SLOT_PAGES + 1) * FRAME_SIZE;
        let p0 = super::paging::prebuild_leaf_entry(base);
        let p1 = super::paging::prebuild_leaf_entry(base + FRAME_SIZE);
        Window {
            base,
            ptes: [AtomicPtr::new(p0), AtomicPtr::new(p1)],
            in_use: AtomicBool::new(false),
            #[cfg(feature = "ktest")]
            skip_next_flush: AtomicBool::new(false),
        }
    }

    /// Virtual address of the window's first page.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Addresses of the two guard pages (below and above the window).
    pub fn guard_pages(&self) -> [u64; 2] {
        [self.base - FRAME_SIZE, self.base + 2 * FRAME_SIZE]
    }

    /// The frame's physical address, if the window may map it (in memory, not reserved).
    pub(super) fn check_frame(pfn: u64) -> Result<PhysAddr, WindowError> {
        // LAB 2: BEGIN the frame's physical address, or why the window must not map it: outside memory, or reserved (the kernel's own, firmware's)
        let desc = memmap::get()
            .desc(pfn)
            .ok_or(WindowError::OutOfRange(pfn))?;
        if desc.has(flags::RESERVED) {
            return Err(WindowError::Reserved(pfn));
        }
        Ok(PhysAddr::new(pfn * FRAME_SIZE))
        // LAB 2: STUB
        // // Until you check, no frame may be mapped.
        // let _ = (memmap::get, flags::RESERVED);
        // Err(WindowError::OutOfRange(pfn))
        // LAB 2: END
    }

    /// Maps frame `pfn_a` at the window's first page and `pfn_b` right after it. Interrupts
    /// stay off on this CPU until the returned mapping is dropped. Refused if this CPU's
    /// window is already mapped, or a frame is outside memory or reserved.
    ///
    /// Must be called on this window's own CPU (use `percpu::current().window`).
    pub fn map(
        &self,
        pfn_a: u64,
        pfn_b: u64,
        access: Access,
    ) -> Result<WindowMapping<'_>, WindowError> {
        // LAB 2: BEGIN claim this CPU's window for one mapping at a time, with interrupts off until it is dropped; check both frames (a refusal leaves the window free); map them
        let irq_guard = InterruptsOff::new();
        if self.in_use.swap(true, Ordering::Acquire) {
            return Err(WindowError::Busy);
        }
        let frames = match (Self::check_frame(pfn_a), Self::check_frame(pfn_b)) {
            (Ok(a), Ok(b)) => [a, b],
            (Err(e), _) | (_, Err(e)) => {
                self.in_use.store(false, Ordering::Release);
                return Err(e);
            }
        };
        self.write_ptes(frames, access);
        // Accesses through the window must not be moved before the entries exist: the
        // compiler cannot see that they depend on the stores above.
        compiler_fence(Ordering::SeqCst);
        Ok(WindowMapping {
            window: self,
            writable: access != Access::ReadOnly,
            _irq: irq_guard,
            _not_send: PhantomData,
        })
        // LAB 2: STUB
        // // Until you claim it, the window is always busy.
        // let _ = (pfn_a, pfn_b, access, InterruptsOff::new, Self::write_ptes);
        // Err(WindowError::Busy)
        // LAB 2: END
    }

    fn unmap(&self) {
        #[cfg(feature = "ktest")]
        let flush = !self.skip_next_flush.swap(false, Ordering::Relaxed);
        #[cfg(not(feature = "ktest"))]
        let flush = true;
        // LAB 2: BEGIN end the mapping: after every access through it, remove the PTEs (flushing as `flush` says), then let the window be claimed again
        // Every access through the window is done before the entries go.
        compiler_fence(Ordering::SeqCst);
        self.clear_ptes(flush);
        self.in_use.store(false, Ordering::Release);
        // LAB 2: STUB
        // let _ = (flush, Self::clear_ptes);
        // LAB 2: END
    }

    /// Points the window's two leaf entries at `frames` (page 0, then page 1), as
    /// [`leaf_entry`] makes them. Called on this window's CPU with interrupts off and the
    /// window held (`in_use`).
    fn write_ptes(&self, frames: [PhysAddr; 2], access: Access) {
        // LAB 2: BEGIN map the window: its first page shows frames[0], its second frames[1]
        for (i, frame) in frames.into_iter().enumerate() {
            // The entry was not present, so no stale translation of it can exist (see the
            // module doc): no flush is needed here.
            self.store_entry(i, leaf_entry(frame, access));
        }
        // LAB 2: STUB
        // let _ = (frames, access, Self::store_entry);
        // todo!("lab 2: write the window's two PTEs (mm/window.rs, Window::write_ptes)")
        // LAB 2: END
    }

    /// Sets the window's leaf entry `i` (0 or 1) to `value` with one volatile 8-byte store
    /// through a raw pointer: the leaf table is shared with the other CPUs' windows and read
    /// by the MMU, so no Rust reference into it is ever made. Only on this window's CPU, with
    /// interrupts off and the window held (`in_use`).
    fn store_entry(&self, i: usize, value: u64) {
        let entry = core::ptr::NonNull::new(self.ptes[i].load(Ordering::Relaxed).cast::<u64>())
            .expect("the window's entries are built before it is used");
        // SAFETY: `entry` is this window's prebuilt leaf entry (8-aligned, in a page table
        // that lives as long as the kernel); only this CPU ever writes it, with interrupts
        // off and the window held, so no other write can interleave.
        unsafe { volatile::VolatilePtr::new(entry) }.write(value);
    }

    /// Removes the window's two mappings: clears both leaf entries and, unless `flush` is
    /// false (only the test that shows what a missing `invlpg` does asks for that),
    /// invalidates both pages in this CPU's TLB with `invlpg`.
    fn clear_ptes(&self, flush: bool) {
        // LAB 2: BEGIN unmap the window so that no access through it reaches either frame any more, on this CPU
        for i in 0..2 {
            self.store_entry(i, 0);
            if flush {
                tlb::flush(x86_64::VirtAddr::new(self.base + i as u64 * FRAME_SIZE));
            }
        }
        // LAB 2: STUB
        // let _ = (flush, FRAME_SIZE, tlb::flush);
        // todo!("lab 2: clear the window's PTEs and invlpg both pages (mm/window.rs, Window::clear_ptes)")
        // LAB 2: END
    }

    /// Test kernel only: the next unmap clears the PTEs but skips `invlpg`, leaving stale
    /// translations behind. Only the test that proves the flush matters uses it.
    ///
    /// # Safety
    /// Until this window's next mapping is dropped (which flushes again), the TLB may still
    /// translate the window to the frames mapped now: the caller keeps those frames alive and
    /// unused by anyone else until then.
    #[cfg(feature = "ktest")]
    pub unsafe fn skip_flush_once_for_test(&self) {
        self.skip_next_flush.store(true, Ordering::Relaxed);
    }
}

/// A live window mapping; dropping it unmaps (clears both PTEs, `invlpg` both pages) and
/// then lets interrupts back on. Not `Send`: it belongs to the CPU that made it.
pub struct WindowMapping<'w> {
    window: &'w Window,
    writable: bool,
    // Field order matters: `Drop for WindowMapping` unmaps first, then this restores IF.
    _irq: InterruptsOff,
    _not_send: PhantomData<*const ()>,
}

impl WindowMapping<'_> {
    /// Address of the first mapped byte (the start of frame `pfn_a`).
    pub fn addr(&self) -> u64 {
        self.window.base
    }

    /// The two mapped frames as one run of 8192 bytes.
    ///
    /// # Safety
    /// Nobody may write the two frames (through the direct map or otherwise) while the
    /// slice lives.
    pub unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: both pages are mapped (present) for as long as `self` lives; the caller
        // guarantees no concurrent writer.
        unsafe {
            core::slice::from_raw_parts(self.window.base as *const u8, 2 * FRAME_SIZE as usize)
        }
    }

    /// The two mapped frames as one writable run of 8192 bytes. Panics on a read-only map.
    ///
    /// # Safety
    /// Nobody else may access the two frames while the slice lives.
    pub unsafe fn bytes_mut(&mut self) -> &mut [u8] {
        assert!(self.writable, "bytes_mut on a read-only window mapping");
        // SAFETY: both pages are mapped writable while `self` lives; the caller guarantees
        // exclusive access to the frames.
        unsafe {
            core::slice::from_raw_parts_mut(self.window.base as *mut u8, 2 * FRAME_SIZE as usize)
        }
    }
}

impl Drop for WindowMapping<'_> {
    fn drop(&mut self) {
        self.window.unmap();
    }
}

/// The single-frame fast path: an object inside one frame needs no window, the direct map
/// already shows it. Returns the frame's address in the direct map.
pub fn direct(pfn: u64) -> Result<u64, WindowError> {
    Window::check_frame(pfn)?;
    Ok(memmap::get().frame_addr(pfn))
}
