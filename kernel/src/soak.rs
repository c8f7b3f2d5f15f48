//! The soak: millions of random pool operations on real frames, with compaction, page
//! migration and physical ranges emptied under the objects, and every object's bytes checked
//! when it is read, freed and at the end. Mode `soak N` runs it on every CPU at once (one
//! shared pool, each CPU its own objects); the kernel suite runs a million operations on one.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use zsmalloc::class::MAX_ALLOC_SIZE;
use zsmalloc::seeded::{Rng, fill_seeded, seeded_mismatch};
use zsmalloc::{Error, Handle, MapMode, Policy};

use crate::arch::{smp, tsc};
use crate::mm::migrate::RangeError;
use crate::zs_backend::MovablePool;

/// Objects live at once across all CPUs, about (the soak keeps between half and 1.5 times).
const TARGET_LIVE: usize = 20_000;
/// A page migration every this many operations of a CPU.
const MIGRATE_EVERY: u64 = 500;
/// A range emptied every this many operations (CPU 0 only: one range at a time).
const EMPTY_EVERY: u64 = 5_000;
/// A compaction every this many operations of a CPU.
const COMPACT_EVERY: u64 = 20_000;
/// Order of the ranges emptied.
const RANGE_ORDER: usize = 2;

/// What a soak did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoakReport {
    /// CPUs that ran operations.
    pub cpus: usize,
    /// Operations done (malloc and its write count two; a checked free two).
    pub ops: u64,
    /// Wall time in milliseconds.
    pub ms: u64,
    /// Objects live at the end, all checked byte for byte.
    pub live: usize,
    /// Pages the pool held at the end.
    pub pages: usize,
    /// Pages freed by compaction.
    pub compacted: u64,
    /// Pages migrated (on their own and inside emptied ranges).
    pub migrated: u64,
    /// Ranges emptied.
    pub emptied: u64,
    /// Ranges refused (a frame nothing can move) and migrations refused (a page busy or
    /// freed by another CPU meanwhile).
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    compacted: AtomicU64,
    migrated: AtomicU64,
    emptied: AtomicU64,
    refused: AtomicU64,
}

/// Runs `ops` operations (in all) from `seed` on a pool of `policy`, on this CPU only or on
/// every CPU that is up. Returns what it did, or the first object whose bytes changed; a pool
/// error panics (the soak only asks for what must succeed). `at_end` sees the pool once every
/// CPU is done and every survivor checked, before they are freed (the pictures).
pub fn run(
    ops: u64,
    seed: u64,
    all_cpus: bool,
    policy: Policy,
    at_end: Option<&dyn Fn(&MovablePool)>,
) -> Result<SoakReport, alloc::string::String> {
    let pool = MovablePool::new("soak", policy.config());
    let cpus = if all_cpus { smp::cpus_up() } else { 1 };
    let counters = Counters::default();
    let survivors: Mutex<Vec<(Handle, u64)>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<alloc::string::String>> = Mutex::new(None);
    let start = tsc::start();
    let work = |cpu: usize| {
        let share = ops / cpus as u64 + u64::from((cpu as u64) < ops % cpus as u64);
        match soak_on_one_cpu(&pool, cpu, share, seed, cpus, &counters) {
            Ok(live) => survivors.lock().extend(live),
            Err(e) => *failure.lock() = Some(e),
        }
    };
    if all_cpus {
        smp::run_on_all_cpus(&work);
    } else {
        work(0);
    }
    let ms = tsc::cycles_to_us(tsc::stop() - start) / 1000;
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    pool.check_invariants()?;
    let live = survivors.into_inner();
    for (i, &(h, object_seed)) in live.iter().enumerate() {
        check(
            &pool.map(h, MapMode::ReadOnly).expect("a live object maps"),
            object_seed,
        )
        .map_err(|e| alloc::format!("at the end, object {i}: {e}"))?;
    }
    let report = SoakReport {
        cpus,
        ops: counters.ops.load(Ordering::Relaxed),
        ms,
        live: live.len(),
        pages: pool.total_pages(),
        compacted: counters.compacted.load(Ordering::Relaxed),
        migrated: counters.migrated.load(Ordering::Relaxed),
        emptied: counters.emptied.load(Ordering::Relaxed),
        refused: counters.refused.load(Ordering::Relaxed),
    };
    if let Some(at_end) = at_end {
        at_end(&pool);
    }
    for (h, _) in live {
        pool.free(h).expect("a live object frees");
    }
    if pool.backend().frames_held() != 0 {
        return Err(alloc::format!(
            "{} frames still held after every object was freed",
            pool.backend().frames_held()
        ));
    }
    Ok(report)
}

