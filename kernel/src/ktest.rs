//! The in-kernel test framework: a registry of tests, a runner for mode `test`, and the
//! serial protocol the host harness parses (documented in `docs/protocol.md`).
//!
//! A test is a plain `fn()` that panics to fail. Tests are registered per module with the
//! [`ktests!`](crate::ktests) macro and listed in [`SUITES`]. A test may instead declare that
//! it *expects* a CPU fault ([`Expect::Fault`]); it then passes only if that fault happens,
//! which ends the machine, so such tests run after all others and the host starts a new
//! boot to resume after them (`--after NAME`). Faults that a test provokes on purpose but
//! wants to survive go through [`crate::arch::probe`] instead.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::arch::idt::{Fault, FaultKind};
use crate::arch::qemu::{self, ExitCode};
use crate::arch::tsc;
use crate::println;

/// Every test suite of the kernel, in the order they run.
pub static SUITES: &[&[Test]] = &[
    crate::args::ktests::TESTS,
    crate::arch::ktests::TESTS,
    crate::ktest::ktests::TESTS,
    crate::mm::ktests::TESTS,
    crate::zs_backend::ktests::TESTS,
    crate::zram::ktests::TESTS,
    crate::concurrency::ktests::TESTS,
];

/// One registered test.
pub struct Test {
    /// `module_path!()` of the module that registered it.
    pub module: &'static str,
    /// The function's name.
    pub func_name: &'static str,
    /// The test body; it fails by panicking.
    pub func: fn(),
    /// What outcome counts as a pass.
    pub expect: Expect,
}

/// What a test must do to pass.
#[derive(Clone, Copy)]
pub enum Expect {
    /// Return normally.
    Pass,
    /// Raise this CPU fault (which ends the machine). If the test called
    /// [`expect_fault_address`] first, the fault must be at that address; if `check` is
    /// given, it must also accept the fault.
    Fault {
        /// The exception that must happen.
        kind: FaultKind,
        /// An extra condition on the fault (e.g. "the handler ran on its IST stack").
        check: Option<fn(&Fault) -> bool>,
    },
}

/// Registers the listed functions of the current module as kernel tests.
///
/// `ktests![a, b, c => Expect::Fault { .. }]` gives a `&[Test]`.
#[macro_export]
macro_rules! ktests {
    ($($func:ident $(=> $expect:expr)?),* $(,)?) => {
        &[$($crate::ktest::Test {
            module: module_path!(),
            func_name: stringify!($func),
            func: $func,
            expect: $crate::ktests!(@expect $($expect)?),
        }),*]
    };
    (@expect) => { $crate::ktest::Expect::Pass };
    (@expect $e:expr) => { $e };
}

/// A test's display name: its module path without the crate and `ktests` segments, then
/// the function, e.g. `arch::probe_read_of_null_page_faults`.
pub struct TestName {
    buf: [u8; 160],
    len: usize,
}

impl TestName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<bad name>")
    }
}

impl Write for TestName {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Test {
    /// The name tests are listed, filtered and reported by.
    pub fn name(&self) -> TestName {
        let mut name = TestName {
            buf: [0; 160],
            len: 0,
        };
        let module = self.module.strip_prefix("kernel").unwrap_or(self.module);
        let module = module.strip_prefix("::").unwrap_or(module);
        let module = module.strip_suffix("ktests").unwrap_or(module);
        let module = module.strip_suffix("::").unwrap_or(module);
        let _ = if module.is_empty() {
            write!(name, "{}", self.func_name)
        } else {
            write!(name, "{}::{}", module, self.func_name)
        };
        name
    }

    fn ends_machine(&self) -> bool {
        !matches!(self.expect, Expect::Pass)
    }
}

/// The test now running (null when none); read by the panic and fault handlers.
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

/// What mode `test` was asked to run.
#[derive(Clone, Copy)]
struct Selection<'a> {
    filter: Option<&'a str>,
    exact: bool,
    after: Option<&'a str>,
    list: bool,
}

impl Selection<'_> {
    fn selects(&self, test: &Test) -> bool {
        let name = test.name();
        match (self.filter, self.exact) {
            (None, _) => true,
            (Some(f), true) => name.as_str() == f,
            (Some(f), false) => name.as_str().contains(f),
        }
    }

    /// The selected tests in run order: tests that end the machine come last.
    fn plan(&self) -> impl Iterator<Item = &'static Test> + '_ {
        let all = || SUITES.iter().flat_map(|suite| suite.iter());
        let ordered = all()
            .filter(|t| !t.ends_machine())
            .chain(all().filter(|t| t.ends_machine()));
        let mut started = self.after.is_none();
        ordered.filter(|t| self.selects(t)).filter(move |t| {
            if started {
                return true;
            }
            if Some(t.name().as_str()) == self.after {
                started = true;
            }
            false
        })
    }
}

const USAGE: &str = "usage: test [FILTER] [--exact] [--after NAME] [--list]";

