// STAFF ONLY: the hidden tests of labs 0, 1 and 2, run only by trusted grading (never exported)
//! Hidden tests of labs 0, 1 and 2: cases the visible tests leave out, so that a solution
//! written to pass only those loses points here. Lab 0: every page of the kernel's image and
//! heap, and the edges of huge pages and of the canonical halves. Lab 1: merging through several orders,
//! a buddy held back in a hole of memory, frees inside an allocated block. Lab 2: every
//! access's entry flags, and one frame mapped at both pages.

use x86_64::structures::paging::PageTableFlags;

use super::buddy::{self, FrameBlock, FrameError};
use super::memmap::FRAME_SIZE;
use super::paging;
use super::window::Access;
use crate::arch::probe;
use crate::percpu;

use super::ktests::aligned_run_of_single_frames;

fn freed_frames_merge_upward_through_every_order_they_can() {
    let before = buddy::stats();
    let start = aligned_run_of_single_frames(3);
    // Freed in an order that leaves each buddy allocated until its partner comes back.
    for (i, offset) in [5u64, 0, 3, 6, 1, 4, 2].into_iter().enumerate() {
        buddy::free_raw(start + offset, 0).expect("free a held frame");
        let (_, order) = buddy::with(|b| b.free_block_containing(start + offset))
            .expect("a freed frame is free");
        let expected = match i {
            0..=3 => 0, // 5, 0, 3, 6: no buddy free yet
            4 => 1,     // 1 joins 0: [0, 2)
            5 => 1,     // 4 joins 5: [4, 6)
            _ => 2,     // 2 joins 3, then [0, 2): [0, 4)
        };
        assert_eq!(
            order, expected,
            "after freeing frame {offset} of the run at {start:#x}, its block has order {order}, expected {expected}"
        );
    }
    buddy::free_raw(start + 7, 0).expect("free the last frame");
    let (head, order) = buddy::with(|b| b.free_block_containing(start)).expect("free");
    assert!(
        order >= 3 && head <= start,
        "the eight frames at {start:#x} did not merge into one block: ({head:#x}, order {order})"
    );
    assert_eq!(buddy::stats(), before, "the free lists are as before");
}

fn a_buddy_held_back_in_a_hole_never_merges() {
    let before = buddy::stats();
    let start = aligned_run_of_single_frames(2);
    // Frames start+2 and start+3 become a hole: held back, not free blocks.
    buddy::with(|b| b.isolate_range(start + 2, start + 4)).expect("no other range is isolated");
    buddy::free_raw(start + 2, 0).expect("free into the hole");
    buddy::free_raw(start + 3, 0).expect("free into the hole");
    buddy::free_raw(start, 0).expect("free");
    buddy::free_raw(start + 1, 0).expect("free");
    let merged = buddy::with(|b| b.free_block_containing(start));
    buddy::with(|b| b.end_isolation());
    assert_eq!(
        merged,
        Some((start, 1)),
        "a block merged with a buddy held back in a hole (frames {:#x}..{:#x})",
        start + 2,
        start + 4
    );
    assert_eq!(
        buddy::stats(),
        before,
        "the hole's frames came back and merged"
    );
}

fn a_frame_inside_an_allocated_block_is_no_block_to_free() {
    let block = FrameBlock::alloc(2).expect("an order-2 block");
    let (pfn, _) = block.into_raw();
    let snapshot = buddy::stats();
    for (inside, order) in [(pfn + 1, 0), (pfn + 2, 1), (pfn + 3, 0)] {
        assert_eq!(
            buddy::free_raw(inside, order),
            Err(FrameError::DoubleFree(inside)),
            "freeing frame {inside:#x} inside the allocated block at {pfn:#x}"
        );
    }
    assert_eq!(
        buddy::free_raw(pfn + 2, 2),
        Err(FrameError::Misaligned {
            pfn: pfn + 2,
            order: 2
        })
    );
    assert_eq!(
        buddy::stats(),
        snapshot,
        "a refused free changed the allocator"
    );
    buddy::free_raw(pfn, 2).expect("the block itself frees");
}

