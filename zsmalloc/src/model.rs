//! The reference model checker: random operations on a pool against a shadow copy of every
//! live object's bytes, checking contents and the pool's invariants as it goes. Seeded and
//! reproducible: every failure message starts with the seed and the step. Used by the host
//! tests (and under Miri) and by the kernel's own tests on real frames and the real window.
//!
//! Test support only: built for the crate's own tests and, with the `testkit` feature, for
//! the kernel's test build.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::backend::{Backend, Pfn};
use crate::class::{ClassLayout, HANDLE_SIZE, MAX_ALLOC_SIZE, PAGE_SIZE};
use crate::seeded::{Rng, pattern};
use crate::{Error, Handle, MapMode, Pool, PoolStats};

/// Writes an object one of three ways (`write`, a write-only map, a read-write map).
pub fn write_object<B: Backend>(
    pool: &Pool<B>,
    h: Handle,
    bytes: &[u8],
    how: u64,
) -> Result<(), Error> {
    match how % 3 {
        0 => pool.write(h, bytes),
        1 => {
            pool.map(h, MapMode::WriteOnly)?.copy_from_slice(bytes);
            Ok(())
        }
        _ => {
            pool.map(h, MapMode::ReadWrite)?.copy_from_slice(bytes);
            Ok(())
        }
    }
}

/// Reads an object one of four ways (read-only map, read-write map, `read`, `read_object`).
pub fn read_object<B: Backend>(pool: &Pool<B>, h: Handle, how: u64) -> Result<Vec<u8>, Error> {
    Ok(match how % 4 {
        0 => pool.map(h, MapMode::ReadOnly)?.to_vec(),
        1 => pool.map(h, MapMode::ReadWrite)?.to_vec(),
        2 => {
            let mut buf = vec![0u8; MAX_ALLOC_SIZE];
            let n = pool.read(h, &mut buf)?;
            buf.truncate(n);
            buf
        }
        _ => {
            let mut local = [0u8; PAGE_SIZE];
            pool.read_object(h, &mut local)?.to_vec()
        }
    })
}

/// What the model run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelReport {
    /// Successful allocations.
    pub mallocs: u64,
    /// Frees.
    pub frees: u64,
    /// Reads checked against the shadow.
    pub reads: u64,
    /// Allocations refused for lack of memory.
    pub out_of_memory: u64,
    /// Objects alive at the end.
    pub live_at_end: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Pages they freed.
    pub pages_compacted: u64,
    /// Pages migrated to new frames.
    pub migrations: u64,
    /// Physical ranges emptied of the pool's pages.
    pub ranges_emptied: u64,
    /// Range emptyings refused (a frame that cannot move, or no frame to move to).
    pub ranges_refused: u64,
}

/// A physical range emptied of a pool's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmptiedRange {
    /// First frame of the range.
    pub start: Pfn,
    /// Frames in the range.
    pub frames: u64,
    /// Pool pages migrated out of it.
    pub migrated: u64,
}

/// Why a range could not be emptied (the pool must be unchanged apart from pages already
/// migrated, which stay valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRefusal {
    /// A frame in the range is in use and cannot move (not a movable page).
    Unmovable(Pfn),
    /// A page's zspage has a mapped object.
    Busy(Pfn),
    /// No frame outside the range to migrate to.
    OutOfMemory,
}

/// The machine's side of page migration, as the model drives it: empty a physical range of
/// every page of `pool` (the kernel's range-emptying routine, or its host stand-in).
pub trait RangeEmptier<B: Backend> {
    /// Chooses a range with `seed` and migrates every page of `pool` out of it.
    fn empty_range(&self, pool: &Pool<B>, seed: u64) -> Result<EmptiedRange, RangeRefusal>;
}

