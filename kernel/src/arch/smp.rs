//! Starting the application processors (APs): the boot CPU maps its local APIC, copies a
//! real-mode trampoline into a low frame reserved for it (identity-mapped, so the trampoline
//! can turn on paging and keep running), and for each AP the MADT lists sends INIT, then two
//! SIPIs whose vector is the trampoline's page. The trampoline loads a temporary GDT, enables
//! long mode with the kernel's page tables, and calls [`ap_main`] on a fresh stack; the AP
//! then loads its own GDT/TSS (with its own double-fault stack), the shared IDT, and its
//! per-CPU area with its own PTE window, reports that it is up, and waits for work. An AP that
//! does not report within a timeout is named, never waited for forever.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86_64::registers::control::{Cr0, Cr3, Cr4};
use x86_64::structures::paging::PageTableFlags;

use crate::arch::cpus::Cpu;
use crate::arch::tsc;
use crate::mm::{buddy, memmap, paging};

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

/// Stack of each AP.
const AP_STACK: usize = 64 * 1024;
/// How long an AP has to report after its SIPIs.
const AP_TIMEOUT_MS: u64 = 500;

/// CPUs that have reported in (the boot CPU counts).
static CPUS_UP: AtomicUsize = AtomicUsize::new(1);
/// Set by the AP being started, to its index.
static LAST_UP: AtomicU64 = AtomicU64::new(0);

/// Where the local APIC's registers are mapped.
static LAPIC: AtomicU64 = AtomicU64::new(0);

const LAPIC_SVR: usize = 0xf0;
const LAPIC_ICR_LOW: usize = 0x300;
const LAPIC_ICR_HIGH: usize = 0x310;

fn lapic_write(reg: usize, value: u32) {
    let base = LAPIC.load(Ordering::Relaxed);
    // SAFETY: `base` maps the local APIC's 4 KiB register page uncached; `reg` is a register
    // offset inside it; APIC registers are written with 32-bit stores.
    unsafe { core::ptr::write_volatile((base as usize + reg) as *mut u32, value) };
}

fn lapic_read(reg: usize) -> u32 {
    let base = LAPIC.load(Ordering::Relaxed);
    // SAFETY: as for `lapic_write`.
    unsafe { core::ptr::read_volatile((base as usize + reg) as *const u32) }
}

/// Sends an IPI (`icr_low` command) to the CPU with APIC id `apic_id` and waits until the
/// APIC has delivered it.
fn send_ipi(apic_id: u32, icr_low: u32) {
    lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
    lapic_write(LAPIC_ICR_LOW, icr_low);
    while lapic_read(LAPIC_ICR_LOW) & (1 << 12) != 0 {
        core::hint::spin_loop();
    }
}

fn delay_us(us: u64) {
    let until = tsc::start() + tsc::hz() / 1_000_000 * us;
    while tsc::start() < until {
        core::hint::spin_loop();
    }
}

/// What starting the APs did.
#[derive(Debug, Default)]
pub struct Started {
    /// APIC ids of the APs that came up.
    pub up: Vec<u32>,
    /// APIC ids of the APs that did not report in time.
    pub missing: Vec<u32>,
    /// Why nothing was started, if so.
    pub error: Option<&'static str>,
}

/// Starts every usable AP in `cpus` (the boot CPU is skipped), up to `percpu::MAX_CPUS`.
pub fn start_aps(cpus: &[Cpu], lapic_phys: u64) -> Started {
    let mut out = Started::default();
    let aps: Vec<&Cpu> = cpus.iter().filter(|c| !c.is_boot && c.usable).collect();
    if aps.is_empty() {
        return out;
    }
    if let Err(e) = prepare(lapic_phys) {
        out.error = Some(e);
        return out;
    }
    let tramp = match reserve_trampoline_frame() {
        Ok(f) => f,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let page = install_trampoline(tramp);
    for (n, ap) in aps.iter().enumerate() {
        let index = n + 1;
        if index >= crate::percpu::MAX_CPUS {
            out.missing.push(ap.apic_id);
            continue;
        }
        let stack = Box::leak(alloc::vec![0u8; AP_STACK].into_boxed_slice());
        let top = (stack.as_ptr() as u64 + AP_STACK as u64) & !15;
        set_field(page, &raw const zsos_ap_tr_stack, top);
        set_field(page, &raw const zsos_ap_tr_cpu, index as u64);
        let before = CPUS_UP.load(Ordering::SeqCst);
        // INIT, then two SIPIs with the trampoline's page number as vector.
        send_ipi(ap.apic_id, 0x0000_4500);
        delay_us(10_000);
        let vector = (tramp >> 12) as u32 & 0xff;
        for _ in 0..2 {
            send_ipi(ap.apic_id, 0x0000_4600 | vector);
            delay_us(200);
            if CPUS_UP.load(Ordering::SeqCst) > before {
                break;
            }
        }
        let deadline = tsc::start() + tsc::hz() / 1000 * AP_TIMEOUT_MS;
        while CPUS_UP.load(Ordering::SeqCst) == before && tsc::start() < deadline {
            core::hint::spin_loop();
        }
        if CPUS_UP.load(Ordering::SeqCst) > before && LAST_UP.load(Ordering::SeqCst) == index as u64
        {
            out.up.push(ap.apic_id);
        } else {
            out.missing.push(ap.apic_id);
        }
    }
    out
}

/// Maps the local APIC and enables it (software enable in the spurious-vector register).
fn prepare(lapic_phys: u64) -> Result<(), &'static str> {
    // The trampoline loads CR3 while still in real mode, with a 32-bit move.
    if Cr3::read().0.start_address().as_u64() >= 1 << 32 {
        return Err("the kernel's top-level page table is above 4 GiB");
    }
    let region = paging::claim_l4_slot();
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::NO_EXECUTE;
    paging::map_page(region, lapic_phys >> 12, flags).map_err(|_| "cannot map the local APIC")?;
    LAPIC.store(region + (lapic_phys & 0xfff), Ordering::SeqCst);
    lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x1ff);
    Ok(())
}

