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
}

struct ZsStore {
    pool: Pool<KernelBackend>,
    live: BTreeMap<u64, Handle>,
    /// Cycles spent in malloc and in free (an automatic compaction included), and how many
    /// of each: `[malloc, free]`.
    cycles: [u64; 2],
    ops: [u64; 2],
}

impl ZsStore {
    fn new(config: PoolConfig) -> ZsStore {
        ZsStore {
            pool: Pool::new("density", KernelBackend::new(), config),
            live: BTreeMap::new(),
            cycles: [0; 2],
            ops: [0; 2],
        }
    }
}

impl Store for ZsStore {
    fn alloc(&mut self, id: u64, size: usize) {
        let t0 = tsc::start();
        let h = self.pool.malloc(size);
        self.cycles[0] += tsc::stop().saturating_sub(t0);
        self.ops[0] += 1;
        let h = h.expect("zsmalloc: out of memory in the density bench");
        self.live.insert(id, h);
    }
    fn free(&mut self, id: u64) {
        let h = self.live.remove(&id).expect("a live id");
        let t0 = tsc::start();
        let r = self.pool.free(h);
        self.cycles[1] += tsc::stop().saturating_sub(t0);
        self.ops[1] += 1;
        r.expect("zsmalloc free");
    }
    fn frames(&self) -> u64 {
        self.pool.total_pages() as u64
    }
    fn desc_bytes(&self) -> Option<u64> {
        Some(zsdesc_bytes(self.pool.total_pages() as u64))
    }
    fn compact(&mut self) -> bool {
        self.pool.compact();
        true
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
    density: f64,
    /// Live bytes at the point.
    bytes: u64,
    /// Bytes of the store's page descriptors, if it counts them.
    desc_bytes: Option<u64>,
}

fn point(store: &dyn Store, live_bytes: u64) -> Point {
    let frames = store.frames();
    Point {
        frames,
        density: live_bytes as f64 / (frames.max(1) * PAGE as u64) as f64,
        bytes: live_bytes,
        desc_bytes: store.desc_bytes(),
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
            println!(
                "    targets: density after fill {zs_fill:.3} (target >= 0.90: {}); zsmalloc/zbud frames {vs_zbud:.2} (target <= 0.60: {})",
                met(zs_fill >= 0.90),
                met(vs_zbud <= 0.60)
            );
            println!(
                "BENCH name=ratio.frames.lz4-pages.zsmalloc/zbud value={vs_zbud:.3} unit=ratio"
            );
        }
        println!("    ({objects} objects)");
    }
    if crate::mm::memmap::get().layout() == crate::mm::memmap::Layout::Memdesc {
        let cache = crate::zs_backend::ZSDESCS.stats();
        println!(
            "    zsdesc cache: {} frames ({} KiB) at its high-water mark, never given back; {} zsdescs in use now",
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
/// 16, and the fitted placement alone at chain 4.
const POLICIES: [&str; 5] = [
    "zsos",
    "linux-chain=4",
    "linux",
    "linux-chain=16",
    "fitted-chain=4",
];
/// Positions in [`POLICIES`]: zsos's, Linux's chain 8 (the cost reference), and Linux's three.
const ZSOS: usize = 0;
const LINUX_8: usize = 2;
const LINUX_CHAINS: core::ops::Range<usize> = 1..4;

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

/// Pages per policy at each point of every workload, beside zbud and the bound
/// ⌈live bytes / 4096⌉, with issue 14's targets for zsos's policy marked: no more pages than
/// the best Linux chain, never more than zbud; then per workload the bytes zsos's automatic
/// compaction moved beside the pages it gave back, and its malloc+free cycles against Linux's
/// (chain 8) in the same run.
pub fn policy_figures() {
    println!("  pages by policy (after fill / after half freed / after compaction)");
    println!(
        "    {:<12} {:<10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}  {:<8} {:<8}",
        "workload",
        "point",
        "zsos",
        "linux-4",
        "linux-8",
        "linux-16",
        "fitted-4",
        "zbud",
        "bound",
        "<=linux",
        "<=zbud"
    );
    let (mut misses_linux, mut misses_zbud, mut points) = (0, 0, 0);
    let mut costs = Vec::new();
    let mut halved = Vec::new();
    for (name, steps) in workloads().into_iter().chain(family_workloads()) {
        let mut cols: Vec<[u64; 3]> = Vec::new();
        // A pass nobody times first: the emulator maps guest memory on first touch, and the
        // first policy to run would pay for it.
        measure(&mut ZsStore::new(PoolConfig::default()), &steps);
        // Per policy: cycles per malloc, per free, per operation.
        let mut cycles_per_op = [[0f64; 3]; POLICIES.len()];
        let mut auto = (0, 0);
        for (k, policy) in POLICIES.iter().enumerate() {
            let config = zsmalloc::Policy::parse(policy)
                .expect("a known policy")
                .config();
            let mut zs = ZsStore::new(config);
            let (fill, half, compacted) = measure(&mut zs, &steps);
            let compacted = compacted.expect("zsmalloc compacts");
            cols.push([fill.frames, half.frames, compacted.frames]);
            let per = |c: u64, n: u64| c as f64 / n.max(1) as f64;
            cycles_per_op[k] = [
                per(zs.cycles[0], zs.ops[0]),
                per(zs.cycles[1], zs.ops[1]),
                per(zs.cycles[0] + zs.cycles[1], zs.ops[0] + zs.ops[1]),
            ];
            if k == ZSOS {
                auto = (zs.pool.bytes_auto_moved(), zs.pool.pages_auto_compacted());
            }
        }
        let mut zbud = ZbudStore {
            zbud: Zbud::new(KernelBackend::new()),
            live: BTreeMap::new(),
        };
        let (zf, zh, _) = measure(&mut zbud, &steps);
        // Live bytes after fill, after freeing half, and (the same) after compaction.
        let bytes = [zf.bytes, zh.bytes, zh.bytes];
        for (i, point) in ["fill", "half", "compacted"].into_iter().enumerate() {
            let best_linux = cols[LINUX_CHAINS]
                .iter()
                .map(|c| c[i])
                .min()
                .expect("three");
            let zbud_pages = if i == 0 { zf.frames } else { zh.frames };
            let bound = bytes[i].div_ceil(PAGE as u64);
            let zsos = cols[ZSOS][i];
            let (ok_linux, ok_zbud) = (zsos <= best_linux, zsos <= zbud_pages);
            points += 1;
            misses_linux += usize::from(!ok_linux);
            misses_zbud += usize::from(!ok_zbud);
            if i == 2 {
                // Halve Linux's best distance to the bound after compaction?
                halved.push((
                    name,
                    best_linux.saturating_sub(bound),
                    zsos.saturating_sub(bound),
                ));
            }
            println!(
                "    {:<12} {:<10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}  {:<8} {:<8}",
                name,
                point,
                cols[0][i],
                cols[1][i],
                cols[2][i],
                cols[3][i],
                cols[4][i],
                zbud_pages,
                bound,
                met(ok_linux),
                met(ok_zbud)
            );
            for (policy, c) in POLICIES.iter().zip(&cols) {
                println!(
                    "BENCH name=pages.{name}.{policy}.{point} value={} unit=frames",
                    c[i]
                );
            }
        }
        let ratio = |i: usize| cycles_per_op[ZSOS][i] / cycles_per_op[LINUX_8][i].max(1.0);
        costs.push((name, auto, [ratio(0), ratio(1), ratio(2)]));
    }
    println!(
        "    zsos needs no more pages than the best Linux chain at {} of {points} points (missed {misses_linux}), no more than zbud at {} (missed {misses_zbud})",
        points - misses_linux,
        points - misses_zbud
    );
    println!("  after compaction, pages above the bound: best Linux chain / zsos (target: half)");
    for (name, linux, zsos) in &halved {
        println!(
            "    {name:<12} {linux:>6} / {zsos:<6} {}",
            met(zsos * 2 <= *linux)
        );
    }
    println!(
        "  zsos: bytes its automatic compaction moved, pages it gave back; malloc+free cycles / Linux chain 8's (target <= 1.10)"
    );
    let mut ratios: Vec<f64> = Vec::new();
    for (name, (bytes, pages), [malloc, free, ratio]) in &costs {
        println!(
            "    {name:<12} {:>8} KiB moved {pages:>6} pages   cycles ratio malloc {malloc:.2} free {free:.2} both {ratio:.2} {}",
            bytes / 1024,
            met(*ratio <= 1.10)
        );
        println!(
            "BENCH name=policy.zsos.{name}.moved value={} unit=KiB",
            bytes / 1024
        );
        println!("BENCH name=policy.zsos.{name}.auto_pages value={pages} unit=frames");
        println!("BENCH name=policy.zsos.{name}.cycles_ratio value={ratio:.3} unit=ratio");
        ratios.push(*ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!("    median cycles ratio {:.2}", ratios[ratios.len() / 2]);
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
