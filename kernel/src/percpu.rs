//! Per-CPU data: one area per CPU, indexed by CPU number and reachable from the CPU itself
//! through the GS base register (`gs:[0]` holds the area's own address).
//!
//! Only the boot CPU runs today, but nothing assumes it: every CPU gets its own slot, its
//! own PTE window, and finds them through its own GS base.

use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

use crate::mm::window::Window;

/// Most CPUs zsos supports.
pub const MAX_CPUS: usize = 64;

/// One CPU's private data. `repr(C)` so that `self_ptr` sits at offset 0 for `gs:[0]`.
#[repr(C)]
pub struct PerCpu {
    self_ptr: AtomicPtr<PerCpu>,
    /// This CPU's number (0 for the boot CPU).
    pub index: usize,
    /// This CPU's two-page PTE window.
    pub window: Window,
}

static AREAS: [Once<PerCpu>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];
static ONLINE: AtomicUsize = AtomicUsize::new(0);

/// Creates CPU `index`'s area (with its window) and points this CPU's GS base at it. Run on
/// the CPU being set up.
pub fn init_this_cpu(index: usize) {
    assert!(index < MAX_CPUS, "CPU index {index} is beyond MAX_CPUS");
    let area = AREAS[index].call_once(|| PerCpu {
        self_ptr: AtomicPtr::new(core::ptr::null_mut()),
        index,
        window: Window::new(index),
    });
    let ptr = area as *const PerCpu;
    area.self_ptr.store(ptr as *mut PerCpu, Ordering::SeqCst);
    GsBase::write(VirtAddr::from_ptr(ptr));
    ONLINE.fetch_add(1, Ordering::SeqCst);
}

/// This CPU's area.
pub fn current() -> &'static PerCpu {
    let ptr: *const PerCpu;
    // SAFETY: GS base points at this CPU's PerCpu (set by `init_this_cpu` before anything
    // calls this), whose first field is its own address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: the pointer is to a `'static` area in AREAS.
    unsafe { &*ptr }
}

/// This CPU's index, or `None` before its per-CPU area is set up (for diagnostics, which
/// may run that early).
pub fn current_index() -> Option<usize> {
    let base = GsBase::read().as_u64();
    AREAS
        .iter()
        .filter_map(|a| a.get())
        .find(|a| core::ptr::from_ref::<PerCpu>(a) as u64 == base)
        .map(|a| a.index)
}

/// CPU `index`'s area, if that CPU is set up.
pub fn get(index: usize) -> Option<&'static PerCpu> {
    AREAS.get(index)?.get()
}

/// Number of CPUs with a per-CPU area.
pub fn online() -> usize {
    ONLINE.load(Ordering::SeqCst)
}
