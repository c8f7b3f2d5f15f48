//! Scale: cycles per malloc+free as the pool grows from a thousand to a million live objects
//! (small objects, 32..=256 bytes, so a million fit in the default 512 MiB guest), and the
//! memmap's build time for the memory this boot has (`scripts/bench-memmap` boots with 256 MiB
//! to 4 GiB and collects it).

use alloc::vec::Vec;

use zsmalloc::{Handle, Pool, PoolConfig};

use super::median;
use crate::arch::tsc;
use crate::println;
use crate::zs_backend::KernelBackend;
use zsmalloc::seeded::Rng;

/// Live-object counts measured.
const SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// Median cycles per (malloc, free) pair at each pool size: each pair allocates a new object
/// and frees a random live one in its place, so the live count stays put and the accesses
/// spread over the whole pool.
pub fn figures() {
    let pool = Pool::new("bench-scale", KernelBackend::new(), PoolConfig::default());
    let mut rng = Rng::new(0x5ca1e);
    let mut live: Vec<Handle> = Vec::with_capacity(SIZES[SIZES.len() - 1]);
    let (mut first, mut last_cycles) = (0, 0);
    println!("  scale: cycles per malloc+free pair with N objects live (32..256 bytes each)");
    for n in SIZES {
        while live.len() < n {
            match pool.malloc(32 + rng.below(225) as usize) {
                Ok(h) => live.push(h),
                Err(e) => {
                    println!("  scale: stopped at {} objects: {e}", live.len());
                    return;
                }
            }
        }
        let mut samples: Vec<u64> = Vec::with_capacity(201);
        for _ in 0..201 {
            let t0 = tsc::start();
            for _ in 0..64 {
                let h = pool
                    .malloc(32 + rng.below(225) as usize)
                    .expect("bench malloc");
                let at = rng.below(live.len() as u64) as usize;
                pool.free(core::mem::replace(&mut live[at], h))
                    .expect("bench free");
            }
            samples.push((tsc::stop() - t0) / 64);
        }
        let cycles = median(&mut samples);
        let touch = random_touch_cycles(&pool, &mut rng);
        if first == 0 {
            first = cycles;
        }
        last_cycles = cycles;
        println!(
            "    {n:>8} live: {cycles:>6} cycles ({} pages), {:.2}x the 1000-object figure; control: one read of a random pool page {touch} cycles",
            pool.total_pages(),
            cycles as f64 / first as f64
        );
        println!("BENCH name=zs.scale.{n}.malloc_free value={cycles} unit=cycles");
        println!("BENCH name=zs.scale.{n}.random_page_read value={touch} unit=cycles");
        if n == 100_000 {
            picture_figures(&pool, n);
        }
    }
    let ratio = last_cycles as f64 / first.max(1) as f64;
    println!("    1000000 / 1000 live: {ratio:.2}");
    println!("BENCH name=ratio.zs.scale.1000000/1000 value={ratio:.3} unit=ratio");
    for h in live {
        pool.free(h).expect("bench free");
    }
}

/// The memmap's size and build time for this boot's memory, in the layout it was built in.
pub fn memmap_figure() {
    let m = crate::boot_facts().memory.memmap;
    let us = tsc::cycles_to_us(m.build_cycles);
    println!(
        "  memmap: {} frames ({} MiB), {} KiB of descriptors ({}, {} KiB per GiB), built in {us} us",
        m.frames,
        (m.frames * 4096) >> 20,
        m.bytes / 1024,
        m.layout.name(),
        m.layout.bytes_per_frame() * (1 << 30) / 4096 / 1024
    );
    println!(
        "BENCH name=memmap.{}MiB.build value={us} unit=us",
        (m.frames * 4096) >> 20
    );
    if let Some(warm) = warm_rebuild_cycles(m.layout, m.frames) {
        let warm_us = tsc::cycles_to_us(warm);
        println!(
            "  memmap rebuilt in borrowed frames, second pass (no first touch of guest memory): {warm_us} us, {:.1} cycles a frame",
            warm as f64 / m.frames as f64
        );
        println!(
            "BENCH name=memmap.{}MiB.rebuild_warm value={warm_us} unit=us",
            (m.frames * 4096) >> 20
        );
    }
    println!(
        "BENCH name=memmap.{}MiB.descriptors value={} unit=KiB",
        (m.frames * 4096) >> 20,
        m.bytes / 1024
    );
}