/// Runs `steps` random operations (malloc, free, map and write, read every way, compaction,
/// page migration, emptying a physical range if `ranges` is given, frees of freed handles)
/// with `seed`, checking the invariants every `check_every` steps (1 = every step) and every
/// live object at the end. Frees everything it allocated before returning, so the pool ends
/// as it started.
pub fn run<B: Backend>(
    pool: &Pool<B>,
    seed: u64,
    steps: usize,
    check_every: usize,
    ranges: Option<&dyn RangeEmptier<B>>,
) -> Result<ModelReport, String> {
    let mut rng = Rng::new(seed);
    let mut shadow: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut freed: Vec<Handle> = Vec::new();
    let mut report = ModelReport::default();
    let huge = pool.huge_class_size();
    let result = (|| {
        for step in 0..steps {
            let ctx = |what: String| format!("model seed {seed:#x} step {step}: {what}");
            let roll = rng.below(100);
            if roll < 40 || shadow.is_empty() {
                let size = match rng.below(10) {
                    0 => 1 + rng.below(32) as usize,
                    1 => huge - 1 + rng.below(3) as usize,
                    2 => MAX_ALLOC_SIZE - rng.below(8) as usize,
                    _ => 1 + rng.below(MAX_ALLOC_SIZE as u64) as usize,
                };
                match pool.malloc(size) {
                    Ok(h) => {
                        let bytes = pattern(rng.next_u64(), size);
                        write_object(pool, h, &bytes, rng.next_u64())
                            .map_err(|e| ctx(format!("write: {e}")))?;
                        if shadow.insert(h.to_raw(), bytes).is_some() {
                            return Err(ctx(format!("handle {:#x} handed out twice", h.to_raw())));
                        }
                        report.mallocs += 1;
                    }
                    Err(Error::OutOfMemory) => report.out_of_memory += 1,
                    Err(e) => return Err(ctx(format!("malloc({size}): {e}"))),
                }
            } else if roll < 70 {
                let key = *shadow
                    .keys()
                    .nth(rng.below(shadow.len() as u64) as usize)
                    .expect("not empty");
                shadow.remove(&key);
                pool.free(Handle::from_raw(key))
                    .map_err(|e| ctx(format!("free: {e}")))?;
                freed.push(Handle::from_raw(key));
                report.frees += 1;
            } else if roll < 85 {
                let key = *shadow
                    .keys()
                    .nth(rng.below(shadow.len() as u64) as usize)
                    .expect("not empty");
                let h = Handle::from_raw(key);
                let got =
                    read_object(pool, h, rng.next_u64()).map_err(|e| ctx(format!("read: {e}")))?;
                if got != shadow[&key] {
                    return Err(ctx(format!(
                        "object {key:#x} of {} bytes has the wrong contents",
                        got.len()
                    )));
                }
                report.reads += 1;
                let bytes = shadow.get_mut(&key).expect("present");
                let at = rng.below(bytes.len() as u64) as usize;
                let v = rng.next_u64() as u8;
                pool.map(h, MapMode::ReadWrite)
                    .map_err(|e| ctx(format!("map: {e}")))?[at] = v;
                bytes[at] = v;
            } else if roll < 88 {
                report.compactions += 1;
                report.pages_compacted += pool.compact() as u64;
                if pool.stats().freeable() != 0 {
                    return Err(ctx(format!(
                        "{} pages still freeable after compaction",
                        pool.stats().freeable()
                    )));
                }
            } else if let Some(emptier) = ranges.filter(|_| roll == 89) {
                match emptier.empty_range(pool, rng.next_u64()) {
                    Ok(r) => {
                        let end = r.start + r.frames;
                        if let Some(p) = pool.pages().iter().find(|&&p| p >= r.start && p < end) {
                            return Err(ctx(format!(
                                "frame {p:#x} still in the pool after emptying {:#x}..{end:#x}",
                                r.start
                            )));
                        }
                        report.ranges_emptied += 1;
                        report.migrations += r.migrated;
                    }
                    Err(_) => report.ranges_refused += 1,
                }
            } else if roll < 90 {
                let pages = pool.pages();
                if !pages.is_empty() {
                    let pfn = pages[rng.below(pages.len() as u64) as usize];
                    match pool.migrate_page(pfn) {
                        Ok(_) => report.migrations += 1,
                        Err(Error::OutOfMemory) => report.out_of_memory += 1,
                        Err(e) => return Err(ctx(format!("migrating frame {pfn:#x}: {e}"))),
                    }
                }
            } else if roll < 92 && !freed.is_empty() {
                let h = freed[rng.below(freed.len() as u64) as usize];
                match pool.free(h) {
                    Err(Error::DoubleFree(_)) | Err(Error::StaleHandle(_)) => {}
                    other => return Err(ctx(format!("freeing a freed handle gave {other:?}"))),
                }
            } else {
                let key = *shadow
                    .keys()
                    .nth(rng.below(shadow.len() as u64) as usize)
                    .expect("not empty");
                let got = read_object(pool, Handle::from_raw(key), rng.next_u64())
                    .map_err(|e| ctx(format!("read: {e}")))?;
                if got != shadow[&key] {
                    return Err(ctx(format!("object {key:#x} has the wrong contents")));
                }
                report.reads += 1;
            }
            if step % check_every.max(1) == 0 {
                pool.check_invariants().map_err(ctx)?;
                if pool.stats().objects() != shadow.len() as u64 {
                    return Err(ctx(format!(
                        "pool counts {} objects, model {}",
                        pool.stats().objects(),
                        shadow.len()
                    )));
                }
            }
        }
        for (key, bytes) in &shadow {
            let got = read_object(pool, Handle::from_raw(*key), *key)
                .map_err(|e| format!("final read: {e}"))?;
            if &got != bytes {
                return Err(format!(
                    "model seed {seed:#x} final check: object {key:#x} has the wrong contents"
                ));
            }
        }
        pool.check_invariants()
            .map_err(|e| format!("model seed {seed:#x} at the end: {e}"))
    })();
    report.live_at_end = shadow.len() as u64;
    for key in shadow.keys() {
        let _ = pool.free(Handle::from_raw(*key));
    }
    result.map(|()| report)
}

