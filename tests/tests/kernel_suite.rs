//! Boots the kernel's own test suite under QEMU (UEFI) and reports every kernel test as its
//! own cargo test case, named as the kernel names it, so that `cargo test` lists them and a
//! failure names the kernel test and shows its serial output.
//!
//! The whole suite runs in as few boots as possible (one, plus one after each test that
//! ends the machine); libtest-mimic then reports the results. A filter given to cargo test
//! is passed on to the kernel, so `cargo test --test kernel_suite arch::` boots only those.

use libtest_mimic::{Arguments, Failed, Trial};
use zsos_tests::suite_machine;

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

    let trials = if args.list {
        match boot::ktest::list(&machine, &test_args) {
            Ok(names) => names
                .into_iter()
                .map(|n| Trial::test(n, || Ok(())))
                .collect(),
            Err(e) => vec![Trial::test("kernel_suite::list", move || {
                Err(Failed::from(e.to_string()))
            })],
        }
    } else {
        suite_trials(&machine, &test_args)
    };
    libtest_mimic::run(&args, trials).exit();
}

fn suite_trials(machine: &boot::qemu::Machine, test_args: &[String]) -> Vec<Trial> {
    let report = match boot::ktest::run_suite(machine, test_args, &mut |_| {}) {
        Ok(report) => report,
        Err(e) => {
            let msg = format!("could not boot the kernel test suite: {e}");
            return vec![Trial::test("kernel_suite::boot", move || {
                Err(Failed::from(msg))
            })];
        }
    };
    let mut trials: Vec<Trial> = report
        .results
        .iter()
        .map(|r| {
            let result = r.clone();
            Trial::test(r.name.clone(), move || match result.outcome {
                boot::ktest::Outcome::Passed => Ok(()),
                boot::ktest::Outcome::Failed => Err(Failed::from(format!(
                    "kernel test failed; its serial output:\n{}",
                    result.output
                ))),
            })
        })
        .collect();
    if !report.problems.is_empty() {
        let msg = report.problems.join("\n");
        trials.push(Trial::test("kernel_suite::harness", move || {
            Err(Failed::from(msg))
        }));
    }
    trials
}
