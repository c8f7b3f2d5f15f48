//! Mode `soak [N] [--seed S] [--policy P] [--snapshots]`: N random pool operations (default 1,000,000) on
//! every CPU that is up, on a pool of policy P (default: the default policy), with compaction,
//! page migration and ranges emptied under the objects, every object checked byte for byte
//! (`crate::soak`).

use crate::arch::qemu::ExitCode;
use crate::println;

/// Runs the mode.
pub fn run(rest: &[&str]) -> ExitCode {
    let zsmalloc::soak_args::SoakArgs {
        ops,
        seed,
        policy,
        snapshots,
    } = match zsmalloc::soak_args::SoakArgs::parse(rest.iter().copied()) {
        Ok(args) => args,
        Err(e) => {
            println!("zsos: error: {e}");
            return ExitCode::Failure;
        }
    };
    println!(
        "zsos: soak: {ops} operations on {} CPU(s), seed {seed}, policy {}",
        crate::arch::smp::cpus_up(),
        policy.name()
    );
    // With `--snapshots`: the pool at the end, and again after a last compaction.
    let pictures = |pool: &crate::zs_backend::MovablePool| {
        crate::pictures::print(pool, "end");
        let freed = pool.compact();
        println!("zsos: soak: a last compaction freed {freed} pages");
        crate::pictures::print(pool, "compacted");
    };
    let at_end: Option<&dyn Fn(&crate::zs_backend::MovablePool)> =
        if snapshots { Some(&pictures) } else { None };
    match crate::soak::run(ops, seed, true, policy, at_end) {
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