/// Fills one zspage of every class that `pick` selects with objects of the largest size the
/// class serves (so every page-boundary offset the class produces is used), writes distinct
/// bytes into each object, reads every object back all four ways, calls `on_spanning` for each
/// object that spans two pages, and frees them all. Returns how many objects spanned.
pub fn every_class_round_trip<B: Backend>(
    pool: &Pool<B>,
    pick: impl Fn(&ClassLayout) -> bool,
    mut on_spanning: impl FnMut(Handle) -> Result<(), String>,
) -> Result<usize, String> {
    let mut spanning = 0;
    for c in pool.classes().classes.iter().filter(|c| pick(c)) {
        let size = if c.huge {
            c.size.min(MAX_ALLOC_SIZE)
        } else {
            c.size - HANDLE_SIZE
        };
        let ctx = |i: usize, what: &str| {
            format!("class {} ({} bytes) object {i}: {what}", c.index, c.size)
        };
        let mut hs = Vec::with_capacity(c.objs_per_zspage);
        for i in 0..c.objs_per_zspage {
            let h = pool
                .malloc(size)
                .map_err(|e| ctx(i, &format!("malloc: {e}")))?;
            let bytes = pattern(i as u64 + c.index as u64 * 1000, size);
            write_object(pool, h, &bytes, i as u64).map_err(|e| ctx(i, &format!("write: {e}")))?;
            hs.push(h);
        }
        let stats = pool.class_stats(pool.classes().alias[c.index] as usize);
        if stats.pages_used != c.pages_per_zspage as u64 {
            return Err(ctx(
                0,
                &format!(
                    "one zspage should hold them, {} pages used",
                    stats.pages_used
                ),
            ));
        }
        for (i, &h) in hs.iter().enumerate() {
            let expect = pattern(i as u64 + c.index as u64 * 1000, size);
            for how in 0..4 {
                if read_object(pool, h, how).map_err(|e| ctx(i, &format!("read: {e}")))? != expect {
                    return Err(ctx(i, &format!("read way {how} gave the wrong bytes")));
                }
            }
            if pool
                .location(h)
                .map_err(|e| ctx(i, &format!("{e}")))?
                .second_page
                .is_some()
            {
                spanning += 1;
                on_spanning(h).map_err(|e| ctx(i, &e))?;
            }
        }
        for h in hs {
            pool.free(h)
                .map_err(|e| format!("class {}: free: {e}", c.index))?;
        }
    }
    pool.check_invariants()?;
    Ok(spanning)
}

