// STAFF ONLY: the hidden tests of labs 3 to 7, run only by trusted grading (never exported)
//! Hidden tests of labs 3 to 7: what the visible tests leave out, so that a solution written
//! to pass only those loses points here. Lab 3 at the chain lengths the visible tests do not
//! use; lab 4 at chains 5 and 16, every class; lab 5 over many lives of one slot and across
//! pools of different tables; lab 6 at fullness boundaries of odd zspage sizes and a page
//! migration checked object by object; lab 7 on trace families the student never saw.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use zsmalloc::class::{
    CLASS_DELTA, ClassTable, HANDLE_SIZE, MAX_ALLOC_SIZE, MIN_ALLOC_SIZE, NUM_CLASSES, PAGE_SIZE,
    chain_length,
};
use zsmalloc::seeded::{Rng, pattern};
use zsmalloc::{Error, Handle, MapMode, MapPath, Placement, Pool, PoolConfig, trace};

use super::KernelBackend;
use crate::println;

fn pool_with(max_chain: usize, map_path: MapPath) -> Pool<KernelBackend> {
    let config = PoolConfig {
        max_chain,
        map_path,
        ..PoolConfig::default()
    };
    Pool::new("hidden", KernelBackend::new(), config)
}

// ---------------------------------------------------------------------------------------
// Lab 3

/// (pages, objects) of a zspage for `size` at `chain`, reckoned apart from the solution:
/// every length tried, the waste compared, the shortest of the least wasteful kept.
fn shape(size: usize, chain: usize) -> (usize, usize) {
    let mut best = (1, PAGE_SIZE / size);
    for pages in 2..=chain {
        let objs = pages * PAGE_SIZE / size;
        let waste = pages * PAGE_SIZE - objs * size;
        let best_waste = best.0 * PAGE_SIZE - best.1 * size;
        if waste < best_waste {
            best = (pages, objs);
        }
    }
    best
}

