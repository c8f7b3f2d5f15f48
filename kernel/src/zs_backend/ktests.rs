//! zsmalloc on the real machine: real frames from the buddy allocator, descriptors in the
//! memmap, spanning objects through the real PTE window (or the copy path).

use alloc::vec::Vec;

use zsmalloc::class::{HANDLE_SIZE, MAX_ALLOC_SIZE};
use zsmalloc::model;
use zsmalloc::seeded::pattern;
use zsmalloc::zsdesc;
use zsmalloc::{Backend, Error, Handle, MapMode, MapPath, Pool, PoolConfig};

use super::{KernelBackend, KernelRanges, MovablePool, ZSDESCS};
use crate::mm::buddy;
use crate::mm::memmap::{self, flags};
use crate::mm::migrate::{self, RangeError, Refusal};
use crate::percpu;

fn pool(path: MapPath) -> Pool<KernelBackend> {
    let config = PoolConfig {
        map_path: path,
        ..PoolConfig::default()
    };
    Pool::new("ktest", KernelBackend::new(), config)
}

/// Checks that the pool holds exactly the frames it counts, then drops it and checks that
/// every one of them went back to the buddy allocator. (Comparing free-frame counts across a
/// whole test would not work: the kernel heap may grow meanwhile, and it never shrinks.)
fn drop_returning_frames(p: Pool<KernelBackend>) {
    let held = p.backend().frames_held();
    assert_eq!(
        held,
        p.total_pages() as u64,
        "the backend and the pool disagree on frames held"
    );
    let (free, cache) = (buddy::stats().free_frames, super::ZSDESCS.stats().frames);
    drop(p);
    let after = buddy::stats().free_frames;
    // In the memdesc memmap the descriptor cache may give blocks back too.
    let cache_gave = cache - super::ZSDESCS.stats().frames;
    assert_eq!(
        after,
        free + held + cache_gave,
        "dropping the pool must give back every frame"
    );
}

/// A pool filled past what the descriptor cache held, then dropped: the buddy allocator ends
/// with the free frames it had before, the cache's new blocks included (memdesc memmap; in
/// the wide memmap there is no cache, and the same holds). The first round lets the kernel
/// heap grow to what the test needs (the heap never shrinks); the second is measured.
fn a_filled_and_dropped_pool_gives_every_frame_back_descriptors_included() {
    let n = 3000;
    let mut handles = Vec::with_capacity(n);
    for round in 0..2 {
        let (before, cache_before) = (buddy::stats().free_frames, super::ZSDESCS.stats());
        let p = pool(MapPath::Window);
        handles.extend((0..n).map(|_| p.malloc(3000).unwrap()));
        if memmap::get().layout() == memmap::Layout::Memdesc {
            assert!(
                super::ZSDESCS.stats().frames > cache_before.frames,
                "the fill grew the descriptor cache"
            );
        }
        handles.clear();
        drop(p);
        let after = buddy::stats().free_frames;
        crate::println!(
            "  round {round}: {before} free frames before, {after} after; descriptor cache {} frames",
            super::ZSDESCS.stats().frames
        );
        if round == 1 {
            assert_eq!(after, before, "frames lost to the filled and dropped pool");
        }
    }
}

