//! The memmap: one descriptor per physical frame, in one array allocated at boot from usable
//! memory itself (as Linux's `mem_map`), so that pfn → descriptor and descriptor → pfn are
//! O(1) arithmetic. Two layouts, chosen at boot ([`Layout`]):
//!
//! * **wide** (the default): a 64-byte [`PageDesc`] per frame, as Linux's `struct page`;
//!   owners (the buddy allocator, zsmalloc) keep their state in its fields;
//! * **memdesc** (`--memdesc`): one 8-byte word per frame, as the memdesc proposal would have
//!   it: a type tag and, for a zsmalloc page, a pointer to the zsdesc that zsmalloc's backend
//!   allocates on its own (see [`super::memdesc`]). The buddy allocator keeps a free block's
//!   order in the word and its list links in the free frame itself.
//!
//! Everything outside this module reaches a frame's state through [`FrameDesc`], which hides
//! the layout.
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

use super::memdesc;

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

/// The first bytes every owner descriptor that a memdesc word points at starts with: the
/// flags word and the movable-operations token sit where [`PageDesc`] has them, so that page
/// migration reads them the same way in both layouts (zsmalloc's zsdesc is checked against it
/// in `zs_backend`).
#[repr(C)]
#[derive(Debug)]
pub struct OwnerHeader {
    /// Owner flags ([`flags::PRIVATE`], [`flags::MOVABLE`], [`flags::LOCKED`]). Offset 0.
    pub flags: AtomicU64,
    /// The owner's own words. Offsets 8 and 16.
    pub owner_words: [AtomicU64; 2],
    /// Movable-operations token. Offset 24.
    pub mapping: AtomicU64,
}

const _: () = {
    assert!(offset_of!(OwnerHeader, flags) == offset_of!(PageDesc, flags));
    assert!(offset_of!(OwnerHeader, mapping) == offset_of!(PageDesc, mapping));
};

/// Owner flag bits, kept in the owner's descriptor in the memdesc layout.
const OWNER_FLAGS: u64 = flags::PRIVATE | flags::MOVABLE | flags::LOCKED;

/// Which memmap the kernel builds at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 64 bytes per frame ([`PageDesc`]); the default.
    Wide,
    /// 8 bytes per frame (a tag and a pointer, [`memdesc`]); zsmalloc's descriptors are
    /// allocated apart. Chosen with the kernel option `--memdesc`.
    Memdesc,
}

impl Layout {
    /// Bytes of memmap per frame.
    pub const fn bytes_per_frame(self) -> u64 {
        match self {
            Layout::Wide => size_of::<PageDesc>() as u64,
            Layout::Memdesc => size_of::<memdesc::Word>() as u64,
        }
    }

    /// The layout's name, as the console shows it.
    pub const fn name(self) -> &'static str {
        match self {
            Layout::Wide => "wide",
            Layout::Memdesc => "memdesc",
        }
    }
}

