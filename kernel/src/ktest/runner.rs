//! Mode `test`: selects registered tests, runs them in a fixed order, prints the protocol
//! lines, and turns a panic or a fault during a test into that test's result.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use super::{Expect, MODULES, Test};
use crate::arch::idt::Fault;
use crate::arch::qemu::{self, ExitCode};
use crate::arch::tsc;
use crate::println;

/// The test now running (null when none); read by the panic and fault hooks.
static CURRENT: AtomicPtr<Test> = AtomicPtr::new(core::ptr::null_mut());
static CURRENT_START: AtomicU64 = AtomicU64::new(0);
/// Address the running test said its expected fault must hit (`u64::MAX`: any).
static EXPECTED_ADDRESS: AtomicU64 = AtomicU64::new(u64::MAX);
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);
/// Planned tests that have not started yet.
static REMAINING: AtomicUsize = AtomicUsize::new(0);

/// Narrows the running test's expected fault to one address. Call right before the access
/// that must fault.
pub fn expect_fault_address(addr: u64) {
    EXPECTED_ADDRESS.store(addr, Ordering::SeqCst);
}

/// Every registered test in run order: modules by path, each module's tests in table order;
/// tests that end the machine after all the others.
pub(super) fn all_tests() -> Vec<&'static Test> {
    let mut modules: Vec<&'static super::Module> = MODULES.iter().collect();
    modules.sort_by_key(|m| m.path);
    let tests = || modules.iter().flat_map(|m| m.tests.iter());
    tests()
        .filter(|t| !t.ends_machine())
        .chain(tests().filter(|t| t.ends_machine()))
        .collect()
}

/// What mode `test` was asked to run.
#[derive(Clone, Copy)]
pub(super) struct Selection<'a> {
    pub(super) filter: Option<&'a str>,
    pub(super) exact: bool,
    pub(super) after: Option<&'a str>,
    pub(super) list: bool,
    pub(super) min_cpus: u8,
    /// Only the tests of these labs (a comma-separated list of lab numbers, checked when
    /// parsed).
    pub(super) labs: Option<&'a str>,
    /// The seed of the randomised tests, if given.
    pub(super) seed: Option<u64>,
}

