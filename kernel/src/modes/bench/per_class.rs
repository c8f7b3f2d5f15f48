//! Speed per size class: for every class of the default pool, cycles per malloc and per free
//! (batches of 64 objects of the class's largest size), and per map+unmap read-write of an
//! object within one page, of a spanning object through the PTE window, of the same spanning
//! object through the copy path (with the window/copy ratio in the same run), and through
//! the per-class choice (`MapPath::PerClass`).
//! Medians over fewer batches than the headline figures (31), to keep the table quick.

use alloc::vec::Vec;

use zsmalloc::class::{ClassLayout, HANDLE_SIZE, MAX_ALLOC_SIZE};
use zsmalloc::{Handle, MapMode, MapPath, Pool, PoolConfig};

use super::{OPS_PER_BATCH, median, median_cycles};
use crate::println;
use crate::zs_backend::KernelBackend;

/// Batches per figure: fewer than the headline figures', to keep the table quick.
const BATCHES: usize = 31;

fn map_cycles(pool: &Pool<KernelBackend>, h: Handle) -> u64 {
    median_cycles(BATCHES, || {
        let m = pool.map(h, MapMode::ReadWrite).expect("bench map");
        core::hint::black_box(m.as_ptr());
    })
}

/// One zspage of the class filled with objects of its largest size: (handles, one object
/// within a page, one spanning object if the class has any).
fn fill_one_zspage(
    pool: &Pool<KernelBackend>,
    c: &ClassLayout,
    size: usize,
) -> (Vec<Handle>, Handle, Option<Handle>) {
    let hs: Vec<Handle> = (0..c.objs_per_zspage)
        .map(|_| pool.malloc(size).expect("bench malloc"))
        .collect();
    let spans = |h: &Handle| pool.location(*h).expect("live").second_page.is_some();
    let single = *hs
        .iter()
        .find(|h| !spans(h))
        .expect("an object within one page");
    let spanning = hs.iter().find(|h| spans(h)).copied();
    (hs, single, spanning)
}

