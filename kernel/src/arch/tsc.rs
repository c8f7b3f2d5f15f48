//! The cycle counter: `rdtsc` fenced so that it measures what lies between two reads, and
//! its frequency, calibrated once at boot against the PIT, to turn cycles into nanoseconds.

use core::sync::atomic::{AtomicU64, Ordering};

/// TSC ticks per second, measured by [`calibrate`]; 0 before calibration.
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Reads the time-stamp counter at the start of a measured region: earlier instructions
/// (and loads) complete before the read (`lfence` is dispatch-serialising on x86).
#[inline(always)]
pub fn start() -> u64 {
    // SAFETY: lfence and rdtsc only read the counter; they touch no memory.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        let t = core::arch::x86_64::_rdtsc();
        core::arch::x86_64::_mm_lfence();
        t
    }
}

/// Reads the time-stamp counter at the end of a measured region: all earlier instructions
/// finish first, and later ones do not start before the read.
#[inline(always)]
pub fn stop() -> u64 {
    // SAFETY: as for `start`.
    unsafe {
        core::arch::x86_64::_mm_mfence();
        core::arch::x86_64::_mm_lfence();
        let t = core::arch::x86_64::_rdtsc();
        core::arch::x86_64::_mm_lfence();
        t
    }
}

/// Reads the time-stamp counter without fences: cheap, for splitting a measured region into
/// phases (each reading may drift by a few instructions either way).
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: rdtsc only reads the counter; it touches no memory.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the TSC frequency against PIT channel 2 (a fixed 1.193182 MHz clock) and stores
/// it; the median of three 10 ms windows. Returns ticks per second.
pub fn calibrate() -> u64 {
    let mut samples = [0u64; 3];
    for s in samples.iter_mut() {
        *s = super::pit::measure_tsc_hz(10);
    }
    samples.sort_unstable();
    let hz = samples[1];
    TSC_HZ.store(hz, Ordering::Relaxed);
    hz
}

/// The calibrated frequency in Hz (0 if [`calibrate`] has not run).
pub fn hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Converts a number of TSC cycles to nanoseconds (0 before calibration).
pub fn cycles_to_ns(cycles: u64) -> u64 {
    match hz() {
        0 => 0,
        hz => ((cycles as u128 * 1_000_000_000) / hz as u128) as u64,
    }
}

/// Converts a number of TSC cycles to microseconds (0 before calibration).
pub fn cycles_to_us(cycles: u64) -> u64 {
    cycles_to_ns(cycles) / 1000
}
