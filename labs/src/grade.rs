//! The grader: boots the test kernel once per lab (plus once after each test that ends the
//! machine), runs that lab's graded tests with a fresh nonce, and scores them with the points
//! the kernel's test tables give them. A result line counts only if it carries the nonce.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use boot::image::Firmware;
use boot::ktest::{Outcome, Planned, TestResult};
use boot::qemu::Machine;

/// `cargo grade`'s usage.
pub const USAGE: &str = "\
usage: cargo grade [LAB...] [FILTER [--exact]] [--list] [--json FILE] [--classroom FILE]
  LAB               lab1 (or 1), ...; every lab if none is given
  FILTER            only the graded tests whose names contain FILTER (with --exact: the
                    test named FILTER)
  --list            list the graded tests with their points, and stop
  --json FILE       also write the scores, per test, to FILE
  --classroom FILE  write a GitHub Classroom workflow grading the LABs (one step per test,
                    worth its points) to FILE, and stop
Exit status: 0 only at full marks; 1 below; 2 for a bad command line.";

/// What `cargo grade` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The labs to grade, in order.
    pub labs: Vec<u8>,
    /// Only tests whose names contain this.
    pub filter: Option<String>,
    /// The filter is a whole name.
    pub exact: bool,
    /// Write a GitHub Classroom workflow here instead of grading.
    pub classroom: Option<std::path::PathBuf>,
    /// List instead of grading.
    pub list: bool,
    /// Where to write the JSON scores.
    pub json: Option<std::path::PathBuf>,
}

impl Args {
    /// Parses the command line; `Ok(None)` for `--help`.
    pub fn parse(args: &[String]) -> Result<Option<Args>, String> {
        let mut out = Args {
            labs: Vec::new(),
            filter: None,
            exact: false,
            classroom: None,
            list: false,
            json: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--list" => out.list = true,
                "--exact" => out.exact = true,
                "--classroom" => {
                    out.classroom = Some(it.next().ok_or("--classroom needs a FILE")?.into())
                }
                "--json" => out.json = Some(it.next().ok_or("--json needs a FILE")?.into()),
                "-h" | "--help" => return Ok(None),
                flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
                lab if lab.trim_start_matches("lab").parse::<u8>().is_ok() => {
                    let n: u8 = lab.trim_start_matches("lab").parse().unwrap_or(0);
                    if crate::title(n).is_none() {
                        let known: Vec<String> = crate::LABS
                            .iter()
                            .map(|l| format!("lab{}", l.number))
                            .collect();
                        return Err(format!(
                            "there is no lab {n}; the labs are {}",
                            known.join(", ")
                        ));
                    }
                    if !out.labs.contains(&n) {
                        out.labs.push(n);
                    }
                }
                filter if out.filter.is_none() => out.filter = Some(filter.to_string()),
                extra => return Err(format!("unexpected argument `{extra}`")),
            }
        }
        if out.exact && out.filter.is_none() {
            return Err("--exact needs a FILTER (a test's name)".into());
        }
        if out.labs.is_empty() {
            out.labs = crate::LABS.iter().map(|l| l.number).collect();
        }
        Ok(Some(out))
    }
}

/// Points earned and possible over `grades`.
pub fn total(grades: &[LabGrade]) -> (u32, u32) {
    (
        grades.iter().map(LabGrade::score).sum(),
        grades.iter().map(LabGrade::max).sum(),
    )
}

/// Full marks: every point earned, and there were points to earn (a run that graded nothing
/// is not a pass).
pub fn full_marks(grades: &[LabGrade]) -> bool {
    let (score, max) = total(grades);
    score == max && max > 0 && grades.iter().all(|g| g.problems.is_empty())
}

/// The machine every lab is graded on: UEFI, 2 CPUs, and a timeout that turns a hung test
/// into a failed one quickly.
pub fn grading_machine() -> Machine {
    Machine {
        firmware: Firmware::Uefi,
        timeout: Duration::from_secs(120),
        ..Machine::default()
    }
}

/// One graded test's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Graded {
    /// The kernel's name for it.
    pub name: String,
    /// Points it is worth.
    pub max_points: u16,
    /// Whether it passed (with the nonce).
    pub passed: bool,
    /// How long it ran, as the kernel measured (0 if it never finished).
    pub seconds: f64,
    /// Its serial output (why it failed), if it failed.
    pub output: String,
}