fn zsdesc_overlay_writes_the_memmap_entries() {
    use core::sync::atomic::Ordering::Relaxed;
    let p = pool(MapPath::Window);
    // Two-page zspages of 1632-byte slots: object 0 starts the zspage, object 2 spans.
    let hs: Vec<Handle> = (0..5)
        .map(|_| p.malloc(1632 - HANDLE_SIZE).unwrap())
        .collect();
    let first = p.location(hs[0]).unwrap();
    let spanning = p.location(hs[2]).unwrap();
    let second_page = spanning
        .second_page
        .expect("object 2 of a 1632-byte class spans");
    let mm = memmap::get();
    let d0 = mm.desc(first.pfn).unwrap();
    let d1 = mm.desc(second_page).unwrap();
    assert!(
        d0.has(flags::PRIVATE),
        "the first page of a zspage carries PG_private"
    );
    assert!(!d1.has(flags::PRIVATE));
    match (d0.wide(), d1.wide()) {
        (Some(w0), Some(w1)) => {
            // The chain runs through the memmap's index field, the zspage through private,
            // and the first object offset through page_type.
            assert_eq!(w0.index.load(Relaxed), second_page);
            assert_ne!(w0.private.load(Relaxed), 0);
            assert_eq!(w1.page_type.load(Relaxed), 3 * 1632 - 4096);
        }
        _ => {
            // Memdesc: each word points at a zsdesc of its own, from the cache.
            let (a0, a1) = (d0.zsdesc_addr().unwrap(), d1.zsdesc_addr().unwrap());
            assert_ne!(a0, a1);
            assert!(core::ptr::eq(p.backend().desc(first.pfn), a0 as *const _));
            assert!(ZSDESCS.stats().in_use >= 2);
        }
    }
    // zsmalloc's view, the same in both layouts.
    let z1 = p.backend().desc(second_page);
    assert_eq!(zsdesc::next(p.backend().desc(first.pfn)), Some(second_page));
    assert_eq!(zsdesc::first_obj_offset(z1), 3 * 1632 - 4096);
    assert_eq!(zsdesc::first_page(z1), first.pfn);
    let in_use = ZSDESCS.stats().in_use;
    for h in hs {
        p.free(h).unwrap();
    }
    assert!(!d0.has(flags::PRIVATE), "free must reset the descriptor");
    match d0.wide() {
        Some(w0) => assert_eq!(
            w0.private.load(Relaxed),
            0,
            "free must reset the descriptor"
        ),
        None => {
            assert_eq!(
                d0.zsdesc_addr(),
                None,
                "the freed page's word names no zsdesc"
            );
            assert_eq!(ZSDESCS.stats().in_use, in_use - 2, "both zsdescs went back");
        }
    }
    assert_eq!(
        p.backend().frames_held(),
        0,
        "freeing every object frees every zspage"
    );
    drop_returning_frames(p);
}

/// Every class at every page-boundary offset it produces, through the window or the copy
/// path: one full zspage per class, distinct bytes in each object, read back every way; a
/// spanning object must be shown through this CPU's window exactly on a window pool.
fn every_class_at_every_offset(path: MapPath) {
    let p = pool(path);
    let window = percpu::current().window.base();
    let expected: usize = p.classes().classes.iter().map(model::spanning_slots).sum();
    let check_window = |h: Handle| {
        let m = p
            .map(h, MapMode::ReadOnly)
            .map_err(|e| alloc::format!("map: {e}"))?;
        let addr = m.as_ptr() as u64;
        let through_window = (window..window + 8192).contains(&addr);
        if through_window != (path == MapPath::Window) {
            return Err(alloc::format!(
                "{path:?}: spanning object mapped at {addr:#x}"
            ));
        }
        Ok(())
    };
    let spanning = model::every_class_round_trip(&p, |_| true, check_window)
        .unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert_eq!(spanning, expected, "spanning objects exercised");
    drop_returning_frames(p);
}

fn every_class_at_every_offset_through_the_window() {
    every_class_at_every_offset(MapPath::Window);
}

fn every_class_at_every_offset_through_the_copy_path() {
    every_class_at_every_offset(MapPath::Copy);
}

fn out_of_memory_at_the_kth_frame_fails_cleanly_for_every_k() {
    // The body is the host test's (`model::out_of_memory_at_k`), here on real frames.
    for k in 0..24 {
        let p = pool(MapPath::Window);
        model::out_of_memory_at_k(&p, k, 12, 200, 200).unwrap_or_else(|e| panic!("{e}"));
        drop_returning_frames(p);
    }
}

