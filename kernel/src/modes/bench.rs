//! Mode `bench`: benchmarks, reported as a readable table and as one machine-readable line
//! per figure: `BENCH name=<name> value=<median> unit=<unit>`.
//!
//! Each figure is the median over many batches of the cycles per operation (TSC, fenced),
//! also given in ns from the calibrated TSC rate. Ratios are taken within the same run.

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

/// Median cycles per operation of `op`, over [`BATCHES`] batches of [`OPS_PER_BATCH`].
pub fn median_cycles(mut op: impl FnMut()) -> u64 {
    let mut samples: Vec<u64> = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t0 = tsc::start();
        for _ in 0..OPS_PER_BATCH {
            op();
        }
        let t1 = tsc::stop();
        samples.push((t1 - t0) / OPS_PER_BATCH);
    }
    samples.sort_unstable();
    samples[BATCHES / 2]
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

/// Runs the benchmarks.
pub fn run(rest: &[&str]) -> ExitCode {
    if let Err(code) = super::no_args("bench", rest) {
        return code;
    }
    println!(
        "zsos: bench ({} MHz TSC; median cycles per operation over {BATCHES} batches of {OPS_PER_BATCH})",
        tsc::hz() / 1_000_000
    );
    println!("  {:<36} {:>10} {:>10}", "figure", "cycles", "ns");
    let empty = median_cycles(|| {});
    report("tsc.empty_loop", empty);

    let (Ok(a), Ok(b)) = (FrameBlock::alloc_frame(), FrameBlock::alloc_frame()) else {
        println!("zsos: bench: no frames");
        return ExitCode::Failure;
    };
    let window = &crate::percpu::current().window;
    let map_unmap = median_cycles(|| {
        let m = window
            .map(a.pfn(), b.pfn(), Access::ReadWrite)
            .expect("window is free");
        core::hint::black_box(m.addr());
    });
    report("window.map_unmap", map_unmap);

    let (src, dst) = (a.addr() as *const u8, b.addr() as *mut u8);
    let memcpy = median_cycles(|| {
        // SAFETY: both frames belong to this benchmark; 4096 bytes fit in each.
        unsafe {
            core::ptr::copy_nonoverlapping(core::hint::black_box(src), dst, FRAME_SIZE as usize)
        };
    });
    report("memcpy.4k", memcpy);
    let ratio = map_unmap as f64 / memcpy.max(1) as f64;
    println!("  window.map_unmap / memcpy.4k = {ratio:.2}");
    println!("BENCH name=ratio.window_map_unmap_over_memcpy_4k value={ratio:.3} unit=ratio");
    ExitCode::Success
}