/// The flags of the leaf entry that maps `addr`.
fn entry_flags(addr: u64) -> (PageTableFlags, u64) {
    let entry = paging::leaf_entry(addr).expect("the window's page tables exist");
    // SAFETY: a prebuilt leaf entry of this CPU's window, read while this CPU holds the
    // window mapped; nothing else writes it.
    let e = unsafe { &*entry };
    (e.flags(), e.addr().as_u64())
}

fn every_access_maps_present_never_executable_and_writable_only_to_write() {
    let a = FrameBlock::alloc_frame().unwrap();
    let b = FrameBlock::alloc_frame().unwrap();
    let window = &percpu::current().window;
    for access in [Access::ReadOnly, Access::WriteOnly, Access::ReadWrite] {
        let m = window.map(a.pfn(), b.pfn(), access).unwrap();
        for (page, frame) in [(0, &a), (1, &b)] {
            let (flags, phys) = entry_flags(m.addr() + page * FRAME_SIZE);
            assert_eq!(
                phys,
                frame.pfn() * FRAME_SIZE,
                "{access:?}: page {page}'s frame"
            );
            assert!(
                flags.contains(PageTableFlags::PRESENT),
                "{access:?}: page {page} not present"
            );
            assert!(
                flags.contains(PageTableFlags::NO_EXECUTE),
                "{access:?}: page {page} is executable ({flags:?})"
            );
            assert_eq!(
                flags.contains(PageTableFlags::WRITABLE),
                access != Access::ReadOnly,
                "{access:?}: page {page} ({flags:?})"
            );
        }
        if access == Access::WriteOnly {
            // SAFETY: the test's own frame, mapped writable.
            unsafe { probe::write_u8(m.addr() + 10, 0x77) }.expect("a write-only map writes");
        }
        let addr = m.addr();
        drop(m);
        for page in 0..2 {
            let (flags, _) = entry_flags(addr + page * FRAME_SIZE);
            assert!(
                !flags.contains(PageTableFlags::PRESENT),
                "page {page} stays mapped after unmap"
            );
        }
    }
    // SAFETY: the test owns the frame.
    assert_eq!(unsafe { *((a.addr() + 10) as *const u8) }, 0x77);
}

fn one_frame_mapped_at_both_pages_shows_itself_twice() {
    let a = FrameBlock::alloc_frame().unwrap();
    let window = &percpu::current().window;
    let m = window.map(a.pfn(), a.pfn(), Access::ReadWrite).unwrap();
    // SAFETY: the test's own frame, mapped writable at both pages.
    unsafe { probe::write_u8(m.addr() + FRAME_SIZE + 123, 0x3c) }.expect("write through page 1");
    assert_eq!(
        probe::read_u8(m.addr() + 123),
        Ok(0x3c),
        "page 0 shows the same frame"
    );
    drop(m);
}

fn translate_agrees_with_the_crate_page_by_page_over_the_kernel_image_and_heap() {
    use super::translate::translate;
    use super::translate_ktests::crate_walk;
    let code = translate_agrees_with_the_crate_page_by_page_over_the_kernel_image_and_heap
        as *const () as u64;
    let heap = alloc::vec![0u8; 64 * 1024];
    let starts = [code & !0xfff, heap.as_ptr() as u64 & !0xfff];
    let mut mapped = 0;
    for start in starts {
        for page in 0..1024u64 {
            for va in [
                start.wrapping_sub(2 << 20) + page * 4096,
                start + page * 4096 + 4095,
            ] {
                let want = crate_walk(va).map(|w| w.0);
                assert_eq!(translate(va), want, "{va:#x}");
                mapped += usize::from(want.is_some());
            }
        }
    }
    assert!(mapped > 500, "only {mapped} mapped pages looked at");
    drop(heap);
}

