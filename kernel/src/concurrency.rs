//! zsmalloc on every CPU at once: the concurrent tests (they need two CPUs or more; the host
//! runs them with the rest of the suite at `--smp 2` and, as they declare `cpus: 4`, again at
//! `--smp 4`). Built only into the test kernel.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;
use zsmalloc::class::MAX_ALLOC_SIZE;
use zsmalloc::{Error, Handle, MapMode, PoolConfig};

use crate::arch::smp;
use crate::mm::buddy::FrameBlock;
use crate::mm::window::Access;
use crate::zs_backend::{KernelRanges, MovablePool};
use zsmalloc::seeded::Rng;

fn cpus() -> usize {
    let n = smp::cpus_up();
    assert!(
        n >= 2,
        "this test needs two CPUs or more ({n} running): boot with --smp 2"
    );
    n
}

/// Every CPU runs the work, each with its own per-CPU area and its own window, and the
/// windows work at the same time: each CPU maps its own pair of frames and reads back the
/// bytes it wrote there, while the others do the same.
fn every_cpu_runs_work_through_its_own_window() {
    let n = cpus();
    let seen: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());
    let frames: Vec<(FrameBlock, FrameBlock)> = (0..n)
        .map(|_| {
            (
                FrameBlock::alloc_frame().unwrap(),
                FrameBlock::alloc_frame().unwrap(),
            )
        })
        .collect();
    smp::run_on_all_cpus(&|cpu| {
        let me = crate::percpu::current();
        assert_eq!(me.index, cpu, "GS points at this CPU's own area");
        let (a, b) = &frames[cpu];
        for round in 0..200u64 {
            let stamp = (cpu as u64) << 32 | round;
            let m = me
                .window
                .map(a.pfn(), b.pfn(), Access::ReadWrite)
                .expect("this CPU's window is free");
            let p = m.addr() as *mut u64;
            // SAFETY: the window shows this CPU's two frames, 8192 bytes, writable.
            unsafe {
                p.write_volatile(stamp);
                p.add(512).write_volatile(!stamp);
                assert_eq!(p.read_volatile(), stamp, "CPU {cpu} reads its own frame");
                assert_eq!(p.add(512).read_volatile(), !stamp);
            }
        }
        seen.lock().push((cpu, me.window.base()));
    });
    let mut seen = seen.into_inner();
    seen.sort_unstable();
    assert_eq!(seen.len(), n, "every CPU ran the work once");
    for (i, (cpu, base)) in seen.iter().enumerate() {
        assert_eq!(*cpu, i);
        assert!(
            seen.iter().filter(|(_, b)| b == base).count() == 1,
            "CPU {cpu}'s window is its own"
        );
    }
}

/// A mapping's bytes shared with the other CPUs (the closure of `run_on_all_cpus` borrows
/// them) make those CPUs cache the translation of this CPU's window or ring slot; a later
/// mapping of the same slot, shared again, must show them its own frames, never the old ones
/// (each CPU drops the translations it holds before it runs a work item). Through the eager
/// window (one slot, remapped at once) and the ring (the same slot again after a wrap).
fn a_mapping_shared_with_other_cpus_never_shows_them_an_old_frame() {
    use crate::arch::probe;
    let _ = cpus();
    let fill = |f: &FrameBlock, byte: u8| {
        // SAFETY: the frame is this test's, in the direct map, 4096 bytes.
        unsafe { core::ptr::write_bytes(f.addr() as *mut u8, byte, 4096) };
    };
    let pairs: Vec<(FrameBlock, FrameBlock)> = (0..4u8)
        .map(|i| {
            let (a, b) = (
                FrameBlock::alloc_frame().unwrap(),
                FrameBlock::alloc_frame().unwrap(),
            );
            fill(&a, 0x10 + i);
            fill(&b, 0x80 + i);
            (a, b)
        })
        .collect();
    /// A read that showed the wrong frames: (CPU, path, round, the two bytes seen).
    type Wrong = (usize, &'static str, usize, [u8; 2]);
    let wrong: Mutex<Vec<Wrong>> = Mutex::new(Vec::new());
    let me = crate::percpu::current();
    for (round, (a, b)) in pairs.iter().enumerate() {
        let want = [0x10 + round as u8, 0x80 + round as u8];
        let share = |path: &'static str, at: u64| {
            smp::run_on_all_cpus(&|cpu| {
                let seen = [
                    probe::read_u8(at + 100).unwrap_or(0),
                    probe::read_u8(at + 4096 + 100).unwrap_or(0),
                ];
                if seen != want {
                    wrong.lock().push((cpu, path, round, seen));
                }
            });
        };
        let m = me.window.map(a.pfn(), b.pfn(), Access::ReadOnly).unwrap();
        share("window", m.addr());
        drop(m);
        // The ring: slot 0 after its wraps, so every round maps the same slot again.
        loop {
            let m = me.ring.map(a.pfn(), b.pfn(), Access::ReadOnly).unwrap();
            if (m.addr() - me.ring.base()) / 8192 == 0 {
                share("ring", m.addr());
                break;
            }
        }
    }
    let wrong = wrong.into_inner();
    assert!(
        wrong.is_empty(),
        "CPUs read old frames through a shared mapping (cpu, path, round, bytes): {wrong:x?}"
    );
}