fn bad_inputs_are_refused() {
    let p = pool(MapPath::Window);
    let other = pool(MapPath::Window);
    assert_eq!(p.malloc(0), Err(Error::InvalidSize(0)));
    assert_eq!(
        p.malloc(MAX_ALLOC_SIZE + 1),
        Err(Error::InvalidSize(MAX_ALLOC_SIZE + 1))
    );
    let h = p.malloc(100).unwrap();
    let foreign = other.malloc(100).unwrap();
    assert_eq!(p.free(foreign), Err(Error::ForeignHandle(foreign)));
    let forged = Handle::from_raw(h.to_raw() + 999);
    assert_eq!(p.free(forged), Err(Error::InvalidHandle(forged)));
    p.free(h).unwrap();
    assert_eq!(p.free(h), Err(Error::DoubleFree(h)));
    // Two spanning objects: one window per CPU, so the second map is refused, not nested.
    let hs: Vec<Handle> = (0..10)
        .map(|_| p.malloc(1632 - HANDLE_SIZE).unwrap())
        .collect();
    let m = p.map(hs[2], MapMode::ReadOnly).unwrap();
    assert_eq!(p.map(hs[7], MapMode::ReadOnly).err(), Some(Error::MapBusy));
    drop(m);
    assert!(p.map(hs[7], MapMode::ReadOnly).is_ok());
    // Frames the machine does not have are not the pool's: refused, never a panic.
    let beyond = memmap::get().frames();
    for pfn in [beyond, beyond + 12345, u64::MAX] {
        assert_eq!(p.migrate_page(pfn), Err(Error::NotOurPage(pfn)), "{pfn:#x}");
        assert_eq!(p.isolate_page(pfn), Err(Error::NotOurPage(pfn)), "{pfn:#x}");
        p.putback_page(pfn);
    }
    p.check_invariants().unwrap();
}

fn per_cpu_state_is_sized_by_the_cpus_present() {
    let up = crate::arch::smp::cpus_up();
    assert_eq!(
        crate::percpu::possible(),
        up,
        "every usable CPU of the MADT came up"
    );
    let p = pool(MapPath::Copy);
    assert_eq!(p.copy_buffers(), up, "one copy buffer per CPU present");
    assert_eq!(pool(MapPath::Window).copy_buffers(), 0);
}

fn model_random_operations_on_real_frames_and_the_window() {
    for (seed, path) in [
        (0x2026_0001, MapPath::Window),
        (0x2026_0002, MapPath::Copy),
        (0x2026_0004, MapPath::LazyWindow),
    ] {
        let p = pool(path);
        let report =
            model::run(&p, seed, 3000, 25, None).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(report.mallocs > 500 && report.reads > 200, "{report:?}");
        assert!(
            report.compactions > 20 && report.migrations > 20,
            "{report:?}"
        );
        assert_eq!(p.total_pages(), 0);
        assert_eq!(p.backend().frames_held(), 0, "{path:?}: frames leaked");
        drop_returning_frames(p);
    }
    // And with the machine emptying physical ranges under the pool (order-2 blocks around a
    // random pool page: some hold heap or page-table frames and are refused, which the model
    // accepts; the rest are emptied, allocated whole and freed again).
    let p = MovablePool::new("ktest-ranges", PoolConfig::default());
    let report = model::run(&p, 0x2026_0003, 3000, 25, Some(&KernelRanges { order: 2 }))
        .unwrap_or_else(|e| panic!("with ranges: {e}"));
    crate::println!(
        "  ranges: {} emptied, {} refused; {} pages migrated, {} compactions",
        report.ranges_emptied,
        report.ranges_refused,
        report.migrations,
        report.compactions
    );
    assert!(report.ranges_emptied > 5, "{report:?}");
    assert_eq!(p.backend().frames_held(), 0, "with ranges: frames leaked");
}

/// The first aligned block of 2^`order` frames containing one of `candidates` in which every
/// frame is free or a page of `pool`: a range that can be emptied.
fn emptiable_block(pool: &MovablePool, candidates: &[u64], order: usize) -> Option<u64> {
    let mm = memmap::get();
    candidates
        .iter()
        .map(|&p| p & !((1 << order) - 1))
        .find(|&start| {
            (start..start + (1 << order)).all(|f| {
                let d = mm.desc(f).expect("in the memmap");
                buddy::with(|b| b.free_block_containing(f)).is_some()
                    || d.movable_token() == Some(pool.token())
            })
        })
}

