//! Tests of placement (lab 7, `docs/labs/lab7-placement.md`): the fitted rule keeps every
//! object intact, is never much worse than Linux's rule, beats it on sparse populations and
//! across the trace families, and costs little more. Like malloclab's, the score compares
//! with the reference (Linux's rule) measured in the same run on the same traces, and the
//! traces are drawn from the run's seed (the grader's nonce), so nobody can tune to them.

use alloc::string::String;
use alloc::vec::Vec;

use zsmalloc::families::Family;
use zsmalloc::{MapPath, Placement, Pool, PoolConfig, model, trace};

use super::KernelBackend;
use crate::arch::tsc;
use crate::println;

fn pool(placement: Placement, map_path: MapPath) -> Pool<KernelBackend> {
    let config = PoolConfig {
        placement,
        map_path,
        ..PoolConfig::default()
    };
    Pool::new("lab7", KernelBackend::new(), config)
}

/// The graded traces: every family at two population sizes, from the run's seed.
fn traces() -> Vec<(Family, usize, String)> {
    let seed = crate::ktest::seed();
    Family::ALL
        .iter()
        .flat_map(|&f| [150, 600].map(|n| (f, n, f.generate(seed, n))))
        .collect()
}

/// Pages the pool holds at each report of a trace (after fill, after frees, after
/// compaction), checking the pool's invariants at each.
fn pages_at_points(placement: Placement, text: &str) -> Vec<usize> {
    let p = pool(placement, MapPath::Window);
    let mut points = Vec::new();
    trace::replay(&p, text.as_bytes(), |r| {
        if r.at != '$' {
            points.push(r.pages);
        }
    })
    .unwrap_or_else(|e| panic!("{placement:?}: the trace stopped at {e}"));
    p.check_invariants().unwrap();
    assert_eq!(
        p.total_pages(),
        0,
        "{placement:?}: pages left after the trace"
    );
    points
}

/// One graded trace's family, population and pages (fitted, Linux) at each point.
type Judged = (Family, usize, Vec<(usize, usize)>);

/// Pages under (fitted, Linux) at every point of every graded trace, printed as a table.
fn side_by_side() -> Vec<Judged> {
    println!(
        "  traces from seed {} (pages: fitted / linux, after fill, frees, compaction)",
        crate::ktest::seed()
    );
    traces()
        .into_iter()
        .map(|(family, n, text)| {
            let fitted = pages_at_points(Placement::Fitted, &text);
            let linux = pages_at_points(Placement::Linux, &text);
            assert_eq!(fitted.len(), linux.len());
            let points: Vec<(usize, usize)> = fitted.into_iter().zip(linux).collect();
            println!("  {:>6} {n:>4} objects: {points:?}", family.name());
            (family, n, points)
        })
        .collect()
}

fn fitted_placement_keeps_every_object_intact() {
    let seed = crate::ktest::seed();
    println!("  model runs and traces from seed {seed}");
    for path in [MapPath::Window, MapPath::Copy] {
        let p = pool(Placement::Fitted, path);
        let report = model::run(&p, seed ^ 0x1ab7, 3000, 25, None)
            .unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(
            report.mallocs > 500 && report.compactions > 20,
            "{report:?}"
        );
        assert_eq!(
            p.total_pages(),
            0,
            "{path:?}: pages left after the model run"
        );
    }
    // And every graded trace, with the invariants checked at every report.
    for (_, _, text) in traces() {
        pages_at_points(Placement::Fitted, &text);
    }
}

fn fitted_is_never_much_worse_than_linux() {
    for (family, n, points) in side_by_side() {
        for (i, &(fitted, linux)) in points.iter().enumerate() {
            assert!(
                fitted <= linux + linux / 4 + 1,
                "{} ({n} objects), point {i}: {fitted} pages, more than 1.25 × Linux's {linux} + 1",
                family.name()
            );
        }
    }
}

fn fitted_beats_linux_on_sparse_populations() {
    let (mut fitted, mut linux) = (0, 0);
    for (family, _, points) in side_by_side() {
        if family == Family::Sparse {
            fitted += points.iter().map(|p| p.0).sum::<usize>();
            linux += points.iter().map(|p| p.1).sum::<usize>();
        }
    }
    println!("  sparse: {fitted} pages against Linux's {linux} (at most 80% to pass)");
    assert!(
        fitted * 5 <= linux * 4,
        "sparse populations: {fitted} pages, more than 80% of Linux's {linux}"
    );
}

fn fitted_beats_linux_across_the_families() {
    let ratios: Vec<f64> = side_by_side()
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|&(f, l)| f as f64 / l.max(1) as f64))
        .collect();
    let geomean = geometric_mean(&ratios);
    println!(
        "  pages relative to Linux, geometric mean over {} points: {geomean:.3} (at most 0.85 to pass)",
        ratios.len()
    );
    assert!(
        geomean <= 0.85,
        "pages relative to Linux's: geometric mean {geomean:.3} over every point, above 0.85"
    );
}

/// The geometric mean of positive numbers: the n-th root of their product, by bisection (the
/// kernel has no `ln`).
pub(super) fn geometric_mean(xs: &[f64]) -> f64 {
    let product: f64 = xs.iter().product();
    let power = |g: f64| (0..xs.len()).fold(1.0, |acc, _| acc * g);
    let (mut low, mut high) = (0.0, xs.iter().copied().fold(1.0, f64::max));
    for _ in 0..100 {
        let mid = (low + high) / 2.0;
        if power(mid) < product {
            low = mid;
        } else {
            high = mid;
        }
    }
    low
}

fn fitted_costs_at_most_a_fifth_more_than_linux() {
    // Allocations and frees of a zram trace, both rules in turn, 15 rounds: the medians.
    let text = Family::Zram.generate(crate::ktest::seed(), 1500);
    let mut cycles = [Vec::new(), Vec::new()];
    for _ in 0..15 {
        for (i, placement) in [Placement::Fitted, Placement::Linux]
            .into_iter()
            .enumerate()
        {
            let p = pool(placement, MapPath::Window);
            let t0 = tsc::start();
            trace::replay(&p, text.as_bytes(), |_| {}).unwrap();
            cycles[i].push(tsc::stop() - t0);
        }
    }
    let [fitted, linux] = cycles.map(|mut c| {
        c.sort_unstable();
        c[c.len() / 2]
    });
    let ratio = fitted as f64 / linux as f64;
    println!(
        "  zram trace: fitted {fitted} cycles, linux {linux} cycles (ratio {ratio:.3}, at most 1.2 to pass)"
    );
    assert!(
        fitted * 5 <= linux * 6,
        "the fitted rule took {ratio:.3} × Linux's cycles on the same trace (median of 15 rounds)"
    );
}

crate::ktests! {
    // Lab 7: placement (docs/labs/lab7-placement.md).
    fitted_placement_keeps_every_object_intact { lab: 7, points: 20 },
    fitted_is_never_much_worse_than_linux { lab: 7, points: 20 },
    fitted_beats_linux_on_sparse_populations { lab: 7, points: 20 },
    fitted_beats_linux_across_the_families { lab: 7, points: 20 },
    fitted_costs_at_most_a_fifth_more_than_linux { lab: 7, points: 20 },
}
