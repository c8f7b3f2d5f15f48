//! The GitHub Classroom workflow of a student tree (`.github/workflows/classroom.yml`): after
//! setting up and building the grader once, one autograding step per graded test
//! (`cargo grade labN --exact NAME`, worth the test's points: Classroom steps are all or
//! nothing, so a lab earns partial credit test by test), then the reporter that sums them.
//!
//! Classroom's grade is feedback in the student's own repository, which the student
//! controls; the grade of record is trusted grading (`cargo grade --submission`).

use std::fmt::Write as _;

use crate::tables::TableEntry;

/// The setup step's command.
pub const SETUP_COMMAND: &str = "scripts/setup && cargo build -q -p labs --features grader";

/// Minutes Classroom gives one graded step (a boot and a test take well under one).
pub const STEP_TIMEOUT_MINUTES: u32 = 10;

/// The step id of the `i`-th (from 1) graded test of lab `lab`: letters, digits and
/// underscores only, since the reporter reads `<ID>_RESULTS` from the environment.
pub fn step_id(lab: u8, i: usize) -> String {
    format!("lab{lab}_test{i}")
}

/// The workflow grading the visible graded tests of `labs` among `tests`.
pub fn workflow(tests: &[TableEntry], labs: &[u8]) -> String {
    let mut out = String::from(
        "# GitHub Classroom autograding for zsos's labs, written by the lab exporter from the\n\
         # points in the kernel's test tables: one step per graded test. Feedback only: the\n\
         # grade of record is the instructor's trusted grading (docs/labs/README.md).\n\
         name: Autograding Tests\n\
         'on':\n  - push\n  - repository_dispatch\n\
         permissions:\n  checks: write\n  actions: read\n  contents: read\n\
         jobs:\n  run-autograding-tests:\n    runs-on: ubuntu-latest\n\
         \x20   if: github.actor != 'github-classroom[bot]'\n\
         \x20   steps:\n\
         \x20     - name: Checkout code\n        uses: actions/checkout@v4\n\
         \x20     - name: Set up (QEMU, OVMF, the pinned toolchain) and build the grader\n",
    );
    let _ = writeln!(out, "        run: {SETUP_COMMAND}");
    let mut ids = Vec::new();
    for &lab in labs {
        let graded = tests
            .iter()
            .filter(|t| t.lab == lab && t.points > 0 && !t.hidden);
        for (i, t) in graded.enumerate() {
            let id = step_id(lab, i + 1);
            let name = format!("lab{lab} {}", t.name);
            let _ = write!(
                out,
                "      - name: {name}\n        id: {id}\n        \
                 uses: classroom-resources/autograding-command-grader@v1\n        with:\n          \
                 test-name: {name}\n          setup-command: ''\n          \
                 command: cargo grade lab{lab} --exact {}\n          timeout: {STEP_TIMEOUT_MINUTES}\n          \
                 max-score: {}\n",
                t.name, t.points
            );
            ids.push(id);
        }
    }
    out.push_str(
        "      - name: Autograding Reporter\n        \
         uses: classroom-resources/autograding-grading-reporter@v1\n        env:\n",
    );
    for id in &ids {
        let _ = writeln!(
            out,
            "          {}_RESULTS: \"${{{{steps.{id}.outputs.result}}}}\"",
            id.to_uppercase()
        );
    }
    let _ = writeln!(out, "        with:\n          runners: {}", ids.join(","));
    out
}
