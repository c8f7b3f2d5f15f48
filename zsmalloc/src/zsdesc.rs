//! zsdesc: zsmalloc's own view of a page descriptor (seed 2023, "Split zsdesc from struct
//! page"). It overlays the machine's 64-byte page descriptor; the shared fields sit at the
//! offsets published below, which the kernel checks at compile time against its memmap
//! descriptor (as Linux's `ZSDESC_MATCH` asserts do). This is the only module that touches
//! descriptor fields; the rest of zsmalloc goes through the helpers here.
//!
//! Field use:
//! * `flags`: [`PG_PRIVATE`] marks the first page of a zspage;
//! * `next`: the next page of the zspage chain (a pfn, [`NO_PAGE`] at the end); in a huge
//!   zspage, which has one page and no in-object header, it holds the object's handle slot;
//! * `zspage`: which zspage the page belongs to ([`ZsPageRef`], 0 if none);
//! * `first_obj_offset`: offset of the first object that starts in this page.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::backend::Pfn;

/// `flags` bit: first page of a zspage (Linux: `PG_private`).
pub const PG_PRIVATE: u64 = 1 << 4;
/// `flags` bit: the page is movable by migration (Linux: `__PageMovable`).
pub const PG_MOVABLE: u64 = 1 << 5;
/// `flags` bit: the page is locked for migration (Linux: `PG_locked`).
pub const PG_LOCKED: u64 = 1 << 6;
/// End of a zspage chain in `next`.
pub const NO_PAGE: u64 = u64::MAX;

/// zsmalloc's descriptor, overlaying the machine's page descriptor.
#[repr(C)]
#[derive(Debug)]
pub struct ZsDesc {
    flags: AtomicU64,
    _lru: [AtomicU64; 2],
    movable_ops: AtomicU64,
    next: AtomicU64,
    zspage: AtomicU64,
    first_obj_offset: AtomicU32,
    refcount: AtomicU32,
}

impl ZsDesc {
    /// Offset of `flags` (must match the page descriptor's `flags`).
    pub const FLAGS_OFFSET: usize = offset_of!(ZsDesc, flags);
    /// Offset of `movable_ops` (must match the page descriptor's `mapping`).
    pub const MOVABLE_OPS_OFFSET: usize = offset_of!(ZsDesc, movable_ops);
    /// Offset of `next` / huge handle (must match the page descriptor's `index`).
    pub const NEXT_OFFSET: usize = offset_of!(ZsDesc, next);
    /// Offset of `zspage` (must match the page descriptor's `private`).
    pub const ZSPAGE_OFFSET: usize = offset_of!(ZsDesc, zspage);
    /// Offset of `first_obj_offset` (must match the page descriptor's `page_type`).
    pub const FIRST_OBJ_OFFSET_OFFSET: usize = offset_of!(ZsDesc, first_obj_offset);
    /// Offset of `refcount` (must match the page descriptor's `refcount`).
    pub const REFCOUNT_OFFSET: usize = offset_of!(ZsDesc, refcount);
    /// Size of the overlay (must not exceed the page descriptor's).
    pub const SIZE: usize = size_of::<ZsDesc>();

    /// A descriptor as a fresh, free frame has it (for host backends).
    pub const fn new() -> ZsDesc {
        ZsDesc {
            flags: AtomicU64::new(0),
            _lru: [AtomicU64::new(0), AtomicU64::new(0)],
            movable_ops: AtomicU64::new(0),
            next: AtomicU64::new(NO_PAGE),
            zspage: AtomicU64::new(0),
            first_obj_offset: AtomicU32::new(0),
            refcount: AtomicU32::new(1),
        }
    }
}

impl Default for ZsDesc {
    fn default() -> Self {
        Self::new()
    }
}

/// Which zspage a page belongs to: the class position and the zspage's id in that class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZsPageRef {
    /// Position of the class in the pool's class table.
    pub class: u8,
    /// The zspage's id within its class.
    pub id: u32,
}

impl ZsPageRef {
    fn encode(self) -> u64 {
        ((self.class as u64) << 32 | self.id as u64) + 1
    }

    fn decode(raw: u64) -> Option<ZsPageRef> {
        let v = raw.checked_sub(1)?;
        Some(ZsPageRef {
            class: (v >> 32) as u8,
            id: v as u32,
        })
    }
}

/// Sets a fresh page up as page `nth` of a zspage.
pub(crate) fn init_page(d: &ZsDesc, owner: ZsPageRef, first: bool, first_obj_offset: u32) {
    d.zspage.store(owner.encode(), Ordering::Relaxed);
    d.next.store(NO_PAGE, Ordering::Relaxed);
    d.first_obj_offset
        .store(first_obj_offset, Ordering::Relaxed);
    if first {
        d.flags.fetch_or(PG_PRIVATE, Ordering::Relaxed);
    }
}

/// Clears everything zsmalloc set, before the page goes back to the frame allocator.
pub(crate) fn reset(d: &ZsDesc) {
    d.flags
        .fetch_and(!(PG_PRIVATE | PG_MOVABLE | PG_LOCKED), Ordering::Relaxed);
    d.zspage.store(0, Ordering::Relaxed);
    d.next.store(NO_PAGE, Ordering::Relaxed);
    d.first_obj_offset.store(0, Ordering::Relaxed);
    d.movable_ops.store(0, Ordering::Relaxed);
}

/// The zspage a page belongs to, if any.
pub(crate) fn owner(d: &ZsDesc) -> Option<ZsPageRef> {
    ZsPageRef::decode(d.zspage.load(Ordering::Relaxed))
}

/// True on the first page of a zspage.
pub(crate) fn is_first(d: &ZsDesc) -> bool {
    d.flags.load(Ordering::Relaxed) & PG_PRIVATE != 0
}

/// Links the chain: the page after this one.
pub(crate) fn set_next(d: &ZsDesc, next: Pfn) {
    d.next.store(next, Ordering::Relaxed);
}

/// The page after this one in its zspage.
pub(crate) fn next(d: &ZsDesc) -> Option<Pfn> {
    match d.next.load(Ordering::Relaxed) {
        NO_PAGE => None,
        pfn => Some(pfn),
    }
}

/// Huge zspages keep the object's handle slot in the descriptor (there is no header).
pub(crate) fn set_huge_slot(d: &ZsDesc, slot: Option<u32>) {
    d.next
        .store(slot.map_or(NO_PAGE, u64::from), Ordering::Relaxed);
}

/// The handle slot of a huge zspage's object, if allocated.
pub(crate) fn huge_slot(d: &ZsDesc) -> Option<u32> {
    match d.next.load(Ordering::Relaxed) {
        NO_PAGE => None,
        v => Some(v as u32),
    }
}

/// Offset of the first object that starts in this page.
pub(crate) fn first_obj_offset(d: &ZsDesc) -> u32 {
    d.first_obj_offset.load(Ordering::Relaxed)
}
