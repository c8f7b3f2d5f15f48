//! zsos: a small x86_64 unikernel whose reason to exist is memory management, ending in a
//! faithful zsmalloc. Read `docs/architecture.md` first; this file is the entry point.
//!
//! Boot order: console → GDT/TSS/IDT → TSC calibration → command line from the ramdisk (its
//! kernel options choose the memmap's layout) → memory → the other CPUs → the requested mode
//! (`run`, `test`, `bench`, `crash`), which ends the machine with a verdict through QEMU's
//! debug-exit device.

#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod arch;
pub mod args;
pub mod bringup;
#[cfg(feature = "ktest")]
mod concurrency;
pub mod console;
#[cfg(feature = "ktest")]
pub mod ktest;
pub mod mm;
pub mod modes;
pub mod percpu;
pub mod pictures;
pub mod soak;
pub mod workload;
pub mod zram;
pub mod zs_backend;

use bootloader_api::BootInfo;
use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::info::MemoryRegionKind;
use spin::Once;

/// Virtual address the kernel image is linked to at boot. Fixed (rather than chosen by the
/// bootloader) so that `gdb` can load the symbols at a known offset; see `--gdb`.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// Kernel stack size: deep enough for the test suites; overflow hits a guard page.
pub const KERNEL_STACK_SIZE: u64 = 256 * 1024;

/// How the bootloader must set up the machine before entering the kernel.
pub const BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.mappings.kernel_base = Mapping::FixedAddress(KERNEL_BASE);
    config.kernel_stack_size = KERNEL_STACK_SIZE;
    config
};

bootloader_api::entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

/// What the kernel learned from `BootInfo` that the rest of it needs later.
#[derive(Debug, Clone, Copy)]
pub struct BootFacts {
    /// Virtual address where all of physical memory is mapped.
    pub physical_memory_offset: u64,
    /// Lowest address of the kernel stack (a guard page lies below it).
    pub kernel_stack_bottom: u64,
    /// Size of the kernel stack in bytes.
    pub kernel_stack_len: u64,
    /// Bytes of usable RAM the bootloader reported.
    pub usable_bytes: u64,
    /// Number of memory regions the bootloader reported.
    pub region_count: usize,
    /// What memory set-up found.
    pub memory: mm::MemorySummary,
    /// Physical address of ACPI's RSDP, if the bootloader found it.
    pub rsdp: Option<u64>,
}

static BOOT_FACTS: Once<BootFacts> = Once::new();

/// The facts recorded at boot.
pub fn boot_facts() -> &'static BootFacts {
    BOOT_FACTS
        .get()
        .expect("boot facts are recorded before any mode runs")
}

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    console::init(log::LevelFilter::Info);
    println!("zsos: kernel started");
    arch::init();
    let tsc_hz = arch::tsc::calibrate();

    let usable_bytes = boot_info
        .memory_regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .map(|r| r.end - r.start)
        .sum();
    let physical_memory_offset = boot_info
        .physical_memory_offset
        .into_option()
        .expect("the bootloader maps physical memory");
    let ramdisk: &'static [u8] = match boot_info.ramdisk_addr.into_option() {
        // SAFETY: the bootloader mapped the ramdisk at this address with this length and
        // never reuses that memory; the kernel only ever reads it.
        Some(addr) => unsafe {
            core::slice::from_raw_parts(addr as *const u8, boot_info.ramdisk_len as usize)
        },
        None => &[],
    };
    let args = if ramdisk.is_empty() {
        args::BootArgs::empty()
    } else {
        match args::BootArgs::parse(ramdisk) {
            Ok(a) => a,
            Err(e) => {
                println!("zsos: error: cannot read the command line from the ramdisk: {e}");
                arch::qemu::exit(arch::qemu::ExitCode::Failure);
            }
        }
    };
    let layout = if args.memdesc {
        mm::memmap::Layout::Memdesc
    } else {
        mm::memmap::Layout::Wide
    };
    let memory = mm::init(&boot_info.memory_regions, physical_memory_offset, layout);
    BOOT_FACTS.call_once(|| BootFacts {
        physical_memory_offset,
        memory,
        kernel_stack_bottom: boot_info.kernel_stack_bottom,
        kernel_stack_len: boot_info.kernel_stack_len,
        usable_bytes,
        region_count: boot_info.memory_regions.len(),
        rsdp: boot_info.rsdp_addr.into_option(),
    });
    log::info!(
        "boot: {} MiB usable in {} regions, TSC {} MHz, kernel at {:#x}",
        usable_bytes >> 20,
        boot_info.memory_regions.len(),
        tsc_hz / 1_000_000,
        boot_info.kernel_image_offset,
    );
    memory.log();
    bringup::start_all_cpus(boot_info.rsdp_addr.into_option(), physical_memory_offset);

    let verdict = modes::dispatch(&args);
    arch::qemu::exit(verdict)
}