fn check(obj: &[u8], seed: u64, cpu: usize) {
    if let Some(i) = zsmalloc::seeded::seeded_mismatch(obj, seed) {
        panic!(
            "CPU {cpu}: object of {} bytes differs at byte {i}",
            obj.len()
        );
    }
}

/// All CPUs but one do random malloc / map+write / read / write / free on one shared pool,
/// each with its own record of the objects it owns, while the last CPU compacts, migrates
/// random pages and empties physical ranges under them. Then every live object is checked
/// byte for byte and the pool's invariants hold.
fn concurrent_operations_on_one_pool_with_compaction_and_migration() {
    concurrent_operations_on_one_pool(PoolConfig::default(), 20_000);
}

/// The same under zsos's policy: frees compact their class on every worker CPU while the
/// mover compacts and migrates, and zspages differ in length.
fn concurrent_operations_on_one_pool_under_zsos_policy() {
    concurrent_operations_on_one_pool(zsmalloc::Policy::ZSOS.config(), 10_000);
}

fn concurrent_operations_on_one_pool(config: PoolConfig, ops_per_cpu: u64) {
    let n = cpus();
    let workers = n - 1;
    let pool = MovablePool::new("smp", config);
    let finished = AtomicUsize::new(0);
    let survivors: Mutex<Vec<(Handle, u64)>> = Mutex::new(Vec::new());
    let (compactions, migrations, ranges) =
        (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let busy_refusals = AtomicU64::new(0);
    let start = crate::arch::tsc::start();
    smp::run_on_all_cpus(&|cpu| {
        if cpu == n - 1 {
            // The mover: compaction, migration, range emptying until the workers finish.
            let mut rng = Rng::new(0xc0);
            let emptier = KernelRanges { order: 2 };
            while finished.load(Ordering::Acquire) < workers {
                pool.compact();
                compactions.fetch_add(1, Ordering::Relaxed);
                for _ in 0..8 {
                    let pages = pool.pages();
                    if pages.is_empty() {
                        break;
                    }
                    match pool.migrate_page(pages[rng.below(pages.len() as u64) as usize]) {
                        Ok(_) => {
                            migrations.fetch_add(1, Ordering::Relaxed);
                        }
                        // A page under a mapping, or freed since the list was taken.
                        Err(Error::ZspageBusy(_)) | Err(Error::NotOurPage(_)) => {
                            busy_refusals.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("mover: migration failed: {e}"),
                    }
                }
                if zsmalloc::model::RangeEmptier::empty_range(&emptier, &pool, rng.next_u64())
                    .is_ok()
                {
                    ranges.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        let mut rng = Rng::new(0x5eed ^ cpu as u64);
        let mut mine: Vec<(Handle, u64)> = Vec::new();
        for op in 0..ops_per_cpu {
            let roll = rng.below(100);
            if mine.is_empty() || (roll < 45 && mine.len() < 3000) {
                let size = 1 + rng.below(MAX_ALLOC_SIZE as u64) as usize;
                let h = pool
                    .malloc(size)
                    .unwrap_or_else(|e| panic!("CPU {cpu} op {op}: malloc({size}): {e}"));
                let seed = rng.next_u64();
                zsmalloc::seeded::fill_seeded(
                    &mut pool.map(h, MapMode::WriteOnly).expect("a new object maps"),
                    seed,
                );
                mine.push((h, seed));
            } else if roll < 80 {
                let (h, seed) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                check(&pool.map(h, MapMode::ReadOnly).expect("maps"), seed, cpu);
                pool.free(h)
                    .unwrap_or_else(|e| panic!("CPU {cpu} op {op}: free: {e}"));
            } else {
                let (h, seed) = mine[rng.below(mine.len() as u64) as usize];
                let mut buf = [0u8; 4096];
                let len = pool.read(h, &mut buf).expect("reads");
                check(&buf[..len], seed, cpu);
            }
        }
        for &(h, seed) in &mine {
            check(&pool.map(h, MapMode::ReadOnly).expect("maps"), seed, cpu);
        }
        survivors.lock().extend(mine);
        finished.fetch_add(1, Ordering::Release);
    });
    let us = crate::arch::tsc::cycles_to_us(crate::arch::tsc::stop() - start);
    let survivors = survivors.into_inner();
    pool.check_invariants().unwrap();
    for (i, &(h, seed)) in survivors.iter().enumerate() {
        check(&pool.map(h, MapMode::ReadOnly).expect("maps"), seed, i);
    }
    crate::println!(
        "  {workers} CPUs x {ops_per_cpu} operations in {} ms beside a mover CPU: {} compactions, {} pages migrated, {} ranges emptied, {} moves refused (busy or gone); {} objects checked at the end",
        us / 1000,
        compactions.load(Ordering::Relaxed),
        migrations.load(Ordering::Relaxed),
        ranges.load(Ordering::Relaxed),
        busy_refusals.load(Ordering::Relaxed),
        survivors.len()
    );
    assert!(
        compactions.load(Ordering::Relaxed) > 0 && migrations.load(Ordering::Relaxed) > 0,
        "the mover moved nothing"
    );
    for (h, _) in survivors {
        pool.free(h).unwrap();
    }
    assert_eq!(pool.backend().frames_held(), 0, "frames leaked");
}

/// Compaction and migration take the pool's migrate lock for writing; every map takes it for
/// reading. With the other CPUs mapping without pause, a compaction of a fragmented pool must
/// still finish (a writer gets the lock, and compaction lets mappers in between zspages) while
/// the mappers keep mapping. With three or more CPUs the mappers' holds overlap without a gap
/// (`KernelBackend::stretch_reads`), which starves compaction under a reader-preferring lock
/// (seen: the plain `spin::RwLock` in place of `WriterFirst` fails this test).
fn compaction_finishes_while_other_cpus_map_continuously() {
    use core::sync::atomic::AtomicBool;
    let n = cpus();
    let pool = MovablePool::new("busy", PoolConfig::default());
    let mut rng = Rng::new(0xb05e);
    let mut live: Vec<Handle> = (0..6000)
        .map(|_| pool.malloc(1 + rng.below(3000) as usize).unwrap())
        .collect();
    // Every other object goes: most zspages are half empty.
    let kept: Vec<Handle> = live
        .drain(..)
        .enumerate()
        .filter_map(|(i, h)| {
            if i % 2 == 0 {
                pool.free(h).unwrap();
                None
            } else {
                Some(h)
            }
        })
        .collect();
    let hot: Vec<Handle> = kept.iter().step_by(50).copied().collect();
    if n >= 3 {
        // Two or more mappers hand the migrate lock on to each other with no gap (each
        // read waits for the next to begin, 1 ms at most): compaction gets in only because
        // waiting writers go first.
        pool.backend().stretch_reads(crate::arch::tsc::hz() / 1000);
    }
    let (done, maps) = (AtomicBool::new(false), AtomicU64::new(0));
    let limit = crate::arch::tsc::start() + crate::arch::tsc::hz() * 20;
    let (freed, cycles) = (AtomicUsize::new(0), AtomicU64::new(0));
    let maps_before = AtomicU64::new(0);
    // Set by a mapper that reached the limit still mapping.
    let starved = AtomicBool::new(false);
    smp::run_on_all_cpus(&|cpu| {
        if cpu == 0 {
            // Compaction starts once the mappers are mapping without pause (the other CPUs
            // may wake later than this one).
            while maps.load(Ordering::SeqCst) < 100 * (n as u64 - 1)
                && crate::arch::tsc::start() < limit
            {
                core::hint::spin_loop();
            }
            maps_before.store(maps.load(Ordering::SeqCst), Ordering::SeqCst);
            let t0 = crate::arch::tsc::start();
            freed.store(pool.compact(), Ordering::SeqCst);
            cycles.store(crate::arch::tsc::stop() - t0, Ordering::SeqCst);
            done.store(true, Ordering::SeqCst);
            return;
        }
        let mut i = cpu;
        while !done.load(Ordering::SeqCst) {
            if crate::arch::tsc::start() >= limit {
                // Compaction has not finished while this CPU mapped without pause: starved.
                starved.store(true, Ordering::SeqCst);
                break;
            }
            let m = pool
                .map(hot[i % hot.len()], MapMode::ReadOnly)
                .expect("maps");
            core::hint::black_box(m.first());
            drop(m);
            maps.fetch_add(1, Ordering::Relaxed);
            i += n;
        }
    });
    let ms = crate::arch::tsc::cycles_to_us(cycles.load(Ordering::SeqCst)) / 1000;
    let before = maps_before.load(Ordering::SeqCst);
    crate::println!(
        "  compaction freed {} pages in {ms} ms while {} CPUs mapped ({} maps before it began, {} in all)",
        freed.load(Ordering::SeqCst),
        n - 1,
        before,
        maps.load(Ordering::Relaxed)
    );
    assert!(
        before >= 100 * (n as u64 - 1),
        "the mappers were not mapping when compaction began ({before} maps)"
    );
    assert!(
        done.load(Ordering::SeqCst),
        "compaction had not finished after 20 s of continuous mapping"
    );
    // A reader-preferring lock lets the mappers keep compaction out until they stop at the
    // limit, after which it finishes at once: so compaction must have ended while they were
    // still mapping, and well inside the limit.
    assert!(
        !starved.load(Ordering::SeqCst),
        "the mappers were still mapping at the 20 s limit: compaction was starved ({ms} ms)"
    );
    assert!(
        ms < 10_000,
        "compaction took {ms} ms, half the limit, against continuous mapping"
    );
    assert!(
        maps.load(Ordering::Relaxed) > before,
        "no map completed while compaction ran or after"
    );
    pool.backend().stretch_reads(0);
    assert!(freed.load(Ordering::SeqCst) > 0, "compaction freed nothing");
    pool.check_invariants().unwrap();
    for h in kept {
        pool.free(h).unwrap();
    }
}

/// Every CPU allocates and frees descriptor slots at once, each through its own magazine and
/// the shared list: no slot is ever held by two CPUs (each CPU stamps its slots and finds its
/// stamps intact), and every slot comes back.
fn descriptor_cache_slots_are_never_shared_between_cpus() {
    use crate::mm::desc_cache::DescCache;
    static CACHE: DescCache = DescCache::new(56);
    let before = CACHE.stats().in_use;
    smp::run_on_all_cpus(&|cpu| {
        let mut rng = Rng::new(cpu as u64 + 7);
        let mut mine: Vec<(core::ptr::NonNull<u8>, u64)> = Vec::new();
        for i in 0..4000u64 {
            if mine.is_empty() || rng.below(3) != 0 {
                let slot = CACHE.alloc().expect("frames for descriptors");
                let stamp = (cpu as u64) << 32 | i;
                // SAFETY: a slot of at least 8 aligned bytes that this CPU now holds alone.
                unsafe { slot.cast::<u64>().as_ptr().write_volatile(stamp) };
                mine.push((slot, stamp));
            } else {
                let (slot, stamp) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                // SAFETY: as above; the slot is still this CPU's.
                let seen = unsafe { slot.cast::<u64>().as_ptr().read_volatile() };
                assert_eq!(
                    seen, stamp,
                    "CPU {cpu}: a slot it holds was written by another"
                );
                // SAFETY: from CACHE, freed once, not used after.
                unsafe { CACHE.free(slot) };
            }
        }
        for (slot, stamp) in mine {
            // SAFETY: as above.
            let seen = unsafe { slot.cast::<u64>().as_ptr().read_volatile() };
            assert_eq!(
                seen, stamp,
                "CPU {cpu}: a slot it holds was written by another"
            );
            // SAFETY: as above.
            unsafe { CACHE.free(slot) };
        }
    });
    assert_eq!(CACHE.stats().in_use, before, "every slot came back");
}

crate::ktests! {
    every_cpu_runs_work_through_its_own_window { cpus: 4 },
    descriptor_cache_slots_are_never_shared_between_cpus { cpus: 4 },
    concurrent_operations_on_one_pool_with_compaction_and_migration { cpus: 4 },
    concurrent_operations_on_one_pool_under_zsos_policy { cpus: 4 },
    compaction_finishes_while_other_cpus_map_continuously { cpus: 4 },
    a_mapping_shared_with_other_cpus_never_shows_them_an_old_frame { cpus: 4 },
}