/// Fills a movable pool with `n` objects of sizes 1..=4096 (so huge zspages too), each
/// written with its own pattern.
fn fill_movable(pool: &MovablePool, n: u64) -> Vec<(Handle, Vec<u8>)> {
    let mut rng = zsmalloc::seeded::Rng::new(0x7a9e);
    (0..n)
        .map(|i| {
            let size = 1 + rng.below(MAX_ALLOC_SIZE as u64) as usize;
            let h = pool.malloc(size).unwrap();
            let bytes = pattern(i, size);
            pool.write(h, &bytes).unwrap();
            (h, bytes)
        })
        .collect()
}

/// Linux's `alloc_contig_range` in zsos: a 16-frame block holding pool pages (a huge one
/// among them) is emptied by migrating each page out, then allocated as one block; every
/// object keeps its handle and bytes.
fn emptying_a_range_migrates_its_pages_and_allocates_it_whole() {
    let p = MovablePool::new("ktest-range", PoolConfig::default());
    let live = fill_movable(&p, 3000);
    let huge_pages: Vec<u64> = live
        .iter()
        .filter(|(_, b)| b.len() >= p.huge_class_size())
        .map(|(h, _)| p.location(*h).unwrap().pfn)
        .collect();
    let start = emptiable_block(&p, &huge_pages, 4)
        .expect("a 16-frame block of pool pages around a huge one");
    let in_range = p
        .pages()
        .iter()
        .filter(|&&f| f >= start && f < start + 16)
        .count() as u64;
    let r = migrate::empty_range(start, 4).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.block.pfn(), start);
    assert_eq!(r.block.order(), 4);
    assert_eq!(r.migrated, in_range, "every pool page in the range moved");
    assert!(
        p.pages().iter().all(|&f| f < start || f >= start + 16),
        "no pool page left in the range"
    );
    // The block is really ours: fill it.
    // SAFETY: the block's 16 frames are allocated to us and mapped in the direct map.
    unsafe { core::ptr::write_bytes(r.block.addr() as *mut u8, 0xee, 16 * 4096) };
    drop(r);
    p.check_invariants().unwrap();
    for (i, (h, bytes)) in live.iter().enumerate() {
        assert_eq!(
            &model::read_object(&p, *h, i as u64).unwrap(),
            bytes,
            "object {i} after emptying the range"
        );
        p.free(*h).unwrap();
    }
    assert_eq!(p.backend().frames_held(), 0);
}

