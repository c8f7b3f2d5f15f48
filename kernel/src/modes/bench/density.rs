//! Density against baselines: the same objects held by zsmalloc, by a zbud-style allocator
//! (at most two objects per page) and by a linked-list heap (`linked_list_allocator`), after
//! fill, after freeing a random half, and (zsmalloc) after compaction. Frames used and density
//! (sum of live sizes / (frames × 4096)) for each.
//!
//! Workloads: sizes uniform in 32..=4096; LZ4-compressed pages of realistic content (the
//! demo's generator; a page that does not compress below the huge size is stored whole, as
//! zram does); and the allocations and frees of `traces/mixed.trace`. Only placement matters
//! for density, so object bytes are not written.
//!
//! The heap's frames are its footprint: from the bottom of its region to the end of the
//! highest live object, the memory a heap growing upward must have mapped (a linked-list heap
//! cannot give back a hole in the middle).

use alloc::collections::BTreeMap;
use alloc::string::ToString;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;

use zsmalloc::pool::MoveKind;
use zsmalloc::pool::profile::{Phase, PhaseProfile};
use zsmalloc::trace::{self, Op};
use zsmalloc::zbud::{Zbud, ZbudHandle};
use zsmalloc::{Handle, Pool, PoolConfig};

use crate::arch::tsc;
use crate::println;
use crate::workload::{self, PAGE};
use crate::zs_backend::KernelBackend;
use zsmalloc::seeded::Rng;

/// Pages of the LZ4 workload: 120 MiB of swapped-out memory, a small zram device.
const LZ4_PAGES: u64 = 30_000;
/// The trace replayed as the third workload.
const MIXED_TRACE: &[u8] = include_bytes!("../../../../traces/mixed.trace");
/// Bytes mapped for the heap baseline (the LZ4 workload needs about 70 MB).
const HEAP_REGION: u64 = 128 << 20;

/// One step of a workload.
#[derive(Clone, Copy)]
enum Step {
    Alloc(u64, usize),
    Free(u64),
}

/// An allocator under comparison.
trait Store {
    fn alloc(&mut self, id: u64, size: usize);
    fn free(&mut self, id: u64);
    fn frames(&self) -> u64;
    /// Bytes of the descriptors of the store's pages (zsmalloc only).
    fn desc_bytes(&self) -> Option<u64> {
        None
    }
    /// Compacts, if the allocator can.
    fn compact(&mut self) -> bool {
        false
    }
    /// The workload pauses: work an allocator deferred may run (zsmalloc's queued
    /// compaction under `AutoCompact::Deferred`).
    fn idle(&mut self) {}
    /// Where the bytes above the live bytes go (zsmalloc only): `[slot rounding and
    /// headers, free slots, zspage ends]` (see [`ZsStore::above_live`]).
    fn above_live(&self, _live_bytes: u64) -> Option<[u64; 3]> {
        None
    }
}

struct ZsStore {
    pool: Pool<KernelBackend>,
    live: BTreeMap<u64, Handle>,
    /// Cycles spent in malloc, in free (an automatic compaction included) and in compaction
    /// asked for: `[malloc, free, compact]`.
    cycles: [u64; 3],
    /// Cycles of each malloc and each free, in order: `[malloc, free]` (for medians).
    samples: [Vec<u32>; 2],
}

impl ZsStore {
    fn new(config: PoolConfig) -> ZsStore {
        ZsStore {
            pool: Pool::new("density", KernelBackend::new(), config),
            live: BTreeMap::new(),
            cycles: [0; 3],
            samples: [Vec::new(), Vec::new()],
        }
    }

    /// Counts one timed operation (`op` 0: malloc, 1: free).
    fn count(&mut self, op: usize, cycles: u64) {
        self.cycles[op] += cycles;
        self.samples[op].push(cycles.min(u32::MAX as u64) as u32);
    }

    /// Median cycles of one malloc (`op` 0) or free (1).
    fn median(&self, op: usize) -> f64 {
        let mut v = self.samples[op].clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0) as f64
    }

    /// The run's cost: every cycle of the workload (malloc, free, automatic and asked-for
    /// compaction), the median malloc, the median free, and the cycles of compaction run at
    /// the pauses and when asked.
    fn cost(&self) -> [f64; 4] {
        [
            self.cycles.iter().sum::<u64>() as f64,
            self.median(0),
            self.median(1),
            self.cycles[2] as f64,
        ]
    }
}