/// The descriptor array, in one of the layouts.
enum Descs {
    Wide(&'static [PageDesc]),
    Memdesc(&'static [memdesc::Word]),
}

/// The first frame above conventional low memory (640 KiB).
const LOW_MEMORY_END: u64 = 0xa0;

/// The memmap and where physical memory is.
pub struct Memmap {
    descs: Descs,
    phys_offset: u64,
    /// First frame of the memmap array itself.
    pub self_pfn: u64,
    /// Frames the array occupies.
    pub self_frames: u64,
    /// A usable frame below 640 KiB, kept out of the frame allocator from the start: the
    /// application processors' start-up code must lie in the first megabyte (a SIPI vector
    /// addresses it), and taking it here keeps starting them independent of the allocator.
    pub low_frame: Option<u64>,
}

/// What `build` found, for the boot summary.
#[derive(Debug, Clone, Copy)]
pub struct MemmapSummary {
    /// The layout built.
    pub layout: Layout,
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

/// Builds the memmap in `layout`: sizes it to the highest usable frame, places it in usable
/// memory, and marks every frame reserved. The buddy allocator then releases the usable
/// frames (other than the memmap's own) with [`usable_ranges`].
pub fn build(regions: &MemoryRegions, phys_offset: u64, layout: Layout) -> MemmapSummary {
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
    let bytes = frames * layout.bytes_per_frame();
    let self_frames = bytes.div_ceil(FRAME_SIZE);
    // The first usable region (above frame 0) with room for the whole array.
    let self_pfn = usable()
        .map(|r| (r.start.div_ceil(FRAME_SIZE).max(1), r.end / FRAME_SIZE))
        .find(|(start, end)| end.saturating_sub(*start) >= self_frames)
        .map(|(start, _)| start)
        .expect("no usable region is large enough for the memmap");
    let low_frame = (1..LOW_MEMORY_END)
        .rev()
        .filter(|p| !(self_pfn..self_pfn + self_frames).contains(p))
        .find(|&p| {
            usable().any(|r| (r.start.div_ceil(FRAME_SIZE)..r.end / FRAME_SIZE).contains(&p))
        });
    let base = phys_offset + self_pfn * FRAME_SIZE;
    // SAFETY: `base` points into the direct map of `self_frames` usable frames that nothing
    // else uses (the buddy allocator never receives them), room for `frames` descriptors.
    unsafe { write_reserved(layout, base as *mut u8, frames as usize) };
    let descs = match layout {
        // SAFETY: all `frames` descriptors were initialised above; the array lives for the
        // rest of the kernel's life and is only accessed through shared references (atomic
        // fields).
        Layout::Wide => Descs::Wide(unsafe {
            core::slice::from_raw_parts(base as *const PageDesc, frames as usize)
        }),
        // SAFETY: as above, for words.
        Layout::Memdesc => Descs::Memdesc(unsafe {
            core::slice::from_raw_parts(base as *const memdesc::Word, frames as usize)
        }),
    };
    MEMMAP.call_once(|| Memmap {
        descs,
        phys_offset,
        self_pfn,
        self_frames,
        low_frame,
    });
    let usable_frames = usable()
        .map(|r| r.end / FRAME_SIZE - r.start.div_ceil(FRAME_SIZE))
        .sum();
    MemmapSummary {
        layout,
        frames,
        usable: usable_frames,
        bytes,
        build_cycles: crate::arch::tsc::stop() - t0,
    }
}

/// Writes `n` descriptors of `layout` for reserved frames at `at`: the memmap's build (and the
/// bench's rebuild of one in borrowed frames).
///
/// # Safety
/// `at` is 8-byte aligned and valid for writes of `n * layout.bytes_per_frame()` bytes that
/// nothing else reads or writes meanwhile.
pub unsafe fn write_reserved(layout: Layout, at: *mut u8, n: usize) {
    match layout {
        Layout::Wide => {
            let base = at.cast::<PageDesc>();
            for i in 0..n {
                // SAFETY: slot `i` of `n` lies in the caller's memory.
                unsafe { base.add(i).write(PageDesc::reserved()) };
            }
        }
        // SAFETY: as above; a zero word is a reserved frame (`memdesc::Tag::Reserved`), so
        // one fill writes them all.
        Layout::Memdesc => unsafe { core::ptr::write_bytes(at.cast::<memdesc::Word>(), 0, n) },
    }
}

/// The usable frame ranges `[start, end)` the buddy allocator may manage: usable regions,
/// minus frame 0 and the memmap's own frames.
pub fn usable_ranges(regions: &MemoryRegions) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mm = get();
    // Kept out: the memmap's own frames, and the low frame for the AP start-up code.
    let memmap = (mm.self_pfn, mm.self_pfn + mm.self_frames);
    let low = mm.low_frame.map_or((0, 0), |p| (p, p + 1));
    let (first, second) = if memmap.0 <= low.0 {
        (memmap, low)
    } else {
        (low, memmap)
    };
    regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .flat_map(move |r| {
            let (start, end) = (r.start.div_ceil(FRAME_SIZE).max(1), r.end / FRAME_SIZE);
            // The range with both holes cut out: before, between and after them.
            [
                (start, end.min(first.0)),
                (start.max(first.1), end.min(second.0)),
                (start.max(second.1), end),
            ]
        })
        .filter(|(s, e)| s < e)
}

impl Memmap {
    /// Number of frames covered.
    pub fn frames(&self) -> u64 {
        match self.descs {
            Descs::Wide(d) => d.len() as u64,
            Descs::Memdesc(d) => d.len() as u64,
        }
    }

    /// The layout built at boot.
    pub fn layout(&self) -> Layout {
        match self.descs {
            Descs::Wide(_) => Layout::Wide,
            Descs::Memdesc(_) => Layout::Memdesc,
        }
    }

    /// The descriptor of frame `pfn`, if the memmap covers it.
    pub fn desc(&self, pfn: u64) -> Option<FrameDesc> {
        let i = usize::try_from(pfn).ok()?;
        let at = match self.descs {
            Descs::Wide(d) => At::Wide(d.get(i)?),
            Descs::Memdesc(d) => At::Memdesc(d.get(i)?, self.frame_addr(pfn)),
        };
        Some(FrameDesc { pfn, at })
    }

    /// The frame a wide descriptor describes. `desc` must come from this memmap.
    pub fn pfn_of(&self, desc: &PageDesc) -> u64 {
        let Descs::Wide(descs) = self.descs else {
            panic!("a memdesc memmap has no PageDesc");
        };
        let offset = (desc as *const PageDesc as usize).wrapping_sub(descs.as_ptr() as usize);
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

/// Refusal to give a frame an owner's mark: the frame is not a plain allocated frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAllocated {
    /// The frame.
    pub pfn: u64,
    /// What it is instead.
    pub is: &'static str,
}

impl core::fmt::Display for NotAllocated {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "frame {:#x} is {}, not a plain allocated frame",
            self.pfn, self.is
        )
    }
}

/// Where a frame's descriptor is.
#[derive(Clone, Copy)]
enum At {
    Wide(&'static PageDesc),
    /// The frame's word and the frame's direct-map address (a free block's list links live
    /// in its first frame).
    Memdesc(&'static memdesc::Word, u64),
}

/// One frame's descriptor, in whichever layout the memmap has: its state as flag bits, the
/// buddy allocator's per-frame state, and its owner's descriptor.
#[derive(Clone, Copy)]
pub struct FrameDesc {
    pfn: u64,
    at: At,
}

impl core::fmt::Debug for FrameDesc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "frame {:#x} (flags {:#x})", self.pfn, self.flags())
    }
}

