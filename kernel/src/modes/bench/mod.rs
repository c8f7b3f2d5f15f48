//! Mode `bench`: benchmarks, reported as a readable table and as one machine-readable line
//! per figure: `BENCH name=<name> value=<median> unit=<unit>`.
//!
//! Each figure is the median over many batches of the cycles per operation (TSC, fenced),
//! also given in ns from the calibrated TSC rate. Ratios are taken within the same run.

mod density;
mod per_class;
mod scale;
mod scaling;

use alloc::vec::Vec;

use crate::arch::qemu::ExitCode;
use crate::arch::tsc;
use crate::mm::buddy::FrameBlock;
use crate::mm::memmap::FRAME_SIZE;
use crate::mm::window::Access;
use crate::println;

/// Batches per figure (the median is taken over these).
const BATCHES: usize = 201;
/// Operations per batch (the batch time is divided by this).
const OPS_PER_BATCH: u64 = 64;

/// Median cycles per operation of `op`, over `batches` batches of [`OPS_PER_BATCH`] calls.
pub fn median_cycles(batches: usize, mut op: impl FnMut()) -> u64 {
    let mut samples: Vec<u64> = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t0 = tsc::start();
        for _ in 0..OPS_PER_BATCH {
            op();
        }
        let t1 = tsc::stop();
        samples.push((t1 - t0) / OPS_PER_BATCH);
    }
    median(&mut samples)
}

/// Prints one figure as a table row and a `BENCH` line.
pub fn report(name: &str, cycles: u64) {
    println!(
        "  {:<36} {:>10} {:>10}",
        name,
        cycles,
        tsc::cycles_to_ns(cycles)
    );
    println!("BENCH name={name} value={cycles} unit=cycles");
    println!(
        "BENCH name={name}.ns value={} unit=ns",
        tsc::cycles_to_ns(cycles)
    );
}

/// The sections of the bench, in the order they run.
const SECTIONS: &[(&str, &str)] = &[
    (
        "speed",
        "window, malloc/free, map in each regime, zsmapbench, compaction, migration",
    ),
    ("classes", "malloc, free and map+unmap per size class"),
    (
        "density",
        "zram store; zsmalloc against zbud and a heap on three workloads; the policies table",
    ),
    (
        "policies",
        "pages per policy (zsos, Linux chains 4/8/16) beside zbud and the bound, with targets",
    ),
    (
        "scale",
        "malloc+free with 1 thousand to 1 million objects live",
    ),
    ("memmap", "the memmap's build time for this boot's memory"),
    (
        "scaling",
        "ops/s on 1, 2, 4 CPUs: per-class locking (Linux 6.11) against one pool-wide lock, and zsos's policy",
    ),
];

/// Runs the benchmarks: every section, or those named (`bench scale density`).
pub fn run(rest: &[&str]) -> ExitCode {
    // `--policy P`: the policy of the density section's zsmalloc pools.
    let mut policy = zsmalloc::Policy::default();
    let mut sections: Vec<&str> = Vec::new();
    let mut it = rest.iter();
    while let Some(&arg) = it.next() {
        if arg == "--policy" {
            match it.next().map(|p| zsmalloc::Policy::parse(p)) {
                Some(Ok(p)) => policy = p,
                Some(Err(e)) => {
                    println!("zsos: error: bench: {e}");
                    return ExitCode::Failure;
                }
                None => {
                    println!("zsos: error: bench --policy needs a policy name");
                    return ExitCode::Failure;
                }
            }
        } else {
            sections.push(arg);
        }
    }
    let rest = &sections[..];
    if let Some(bad) = rest.iter().find(|a| !SECTIONS.iter().any(|(s, _)| s == *a)) {
        println!("zsos: error: unknown bench section '{bad}'. Sections:");
        for (name, what) in SECTIONS {
            println!("  {name:<8} {what}");
        }
        return ExitCode::Failure;
    }
    let wanted = |s: &str| rest.is_empty() || rest.contains(&s);
    if wanted("memmap") {
        scale::memmap_figure();
    }
    if wanted("speed") && !speed_figures() {
        return ExitCode::Failure;
    }
    if wanted("classes") {
        per_class::figures();
    }
    if wanted("density") {
        density::figures(policy);
    }
    // `density` ends with the policies' side-by-side table; `policies` prints that alone.
    if wanted("density") || wanted("policies") {
        density::policy_figures();
    }
    if wanted("scale") {
        scale::figures();
    }
    if wanted("scaling") {
        scaling::figures();
    }
    ExitCode::Success
}

