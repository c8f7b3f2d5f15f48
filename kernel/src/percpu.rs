//! Per-CPU state: what each CPU owns (today its two-page PTE window), stored by CPU index.
//! The machine layer says which CPU is running (`arch::cpu_local`); `mm::init_cpu` builds
//! what a CPU needs; this module only keeps it, so that a CPU finds its own with
//! [`current`].

use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Once;

use crate::arch::cpu_local::{self, MAX_CPUS};
use crate::mm::CpuMemory;
use crate::mm::window::Window;
use crate::mm::window_ring::WindowRing;

/// One CPU's private state.
pub struct PerCpu {
    /// This CPU's number (0 for the boot CPU).
    pub index: usize,
    /// This CPU's two-page PTE window.
    pub window: Window,
    /// This CPU's lazily flushed ring of two-page slots.
    pub ring: WindowRing,
}

static AREAS: [Once<PerCpu>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// How many CPUs may ever run: every CPU index is below it (1 until bring-up counts them).
static POSSIBLE: AtomicUsize = AtomicUsize::new(1);

/// Records how many CPUs may ever run (the boot CPU and the usable APs of the MADT, at most
/// `MAX_CPUS`), before any is started, so that per-CPU state is sized by the CPUs present.
pub fn set_possible(cpus: usize) {
    POSSIBLE.store(cpus.clamp(1, MAX_CPUS), Ordering::SeqCst);
}

/// How many CPUs may ever run: every CPU index is below it.
pub fn possible() -> usize {
    POSSIBLE.load(Ordering::SeqCst)
}

/// Stores CPU `index`'s state and points this CPU's record at it. Run on that CPU, once; a
/// second call for the same CPU keeps the first state.
pub fn install(index: usize, memory: CpuMemory) {
    assert_eq!(
        index,
        cpu_local::index(),
        "install runs on the CPU it sets up"
    );
    let area = AREAS[index].call_once(|| PerCpu {
        index,
        window: memory.window,
        ring: memory.ring,
    });
    cpu_local::set_data(core::ptr::from_ref(area).cast());
}

/// This CPU's state (one GS-relative load). Panics if this CPU has none installed yet.
#[inline]
pub fn current() -> &'static PerCpu {
    let ptr = cpu_local::data().cast::<PerCpu>();
    assert!(!ptr.is_null(), "this CPU has no per-CPU state installed");
    // SAFETY: a non-null pointer in this CPU's record was stored by `install` and points at a
    // `PerCpu` in AREAS, which is static and never changed after `call_once`.
    unsafe { &*ptr }
}
