//! The memdesc layout's 8-byte frame descriptor: a type tag in the low 3 bits and a payload
//! in the rest (the memdesc proposal's "one word per page: what it is and where its owner's
//! descriptor lives"). What each tag means:
//!
//! | tag          | payload                    | the frame is                              |
//! |--------------|----------------------------|-------------------------------------------|
//! | `RESERVED`   | 0                          | never the allocator's (firmware, kernel)  |
//! | `FREE`       | block order                | the first frame of a free buddy block     |
//! | `TAIL`       | 0                          | inside a block whose first frame says all |
//! | `ISOLATED`   | 0                          | free, held back from a range being emptied |
//! | `ALLOCATED`  | 0                          | the first frame of an allocated block     |
//! | `PAGE_TABLE` | 0                          | a page table                              |
//! | `HEAP`       | 0                          | kernel heap                               |
//! | `ZSMALLOC`   | address of its zsdesc      | a zsmalloc page                           |
//!
//! A zsdesc is 8-byte aligned, so its address and the tag share the word. A word of 0 is a
//! reserved frame, so building the memmap is one fill.

use core::sync::atomic::{AtomicU64, Ordering};

/// Tag bits of the word.
const TAG_MASK: u64 = 0b111;

/// What a frame is, in the memdesc layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Never the allocator's.
    Reserved = 0,
    /// First frame of a free buddy block; the payload is its order.
    Free = 1,
    /// Inside a block (free or allocated) whose first frame holds the block's state.
    Tail = 2,
    /// Free, held back while its range is emptied.
    Isolated = 3,
    /// First frame of an allocated block with no owner descriptor.
    Allocated = 4,
    /// A page table.
    PageTable = 5,
    /// Kernel heap.
    Heap = 6,
    /// A zsmalloc page; the payload is the address of its zsdesc.
    Zsmalloc = 7,
}

/// One frame's word.
pub type Word = AtomicU64;

/// A word's tag.
pub fn tag(w: u64) -> Tag {
    match w & TAG_MASK {
        0 => Tag::Reserved,
        1 => Tag::Free,
        2 => Tag::Tail,
        3 => Tag::Isolated,
        4 => Tag::Allocated,
        5 => Tag::PageTable,
        6 => Tag::Heap,
        _ => Tag::Zsmalloc,
    }
}

/// A word's payload (the order of a free block, the zsdesc's address of a zsmalloc page).
pub fn payload(w: u64) -> u64 {
    match tag(w) {
        Tag::Zsmalloc => w & !TAG_MASK,
        _ => w >> 3,
    }
}

/// The word of a frame with `tag` and no payload.
pub const fn plain(tag: Tag) -> u64 {
    tag as u64
}

/// The word of the first frame of a free block of `order`.
pub fn free(order: usize) -> u64 {
    (order as u64) << 3 | Tag::Free as u64
}

/// The word of a zsmalloc page whose zsdesc is at `addr` (8-byte aligned).
pub fn zsmalloc(addr: u64) -> u64 {
    assert!(
        addr & TAG_MASK == 0 && addr != 0,
        "a zsdesc is 8-byte aligned"
    );
    addr | Tag::Zsmalloc as u64
}

/// Reads a word. Acquire (a plain load on x86): if the word names an owner descriptor, the
/// descriptor's fields are seen as they were when [`publish`] stored the word.
pub fn load(w: &Word) -> u64 {
    w.load(Ordering::Acquire)
}

/// Writes a word. Relaxed: the lock that orders a frame's state is its owner's.
pub fn store(w: &Word, v: u64) {
    w.store(v, Ordering::Relaxed)
}

/// Writes a word that names a descriptor initialised just before (release; a plain store on
/// x86), so that a reader that loads the word sees the descriptor's fields.
pub fn publish(w: &Word, v: u64) {
    w.store(v, Ordering::Release)
}
