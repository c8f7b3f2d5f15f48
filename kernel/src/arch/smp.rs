//! The machine's side of running several CPUs: the local APIC, the real-mode trampoline,
//! the INIT-SIPI-SIPI start-up sequence, the wake-up IPI and running work on every CPU.
//!
//! What memory an AP needs (the trampoline's frame, the APIC mapping, stacks, per-CPU state)
//! is provided from above (`crate::bringup`): this module only programs the hardware. The
//! trampoline loads a temporary GDT, enables long mode with the kernel's page tables, and
//! calls [`ap_main`] on the stack it was given; the AP loads its own GDT/TSS (with its own
//! double-fault stack), the shared IDT and its CPU index, runs the set-up registered with
//! [`set_ap_setup`], reports that it is up, and waits for work. An AP that does not report
//! within a timeout is named, never waited for forever.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use spin::Once;
use volatile::{VolatilePtr, map_field};
use x86_64::registers::control::{Cr0, Cr3, Cr4};

use crate::arch::cpu_local::MAX_CPUS;
use crate::arch::tsc;

core::arch::global_asm!(
    r#"
.section .text.zsos_ap_trampoline, "ax"
.global zsos_ap_trampoline_start
.global zsos_ap_trampoline_end
.global zsos_ap_tr_gdtr
.global zsos_ap_tr_farptr
.global zsos_ap_tr_cr0
.global zsos_ap_tr_cr3
.global zsos_ap_tr_cr4
.global zsos_ap_tr_stack
.global zsos_ap_tr_cpu
.global zsos_ap_tr_entry
.global zsos_ap_tr_gdt
.global zsos_ap_tr_long
.code16
zsos_ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    movl (zsos_ap_tr_cr4 - zsos_ap_trampoline_start), %eax
    movl %eax, %cr4
    movl (zsos_ap_tr_cr3 - zsos_ap_trampoline_start), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x900, %eax
    wrmsr
    lgdtl (zsos_ap_tr_gdtr - zsos_ap_trampoline_start)
    movl (zsos_ap_tr_cr0 - zsos_ap_trampoline_start), %eax
    movl %eax, %cr0
    ljmpl *(zsos_ap_tr_farptr - zsos_ap_trampoline_start)
.code64
zsos_ap_tr_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq zsos_ap_tr_stack(%rip), %rsp
    movq zsos_ap_tr_cpu(%rip), %rdi
    movq zsos_ap_tr_entry(%rip), %rax
    callq *%rax
    ud2
.balign 16
zsos_ap_tr_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
zsos_ap_tr_gdtr:
    .word 23
    .long 0
.balign 8
zsos_ap_tr_farptr:
    .long 0
    .word 0x08
.balign 8
zsos_ap_tr_cr0: .long 0
zsos_ap_tr_cr3: .long 0
zsos_ap_tr_cr4: .long 0
.balign 8
zsos_ap_tr_stack: .quad 0
zsos_ap_tr_cpu: .quad 0
zsos_ap_tr_entry: .quad 0
zsos_ap_trampoline_end:
.text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static zsos_ap_trampoline_start: u8;
    static zsos_ap_trampoline_end: u8;
    static zsos_ap_tr_gdtr: u8;
    static zsos_ap_tr_farptr: u8;
    static zsos_ap_tr_cr0: u8;
    static zsos_ap_tr_cr3: u8;
    static zsos_ap_tr_cr4: u8;
    static zsos_ap_tr_stack: u8;
    static zsos_ap_tr_cpu: u8;
    static zsos_ap_tr_entry: u8;
    static zsos_ap_tr_gdt: u8;
    static zsos_ap_tr_long: u8;
}

/// Writes `value` into the copy of the trampoline at `page` (its frame's direct-map address),
/// at the field that symbol `sym` marks in the original.
fn set_field<T: Copy>(page: u64, sym: *const u8, value: T) {
    let offset = sym as usize - &raw const zsos_ap_trampoline_start as usize;
    // SAFETY: `page` maps the trampoline's frame, which holds a copy of the trampoline; `sym`
    // is one of its data fields, of at least `size_of::<T>()` bytes, and no AP runs the
    // trampoline while the boot CPU writes it.
    unsafe { core::ptr::write_unaligned((page as usize + offset) as *mut T, value) };
}

/// How long an AP has to report after its SIPIs.
const AP_TIMEOUT_MS: u64 = 500;