fn translate_handles_the_last_byte_of_huge_pages_and_the_canonical_edges() {
    use super::memmap;
    use super::translate::translate;
    use super::translate_ktests::crate_walk;
    let mm = memmap::get();
    for pfn in [0x1ffu64, 0x3ff, 0x5ff, (mm.frames() - 1) & !0x1ff] {
        for va in [
            mm.frame_addr(pfn) + FRAME_SIZE - 1,
            mm.frame_addr(pfn) + FRAME_SIZE - 8,
        ] {
            assert_eq!(translate(va), crate_walk(va).map(|w| w.0), "{va:#x}");
        }
    }
    for va in [
        0x0000_7fff_ffff_ffffu64,
        0xffff_8000_0000_0000,
        0xffff_ffff_ffff_f000,
        0xffff_ffff_ffff_ffff,
        0x0000_7fff_ffff_f000,
    ] {
        assert_eq!(translate(va), crate_walk(va).map(|w| w.0), "{va:#x}");
    }
}

fn a_refused_map_leaves_the_window_free_and_interrupts_as_they_were() {
    let window = &percpu::current().window;
    let ok = FrameBlock::alloc_frame().unwrap();
    x86_64::instructions::interrupts::enable();
    let refused = window.map(ok.pfn(), 0, Access::ReadWrite).err();
    let on_after_refusal = x86_64::instructions::interrupts::are_enabled();
    let m = window.map(ok.pfn(), ok.pfn(), Access::ReadWrite);
    let on_while_mapped = x86_64::instructions::interrupts::are_enabled();
    drop(m);
    let on_after_unmap = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    assert_eq!(refused, Some(super::window::WindowError::Reserved(0)));
    assert!(on_after_refusal, "a refused map left interrupts off");
    assert!(!on_while_mapped, "interrupts on while mapped");
    assert!(on_after_unmap, "unmap did not restore interrupts");
}

fn the_ring_takes_a_new_slot_for_every_map_until_it_wraps_once() {
    use super::window_ring::SLOTS;
    let ring = &percpu::current().ring;
    let (a, b) = (
        FrameBlock::alloc_frame().unwrap(),
        FrameBlock::alloc_frame().unwrap(),
    );
    // Run the ring to a wrap first, so that the next SLOTS maps are one full round.
    let start = ring.wraps();
    while ring.wraps() == start {
        drop(ring.map(a.pfn(), b.pfn(), Access::ReadOnly).unwrap());
    }
    let mut seen = alloc::vec::Vec::with_capacity(SLOTS);
    for _ in 0..SLOTS - 1 {
        let m = ring.map(a.pfn(), b.pfn(), Access::ReadOnly).unwrap();
        seen.push(m.addr());
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        seen.len(),
        "a slot was taken twice within one round"
    );
    assert_eq!(ring.wraps(), start + 1, "no flush within a round");
    drop(ring.map(a.pfn(), b.pfn(), Access::ReadOnly).unwrap());
    drop(ring.map(a.pfn(), b.pfn(), Access::ReadOnly).unwrap());
    assert_eq!(ring.wraps(), start + 2, "the round's end wraps once");
}

crate::ktests! {
    translate_agrees_with_the_crate_page_by_page_over_the_kernel_image_and_heap { lab: 0, points: 15, hidden: true },
    translate_handles_the_last_byte_of_huge_pages_and_the_canonical_edges { lab: 0, points: 15, hidden: true },
    freed_frames_merge_upward_through_every_order_they_can { lab: 1, points: 15, hidden: true },
    a_buddy_held_back_in_a_hole_never_merges { lab: 1, points: 15, hidden: true },
    a_frame_inside_an_allocated_block_is_no_block_to_free { lab: 1, points: 10, hidden: true },
    every_access_maps_present_never_executable_and_writable_only_to_write { lab: 2, points: 20, hidden: true },
    one_frame_mapped_at_both_pages_shows_itself_twice { lab: 2, points: 10, hidden: true },
    a_refused_map_leaves_the_window_free_and_interrupts_as_they_were { lab: 2, points: 10, hidden: true },
    the_ring_takes_a_new_slot_for_every_map_until_it_wraps_once { lab: 2, points: 10, hidden: true },
}
