//! What the runner draws, printed on the console: a pool's snapshot (`SNAP` lines,
//! `zsmalloc::snapshot`) and the frame census (`MEMMAP` lines, `mm::census`), formats in
//! `docs/protocol.md`. The demo, `replay` and `soak` print them when asked; a lab test about
//! to fail prints its pool, and `cargo grade` draws it beside the test's serial log.

use zsmalloc::snapshot::Snapshot;
use zsmalloc::{Backend, Pool};

use crate::println;

/// Prints the pool's snapshot and the frame census at `point`.
pub fn print<B: Backend>(pool: &Pool<B>, point: &str) {
    print_snapshot(&Snapshot::of(pool, point));
    let census = crate::mm::census::take(point, crate::zs_backend::is_zsmalloc_page);
    for line in census.lines() {
        println!("{line}");
    }
}

/// Prints a snapshot taken earlier (a test keeps the pool's state before the step it checks).
pub fn print_snapshot(snap: &Snapshot) {
    for line in snap.lines() {
        println!("{line}");
    }
}

/// In a test: if `failing`, prints the pool at `point` before the assertion that fails, so
/// the grader can draw it (`cargo grade` writes `TEST.pool-POINT.svg` next to `TEST.log`).
#[cfg(feature = "ktest")]
pub fn show_if_failing<B: Backend>(failing: bool, pool: &Pool<B>, point: &str) {
    if failing {
        println!("ktest: the pool at {point}, for the grader's picture:");
        print(pool, point);
    }
}
