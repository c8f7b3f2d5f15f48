//! zsmalloc on the real machine: real frames from the buddy allocator, descriptors in the
//! memmap, spanning objects through the real PTE window (or the copy path).

use alloc::vec::Vec;

use zsmalloc::class::{HANDLE_SIZE, MAX_ALLOC_SIZE};
use zsmalloc::model::{self, pattern};
use zsmalloc::{Error, Handle, MapMode, MapPath, Pool, PoolConfig};

use super::KernelBackend;
use crate::ktest::Test;
use crate::mm::buddy;
use crate::mm::memmap::{self, flags};
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
    let free = buddy::stats().free_frames;
    drop(p);
    let after = buddy::stats().free_frames;
    assert_eq!(
        after,
        free + held,
        "dropping the pool must give back every frame"
    );
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
    // The chain runs through the memmap's index field, the zspage through private, and the
    // first object offset through page_type.
    assert_eq!(d0.index.load(Relaxed), second_page);
    assert_ne!(d0.private.load(Relaxed), 0);
    assert_eq!(d1.page_type.load(Relaxed), 3 * 1632 - 4096);
    for h in hs {
        p.free(h).unwrap();
    }
    assert!(!d0.has(flags::PRIVATE), "free must reset the descriptor");
    assert_eq!(
        d0.private.load(Relaxed),
        0,
        "free must reset the descriptor"
    );
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
    for k in 0..24 {
        let p = pool(MapPath::Window);
        let mut live: Vec<(Handle, Vec<u8>)> = Vec::new();
        for i in 0..12u64 {
            let size = 300 + (i as usize * 397) % 3700;
            let h = p.malloc(size).unwrap();
            let bytes = pattern(i, size);
            p.write(h, &bytes).unwrap();
            live.push((h, bytes));
        }
        p.backend().fail_from(k);
        let mut refused = 0;
        for i in 0..200u64 {
            let size = 16 + (i as usize * 733) % 4080;
            match p.malloc(size) {
                Ok(h) => {
                    let bytes = pattern(i + 1000, size);
                    model::write_object(&p, h, &bytes, i).unwrap();
                    live.push((h, bytes));
                }
                Err(e) => {
                    assert_eq!(e, Error::OutOfMemory, "k={k}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 0, "k={k}: the injected failure never surfaced");
        p.check_invariants()
            .unwrap_or_else(|e| panic!("k={k}: {e}"));
        for (i, (h, bytes)) in live.iter().enumerate() {
            let got = model::read_object(&p, *h, i as u64).unwrap();
            assert!(got == *bytes, "k={k}: object {i} damaged");
        }
        let held = p.backend().frames_held();
        assert_eq!(held, p.total_pages() as u64, "k={k}: frames leaked");
        p.backend().stop_failing();
        assert!(p.malloc(3000).is_ok(), "k={k}: allocation works again");
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
    p.check_invariants().unwrap();
}

fn model_random_operations_on_real_frames_and_the_window() {
    for (seed, path) in [(0x2026_0001, MapPath::Window), (0x2026_0002, MapPath::Copy)] {
        let p = pool(path);
        let report = model::run(&p, seed, 3000, 25).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(report.mallocs > 500 && report.reads > 200, "{report:?}");
        assert!(
            report.compactions > 20 && report.migrations > 20,
            "{report:?}"
        );
        assert_eq!(p.total_pages(), 0);
        assert_eq!(p.backend().frames_held(), 0, "{path:?}: frames leaked");
        drop_returning_frames(p);
    }
}

/// Compaction on real frames after freeing 50% and 90% of the objects at random: it frees
/// exactly what a perfect repacking of the survivors would, every survivor stays intact, and
/// the freed frames are back in the buddy allocator.
fn compaction_frees_the_perfect_repacking_bound_on_real_frames() {
    for percent in [50, 90] {
        let p = pool(MapPath::Window);
        let case = model::compaction_case(&p, percent as u64, 4000, 1..=MAX_ALLOC_SIZE, percent)
            .unwrap_or_else(|e| panic!("{e}"));
        crate::println!(
            "  {percent}% freed: {} pages; compaction freed {}, bound {}, {} objects moved",
            case.pages_before,
            case.freed,
            case.bound,
            case.moved
        );
        assert_eq!(
            case.freed as u64, case.bound,
            "{percent}% freed: compaction fell short of the bound"
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

/// The tests of this module.
pub const TESTS: &[Test] = crate::ktests![
    zsdesc_overlay_writes_the_memmap_entries,
    every_class_at_every_offset_through_the_window,
    every_class_at_every_offset_through_the_copy_path,
    out_of_memory_at_the_kth_frame_fails_cleanly_for_every_k,
    bad_inputs_are_refused,
    model_random_operations_on_real_frames_and_the_window,
    compaction_frees_the_perfect_repacking_bound_on_real_frames,
    migrating_every_page_of_every_class_on_real_frames,
    dropping_a_pool_with_live_objects_frees_its_frames,
];
