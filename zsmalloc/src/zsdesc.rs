//! zsdesc: zsmalloc's own view of a page descriptor (the 2023 series "Split zsdesc from struct
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
//! * `first_obj_offset`: offset of the first object that starts in this page;
//! * `first` (over the list links): the first page of the zspage, so that a mapper can reach
//!   the zspage's lock from any page without the class lock;
//! * `zspage_lock` (first page only): the per-zspage lock of Linux 6.11's locking (Linux:
//!   `zspage->lock`). Mappers hold it for reading from map to unmap; compaction and migration
//!   take it for writing, only ever by trying (never waiting), and only while they hold the
//!   pool's migrate lock for writing. A mapper takes it while it holds the migrate lock for
//!   reading, so it never finds a writer there.

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
    first: AtomicU64,
    zspage_lock: AtomicU64,
    movable_ops: AtomicU64,
    next: AtomicU64,
    zspage: AtomicU64,
    first_obj_offset: AtomicU32,
    refcount: AtomicU32,
}

impl ZsDesc {
    /// Offset of `flags` (must match the page descriptor's `flags`).
    pub const FLAGS_OFFSET: usize = offset_of!(ZsDesc, flags);
    /// Offset of `first` (must match the page descriptor's `lru.next`).
    pub const FIRST_OFFSET: usize = offset_of!(ZsDesc, first);
    /// Offset of `zspage_lock` (must match the page descriptor's `lru.prev`).
    pub const ZSPAGE_LOCK_OFFSET: usize = offset_of!(ZsDesc, zspage_lock);
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
            first: AtomicU64::new(NO_PAGE),
            zspage_lock: AtomicU64::new(0),
            movable_ops: AtomicU64::new(0),
            next: AtomicU64::new(NO_PAGE),
            zspage: AtomicU64::new(0),
            first_obj_offset: AtomicU32::new(0),
            refcount: AtomicU32::new(1),
        }
    }

    /// Makes the descriptor what [`ZsDesc::new`] gives, field by field through its atomics:
    /// for memory that is reused as a descriptor while a stale reader may still load from it
    /// (a plain write of a whole `ZsDesc` would race with those loads). The caller publishes
    /// the descriptor afterwards with a release store.
    pub fn reset(&self) {
        let fresh = ZsDesc::new();
        self.first
            .store(fresh.first.load(Ordering::Relaxed), Ordering::Relaxed);
        self.zspage_lock.store(0, Ordering::Relaxed);
        self.movable_ops.store(0, Ordering::Relaxed);
        self.next
            .store(fresh.next.load(Ordering::Relaxed), Ordering::Relaxed);
        self.zspage.store(0, Ordering::Relaxed);
        self.first_obj_offset.store(0, Ordering::Relaxed);
        self.refcount
            .store(fresh.refcount.load(Ordering::Relaxed), Ordering::Relaxed);
        self.flags.store(0, Ordering::Relaxed);
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

/// Sets a fresh page up as a page of a zspage whose first page is `first_page`. `movable_ops`
/// is the backend's token for its registered movable operations (0: not movable).
pub(crate) fn init_page(
    d: &ZsDesc,
    owner: ZsPageRef,
    first_page: Pfn,
    is_first: bool,
    first_obj_offset: u32,
    movable_ops: u64,
) {
    d.zspage.store(owner.encode(), Ordering::Relaxed);
    d.first.store(first_page, Ordering::Relaxed);
    d.zspage_lock.store(0, Ordering::Relaxed);
    d.movable_ops.store(movable_ops, Ordering::Relaxed);
    if movable_ops != 0 {
        d.flags.fetch_or(PG_MOVABLE, Ordering::Relaxed);
    }
    d.next.store(NO_PAGE, Ordering::Relaxed);
    d.first_obj_offset
        .store(first_obj_offset, Ordering::Relaxed);
    if is_first {
        d.flags.fetch_or(PG_PRIVATE, Ordering::Relaxed);
    }
}

/// Clears everything zsmalloc set, before the page goes back to the frame allocator.
pub(crate) fn reset(d: &ZsDesc) {
    d.flags
        .fetch_and(!(PG_PRIVATE | PG_MOVABLE | PG_LOCKED), Ordering::Relaxed);
    d.zspage.store(0, Ordering::Relaxed);
    d.first.store(NO_PAGE, Ordering::Relaxed);
    d.zspage_lock.store(0, Ordering::Relaxed);
    d.next.store(NO_PAGE, Ordering::Relaxed);
    d.first_obj_offset.store(0, Ordering::Relaxed);
    d.movable_ops.store(0, Ordering::Relaxed);
}

/// The zspage a page belongs to, if any.
pub fn owner(d: &ZsDesc) -> Option<ZsPageRef> {
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

/// Ends the chain at this page (a zspage cut shorter).
pub(crate) fn clear_next(d: &ZsDesc) {
    d.next.store(NO_PAGE, Ordering::Relaxed);
}

/// The page after this one in its zspage.
pub fn next(d: &ZsDesc) -> Option<Pfn> {
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
pub fn first_obj_offset(d: &ZsDesc) -> u32 {
    d.first_obj_offset.load(Ordering::Relaxed)
}

/// The first page of the zspage this page belongs to.
pub fn first_page(d: &ZsDesc) -> Pfn {
    d.first.load(Ordering::Relaxed)
}

/// Points a page at its zspage's (new) first page.
pub(crate) fn set_first_page(d: &ZsDesc, first: Pfn) {
    d.first.store(first, Ordering::Relaxed);
}

/// True if the page is marked movable.
pub fn is_movable(d: &ZsDesc) -> bool {
    d.flags.load(Ordering::Relaxed) & PG_MOVABLE != 0
}

/// The movable-operations token a page was marked with (0 if none).
pub fn movable_ops(d: &ZsDesc) -> u64 {
    d.movable_ops.load(Ordering::Relaxed)
}

/// Marks the page isolated for migration (Linux: the page lock around `isolate_movable_page`);
/// false if it already was.
pub(crate) fn try_isolate(d: &ZsDesc) -> bool {
    d.flags.fetch_or(PG_LOCKED, Ordering::Acquire) & PG_LOCKED == 0
}

/// Clears the isolation mark.
pub(crate) fn clear_isolated(d: &ZsDesc) {
    d.flags.fetch_and(!PG_LOCKED, Ordering::Release);
}

/// True if the page is isolated for migration.
pub fn is_isolated(d: &ZsDesc) -> bool {
    d.flags.load(Ordering::Relaxed) & PG_LOCKED != 0
}

/// The zspage lock word's writer bit; the rest counts readers.
const ZSPAGE_WRITER: u64 = 1 << 63;

/// Takes the zspage lock (in the zspage's first page) for reading: a mapping. The caller
/// holds the pool's migrate lock for reading, so no writer can hold it.
pub(crate) fn zspage_read_lock(first: &ZsDesc) {
    let old = first.zspage_lock.fetch_add(1, Ordering::Acquire);
    debug_assert!(
        old & ZSPAGE_WRITER == 0,
        "zspage lock taken for reading while written: the migrate lock was not held"
    );
}

/// Releases a read hold of the zspage lock.
pub(crate) fn zspage_read_unlock(first: &ZsDesc) {
    let old = first.zspage_lock.fetch_sub(1, Ordering::Release);
    debug_assert!(
        old & !ZSPAGE_WRITER != 0,
        "zspage lock read-released when not held"
    );
}

/// Tries to take the zspage lock for writing (compaction, migration): fails if any object of
/// the zspage is mapped.
pub(crate) fn zspage_try_write_lock(first: &ZsDesc) -> bool {
    first
        .zspage_lock
        .compare_exchange(0, ZSPAGE_WRITER, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

/// Releases the write hold.
pub(crate) fn zspage_write_unlock(first: &ZsDesc) {
    let old = first.zspage_lock.swap(0, Ordering::Release);
    debug_assert_eq!(
        old, ZSPAGE_WRITER,
        "zspage lock write-released when not held"
    );
}

/// Moves the zspage lock word from an old first page to its replacement (migration of the
/// first page, which holds the lock for writing).
pub(crate) fn move_zspage_lock(from: &ZsDesc, to: &ZsDesc) {
    to.zspage_lock
        .store(from.zspage_lock.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Mappings currently holding the zspage lock (first page's descriptor), for checks.
pub(crate) fn zspage_readers(first: &ZsDesc) -> u64 {
    first.zspage_lock.load(Ordering::Relaxed) & !ZSPAGE_WRITER
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(d: &ZsDesc) -> [u64; 8] {
        [
            d.flags.load(Ordering::Relaxed),
            d.first.load(Ordering::Relaxed),
            d.zspage_lock.load(Ordering::Relaxed),
            d.movable_ops.load(Ordering::Relaxed),
            d.next.load(Ordering::Relaxed),
            d.zspage.load(Ordering::Relaxed),
            d.first_obj_offset.load(Ordering::Relaxed).into(),
            d.refcount.load(Ordering::Relaxed).into(),
        ]
    }

    /// Memory reused as a descriptor, whatever it held, reads as a fresh one after `reset`.
    #[test]
    fn a_reset_descriptor_reads_as_a_fresh_one_whatever_it_held() {
        let d = ZsDesc::new();
        init_page(&d, ZsPageRef { class: 7, id: 9 }, 1234, true, 88, 0x5000);
        d.flags.fetch_or(PG_LOCKED | 1 << 40, Ordering::Relaxed);
        d.refcount.store(3, Ordering::Relaxed);
        d.zspage_lock.store(17, Ordering::Relaxed);
        assert_ne!(fields(&d), fields(&ZsDesc::new()));
        d.reset();
        assert_eq!(fields(&d), fields(&ZsDesc::new()));
    }
}
