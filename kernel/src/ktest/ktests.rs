//! Tests of the framework's own pure parts.

use alloc::vec::Vec;

use super::runner::{Selection, all_tests};
use super::{MODULES, Test};

fn names_drop_crate_and_ktests_segments() {
    let t = Test {
        module: "kernel::mm::ktests",
        func_name: "f",
        ..Test::DEFAULT
    };
    assert_eq!(t.name().as_str(), "mm::f");
    let t = Test {
        module: "kernel",
        func_name: "g",
        ..Test::DEFAULT
    };
    assert_eq!(t.name().as_str(), "g");
    let t = Test {
        module: "kernel::zs_backend::class_ktests",
        func_name: "h",
        ..Test::DEFAULT
    };
    assert_eq!(t.name().as_str(), "zs_backend::class::h");
}

fn every_module_registers_and_the_order_is_fixed() {
    let all = all_tests();
    // The registry sees the tables of modules all over the kernel (this one included),
    // not just one: the linker gathered them.
    let modules: Vec<&str> = MODULES.iter().map(|m| m.path).collect();
    for wanted in [
        "kernel::arch",
        "kernel::mm",
        "kernel::ktest",
        "kernel::zs_backend",
    ] {
        assert!(
            modules.iter().any(|p| p.starts_with(wanted)),
            "no test module under {wanted} registered: {modules:?}"
        );
    }
    assert_eq!(
        all.len(),
        MODULES.iter().map(|m| m.tests.len()).sum::<usize>()
    );
    let again = all_tests();
    assert!(
        all.iter().zip(&again).all(|(a, b)| core::ptr::eq(*a, *b)),
        "the run order is the same every time"
    );
}

fn plan_puts_machine_ending_tests_last_and_resumes_after_a_name() {
    let all = all_tests();
    let sel = Selection::ALL;
    let plan = sel.plan(&all);
    let mut seen_ending = false;
    for t in &plan {
        assert!(
            !(seen_ending && !t.ends_machine()),
            "a normal test runs after a machine-ending one"
        );
        seen_ending |= t.ends_machine();
    }
    let first_name = plan[0].name();
    let resumed = Selection {
        after: Some(first_name.as_str()),
        ..sel
    };
    let rest = resumed.plan(&all);
    assert!(core::ptr::eq(rest[0], plan[1]));
    assert_eq!(rest.len() + 1, plan.len());
}

fn min_cpus_selects_the_tests_written_for_that_many() {
    let all = all_tests();
    let sel = Selection {
        min_cpus: 4,
        ..Selection::ALL
    };
    let wide = sel.plan(&all);
    assert!(!wide.is_empty(), "some tests are written for 4 CPUs");
    assert!(wide.iter().all(|t| t.cpus >= 4));
    assert!(wide.len() < all.len());
}

crate::ktests! {
    names_drop_crate_and_ktests_segments,
    every_module_registers_and_the_order_is_fixed,
    plan_puts_machine_ending_tests_last_and_resumes_after_a_name,
    min_cpus_selects_the_tests_written_for_that_many,
}
