//! Fault-tolerant memory probes: touch an address and get `Err(fault)` instead of a dead
//! machine if it faults.
//!
//! Each probe is a few instructions of assembly with two labels: the instruction that may
//! fault and a fix-up to resume at. The exception handlers look the faulting RIP up in
//! [`fixup_for`]; on a match they record the fault and resume at the fix-up, which makes the
//! probe return "faulted". This is Linux's exception-table idea in miniature, and it lets
//! tests prove that a page really is unmapped or read-only without ending the machine.

use super::idt::Fault;
use spin::Mutex;

use super::cpu_local::MAX_CPUS;

core::arch::global_asm!(
    // u64 zsos_probe_read_u8(const u8 *addr, u8 *out): 0 = read ok, 1 = faulted.
    ".global zsos_probe_read_u8",
    ".global zsos_probe_read_u8_insn",
    ".global zsos_probe_read_u8_fixup",
    "zsos_probe_read_u8:",
    "    xor eax, eax",
    "zsos_probe_read_u8_insn:",
    "    movzx ecx, byte ptr [rdi]",
    "    mov byte ptr [rsi], cl",
    "    ret",
    "zsos_probe_read_u8_fixup:",
    "    mov eax, 1",
    "    ret",
    // u64 zsos_probe_write_u8(u8 *addr, u8 value): 0 = written, 1 = faulted.
    ".global zsos_probe_write_u8",
    ".global zsos_probe_write_u8_insn",
    ".global zsos_probe_write_u8_fixup",
    "zsos_probe_write_u8:",
    "    xor eax, eax",
    "zsos_probe_write_u8_insn:",
    "    mov byte ptr [rdi], sil",
    "    ret",
    "zsos_probe_write_u8_fixup:",
    "    mov eax, 1",
    "    ret",
    // u64 zsos_probe_ud2(void): always raises #UD; returns 1 once the handler resumed here.
    ".global zsos_probe_ud2",
    ".global zsos_probe_ud2_insn",
    ".global zsos_probe_ud2_fixup",
    "zsos_probe_ud2:",
    "    xor eax, eax",
    "zsos_probe_ud2_insn:",
    "    ud2",
    "zsos_probe_ud2_fixup:",
    "    mov eax, 1",
    "    ret",
);

unsafe extern "C" {
    fn zsos_probe_read_u8(addr: *const u8, out: *mut u8) -> u64;
    fn zsos_probe_write_u8(addr: *mut u8, value: u8) -> u64;
    fn zsos_probe_ud2() -> u64;
    static zsos_probe_read_u8_insn: u8;
    static zsos_probe_read_u8_fixup: u8;
    static zsos_probe_write_u8_insn: u8;
    static zsos_probe_write_u8_fixup: u8;
    static zsos_probe_ud2_insn: u8;
    static zsos_probe_ud2_fixup: u8;
}

/// The fault the last probe took, per CPU (probes on two CPUs at once must not trade
/// faults). Written by the exception handler, read by the probe's caller right after the
/// probe returns, on the same CPU; nobody holds a lock across a probe, so the handler can
/// always take it. Before the CPU's record exists (early boot, one CPU) the first is used.
static LAST_FAULT: [Mutex<Option<Fault>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];

fn last_fault() -> &'static Mutex<Option<Fault>> {
    &LAST_FAULT[super::cpu_local::try_index().unwrap_or(0)]
}

/// Where to resume if the instruction at `rip` faults, if it is a probe instruction.
pub fn fixup_for(rip: u64) -> Option<u64> {
    let table = [
        (
            &raw const zsos_probe_read_u8_insn,
            &raw const zsos_probe_read_u8_fixup,
        ),
        (
            &raw const zsos_probe_write_u8_insn,
            &raw const zsos_probe_write_u8_fixup,
        ),
        (
            &raw const zsos_probe_ud2_insn,
            &raw const zsos_probe_ud2_fixup,
        ),
    ];
    table
        .iter()
        .find(|(insn, _)| *insn as u64 == rip)
        .map(|(_, fixup)| *fixup as u64)
}

/// Called by the exception handler before resuming at a fix-up.
pub(super) fn record(fault: Fault) {
    *last_fault().lock() = Some(fault);
}

fn take_fault() -> Fault {
    last_fault()
        .lock()
        .take()
        .expect("a probe reported a fault but the handler recorded none")
}

/// Reads one byte at `addr`, or returns the fault that reading it raised.
///
/// Any address may be passed: unmapped, non-canonical or protected addresses produce an
/// `Err` (a page fault or general protection fault), never a dead machine.
pub fn read_u8(addr: u64) -> Result<u8, Fault> {
    let mut value = 0u8;
    // SAFETY: the probe routine tolerates any address: a faulting access is caught by the
    // exception handler through the fix-up table and turned into a return value of 1.
    // `value` is a valid local to write the result into.
    let faulted = unsafe { zsos_probe_read_u8(addr as *const u8, &mut value) };
    if faulted == 0 {
        Ok(value)
    } else {
        Err(take_fault())
    }
}

/// Writes one byte at `addr`, or returns the fault that writing it raised.
///
/// # Safety
/// If `addr` is writable, the byte there is overwritten: the caller must own that byte.
pub unsafe fn write_u8(addr: u64, value: u8) -> Result<(), Fault> {
    // SAFETY: faults are caught as for `read_u8`; the caller owns the byte if it is mapped.
    let faulted = unsafe { zsos_probe_write_u8(addr as *mut u8, value) };
    if faulted == 0 {
        Ok(())
    } else {
        Err(take_fault())
    }
}

/// Executes `ud2` and returns the invalid-opcode fault it raised (proves the #UD handler).
pub fn invalid_opcode() -> Result<(), Fault> {
    // SAFETY: the routine's only effect is the #UD, which the handler resumes from.
    let faulted = unsafe { zsos_probe_ud2() };
    if faulted == 0 {
        Ok(())
    } else {
        Err(take_fault())
    }
}
