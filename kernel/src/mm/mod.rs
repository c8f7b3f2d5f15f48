//! Physical memory: the memmap of page descriptors, the buddy frame allocator, the kernel
//! heap, kernel page tables, the per-CPU two-page PTE window, and page migration (movable
//! pages, emptying a physical range).
//!
//! Boot order: memmap (needs only the direct map; 64 or 8 bytes a frame, see
//! `memmap::Layout`) → buddy (frees the usable frames into its lists) → paging (takes over
//! the bootloader's tables) → heap (claims a region, maps frames) → window region. Then each CPU gets what it needs from [`init_cpu`] (its window); the
//! caller keeps it (`crate::percpu`).

pub mod buddy;
pub mod census;
pub mod desc_cache;
pub mod heap;
pub mod memdesc;
pub mod memmap;
pub mod migrate;
pub mod paging;
pub mod stacks;
pub mod window;
pub mod window_ring;

#[cfg(feature = "ktest")]
mod ktests;
/// Lab 0's page-table walk: only the test kernel has it (its tests are what call it).
#[cfg(feature = "ktest")]
pub mod translate;
#[cfg(feature = "ktest")]
mod translate_ktests;
// STAFF: BEGIN labs 1 and 2's hidden tests, run only by trusted grading
#[cfg(feature = "ktest")]
mod hidden_ktests;
// STAFF: END

use bootloader_api::info::MemoryRegions;

/// What memory set-up found, for the boot summary and the demo.
#[derive(Debug, Clone, Copy)]
pub struct MemorySummary {
    /// The memmap.
    pub memmap: memmap::MemmapSummary,
    /// Frames the buddy allocator manages (all others are reserved).
    pub managed_frames: u64,
    /// Frames free in the buddy allocator once boot set-up is done.
    pub free_frames: u64,
}

/// Sets up physical memory: memmap (in `layout`), frame allocator, page tables, heap, window
/// region.
pub fn init(regions: &MemoryRegions, phys_offset: u64, layout: memmap::Layout) -> MemorySummary {
    let memmap = memmap::build(regions, phys_offset, layout);
    let managed_frames = buddy::init(regions);
    paging::init(phys_offset);
    heap::init();
    window::init_region();
    window_ring::init_region();
    MemorySummary {
        memmap,
        managed_frames,
        free_frames: buddy::stats().free_frames,
    }
}

/// What memory gives each CPU: its own two-page PTE window, eager and lazy.
pub struct CpuMemory {
    /// The CPU's window.
    pub window: window::Window,
    /// The CPU's lazily flushed ring of two-page slots.
    pub ring: window_ring::WindowRing,
}

/// Builds what CPU `index` needs from memory (every page-table level of its window). Run
/// after [`init`], once per CPU.
pub fn init_cpu(index: usize) -> CpuMemory {
    CpuMemory {
        window: window::Window::new(index),
        ring: window_ring::WindowRing::new(index),
    }
}

impl MemorySummary {
    /// Prints the boot summary: frames total / usable / reserved, memmap size and build time.
    pub fn log(&self) {
        let m = &self.memmap;
        log::info!(
            "memmap: {} frames ({} MiB), {} usable, {} reserved; {} KiB of descriptors ({}, {} bytes a frame), built in {} us",
            m.frames,
            (m.frames * memmap::FRAME_SIZE) >> 20,
            m.usable,
            m.frames - self.managed_frames,
            m.bytes / 1024,
            m.layout.name(),
            m.layout.bytes_per_frame(),
            crate::arch::tsc::cycles_to_us(m.build_cycles)
        );
        log::info!(
            "buddy: {} frames managed, {} free ({} MiB) after the heap and page tables took theirs",
            self.managed_frames,
            self.free_frames,
            (self.free_frames * memmap::FRAME_SIZE) >> 20
        );
    }
}