/// Cycles to write a memmap of `layout` for `frames` frames into frames borrowed from the buddy
/// allocator, measured on the second of two passes: the build's own work, without the cost
/// of QEMU's first touch of guest memory that the boot-time build pays (and that varies with
/// where the array lands). `None` if the frames are not there to borrow.
fn warm_rebuild_cycles(layout: crate::mm::memmap::Layout, frames: u64) -> Option<u64> {
    use crate::mm::buddy::FrameBlock;
    let bytes = frames * layout.bytes_per_frame();
    let per_frame = (4096 / layout.bytes_per_frame()) as usize;
    let free = crate::mm::buddy::stats().free_frames;
    if bytes.div_ceil(4096) * 2 > free {
        return None;
    }
    let blocks: Vec<FrameBlock> = (0..bytes.div_ceil(4096))
        .map(|_| FrameBlock::alloc_frame())
        .collect::<Result<_, _>>()
        .ok()?;
    let mut cycles = 0;
    for _ in 0..2 {
        let t0 = tsc::start();
        for b in &blocks {
            // SAFETY: a frame of ours, mapped in the direct map, page aligned; nothing else
            // uses it until it is dropped below.
            unsafe { crate::mm::memmap::write_reserved(layout, b.addr() as *mut u8, per_frame) };
        }
        cycles = tsc::stop() - t0;
    }
    Some(cycles)
}

/// The control for the scale figure: median cycles of reading one byte of a random page of the
/// pool through the direct map. It costs no allocator work, so growth here with the pool's size
/// is the machine's (caches, and QEMU's software TLB), not the allocator's.
fn random_touch_cycles(pool: &Pool<KernelBackend>, rng: &mut Rng) -> u64 {
    let pages = pool.pages();
    let addrs: Vec<u64> = (0..64 * 201)
        .map(|_| crate::mm::memmap::get().frame_addr(pages[rng.below(pages.len() as u64) as usize]))
        .collect();
    let mut samples: Vec<u64> = addrs
        .chunks(64)
        .map(|chunk| {
            let t0 = tsc::start();
            for &a in chunk {
                // SAFETY: a frame of the pool, mapped in the direct map; reading a byte of it
                // races with nothing (this CPU is the only one running).
                core::hint::black_box(unsafe { core::ptr::read_volatile((a + 8) as *const u8) });
            }
            (tsc::stop() - t0) / 64
        })
        .collect();
    median(&mut samples)
}

/// What a picture costs at `n` live objects (`replay --pictures` takes one at every report):
/// reading the pool's snapshot, writing it as console lines, and the frame census. Printing
/// the lines over the serial console is not counted (their bytes are given).
fn picture_figures(pool: &Pool<KernelBackend>, n: usize) {
    let t0 = tsc::start();
    let snap = zsmalloc::snapshot::Snapshot::of(pool, "bench");
    let read = tsc::stop() - t0;
    let t1 = tsc::start();
    let lines = snap.lines();
    let format = tsc::stop() - t1;
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let t2 = tsc::start();
    let census = crate::mm::census::take("bench", crate::zs_backend::is_zsmalloc_page);
    let census_cycles = tsc::stop() - t2;
    let (read_us, format_us, census_us) = (
        tsc::cycles_to_us(read),
        tsc::cycles_to_us(format),
        tsc::cycles_to_us(census_cycles),
    );
    println!(
        "    snapshot at {n} live: read {read_us} us, as lines {format_us} us ({} lines, {} KiB); frame census {census_us} us ({} frames in {} runs)",
        lines.len(),
        bytes / 1024,
        census.frames(),
        census.runs.len()
    );
    println!("BENCH name=snapshot.{n}.read value={read_us} unit=us");
    println!("BENCH name=snapshot.{n}.lines value={format_us} unit=us");
    println!("BENCH name=snapshot.{n}.bytes value={bytes} unit=bytes");
    println!("BENCH name=census.{n}.take value={census_us} unit=us");
}
