//! Tests of the machine layer: exception handlers, probes, TSS, cycle counter.

use super::idt::{Fault, FaultKind};
use super::{gdt, idt, probe, tsc};
use crate::ktest::{self, Expect};

fn breakpoint_handler_returns() {
    let before = idt::breakpoint_count();
    x86_64::instructions::interrupts::int3();
    x86_64::instructions::interrupts::int3();
    assert_eq!(idt::breakpoint_count(), before + 2);
}

fn probe_read_of_null_page_faults_with_address() {
    let fault = probe::read_u8(0x10).expect_err("page 0 must not be mapped");
    assert_eq!(fault.kind, FaultKind::PageFault);
    assert_eq!(fault.address, Some(0x10));
    // Error code bit 0 clear: the page is not present (rather than protected).
    assert_eq!(fault.error_code.map(|c| c & 1), Some(0));
}

fn probe_write_to_kernel_code_faults_as_protection_violation() {
    let code = breakpoint_handler_returns as *const () as u64;
    let before = probe::read_u8(code).expect("kernel code is readable");
    // SAFETY: the write must fault (code pages are read-only); if it did not, we write back
    // the byte that was already there.
    let fault =
        unsafe { probe::write_u8(code, before) }.expect_err("kernel code must be read-only");
    assert_eq!(fault.kind, FaultKind::PageFault);
    assert_eq!(fault.address, Some(code));
    // Bits 0 (present) and 1 (write) set.
    assert_eq!(fault.error_code.map(|c| c & 3), Some(3));
}

fn probe_read_of_non_canonical_address_is_general_protection() {
    let fault = probe::read_u8(0x8000_0000_0000_0000).expect_err("non-canonical must fault");
    assert_eq!(fault.kind, FaultKind::GeneralProtection);
    assert_eq!(fault.address, None);
}

fn ud2_raises_invalid_opcode() {
    let fault = probe::invalid_opcode().expect_err("ud2 must fault");
    assert_eq!(fault.kind, FaultKind::InvalidOpcode);
}

fn probe_reads_mapped_memory() {
    let x: u8 = 0xa5;
    assert_eq!(probe::read_u8(&raw const x as u64), Ok(0xa5));
}

fn task_register_holds_our_tss() {
    let tr: u16;
    // SAFETY: `str` only reads the task register.
    unsafe { core::arch::asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags)) };
    let expected = gdt::expected_tss_selector().expect("GDT initialised at boot");
    assert_eq!(tr, expected.0);
}

fn tsc_is_calibrated_and_advances() {
    let hz = tsc::hz();
    assert!(
        (100_000_000..20_000_000_000).contains(&hz),
        "implausible TSC rate {hz} Hz"
    );
    let a = tsc::start();
    let b = tsc::stop();
    assert!(b > a, "TSC did not advance: {a} then {b}");
    // 10 ms of PIT time must be close to hz/100 cycles (within a factor of two: under TCG the
    // TSC follows the host's clock and the PIT the emulation, so their ratio moves with the
    // host's load between the boot's calibration and this test; all five windows of one CI
    // run under a parallel build read 0.74 of the boot's figure). A loaded host can also
    // deschedule the virtual CPU inside a window (the suite boots three machines on two
    // cores), so one window of five in range is enough; a calibration that is wrong (another
    // clock's rate, a wrong divisor) misses in all five.
    let mut measured = [0u64; 5];
    for m in measured.iter_mut() {
        *m = super::pit::measure_tsc_hz(10);
        if (0.5..2.0).contains(&(*m as f64 / hz as f64)) {
            return;
        }
    }
    panic!("five 10 ms windows gave {measured:?} Hz against {hz} Hz");
}

/// Overflows the kernel stack on purpose: the page fault on the guard page cannot be
/// delivered on the dead stack, so the CPU raises a double fault, which must run on its own
/// IST stack and be reported (this test passes only then).
fn stack_overflow_is_a_double_fault_on_its_own_stack() {
    #[inline(never)]
    #[allow(unconditional_recursion)]
    fn recurse(depth: u64) -> u64 {
        let frame = core::hint::black_box([depth; 64]);
        recurse(depth + 1) + frame[depth as usize % 64]
    }
    core::hint::black_box(recurse(0));
}

fn ran_on_double_fault_stack(fault: &Fault) -> bool {
    gdt::double_fault_stack_range().contains(&fault.handler_rsp)
}

/// A stray write to the page under the kernel stack (its guard page) must fault at exactly
/// that address.
fn write_to_kernel_stack_guard_page_faults() {
    let guard = crate::boot_facts().kernel_stack_bottom - 8;
    ktest::expect_fault_address(guard);
    // SAFETY: `guard` lies in the unmapped guard page below the kernel stack, so the write
    // touches no live object: it faults, which ends the machine as this test expects.
    unsafe { core::ptr::write_volatile(guard as *mut u64, 0xdead) };
}

fn interrupt_guards_dropped_out_of_order_keep_interrupts_off_until_the_last() {
    use x86_64::instructions::interrupts;
    let were_enabled = interrupts::are_enabled();
    interrupts::enable();
    let outer = super::irq::InterruptsOff::new();
    let inner = super::irq::InterruptsOff::new();
    drop(outer);
    let after_first = interrupts::are_enabled();
    drop(inner);
    let after_last = interrupts::are_enabled();
    // Interrupts back off for the sake of the other tests' state, before asserting.
    if !were_enabled {
        interrupts::disable();
    }
    assert!(
        !after_first,
        "the outer guard's drop turned interrupts on under the inner one"
    );
    assert!(after_last, "the last guard left interrupts off");
    // With interrupts off to begin with, no guard turns them on.
    interrupts::disable();
    let a = super::irq::InterruptsOff::new();
    let b = super::irq::InterruptsOff::new();
    drop(a);
    drop(b);
    let stayed_off = !interrupts::are_enabled();
    if were_enabled {
        interrupts::enable();
    }
    assert!(
        stayed_off,
        "guards turned on interrupts that were off before them"
    );
}

fn probes_on_every_cpu_get_their_own_faults() {
    use core::sync::atomic::{AtomicUsize, Ordering};
    let wrong = AtomicUsize::new(0);
    super::smp::run_on_all_cpus(&|cpu| {
        // Each CPU probes its own unmapped address in the null page: a fault recorded for
        // one CPU and taken by another would show the other's address.
        let addr = 0x100 + 0x10 * cpu as u64;
        for _ in 0..5000 {
            match probe::read_u8(addr) {
                Err(f) if f.kind == FaultKind::PageFault && f.address == Some(addr) => {}
                _ => {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "probes got another CPU's fault"
    );
}

crate::ktests! {
    breakpoint_handler_returns,
    interrupt_guards_dropped_out_of_order_keep_interrupts_off_until_the_last,
    probes_on_every_cpu_get_their_own_faults { cpus: 4 },
    probe_read_of_null_page_faults_with_address,
    probe_write_to_kernel_code_faults_as_protection_violation,
    probe_read_of_non_canonical_address_is_general_protection,
    ud2_raises_invalid_opcode,
    probe_reads_mapped_memory,
    task_register_holds_our_tss,
    tsc_is_calibrated_and_advances,
    stack_overflow_is_a_double_fault_on_its_own_stack {
        expect: Expect::Fault {
            kind: FaultKind::DoubleFault,
            check: Some(ran_on_double_fault_stack),
        },
    },
    write_to_kernel_stack_guard_page_faults {
        expect: Expect::Fault {
            kind: FaultKind::PageFault,
            check: None,
        },
    },
}