impl Store for ZsStore {
    fn alloc(&mut self, id: u64, size: usize) {
        let t0 = tsc::start();
        let h = self.pool.malloc(size);
        self.count(0, tsc::stop().saturating_sub(t0));
        let h = h.expect("zsmalloc: out of memory in the density bench");
        self.live.insert(id, h);
    }
    fn free(&mut self, id: u64) {
        let h = self.live.remove(&id).expect("a live id");
        let t0 = tsc::start();
        let r = self.pool.free(h);
        self.count(1, tsc::stop().saturating_sub(t0));
        r.expect("zsmalloc free");
    }
    fn frames(&self) -> u64 {
        self.pool.total_pages() as u64
    }
    fn desc_bytes(&self) -> Option<u64> {
        Some(zsdesc_bytes(self.pool.total_pages() as u64))
    }
    fn compact(&mut self) -> bool {
        let t0 = tsc::start();
        self.pool.compact();
        self.cycles[2] += tsc::stop().saturating_sub(t0);
        true
    }
    /// The pool's pages beyond its live bytes, split by why: objects' slots larger than the
    /// objects (a class's size and the handle header), free slots of its zspages, and the
    /// unused end of each zspage that no slot covers.
    fn above_live(&self, live_bytes: u64) -> Option<[u64; 3]> {
        let (mut used, mut slots, mut pages) = (0u64, 0u64, 0u64);
        for c in &self.pool.stats().classes {
            used += c.obj_used * c.size as u64;
            slots += c.obj_allocated * c.size as u64;
            pages += c.pages_used;
        }
        Some([
            used.saturating_sub(live_bytes),
            slots - used,
            (pages * PAGE as u64).saturating_sub(slots),
        ])
    }
    fn idle(&mut self) {
        let t0 = tsc::start();
        self.pool.compact_pending(usize::MAX);
        self.cycles[2] += tsc::stop().saturating_sub(t0);
    }
}

/// Bytes of zsmalloc's descriptors for `pages` pages: in the memdesc memmap the zsdescs
/// allocated from their cache (all pools'; the bench runs one at a time), in the wide one the
/// 64-byte page descriptors of those pages (which exist whether zsmalloc uses them or not).
fn zsdesc_bytes(pages: u64) -> u64 {
    use crate::mm::memmap::{self, Layout};
    match memmap::get().layout() {
        Layout::Wide => pages * Layout::Wide.bytes_per_frame(),
        Layout::Memdesc => {
            let s = crate::zs_backend::ZSDESCS.stats();
            s.in_use * s.slot_bytes
        }
    }
}

struct ZbudStore {
    zbud: Zbud<KernelBackend>,
    live: BTreeMap<u64, ZbudHandle>,
}

impl Store for ZbudStore {
    fn alloc(&mut self, id: u64, size: usize) {
        let h = self
            .zbud
            .alloc(size)
            .expect("zbud: out of memory in the density bench");
        self.live.insert(id, h);
    }
    fn free(&mut self, id: u64) {
        self.zbud.free(self.live.remove(&id).expect("a live id"));
    }
    fn frames(&self) -> u64 {
        self.zbud.pages() as u64
    }
}

struct HeapStore {
    heap: linked_list_allocator::Heap,
    bottom: u64,
    live: BTreeMap<u64, (NonNull<u8>, Layout)>,
}

impl Store for HeapStore {
    fn alloc(&mut self, id: u64, size: usize) {
        let layout = Layout::from_size_align(size, 8).expect("a valid layout");
        let ptr = self
            .heap
            .allocate_first_fit(layout)
            .expect("heap baseline: region too small for the workload");
        self.live.insert(id, (ptr, layout));
    }
    fn free(&mut self, id: u64) {
        let (ptr, layout) = self.live.remove(&id).expect("a live id");
        // SAFETY: `ptr` came from this heap with this layout and is freed once.
        unsafe { self.heap.deallocate(ptr, layout) };
    }
    fn frames(&self) -> u64 {
        let top = self
            .live
            .values()
            .map(|(p, l)| p.as_ptr() as u64 + l.size() as u64)
            .max()
            .unwrap_or(self.bottom);
        (top - self.bottom).div_ceil(PAGE as u64)
    }
}

