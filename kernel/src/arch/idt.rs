//! Interrupt descriptor table and the CPU-exception handlers.
//!
//! Every fatal exception prints a diagnostic (what, where, the faulting address for a page
//! fault, the error code decoded) and ends the machine with a failing verdict, unless
//!   * the faulting instruction is a [`probe`](super::probe) with a fix-up (the handler then
//!     resumes at the fix-up, as Linux's exception tables do), or
//!   * a hook registered with [`set_fatal_hook`] ends the machine itself first (the kernel
//!     test runner does, to pass a test that expects exactly this fault).

use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

use super::gdt::DOUBLE_FAULT_IST_INDEX;

/// The CPU exceptions zsos reports by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// #PF, vector 14.
    PageFault,
    /// #GP, vector 13 (also what a non-canonical address raises instead of a #PF).
    GeneralProtection,
    /// #UD, vector 6.
    InvalidOpcode,
    /// #DF, vector 8: a fault while delivering another fault (e.g. stack overflow).
    DoubleFault,
}

/// Everything a handler knows about one exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Which exception.
    pub kind: FaultKind,
    /// Address of the faulting instruction.
    pub rip: u64,
    /// Stack pointer at the time of the fault.
    pub rsp: u64,
    /// The error code the CPU pushed, if this exception has one.
    pub error_code: Option<u64>,
    /// For a page fault, the address that was accessed (CR2).
    pub address: Option<u64>,
    /// The stack pointer the handler itself ran on (shows whether an IST stack was used).
    pub handler_rsp: u64,
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.kind {
            FaultKind::PageFault => write!(f, "page fault")?,
            FaultKind::GeneralProtection => write!(f, "general protection fault")?,
            FaultKind::InvalidOpcode => write!(f, "invalid opcode")?,
            FaultKind::DoubleFault => write!(f, "double fault")?,
        }
        if let Some(addr) = self.address {
            write!(f, " accessing {addr:#x}")?;
        }
        write!(f, " at RIP {:#x}, RSP {:#x}", self.rip, self.rsp)?;
        if let Some(code) = self.error_code {
            write!(f, ", error code {code:#x}")?;
            if self.kind == FaultKind::PageFault {
                let bits = PageFaultErrorCode::from_bits_truncate(code);
                let present = bits.contains(PageFaultErrorCode::PROTECTION_VIOLATION);
                let write = bits.contains(PageFaultErrorCode::CAUSED_BY_WRITE);
                let fetch = bits.contains(PageFaultErrorCode::INSTRUCTION_FETCH);
                write!(
                    f,
                    " ({}, {}{})",
                    if present {
                        "protection violation"
                    } else {
                        "page not present"
                    },
                    if write {
                        "write"
                    } else if fetch {
                        "instruction fetch"
                    } else {
                        "read"
                    },
                    if bits.contains(PageFaultErrorCode::USER_MODE) {
                        ", user"
                    } else {
                        ""
                    },
                )?;
            }
        }
        Ok(())
    }
}

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Number of breakpoint (`int3`) exceptions handled so far; lets a test prove that a
/// trap handler runs and returns.
static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

/// Builds the IDT with zsos's exception handlers and loads it on this CPU.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        idt.breakpoint.set_handler_fn(breakpoint);
        idt.page_fault.set_handler_fn(page_fault);
        idt.general_protection_fault
            .set_handler_fn(general_protection);
        idt.invalid_opcode.set_handler_fn(invalid_opcode);
        idt[super::smp::WAKE_VECTOR].set_handler_fn(wake_up);
        idt[super::smp::SPURIOUS_VECTOR].set_handler_fn(spurious);
        // SAFETY: DOUBLE_FAULT_IST_INDEX names the TSS slot that `gdt::init` filled with a
        // dedicated, otherwise unused stack.
        unsafe {
            idt.double_fault
                .set_handler_fn(double_fault)
                .set_stack_index(DOUBLE_FAULT_IST_INDEX);
        }
        idt
    });
    idt.load();
}

/// The IPI that wakes a halted AP: nothing to do but acknowledge it (the AP looks for work
/// when `hlt` returns).
extern "x86-interrupt" fn wake_up(_frame: InterruptStackFrame) {
    super::smp::end_of_interrupt();
}

/// A spurious local-APIC interrupt: ignored, and (as the APIC requires) not acknowledged.
extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {}

/// How many `int3` traps have been handled.
pub fn breakpoint_count() -> u64 {
    BREAKPOINTS.load(Ordering::Relaxed)
}

fn current_rsp() -> u64 {
    let rsp: u64;
    // SAFETY: reading the stack pointer has no side effects.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    rsp
}

fn fault_from(kind: FaultKind, frame: &InterruptStackFrame, error_code: Option<u64>) -> Fault {
    Fault {
        kind,
        rip: frame.instruction_pointer.as_u64(),
        rsp: frame.stack_pointer.as_u64(),
        error_code,
        address: (kind == FaultKind::PageFault).then(Cr2::read_raw),
        handler_rsp: current_rsp(),
    }
}

/// Resumes at a probe's fix-up if the fault came from one, else reports it and ends.
///
/// `frame` must be the handler's own argument: the CPU reloads RIP from it on `iretq`.
fn handle_recoverable(frame: &mut InterruptStackFrame, fault: Fault) {
    if let Some(fixup) = super::probe::fixup_for(fault.rip) {
        super::probe::record(fault);
        // SAFETY: `fixup` is the recovery label of the probe routine that faulted; resuming
        // there with the same stack is exactly what that routine is written for.
        unsafe {
            frame
                .as_mut()
                .update(|f| f.instruction_pointer = x86_64::VirtAddr::new(fixup));
        }
        return;
    }
    fatal(fault)
}

/// Called first on a fault nobody recovers from; may end the machine itself.
static FATAL_HOOK: Once<fn(&Fault)> = Once::new();

/// Registers the function every unrecoverable fault is shown to before the default
/// diagnostic (which follows if it returns). The first registration stays.
pub fn set_fatal_hook(hook: fn(&Fault)) {
    FATAL_HOOK.call_once(|| hook);
}

/// The end of the road for an exception nobody recovers from.
fn fatal(fault: Fault) -> ! {
    if let Some(hook) = FATAL_HOOK.get() {
        hook(&fault);
    }
    match super::cpu_local::try_index() {
        Some(cpu) => {
            crate::console::emergency_write_fmt(format_args!("\nFATAL: {fault} (on CPU {cpu})\n"))
        }
        None => crate::console::emergency_write_fmt(format_args!("\nFATAL: {fault}\n")),
    }
    super::qemu::exit(super::qemu::ExitCode::Failure)
}

extern "x86-interrupt" fn breakpoint(_frame: InterruptStackFrame) {
    BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
}

extern "x86-interrupt" fn page_fault(mut frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let fault = fault_from(FaultKind::PageFault, &frame, Some(code.bits()));
    handle_recoverable(&mut frame, fault);
}

extern "x86-interrupt" fn general_protection(mut frame: InterruptStackFrame, code: u64) {
    let fault = fault_from(FaultKind::GeneralProtection, &frame, Some(code));
    handle_recoverable(&mut frame, fault);
}

extern "x86-interrupt" fn invalid_opcode(mut frame: InterruptStackFrame) {
    let fault = fault_from(FaultKind::InvalidOpcode, &frame, None);
    handle_recoverable(&mut frame, fault);
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    fatal(fault_from(FaultKind::DoubleFault, &frame, Some(code)))
}
