//! The in-kernel test framework, built only into the test kernel (cargo feature `ktest`):
//! a registry that every module's tests join where they are written, a runner for mode
//! `test`, and the serial protocol the host harness parses (`docs/protocol.md`).
//!
//! A test is a plain `fn()` that panics to fail. A module registers its tests with one
//! [`ktests!`](crate::ktests) table, which may give each test metadata:
//!
//! ```ignore
//! crate::ktests! {
//!     breakpoint_handler_returns,
//!     workers_share_one_pool { cpus: 4 },
//!     freeing_merges_buddies { lab: 1, points: 20 },
//!     stack_overflow_is_caught { expect: Expect::Fault { kind: FaultKind::DoubleFault, check: None } },
//! }
//! ```
//!
//! The table becomes one element of the linker-gathered slice [`MODULES`] (`linkme`), so
//! the framework names no subsystem and adding tests never means editing it. A test may
//! *expect* a CPU fault ([`Expect::Fault`]); it then passes only if that fault happens,
//! which ends the machine, so such tests run after all others and the host starts a new boot
//! to resume after them (`--after NAME`). Faults that a test provokes on purpose but wants to
//! survive go through [`crate::arch::probe`] instead.

mod runner;

mod ktests;

use core::fmt::{self, Write};

pub use linkme;
use linkme::distributed_slice;
pub use runner::{award, expect_fault_address, run_mode, seed};

use crate::arch::idt::{Fault, FaultKind};

/// Every module's test table, gathered by the linker.
#[distributed_slice]
pub static MODULES: [Module];

/// One module's tests, in the order its table lists them.
pub struct Module {
    /// `module_path!()` of the module that registered them.
    pub path: &'static str,
    /// The tests.
    pub tests: &'static [Test],
}

/// One registered test and what the runner and the host need to know about it.
pub struct Test {
    /// `module_path!()` of the module that registered it.
    pub module: &'static str,
    /// The function's name.
    pub func_name: &'static str,
    /// The test body; it fails by panicking.
    pub func: fn(),
    /// What outcome counts as a pass.
    pub expect: Expect,
    /// The most CPUs the test is written to use: besides the suite's own machine, the host
    /// runs it on a machine with this many CPUs (mode `test --min-cpus N` selects these).
    /// 0: the suite's machine is enough.
    pub cpus: u8,
    /// The course lab this test grades (`docs/labs/`; lab 0 is the set-up lab), if it has
    /// points.
    pub lab: u8,
    /// What passing it is worth in that lab; 0 for a test that grades no lab.
    pub points: u16,
    /// A hidden test of its lab: kept out of student trees (it must sit in a staff-only
    /// file or region; the exporter refuses otherwise) and run only by trusted grading, so
    /// that a solution tuned to the visible tests is caught.
    pub hidden: bool,
}

impl Test {
    /// The defaults a [`ktests!`](crate::ktests) table fills in for what a test leaves out.
    pub const DEFAULT: Test = Test {
        module: "",
        func_name: "",
        func: never_run,
        expect: Expect::Pass,
        cpus: 0,
        lab: 0,
        points: 0,
        hidden: false,
    };
}

/// Stands in for the body in [`Test::DEFAULT`]; every registered test has its own.
fn never_run() {
    unreachable!("Test::DEFAULT's body is always replaced");
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

/// Registers the current module's tests: a comma-separated table of test functions, each
/// optionally followed by `{ field: value, ... }` setting [`Test`] fields (`expect`,
/// `cpus`, `lab`, `points` and `hidden`). One table per module; it is also the points table of the
/// labs its tests grade.
#[macro_export]
macro_rules! ktests {
    ($($func:ident $({ $($field:ident : $value:expr),* $(,)? })?),* $(,)?) => {
        #[$crate::ktest::linkme::distributed_slice($crate::ktest::MODULES)]
        #[linkme(crate = $crate::ktest::linkme)]
        static KTEST_MODULE: $crate::ktest::Module = $crate::ktest::Module {
            path: module_path!(),
            tests: &[$($crate::ktest::Test {
                module: module_path!(),
                func_name: stringify!($func),
                func: $func,
                $($($field: $value,)*)?
                ..$crate::ktest::Test::DEFAULT
            }),*],
        };
    };
}

/// A test's display name: its module path without the crate and `ktests` segments (a
/// `b_ktests` module counts as `b`), then the function, e.g.
/// `arch::probe_read_of_null_page_faults`.
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
        // `a::ktests` names its tests `a::...`; `a::b_ktests` (tests of `a`'s part `b`, in
        // a file of their own) names them `a::b::...`.
        let module = module.strip_suffix("ktests").unwrap_or(module);
        let module = module.strip_suffix("::").unwrap_or(module);
        let module = module.strip_suffix('_').unwrap_or(module);
        let _ = if module.is_empty() {
            write!(name, "{}", self.func_name)
        } else {
            write!(name, "{}::{}", module, self.func_name)
        };
        name
    }

    /// Whether the test ends the machine when it passes (it expects a fault).
    pub fn ends_machine(&self) -> bool {
        !matches!(self.expect, Expect::Pass)
    }
}
