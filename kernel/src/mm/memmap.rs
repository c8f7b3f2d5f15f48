//! The memmap: one 64-byte page descriptor per physical frame, in one array allocated at
//! boot from usable memory itself (as Linux's `mem_map`), so that pfn → descriptor and
//! descriptor → pfn are O(1) arithmetic.
//!
//! A descriptor's fields have fixed offsets (`#[repr(C)]`, checked below) so that a
//! subsystem's own descriptor can overlay it with compile-time-checked offsets, as zsmalloc's
//! zsdesc overlays `struct page` (the 2023 "Split zsdesc from struct page" series). Every field is atomic: descriptors are shared
//! between CPUs, and the lock that orders access (the buddy lock for free frames, the owner's
//! lock for allocated ones) is not the descriptor's business.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use spin::Once;

/// Size of a physical frame.
pub const FRAME_SIZE: u64 = 4096;
/// "No frame" in a descriptor's pfn-valued fields (list links).
pub const NO_PFN: u64 = u64::MAX;

/// Bits of [`PageDesc::flags`].
pub mod flags {
    /// Not managed by the frame allocator: firmware, kernel image, bootloader data, the
    /// memmap itself, or a hole in the physical address space.
    pub const RESERVED: u64 = 1 << 0;
    /// Head of a free block in the buddy allocator (`page_type` holds its order).
    pub const BUDDY: u64 = 1 << 1;
    /// Holds a page table.
    pub const PAGE_TABLE: u64 = 1 << 2;
    /// Backs the kernel heap.
    pub const HEAP: u64 = 1 << 3;
    /// Owner-private marker (zsmalloc: first page of a zspage), like Linux's `PG_private`.
    pub const PRIVATE: u64 = 1 << 4;
    /// Movable by page migration; `mapping` names the owner's migration operations.
    pub const MOVABLE: u64 = 1 << 5;
    /// Locked for migration, like Linux's `PG_locked`.
    pub const LOCKED: u64 = 1 << 6;
    /// Free, in a range being emptied (see `buddy::Buddy::isolate_range`): held back from
    /// the free lists so that nothing allocates it (Linux: `MIGRATE_ISOLATE`).
    pub const ISOLATED: u64 = 1 << 7;
}

/// One physical frame's descriptor (Linux: `struct page`). 64 bytes, fields at fixed offsets.
#[repr(C)]
#[derive(Debug)]
pub struct PageDesc {
    /// [`flags`] bits. Offset 0.
    pub flags: AtomicU64,
    /// Next frame on whatever list the frame is on (buddy free list, owner's list), as a pfn;
    /// [`NO_PFN`] if none. Offset 8 (Linux: `lru.next`).
    pub lru_next: AtomicU64,
    /// Previous frame on that list. Offset 16 (Linux: `lru.prev`).
    pub lru_prev: AtomicU64,
    /// Owner's operations or identity (Linux: `mapping`; for movable pages, the movable ops).
    /// Offset 24.
    pub mapping: AtomicU64,
    /// Owner's word (Linux: `index`). Offset 32.
    pub index: AtomicU64,
    /// Owner's word (Linux: `private`). Offset 40.
    pub private: AtomicU64,
    /// Type-specific word (Linux: `page_type`); the buddy allocator keeps a free block's
    /// order here. Offset 48.
    pub page_type: AtomicU32,
    /// References to the frame: 0 when free, 1 when allocated. Offset 52.
    pub refcount: AtomicU32,
    /// A last owner word (Linux: `memcg_data`). Offset 56.
    pub owner_data: AtomicU64,
}

const _: () = {
    assert!(size_of::<PageDesc>() == 64);
    assert!(offset_of!(PageDesc, flags) == 0);
    assert!(offset_of!(PageDesc, lru_next) == 8);
    assert!(offset_of!(PageDesc, lru_prev) == 16);
    assert!(offset_of!(PageDesc, mapping) == 24);
    assert!(offset_of!(PageDesc, index) == 32);
    assert!(offset_of!(PageDesc, private) == 40);
    assert!(offset_of!(PageDesc, page_type) == 48);
    assert!(offset_of!(PageDesc, refcount) == 52);
    assert!(offset_of!(PageDesc, owner_data) == 56);
};

impl PageDesc {
    const fn reserved() -> Self {
        PageDesc {
            flags: AtomicU64::new(flags::RESERVED),
            lru_next: AtomicU64::new(NO_PFN),
            lru_prev: AtomicU64::new(NO_PFN),
            mapping: AtomicU64::new(0),
            index: AtomicU64::new(0),
            private: AtomicU64::new(0),
            page_type: AtomicU32::new(0),
            refcount: AtomicU32::new(1),
            owner_data: AtomicU64::new(0),
        }
    }

    /// True if all of `bits` are set.
    pub fn has(&self, bits: u64) -> bool {
        self.flags.load(Ordering::Relaxed) & bits == bits
    }

    /// Sets `bits`.
    pub fn set(&self, bits: u64) {
        self.flags.fetch_or(bits, Ordering::Relaxed);
    }

    /// Clears `bits`.
    pub fn clear(&self, bits: u64) {
        self.flags.fetch_and(!bits, Ordering::Relaxed);
    }

