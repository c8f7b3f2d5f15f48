//! Boots the kernel's own test suite under QEMU (UEFI) and reports every kernel test as its
//! own cargo test case, named as the kernel names it, so that `cargo test` lists them and a
//! failure names the kernel test and shows its serial output.
//!
//! The whole suite runs in as few boots as possible (one, plus one after each test that
//! ends the machine); libtest-mimic then reports the results. A filter given to cargo test
//! is passed on to the kernel, so `cargo test --test kernel_suite arch::` boots only those.
//!
//! The suite boots with two CPUs (the runner's default). A test that declares it is written
//! for more CPUs (`cpus: 4` in its module's `ktests!` table, shown in the kernel's plan as
//! `(cpus 4)`) runs again on a machine that size, reported as `at_smp_4::NAME`. That machine
//! starts as soon as the first boot has printed its plan and runs beside the two-CPU one
//! (whose second CPU is idle but for the concurrent tests).
//!
//! The whole suite also runs in memdesc mode, on machines of its own beside those (the
//! kernel option `--memdesc`: 8-byte frame descriptors, zsdescs allocated apart), two CPUs
//! and, for the tests written for more, four, reported as `memdesc::NAME` and `memdesc::at_smp_4::NAME`. A filter that
//! starts with `memdesc::` runs only there; any other filter runs in both modes.

use std::collections::BTreeSet;

use boot::ktest::{Line, parse_line};
use boot::qemu::Machine;
use libtest_mimic::{Arguments, Failed, Trial};
use zsos_tests::suite_machine;

/// `at_smp_N::`, the prefix of the trials of the run on N CPUs.
fn prefix(cpus: u8) -> String {
    format!("at_smp_{cpus}::")
}

/// The prefix of the trials run in memdesc mode.
const MEMDESC: &str = "memdesc::";

/// Splits a cargo test filter into the CPU count it names (`at_smp_N::...`) and the part
/// the kernel understands.
fn split_filter(filter: &str) -> (Option<u8>, &str) {
    if let Some(rest) = filter.strip_prefix("at_smp_")
        && let Some((n, name)) = rest.split_once("::")
        && let Ok(n) = n.parse()
    {
        return (Some(n), name);
    }
    (None, filter)
}

fn main() {
    let args = Arguments::from_args();
    let (memdesc_only, filter) = match args.filter.as_deref().map(|f| f.strip_prefix(MEMDESC)) {
        Some(Some(rest)) => (true, Some(rest.to_string())),
        _ => (false, args.filter.clone()),
    };
    let mut trials = Vec::new();
    let memdesc = std::thread::scope(|scope| {
        // Memdesc mode boots beside the default mode's machines (the list needs one listing).
        let memdesc = (!args.list).then(|| {
            let (args, filter) = (&args, filter.clone());
            scope.spawn(move || {
                let machine = Machine {
                    memdesc: true,
                    ..suite_machine()
                };
                mode_trials(args, filter, machine, MEMDESC)
            })
        });
        if !memdesc_only || args.list {
            trials.extend(mode_trials(&args, filter.clone(), suite_machine(), ""));
        }
        memdesc.map(|run| run.join().expect("the memdesc run finished"))
    });
    if args.list {
        let listed: Vec<Trial> = trials
            .iter()
            .map(|t| Trial::test(format!("{MEMDESC}{}", t.name()), || Ok(())))
            .collect();
        if memdesc_only {
            trials.clear();
        }
        trials.extend(listed);
    }
    trials.extend(memdesc.into_iter().flatten());
    libtest_mimic::run(&args, trials).exit();
}

/// The trials of the suite on `machine` (and, for tests written for more CPUs, on a machine
/// that size), each name prefixed with `mode`.
fn mode_trials(
    args: &Arguments,
    filter: Option<String>,
    machine: Machine,
    mode: &str,
) -> Vec<Trial> {
    let (wide_only, kernel_filter) = match &filter {
        Some(f) => {
            let (cpus, name) = split_filter(f);
            (cpus, Some(name.to_string()))
        }
        None => (None, None),
    };
    let mut test_args = Vec::new();
    if let Some(filter) = kernel_filter.filter(|f| !f.is_empty()) {
        test_args.push(filter);
        if args.exact {
            test_args.push("--exact".into());
        }
    }
    let at = |cpus: u8| Machine {
        smp: u32::from(cpus),
        ..machine.clone()
    };
    let wide_args = |cpus: u8| {
        let mut a = test_args.clone();
        a.extend(["--min-cpus".to_string(), cpus.to_string()]);
        a
    };
    let prefix = |cpus: u8| format!("{mode}{}", prefix(cpus));

    let mut trials = Vec::new();
    if args.list {
        match boot::ktest::list(&machine, &test_args) {
            Ok(planned) => {
                for p in &planned {
                    trials.push(Trial::test(p.name.clone(), || Ok(())));
                }
                for p in planned.iter().filter(|p| u32::from(p.cpus) > machine.smp) {
                    trials.push(Trial::test(format!("{}{}", prefix(p.cpus), p.name), || {
                        Ok(())
                    }));
                }
            }
            Err(e) => trials.push(Trial::test("kernel_suite::list", move || {
                Err(Failed::from(e.to_string()))
            })),
        }
    } else if let Some(cpus) = wide_only {
        trials.extend(suite_trials(
            &at(cpus),
            &wide_args(cpus),
            &prefix(cpus),
            &mut |_| {},
        ));
    } else {
        std::thread::scope(|scope| {
            let mut started = BTreeSet::new();
            let mut wide_runs = Vec::new();
            let mut on_line = |line: &str| {
                if let Line::Listed(boot::ktest::Listed { cpus, .. }) = parse_line(line)
                    && u32::from(cpus) > machine.smp
                    && started.insert(cpus)
                {
                    let (m, a, p) = (at(cpus), wide_args(cpus), prefix(cpus));
                    wide_runs.push(scope.spawn(move || suite_trials(&m, &a, &p, &mut |_| {})));
                }
            };
            let base = suite_trials(&machine, &test_args, mode, &mut on_line);
            trials.extend(base);
            for run in wide_runs {
                trials.extend(run.join().expect("a wide-machine run finished"));
            }
        });
    }
    trials
}

/// Runs the suite on `machine` (showing every console line to `on_line`) and turns each
/// result into a trial named `prefix` + the kernel's name.
fn suite_trials(
    machine: &Machine,
    test_args: &[String],
    prefix: &str,
    on_line: &mut dyn FnMut(&str),
) -> Vec<Trial> {
    let report = match boot::ktest::run_suite(machine, test_args, on_line) {
        Ok(report) => report,
        Err(e) => {
            let msg = format!("could not boot the kernel test suite: {e}");
            let trial = Trial::test(format!("{prefix}kernel_suite::boot"), move || {
                Err(Failed::from(msg))
            });
            return vec![trial];
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