impl Graded {
    /// Points earned.
    pub fn points(&self) -> u16 {
        if self.passed { self.max_points } else { 0 }
    }
}

/// One lab's grade.
#[derive(Debug, Clone, PartialEq)]
pub struct LabGrade {
    /// The lab's number.
    pub lab: u8,
    /// Its tests, in the kernel's order.
    pub tests: Vec<Graded>,
    /// What went wrong outside any test (a boot that never reached the tests, ...).
    pub problems: Vec<String>,
}

impl LabGrade {
    /// Points earned.
    pub fn score(&self) -> u32 {
        self.tests.iter().map(|t| u32::from(t.points())).sum()
    }

    /// Points possible.
    pub fn max(&self) -> u32 {
        self.tests.iter().map(|t| u32::from(t.max_points)).sum()
    }
}

/// Scores a lab from what the kernel planned (with points) and what it reported; a planned
/// test that never reported a result (the machine died before) scores nothing.
pub fn score(
    lab: u8,
    planned: &[Planned],
    results: &[TestResult],
    problems: &[String],
) -> LabGrade {
    let tests = planned
        .iter()
        .filter(|p| p.lab == lab)
        .map(|p| {
            let result = results.iter().find(|r| r.name == p.name);
            Graded {
                name: p.name.clone(),
                max_points: p.points,
                passed: result.is_some_and(|r| r.outcome == Outcome::Passed),
                seconds: result.map_or(0.0, |r| r.micros as f64 / 1e6),
                output: match result {
                    Some(r) if r.outcome == Outcome::Passed => String::new(),
                    Some(r) => r.output.clone(),
                    None => "the test never reported a result".into(),
                },
            }
        })
        .collect();
    LabGrade {
        lab,
        tests,
        problems: problems.to_vec(),
    }
}

