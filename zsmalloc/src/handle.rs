//! Handles: what `malloc` returns. A handle never changes while its object lives, even when
//! compaction or migration moves the object, because it names a *slot* and the slot holds the
//! object's current location (`obj`) - the indirection Linux added in 2015 for compaction.
//!
//! Raw layout (64 bits): `pool tag:12 | class:8 | generation:20 | slot:24`.
//! * the pool tag makes another pool's handles recognisable (foreign handle); no two live
//!   pools share a tag;
//! * the class is the one the object was placed in (objects never change class);
//! * the generation changes each time a slot is reused, so a stale handle (double free,
//!   use after free) is caught unless the slot was reused a multiple of 2^20 (1,048,576)
//!   times since; and a freed slot waits behind others before reuse (`slots`), so that
//!   takes far more than a million frees.
//! * 24 bits of slot index cover the slot table's 16 Mi slots.
//!
//! Locations (`obj`) are Linux's: `pfn << OBJ_INDEX_BITS | index in zspage`, where `pfn` is
//! the page the object starts in.

use crate::backend::Pfn;

/// Bits of the object index in an encoded location.
pub const OBJ_INDEX_BITS: u32 = 24;
const OBJ_INDEX_MASK: u64 = (1 << OBJ_INDEX_BITS) - 1;

const TAG_BITS: u32 = 12;
const GEN_BITS: u32 = 20;
/// Bits of the slot index.
pub const SLOT_BITS: u32 = 24;
/// Largest pool tag.
pub const MAX_TAG: u16 = (1 << TAG_BITS) - 1;
/// Generations wrap at this value.
pub const GEN_MASK: u32 = (1 << GEN_BITS) - 1;
/// Largest slot index.
pub const MAX_SLOT: u32 = (1 << SLOT_BITS) - 1;

/// An allocated object's handle. Opaque; copyable; meaningful only to the pool that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(u64);

/// A handle taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandleParts {
    pub tag: u16,
    pub class: u8,
    pub generation: u32,
    pub slot: u32,
}

impl Handle {
    pub(crate) fn new(p: HandleParts) -> Handle {
        debug_assert!(
            p.tag != 0 && p.tag <= MAX_TAG && p.generation <= GEN_MASK && p.slot <= MAX_SLOT
        );
        Handle(
            (p.tag as u64) << 52
                | (p.class as u64) << 44
                | (p.generation as u64) << SLOT_BITS
                | p.slot as u64,
        )
    }

    pub(crate) fn parts(self) -> HandleParts {
        HandleParts {
            tag: (self.0 >> 52) as u16,
            class: (self.0 >> 44) as u8,
            generation: (self.0 >> SLOT_BITS) as u32 & GEN_MASK,
            slot: self.0 as u32 & MAX_SLOT,
        }
    }

    /// The slot the handle names (for diagnostics and tests: equal slot indices with different
    /// generations are two lives of one slot).
    pub fn slot_index(self) -> u32 {
        self.parts().slot
    }

    /// The handle as a number (to store it elsewhere).
    pub fn to_raw(self) -> u64 {
        self.0
    }

    /// A handle from a number. Any value is accepted here; the pool checks it on use and
    /// refuses values it did not hand out.
    pub fn from_raw(raw: u64) -> Handle {
        Handle(raw)
    }
}

/// Encodes a location.
pub(crate) fn encode_obj(pfn: Pfn, index: u32) -> u64 {
    debug_assert!((index as u64) <= OBJ_INDEX_MASK);
    pfn << OBJ_INDEX_BITS | index as u64
}

/// Decodes a location into (pfn of the page the object starts in, index in the zspage).
pub(crate) fn decode_obj(obj: u64) -> (Pfn, u32) {
    (obj >> OBJ_INDEX_BITS, (obj & OBJ_INDEX_MASK) as u32)
}

/// The in-object header of an allocated (non-huge) object: its slot, with the allocated tag
/// in bit 0. A free object holds a freelist link there instead, with bit 0 clear.
pub(crate) fn header_for_slot(slot: u32) -> u64 {
    (slot as u64) << 1 | 1
}

/// The slot an allocated object's header names, or `None` if the word is a freelist link
/// (or not a header at all: a header's bits above the slot are always zero).
pub(crate) fn slot_from_header(word: u64) -> Option<u32> {
    (word & 1 == 1 && word >> 33 == 0).then_some((word >> 1) as u32)
}

/// The freelist link word pointing at object `next` (or the end of the list).
pub(crate) fn link_word(next: Option<u32>) -> u64 {
    (next.map_or(u32::MAX as u64, u64::from)) << 1
}

/// The next free object a link word points to.
pub(crate) fn link_target(word: u64) -> Option<u32> {
    debug_assert!(word & 1 == 0, "a freelist link has the allocated tag clear");
    match (word >> 1) as u32 {
        u32::MAX => None,
        n => Some(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn handles_round_trip_through_their_parts() {
        for p in [
            HandleParts {
                tag: 1,
                class: 0,
                generation: 0,
                slot: 0,
            },
            HandleParts {
                tag: MAX_TAG,
                class: 255,
                generation: GEN_MASK,
                slot: MAX_SLOT,
            },
            HandleParts {
                tag: 77,
                class: 118,
                generation: 1234,
                slot: 987_654,
            },
        ] {
            let h = Handle::new(p);
            assert_eq!(h.parts(), p);
            assert_eq!(Handle::from_raw(h.to_raw()), h);
        }
        assert_ne!(
            Handle::new(HandleParts {
                tag: 1,
                class: 0,
                generation: 0,
                slot: 0
            })
            .to_raw(),
            0
        );
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn locations_round_trip_and_keep_pfn_and_index_apart() {
        for (pfn, idx) in [
            (0, 0),
            (1, 1),
            ((1 << 40) - 1, (1 << 24) - 1),
            (0x12345, 2047),
        ] {
            assert_eq!(decode_obj(encode_obj(pfn, idx)), (pfn, idx));
        }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure logic, no unsafe code to check: runs natively only"
    )]
    fn headers_and_links_are_told_apart_by_the_allocated_tag() {
        assert_eq!(slot_from_header(header_for_slot(42)), Some(42));
        assert_eq!(slot_from_header(link_word(Some(42))), None);
        assert_eq!(link_target(link_word(Some(7))), Some(7));
        assert_eq!(link_target(link_word(None)), None);
    }
}
