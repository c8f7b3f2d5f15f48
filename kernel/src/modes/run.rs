//! Mode `run`: the default demo. Shows what the kernel found (memory, memmap, allocator),
//! then zsmalloc at work: a pool filled with LZ4-compressed pages of varied content, part of
//! it freed, and the class table, pages used and density.

use alloc::vec::Vec;

use zsmalloc::{Handle, MapMode, Pool, PoolConfig};

use crate::arch::qemu::ExitCode;
use crate::rng::Rng;
use crate::workload::{self, PAGE};
use crate::zs_backend::KernelBackend;
use crate::{print, println};

/// Pages the demo compresses into the pool.
const DEMO_PAGES: u64 = 6000;
/// Seed of the demo workload (fixed, so every run shows the same figures).
const DEMO_SEED: u64 = 2013;

/// Runs the demo.
pub fn run(rest: &[&str]) -> ExitCode {
    if let Err(code) = super::no_args("run", rest) {
        return code;
    }
    machine_summary();
    match zsmalloc_demo() {
        Ok(()) => {
            println!("zsos: demo done");
            ExitCode::Success
        }
        Err(why) => {
            println!("zsos: demo FAILED: {why}");
            ExitCode::Failure
        }
    }
}

fn machine_summary() {
    let facts = crate::boot_facts();
    println!("zsos: demo");
    println!(
        "  usable memory      {} MiB in {} regions",
        facts.usable_bytes >> 20,
        facts.region_count
    );
    println!("  direct map at      {:#x}", facts.physical_memory_offset);
    println!(
        "  TSC                {} MHz",
        crate::arch::tsc::hz() / 1_000_000
    );
    let mem = facts.memory;
    println!(
        "  memmap             {} frames, {} usable, {} reserved, {} KiB of descriptors",
        mem.memmap.frames,
        mem.memmap.usable,
        mem.memmap.frames - mem.managed_frames,
        mem.memmap.bytes / 1024
    );
    let buddy = crate::mm::buddy::stats();
    println!(
        "  buddy allocator    {} frames free, {} allocated",
        buddy.free_frames, buddy.allocated_frames
    );
    let heap = crate::mm::heap::stats();
    println!(
        "  kernel heap        {} KiB mapped, {} bytes used",
        heap.mapped / 1024,
        heap.used
    );
}

/// Density: bytes of live objects per byte of pool memory.
fn density(live_bytes: u64, pages: usize) -> f64 {
    if pages == 0 {
        0.0
    } else {
        live_bytes as f64 / (pages as f64 * PAGE as f64)
    }
}

fn zsmalloc_demo() -> Result<(), &'static str> {
    let pool = Pool::new("demo", KernelBackend::new(), PoolConfig::default());
    println!();
    println!(
        "zsmalloc: pool 'demo': {} classes (chain {}), huge_class_size {}; filling it with {DEMO_PAGES} LZ4-compressed pages",
        pool.classes().classes.len(),
        pool.classes().max_chain,
        pool.huge_class_size()
    );
    let mut page = [0u8; PAGE];
    let mut stored: Vec<(u64, Handle, usize)> = Vec::with_capacity(DEMO_PAGES as usize);
    let mut kinds = [0u64; workload::KINDS.len()];
    let mut huge = 0;
    let mut live_bytes = 0u64;
    for n in 0..DEMO_PAGES {
        let kind = workload::page(DEMO_SEED, n, &mut page);
        if let Some(k) = workload::KINDS.iter().position(|(name, _)| *name == kind) {
            kinds[k] += 1;
        }
        let compressed = workload::compress(&page);
        // As zram does: a page that does not compress below the huge size is stored whole.
        let data: &[u8] = if compressed.len() >= pool.huge_class_size() {
            &page
        } else {
            &compressed
        };
        huge += (data.len() == PAGE) as u64;
        let h = pool
            .malloc(data.len())
            .map_err(|_| "zsmalloc refused an allocation")?;
        pool.map(h, MapMode::WriteOnly)
            .map_err(|_| "map failed")?
            .copy_from_slice(data);
        live_bytes += data.len() as u64;
        stored.push((n, h, data.len()));
    }
    print!("  page kinds:");
    for ((name, _), count) in workload::KINDS.iter().zip(kinds) {
        print!(" {name} {count}");
    }
    println!();
    let raw = DEMO_PAGES * PAGE as u64;
    println!(
        "  stored {} objects ({huge} incompressible, kept whole): {} KiB of data from {} KiB of pages (ratio {:.2})",
        stored.len(),
        live_bytes / 1024,
        raw / 1024,
        raw as f64 / live_bytes as f64
    );
    println!(
        "  after fill:        {:>6} pages used, density {:.3}",
        pool.total_pages(),
        density(live_bytes, pool.total_pages())
    );

    // Free 30% of the objects at random, as a swap device sees pages come back.
    let mut rng = Rng::new(DEMO_SEED);
    rng.shuffle(&mut stored);
    let keep = stored.len() * 7 / 10;
    for (_, h, len) in stored.drain(keep..) {
        pool.free(h).map_err(|_| "free failed")?;
        live_bytes -= len as u64;
    }
    let stats = pool.stats();
    println!(
        "  after freeing 30%: {:>6} pages used, density {:.3}, {} pages freeable by compaction",
        pool.total_pages(),
        density(live_bytes, pool.total_pages()),
        stats.freeable()
    );
    println!();
    println!("zsmalloc: class table of pool 'demo' (classes in use):");
    print!("{stats}");
    let before = pool.total_pages();
    let freed = pool.compact();
    println!(
        "  compaction:        {before} pages before, {} after: {freed} pages freed, {} objects moved, density {:.3}",
        pool.total_pages(),
        pool.objs_moved(),
        density(live_bytes, pool.total_pages())
    );

    // Check every surviving page by decompressing it.
    let mut back = [0u8; PAGE];
    for &(n, h, len) in &stored {
        workload::page(DEMO_SEED, n, &mut page);
        let m = pool.map(h, MapMode::ReadOnly).map_err(|_| "map failed")?;
        if len == PAGE {
            back.copy_from_slice(&m);
        } else {
            workload::decompress(&m, &mut back)?;
        }
        if back != page {
            return Err("a stored page came back different");
        }
    }
    println!(
        "  verified: all {} surviving pages decompress to their originals",
        stored.len()
    );
    for (_, h, _) in stored {
        pool.free(h).map_err(|_| "free failed")?;
    }
    Ok(())
}