impl Selection<'_> {
    /// Every test, in plan order.
    pub(super) const ALL: Selection<'static> = Selection {
        filter: None,
        exact: false,
        after: None,
        list: false,
        min_cpus: 0,
        labs: None,
        seed: None,
    };

    fn selects(&self, test: &Test) -> bool {
        let name = test.name();
        let by_name = match (self.filter, self.exact) {
            (None, _) => true,
            (Some(f), true) => name.as_str() == f,
            (Some(f), false) => name.as_str().contains(f),
        };
        // A test grades a lab when it has points (lab 0 is a lab too).
        let in_labs = self.labs.is_none_or(|labs| {
            test.points > 0
                && labs
                    .split(',')
                    .any(|n| n.parse::<u8>().is_ok_and(|n| n == test.lab))
        });
        by_name && test.cpus >= self.min_cpus && in_labs
    }

    /// The selected tests in run order, starting after `after` if given.
    pub(super) fn plan(&self, all: &[&'static Test]) -> Vec<&'static Test> {
        let mut started = self.after.is_none();
        all.iter()
            .copied()
            .filter(|t| self.selects(t))
            .filter(|t| {
                if started {
                    return true;
                }
                if Some(t.name().as_str()) == self.after {
                    started = true;
                }
                false
            })
            .collect()
    }
}

const USAGE: &str = "usage: test [FILTER] [--exact] [--after NAME] [--min-cpus N] [--lab N[,N...]] \
                     [--nonce TOKEN] [--seed N] [--list]";

/// The grader's token, if it gave one: every result line carries it, so that a line the code
/// under test prints cannot pass for a result.
static NONCE: spin::Once<alloc::string::String> = spin::Once::new();

/// The seed of this run's randomised tests: `--seed N`, else derived from the grader's
/// nonce (fresh at every grading, so nobody can tune to the traces it draws), else from the
/// time stamp counter.
static SEED: spin::Once<u64> = spin::Once::new();

/// The seed of this run's randomised tests (see [`SEED`]); the runner prints it, so any run
/// can be repeated with `--seed`.
pub fn seed() -> u64 {
    *SEED.call_once(tsc::start)
}

/// FNV-1a of a token: the grader's nonce becomes the run's seed.
fn seed_of(token: &str) -> u64 {
    token.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Gives the running test a continuous score instead of all or nothing: `points` of `max`
/// (its table's points), with named figures for a leaderboard (`pages=0.62`). The grader
/// counts the last award of a test that passes, and only an award that carries its nonce,
/// like a result line. Call at most once, at the end of a test.
pub fn award(points: u16, max: u16, figures: &[(&str, f64)]) {
    let mut line = alloc::format!("ktest: award {}/{max}", points.min(max));
    for (name, value) in figures {
        line.push_str(&alloc::format!(" {name}={value:.4}"));
    }
    println!("{line}{}", nonce_suffix());
}

/// ` [TOKEN]` after a result line, or nothing.
fn nonce_suffix() -> alloc::string::String {
    NONCE
        .get()
        .map_or_else(alloc::string::String::new, |n| alloc::format!(" [{n}]"))
}

/// Mode `test`: runs the selected tests and ends the machine with the verdict.
pub fn run_mode(args: &[&str]) -> ExitCode {
    let mut sel = Selection::ALL;
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        match arg {
            "--exact" => sel.exact = true,
            "--list" => sel.list = true,
            "--after" => match it.next() {
                Some(&name) => sel.after = Some(name),
                None => return usage_error("--after needs a test name"),
            },
            "--min-cpus" => match it.next().map(|n| n.parse::<u8>()) {
                Some(Ok(n)) => sel.min_cpus = n,
                _ => return usage_error("--min-cpus needs a number of CPUs"),
            },
            "--lab" => match it.next() {
                Some(&list) if list.split(',').all(|n| n.parse::<u8>().is_ok()) => {
                    sel.labs = Some(list)
                }
                _ => return usage_error("--lab needs lab numbers (0 to 255, comma-separated)"),
            },
            "--nonce" => match it.next() {
                Some(&token) if !token.is_empty() && !token.contains([' ', '[', ']']) => {
                    NONCE.call_once(|| token.into());
                }
                _ => return usage_error("--nonce needs a token without spaces or brackets"),
            },
            "--seed" => match it.next().map(|n| n.parse::<u64>()) {
                Some(Ok(n)) => sel.seed = Some(n),
                _ => return usage_error("--seed needs a number (0 to 2^64-1)"),
            },
            flag if flag.starts_with("--") => return usage_error_arg("unknown option", flag),
            filter if sel.filter.is_none() => sel.filter = Some(filter),
            extra => return usage_error_arg("unexpected argument", extra),
        }
    }
    let all = all_tests();
    if let Some(after) = sel.after
        && !all.iter().any(|t| t.name().as_str() == after)
    {
        return usage_error_arg("--after names no test", after);
    }
    let plan = sel.plan(&all);
    if sel.list {
        for t in &plan {
            print_listed(t);
        }
        println!("ktest: listed {}", plan.len());
        return ExitCode::Success;
    }

    let seed = sel
        .seed
        .or_else(|| NONCE.get().map(|n| seed_of(n)))
        .unwrap_or_else(tsc::start);
    SEED.call_once(|| seed);
    println!("ktest: seed {seed} (repeat with --seed {seed})");
    crate::arch::idt::set_fatal_hook(on_fault);
    crate::arch::panic::set_panic_hook(on_panic);
    REMAINING.store(plan.len(), Ordering::SeqCst);
    println!("ktest: plan {}", plan.len());
    for t in &plan {
        print_listed(t);
    }
    for test in plan {
        REMAINING.fetch_sub(1, Ordering::SeqCst);
        run_one(test);
    }
    let (passed, failed) = (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst));
    println!("{passed} passed, {failed} failed");
    println!("ktest: complete");
    if failed == 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    }
}

/// `ktest: test NAME`, with what the host needs to know about the test in parentheses.
fn print_listed(t: &Test) {
    let ends = if t.ends_machine() {
        " (ends the machine)"
    } else {
        ""
    };
    let cpus = if t.cpus > 0 {
        alloc::format!(" (cpus {})", t.cpus)
    } else {
        alloc::string::String::new()
    };
    let lab = if t.points > 0 {
        let hidden = if t.hidden { ", hidden" } else { "" };
        alloc::format!(" (lab {}, {} points{hidden})", t.lab, t.points)
    } else {
        alloc::string::String::new()
    };
    println!("ktest: test {}{ends}{cpus}{lab}", t.name().as_str());
}

