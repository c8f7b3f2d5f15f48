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

/// Pages relative to Linux's at which the pages part of the score is full: 30% fewer (the
/// reference rule needs about 40% fewer).
pub const FULL_PAGES_RATIO: f64 = 0.70;
/// Cycles relative to Linux's up to which the speed part is full, and from which it is 0.
pub const FULL_SPEED_RATIO: f64 = 1.3;
/// See [`FULL_SPEED_RATIO`].
pub const ZERO_SPEED_RATIO: f64 = 1.6;
/// The weight of pages in the score; speed has the rest.
pub const PAGES_WEIGHT: f64 = 0.7;
/// Points of the continuous score.
pub const SCORE_POINTS: u16 = 60;

/// The continuous score from `pages` (the geometric mean of your pages / Linux's over every
/// point of every trace) and `cycles` (your cycles / Linux's replaying a zram trace):
/// `SCORE_POINTS × pages part × (PAGES_WEIGHT + (1 − PAGES_WEIGHT) × speed part)`, each part
/// from 0 to 1. Speed counts only as a share of what the pages earn: Linux's rule itself
/// (pages 1.0) scores 0. Also the leaderboard figure: the percentage of pages saved, scaled
/// down for a rule slower than [`FULL_SPEED_RATIO`], not capped.
pub fn placement_score(pages: f64, cycles: f64) -> (f64, f64) {
    let pages_part = ((1.0 - pages) / (1.0 - FULL_PAGES_RATIO)).clamp(0.0, 1.0);
    let speed_part =
        ((ZERO_SPEED_RATIO - cycles) / (ZERO_SPEED_RATIO - FULL_SPEED_RATIO)).clamp(0.0, 1.0);
    let score =
        f64::from(SCORE_POINTS) * pages_part * (PAGES_WEIGHT + (1.0 - PAGES_WEIGHT) * speed_part);
    let leaderboard = 100.0 * (1.0 - pages) * (FULL_SPEED_RATIO / cycles).min(1.0);
    (score, leaderboard)
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

/// Your cycles over Linux's, replaying a zram trace (allocations and frees), both rules in
/// turn, 15 rounds: the ratio of the medians.
fn cycles_against_linux() -> f64 {
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
    println!("  zram trace: fitted {fitted} cycles, linux {linux} cycles (median of 15 rounds)");
    fitted as f64 / linux as f64
}

/// Lab 7's continuous score, like CMU's malloclab but with the reference measured in the
/// same run: pages against Linux's rule on every graded trace, cycles on a zram trace (see
/// [`placement_score`]). Above the floor only: every trace intact and never much worse than
/// Linux at any point (else this test fails and scores nothing).
fn placement_score_against_linux_in_this_run() {
    let judged = side_by_side();
    let mut ratios = Vec::new();
    let (mut sparse, mut sparse_linux) = (0, 0);
    for (family, n, points) in &judged {
        for (i, &(fitted, linux)) in points.iter().enumerate() {
            assert!(
                fitted <= linux + linux / 4 + 1,
                "{} ({n} objects), point {i}: {fitted} pages, more than 1.25 × Linux's {linux} + 1: below the floor",
                family.name()
            );
            ratios.push(fitted as f64 / linux.max(1) as f64);
            if *family == Family::Sparse {
                (sparse, sparse_linux) = (sparse + fitted, sparse_linux + linux);
            }
        }
    }
    let pages = geometric_mean(&ratios);
    let cycles = cycles_against_linux();
    let (score, leaderboard) = placement_score(pages, cycles);
    println!(
        "  pages / Linux's: geometric mean {pages:.3} over {} points (sparse {sparse} / {sparse_linux}); cycles / Linux's {cycles:.3}",
        ratios.len()
    );
    println!(
        "  score {score:.1} of {SCORE_POINTS} (full at pages <= {FULL_PAGES_RATIO} and cycles <= {FULL_SPEED_RATIO}); leaderboard {leaderboard:.1}"
    );
    crate::ktest::award(
        (score + 0.5) as u16,
        SCORE_POINTS,
        &[
            ("pages", pages),
            ("cycles", cycles),
            ("leaderboard", leaderboard),
        ],
    );
}

crate::ktests! {
    // Lab 7: placement (docs/labs/lab7-placement.md).
    fitted_placement_keeps_every_object_intact { lab: 7, points: 20 },
    fitted_is_never_much_worse_than_linux { lab: 7, points: 20 },
    // Worth SCORE_POINTS (a literal here: the lab tools read these tables from the source).
    placement_score_against_linux_in_this_run { lab: 7, points: 60 },
}
