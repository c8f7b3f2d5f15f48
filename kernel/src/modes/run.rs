//! Mode `run`: the default demo. Shows what the kernel found (memory, memmap, allocator),
//! then zsmalloc at work under a zram-style device: 6000 pages of varied content written
//! (LZ4-compressed), 30% discarded, the class table, compaction, and every page read back.

use alloc::vec::Vec;

use crate::arch::qemu::ExitCode;
use crate::workload::{self, PAGE};
use crate::zram::{Zram, ZramStats};
use crate::{print, println};
use zsmalloc::seeded::Rng;

/// Pages the demo compresses into the pool.
const DEMO_PAGES: u64 = 6000;
/// Seed of the demo workload (fixed, so every run shows the same figures).
const DEMO_SEED: u64 = 2013;

/// Runs the demo: `run [--snapshots]` (with `--snapshots`, the pool's snapshot as `SNAP`
/// lines after the fill, the discards and the compaction, for the runner's pictures).
pub fn run(rest: &[&str]) -> ExitCode {
    let snapshots = rest == ["--snapshots"];
    if !snapshots && let Err(code) = super::no_args("run", rest) {
        return code;
    }
    machine_summary();
    match zsmalloc_demo(snapshots) {
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

/// Prints the pool's snapshot and the frame census at `point` if asked.
fn snapshot(on: bool, zram: &Zram, point: &str) {
    if on {
        crate::pictures::print(zram.pool(), point);
    }
}

fn zsmalloc_demo(snapshots: bool) -> Result<(), &'static str> {
    let mut zram = Zram::new("demo", DEMO_PAGES as usize);
    let pool = zram.pool();
    println!();
    println!(
        "zsmalloc: zram-style device 'demo' of {DEMO_PAGES} pages over a pool of {} classes (chain {}), huge_class_size {}",
        pool.classes().classes.len(),
        pool.classes().max_chain,
        pool.huge_class_size()
    );
    println!(
        "  writing {DEMO_PAGES} pages: LZ4-compressed; pages that do not compress below the huge size stored whole; zero pages only flagged"
    );
    let mut page = [0u8; PAGE];
    let mut kinds = [0u64; workload::KINDS.len()];
    for n in 0..DEMO_PAGES {
        let kind = workload::page(DEMO_SEED, n, &mut page);
        if let Some(k) = workload::KINDS.iter().position(|(name, _)| *name == kind) {
            kinds[k] += 1;
        }
        zram.write(n as usize, &page)
            .map_err(|_| "the device refused a page")?;
    }
    print!("  page kinds:");
    for ((name, _), count) in workload::KINDS.iter().zip(kinds) {
        print!(" {name} {count}");
    }
    println!();
    report("after fill:       ", &zram.stats());
    snapshot(snapshots, &zram, "fill");

    // Discard 30% of the pages at random, as a swap device sees pages come back.
    let mut order: Vec<u64> = (0..DEMO_PAGES).collect();
    Rng::new(DEMO_SEED).shuffle(&mut order);
    let keep = order.len() * 7 / 10;
    for &n in &order[keep..] {
        zram.discard(n as usize).map_err(|_| "discard failed")?;
    }
    let stats = zram.pool().stats();
    report("after discarding 30%:", &zram.stats());
    snapshot(snapshots, &zram, "discard");
    println!("  {} pages freeable by compaction", stats.freeable());
    println!();
    println!("zsmalloc: class table of pool 'demo' (classes in use):");
    print!("{stats}");
    let before = zram.pool().total_pages();
    let freed = zram.compact();
    println!(
        "  compaction: {before} pages before, {} after: {freed} pages freed, {} objects moved",
        zram.pool().total_pages(),
        zram.pool().objs_moved(),
    );
    report("after compaction: ", &zram.stats());
    snapshot(snapshots, &zram, "compacted");

    // Check every surviving page against its original.
    let mut back = [0u8; PAGE];
    for &n in &order[..keep] {
        workload::page(DEMO_SEED, n, &mut page);
        zram.read(n as usize, &mut back)
            .map_err(|_| "a page did not read back")?;
        if back != page {
            return Err("a stored page came back different");
        }
    }
    for &n in &order[keep..] {
        zram.read(n as usize, &mut back)
            .map_err(|_| "a page did not read back")?;
        if back.iter().any(|&b| b != 0) {
            return Err("a discarded page does not read as zeros");
        }
    }
    println!(
        "  verified: all {keep} surviving pages read back as written, discarded ones as zeros"
    );
    Ok(())
}

/// One line of device figures.
fn report(when: &str, s: &ZramStats) {
    println!("  {when} {s}");
}