/// How many objects of a zspage of class `c` span two pages when they fill their slots.
pub fn spanning_slots(c: &ClassLayout) -> usize {
    (0..c.objs_per_zspage)
        .filter(|i| i * c.size / PAGE_SIZE != ((i + 1) * c.size - 1) / PAGE_SIZE)
        .count()
}

/// Pages a perfect repacking of the live objects into their classes' own zspage length would
/// free: each class needs ceil(used / objects per zspage) zspages of its length; every page
/// beyond those could go (with zspages of several lengths, a shorter layout may free more).
pub fn perfect_repacking_bound(stats: &PoolStats) -> u64 {
    stats
        .classes
        .iter()
        .map(|c| {
            let (objs, pages) = (c.objs_per_zspage as u64, c.pages_per_zspage as u64);
            c.pages_used
                .saturating_sub(c.obj_used.div_ceil(objs) * pages)
        })
        .sum()
}

/// The fewest pages that hold `n` objects of class layout `c` in zspages of the lengths the
/// growth rule `growth` lets a compacted class have: the class's own length only (Linux's
/// rule), or any length that holds an object (zsos's: compaction repacks short zspages). An
/// oracle for compaction, computed apart from the pool's own bookkeeping (an unbounded
/// knapsack over lengths).
pub fn fewest_pages(c: &ClassLayout, n: usize, growth: crate::Growth) -> usize {
    let full = c.pages_per_zspage;
    if c.huge || growth == crate::Growth::Fixed {
        return n.div_ceil(c.objs_per_zspage) * full;
    }
    let lengths: Vec<(usize, usize)> = (1..=full)
        .map(|pages| (pages, pages * PAGE_SIZE / c.size))
        .filter(|&(_, objs)| objs > 0)
        .collect();
    // fewest[k]: the fewest pages holding at least k objects.
    let mut fewest = vec![0usize; n + 1];
    for k in 1..=n {
        fewest[k] = lengths
            .iter()
            .map(|&(pages, objs)| pages + fewest[k.saturating_sub(objs)])
            .min()
            .expect("a normal class has a length that holds an object");
    }
    fewest[n]
}

/// Pages the live objects `handles` need after a perfect compaction of each class: per class
/// (where each object is now), [`fewest_pages`]. Computed after compaction, since compaction
/// may take an object lent a larger class's slot home to its own class.
pub fn pages_after_perfect_compaction<B: Backend>(
    pool: &Pool<B>,
    handles: impl IntoIterator<Item = Handle>,
) -> Result<usize, String> {
    let table = pool.classes();
    let mut per_pos = vec![0usize; table.classes.len()];
    for h in handles {
        let at = pool.location(h).map_err(|e| format!("{e}"))?;
        per_pos[table.alias[at.class_index] as usize] += 1;
    }
    Ok(per_pos
        .iter()
        .zip(&table.classes)
        .map(|(&n, c)| fewest_pages(c, n, pool.growth()))
        .sum())
}

/// What one compaction case measured.
#[derive(Debug, Clone, Copy)]
pub struct CompactionCase {
    /// Pages the pool held before compacting.
    pub pages_before: usize,
    /// The pool's own perfect-repacking bound before compacting (its compaction's condition).
    pub bound: u64,
    /// Pages the survivors need after a perfect compaction, computed apart from the pool
    /// ([`pages_after_perfect_compaction`]).
    pub oracle_pages: usize,
    /// Pages compaction freed.
    pub freed: usize,
    /// Objects it moved.
    pub moved: u64,
}

