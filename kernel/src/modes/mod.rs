//! The kernel's modes: what it does once booted, chosen by the first argument.

use crate::arch::qemu::ExitCode;
use crate::args::BootArgs;
use crate::println;

mod bench;
mod crash;
mod replay;
mod run;
mod soak;

/// The modes, with a one-line description each (printed on a bad mode).
pub const MODES: &[(&str, &str)] = &[
    ("run", "the default demo"),
    (
        "test",
        "run the in-kernel tests: test [FILTER] [--exact] [--after NAME] [--list]",
    ),
    (
        "bench",
        "run the benchmarks and print BENCH lines: bench [speed|classes|density|scale|memmap|scaling]...",
    ),
    (
        "replay",
        "replay the trace given with the boot image: replay NAME (cargo run -- replay FILE)",
    ),
    (
        "soak",
        "random pool operations on every CPU, with compaction and migration: soak [N] [--seed S]",
    ),
    (
        "crash",
        "end in a chosen failure to show its diagnostic: crash panic|page-fault|gp|ud|ap-panic|ap-stack-overflow",
    ),
];

/// Runs the mode named by the first argument (`run` if there is none).
pub fn dispatch(args: &BootArgs) -> ExitCode {
    let argv = args.as_slice();
    let (mode, rest) = match argv.split_first() {
        Some((mode, rest)) => (*mode, rest),
        None => ("run", &[][..]),
    };
    match mode {
        "run" => run::run(rest),
        #[cfg(feature = "ktest")]
        "test" => crate::ktest::run_mode(rest),
        #[cfg(not(feature = "ktest"))]
        "test" => {
            println!(
                "zsos: error: this kernel was built without its tests; they are in the test \
                 build: `cargo ktest [FILTER]` on the host (or `cargo test --test kernel_suite`)"
            );
            ExitCode::Failure
        }
        "bench" => bench::run(rest),
        "replay" => replay::run(rest, args.payload),
        "soak" => soak::run(rest),
        "crash" => crash::run(rest),
        unknown => {
            println!("zsos: error: unknown mode '{unknown}'. Modes:");
            for (name, what) in MODES {
                println!("  {name:<6} {what}");
            }
            ExitCode::Failure
        }
    }
}

/// Rejects arguments for a mode that takes none.
fn no_args(mode: &str, rest: &[&str]) -> Result<(), ExitCode> {
    match rest.first() {
        None => Ok(()),
        Some(extra) => {
            println!("zsos: error: mode '{mode}' takes no arguments, got '{extra}'");
            Err(ExitCode::Failure)
        }
    }
}