/// Frames and density at one point.
#[derive(Clone, Copy)]
struct Point {
    frames: u64,
    /// Frames just before the pause at the point (what the store held while busy).
    busy_frames: u64,
    density: f64,
    /// Live bytes at the point.
    bytes: u64,
    /// Bytes of the store's page descriptors, if it counts them.
    desc_bytes: Option<u64>,
    /// Where the bytes beyond the live ones go (see [`Store::above_live`]).
    above_live: Option<[u64; 3]>,
}

/// The store at a point of the workload: it pauses (see [`Store::idle`]), then is measured.
fn point(store: &mut dyn Store, live_bytes: u64) -> Point {
    let busy_frames = store.frames();
    store.idle();
    let frames = store.frames();
    Point {
        frames,
        busy_frames,
        density: live_bytes as f64 / (frames.max(1) * PAGE as u64) as f64,
        bytes: live_bytes,
        desc_bytes: store.desc_bytes(),
        above_live: store.above_live(live_bytes),
    }
}

/// Runs a workload on a store: (after fill, after freeing a random half, after compaction).
fn measure(store: &mut dyn Store, steps: &[Step]) -> (Point, Point, Option<Point>) {
    let mut live: BTreeMap<u64, usize> = BTreeMap::new();
    let mut bytes = 0u64;
    for &step in steps {
        match step {
            Step::Alloc(id, size) => {
                store.alloc(id, size);
                live.insert(id, size);
                bytes += size as u64;
            }
            Step::Free(id) => {
                store.free(id);
                bytes -= live.remove(&id).expect("the trace frees live ids") as u64;
            }
        }
    }
    let fill = point(store, bytes);
    let mut ids: Vec<u64> = live.keys().copied().collect();
    Rng::new(0x4a1f).shuffle(&mut ids);
    for id in ids.drain(..ids.len() / 2) {
        store.free(id);
        bytes -= live.remove(&id).expect("live") as u64;
    }
    let half = point(store, bytes);
    let compacted = store.compact().then(|| point(store, bytes));
    for id in ids {
        store.free(id);
    }
    (fill, half, compacted)
}

/// The workloads: name and steps.
fn workloads() -> Vec<(&'static str, Vec<Step>)> {
    let mut rng = Rng::new(0xd15);
    let uniform = (0..10_000)
        .map(|id| Step::Alloc(id, 32 + rng.below(4096 - 32 + 1) as usize))
        .collect();
    let huge = zsmalloc::class::ClassTable::new(zsmalloc::class::DEFAULT_MAX_CHAIN).huge_class_size;
    let mut page = [0u8; PAGE];
    let lz4 = (0..LZ4_PAGES)
        .map(|n| {
            workload::page(2013, n, &mut page);
            let len = workload::compress(&page).len();
            Step::Alloc(n, if len >= huge { PAGE } else { len })
        })
        .collect();
    let mut mixed = Vec::new();
    for line in MIXED_TRACE.split(|&b| b == b'\n') {
        match trace::parse_line(core::str::from_utf8(line).unwrap_or("")) {
            Ok(Some(Op::Alloc { id, size })) => mixed.push(Step::Alloc(id, size)),
            Ok(Some(Op::Free { id })) => mixed.push(Step::Free(id)),
            _ => {}
        }
    }
    alloc::vec![
        ("uniform", uniform),
        ("lz4-pages", lz4),
        ("mixed-trace", mixed)
    ]
}

fn histogram(steps: &[Step]) {
    let mut buckets = [0u64; 9];
    for s in steps {
        if let Step::Alloc(_, size) = s {
            buckets[(size / 512).min(8)] += 1;
        }
    }
    crate::print!("    sizes:");
    for (i, n) in buckets.iter().enumerate() {
        if i == 8 {
            crate::print!(" 4096:{n}");
        } else {
            crate::print!(" {}-{}:{n}", i * 512, i * 512 + 511);
        }
    }
    println!();
}

/// The zram-style device on the demo's 6000 pages: compression ratio, memory used, density.
fn zram_figures() {
    let mut zram = crate::zram::Zram::new("bench-zram", 6000);
    let mut page = [0u8; PAGE];
    for n in 0..6000 {
        workload::page(2013, n, &mut page);
        zram.write(n as usize, &page).expect("bench zram write");
    }
    let s = zram.stats();
    println!("  zram store: {s}");
    println!("BENCH name=zram.ratio value={:.3} unit=ratio", s.ratio());
    println!(
        "BENCH name=zram.density value={:.4} unit=ratio",
        s.density()
    );
    println!(
        "BENCH name=zram.mem_used value={} unit=frames",
        s.mem_used / PAGE as u64
    );
}