/// CPUs that have reported in (the boot CPU counts).
static CPUS_UP: AtomicUsize = AtomicUsize::new(1);
/// Set by the AP being started, to its index.
static LAST_UP: AtomicU64 = AtomicU64::new(0);

/// Where the local APIC's registers are mapped.
static LAPIC: AtomicU64 = AtomicU64::new(0);

/// The local APIC registers zsos uses, at their offsets in the APIC's 4 KiB register page
/// (each a 32-bit register at a 16-byte-aligned offset; the pads are registers left alone).
#[repr(C)]
struct LapicRegs {
    _below_eoi: [u32; 0xb0 / 4],
    /// End of interrupt (write 0).
    eoi: u32,
    _below_svr: [u32; (0xf0 - 0xb4) / 4],
    /// Spurious-interrupt vector register (bit 8: software enable).
    svr: u32,
    _below_icr: [u32; (0x300 - 0xf4) / 4],
    /// Interrupt command, low half (writing it sends the IPI; bit 12: still pending).
    icr_low: u32,
    _between_icr: [u32; (0x310 - 0x304) / 4],
    /// Interrupt command, high half (destination APIC id in bits 24-31).
    icr_high: u32,
}

const _: () = {
    assert!(core::mem::offset_of!(LapicRegs, eoi) == 0xb0);
    assert!(core::mem::offset_of!(LapicRegs, svr) == 0xf0);
    assert!(core::mem::offset_of!(LapicRegs, icr_low) == 0x300);
    assert!(core::mem::offset_of!(LapicRegs, icr_high) == 0x310);
};

/// This CPU's local APIC registers (every CPU sees its own APIC at the same address).
fn lapic() -> VolatilePtr<'static, LapicRegs> {
    let base = core::ptr::NonNull::new(LAPIC.load(Ordering::Relaxed) as *mut LapicRegs)
        .expect("the local APIC is used only after use_local_apic");
    // SAFETY: `base` maps the local APIC's 4 KiB register page uncached and writable for good
    // (the promise of `use_local_apic`); `LapicRegs` lies inside it and names only 32-bit
    // registers, which volatile 32-bit loads and stores are the way to access.
    unsafe { VolatilePtr::new(base) }
}

/// Software-enables this CPU's local APIC, with the spurious vector 0xff.
fn enable_local_apic() {
    let regs = lapic();
    map_field!(regs.svr).update(|v| v | 0x100 | SPURIOUS_VECTOR as u32);
}

/// Sends an IPI (`icr_low` command) to the CPU with APIC id `apic_id` and waits until the
/// APIC has delivered it.
fn send_ipi(apic_id: u32, icr_low: u32) {
    let regs = lapic();
    map_field!(regs.icr_high).write(apic_id << 24);
    map_field!(regs.icr_low).write(icr_low);
    while map_field!(regs.icr_low).read() & (1 << 12) != 0 {
        core::hint::spin_loop();
    }
}

fn delay_us(us: u64) {
    let until = tsc::start() + tsc::hz() / 1_000_000 * us;
    while tsc::start() < until {
        core::hint::spin_loop();
    }
}

/// Physical address of the local APIC's registers (the IA32_APIC_BASE MSR).
pub fn local_apic_base() -> u64 {
    // SAFETY: IA32_APIC_BASE (0x1b) exists on every x86_64 CPU; reading it has no side effect.
    unsafe { x86_64::registers::model_specific::Msr::new(0x1b).read() & 0xf_ffff_f000 }
}

/// Starts using the local APIC whose registers are mapped at `virt` and software-enables it
/// on this CPU (the spurious-vector register).
///
/// # Safety
/// `virt` maps the 4 KiB page at [`local_apic_base`], uncached and writable, for good.
pub unsafe fn use_local_apic(virt: u64) {
    LAPIC.store(virt, Ordering::SeqCst);
    enable_local_apic();
}

/// Whether the trampoline can load the kernel's page tables: it loads CR3 while still in
/// real mode, with a 32-bit move, so the top-level table must lie below 4 GiB.
pub fn trampoline_can_load_cr3() -> bool {
    Cr3::read().0.start_address().as_u64() < 1 << 32
}

/// The trampoline, copied into its low frame.
pub struct Trampoline {
    /// Physical address of its frame (below 640 KiB; the SIPI vector is its page number).
    phys: u64,
    /// The frame's address in the direct map, where the boot CPU writes its fields.
    page: u64,
}