impl FrameDesc {
    /// The frame.
    pub fn pfn(&self) -> u64 {
        self.pfn
    }

    /// The 64-byte descriptor, in the wide layout.
    pub fn wide(&self) -> Option<&'static PageDesc> {
        match self.at {
            At::Wide(d) => Some(d),
            At::Memdesc(..) => None,
        }
    }

    /// The owner descriptor a memdesc word `v` points at (a zsmalloc page's zsdesc). Call it
    /// inside `desc_cache::read_foreign` unless the caller owns the frame, and drop the
    /// reference before the section ends.
    fn owner(v: u64) -> Option<&'static OwnerHeader> {
        (memdesc::tag(v) == memdesc::Tag::Zsmalloc).then(|| {
            // SAFETY: a zsmalloc word holds the address of a zsdesc from the backend's
            // descriptor cache, whose memory stays descriptor memory while any read section
            // that may have loaded the word is open (the cache waits for them before it gives
            // a block back), and every zsdesc begins with an `OwnerHeader` (checked in
            // `zs_backend`); only atomics are accessed.
            unsafe { &*(memdesc::payload(v) as *const OwnerHeader) }
        })
    }

    /// The frame's state as [`flags`] bits, the same in both layouts.
    pub fn flags(&self) -> u64 {
        match self.at {
            At::Wide(d) => d.flags.load(Ordering::Relaxed),
            At::Memdesc(w, _) => {
                let v = memdesc::load(w);
                match memdesc::tag(v) {
                    memdesc::Tag::Reserved => flags::RESERVED,
                    memdesc::Tag::Free => flags::BUDDY,
                    memdesc::Tag::Isolated => flags::ISOLATED,
                    memdesc::Tag::PageTable => flags::PAGE_TABLE,
                    memdesc::Tag::Heap => flags::HEAP,
                    memdesc::Tag::Tail | memdesc::Tag::Allocated => 0,
                    memdesc::Tag::Zsmalloc => super::desc_cache::read_foreign(|| {
                        // Read again inside the section: the descriptor the word names now.
                        Self::owner(memdesc::load(w))
                            .map_or(0, |o| o.flags.load(Ordering::Relaxed) & OWNER_FLAGS)
                    }),
                }
            }
        }
    }

    /// True if all of `bits` are set.
    pub fn has(&self, bits: u64) -> bool {
        self.flags() & bits == bits
    }

    /// Marks an allocated frame as what its user made it: [`flags::RESERVED`],
    /// [`flags::PAGE_TABLE`] or [`flags::HEAP`] (one of them).
    ///
    /// Refused, changing nothing, if the frame is free or a zsmalloc page: marking it would
    /// lose the buddy allocator's order or the page's zsdesc.
    pub fn set(&self, bits: u64) -> Result<(), NotAllocated> {
        match self.at {
            At::Wide(d) => {
                if self.has(flags::BUDDY) {
                    return Err(NotAllocated {
                        pfn: self.pfn,
                        is: "a free block's head",
                    });
                }
                d.flags.fetch_or(bits, Ordering::Relaxed);
            }
            At::Memdesc(w, _) => {
                let tag = match bits {
                    flags::RESERVED => memdesc::Tag::Reserved,
                    flags::PAGE_TABLE => memdesc::Tag::PageTable,
                    flags::HEAP => memdesc::Tag::Heap,
                    _ => panic!("a memdesc word has no flag bits {bits:#x}"),
                };
                match memdesc::tag(memdesc::load(w)) {
                    memdesc::Tag::Free => {
                        return Err(NotAllocated {
                            pfn: self.pfn,
                            is: "a free block's head",
                        });
                    }
                    memdesc::Tag::Zsmalloc => {
                        return Err(NotAllocated {
                            pfn: self.pfn,
                            is: "a zsmalloc page",
                        });
                    }
                    _ => memdesc::store(w, memdesc::plain(tag)),
                }
            }
        }
        Ok(())
    }

    /// The movable-operations token of a frame marked movable by its owner.
    pub fn movable_token(&self) -> Option<u64> {
        let token = |flags: &AtomicU64, mapping: &AtomicU64| {
            (flags.load(Ordering::Relaxed) & flags::MOVABLE != 0)
                .then(|| mapping.load(Ordering::Relaxed))
        };
        match self.at {
            At::Wide(d) => token(&d.flags, &d.mapping),
            // The owner's descriptor may be freed meanwhile: read inside a section the
            // descriptor cache waits for before it gives memory back.
            At::Memdesc(w, _) => super::desc_cache::read_foreign(|| {
                let owner = Self::owner(memdesc::load(w))?;
                token(&owner.flags, &owner.mapping)
            }),
        }
    }

    /// The raw memdesc word (diagnostics and tests).
    pub fn word(&self) -> Option<u64> {
        match self.at {
            At::Wide(_) => None,
            At::Memdesc(w, _) => Some(memdesc::load(w)),
        }
    }

    /// Memdesc layout: the zsdesc address a zsmalloc page's word holds.
    pub fn zsdesc_addr(&self) -> Option<u64> {
        self.word()
            .filter(|&v| memdesc::tag(v) == memdesc::Tag::Zsmalloc)
            .map(memdesc::payload)
    }

    /// Memdesc layout: makes an allocated frame a zsmalloc page whose zsdesc is at `addr`
    /// (or, for a page that migrated, the zsdesc it had before). Refused, changing nothing,
    /// unless the frame is the first frame of an allocated block with no owner descriptor (a
    /// free block's head would lose its order, a zsmalloc page its zsdesc).
    ///
    /// # Safety
    /// `addr` is a zsdesc slot of the kernel's descriptor cache, initialised (every field
    /// written through its atomics) before this call, and attached to no other frame: from
    /// here on [`FrameDesc::flags`], [`FrameDesc::movable_token`] and `zsdesc_of_frame`
    /// dereference it, until [`FrameDesc::detach_zsdesc`].
    pub unsafe fn attach_zsdesc(&self, addr: u64) -> Result<(), NotAllocated> {
        let At::Memdesc(w, _) = self.at else {
            panic!("zsdescs are attached only in the memdesc layout");
        };
        let is = match memdesc::tag(memdesc::load(w)) {
            memdesc::Tag::Allocated => None,
            memdesc::Tag::Free => Some("a free block's head"),
            memdesc::Tag::Zsmalloc => Some("a zsmalloc page"),
            memdesc::Tag::Tail => Some("inside a block"),
            memdesc::Tag::Isolated => Some("held back from a range"),
            memdesc::Tag::Reserved => Some("reserved"),
            memdesc::Tag::PageTable => Some("a page table"),
            memdesc::Tag::Heap => Some("the heap's"),
        };
        if let Some(is) = is {
            return Err(NotAllocated { pfn: self.pfn, is });
        }
        // Release: a CPU that reads the word (acquire) sees the descriptor's fields as they
        // were written before it.
        memdesc::publish(w, memdesc::zsmalloc(addr));
        Ok(())
    }

    /// Memdesc layout: turns a zsmalloc page back into a plain allocated frame; returns the
    /// zsdesc address it held (`None`, and nothing changes, if it held none).
    ///
    /// # Safety
    /// The caller takes the descriptor over: it gives it back to the cache or attaches it to
    /// another frame (dropping the address leaks it for good).
    pub unsafe fn detach_zsdesc(&self) -> Option<u64> {
        let addr = self.zsdesc_addr()?;
        if let At::Memdesc(w, _) = self.at {
            memdesc::store(w, memdesc::plain(memdesc::Tag::Allocated));
        }
        Some(addr)
    }

    // The buddy allocator's per-frame state (`buddy` is the only user).

    /// The order of the free block this frame heads, if it heads one.
    pub fn free_order(&self) -> Option<usize> {
        match self.at {
            At::Wide(d) => self
                .has(flags::BUDDY)
                .then(|| d.page_type.load(Ordering::Relaxed) as usize),
            At::Memdesc(w, _) => {
                let v = memdesc::load(w);
                (memdesc::tag(v) == memdesc::Tag::Free).then(|| memdesc::payload(v) as usize)
            }
        }
    }

    /// True if the frame heads an allocated block (not free, not inside a block, not
    /// reserved).
    pub fn is_allocated(&self) -> bool {
        match self.at {
            At::Wide(d) => {
                d.refcount.load(Ordering::Relaxed) != 0
                    && !self.has(flags::BUDDY)
                    && !self.has(flags::RESERVED)
            }
            At::Memdesc(w, _) => matches!(
                memdesc::tag(memdesc::load(w)),
                memdesc::Tag::Allocated
                    | memdesc::Tag::PageTable
                    | memdesc::Tag::Heap
                    | memdesc::Tag::Zsmalloc
            ),
        }
    }

    /// Makes the frame the first of a free block of `order`.
    pub(super) fn set_free_head(&self, order: usize) {
        match self.at {
            At::Wide(d) => {
                d.page_type.store(order as u32, Ordering::Relaxed);
                d.refcount.store(0, Ordering::Relaxed);
                d.flags.fetch_or(flags::BUDDY, Ordering::Relaxed);
            }
            At::Memdesc(w, _) => memdesc::store(w, memdesc::free(order)),
        }
    }

    /// Makes the frame part of a block whose first frame holds the state (what a merged
    /// buddy's head, or a frame handed over at boot, becomes).
    pub(super) fn set_tail(&self) {
        match self.at {
            At::Wide(d) => {
                d.flags.fetch_and(
                    !(flags::BUDDY | flags::RESERVED | flags::ISOLATED),
                    Ordering::Relaxed,
                );
                d.refcount.store(0, Ordering::Relaxed);
                d.page_type.store(0, Ordering::Relaxed);
            }
            At::Memdesc(w, _) => memdesc::store(w, memdesc::plain(memdesc::Tag::Tail)),
        }
    }

    /// Makes the frame the first of an allocated block.
    pub(super) fn set_allocated(&self) {
        match self.at {
            At::Wide(d) => {
                d.flags.fetch_and(!flags::BUDDY, Ordering::Relaxed);
                d.refcount.store(1, Ordering::Relaxed);
                d.page_type.store(0, Ordering::Relaxed);
            }
            At::Memdesc(w, _) => memdesc::store(w, memdesc::plain(memdesc::Tag::Allocated)),
        }
    }

    /// Holds a free frame back from the free lists (its range is being emptied).
    pub(super) fn set_isolated(&self) {
        match self.at {
            At::Wide(d) => {
                d.refcount.store(0, Ordering::Relaxed);
                d.flags.fetch_or(flags::ISOLATED, Ordering::Relaxed);
            }
            At::Memdesc(w, _) => memdesc::store(w, memdesc::plain(memdesc::Tag::Isolated)),
        }
    }

    /// Forgets what the frame's user made of it, as it goes back to the allocator: it is left
    /// as a tail until the allocator marks what it becomes (a free head, a held-back frame).
    pub(super) fn reset_on_free(&self) {
        match self.at {
            At::Wide(d) => {
                d.reset_owner_fields();
                d.flags.fetch_and(
                    !(flags::PAGE_TABLE
                        | flags::HEAP
                        | flags::PRIVATE
                        | flags::MOVABLE
                        | flags::LOCKED),
                    Ordering::Relaxed,
                );
                self.set_tail();
            }
            At::Memdesc(w, _) => memdesc::store(w, memdesc::plain(memdesc::Tag::Tail)),
        }
    }

    /// Forgets the free-list links of a block leaving the lists: the descriptor's fields are
    /// reset (wide); a memdesc frame keeps them in its own memory, which its new user
    /// overwrites, so nothing is written there.
    pub(super) fn clear_list_links(&self) {
        if let At::Wide(d) = self.at {
            d.lru_next.store(NO_PFN, Ordering::Relaxed);
            d.lru_prev.store(NO_PFN, Ordering::Relaxed);
        }
    }

    /// The free-list link word `i` (0: next, 1: previous) of a free block's first frame:
    /// in the descriptor (wide) or in the free frame itself (memdesc).
    fn link(&self, i: usize) -> &'static AtomicU64 {
        match self.at {
            At::Wide(d) => [&d.lru_next, &d.lru_prev][i],
            // SAFETY: only the buddy allocator calls this, under its lock, for a frame it
            // holds free (or is just taking off or putting on a list): nobody else uses the
            // frame's memory, which the direct map maps for the kernel's life; two aligned
            // words at its start are ours.
            At::Memdesc(_, addr) => unsafe { &*(addr as *const AtomicU64).add(i) },
        }
    }

    /// Next block on the free list ([`NO_PFN`] at the end).
    pub(super) fn list_next(&self) -> u64 {
        self.link(0).load(Ordering::Relaxed)
    }

    /// Previous block on the free list ([`NO_PFN`] at the head).
    pub(super) fn list_prev(&self) -> u64 {
        self.link(1).load(Ordering::Relaxed)
    }

    /// Sets the next block on the free list.
    pub(super) fn set_list_next(&self, pfn: u64) {
        self.link(0).store(pfn, Ordering::Relaxed);
    }

    /// Sets the previous block on the free list.
    pub(super) fn set_list_prev(&self, pfn: u64) {
        self.link(1).store(pfn, Ordering::Relaxed);
    }
}