/// The headline speed figures; false if the machine has no frames for them.
fn speed_figures() -> bool {
    println!(
        "zsos: bench ({} MHz TSC; {} memmap; median cycles per operation over {BATCHES} batches of {OPS_PER_BATCH})",
        tsc::hz() / 1_000_000,
        crate::mm::memmap::get().layout().name()
    );
    println!("  {:<36} {:>10} {:>10}", "figure", "cycles", "ns");
    let empty = median_cycles(BATCHES, || {});
    report("tsc.empty_loop", empty);

    let (Ok(a), Ok(b)) = (FrameBlock::alloc_frame(), FrameBlock::alloc_frame()) else {
        println!("zsos: bench: no frames");
        return false;
    };
    let window = &crate::percpu::current().window;
    let map_unmap = median_cycles(BATCHES, || {
        let m = window
            .map(a.pfn(), b.pfn(), Access::ReadWrite)
            .expect("window is free");
        core::hint::black_box(m.addr());
    });
    report("window.map_unmap", map_unmap);

    let (src, dst) = (a.addr() as *const u8, b.addr() as *mut u8);
    let memcpy = median_cycles(BATCHES, || {
        // SAFETY: both frames belong to this benchmark; 4096 bytes fit in each.
        unsafe {
            core::ptr::copy_nonoverlapping(core::hint::black_box(src), dst, FRAME_SIZE as usize)
        };
    });
    report("memcpy.4k", memcpy);
    ratio("window.map_unmap", map_unmap, "memcpy.4k", memcpy);
    zsmalloc_figures();
    let frame = median_cycles(BATCHES, || {
        let frame = FrameBlock::alloc_frame().expect("a free frame");
        drop(core::hint::black_box(frame));
    });
    report("buddy.alloc_free.order0", frame);
    let cache = crate::zs_backend::ZSDESCS.stats();
    println!(
        "  zsdesc cache: {} in use ({} bytes each), {} frames held",
        cache.in_use, cache.slot_bytes, cache.frames
    );
    println!(
        "BENCH name=zsdesc.cache.frames value={} unit=frames",
        cache.frames
    );
    true
}

/// Prints `a / b` as a ratio line.
fn ratio(a_name: &str, a: u64, b_name: &str, b: u64) {
    let r = a as f64 / b.max(1) as f64;
    println!("  {a_name} / {b_name} = {r:.2}");
    println!("BENCH name=ratio.{a_name}/{b_name} value={r:.3} unit=ratio");
}

/// zsmalloc's own costs: malloc, free, and map+unmap in each regime, including Seth
/// Jennings' zsmapbench (three 1632-byte objects in a two-page zspage, the third spanning,
/// mapped read-write in a loop).
fn zsmalloc_figures() {
    use zsmalloc::{MapMode, MapPath, Pool, PoolConfig};

    use crate::zs_backend::KernelBackend;

    let window = Pool::new("bench-window", KernelBackend::new(), PoolConfig::default());
    let copy = Pool::new(
        "bench-copy",
        KernelBackend::new(),
        PoolConfig {
            map_path: MapPath::Copy,
            ..PoolConfig::default()
        },
    );

    // malloc and free, mixed sizes, with the pool warm: one object kept in each class used,
    // so that its zspage stays and the figures are of the allocator, not of frame allocation.
    let sizes: Vec<usize> = (0..OPS_PER_BATCH as usize)
        .map(|i| 64 + (i * 613) % 3000)
        .collect();
    let keepers: Vec<_> = sizes
        .iter()
        .map(|&s| window.malloc(s).expect("bench malloc"))
        .collect();
    let (malloc, free) = malloc_free_cycles(&window, &sizes, BATCHES);
    report("zs.malloc.mixed", malloc);
    report("zs.free.mixed", free);
    for h in keepers {
        window.free(h).expect("bench free");
    }

    compaction_figure(&window);
    migration_figures();

    // zsmapbench: objects 0 and 1 lie in page 0, object 2 spans pages 0 and 1.
    for (name, pool) in [("window", &window), ("copy", &copy)] {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                pool.malloc(1632 - zsmalloc::class::HANDLE_SIZE)
                    .expect("bench")
            })
            .collect();
        assert!(
            pool.location(hs[2]).expect("live").second_page.is_some(),
            "object 2 spans"
        );
        assert!(pool.location(hs[0]).expect("live").second_page.is_none());
        let single = median_cycles(BATCHES, || {
            let m = pool.map(hs[0], MapMode::ReadWrite).expect("map");
            core::hint::black_box(m.as_ptr());
        });
        report(&alloc::format!("zs.map_unmap.single.{name}"), single);
        let span = median_cycles(BATCHES, || {
            let m = pool.map(hs[2], MapMode::ReadWrite).expect("map");
            core::hint::black_box(m.as_ptr());
        });
        report(&alloc::format!("zsmapbench.{name}"), span);
        for h in hs {
            pool.free(h).expect("bench free");
        }
    }
}

