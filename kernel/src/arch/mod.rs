//! Everything that touches the x86_64 machine directly: descriptor tables, fault handlers
//! and the panic handler, the CPU index, the cycle counter, fault-tolerant memory probes,
//! the local APIC and AP start-up, and QEMU's exit device. The rest of the kernel reaches
//! hardware only through these modules.
//!
//! This is the bottom layer: it uses the console and nothing else of the kernel. What the
//! layers above want to happen on a fault, a panic or an AP's start-up they register here
//! ([`idt::set_fatal_hook`], [`panic::set_panic_hook`], [`smp::set_ap_setup`]).

pub mod cpu_local;
pub mod cpus;
pub mod gdt;
pub mod idt;
pub mod irq;
pub mod panic;
pub mod pic;
pub mod pit;
pub mod probe;
pub mod qemu;
pub mod smp;
pub mod tsc;

#[cfg(feature = "ktest")]
mod ktests;

/// Loads the GDT/TSS and IDT of the boot CPU and makes it CPU 0. Call once, right after the
/// console.
pub fn init() {
    gdt::init();
    idt::init();
    cpu_local::init_this_cpu(0);
    pic::remap_and_mask();
}

/// Stops this CPU for good (interrupts off, `hlt` forever).
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