/// One CPU's share: its own objects, the pool shared. Returns its live objects.
fn soak_on_one_cpu(
    pool: &MovablePool,
    cpu: usize,
    ops: u64,
    seed: u64,
    cpus: usize,
    counters: &Counters,
) -> Result<Vec<(Handle, u64)>, alloc::string::String> {
    let target = TARGET_LIVE / cpus;
    let mut rng = Rng::new(seed ^ (cpu as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut live: Vec<(Handle, u64)> = Vec::with_capacity(target * 2);
    let mut done = 0u64;
    let mut next = [MIGRATE_EVERY, EMPTY_EVERY, COMPACT_EVERY];
    while done < ops {
        let roll = rng.below(100);
        if live.is_empty() || (roll < 45 && live.len() < target * 3 / 2) || live.len() < target / 2
        {
            let size = 1 + rng.below(MAX_ALLOC_SIZE as u64) as usize;
            let h = pool
                .malloc(size)
                .unwrap_or_else(|e| panic!("soak CPU {cpu} op {done}: malloc({size}): {e}"));
            let object_seed = rng.next_u64();
            fill_seeded(
                &mut pool.map(h, MapMode::WriteOnly).expect("maps"),
                object_seed,
            );
            live.push((h, object_seed));
            done += 2;
        } else if roll < 90 {
            let (h, object_seed) = live.swap_remove(rng.below(live.len() as u64) as usize);
            if roll < 55 {
                check(&pool.map(h, MapMode::ReadOnly).expect("maps"), object_seed)
                    .map_err(|e| alloc::format!("CPU {cpu} op {done}: {e}"))?;
                done += 1;
            }
            pool.free(h)
                .unwrap_or_else(|e| panic!("soak CPU {cpu} op {done}: free: {e}"));
            done += 1;
        } else {
            let (h, object_seed) = live[rng.below(live.len() as u64) as usize];
            check(&pool.map(h, MapMode::ReadOnly).expect("maps"), object_seed)
                .map_err(|e| alloc::format!("CPU {cpu} op {done}: {e}"))?;
            done += 1;
        }
        if done >= next[0] {
            next[0] += MIGRATE_EVERY;
            migrate_one(pool, &mut rng, counters);
        }
        if done >= next[1] {
            next[1] += EMPTY_EVERY;
            if cpu == 0 {
                empty_one_range(pool, &mut rng, counters);
            }
        }
        if done >= next[2] {
            next[2] += COMPACT_EVERY;
            counters
                .compacted
                .fetch_add(pool.compact() as u64, Ordering::Relaxed);
        }
    }
    counters.ops.fetch_add(done, Ordering::Relaxed);
    Ok(live)
}

fn migrate_one(pool: &MovablePool, rng: &mut Rng, counters: &Counters) {
    let pages = pool.pages();
    if pages.is_empty() {
        return;
    }
    match pool.migrate_page(pages[rng.below(pages.len() as u64) as usize]) {
        Ok(_) => {
            counters.migrated.fetch_add(1, Ordering::Relaxed);
        }
        // Mapped or freed by another CPU since the list was taken.
        Err(Error::ZspageBusy(_) | Error::NotOurPage(_)) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => panic!("soak: migration failed: {e}"),
    }
}

/// Empties the aligned block of 2^RANGE_ORDER frames around a random page of the pool, then
/// gives the block back.
fn empty_one_range(pool: &MovablePool, rng: &mut Rng, counters: &Counters) {
    match crate::zs_backend::empty_range_around(pool, rng.next_u64(), RANGE_ORDER) {
        None => {}
        Some(Ok(r)) => {
            counters.emptied.fetch_add(1, Ordering::Relaxed);
            counters.migrated.fetch_add(r.migrated, Ordering::Relaxed);
        }
        Some(Err(
            RangeError::Unmovable { .. }
            | RangeError::Refused { .. }
            | RangeError::OutOfMemory { .. },
        )) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        Some(Err(e)) => panic!("soak: emptying a range: {e}"),
    }
}

fn check(obj: &[u8], seed: u64) -> Result<(), alloc::string::String> {
    match seeded_mismatch(obj, seed) {
        None => Ok(()),
        Some(i) => Err(alloc::format!(
            "an object of {} bytes differs at byte {i}",
            obj.len()
        )),
    }
}

impl core::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} operations on {} CPU(s) in {} ms; {} objects live at the end ({} pages), all \
             intact; {} pages compacted, {} pages migrated, {} ranges emptied, {} refused",
            self.ops,
            self.cpus,
            self.ms,
            self.live,
            self.pages,
            self.compacted,
            self.migrated,
            self.emptied,
            self.refused
        )
    }
}