/// A range holding a page whose zspage has a mapped object is refused (that page does not
/// move), everything is put back; so is one whose pages find no frame to move to; and the same
/// range empties once the object is unmapped and memory is there.
/// Ranges with frames nothing can move (reserved frame 0, a kernel-heap frame) are refused
/// before anything is touched.
fn emptying_a_range_is_refused_under_a_mapping_and_for_unmovable_frames() {
    let p = MovablePool::new("ktest-range-busy", PoolConfig::default());
    let live = fill_movable(&p, 2000);
    let pages: Vec<u64> = live
        .iter()
        .map(|(h, _)| p.location(*h).unwrap().pfn)
        .collect();
    let start = emptiable_block(&p, &pages, 3).expect("an 8-frame block of pool pages");
    let (h, bytes) = live
        .iter()
        .find(|(h, _)| {
            let f = p.location(*h).unwrap().pfn;
            f >= start && f < start + 8
        })
        .expect("an object in the block");
    let free_before = buddy::stats().free_frames;
    {
        let m = p.map(*h, MapMode::ReadOnly).unwrap();
        match migrate::empty_range(start, 3) {
            Err(RangeError::Refused {
                why: Refusal::Busy, ..
            }) => {}
            other => panic!("emptying a range under a mapping gave {other:?}"),
        }
        assert_eq!(
            &m[..],
            &bytes[..],
            "the mapped object did not change under its user"
        );
        assert!(
            (start..start + 8).all(|f| !memmap::get().desc(f).unwrap().has(flags::ISOLATED)),
            "the refused range's frames were given back"
        );
    }
    p.check_invariants().unwrap();
    assert!(
        buddy::stats().free_frames + 8 >= free_before,
        "a refused range keeps no frames"
    );
    // No frame to move to: refused, everything put back, the pages still the pool's.
    migrate::fail_next_destinations(1);
    match migrate::empty_range(start, 3) {
        Err(RangeError::OutOfMemory { pfn }) => {
            assert!(pfn >= start && pfn < start + 8);
            assert!(
                p.pages().contains(&pfn),
                "the page that could not move stays"
            );
            assert!(
                !memmap::get().desc(pfn).unwrap().has(flags::LOCKED),
                "claim put back"
            );
        }
        other => panic!("emptying a range without memory gave {other:?}"),
    }
    p.check_invariants().unwrap();
    let r = migrate::empty_range(start, 3).unwrap_or_else(|e| panic!("after unmap: {e}"));
    drop(r);
    assert_eq!(model::read_object(&p, *h, 0).unwrap(), *bytes);

    match migrate::empty_range(0, 0) {
        Err(RangeError::Unmovable { pfn: 0, flags: f }) => assert!(f & flags::RESERVED != 0),
        other => panic!("emptying frame 0 gave {other:?}"),
    }
    let mm = memmap::get();
    let heap = (0..mm.frames())
        .find(|&f| mm.desc(f).unwrap().has(flags::HEAP))
        .expect("the kernel heap has frames");
    match migrate::empty_range(heap, 0) {
        Err(RangeError::Unmovable { pfn, flags: f }) => {
            assert_eq!(pfn, heap);
            assert!(f & flags::HEAP != 0);
        }
        other => panic!("emptying a heap frame gave {other:?}"),
    }
    assert!(matches!(
        migrate::empty_range(3, 2),
        Err(RangeError::Invalid(buddy::FrameError::Misaligned { .. }))
    ));
    assert_eq!(mm.desc(heap).unwrap().flags() & flags::ISOLATED, 0);
    for (h, _) in &live {
        p.free(*h).unwrap();
    }
}

/// The soak: one million pool operations (malloc, map+write, read-verify, free) with
/// compaction every 20000 operations, a page migration every 500 and a range emptied every
/// 5000, keeping about 20000 objects alive; then every live object is checked byte for byte.
/// Half a million under Linux's policy, half a million under zsos's (whose frees compact and
/// whose zspages differ in length).
fn soak_one_million_operations_with_compaction_and_migration() {
    for policy in [zsmalloc::Policy::LINUX, zsmalloc::Policy::ZSOS] {
        let r = crate::soak::run(500_000, 0x50a4, false, policy, None)
            .unwrap_or_else(|e| panic!("soak ({}): {e}", policy.name()));
        crate::println!("  soak ({}): {r}", policy.name());
        assert!(r.ops >= 500_000);
        assert!(
            r.compacted > 0 && r.migrated > 100 && r.emptied > 10,
            "the soak exercised little"
        );
    }
}

/// Compaction on real frames after freeing 50% and 90% of the objects at random: it leaves
/// exactly the pages a perfect repacking of the survivors needs (computed from their classes
/// alone), every survivor stays intact, and the freed frames are back in the buddy allocator.
fn compaction_frees_the_perfect_repacking_bound_on_real_frames() {
    for percent in [50, 90] {
        let p = pool(MapPath::Window);
        let case = model::compaction_case(&p, percent as u64, 4000, 1..=MAX_ALLOC_SIZE, percent)
            .unwrap_or_else(|e| panic!("{e}"));
        crate::println!(
            "  {percent}% freed: {} pages; compaction freed {}, leaving {} (a perfect repacking: {}), {} objects moved",
            case.pages_before,
            case.freed,
            case.pages_before - case.freed,
            case.oracle_pages,
            case.moved
        );
        assert_eq!(
            case.pages_before - case.freed,
            case.oracle_pages,
            "{percent}% freed: compaction left more pages than a perfect repacking needs"
        );
        assert_eq!(
            p.total_pages(),
            0,
            "the case frees its survivors at the end"
        );
        drop_returning_frames(p);
    }
}