/// Runs every workload on every store (zsmalloc under `policy`) and prints the table, the
/// BENCH lines and the targets.
pub fn figures(policy: zsmalloc::Policy) {
    zram_figures();
    let region = match crate::mm::heap::map_private_region(HEAP_REGION) {
        Ok(r) => r,
        Err(e) => {
            println!("zsos: bench: no region for the heap baseline: {e}");
            return;
        }
    };
    println!(
        "  density (live bytes / (frames x 4096)); frames in parentheses; zsmalloc under policy {}",
        policy.name()
    );
    println!(
        "    {:<12} {:<10} {:>18} {:>18} {:>18}",
        "workload", "allocator", "after fill", "after half freed", "after compaction"
    );
    println!(
        "    (descs KiB: zsmalloc's page descriptors, {})",
        match crate::mm::memmap::get().layout() {
            crate::mm::memmap::Layout::Wide => "the 64-byte memmap entries of its pages",
            crate::mm::memmap::Layout::Memdesc => "the zsdescs allocated from their cache",
        }
    );
    for (name, steps) in workloads() {
        let objects = steps
            .iter()
            .filter(|s| matches!(s, Step::Alloc(..)))
            .count();
        let mut zs = ZsStore::new(policy.config());
        let mut zbud = ZbudStore {
            zbud: Zbud::new(KernelBackend::new()),
            live: BTreeMap::new(),
        };
        let mut heap = HeapStore {
            // SAFETY: the region is mapped, writable, ours alone, and HEAP_REGION bytes long;
            // each workload starts a fresh heap over it after the last one freed everything.
            heap: unsafe {
                linked_list_allocator::Heap::new(region as *mut u8, HEAP_REGION as usize)
            },
            bottom: region,
            live: BTreeMap::new(),
        };
        let stores: [(&str, &mut dyn Store); 3] = [
            ("zsmalloc", &mut zs),
            ("zbud", &mut zbud),
            ("heap", &mut heap),
        ];
        let mut fills = [None; 3];
        for (i, (store_name, store)) in stores.into_iter().enumerate() {
            let (fill, half, compacted) = measure(store, &steps);
            fills[i] = Some(fill);
            let cell = |p: Point| alloc::format!("{:.3} ({})", p.density, p.frames);
            println!(
                "    {:<12} {:<10} {:>18} {:>18} {:>18}",
                name,
                store_name,
                cell(fill),
                cell(half),
                compacted.map_or(alloc::string::String::from("-"), cell)
            );
            for (at, p) in [
                ("fill", Some(fill)),
                ("half", Some(half)),
                ("compacted", compacted),
            ] {
                if let Some(p) = p {
                    println!(
                        "BENCH name=density.{name}.{store_name}.{at} value={:.4} unit=ratio",
                        p.density
                    );
                    println!(
                        "BENCH name=frames.{name}.{store_name}.{at} value={} unit=frames",
                        p.frames
                    );
                    if let Some(bytes) = p.desc_bytes {
                        println!("BENCH name=zsdesc.{name}.{at} value={bytes} unit=bytes");
                    }
                }
            }
            if let (Some(f), Some(h)) = (fill.desc_bytes, half.desc_bytes) {
                let c = compacted.and_then(|p| p.desc_bytes);
                println!(
                    "    {:<12} {:<10} {:>18} {:>18} {:>18}",
                    "",
                    "descs KiB",
                    f / 1024,
                    h / 1024,
                    c.map_or("-".into(), |c| (c / 1024).to_string())
                );
            }
        }
        if name == "lz4-pages" {
            histogram(&steps);
            let (zs, zbud) = (fills[0].expect("measured"), fills[1].expect("measured"));
            let zs_fill = zs.density;
            let vs_zbud = zs.frames as f64 / zbud.frames.max(1) as f64;
            println!("    density after fill {zs_fill:.3}; zsmalloc/zbud frames {vs_zbud:.2}");
            println!(
                "BENCH name=ratio.frames.lz4-pages.zsmalloc/zbud value={vs_zbud:.3} unit=ratio"
            );
        }
        println!("    ({objects} objects)");
    }
    if crate::mm::memmap::get().layout() == crate::mm::memmap::Layout::Memdesc {
        let cache = crate::zs_backend::ZSDESCS.stats();
        println!(
            "    zsdesc cache: {} frames ({} KiB) held now (empty blocks go back as pools are dropped); {} zsdescs in use now",
            cache.frames,
            cache.frames * 4,
            cache.in_use
        );
        println!(
            "BENCH name=zsdesc.density.cache_frames value={} unit=frames",
            cache.frames
        );
    }
}