/// Cycles per page freed by compaction: 20000 random-sized objects, half freed at random,
/// then one timed `compact()`; the median over 5 rounds.
fn compaction_figure(pool: &zsmalloc::Pool<crate::zs_backend::KernelBackend>) {
    let mut per_page = Vec::new();
    let mut rng = zsmalloc::seeded::Rng::new(7);
    for _ in 0..5 {
        let mut hs: Vec<_> = (0..20000)
            .map(|_| {
                pool.malloc(1 + rng.below(4096) as usize)
                    .expect("bench malloc")
            })
            .collect();
        rng.shuffle(&mut hs);
        for h in hs.drain(hs.len() / 2..) {
            pool.free(h).expect("bench free");
        }
        let t0 = tsc::start();
        let freed = pool.compact() as u64;
        let t1 = tsc::stop();
        per_page.push((t1 - t0) / freed.max(1));
        for h in hs {
            pool.free(h).expect("bench free");
        }
    }
    report("zs.compact.per_page_freed", median(&mut per_page));
}

/// Cycles per migrated frame: (a) the pool migrating each of its pages in turn
/// (`migrate_page`: copy 4 KiB, repoint the chain and slots, free the old frame), median over
/// 5 passes over a pool of 5000 random-sized objects; (b) the kernel emptying 16-frame ranges
/// around pool pages (`migrate::empty_range`: isolation, per-page isolate/migrate, taking the
/// block), per page moved, median over the ranges that could be emptied.
fn migration_figures() {
    use crate::mm::migrate;
    use crate::zs_backend::MovablePool;

    let pool = MovablePool::new("bench-migrate", zsmalloc::PoolConfig::default());
    let mut rng = zsmalloc::seeded::Rng::new(11);
    let hs: Vec<_> = (0..5000)
        .map(|_| {
            pool.malloc(1 + rng.below(4096) as usize)
                .expect("bench malloc")
        })
        .collect();
    let mut per_frame = Vec::new();
    for _ in 0..5 {
        let pages = pool.pages();
        let t0 = tsc::start();
        for &pfn in &pages {
            pool.migrate_page(pfn).expect("bench migrate");
        }
        let t1 = tsc::stop();
        per_frame.push((t1 - t0) / pages.len().max(1) as u64);
    }
    report("zs.migrate.per_frame", median(&mut per_frame));
    let mut per_range_frame = Vec::new();
    for _ in 0..200 {
        let pages = pool.pages();
        let start = pages[rng.below(pages.len() as u64) as usize] & !15;
        let t0 = tsc::start();
        let result = migrate::empty_range(start, 4);
        let t1 = tsc::stop();
        if let Some(per_frame) = result.ok().and_then(|r| (t1 - t0).checked_div(r.migrated)) {
            per_range_frame.push(per_frame);
        }
    }
    if per_range_frame.is_empty() {
        crate::println!("bench: no 16-frame range around the pool's pages could be emptied");
    } else {
        report(
            "mm.empty_range.per_frame_moved",
            median(&mut per_range_frame),
        );
        crate::println!(
            "  ({} of 200 ranges emptied; the rest held unmovable frames)",
            per_range_frame.len()
        );
    }
    for h in hs {
        pool.free(h).expect("bench free");
    }
}

/// Median cycles per malloc and per free: `batches` times, one object of each of `sizes`
/// allocated, then all of them freed.
fn malloc_free_cycles(
    pool: &zsmalloc::Pool<crate::zs_backend::KernelBackend>,
    sizes: &[usize],
    batches: usize,
) -> (u64, u64) {
    let n = sizes.len().max(1) as u64;
    let mut handles = Vec::with_capacity(sizes.len());
    let (mut malloc, mut free) = (Vec::new(), Vec::new());
    for _ in 0..batches {
        let t0 = tsc::start();
        for &s in sizes {
            handles.push(pool.malloc(s).expect("bench malloc"));
        }
        let t1 = tsc::stop();
        for h in handles.drain(..) {
            pool.free(h).expect("bench free");
        }
        let t2 = tsc::stop();
        malloc.push((t1 - t0) / n);
        free.push((t2 - t1) / n);
    }
    (median(&mut malloc), median(&mut free))
}

/// The median of `samples` (sorts them).
fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}