/// Mode `test`: runs the selected tests and ends the machine with the verdict.
pub fn run_mode(args: &[&str]) -> ExitCode {
    let mut sel = Selection {
        filter: None,
        exact: false,
        after: None,
        list: false,
    };
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        match arg {
            "--exact" => sel.exact = true,
            "--list" => sel.list = true,
            "--after" => match it.next() {
                Some(&name) => sel.after = Some(name),
                None => return usage_error("--after needs a test name"),
            },
            flag if flag.starts_with("--") => return usage_error_arg("unknown option", flag),
            filter if sel.filter.is_none() => sel.filter = Some(filter),
            extra => return usage_error_arg("unexpected argument", extra),
        }
    }
    if let Some(after) = sel.after {
        let known = SUITES
            .iter()
            .flat_map(|s| s.iter())
            .any(|t| t.name().as_str() == after);
        if !known {
            return usage_error_arg("--after names no test", after);
        }
    }
    if sel.list {
        for t in sel.plan() {
            print_listed(t);
        }
        println!("ktest: listed {}", sel.plan().count());
        return ExitCode::Success;
    }

    let total = sel.plan().count();
    REMAINING.store(total, Ordering::SeqCst);
    println!("ktest: plan {total}");
    for t in sel.plan() {
        print_listed(t);
    }
    for test in sel.plan() {
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

fn print_listed(t: &Test) {
    println!(
        "ktest: test {}{}",
        t.name().as_str(),
        if t.ends_machine() {
            " (ends the machine)"
        } else {
            ""
        }
    );
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
            println!("test {} ... ok ({us} us)", name.as_str());
        }
        Expect::Fault { kind, .. } => {
            FAILED.fetch_add(1, Ordering::SeqCst);
            println!("ktest: expected a {kind:?}, but the test returned normally");
            println!("test {} ... FAILED ({us} us)", name.as_str());
        }
    }
}

fn elapsed_us() -> u64 {
    tsc::cycles_to_us(tsc::stop().saturating_sub(CURRENT_START.load(Ordering::SeqCst)))
}

fn current() -> Option<&'static Test> {
    let ptr = CURRENT.load(Ordering::SeqCst);
    // SAFETY: CURRENT only ever holds null or a pointer to a `Test` inside `SUITES`, which
    // are statics.
    unsafe { ptr.as_ref() }
}

/// Called by every fatal exception handler. If no test is running, returns (the handler
/// then reports the fault and fails the machine). If the running test expected this fault,
/// it passes; otherwise it fails. Either way the machine ends here.
pub fn on_fault(fault: &Fault) {
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
        crate::console::emergency_write_fmt(format_args!("ktest: expected fault: {fault}\n"));
        PASSED.fetch_add(1, Ordering::SeqCst);
        println!("test {} ... ok ({us} us)", name.as_str());
    } else {
        crate::console::emergency_write_fmt(format_args!("\nFATAL: {fault}\n"));
        FAILED.fetch_add(1, Ordering::SeqCst);
        println!("test {} ... FAILED ({us} us)", name.as_str());
    }
    end_machine_mid_suite(name.as_str())
}

/// Called by the panic handler (after it printed the message). If a test is running, it
/// fails and the machine ends; otherwise returns.
pub fn on_panic() {
    let Some(test) = current() else { return };
    let name = test.name();
    FAILED.fetch_add(1, Ordering::SeqCst);
    println!("test {} ... FAILED ({} us)", name.as_str(), elapsed_us());
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

/// Tests of the framework's own pure parts.
pub mod ktests {
    use super::*;

    fn names_drop_crate_and_ktests_segments() {
        fn f() {}
        let t = Test {
            module: "kernel::mm::ktests",
            func_name: "f",
            func: f,
            expect: Expect::Pass,
        };
        assert_eq!(t.name().as_str(), "mm::f");
        let t = Test {
            module: "kernel",
            func_name: "g",
            func: f,
            expect: Expect::Pass,
        };
        assert_eq!(t.name().as_str(), "g");
    }

    fn plan_puts_machine_ending_tests_last_and_resumes_after_a_name() {
        let sel = Selection {
            filter: None,
            exact: false,
            after: None,
            list: false,
        };
        let mut seen_ending = false;
        for t in sel.plan() {
            assert!(
                !(seen_ending && !t.ends_machine()),
                "a normal test runs after a machine-ending one"
            );
            seen_ending |= t.ends_machine();
        }
        let first = sel.plan().next().expect("at least one test");
        let second = sel.plan().nth(1).expect("at least two tests");
        let first_name = first.name();
        let resumed = Selection {
            after: Some(first_name.as_str()),
            ..sel
        };
        assert_eq!(
            resumed
                .plan()
                .next()
                .map(|t| t.name().as_str() == second.name().as_str()),
            Some(true)
        );
        assert_eq!(resumed.plan().count() + 1, sel.plan().count());
    }

    /// The tests of this module.
    pub const TESTS: &[Test] = crate::ktests![
        names_drop_crate_and_ktests_segments,
        plan_puts_machine_ending_tests_last_and_resumes_after_a_name,
    ];
}
