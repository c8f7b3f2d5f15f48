//! zsos's course labs: the tooling around them (the handouts are in `docs/labs/`).
//!
//! * [`markers`]: the lines that mark a lab's solution (`LAB N: BEGIN` ... `END`) and
//!   staff-only text (`STAFF: BEGIN` ... `END`, `STAFF ONLY`) in the one source tree;
//! * [`export`]: `cargo lab export N DIR` writes the student tree for lab N (no staff text,
//!   no hidden test, no line of the lab's solution: [`leaks`]), with its Classroom workflow
//!   ([`classroom`]); and the tree a trusted grading builds;
//! * [`submission`]: a student tree's region bodies, the only part of it trusted grading
//!   reads; [`similarity`]: how alike two submissions are;
//! * [`tables`]: the kernel's test tables read from the source; [`figures`]: the handouts'
//!   figures, drawn from the code;
//! * `grade` and `trusted` (feature `grader`): `cargo grade` boots the test kernel and scores
//!   a lab's tests; `cargo grade --submission DIR`, in the instructor's tree, is the grade of
//!   record.

pub mod classroom;
pub mod export;
pub mod figures;
#[cfg(feature = "grader")]
pub mod grade;
pub mod leaks;
pub mod markers;
pub mod similarity;
pub mod submission;
pub mod tables;
#[cfg(feature = "grader")]
pub mod trusted;

/// One lab: its number, title and handout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lab {
    /// 0, 1, 2, ...: the `N` of its `// LAB N:` markers and of `lab: N` in test tables.
    pub number: u8,
    /// What students build.
    pub title: &'static str,
    /// Its handout, relative to the tree's root.
    pub handout: &'static str,
}

/// The labs, in order.
pub const LABS: &[Lab] = &[
    Lab {
        number: 0,
        title: "set-up, a kernel test of your own, and a page-table walk",
        handout: "docs/labs/lab0-setup.md",
    },
    Lab {
        number: 1,
        title: "the buddy frame allocator",
        handout: "docs/labs/lab1-buddy.md",
    },
    Lab {
        number: 2,
        title: "the per-CPU two-page PTE window",
        handout: "docs/labs/lab2-window.md",
    },
    Lab {
        number: 3,
        title: "the size-class table",
        handout: "docs/labs/lab3-classes.md",
    },
    Lab {
        number: 4,
        title: "zspages: object locations, the in-place freelist, spanning objects",
        handout: "docs/labs/lab4-zspages.md",
    },
    Lab {
        number: 5,
        title: "handles and mapping: refusing bad handles, sharing mappings, the copy path",
        handout: "docs/labs/lab5-handles.md",
    },
    Lab {
        number: 6,
        title: "compaction and migration: fullness groups, moving objects, valid handles",
        handout: "docs/labs/lab6-compaction.md",
    },
    Lab {
        number: 7,
        title: "placement: a performance challenge against Linux's rule",
        handout: "docs/labs/lab7-placement.md",
    },
];

/// The tree the lab tools were built from: what `cargo lab` exports and `cargo grade` grades.
pub fn tree_root() -> std::path::PathBuf {
    let labs = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    labs.parent().unwrap_or(labs).to_path_buf()
}

/// The title of lab `n`, if there is one.
pub fn title(n: u8) -> Option<&'static str> {
    LABS.iter().find(|l| l.number == n).map(|l| l.title)
}