/// Page migration on real frames: every page of a zspage of every class (huge included) moves
/// to a new frame; every object keeps its handle and bytes (spanning ones read through the
/// window), and the old frames go back to the buddy allocator.
fn migrating_every_page_of_every_class_on_real_frames() {
    for path in [MapPath::Window, MapPath::Copy] {
        let p = pool(path);
        let expected: usize = p.classes().classes.iter().map(|c| c.pages_per_zspage).sum();
        let moved =
            model::migrate_every_page(&p, |_| true).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(moved, expected, "{path:?}: pages migrated");
        assert_eq!(
            p.backend().frames_held(),
            0,
            "{path:?}: old frames must be given back"
        );
        drop_returning_frames(p);
    }
}

fn dropping_a_pool_with_live_objects_frees_its_frames() {
    let p = pool(MapPath::Window);
    for size in [10, 100, 1000, 3000, 4096] {
        p.malloc(size).unwrap();
    }
    assert!(p.backend().frames_held() >= 5);
    // Prints "dropped with 5 live objects" on the console.
    drop_returning_frames(p);
}

/// Migration as zsmalloc's own `migrate_page` (a new frame from the backend, with a zsdesc of
/// its own in the memdesc memmap) and as the kernel's migration glue does it
/// (`migrate_page_into` a plain frame): in the memdesc memmap the zsdesc stays where it is and
/// the new frame's word takes its address, with no descriptor more or less in use; in the wide
/// memmap the new frame's own descriptor takes the fields.
fn migration_moves_the_zsdesc_by_pointer_in_memdesc_and_copies_it_in_wide() {
    use crate::mm::buddy::FrameBlock;
    use crate::mm::memmap::Layout;
    use zsmalloc::zsdesc::ZsDesc;
    let pool = MovablePool::new("zsdesc-move", PoolConfig::default());
    let size = 1632 - HANDLE_SIZE;
    let hs: Vec<Handle> = (0..10)
        .map(|i| {
            let h = pool.malloc(size).unwrap();
            pool.write(h, &pattern(i, size)).unwrap();
            h
        })
        .collect();
    let mm = memmap::get();
    let memdesc = mm.layout() == Layout::Memdesc;
    for by_glue in [false, true] {
        // The second page of a two-page zspage, then (second round) a first page.
        let old = pool.pages()[if by_glue { 0 } else { 1 }];
        let before: *const ZsDesc = pool.backend().desc(old);
        let in_use = ZSDESCS.stats().in_use;
        let new = if by_glue {
            let dst = FrameBlock::alloc_frame().unwrap();
            // SAFETY: a fresh frame from the buddy allocator (the allocator behind the
            // backend's alloc_page), used by nothing else; on success the pool owns it.
            unsafe { pool.migrate_page_into(old, dst.pfn()) }.unwrap();
            pool.backend().adopted_frame();
            dst.into_raw().0
        } else {
            pool.migrate_page(old).unwrap()
        };
        let after: *const ZsDesc = pool.backend().desc(new);
        let new_d = mm.desc(new).unwrap();
        assert_eq!(new_d.movable_token(), Some(pool.token()));
        if memdesc {
            assert!(core::ptr::eq(before, after), "the zsdesc moved by pointer");
            assert_eq!(new_d.zsdesc_addr(), Some(before as u64));
            assert_eq!(
                mm.desc(old).unwrap().zsdesc_addr(),
                None,
                "the old frame's word names no zsdesc"
            );
            assert_eq!(ZSDESCS.stats().in_use, in_use, "no zsdesc more or less");
        } else {
            let own: *const ZsDesc = super::zsdesc_of(new_d.wide().unwrap());
            assert!(core::ptr::eq(after, own), "the new frame's own descriptor");
            assert!(!core::ptr::eq(before, after));
        }
        assert!(!zsdesc::is_isolated(pool.backend().desc(new)));
    }
    pool.check_invariants().unwrap();
    for (i, &h) in hs.iter().enumerate() {
        let mut buf = alloc::vec![0u8; size];
        pool.read(h, &mut buf).unwrap();
        assert!(buf == pattern(i as u64, size), "object {i} after migration");
        pool.free(h).unwrap();
    }
}