/// Allocates `n` objects of random sizes in `sizes` with distinct bytes, frees `percent`% of them in
/// random order, compacts, and checks that every survivor kept its bytes, that moved objects
/// are exactly those whose location changed (at least those, where an object may move twice),
/// and the pool's invariants. Frees the survivors
/// before returning. The caller compares what compaction left, `pages_before - freed`, with
/// `oracle_pages`.
pub fn compaction_case<B: Backend>(
    pool: &Pool<B>,
    seed: u64,
    n: usize,
    sizes: core::ops::RangeInclusive<usize>,
    percent: usize,
) -> Result<CompactionCase, String> {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(Handle, Vec<u8>)> = Vec::with_capacity(n);
    for i in 0..n {
        let size = sizes.start() + rng.below((sizes.end() - sizes.start() + 1) as u64) as usize;
        let h = pool.malloc(size).map_err(|e| format!("malloc: {e}"))?;
        let bytes = pattern(i as u64 ^ seed, size);
        pool.write(h, &bytes).map_err(|e| format!("write: {e}"))?;
        live.push((h, bytes));
    }
    rng.shuffle(&mut live);
    let keep = live.len() - live.len() * percent / 100;
    for (h, _) in live.drain(keep..) {
        pool.free(h).map_err(|e| format!("free: {e}"))?;
    }
    let bound = perfect_repacking_bound(&pool.stats());
    let pages_before = pool.total_pages();
    let moved_before = pool.objs_moved();
    let locations: Vec<_> = live
        .iter()
        .map(|(h, _)| pool.location(*h))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{e}"))?;
    let freed = pool.compact();
    let moved = pool.objs_moved() - moved_before;
    let result = (|| {
        if pool.total_pages() != pages_before - freed {
            return Err(format!(
                "total pages {} after freeing {freed} of {pages_before}",
                pool.total_pages()
            ));
        }
        if pool.stats().freeable() != 0 {
            return Err(format!(
                "{} pages still freeable after compaction",
                pool.stats().freeable()
            ));
        }
        pool.check_invariants()?;
        let oracle_pages = pages_after_perfect_compaction(pool, live.iter().map(|&(h, _)| h))?;
        let mut changed = 0;
        for (i, ((h, bytes), before)) in live.iter().zip(&locations).enumerate() {
            changed += (pool.location(*h).map_err(|e| format!("{e}"))? != *before) as u64;
            if read_object(pool, *h, i as u64).map_err(|e| format!("read: {e}"))? != *bytes {
                return Err(format!("object {i} changed its bytes in compaction"));
            }
        }
        // Under Linux's rule an object moves at most once (from a source into the fullest
        // zspage); repacking zspages of several lengths may move one again (and onto a frame
        // it left, so its place may look unchanged).
        let once = pool.growth() == crate::Growth::Fixed;
        if changed > moved || once && changed != moved {
            return Err(format!(
                "{moved} objects reported moved, {changed} changed location"
            ));
        }
        Ok(oracle_pages)
    })();
    for (h, _) in &live {
        let _ = pool.free(*h);
    }
    result.map(|oracle_pages| CompactionCase {
        pages_before,
        bound,
        oracle_pages,
        freed,
        moved,
    })
}

/// Fills one zspage of every class that `pick` selects with distinct bytes, migrates every
/// page the pool holds to a new frame (checking that each object keeps its handle and its
/// bytes), and frees the objects. Returns the number of pages migrated.
pub fn migrate_every_page<B: Backend>(
    pool: &Pool<B>,
    pick: impl Fn(&ClassLayout) -> bool,
) -> Result<usize, String> {
    let mut live: Vec<(Handle, Vec<u8>)> = Vec::new();
    for c in pool.classes().classes.iter().filter(|c| pick(c)) {
        let size = if c.huge {
            c.size.min(MAX_ALLOC_SIZE)
        } else {
            c.size - HANDLE_SIZE
        };
        for i in 0..c.objs_per_zspage {
            let h = pool
                .malloc(size)
                .map_err(|e| format!("class {}: malloc: {e}", c.index))?;
            let bytes = pattern(i as u64 ^ (c.index as u64) << 20, size);
            pool.write(h, &bytes).map_err(|e| format!("write: {e}"))?;
            live.push((h, bytes));
        }
    }
    let result = (|| {
        let pages = pool.pages();
        for &pfn in &pages {
            let new = pool
                .migrate_page(pfn)
                .map_err(|e| format!("migrating frame {pfn:#x}: {e}"))?;
            if new == pfn || pool.pages().contains(&pfn) {
                return Err(format!(
                    "frame {pfn:#x} is still in the pool after migrating to {new:#x}"
                ));
            }
        }
        pool.check_invariants()?;
        for (i, (h, bytes)) in live.iter().enumerate() {
            if read_object(pool, *h, i as u64).map_err(|e| format!("read: {e}"))? != *bytes {
                return Err(format!("object {i} changed its bytes in migration"));
            }
        }
        Ok(pages.len())
    })();
    for (h, _) in &live {
        let _ = pool.free(*h);
    }
    result
}

