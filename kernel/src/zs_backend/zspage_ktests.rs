//! Tests of zspages on real frames (lab 4, `docs/labs/lab4-zspages.md`): where each object of
//! a zspage is, the first-object offset every page records, the in-place freelist, and objects
//! that span two pages.

use alloc::vec::Vec;

use zsmalloc::class::{HANDLE_SIZE, PAGE_SIZE};
use zsmalloc::seeded::pattern;
use zsmalloc::zsdesc;
use zsmalloc::{Backend, Handle, MapMode, MapPath, Pool, PoolConfig};

use super::KernelBackend;

/// Slots of this size make two-page zspages of five objects at chain 8: objects 0 and 1 in
/// page 0, object 2 across both pages, objects 3 and 4 in page 1.
const SLOT: usize = 1632;

fn pool() -> Pool<KernelBackend> {
    Pool::new("lab4", KernelBackend::new(), PoolConfig::default())
}

fn fill_one_zspage(p: &Pool<KernelBackend>) -> Vec<Handle> {
    (0..5)
        .map(|_| p.malloc(SLOT - HANDLE_SIZE).unwrap())
        .collect()
}

fn free_all(p: &Pool<KernelBackend>, hs: Vec<Handle>) {
    for h in hs {
        p.free(h).unwrap();
    }
}

fn a_fresh_zspage_hands_out_its_objects_in_index_order() {
    let p = pool();
    let hs = fill_one_zspage(&p);
    let at: Vec<_> = hs.iter().map(|&h| p.location(h).unwrap()).collect();
    crate::pictures::show_if_failing(
        at.iter().enumerate().any(|(i, l)| l.index != i as u32),
        &p,
        "after-five-mallocs",
    );
    let (page0, page1) = (at[0].pfn, at[3].pfn);
    assert_ne!(page0, page1, "a 1632-byte class's zspage has two pages");
    for (i, l) in at.iter().enumerate() {
        assert_eq!(l.index, i as u32, "the {i}-th object allocated");
        assert_eq!(
            l.data_offset,
            i * SLOT % PAGE_SIZE + HANDLE_SIZE,
            "object {i}'s bytes start after its header"
        );
        let (pfn, second) = match i {
            0 | 1 => (page0, None),
            2 => (page0, Some(page1)),
            _ => (page1, None),
        };
        assert_eq!(
            (l.pfn, l.second_page),
            (pfn, second),
            "object {i}: its page, and the next page if it spans"
        );
    }
    p.check_invariants().unwrap();
    free_all(&p, hs);
    assert_eq!(p.total_pages(), 0);
}

fn every_page_records_the_offset_of_its_first_object() {
    let p = pool();
    // Classes whose zspages have several pages at chain 8 (48: 3 pages, 720: 3, 1632: 2,
    // 3264: 4).
    for size in [48, 720, SLOT, 3264] {
        let c = p.classes().classes[p.classes().class_for(size - HANDLE_SIZE)];
        assert_eq!(c.size, size);
        let h = p.malloc(size - HANDLE_SIZE).unwrap();
        let mut pfn = p.location(h).unwrap().pfn;
        // Object starts, walked one by one: the first at or after each page's start.
        let starts: Vec<usize> = (0..c.objs_per_zspage).map(|idx| idx * size).collect();
        for i in 0..c.pages_per_zspage {
            let first = starts
                .iter()
                .find(|&&s| s >= i * PAGE_SIZE)
                .expect("every page of a zspage has an object starting in it");
            let want = first - i * PAGE_SIZE;
            let d = p.backend().desc(pfn);
            assert_eq!(
                zsdesc::first_obj_offset(d) as usize,
                want,
                "class {size}, page {i}: the first object starting in it"
            );
            if i + 1 < c.pages_per_zspage {
                pfn = zsdesc::next(d).expect("the chain goes on");
            }
        }
        p.free(h).unwrap();
    }
}

fn the_freelist_gives_back_the_last_freed_object_first() {
    let p = pool();
    let mut hs = fill_one_zspage(&p);
    let index = |h: Handle| p.location(h).unwrap().index;
    let object_3 = hs.remove(3);
    let object_1 = hs.remove(1);
    assert_eq!((index(object_1), index(object_3)), (1, 3));
    p.free(object_1).unwrap();
    p.free(object_3).unwrap();
    p.check_invariants().unwrap();
    let again: Vec<Handle> = (0..2)
        .map(|_| p.malloc(SLOT - HANDLE_SIZE).unwrap())
        .collect();
    crate::pictures::show_if_failing(
        (index(again[0]), index(again[1])) != (3, 1) || p.total_pages() != 2,
        &p,
        "after-two-mallocs",
    );
    assert_eq!(
        (index(again[0]), index(again[1])),
        (3, 1),
        "the freelist is a stack: the last object freed comes back first"
    );
    assert_eq!(p.total_pages(), 2, "no new zspage while this one had room");
    p.check_invariants().unwrap();
    hs.extend(again);
    free_all(&p, hs);
}