/// Copies the trampoline into the frame at physical address `phys` (seen at `page` through
/// the direct map) and fills in what is the same for every AP.
///
/// # Safety
/// The frame is below 640 KiB, page-aligned, owned by the caller for good, readable and
/// writable at `page`, and identity-mapped executable at `phys` in the kernel's tables.
pub unsafe fn install_trampoline(phys: u64, page: u64) -> Trampoline {
    // Both symbols delimit the trampoline's bytes in the kernel image.
    let (start, end) = (
        &raw const zsos_ap_trampoline_start as usize,
        &raw const zsos_ap_trampoline_end as usize,
    );
    assert!(end - start <= 4096, "the AP trampoline fits in a page");
    // SAFETY: the trampoline's bytes are readable kernel text; the frame is ours and mapped
    // (the caller's promise).
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, page as *mut u8, end - start) };
    let field = |sym: *const u8| phys + (sym as usize - start) as u64;
    // The GDTR is 2 bytes of limit then the base; the far pointer's offset comes first.
    set_field(
        page,
        (&raw const zsos_ap_tr_gdtr).wrapping_add(2),
        field(&raw const zsos_ap_tr_gdt) as u32,
    );
    set_field(
        page,
        &raw const zsos_ap_tr_farptr,
        field(&raw const zsos_ap_tr_long) as u32,
    );
    set_field(page, &raw const zsos_ap_tr_cr0, Cr0::read_raw() as u32);
    set_field(
        page,
        &raw const zsos_ap_tr_cr3,
        Cr3::read().0.start_address().as_u64() as u32,
    );
    // Only what paging needs before long mode (PCIDE, for one, may not be set yet).
    set_field(
        page,
        &raw const zsos_ap_tr_cr4,
        (Cr4::read_raw() & 0b1011_0000) as u32,
    );
    set_field(
        page,
        &raw const zsos_ap_tr_entry,
        ap_main as *const () as u64,
    );
    BSP_CR4.store(Cr4::read_raw(), Ordering::SeqCst);
    Trampoline { phys, page }
}

/// An AP's per-CPU set-up from the layers above, run on the AP before it reports in.
static AP_SETUP: Once<fn(usize)> = Once::new();

/// Registers what each AP runs (with its index) after its descriptor tables and CPU index are
/// set and before it reports in. The first registration stays.
pub fn set_ap_setup(setup: fn(usize)) {
    AP_SETUP.call_once(|| setup);
}

/// Double-fault stack tops of the APs, by CPU index (`start_ap` stores, `ap_main` reads).
static FAULT_STACKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Starts the AP with APIC id `apic_id` as CPU `index` on the stack ending at `stack_top`,
/// its double faults handled on the stack ending at `fault_stack_top`: INIT, then two SIPIs
/// with the trampoline's page as vector; waits up to 500 ms for it to report in. Returns
/// whether it did.
pub fn start_ap(
    trampoline: &Trampoline,
    apic_id: u32,
    index: usize,
    stack_top: u64,
    fault_stack_top: u64,
) -> bool {
    FAULT_STACKS[index].store(fault_stack_top, Ordering::SeqCst);
    set_field(
        trampoline.page,
        &raw const zsos_ap_tr_stack,
        stack_top & !15,
    );
    set_field(trampoline.page, &raw const zsos_ap_tr_cpu, index as u64);
    let before = CPUS_UP.load(Ordering::SeqCst);
    send_ipi(apic_id, 0x0000_4500);
    delay_us(10_000);
    let vector = (trampoline.phys >> 12) as u32 & 0xff;
    for _ in 0..2 {
        send_ipi(apic_id, 0x0000_4600 | vector);
        delay_us(200);
        if CPUS_UP.load(Ordering::SeqCst) > before {
            break;
        }
    }
    let deadline = tsc::start() + tsc::hz() / 1000 * AP_TIMEOUT_MS;
    while CPUS_UP.load(Ordering::SeqCst) == before && tsc::start() < deadline {
        core::hint::spin_loop();
    }
    CPUS_UP.load(Ordering::SeqCst) > before && LAST_UP.load(Ordering::SeqCst) == index as u64
}