/// The policies compared side by side: zsos's (the default), Linux's rule at chains 4, 8 and
/// 16, the fitted placement alone at chain 4, and zsos's policy compacting on the free itself
/// (its rule before compaction was deferred; see [`policy_config`]).
const POLICIES: [&str; 6] = [
    "zsos",
    "linux-chain=4",
    "linux",
    "linux-chain=16",
    "fitted-chain=4",
    "zsos-on-free",
];
/// Positions in [`POLICIES`]: zsos's, Linux's chain 8 (the cost reference), Linux's three,
/// zsos's compacting on free.
const ZSOS: usize = 0;
const LINUX_8: usize = 2;
const LINUX_CHAINS: core::ops::Range<usize> = 1..4;
const ZSOS_ON_FREE: usize = 5;
/// The policies whose cost is measured in rounds, the reference last.
const COSTED: [usize; 3] = [ZSOS, ZSOS_ON_FREE, LINUX_8];
/// Rounds of the cost measurement per workload (the median ratio is shown).
const COST_ROUNDS: usize = 5;

/// A compared policy's pool configuration.
fn policy_config(name: &str) -> PoolConfig {
    if name == "zsos-on-free" {
        return zsmalloc::Policy {
            auto_compact: zsmalloc::AutoCompact::WhenFreeable { pages: 1, share: 8 },
            ..zsmalloc::Policy::ZSOS
        }
        .config();
    }
    zsmalloc::Policy::parse(name)
        .expect("a known policy")
        .config()
}

/// The trace families of `zsmalloc::families` as workloads (their own frees included).
fn family_workloads() -> Vec<(&'static str, Vec<Step>)> {
    zsmalloc::families::Family::ALL
        .iter()
        .map(|f| {
            let text = f.generate(0xbe4c, 3000);
            let steps = text
                .lines()
                .filter_map(|line| match trace::parse_line(line) {
                    Ok(Some(Op::Alloc { id, size })) => Some(Step::Alloc(id, size)),
                    Ok(Some(Op::Free { id })) => Some(Step::Free(id)),
                    _ => None,
                })
                .collect();
            (f.name(), steps)
        })
        .collect()
}

/// What one workload gave: pages per policy at each point, zsos's pages just before each
/// pause, cost rounds, compaction's work, and the phase profiles.
struct WorkloadFigures {
    name: &'static str,
    /// Per policy of [`POLICIES`]: frames after fill, after freeing half, after compaction.
    pages: Vec<[u64; 3]>,
    /// zsos's frames just before the pauses at fill and half (deferred compaction not run yet).
    zsos_busy: [u64; 2],
    /// Per round, per policy of [`COSTED`]: whole workload, median malloc, median free,
    /// compaction at the pauses and when asked (see [`ZsStore::cost`]).
    rounds: Vec<[[f64; 4]; COSTED.len()]>,
    /// Per policy of [`COSTED`]: bytes compaction moved, of which automatic, pages automatic
    /// compaction gave back.
    moved: [(u64, u64, usize); COSTED.len()],
    /// zsos's and Linux chain 8's bytes beyond the live ones at each point (see
    /// [`Store::above_live`]).
    above_live: [[[u64; 3]; 3]; 2],
    /// zsos's compaction by kind of move (indexed by [`MoveKind`]): bytes moved, pages given
    /// back.
    zsos_by_kind: [(u64, usize); MoveKind::ALL.len()],
    /// zsos's and Linux chain 8's phase profiles.
    profiles: [PhaseProfile; 2],
}

impl WorkloadFigures {
    /// The median over rounds of `COSTED[k]`'s figure `i`.
    fn median(&self, k: usize, i: usize) -> f64 {
        let mut r: Vec<f64> = self.rounds.iter().map(|c| c[k][i]).collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    }

    /// The median over rounds of `COSTED[k]`'s figure `i` over the reference's.
    fn ratio(&self, k: usize, i: usize) -> f64 {
        let reference = COSTED.len() - 1;
        let mut r: Vec<f64> = self
            .rounds
            .iter()
            .map(|c| c[k][i] / c[reference][i].max(1.0))
            .collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    }
}