/// Through `write`, `read` and a mapping through this CPU's window (lab 2); the copy path
/// is lab 5's.
fn an_object_that_spans_two_pages_keeps_its_bytes_across_them() {
    {
        let path = MapPath::Window;
        let p = pool();
        let hs = fill_one_zspage(&p);
        let spanning = hs[2];
        assert!(p.location(spanning).unwrap().second_page.is_some());
        // Its neighbours, one in each page, hold bytes of their own.
        let neighbour_bytes = [
            (hs[1], pattern(0x11, SLOT - HANDLE_SIZE)),
            (hs[3], pattern(0x33, SLOT - HANDLE_SIZE)),
        ];
        for (h, b) in &neighbour_bytes {
            p.write(*h, b).unwrap();
        }
        let bytes = pattern(0x1ab4, SLOT - HANDLE_SIZE);
        p.write(spanning, &bytes).unwrap();
        let mut back = alloc::vec![0u8; SLOT];
        assert_eq!(p.read(spanning, &mut back), Ok(SLOT - HANDLE_SIZE));
        assert!(back[..bytes.len()] == bytes[..], "{path:?}: read back");
        let mapped = p.map(spanning, MapMode::ReadOnly).unwrap();
        assert!(mapped[..] == bytes[..], "{path:?}: mapped");
        drop(mapped);
        for (h, b) in &neighbour_bytes {
            let m = p.map(*h, MapMode::ReadOnly).unwrap();
            assert!(
                m[..] == b[..],
                "{path:?}: a neighbour of the spanning object changed"
            );
        }
        free_all(&p, hs);
    }
}

/// Freeing the last object of a zspage gives every page of its chain back to the frame
/// allocator, in every kind of class (one page, several, huge).
fn freeing_every_object_gives_every_page_of_every_kind_of_zspage_back() {
    let p = pool();
    // 48: 3-page zspages of 256 objects; 1632: 2 pages; 3264: 4 pages; 4000: huge.
    let fill = || {
        let mut live = Vec::new();
        for size in [48, SLOT, 3264, 4000 + HANDLE_SIZE] {
            for _ in 0..7 {
                live.push(p.malloc(size - HANDLE_SIZE).unwrap());
            }
        }
        live
    };
    // A first round grows the pool's own tables (on the heap), so that the frames counted
    // next are the zspages' alone.
    for h in fill() {
        p.free(h).unwrap();
    }
    let frames_before = crate::mm::buddy::stats().free_frames;
    let live = fill();
    let pages = p.pages();
    assert_eq!(
        pages.len(),
        3 + 2 * 2 + 4 * 2 + 7,
        "pages of the zspages: {pages:x?}"
    );
    for pfn in &pages {
        assert!(
            zsdesc::owner(p.backend().desc(*pfn)).is_some(),
            "page {pfn:#x} names its zspage"
        );
    }
    for (i, h) in live.into_iter().enumerate() {
        p.free(h).unwrap();
        p.check_invariants()
            .unwrap_or_else(|e| panic!("after {} frees: {e}", i + 1));
    }
    assert_eq!(p.total_pages(), 0, "the pool holds no page");
    assert!(p.pages().is_empty());
    assert_eq!(
        crate::mm::buddy::stats().free_frames,
        frames_before,
        "every frame went back to the allocator"
    );
}

crate::ktests! {
    // Lab 4: zspages (docs/labs/lab4-zspages.md).
    a_fresh_zspage_hands_out_its_objects_in_index_order { lab: 4, points: 15 },
    every_page_records_the_offset_of_its_first_object { lab: 4, points: 15 },
    the_freelist_gives_back_the_last_freed_object_first { lab: 4, points: 15 },
    an_object_that_spans_two_pages_keeps_its_bytes_across_them { lab: 4, points: 15 },
    freeing_every_object_gives_every_page_of_every_kind_of_zspage_back { lab: 4, points: 20 },
}