/// Takes a free frame below 640 KiB (SIPI vectors address the first megabyte) for the
/// trampoline and identity-maps it (executable) in the kernel's tables.
fn reserve_trampoline_frame() -> Result<u64, &'static str> {
    let pfn = buddy::with(|b| {
        (1..0xa0u64)
            .rev()
            .find(|&p| b.free_block_containing(p).is_some())
            .and_then(|p| {
                b.isolate_range(p, p + 1)
                    .ok()
                    .and_then(|_| b.take_isolated(p, 0).ok())
            })
    })
    .ok_or("no free frame below 640 KiB for the AP trampoline")?;
    if let Some(d) = memmap::get().desc(pfn) {
        d.set(memmap::flags::RESERVED);
    }
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    paging::map_page(pfn << 12, pfn, flags)
        .map_err(|_| "cannot identity-map the AP trampoline (the address is in use)")?;
    Ok(pfn << 12)
}

/// Copies the trampoline into its frame and fills in what does not change per AP; returns the
/// frame's direct-map address.
fn install_trampoline(phys: u64) -> u64 {
    let page = memmap::get().frame_addr(phys >> 12);
    // Both symbols delimit the trampoline's bytes in the kernel image.
    let (start, end) = (
        &raw const zsos_ap_trampoline_start as usize,
        &raw const zsos_ap_trampoline_end as usize,
    );
    assert!(end - start <= 4096, "the AP trampoline fits in a page");
    // SAFETY: the trampoline's bytes are readable kernel text; the frame is ours and mapped.
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
    page
}

/// Where an AP arrives from the trampoline, on its own stack, with the kernel's page tables.
extern "C" fn ap_main(index: u64) -> ! {
    // SAFETY: the same CR4 as the boot CPU (which runs with it), now that long mode is on.
    unsafe { Cr4::write_raw(BSP_CR4.load(Ordering::SeqCst)) };
    crate::arch::gdt::init_for_ap();
    crate::arch::idt::init();
    crate::percpu::init_this_cpu(index as usize);
    // Software-enable this CPU's local APIC, or it ignores the wake-up IPI.
    lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x1ff);
    LAST_UP.store(index, Ordering::SeqCst);
    CPUS_UP.fetch_add(1, Ordering::SeqCst);
    wait_for_work(index as usize)
}

/// Vector of the IPI that wakes halted APs when there is work.
pub const WAKE_VECTOR: u8 = 0xf0;
/// Vector the local APIC uses for spurious interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;
const LAPIC_EOI: usize = 0xb0;

/// Tells this CPU's local APIC that the interrupt being handled is done.
pub fn end_of_interrupt() {
    lapic_write(LAPIC_EOI, 0);
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
        f(index);
        WORK_DONE.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs `f(cpu index)` on every running CPU at once (this one included, as index 0) and
/// returns when all have finished. A panic on any CPU ends the machine with its message.
pub fn run_on_all_cpus(f: &(dyn Fn(usize) + Sync)) {
    let _one_at_a_time = WORK_LOCK.lock();
    let aps = cpus_up() - 1;
    let item = WorkItem { f };
    WORK_DONE.store(0, Ordering::SeqCst);
    WORK.store(&item as *const WorkItem as u64, Ordering::Release);
    WORK_GEN.fetch_add(1, Ordering::AcqRel);
    if aps > 0 {
        // Fixed delivery, assert, to all CPUs but this one.
        lapic_write(LAPIC_ICR_HIGH, 0);
        lapic_write(LAPIC_ICR_LOW, 0x000c_4000 | WAKE_VECTOR as u32);
    }
    f(crate::percpu::current().index);
    while WORK_DONE.load(Ordering::Acquire) < aps {
        core::hint::spin_loop();
    }
}

/// The boot CPU's CR4, for the APs.
static BSP_CR4: AtomicU64 = AtomicU64::new(0);

/// Records what the APs copy from the boot CPU. Call before [`start_aps`].
pub fn record_boot_cpu_state() {
    BSP_CR4.store(Cr4::read_raw(), Ordering::SeqCst);
}

/// Physical address of the local APIC's registers (the IA32_APIC_BASE MSR).
pub fn local_apic_base() -> u64 {
    // SAFETY: IA32_APIC_BASE (0x1b) exists on every x86_64 CPU; reading it has no side effect.
    unsafe { x86_64::registers::model_specific::Msr::new(0x1b).read() & 0xf_ffff_f000 }
}

/// CPUs running (the boot CPU included).
pub fn cpus_up() -> usize {
    CPUS_UP.load(Ordering::SeqCst)
}
