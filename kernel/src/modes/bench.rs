//! Mode `bench`: benchmarks, reported as a table and as one machine-readable line per
//! figure: `BENCH name=<name> value=<median> unit=<unit>`. For now only the cost of the
//! measurement itself; the allocator benchmarks join as they land.

use crate::arch::qemu::ExitCode;
use crate::arch::tsc;
use crate::println;

const SAMPLES: usize = 1001;

/// Runs the benchmarks.
pub fn run(rest: &[&str]) -> ExitCode {
    if let Err(code) = super::no_args("bench", rest) {
        return code;
    }
    let mut samples = [0u64; SAMPLES];
    for s in samples.iter_mut() {
        let t0 = tsc::start();
        let t1 = tsc::stop();
        *s = t1 - t0;
    }
    samples.sort_unstable();
    let median = samples[SAMPLES / 2];
    println!(
        "zsos: bench ({} MHz TSC, medians of {SAMPLES} samples)",
        tsc::hz() / 1_000_000
    );
    println!("  {:<32} {:>10} {:>10}", "figure", "cycles", "ns");
    println!(
        "  {:<32} {:>10} {:>10}",
        "tsc.empty_region",
        median,
        tsc::cycles_to_ns(median)
    );
    println!("BENCH name=tsc.empty_region value={median} unit=cycles");
    ExitCode::Success
}
