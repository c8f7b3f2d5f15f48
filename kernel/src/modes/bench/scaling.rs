//! Scalability across CPUs (the question behind Linux 6.11's per-size-class locking):
//! operations per second on one shared pool with 1, 2 and 4 CPUs working at once (as many as
//! run), under Linux's rules with Linux 6.11's per-size-class locking (per-class locks,
//! migrate rwlock, zspage locks) and with a single pool-wide lock, and under zsos's policy
//! (the same locks), each as a ratio to its own one-CPU figure in the same run.
//!
//! Under QEMU TCG every virtual CPU is a host thread: on a 2-core host, 4 virtual CPUs share
//! 2 cores, so 4-CPU figures can show lock contention but not 4-way speed-up.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use zsmalloc::class::MAX_ALLOC_SIZE;
use zsmalloc::{Handle, Locking, MapMode, Policy, Pool, PoolConfig};

use crate::arch::{smp, tsc};
use crate::println;
use crate::zs_backend::KernelBackend;
use zsmalloc::seeded::Rng;

/// Operations per working CPU per measurement.
const OPS: u64 = 20_000;

/// One CPU's share: a mix of malloc + write (map write-only), read (map read-only) and free
/// over its own objects, in a pool shared with the other CPUs.
fn work(pool: &Pool<KernelBackend>, cpu: usize) -> u64 {
    let mut rng = Rng::new(0xbe9c ^ cpu as u64);
    let mut mine: Vec<Handle> = Vec::with_capacity(2048);
    let mut ops = 0;
    while ops < OPS {
        let roll = rng.below(100);
        if mine.is_empty() || (roll < 50 && mine.len() < 2000) {
            let size = 64 + rng.below(MAX_ALLOC_SIZE as u64 / 2) as usize;
            let h = pool.malloc(size).expect("bench malloc");
            pool.map(h, MapMode::WriteOnly).expect("bench map")[0] = cpu as u8;
            mine.push(h);
            ops += 2;
        } else if roll < 75 {
            let h = mine[rng.below(mine.len() as u64) as usize];
            core::hint::black_box(pool.map(h, MapMode::ReadOnly).expect("bench map")[0]);
            ops += 1;
        } else {
            let h = mine.swap_remove(rng.below(mine.len() as u64) as usize);
            pool.free(h).expect("bench free");
            ops += 1;
        }
    }
    for h in mine {
        pool.free(h).expect("bench free");
    }
    ops
}

/// Operations per second with `k` CPUs working on a fresh pool configured by `config`.
fn ops_per_second(config: PoolConfig, k: usize) -> u64 {
    let pool = Pool::new("bench-scaling", KernelBackend::new(), config);
    let total = AtomicU64::new(0);
    let start = tsc::start();
    smp::run_on_all_cpus(&|cpu| {
        if cpu < k {
            total.fetch_add(work(&pool, cpu), Ordering::Relaxed);
        }
    });
    let cycles = tsc::stop() - start;
    total.load(Ordering::Relaxed) * tsc::hz() / cycles.max(1)
}

/// Prints the table and the BENCH lines.
pub fn figures() {
    let running = smp::cpus_up();
    let counts: Vec<usize> = [1, 2, 4].into_iter().filter(|&k| k <= running).collect();
    println!(
        "  scaling: operations per second on one pool ({running} CPUs running; median of 3 runs each)"
    );
    // A discarded warm-up on every CPU: the first run touches guest memory QEMU has not
    // backed yet, which would make whichever figure comes first look slow.
    ops_per_second(PoolConfig::default(), running);
    println!(
        "    {:<12} {:>5} {:>12} {:>10}",
        "pool", "cpus", "ops/s", "vs 1 CPU"
    );
    let pool_wide = PoolConfig {
        locking: Locking::PoolWide,
        ..PoolConfig::default()
    };
    // Linux's rules under both lockings, then zsos's policy (per-class locking). zsos's
    // deferred compaction never runs here: each CPU frees all it allocated, with no pause.
    for (name, config) in [
        ("per-class", PoolConfig::default()),
        ("pool-wide", pool_wide),
        ("zsos", Policy::ZSOS.config()),
    ] {
        let mut one = 0;
        for &k in &counts {
            let mut runs: Vec<u64> = (0..3).map(|_| ops_per_second(config, k)).collect();
            let ops = super::median(&mut runs);
            if k == 1 {
                one = ops;
            }
            let ratio = ops as f64 / one.max(1) as f64;
            println!("    {name:<12} {k:>5} {ops:>12} {ratio:>10.2}");
            println!("BENCH name=scaling.{name}.{k}cpu value={ops} unit=ops/s");
            println!("BENCH name=ratio.scaling.{name}.{k}cpu/1cpu value={ratio:.3} unit=ratio");
        }
    }
    if running < 4 {
        println!(
            "    (boot with --smp 4 for the 4-CPU rows: cargo run --release -- --smp 4 bench scaling)"
        );
    }
}