/// Runs one workload under every policy (pages; the first cost round), then the other cost
/// rounds alternating the order, then the profiled runs.
fn run_policies(name: &'static str, steps: &[Step]) -> WorkloadFigures {
    // A pass nobody times first: the emulator maps guest memory on first touch, and the
    // first policy to run would pay for it.
    measure(&mut ZsStore::new(PoolConfig::default()), steps);
    let mut pages = Vec::new();
    let mut zsos_busy = [0; 2];
    let mut zsos_by_kind = [(0, 0); MoveKind::ALL.len()];
    let mut above_live = [[[0; 3]; 3]; 2];
    let mut first = [[0f64; 4]; COSTED.len()];
    let mut moved = [(0, 0, 0); COSTED.len()];
    for (k, policy) in POLICIES.iter().enumerate() {
        let mut zs = ZsStore::new(policy_config(policy));
        let (fill, half, compacted) = measure(&mut zs, steps);
        let compacted = compacted.expect("zsmalloc compacts");
        pages.push([fill.frames, half.frames, compacted.frames]);
        if let Some(j) = [ZSOS, LINUX_8].iter().position(|&p| p == k) {
            above_live[j] = [&fill, &half, &compacted].map(|p| p.above_live.unwrap_or_default());
        }
        if k == ZSOS {
            zsos_busy = [fill.busy_frames, half.busy_frames];
            zsos_by_kind =
                MoveKind::ALL.map(|m| (zs.pool.bytes_moved_by(m), zs.pool.pages_freed_by(m)));
        }
        if let Some(j) = COSTED.iter().position(|&c| c == k) {
            first[j] = zs.cost();
            moved[j] = (
                zs.pool.bytes_moved(),
                zs.pool.bytes_auto_moved(),
                zs.pool.pages_auto_compacted(),
            );
        }
    }
    let mut rounds = alloc::vec![first];
    for round in 1..COST_ROUNDS {
        let mut this_round = [[0f64; 4]; COSTED.len()];
        let mut order: Vec<usize> = (0..COSTED.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for j in order {
            let mut zs = ZsStore::new(policy_config(POLICIES[COSTED[j]]));
            measure(&mut zs, steps);
            this_round[j] = zs.cost();
        }
        rounds.push(this_round);
    }
    // The phase profile: one more run of each with the clock read between phases.
    let profiles = [ZSOS, LINUX_8].map(|k| {
        let mut zs = ZsStore::new(policy_config(POLICIES[k]));
        zs.pool.set_profiling(true);
        measure(&mut zs, steps);
        zs.pool.phase_profile()
    });
    WorkloadFigures {
        name,
        pages,
        zsos_busy,
        zsos_by_kind,
        above_live,
        rounds,
        moved,
        profiles,
    }
}

/// Pages per policy at each point of every workload, beside zbud and the bound
/// ⌈live bytes / 4096⌉ (zsos's also just before the pause, before its deferred compaction
/// ran); then the cost of zsos's policy against Linux's (chain 8) in the same run: the whole
/// workload and the median malloc and free, with the bytes compaction moved; then where
/// malloc and free spend their cycles, phase by phase.
pub fn policy_figures() {
    println!(
        "  pages by policy (after fill / after half freed / after compaction; zsos busy: before the pause at the point)"
    );
    println!(
        "    {:<12} {:<10} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "workload",
        "point",
        "zsos",
        "busy",
        "on-free",
        "linux-4",
        "linux-8",
        "linux-16",
        "fitted-4",
        "zbud",
        "bound",
    );
    let (mut best_linux_points, mut zbud_points, mut on_free_points, mut points) = (0, 0, 0, 0);
    let mut all = Vec::new();
    let mut halved = Vec::new();
    for (name, steps) in workloads().into_iter().chain(family_workloads()) {
        let w = run_policies(name, &steps);
        let mut zbud = ZbudStore {
            zbud: Zbud::new(KernelBackend::new()),
            live: BTreeMap::new(),
        };
        let (zf, zh, _) = measure(&mut zbud, &steps);
        // Live bytes after fill, after freeing half, and (the same) after compaction.
        let bytes = [zf.bytes, zh.bytes, zh.bytes];
        for (i, point) in ["fill", "half", "compacted"].into_iter().enumerate() {
            let col = |k: usize| w.pages[k][i];
            let best_linux = LINUX_CHAINS.map(col).min().expect("three");
            let zbud_pages = if i == 0 { zf.frames } else { zh.frames };
            let bound = bytes[i].div_ceil(PAGE as u64);
            let zsos = col(ZSOS);
            points += 1;
            best_linux_points += usize::from(zsos <= best_linux);
            zbud_points += usize::from(zsos <= zbud_pages);
            on_free_points += usize::from(zsos <= col(ZSOS_ON_FREE));
            if i == 2 {
                halved.push((
                    name,
                    best_linux.saturating_sub(bound),
                    zsos.saturating_sub(bound),
                ));
            }
            let busy = w.zsos_busy.get(i).map_or("".into(), |b| b.to_string());
            println!(
                "    {:<12} {:<10} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
                name,
                point,
                zsos,
                busy,
                col(ZSOS_ON_FREE),
                col(1),
                col(2),
                col(3),
                col(4),
                zbud_pages,
                bound,
            );
            for (policy, c) in POLICIES.iter().zip(&w.pages) {
                println!(
                    "BENCH name=pages.{name}.{policy}.{point} value={} unit=frames",
                    c[i]
                );
            }
            if let Some(b) = w.zsos_busy.get(i) {
                println!("BENCH name=pages.{name}.zsos-busy.{point} value={b} unit=frames");
            }
        }
        all.push(w);
    }
    println!(
        "    zsos's pages at {points} points: no more than the best Linux chain at {best_linux_points}, than zbud at {zbud_points}, than zsos compacting on free at {on_free_points}"
    );
    println!("  after compaction, pages above the bound: best Linux chain / zsos");
    for (name, linux, zsos) in &halved {
        println!("    {name:<12} {linux:>6} / {zsos:<6}");
    }
    above_live_figures(&all);
    cost_figures(&all);
    phase_figures(&all);
}

/// Where zsos's and Linux chain 8's pages beyond the bound go, at each point.
fn above_live_figures(all: &[WorkloadFigures]) {
    println!(
        "  pages beyond the live bytes, zsos / Linux chain 8: slots larger than their objects (class size, header), free slots, zspage ends no slot covers"
    );
    println!(
        "    {:<12} {:<10} {:>13} {:>13} {:>13}",
        "workload", "point", "rounding", "free slots", "ends"
    );
    const KINDS: [&str; 3] = ["rounding", "free_slots", "ends"];
    for w in all {
        for (i, point) in ["fill", "half", "compacted"].into_iter().enumerate() {
            let pages = |j: usize, kind: usize| w.above_live[j][i][kind] as f64 / PAGE as f64;
            crate::print!("    {:<12} {:<10}", w.name, point);
            for kind in 0..3 {
                let cell = alloc::format!("{:.0} / {:.0}", pages(0, kind), pages(1, kind));
                crate::print!(" {cell:>13}");
            }
            println!();
            for (j, policy) in ["zsos", "linux"].into_iter().enumerate() {
                for (kind, what) in KINDS.into_iter().enumerate() {
                    println!(
                        "BENCH name=above_live.{}.{policy}.{point}.{what} value={:.1} unit=frames",
                        w.name,
                        pages(j, kind)
                    );
                }
            }
        }
    }
}

/// The cost table of [`policy_figures`].
fn cost_figures(all: &[WorkloadFigures]) {
    println!(
        "  cost / Linux chain 8's, medians of {COST_ROUNDS} rounds: the whole workload (malloc, free, all compaction), the median malloc, the median free"
    );
    println!(
        "    {:<12} {:>21}   {:>21}   {:>29}",
        "", "zsos", "zsos compacting on free", "KiB moved (zsos: auto)"
    );
    println!(
        "    {:<12} {:>6} {:>7} {:>6}   {:>6} {:>7} {:>6}   {:>13} {:>7} {:>7}",
        "workload",
        "whole",
        "malloc",
        "free",
        "whole",
        "malloc",
        "free",
        "zsos",
        "on-free",
        "linux"
    );
    let mut wholes: Vec<f64> = Vec::new();
    for w in all {
        let name = w.name;
        let r = |k: usize, i: usize| w.ratio(k, i);
        let [zsos, on_free, linux] = w.moved;
        println!(
            "    {name:<12} {:>6.2} {:>7.2} {:>6.2}   {:>6.2} {:>7.2} {:>6.2}   {:>13} {:>7} {:>7}",
            r(0, 0),
            r(0, 1),
            r(0, 2),
            r(1, 0),
            r(1, 1),
            r(1, 2),
            alloc::format!("{} ({})", zsos.0 / 1024, zsos.1 / 1024),
            on_free.0 / 1024,
            linux.0 / 1024,
        );
        for (k, label) in [(0, "zsos"), (1, "zsos-on-free")] {
            for (i, what) in ["whole", "malloc", "free"].into_iter().enumerate() {
                println!(
                    "BENCH name=policy.{label}.{name}.{what}_ratio value={:.3} unit=ratio",
                    r(k, i)
                );
            }
        }
        for (label, m) in [("zsos", zsos), ("zsos-on-free", on_free), ("linux", linux)] {
            println!(
                "BENCH name=policy.{label}.{name}.moved value={} unit=KiB",
                m.0 / 1024
            );
        }
        println!(
            "BENCH name=policy.zsos.{name}.auto_pages value={} unit=frames",
            zsos.2
        );
        wholes.push(r(0, 0));
    }
    wholes.sort_by(f64::total_cmp);
    println!(
        "    zsos: median whole-workload ratio {:.2}, highest {:.2}",
        wholes[wholes.len() / 2],
        wholes[wholes.len() - 1]
    );
    println!(
        "  the whole workload in millions of cycles (medians), and of it compaction at the pauses and when asked"
    );
    println!(
        "    {:<12} {:>8} {:>8} {:>8}   {:>10} {:>10}",
        "workload", "zsos", "on-free", "linux", "zsos comp", "linux comp"
    );
    for w in all {
        let m = |k: usize, i: usize| w.median(k, i) / 1e6;
        println!(
            "    {:<12} {:>8.1} {:>8.1} {:>8.1}   {:>10.1} {:>10.1}",
            w.name,
            m(0, 0),
            m(1, 0),
            m(2, 0),
            m(0, 3),
            m(2, 3)
        );
        for (k, label) in [(0, "zsos"), (1, "zsos-on-free"), (2, "linux")] {
            println!(
                "BENCH name=policy.{label}.{}.whole value={:.0} unit=cycles",
                w.name,
                w.median(k, 0)
            );
        }
    }
    println!(
        "  zsos's compaction by kind of move, KiB moved / pages given back (first run: pauses and the compaction asked for)"
    );
    crate::print!("    {:<12}", "workload");
    for kind in MoveKind::ALL {
        crate::print!(" {:>14}", kind.name());
    }
    println!();
    for w in all {
        crate::print!("    {:<12}", w.name);
        for kind in MoveKind::ALL {
            let (bytes, pages) = w.zsos_by_kind[kind as usize];
            crate::print!(" {:>14}", alloc::format!("{} / {pages}", bytes / 1024));
        }
        println!();
        for kind in MoveKind::ALL {
            let (bytes, pages) = w.zsos_by_kind[kind as usize];
            println!(
                "BENCH name=policy.zsos.{}.moved_by_{} value={} unit=KiB",
                w.name,
                kind.name(),
                bytes / 1024
            );
            println!(
                "BENCH name=policy.zsos.{}.freed_by_{} value={pages} unit=frames",
                w.name,
                kind.name()
            );
        }
    }
}

/// The phase table of [`policy_figures`].
fn phase_figures(all: &[WorkloadFigures]) {
    println!(
        "  cycles per call by phase, zsos / Linux chain 8 (one profiled run: malloc phases per malloc, free phases per free, fullness per both)"
    );
    crate::print!("    {:<15}", "phase");
    for w in all {
        crate::print!(" {:>13}", w.name);
    }
    println!();
    let mut figures = Vec::new();
    for phase in Phase::ALL {
        crate::print!("    {:<15}", phase.name());
        for w in all {
            let [zsos, linux] = &w.profiles;
            let cell = alloc::format!("{:.0}/{:.0}", zsos.per_call(phase), linux.per_call(phase));
            crate::print!(" {cell:>13}");
            for (policy, p) in [("zsos", zsos), ("linux", linux)] {
                figures.push(alloc::format!(
                    "BENCH name=phase.{policy}.{}.{} value={:.1} unit=cycles",
                    w.name,
                    phase.name(),
                    p.per_call(phase)
                ));
            }
        }
        println!();
    }
    for line in figures {
        println!("{line}");
    }
}