/// A backend whose frame allocations a test can make fail (test support).
pub trait FailInjection {
    /// From now on the `k`-th frame allocation (0: the next) and all later ones fail.
    fn fail_from(&self, k: u64);
    /// Allocations succeed again.
    fn stop_failing(&self);
    /// Frames handed out and not given back.
    fn frames_held(&self) -> u64;
}

/// Out of memory at the `k`-th frame: `before` objects are written, then the backend fails
/// from its `k`-th frame allocation on while `during` more mallocs of sizes across every class
/// are tried. Each malloc either succeeds or says [`Error::OutOfMemory`]; the pool's
/// invariants hold after every `check_every`-th step and the last; at least one malloc was
/// refused; no frame leaks; every object written, before or during, reads back whole; and
/// once the backend recovers, a 3,000-byte malloc works. The pool is left with
/// its objects (the caller drops it).
pub fn out_of_memory_at_k<B: Backend + FailInjection>(
    pool: &Pool<B>,
    k: u64,
    before: u64,
    during: u64,
    check_every: u64,
) -> Result<(), String> {
    let mut live: Vec<(Handle, Vec<u8>)> = Vec::new();
    for i in 0..before {
        let size = 200 + (i as usize * 397) % 3800;
        let h = pool.malloc(size).map_err(|e| format!("k={k}: fill: {e}"))?;
        let bytes = pattern(i, size);
        write_object(pool, h, &bytes, i).map_err(|e| format!("k={k}: fill: {e}"))?;
        live.push((h, bytes));
    }
    pool.backend().fail_from(k);
    let mut refused = 0;
    for i in 0..during {
        let size = 16 + (i as usize * 733) % 4080;
        match pool.malloc(size) {
            Ok(h) => {
                let bytes = pattern(i + 1000, size);
                write_object(pool, h, &bytes, i).map_err(|e| format!("k={k} step {i}: {e}"))?;
                live.push((h, bytes));
            }
            Err(Error::OutOfMemory) => refused += 1,
            Err(e) => {
                return Err(format!(
                    "k={k} step {i}: malloc said {e}, not out of memory"
                ));
            }
        }
        if i % check_every == check_every - 1 || i + 1 == during {
            pool.check_invariants()
                .map_err(|e| format!("k={k} step {i}: {e}"))?;
        }
    }
    if refused == 0 {
        return Err(format!("k={k}: the injected failure never surfaced"));
    }
    let held = pool.backend().frames_held();
    if held != pool.total_pages() as u64 {
        return Err(format!(
            "k={k}: frames leaked: {held} held, the pool has {} pages",
            pool.total_pages()
        ));
    }
    for (i, (h, bytes)) in live.iter().enumerate() {
        if read_object(pool, *h, i as u64).map_err(|e| format!("k={k}: read: {e}"))? != *bytes {
            return Err(format!("k={k}: object {i} ({} bytes) damaged", bytes.len()));
        }
    }
    pool.backend().stop_failing();
    pool.malloc(3000)
        .map_err(|e| format!("k={k}: allocation does not work again: {e}"))?;
    Ok(())
}