fn the_class_table_matches_an_independent_reckoning_at_every_other_chain_length() {
    for chain in [5, 6, 7, 9, 10, 11, 12, 13, 14, 15] {
        let size = |i: usize| (MIN_ALLOC_SIZE + i * CLASS_DELTA).min(MAX_ALLOC_SIZE);
        let shapes: Vec<(usize, usize)> = (0..NUM_CLASSES).map(|i| shape(size(i), chain)).collect();
        for (i, &(pages, _)) in shapes.iter().enumerate() {
            assert_eq!(
                chain_length(size(i), chain),
                pages,
                "chain {chain}: size {}: the least wasteful chain length",
                size(i)
            );
        }
        // A class is distinct unless the next larger one has its shape (it then serves it).
        let distinct: Vec<usize> = (0..NUM_CLASSES)
            .filter(|&i| i + 1 == NUM_CLASSES || shapes[i] != shapes[i + 1])
            .collect();
        let t = ClassTable::new(chain);
        let got: Vec<usize> = t.classes.iter().map(|c| c.index).collect();
        assert_eq!(got, distinct, "chain {chain}: the distinct classes");
        for (i, &alias) in t.alias.iter().enumerate() {
            let served_by = distinct.iter().position(|&d| d >= i).expect("served");
            assert_eq!(alias as usize, served_by, "chain {chain}: size {}", size(i));
        }
        let largest_normal = distinct
            .iter()
            .rev()
            .map(|&i| (size(i), shapes[i]))
            .find(|&(_, s)| s != (1, 1))
            .expect("a normal class")
            .0;
        assert_eq!(
            t.huge_class_size,
            largest_normal - HANDLE_SIZE + 1,
            "chain {chain}: the huge class size"
        );
        for c in &t.classes {
            assert_eq!(
                c.huge,
                c.size > largest_normal,
                "chain {chain}: class {} huge",
                c.size
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lab 4

/// Fills one zspage of every normal class (of every `step`-th class) and checks where each
/// object is, its bytes, and the pool's invariants (every page's first object).
fn every_class_in_place(chain: usize, step: usize) {
    let p = pool_with(chain, MapPath::Window);
    let classes = p.classes().classes.clone();
    for c in classes.iter().filter(|c| !c.huge).step_by(step) {
        let size = c.size - HANDLE_SIZE;
        let hs: Vec<Handle> = (0..c.objs_per_zspage)
            .map(|_| p.malloc(size).unwrap())
            .collect();
        let first = p.location(hs[0]).unwrap().pfn;
        let mut pages = alloc::vec![first];
        for (k, &h) in hs.iter().enumerate() {
            let at = p.location(h).unwrap();
            let start = k * c.size;
            assert_eq!(
                at.index as usize, k,
                "chain {chain}, class {}: object {k}",
                c.size
            );
            assert_eq!(
                at.data_offset,
                start % PAGE_SIZE + HANDLE_SIZE,
                "chain {chain}, class {}: object {k}'s bytes",
                c.size
            );
            let page = start / PAGE_SIZE;
            if page == pages.len() {
                pages.push(at.pfn);
            }
            assert_eq!(
                at.pfn, pages[page],
                "chain {chain}, class {}: object {k}'s page",
                c.size
            );
            let spans = start % PAGE_SIZE + c.size > PAGE_SIZE;
            assert_eq!(
                at.second_page.is_some(),
                spans,
                "chain {chain}, class {}: object {k} spans: {spans}",
                c.size
            );
            p.write(h, &pattern((chain * 10_000 + k) as u64, size))
                .unwrap();
        }
        assert_eq!(
            pages.len(),
            c.pages_per_zspage,
            "chain {chain}, class {}",
            c.size
        );
        p.check_invariants().unwrap();
        let mut back = alloc::vec![0u8; size];
        for (k, &h) in hs.iter().enumerate() {
            p.read(h, &mut back).unwrap();
            assert!(
                back == pattern((chain * 10_000 + k) as u64, size),
                "chain {chain}, class {}: object {k}'s bytes changed",
                c.size
            );
        }
        for h in hs {
            p.free(h).unwrap();
        }
    }
    assert_eq!(p.total_pages(), 0);
}

fn every_class_at_chains_5_and_16_keeps_its_objects_back_to_back() {
    every_class_in_place(5, 1);
    every_class_in_place(16, 5);
}

fn the_freelist_is_a_stack_in_a_zspage_of_four_pages() {
    let p = pool_with(8, MapPath::Window);
    // 3264-byte slots: 5 objects in 4 pages at chain 8, every one but the first spanning.
    let size = 3264 - HANDLE_SIZE;
    let c = p.classes().classes[p.classes().class_for(size)];
    assert_eq!(
        (c.size, c.pages_per_zspage, c.objs_per_zspage),
        (3264, 4, 5)
    );
    let mut hs: Vec<Handle> = (0..5).map(|_| p.malloc(size).unwrap()).collect();
    let order = [3usize, 0, 4, 2];
    for &k in &order {
        p.free(hs[k]).unwrap();
    }
    let again: Vec<u32> = (0..4)
        .map(|i| {
            let h = p.malloc(size).unwrap();
            hs[order[3 - i]] = h;
            p.location(h).unwrap().index
        })
        .collect();
    assert_eq!(again, [2, 4, 0, 3], "the last freed comes back first");
    assert_eq!(p.total_pages(), 4, "no new zspage while this one had room");
    p.check_invariants().unwrap();
    for h in hs {
        p.free(h).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Lab 5

fn every_old_handle_of_a_slot_stays_stale_over_many_lives() {
    let p = pool_with(8, MapPath::Copy);
    let first = p.malloc(300).unwrap();
    let mut old = alloc::vec![first];
    p.free(first).unwrap();
    let mut current = None;
    for _ in 0..40_000 {
        let h = p.malloc(300).unwrap();
        if h.slot_index() == first.slot_index() {
            if old.len() == 12 {
                current = Some(h);
                break;
            }
            old.push(h);
        }
        p.free(h).unwrap();
    }
    let current = current.expect("the slot came back twelve times");
    p.write(current, &pattern(9, 300)).unwrap();
    for h in &old {
        assert_ne!(*h, current);
        assert_eq!(
            p.free(*h),
            Err(Error::StaleHandle(*h)),
            "a handle of an earlier life"
        );
        assert!(p.map(*h, MapMode::ReadOnly).is_err());
        assert_eq!(p.read(*h, &mut [0u8; 300]), Err(Error::StaleHandle(*h)));
    }
    let mut back = [0u8; 300];
    assert_eq!(p.read(current, &mut back), Ok(300));
    assert!(
        back[..] == pattern(9, 300)[..],
        "the live object is untouched"
    );
    p.free(current).unwrap();
    assert_eq!(p.free(current), Err(Error::DoubleFree(current)));
    p.check_invariants().unwrap();
}

fn a_handle_is_foreign_to_a_pool_whatever_its_class_and_a_huge_one_too() {
    let (short, long) = (
        pool_with(4, MapPath::Window),
        pool_with(16, MapPath::Window),
    );
    assert!(long.classes().classes.len() > short.classes().classes.len());
    // A class position that the chain-4 pool does not have: still foreign, not invalid.
    let big_class = long.malloc(3000).unwrap();
    assert!(long.classes().class_for(3000) >= short.classes().classes.len());
    let huge = long.malloc(4000).unwrap();
    for h in [big_class, huge] {
        assert_eq!(short.free(h), Err(Error::ForeignHandle(h)));
        assert_eq!(short.read(h, &mut [0u8; 8]), Err(Error::ForeignHandle(h)));
    }
    let huge_here = short.malloc(4000).unwrap();
    short.free(huge_here).unwrap();
    assert_eq!(short.free(huge_here), Err(Error::DoubleFree(huge_here)));
    long.free(big_class).unwrap();
    long.free(huge).unwrap();
    short.check_invariants().unwrap();
    long.check_invariants().unwrap();
}

fn many_readers_share_an_object_and_a_writer_waits_for_the_last() {
    let p = pool_with(8, MapPath::Window);
    let h = p.malloc(100).unwrap();
    p.write(h, &pattern(31, 100)).unwrap();
    let mut readers: Vec<_> = (0..20)
        .map(|_| p.map(h, MapMode::ReadOnly).unwrap())
        .collect();
    for r in &readers {
        assert!(r[..] == pattern(31, 100)[..]);
    }
    while let Some(r) = readers.pop() {
        for mode in [MapMode::ReadWrite, MapMode::WriteOnly] {
            assert_eq!(
                p.map(h, mode).err(),
                Some(Error::ObjectBusy(h)),
                "{} readers left",
                readers.len() + 1
            );
        }
        assert_eq!(p.free(h), Err(Error::ObjectBusy(h)));
        drop(r);
    }
    {
        let mut w = p.map(h, MapMode::WriteOnly).unwrap();
        w[..].copy_from_slice(&pattern(32, 100));
        assert_eq!(
            p.map(h, MapMode::ReadOnly).err(),
            Some(Error::ObjectBusy(h))
        );
    }
    let mut back = [0u8; 100];
    p.read(h, &mut back).unwrap();
    assert!(back[..] == pattern(32, 100)[..]);
    p.free(h).unwrap();
    p.check_invariants().unwrap();
}

// ---------------------------------------------------------------------------------------
// Lab 6

fn fullness_groups_at_every_count_of_a_thirteen_object_zspage() {
    let p = pool_with(8, MapPath::Window);
    // 1568-byte slots: 13 objects in 5 pages at chain 8.
    let size = 1568 - HANDLE_SIZE;
    let pos = p.classes().class_for(size);
    let objs = p.classes().classes[pos].objs_per_zspage;
    assert_eq!(objs, 13);
    let mut hs = Vec::new();
    for inuse in 1..=objs {
        hs.push(p.malloc(size).unwrap());
        let want = if inuse == objs {
            11
        } else {
            1 + 10 * inuse / objs
        };
        let groups = p.class_stats(pos).groups;
        assert_eq!(
            groups[want], 1,
            "{inuse} of {objs} in use: group {want}, groups {groups:?}"
        );
    }
    for h in hs {
        p.free(h).unwrap();
    }
}

fn migrating_the_page_a_spanning_object_runs_into_moves_only_what_starts_there() {
    let p = pool_with(8, MapPath::Window);
    let size = 1632 - HANDLE_SIZE;
    let hs: Vec<Handle> = (0..5).map(|_| p.malloc(size).unwrap()).collect();
    for (k, &h) in hs.iter().enumerate() {
        p.write(h, &pattern(600 + k as u64, size)).unwrap();
    }
    let (page0, page1) = (
        p.location(hs[0]).unwrap().pfn,
        p.location(hs[3]).unwrap().pfn,
    );
    let new = p.migrate_page(page1).unwrap();
    for (k, &h) in hs.iter().enumerate() {
        let at = p.location(h).unwrap();
        let (pfn, second) = match k {
            0 | 1 => (page0, None),
            2 => (page0, Some(new)),
            _ => (new, None),
        };
        assert_eq!(
            (at.pfn, at.second_page),
            (pfn, second),
            "object {k} after page 1 moved"
        );
        let mut back = alloc::vec![0u8; size];
        p.read(h, &mut back).unwrap();
        assert!(back == pattern(600 + k as u64, size), "object {k}'s bytes");
    }
    let new0 = p.migrate_page(page0).unwrap();
    assert_eq!(
        p.location(hs[2]).unwrap().pfn,
        new0,
        "object 2 starts in page 0"
    );
    p.check_invariants().unwrap();
    for h in hs {
        p.free(h).unwrap();
    }
}

fn compaction_passes_over_every_pinned_zspage_and_empties_the_rest() {
    let p = pool_with(8, MapPath::Window);
    let size = 1632 - HANDLE_SIZE;
    // Six zspages of five objects; keep one object in each of zspages 1-5 and all of zspage 0.
    let hs: Vec<Handle> = (0..30).map(|_| p.malloc(size).unwrap()).collect();
    let mut live = Vec::new();
    for (k, h) in hs.into_iter().enumerate() {
        if k < 5 || k % 5 == 0 {
            p.write(h, &pattern(k as u64, size)).unwrap();
            live.push((k, h));
        } else {
            p.free(h).unwrap();
        }
    }
    assert_eq!(p.total_pages(), 12);
    // Pin the lone objects of zspages 1 and 3: they must stay where they are.
    let pins = [live[5].1, live[7].1];
    let pinned_at: Vec<_> = pins.iter().map(|&h| p.location(h).unwrap().pfn).collect();
    let maps: Vec<_> = pins
        .iter()
        .map(|&h| p.map(h, MapMode::ReadOnly).unwrap())
        .collect();
    let freed = p.compact();
    let still: Vec<_> = pins.iter().map(|&h| p.location(h).unwrap().pfn).collect();
    drop(maps);
    assert_eq!(still, pinned_at, "a pinned object moved");
    // Zspages 2, 4 and 5 are not pinned: at least two of them empty (into the third, or
    // into a pinned one, which may take objects: only its own stay put).
    assert!(
        freed >= 4,
        "only {freed} pages freed beside two pinned zspages"
    );
    let mut back = alloc::vec![0u8; size];
    for &(k, h) in &live {
        p.read(h, &mut back).unwrap();
        assert!(back == pattern(k as u64, size), "object {k}");
    }
    p.compact();
    assert_eq!(
        p.total_pages(),
        4,
        "unpinned, ten objects end in two zspages"
    );
    p.check_invariants().unwrap();
    for (_, h) in live {
        p.free(h).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Lab 7

/// Trace families the student never saw: a staircase of sizes with a few objects each, and
/// bursts of allocations most of which die young.
fn unseen_traces(seed: u64) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (name, objects) in [("staircase", 300), ("staircase", 900), ("bursts", 400)] {
        let mut rng = Rng::new(seed ^ objects as u64 ^ name.len() as u64);
        let mut text = format!("# {name} seed {seed}\n");
        let mut live: Vec<u64> = Vec::new();
        let mut next = 0u64;
        let mut alloc = |text: &mut String, live: &mut Vec<u64>, size: usize| {
            let _ = writeln!(text, "a {next} {size}");
            live.push(next);
            next += 1;
        };
        match name {
            "staircase" => {
                for i in 0..objects {
                    let step = 64 + (i * 3400 / objects);
                    alloc(&mut text, &mut live, step + rng.below(48) as usize);
                }
            }
            _ => {
                for _ in 0..8 {
                    for _ in 0..objects / 8 {
                        alloc(&mut text, &mut live, 40 + rng.below(3300) as usize);
                    }
                    let dying = live.len() * 6 / 10;
                    for _ in 0..dying {
                        let k = rng.below(live.len() as u64) as usize;
                        let _ = writeln!(text, "f {}", live.swap_remove(k));
                    }
                }
            }
        }
        text.push_str("s # after fill\n");
        for _ in 0..live.len() / 2 {
            let k = rng.below(live.len() as u64) as usize;
            let _ = writeln!(text, "f {}", live.swap_remove(k));
        }
        text.push_str("s # after frees\nc # after compaction\n");
        out.push((name, text));
    }
    out
}

fn pages_at_points(placement: Placement, text: &str) -> Vec<usize> {
    let p = Pool::new(
        "hidden7",
        KernelBackend::new(),
        PoolConfig {
            placement,
            ..PoolConfig::default()
        },
    );
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

fn fitted_beats_linux_on_trace_families_it_has_not_seen() {
    // Three draws of the unseen families, and a bound the reference rule meets with room:
    // its geometric mean over one draw ranged 0.70-0.96 (300 seeds on the host; above the
    // former bound of 0.92 for about 3 in 100 runs), over three draws a median of 0.84
    // and 0.923 at worst (300 triples). Linux's own rule scores 1.0, so 0.95 still fails a
    // rule no better.
    let seed = crate::ktest::seed();
    println!("  unseen traces from seed {seed} and two more (pages: fitted / linux)");
    let mut ratios = Vec::new();
    let draws = [seed, seed ^ 0x5bd1_e995, seed.rotate_left(17)];
    for (name, text) in draws.into_iter().flat_map(unseen_traces) {
        let fitted = pages_at_points(Placement::Fitted, &text);
        let linux = pages_at_points(Placement::Linux, &text);
        println!(
            "  {name:>9}: {:?}",
            fitted.iter().zip(&linux).collect::<Vec<_>>()
        );
        for (&f, &l) in fitted.iter().zip(&linux) {
            assert!(
                f * 4 <= l * 5 + 4,
                "{name}: {f} pages against Linux's {l}: more than 1.25 x + 1"
            );
            ratios.push(f.max(1) as f64 / l.max(1) as f64);
        }
    }
    let mean = super::placement_ktests::geometric_mean(&ratios);
    println!("  geometric mean of fitted / linux: {mean:.3}");
    assert!(
        mean <= 0.95,
        "geometric mean {mean:.3} of fitted / linux over the unseen families (at most 0.95)"
    );
}

crate::ktests! {
    the_class_table_matches_an_independent_reckoning_at_every_other_chain_length { lab: 3, points: 30, hidden: true },
    every_class_at_chains_5_and_16_keeps_its_objects_back_to_back { lab: 4, points: 20, hidden: true },
    the_freelist_is_a_stack_in_a_zspage_of_four_pages { lab: 4, points: 10, hidden: true },
    every_old_handle_of_a_slot_stays_stale_over_many_lives { lab: 5, points: 15, hidden: true },
    a_handle_is_foreign_to_a_pool_whatever_its_class_and_a_huge_one_too { lab: 5, points: 10, hidden: true },
    many_readers_share_an_object_and_a_writer_waits_for_the_last { lab: 5, points: 10, hidden: true },
    fullness_groups_at_every_count_of_a_thirteen_object_zspage { lab: 6, points: 10, hidden: true },
    migrating_the_page_a_spanning_object_runs_into_moves_only_what_starts_there { lab: 6, points: 15, hidden: true },
    compaction_passes_over_every_pinned_zspage_and_empties_the_rest { lab: 6, points: 10, hidden: true },
    fitted_beats_linux_on_trace_families_it_has_not_seen { lab: 7, points: 30, hidden: true },
}
