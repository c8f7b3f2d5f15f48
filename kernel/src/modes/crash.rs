//! Mode `crash`: ends the machine in a chosen failure so that users (and the host tests) can
//! see each diagnostic and check that it fails the run.

use crate::arch::qemu::ExitCode;
use crate::println;

/// Provokes the failure named by the first argument.
pub fn run(rest: &[&str]) -> ExitCode {
    match rest {
        ["panic"] => panic!("crash requested from the command line"),
        ["page-fault"] => {
            // SAFETY: deliberately invalid: page 0 is never mapped, so this read faults and
            // the page-fault handler ends the machine; nothing is ever read.
            let v = unsafe { core::ptr::read_volatile(0x18 as *const u64) };
            println!("zsos: read {v:#x} from page 0, which should have faulted");
            ExitCode::Failure
        }
        ["gp"] => {
            // SAFETY: deliberately invalid: a non-canonical address raises #GP before any
            // memory is touched; the handler ends the machine.
            let v = unsafe { core::ptr::read_volatile(0x8000_0000_0000_0000 as *const u64) };
            println!("zsos: read {v:#x} from a non-canonical address, which should have faulted");
            ExitCode::Failure
        }
        ["ud"] => {
            // SAFETY: `ud2` raises #UD; the handler ends the machine, nothing else happens.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
            ExitCode::Failure
        }
        ["ap-panic"] => on_cpu_1("ap-panic", &|| {
            panic!("crash requested on an application processor");
        }),
        ["ap-stack-overflow"] => on_cpu_1("ap-stack-overflow", &|| {
            let depth = recurse(0);
            println!("zsos: recursed {depth} deep without overflowing the stack");
        }),
        _ => {
            println!("zsos: error: usage: crash panic|page-fault|gp|ud|ap-panic|ap-stack-overflow");
            ExitCode::Failure
        }
    }
}

/// Recurses until the stack runs out (each frame keeps a page of its own alive).
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 512];
    core::hint::black_box(&frame);
    if depth == u64::MAX {
        return depth;
    }
    recurse(depth + 1) + core::hint::black_box(frame[7])
}

/// Runs `crash` on CPU 1 while the other CPUs wait: the failure it provokes ends the machine.
fn on_cpu_1(kind: &str, crash: &(dyn Fn() + Sync)) -> ExitCode {
    if crate::arch::smp::cpus_up() < 2 {
        println!("zsos: error: crash {kind} needs two CPUs or more (--smp 2)");
        return ExitCode::Failure;
    }
    crate::arch::smp::run_on_all_cpus(&|cpu| {
        if cpu == 1 {
            crash();
        }
        loop {
            core::hint::spin_loop();
        }
    });
    ExitCode::Failure
}