/// Prints the table and one BENCH line per figure.
pub fn figures() {
    let window = Pool::new(
        "bench-class-window",
        KernelBackend::new(),
        PoolConfig::default(),
    );
    let copy = Pool::new(
        "bench-class-copy",
        KernelBackend::new(),
        PoolConfig {
            map_path: MapPath::Copy,
            ..PoolConfig::default()
        },
    );
    let per_class = Pool::new(
        "bench-class-per-class",
        KernelBackend::new(),
        PoolConfig {
            map_path: MapPath::PerClass,
            ..PoolConfig::default()
        },
    );
    let lazy = Pool::new(
        "bench-class-lazy",
        KernelBackend::new(),
        PoolConfig {
            map_path: MapPath::LazyWindow,
            ..PoolConfig::default()
        },
    );
    println!("  per size class (median cycles per operation; map = map+unmap read-write)");
    println!(
        "    {:>5} {:>5} {:>4} {:>7} {:>7} {:>8} {:>10} {:>10} {:>8} {:>10} {:>10}",
        "class",
        "size",
        "objs",
        "malloc",
        "free",
        "map.1pg",
        "span.win",
        "span.copy",
        "win/copy",
        "span.auto",
        "span.lazy"
    );
    let mut lazy_over_single = Vec::new();
    // Classes whose lazy spanning map is no slower than both the window's and the copy's.
    let mut lazy_not_slower = 0;
    let (mut win_over_single, mut worst) = (Vec::new(), (0.0f64, 0));
    // Spanning map+unmap of the per-class choice: over the faster fixed path, and over a map
    // within one page.
    let (mut auto_over_best, mut auto_over_single) = (Vec::new(), Vec::new());
    for c in window.classes().classes.clone() {
        let size = if c.huge {
            c.size.min(MAX_ALLOC_SIZE)
        } else {
            c.size - HANDLE_SIZE
        };
        let (malloc, free) =
            super::malloc_free_cycles(&window, &[size; OPS_PER_BATCH as usize], BATCHES);
        let (win_hs, single, win_span) = fill_one_zspage(&window, &c, size);
        let (copy_hs, _, copy_span) = fill_one_zspage(&copy, &c, size);
        let (auto_hs, _, auto_span) = fill_one_zspage(&per_class, &c, size);
        let (lazy_hs, _, lazy_span) = fill_one_zspage(&lazy, &c, size);
        let map_single = map_cycles(&window, single);
        let spans =
            win_span
                .zip(copy_span)
                .zip(auto_span.zip(lazy_span))
                .map(|((w, k), (a, l))| {
                    let (win, cp) = (map_cycles(&window, w), map_cycles(&copy, k));
                    let (auto, lz) = (map_cycles(&per_class, a), map_cycles(&lazy, l));
                    (win, cp, win as f64 / cp.max(1) as f64, auto, lz)
                });
        let name = alloc::format!("zs.class.{}", c.size);
        println!("BENCH name={name}.malloc value={malloc} unit=cycles");
        println!("BENCH name={name}.free value={free} unit=cycles");
        println!("BENCH name={name}.map_unmap.single value={map_single} unit=cycles");
        match spans {
            Some((win, cp, ratio, auto, lz)) => {
                println!(
                    "    {:>5} {:>5} {:>4} {malloc:>7} {free:>7} {map_single:>8} {win:>10} {cp:>10} {ratio:>8.2} {auto:>10} {lz:>10}",
                    c.index, c.size, c.objs_per_zspage
                );
                println!("BENCH name={name}.map_unmap.span_lazy_window value={lz} unit=cycles");
                lazy_over_single.push(lz as f64 / map_single.max(1) as f64);
                lazy_not_slower += usize::from(lz <= win.min(cp));
                println!("BENCH name={name}.map_unmap.span_per_class value={auto} unit=cycles");
                auto_over_best.push(auto as f64 / win.min(cp).max(1) as f64);
                auto_over_single.push(auto as f64 / map_single.max(1) as f64);
                println!("BENCH name={name}.map_unmap.span_window value={win} unit=cycles");
                println!("BENCH name={name}.map_unmap.span_copy value={cp} unit=cycles");
                println!("BENCH name=ratio.{name}.window/copy value={ratio:.3} unit=ratio");
                let over = win as f64 / map_single.max(1) as f64;
                win_over_single.push(over);
                if over > worst.0 {
                    worst = (over, c.size);
                }
            }
            None => println!(
                "    {:>5} {:>5} {:>4} {malloc:>7} {free:>7} {map_single:>8} {:>10} {:>10} {:>8}",
                c.index, c.size, c.objs_per_zspage, "-", "-", "-"
            ),
        }
        for h in win_hs {
            window.free(h).expect("bench free");
        }
        for h in copy_hs {
            copy.free(h).expect("bench free");
        }
        for h in auto_hs {
            per_class.free(h).expect("bench free");
        }
        for h in lazy_hs {
            lazy.free(h).expect("bench free");
        }
    }
    if !lazy_over_single.is_empty() {
        let mut per_mille: Vec<u64> = lazy_over_single
            .iter()
            .map(|r| (r * 1000.0) as u64)
            .collect();
        let med = median(&mut per_mille) as f64 / 1000.0;
        println!(
            "    lazy window (a ring of slots, one TLB flush per 255 maps): spanning / within-one-page map+unmap: median {med:.2} over {} classes; no slower than both the window and the copy in {lazy_not_slower} of them",
            lazy_over_single.len(),
        );
        println!("BENCH name=ratio.span_lazy_window/single.median value={med:.3} unit=ratio");
    }
    if !auto_over_best.is_empty() {
        let per_mille = |v: &[f64]| -> Vec<u64> { v.iter().map(|r| (r * 1000.0) as u64).collect() };
        let over_best = median(&mut per_mille(&auto_over_best)) as f64 / 1000.0;
        let over_single = median(&mut per_mille(&auto_over_single)) as f64 / 1000.0;
        let within = auto_over_best.iter().filter(|&&r| r <= 1.1).count();
        println!(
            "    per-class path: median {over_best:.2} of the faster fixed path (within 1.1 in {within} of {} classes); spanning / within-one-page map+unmap: median {over_single:.2}",
            auto_over_best.len(),
        );
        println!(
            "BENCH name=ratio.span_per_class/best_fixed.median value={over_best:.3} unit=ratio"
        );
        println!("BENCH name=ratio.span_per_class/single.median value={over_single:.3} unit=ratio");
    }
    if !win_over_single.is_empty() {
        let mut sorted: Vec<u64> = win_over_single
            .iter()
            .map(|r| (r * 1000.0) as u64)
            .collect();
        let med = median(&mut sorted) as f64 / 1000.0;
        println!(
            "    spanning (window) / within-one-page map+unmap: median {med:.2} over {} classes; highest {:.2} at size {} (single figures of 31 batches are noisy)",
            win_over_single.len(),
            worst.0,
            worst.1
        );
        println!("BENCH name=ratio.span_window/single.median value={med:.3} unit=ratio");
        println!(
            "BENCH name=ratio.span_window/single.worst value={:.3} unit=ratio",
            worst.0
        );
    }
}