/// The frame census gives every frame one owner: the free frames are the buddy allocator's
/// count, a pool's pages are zsmalloc's (and stop being so when it is dropped), the heap's
/// mapped frames are heap frames, frame 0 is reserved. Both memmap layouts.
fn the_frame_census_gives_each_frame_its_owner() {
    use zsmalloc::frame_map::{FrameMap, FrameOwner};
    let mm = memmap::get();
    // The buddy's free count read on both sides of the census: equal, unless the heap grew
    // meanwhile (then read again).
    let census = || -> FrameMap {
        loop {
            let free = buddy::stats().free_frames;
            let map = crate::mm::census::take("ktest", super::is_zsmalloc_page);
            if buddy::stats().free_frames == free {
                let counted: u64 = (0..buddy::ORDERS as u8)
                    .map(|o| map.count(FrameOwner::Free(o)))
                    .sum();
                assert_eq!(counted, free, "free frames in the census");
                return map;
            }
        }
    };
    let before = census();
    let p = pool(MapPath::Window);
    let hs: Vec<_> = (0..2000)
        .map(|i| p.malloc(100 + (i * 37) % 3000).unwrap())
        .collect();
    let during = census();
    for m in [&before, &during] {
        assert_eq!(m.frames(), mm.frames(), "one owner for every frame");
        assert_eq!(m.layout, mm.layout().name());
        assert_eq!(m.owner_of(0), Some(FrameOwner::Reserved));
        assert!(
            m.count(FrameOwner::PageTable) > 0,
            "the kernel's page tables"
        );
        assert!(
            m.count(FrameOwner::Heap) >= crate::mm::heap::stats().mapped / memmap::FRAME_SIZE,
            "the heap's mapped frames"
        );
    }
    assert_eq!(
        during.count(FrameOwner::Zsmalloc) - before.count(FrameOwner::Zsmalloc),
        p.total_pages() as u64,
        "the pool's pages are zsmalloc's"
    );
    for h in hs {
        p.free(h).unwrap();
    }
    drop(p);
    assert_eq!(
        census().count(FrameOwner::Zsmalloc),
        before.count(FrameOwner::Zsmalloc),
        "a dropped pool's pages are zsmalloc's no more"
    );
}

crate::ktests! {
    zsdesc_overlay_writes_the_memmap_entries,
    migration_moves_the_zsdesc_by_pointer_in_memdesc_and_copies_it_in_wide,
    // Lab 4: zspages (docs/labs/lab4-zspages.md); its other tests are in zspage_ktests.rs.
    every_class_at_every_offset_through_the_window { lab: 4, points: 20 },
    // Lab 5: handles and mapping; its other tests are in handle_ktests.rs.
    every_class_at_every_offset_through_the_copy_path { lab: 5, points: 10 },
    out_of_memory_at_the_kth_frame_fails_cleanly_for_every_k,
    bad_inputs_are_refused,
    per_cpu_state_is_sized_by_the_cpus_present { cpus: 4 },
    model_random_operations_on_real_frames_and_the_window,
    compaction_frees_the_perfect_repacking_bound_on_real_frames { lab: 6, points: 15 },
    migrating_every_page_of_every_class_on_real_frames { lab: 6, points: 15 },
    emptying_a_range_migrates_its_pages_and_allocates_it_whole,
    emptying_a_range_is_refused_under_a_mapping_and_for_unmovable_frames,
    soak_one_million_operations_with_compaction_and_migration,
    dropping_a_pool_with_live_objects_frees_its_frames,
    a_filled_and_dropped_pool_gives_every_frame_back_descriptors_included,
    the_frame_census_gives_each_frame_its_owner,
}
