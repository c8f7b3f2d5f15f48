//! Which CPU is this? Each CPU's GS base points at its own small record (its own address at
//! `gs:[0]`, its index at `gs:[8]`), so any code, fault handlers included, can ask for the
//! current CPU's index with one load. What a CPU owns beyond its index (its PTE window, ...)
//! lives above this layer, in `crate::percpu`, indexed by it.

use core::sync::atomic::{AtomicPtr, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

/// Most CPUs zsos supports.
pub const MAX_CPUS: usize = 64;

/// One CPU's record. `repr(C)` so that `self_ptr` is at `gs:[0]` and `index` at `gs:[8]`.
#[repr(C)]
struct CpuLocal {
    self_ptr: AtomicPtr<CpuLocal>,
    index: usize,
}

static LOCALS: [Once<CpuLocal>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Makes this CPU CPU number `index`: creates its record and points its GS base at it. Run
/// once on each CPU, on that CPU, before anything asks [`index`].
pub fn init_this_cpu(index: usize) {
    assert!(index < MAX_CPUS, "CPU index {index} is beyond MAX_CPUS");
    let local = LOCALS[index].call_once(|| CpuLocal {
        self_ptr: AtomicPtr::new(core::ptr::null_mut()),
        index,
    });
    let ptr = core::ptr::from_ref(local);
    local.self_ptr.store(ptr.cast_mut(), Ordering::SeqCst);
    GsBase::write(VirtAddr::from_ptr(ptr));
}

/// This CPU's index. Only valid once [`init_this_cpu`] ran on this CPU.
#[inline]
pub fn index() -> usize {
    let index: usize;
    // SAFETY: GS base points at this CPU's `CpuLocal` (set by `init_this_cpu` before anyone
    // calls this), whose `index` field is at offset 8; reading it has no side effects.
    unsafe {
        core::arch::asm!("mov {}, gs:[8]", out(reg) index, options(nostack, readonly, preserves_flags))
    };
    index
}

/// This CPU's index, or `None` before [`init_this_cpu`] ran on it (for diagnostics, which
/// may run that early).
pub fn try_index() -> Option<usize> {
    let base = GsBase::read().as_u64();
    LOCALS
        .iter()
        .filter_map(|l| l.get())
        .find(|l| core::ptr::from_ref::<CpuLocal>(l) as u64 == base)
        .map(|l| l.index)
}
