//! Boots the kernel's own test suite under QEMU (UEFI) and reports every kernel test as its
//! own cargo test case, named as the kernel names it, so that `cargo test` lists them and a
//! failure names the kernel test and shows its serial output.
//!
//! The whole suite runs in as few boots as possible (one, plus one after each test that
//! ends the machine); libtest-mimic then reports the results. A filter given to cargo test
//! is passed on to the kernel, so `cargo test --test kernel_suite arch::` boots only those.
//!
//! The suite boots with two CPUs (the runner's default); the concurrent tests
//! (`concurrency::`) run a second time on four CPUs, reported as `at_smp_4::concurrency::...`.

use libtest_mimic::{Arguments, Failed, Trial};
use zsos_tests::suite_machine;

/// Prefix of the trials of the four-CPU run.
const SMP4: &str = "at_smp_4::";
/// The kernel tests that run again on four CPUs.
const CONCURRENT: &str = "concurrency::";

fn main() {
    let args = Arguments::from_args();
    let machine = suite_machine();
    let mut test_args = Vec::new();
    if let Some(filter) = &args.filter {
        test_args.push(filter.clone());
        if args.exact {
            test_args.push("--exact".into());
        }
    }

    // The four-CPU run, if the filter can match its trials.
    let smp4 = match &args.filter {
        None => true,
        Some(f) if args.exact => f.starts_with(SMP4),
        Some(f) => format!("{SMP4}{CONCURRENT}").contains(f.as_str()) || f.contains(CONCURRENT),
    };
    let smp4_machine = boot::qemu::Machine {
        smp: 4,
        ..machine.clone()
    };
    let smp4_args = vec![CONCURRENT.to_string()];
    let mut trials = if args.list {
        list_trials(&machine, &test_args, "")
    } else {
        suite_trials(&machine, &test_args, "")
    };
    if smp4 {
        trials.extend(if args.list {
            list_trials(&smp4_machine, &smp4_args, SMP4)
        } else {
            suite_trials(&smp4_machine, &smp4_args, SMP4)
        });
    }
    libtest_mimic::run(&args, trials).exit();
}

fn list_trials(machine: &boot::qemu::Machine, test_args: &[String], prefix: &str) -> Vec<Trial> {
    match boot::ktest::list(machine, test_args) {
        Ok(names) => names
            .into_iter()
            .map(|n| Trial::test(format!("{prefix}{n}"), || Ok(())))
            .collect(),
        Err(e) => vec![Trial::test(
            format!("{prefix}kernel_suite::list"),
            move || Err(Failed::from(e.to_string())),
        )],
    }
}

fn suite_trials(machine: &boot::qemu::Machine, test_args: &[String], prefix: &str) -> Vec<Trial> {
    let report = match boot::ktest::run_suite(machine, test_args, &mut |_| {}) {
        Ok(report) => report,
        Err(e) => {
            let msg = format!("could not boot the kernel test suite: {e}");
            return vec![Trial::test(
                format!("{prefix}kernel_suite::boot"),
                move || Err(Failed::from(msg)),
            )];
        }
    };
    let mut trials: Vec<Trial> = report
        .results
        .iter()
        .map(|r| {
            let result = r.clone();
            Trial::test(format!("{prefix}{}", r.name), move || {
                match result.outcome {
                    boot::ktest::Outcome::Passed => Ok(()),
                    boot::ktest::Outcome::Failed => Err(Failed::from(format!(
                        "kernel test failed; its serial output:\n{}",
                        result.output
                    ))),
                }
            })
        })
        .collect();
    if !report.problems.is_empty() {
        let msg = report.problems.join("\n");
        trials.push(Trial::test(
            format!("{prefix}kernel_suite::harness"),
            move || Err(Failed::from(msg)),
        ));
    }
    trials
}
