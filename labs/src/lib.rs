//! zsos's course labs: the tooling around them (the handouts are in `docs/labs/`).
//!
//! * [`markers`]: the `// LAB N: BEGIN` … `// LAB N: END` lines that mark a lab's solution
//!   in the one source tree, and what a student tree gets instead;
//! * [`export`]: `cargo lab export N DIR` writes the student tree for lab N, with a manifest
//!   of the graded test files;
//! * `grade` (feature `grader`): `cargo grade [LAB] [FILTER]` boots the test kernel once per
//!   lab, runs that lab's graded tests with a fresh nonce, and scores them from the points
//!   in the kernel's test tables.

pub mod export;
#[cfg(feature = "grader")]
pub mod grade;
pub mod markers;

/// The labs, by number: title and handout.
pub const LABS: &[(u8, &str, &str)] = &[
    (1, "the buddy frame allocator", "docs/labs/lab1-buddy.md"),
    (
        2,
        "the per-CPU two-page PTE window",
        "docs/labs/lab2-window.md",
    ),
];

/// The title of lab `n`, if there is one.
pub fn title(n: u8) -> Option<&'static str> {
    LABS.iter().find(|l| l.0 == n).map(|l| l.1)
}
