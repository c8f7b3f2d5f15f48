//! Per-CPU state: what each CPU owns (today its two-page PTE window), stored by CPU index.
//! The machine layer says which CPU is running (`arch::cpu_local`); `mm::init_cpu` builds
//! what a CPU needs; this module only keeps it, so that a CPU finds its own with
//! [`current`].

use spin::Once;

use crate::arch::cpu_local::{self, MAX_CPUS};
use crate::mm::CpuMemory;
use crate::mm::window::Window;

/// One CPU's private state.
pub struct PerCpu {
    /// This CPU's number (0 for the boot CPU).
    pub index: usize,
    /// This CPU's two-page PTE window.
    pub window: Window,
}

static AREAS: [Once<PerCpu>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Stores CPU `index`'s state. Once per CPU; a second call for the same CPU is ignored.
pub fn install(index: usize, memory: CpuMemory) {
    AREAS[index].call_once(|| PerCpu {
        index,
        window: memory.window,
    });
}

/// This CPU's state. Panics if this CPU has none installed yet.
pub fn current() -> &'static PerCpu {
    let index = cpu_local::index();
    AREAS[index]
        .get()
        .unwrap_or_else(|| panic!("CPU {index} has no per-CPU state installed"))
}
