//! Mode `run`: the default demo. For now it shows what the kernel knows about the machine;
//! the memory manager and zsmalloc demos join it as they land.

use crate::arch::qemu::ExitCode;
use crate::println;

/// Runs the demo.
pub fn run(rest: &[&str]) -> ExitCode {
    if let Err(code) = super::no_args("run", rest) {
        return code;
    }
    let facts = crate::boot_facts();
    println!("zsos: demo");
    println!(
        "  usable memory      {} MiB in {} regions",
        facts.usable_bytes >> 20,
        facts.region_count
    );
    println!("  direct map at      {:#x}", facts.physical_memory_offset);
    println!(
        "  kernel stack       {:#x}..{:#x} ({} KiB)",
        facts.kernel_stack_bottom,
        facts.kernel_stack_bottom + facts.kernel_stack_len,
        facts.kernel_stack_len / 1024
    );
    println!(
        "  TSC                {} MHz",
        crate::arch::tsc::hz() / 1_000_000
    );
    println!("zsos: demo done");
    ExitCode::Success
}
