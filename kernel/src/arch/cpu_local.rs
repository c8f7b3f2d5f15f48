//! Which CPU is this? Each CPU's GS base points at its own small record (its own address at
//! `gs:[0]`, its index at `gs:[8]`), so any code, fault handlers included, can ask for the
//! current CPU's index with one load. What a CPU owns beyond its index (its PTE window, ...)
//! lives above this layer, in `crate::percpu`; the record keeps an opaque pointer to it at
//! `gs:[16]` ([`set_data`], [`data`]), so that finding it is one load too.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

/// Most CPUs zsos supports.
pub const MAX_CPUS: usize = 64;

/// One CPU's record. `repr(C)` so that `self_ptr` is at `gs:[0]`, `index` at `gs:[8]` and
/// `data` at `gs:[16]`.
#[repr(C)]
struct CpuLocal {
    self_ptr: AtomicPtr<CpuLocal>,
    index: usize,
    data: AtomicPtr<()>,
}

/// One CPU's interrupt-guard state (`arch::irq`): guards alive on it, and whether interrupts
/// were on before the outermost one. A cache line of its own per CPU.
#[repr(align(64))]
struct IrqState {
    depth: AtomicU32,
    were_enabled: AtomicBool,
}

static IRQ: [IrqState; MAX_CPUS] = [const {
    IrqState {
        depth: AtomicU32::new(0),
        were_enabled: AtomicBool::new(false),
    }
}; MAX_CPUS];

static LOCALS: [Once<CpuLocal>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Makes this CPU CPU number `index`: creates its record and points its GS base at it. Run
/// once on each CPU, on that CPU, before anything asks [`index`].
pub fn init_this_cpu(index: usize) {
    assert!(index < MAX_CPUS, "CPU index {index} is beyond MAX_CPUS");
    let local = LOCALS[index].call_once(|| CpuLocal {
        self_ptr: AtomicPtr::new(core::ptr::null_mut()),
        index,
        data: AtomicPtr::new(core::ptr::null_mut()),
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

/// Stores the layers above's pointer for this CPU (what [`data`] returns on it). Only valid
/// once [`init_this_cpu`] ran on this CPU.
pub fn set_data(ptr: *const ()) {
    let local = LOCALS[index()]
        .get()
        .expect("init_this_cpu ran on this CPU");
    local.data.store(ptr.cast_mut(), Ordering::Release);
}

/// The pointer [`set_data`] stored on this CPU, or null. Only valid once [`init_this_cpu`]
/// ran on this CPU.
#[inline]
pub fn data() -> *const () {
    let ptr: *const ();
    // SAFETY: GS base points at this CPU's `CpuLocal` (set by `init_this_cpu`), whose `data`
    // field is at offset 16; reading it has no side effects. Only this CPU writes it.
    unsafe {
        core::arch::asm!("mov {}, gs:[16]", out(reg) ptr, options(nostack, readonly, preserves_flags))
    };
    ptr
}

/// Counts an interrupt guard in (`were_enabled`: interrupts were on before it masked them);
/// returns how many were alive before. Only with interrupts off, on this CPU, once
/// [`init_this_cpu`] ran here.
pub(super) fn irq_guard_enter(were_enabled: bool) -> u32 {
    let irq = &IRQ[index()];
    let depth = irq.depth.load(Ordering::Relaxed);
    if depth == 0 {
        irq.were_enabled.store(were_enabled, Ordering::Relaxed);
    }
    irq.depth.store(depth + 1, Ordering::Relaxed);
    depth
}

/// Counts an interrupt guard out; returns true if it was the last and interrupts were on
/// before the first (so they go back on). Same conditions as [`irq_guard_enter`].
pub(super) fn irq_guard_leave() -> bool {
    let irq = &IRQ[index()];
    let depth = irq.depth.load(Ordering::Relaxed);
    assert!(depth > 0, "an interrupt guard left that never entered");
    irq.depth.store(depth - 1, Ordering::Relaxed);
    depth == 1 && irq.were_enabled.load(Ordering::Relaxed)
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
