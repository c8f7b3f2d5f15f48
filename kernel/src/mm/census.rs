//! The frame census: every physical frame's owner, read from the memmap in frame order, as
//! a `zsmalloc::frame_map::FrameMap` (the runner draws it: `cargo run -- replay FILE
//! --pictures DIR`). Works in both memmap layouts, through [`FrameDesc`] alone.

use zsmalloc::frame_map::{FrameMap, FrameOwner};

use super::memmap::{self, FrameDesc, flags};

/// Takes the census at `point`. `is_zsmalloc` tells a zsmalloc page from any other allocated
/// frame (zsmalloc's backend knows its pages; the memmap does not).
///
/// Not under the buddy allocator's lock: the map grows on the kernel heap, which may need a
/// frame. Every word is read atomically, so a census taken while other CPUs allocate is safe
/// but may mix moments; take it where nothing else runs, as the replay's reports do.
pub fn take(point: &str, is_zsmalloc: impl Fn(FrameDesc) -> bool) -> FrameMap {
    let mm = memmap::get();
    let mut map = FrameMap::new(point, mm.layout().name());
    {
        let frames = mm.frames();
        // The owner of the block the frames being read belong to: a block's later frames
        // say nothing of their own (its first frame holds the block's state).
        let mut block = FrameOwner::Reserved;
        let mut pfn = 0;
        while pfn < frames {
            let d = mm
                .desc(pfn)
                .expect("every frame below frames() has a descriptor");
            if let Some(order) = d.free_order() {
                let n = (1u64 << order).min(frames - pfn);
                map.push(FrameOwner::Free(order as u8), n);
                pfn += n;
                continue;
            }
            let f = d.flags();
            let owner = if f & flags::RESERVED != 0 {
                FrameOwner::Reserved
            } else if f & flags::ISOLATED != 0 {
                FrameOwner::Isolated
            } else if f & flags::PAGE_TABLE != 0 {
                FrameOwner::PageTable
            } else if f & flags::HEAP != 0 {
                FrameOwner::Heap
            } else if d.is_allocated() {
                if is_zsmalloc(d) {
                    FrameOwner::Zsmalloc
                } else {
                    FrameOwner::Other
                }
            } else {
                // Inside the block last begun.
                map.push(block, 1);
                pfn += 1;
                continue;
            };
            block = owner;
            map.push(owner, 1);
            pfn += 1;
        }
    }
    map
}