fn usage_error(msg: &str) -> ExitCode {
    println!("ktest: error: {msg}\n{USAGE}");
    ExitCode::Failure
}

fn usage_error_arg(msg: &str, arg: &str) -> ExitCode {
    println!("ktest: error: {msg}: '{arg}'\n{USAGE}");
    ExitCode::Failure
}

fn run_one(test: &'static Test) {
    let name = test.name();
    println!("ktest: start {}", name.as_str());
    EXPECTED_ADDRESS.store(u64::MAX, Ordering::SeqCst);
    CURRENT_START.store(tsc::start(), Ordering::SeqCst);
    CURRENT.store(test as *const Test as *mut Test, Ordering::SeqCst);
    (test.func)();
    CURRENT.store(core::ptr::null_mut(), Ordering::SeqCst);
    let us = elapsed_us();
    match test.expect {
        Expect::Pass => {
            PASSED.fetch_add(1, Ordering::SeqCst);
            println!("test {} ... ok ({us} us){}", name.as_str(), nonce_suffix());
        }
        Expect::Fault { kind, .. } => {
            FAILED.fetch_add(1, Ordering::SeqCst);
            println!("ktest: expected a {kind:?}, but the test returned normally");
            println!(
                "test {} ... FAILED ({us} us){}",
                name.as_str(),
                nonce_suffix()
            );
        }
    }
}

fn elapsed_us() -> u64 {
    tsc::cycles_to_us(tsc::stop().saturating_sub(CURRENT_START.load(Ordering::SeqCst)))
}

fn current() -> Option<&'static Test> {
    let ptr = CURRENT.load(Ordering::SeqCst);
    // SAFETY: CURRENT only ever holds null or a pointer to a `Test` in a registered module's
    // table, which is a static.
    unsafe { ptr.as_ref() }
}

/// The fault hook while tests run: if no test is running, returns (the handler then reports
/// the fault and fails the machine). If the running test expected this fault, it passes;
/// otherwise it fails. Either way the machine ends here.
fn on_fault(fault: &Fault) {
    let Some(test) = current() else { return };
    let name = test.name();
    let us = elapsed_us();
    let expected = match test.expect {
        Expect::Fault { kind, check } => {
            let want_addr = EXPECTED_ADDRESS.load(Ordering::SeqCst);
            kind == fault.kind
                && (want_addr == u64::MAX || fault.address == Some(want_addr))
                && check.is_none_or(|c| c(fault))
        }
        Expect::Pass => false,
    };
    if expected {
        crate::console::fault_path_write_fmt(format_args!("ktest: expected fault: {fault}\n"));
        PASSED.fetch_add(1, Ordering::SeqCst);
        println!("test {} ... ok ({us} us){}", name.as_str(), nonce_suffix());
    } else {
        crate::console::emergency_write_fmt(format_args!("\nFATAL: {fault}\n"));
        FAILED.fetch_add(1, Ordering::SeqCst);
        println!(
            "test {} ... FAILED ({us} us){}",
            name.as_str(),
            nonce_suffix()
        );
    }
    end_machine_mid_suite(name.as_str())
}

/// The panic hook while tests run (called after the panic message is printed): if a test is
/// running, it fails and the machine ends; otherwise returns.
fn on_panic() {
    let Some(test) = current() else { return };
    let name = test.name();
    FAILED.fetch_add(1, Ordering::SeqCst);
    println!(
        "test {} ... FAILED ({} us){}",
        name.as_str(),
        elapsed_us(),
        nonce_suffix()
    );
    end_machine_mid_suite(name.as_str())
}

/// The running test ended the machine: say where to resume and give this boot's verdict.
fn end_machine_mid_suite(name: &str) -> ! {
    CURRENT.store(core::ptr::null_mut(), Ordering::SeqCst);
    let remaining = REMAINING.load(Ordering::SeqCst);
    if remaining > 0 {
        println!("ktest: resume-after {name} ({remaining} not run in this boot)");
    }
    let (passed, failed) = (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst));
    println!("{passed} passed, {failed} failed");
    if remaining == 0 {
        println!("ktest: complete");
    }
    qemu::exit(if failed == 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