/// A fresh token for one grading run (from the OS's random source).
pub fn fresh_nonce() -> String {
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        // No /dev/urandom: the time and the process id still make it unguessable enough
        // for its purpose (a line printed by the code under test cannot know it).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (t ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Boots the test kernel with lab `lab`'s graded tests (those matching `filter`, if any: a
/// substring, or the whole name if its flag is set) and scores them. `on_line` sees the whole console.
pub fn run_lab(
    machine: &Machine,
    lab: u8,
    filter: Option<(&str, bool)>,
    nonce: &str,
    on_line: &mut dyn FnMut(&str),
) -> io::Result<LabGrade> {
    let mut args = Vec::new();
    if let Some((f, exact)) = filter {
        args.push(f.to_string());
        if exact {
            args.push("--exact".into());
        }
    }
    args.extend([
        "--lab".into(),
        lab.to_string(),
        "--nonce".into(),
        nonce.into(),
    ]);
    let report = boot::ktest::run_suite(machine, &args, on_line)?;
    Ok(score(
        lab,
        &report.planned,
        &report.results,
        &report.problems,
    ))
}

/// A test's name as a file name.
fn file_name(test: &str) -> String {
    test.replace("::", "__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Writes each failed test's serial output to `dir/<test>.log`; returns the files.
pub fn save_failure_logs(grade: &LabGrade, dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut saved = Vec::new();
    for t in grade.tests.iter().filter(|t| !t.passed) {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.log", file_name(&t.name)));
        std::fs::write(&path, format!("{}\n", t.output))?;
        saved.push((t.name.clone(), path));
    }
    Ok(saved)
}

/// The lines printed for one lab: one per test, then the lab's subtotal.
pub fn render(grade: &LabGrade, logs: &[(String, PathBuf)]) -> String {
    let mut out = String::new();
    let title = crate::title(grade.lab).unwrap_or("(untitled)");
    let _ = writeln!(out, "== Lab {}: {title}", grade.lab);
    let width = grade.tests.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in &grade.tests {
        let _ = writeln!(
            out,
            "{:<width$} ... {} ({}/{} points, {:.3} s)",
            t.name,
            if t.passed { "OK" } else { "FAIL" },
            t.points(),
            t.max_points,
            t.seconds
        );
        if !t.passed {
            if let Some((_, log)) = logs.iter().find(|(n, _)| *n == t.name) {
                let _ = writeln!(out, "    serial log: {}", log.display());
            }
            let _ = writeln!(
                out,
                "    rerun: cargo grade lab{} --exact {}   (its console: cargo ktest --exact {})",
                grade.lab, t.name, t.name
            );
        }
    }
    for p in &grade.problems {
        let _ = writeln!(out, "    problem: {}", p.replace('\n', "\n    "));
    }
    if grade.tests.is_empty() {
        let _ = writeln!(out, "    no graded tests matched");
    }
    let _ = writeln!(
        out,
        "Lab {} score: {}/{}",
        grade.lab,
        grade.score(),
        grade.max()
    );
    out
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::new();
    boot::bench::json_string(&mut out, s);
    out
}

/// The `--json` file: total and per-lab scores, and each test's points.
pub fn to_json(grades: &[LabGrade]) -> String {
    let (score, max) = total(grades);
    let mut out = format!(
        "{{\n  \"zsos_grade\": 1,\n  \"score\": {score},\n  \"max\": {max},\n  \"labs\": ["
    );
    for (i, g) in grades.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n    {{\"lab\": {}, \"title\": {}, \"score\": {}, \"max\": {}, \"tests\": [",
            if i > 0 { "," } else { "" },
            g.lab,
            json_string(crate::title(g.lab).unwrap_or("")),
            g.score(),
            g.max()
        );
        for (j, t) in g.tests.iter().enumerate() {
            let _ = write!(
                out,
                "{}\n      {{\"name\": {}, \"points\": {}, \"max_points\": {}, \"passed\": {}, \"seconds\": {:.3}}}",
                if j > 0 { "," } else { "" },
                json_string(&t.name),
                t.points(),
                t.max_points,
                t.passed,
                t.seconds
            );
        }
        out.push_str(if g.tests.is_empty() { "]}" } else { "\n    ]}" });
    }
    out.push_str(if grades.is_empty() {
        "]\n}\n"
    } else {
        "\n  ]\n}\n"
    });
    out
}

/// A GitHub Classroom workflow (`.github/workflows/classroom.yml` of an assignment's template
/// repository) grading the graded tests of `labs` among `planned`: after setting up and
/// building the grader once, one autograding step per test (`cargo grade labN --exact NAME`,
/// worth the test's points; Classroom steps are all or nothing, so a lab earns partial
/// credit test by test), then the reporter that sums them.
pub fn classroom_workflow(planned: &[Planned], labs: &[u8]) -> String {
    let mut out = String::from(
        "# GitHub Classroom autograding for zsos's labs, written by `cargo grade --classroom FILE`\n\
         # from the points in the kernel's test tables: one step per graded test. Put it at\n\
         # .github/workflows/classroom.yml in the assignment's template repository\n\
         # (docs/labs/README.md).\n\
         name: Autograding Tests\n\
         'on':\n  - push\n  - repository_dispatch\n\
         permissions:\n  checks: write\n  actions: read\n  contents: read\n\
         jobs:\n  run-autograding-tests:\n    runs-on: ubuntu-latest\n\
         \x20   if: github.actor != 'github-classroom[bot]'\n\
         \x20   steps:\n\
         \x20     - name: Checkout code\n        uses: actions/checkout@v4\n\
         \x20     - name: Set up (QEMU, OVMF, the pinned toolchain) and build the grader\n\
         \x20       run: scripts/setup && cargo build -p labs --features grader\n",
    );
    let mut ids = Vec::new();
    for &lab in labs {
        for (i, p) in planned.iter().filter(|p| p.lab == lab).enumerate() {
            let id = format!("lab{lab}-{}", i + 1);
            let name = format!("lab{lab} {}", p.name);
            let _ = write!(
                out,
                "      - name: {name}\n        id: {id}\n        \
                 uses: classroom-resources/autograding-command-grader@v1\n        with:\n          \
                 test-name: {name}\n          setup-command: ''\n          \
                 command: cargo grade lab{lab} --exact {}\n          timeout: 10\n          \
                 max-score: {}\n",
                p.name, p.points
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