    /// Puts every owner field back to its value for a free frame.
    pub fn reset_owner_fields(&self) {
        self.lru_next.store(NO_PFN, Ordering::Relaxed);
        self.lru_prev.store(NO_PFN, Ordering::Relaxed);
        self.mapping.store(0, Ordering::Relaxed);
        self.index.store(0, Ordering::Relaxed);
        self.private.store(0, Ordering::Relaxed);
        self.page_type.store(0, Ordering::Relaxed);
        self.owner_data.store(0, Ordering::Relaxed);
    }
}

/// The memmap and where physical memory is.
pub struct Memmap {
    descs: &'static [PageDesc],
    phys_offset: u64,
    /// First frame of the memmap array itself.
    pub self_pfn: u64,
    /// Frames the array occupies.
    pub self_frames: u64,
}

/// What `build` found, for the boot summary.
#[derive(Debug, Clone, Copy)]
pub struct MemmapSummary {
    /// Frames covered (0 .. highest usable frame).
    pub frames: u64,
    /// Frames in usable regions.
    pub usable: u64,
    /// Bytes of the descriptor array.
    pub bytes: u64,
    /// TSC cycles the build took.
    pub build_cycles: u64,
}

static MEMMAP: Once<Memmap> = Once::new();

/// The memmap (after [`build`]).
pub fn get() -> &'static Memmap {
    MEMMAP.get().expect("memmap is built at boot")
}

/// Builds the memmap: sizes it to the highest usable frame, places it in usable memory,
/// and writes a reserved descriptor for every frame. The buddy allocator then releases the
/// usable frames (other than the memmap's own) with [`usable_ranges`].
pub fn build(regions: &MemoryRegions, phys_offset: u64) -> MemmapSummary {
    let t0 = crate::arch::tsc::start();
    let usable = || {
        regions
            .iter()
            .filter(|r| r.kind == MemoryRegionKind::Usable)
    };
    let frames = usable()
        .map(|r| r.end / FRAME_SIZE)
        .max()
        .expect("the bootloader reports usable memory");
    let bytes = frames * size_of::<PageDesc>() as u64;
    let self_frames = bytes.div_ceil(FRAME_SIZE);
    // The first usable region (above frame 0) with room for the whole array.
    let self_pfn = usable()
        .map(|r| (r.start.div_ceil(FRAME_SIZE).max(1), r.end / FRAME_SIZE))
        .find(|(start, end)| end.saturating_sub(*start) >= self_frames)
        .map(|(start, _)| start)
        .expect("no usable region is large enough for the memmap");
    let base = (phys_offset + self_pfn * FRAME_SIZE) as *mut PageDesc;
    for i in 0..frames as usize {
        // SAFETY: `base` points into the direct map of `self_frames` usable frames that
        // nothing else uses (the buddy allocator never receives them), large enough for
        // `frames` descriptors; each slot is written once before any read.
        unsafe { base.add(i).write(PageDesc::reserved()) };
    }
    // SAFETY: all `frames` descriptors were initialised above; the array lives for the rest
    // of the kernel's life and is only accessed through shared references (atomic fields).
    let descs = unsafe { core::slice::from_raw_parts(base, frames as usize) };
    MEMMAP.call_once(|| Memmap {
        descs,
        phys_offset,
        self_pfn,
        self_frames,
    });
    let usable_frames = usable()
        .map(|r| r.end / FRAME_SIZE - r.start.div_ceil(FRAME_SIZE))
        .sum();
    MemmapSummary {
        frames,
        usable: usable_frames,
        bytes,
        build_cycles: crate::arch::tsc::stop() - t0,
    }
}

/// The usable frame ranges `[start, end)` the buddy allocator may manage: usable regions,
/// minus frame 0 and the memmap's own frames.
pub fn usable_ranges(regions: &MemoryRegions) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mm = get();
    let (hole_start, hole_end) = (mm.self_pfn, mm.self_pfn + mm.self_frames);
    regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .flat_map(move |r| {
            let (start, end) = (r.start.div_ceil(FRAME_SIZE).max(1), r.end / FRAME_SIZE);
            // Cut the memmap's frames out of the range (they lie in at most one region).
            [(start, end.min(hole_start)), (start.max(hole_end), end)]
        })
        .filter(|(s, e)| s < e)
}

impl Memmap {
    /// Number of frames covered.
    pub fn frames(&self) -> u64 {
        self.descs.len() as u64
    }

    /// The descriptor of frame `pfn`, if the memmap covers it.
    pub fn desc(&self, pfn: u64) -> Option<&'static PageDesc> {
        self.descs.get(usize::try_from(pfn).ok()?)
    }

    /// The frame a descriptor describes. `desc` must come from this memmap.
    pub fn pfn_of(&self, desc: &PageDesc) -> u64 {
        let offset = (desc as *const PageDesc as usize).wrapping_sub(self.descs.as_ptr() as usize);
        let pfn = (offset / size_of::<PageDesc>()) as u64;
        assert!(pfn < self.frames(), "descriptor is not in the memmap");
        pfn
    }

    /// Virtual address of frame `pfn` in the direct map.
    pub fn frame_addr(&self, pfn: u64) -> u64 {
        self.phys_offset + pfn * FRAME_SIZE
    }

    /// Virtual address where physical memory starts in the direct map.
    pub fn phys_offset(&self) -> u64 {
        self.phys_offset
    }
}
