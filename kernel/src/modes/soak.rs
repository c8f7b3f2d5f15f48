//! Mode `soak [N] [--seed S] [--policy P]`: N random pool operations (default 1,000,000) on
//! every CPU that is up, on a pool of policy P (default: the default policy), with compaction,
//! page migration and ranges emptied under the objects, every object checked byte for byte
//! (`crate::soak`).

use crate::arch::qemu::ExitCode;
use crate::println;

/// Runs the mode.
pub fn run(rest: &[&str]) -> ExitCode {
    let (mut ops, mut seed) = (1_000_000u64, 0x50a4u64);
    let mut policy = zsmalloc::Policy::default();
    let mut it = rest.iter();
    while let Some(&arg) = it.next() {
        let parsed = match arg {
            "--seed" => it.next().and_then(|s| s.parse().ok()).map(|s| seed = s),
            "--policy" => it
                .next()
                .and_then(|p| zsmalloc::Policy::parse(p).ok())
                .map(|p| policy = p),
            n => n
                .replace('_', "")
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .map(|n| ops = n),
        };
        if parsed.is_none() {
            println!("zsos: error: usage: soak [OPERATIONS] [--seed N] [--policy P] (got '{arg}')");
            return ExitCode::Failure;
        }
    }
    println!(
        "zsos: soak: {ops} operations on {} CPU(s), seed {seed}, policy {}",
        crate::arch::smp::cpus_up(),
        policy.name()
    );
    match crate::soak::run(ops, seed, true, policy) {
        Ok(r) => {
            println!("zsos: soak: {r}");
            ExitCode::Success
        }
        Err(e) => {
            println!("zsos: error: soak: {e}");
            ExitCode::Failure
        }
    }
}
