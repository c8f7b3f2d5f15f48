//! Everything that touches the x86_64 machine directly: descriptor tables, fault handlers,
//! the cycle counter, fault-tolerant memory probes and QEMU's exit device.
//! The rest of the kernel reaches hardware only through these modules.

pub mod cpus;
pub mod gdt;
pub mod idt;
pub mod irq;
pub mod pic;
pub mod pit;
pub mod probe;
pub mod qemu;
pub mod smp;
pub mod tsc;

pub mod ktests;

/// Loads the GDT/TSS and IDT of the boot CPU. Call once, right after the console.
pub fn init() {
    gdt::init();
    idt::init();
    pic::remap_and_mask();
}

/// Stops this CPU for good (interrupts off, `hlt` forever).
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