/// Where an AP arrives from the trampoline, on its own stack, with the kernel's page tables.
extern "C" fn ap_main(index: u64) -> ! {
    // SAFETY: the same CR4 as the boot CPU (which runs with it), now that long mode is on.
    unsafe { Cr4::write_raw(BSP_CR4.load(Ordering::SeqCst)) };
    crate::arch::gdt::init_for_ap(FAULT_STACKS[index as usize].load(Ordering::SeqCst));
    crate::arch::idt::init();
    crate::arch::cpu_local::init_this_cpu(index as usize);
    if let Some(setup) = AP_SETUP.get() {
        setup(index as usize);
    }
    // Software-enable this CPU's local APIC, or it ignores the wake-up IPI.
    enable_local_apic();
    LAST_UP.store(index, Ordering::SeqCst);
    CPUS_UP.fetch_add(1, Ordering::SeqCst);
    wait_for_work(index as usize)
}

/// Vector of the IPI that wakes halted APs when there is work.
pub const WAKE_VECTOR: u8 = 0xf0;
/// Vector the local APIC uses for spurious interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Tells this CPU's local APIC that the interrupt being handled is done.
pub fn end_of_interrupt() {
    let regs = lapic();
    map_field!(regs.eoi).write(0);
}

/// Work for every CPU: what `run_on_all_cpus` publishes.
struct WorkItem<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

/// The current work item (a `WorkItem` on the publishing CPU's stack), its generation, and
/// how many APs have finished it.
static WORK: AtomicU64 = AtomicU64::new(0);
static WORK_GEN: AtomicU64 = AtomicU64::new(0);
static WORK_DONE: AtomicUsize = AtomicUsize::new(0);
static WORK_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// An AP's life after start-up: halt until woken, run the published work, report, repeat.
fn wait_for_work(index: usize) -> ! {
    let mut seen = 0;
    loop {
        x86_64::instructions::interrupts::disable();
        let generation = WORK_GEN.load(Ordering::Acquire);
        if generation == seen {
            // `sti; hlt` is atomic for interrupts (sti's one-instruction shadow): a wake-up
            // IPI sent after the check above is taken by the `hlt`, not lost before it.
            x86_64::instructions::interrupts::enable_and_hlt();
            continue;
        }
        seen = generation;
        let item = WORK.load(Ordering::Acquire) as *const WorkItem<'static>;
        // SAFETY: `run_on_all_cpus` published a pointer to a live WorkItem for this
        // generation and does not return (so the item and what it borrows stay alive) until
        // every AP has counted itself done below.
        let f = unsafe { (*item).f };
        // The work may borrow bytes the caller mapped through its window or ring; reading
        // them caches the translation here, which the caller's own flushes never reach. A
        // translation cached during one work item is dropped before the next, so a mapping
        // shared again later never shows an old frame (within one item the caller's mapping
        // cannot change: the work borrows it; a mapping made inside the work cannot leave
        // it). Cheaper than a shootdown on every unmap, which cannot know who read.
        x86_64::instructions::tlb::flush_all();
        f(index);
        WORK_DONE.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs `f(cpu index)` on every running CPU at once (this one included, as index 0) and
/// returns when all have finished. A panic on any CPU ends the machine with its message.
/// Each other CPU drops its cached translations before it runs `f`, so bytes `f` borrows
/// from a window mapping of this CPU show that mapping's frames, never an earlier one's.
pub fn run_on_all_cpus(f: &(dyn Fn(usize) + Sync)) {
    let _one_at_a_time = WORK_LOCK.lock();
    let aps = cpus_up() - 1;
    let item = WorkItem { f };
    WORK_DONE.store(0, Ordering::SeqCst);
    WORK.store(&item as *const WorkItem as u64, Ordering::Release);
    WORK_GEN.fetch_add(1, Ordering::AcqRel);
    if aps > 0 {
        // Fixed delivery, assert, to all CPUs but this one.
        let regs = lapic();
        map_field!(regs.icr_high).write(0);
        map_field!(regs.icr_low).write(0x000c_4000 | WAKE_VECTOR as u32);
    }
    f(crate::arch::cpu_local::index());
    while WORK_DONE.load(Ordering::Acquire) < aps {
        core::hint::spin_loop();
    }
}

/// The boot CPU's CR4, for the APs.
static BSP_CR4: AtomicU64 = AtomicU64::new(0);

/// CPUs running (the boot CPU included).
pub fn cpus_up() -> usize {
    CPUS_UP.load(Ordering::SeqCst)
}
