//! The grader: boots the test kernel once per lab (plus once after each test that ends the
//! machine), runs that lab's graded tests with a fresh nonce, and scores them with the points
//! the kernel's test tables give them. A result line counts only if it carries the nonce.
//!
//! Run in a student's tree, it is the student's check. The grade of record is
//! [`crate::trusted`]: run in the instructor's tree on a submission's region bodies.

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
       cargo grade [LAB...] --submission DIR [--json FILE]
       cargo grade [LAB...] --submissions DIR... [--json FILE] [--csv FILE]
  LAB               lab1 (or 1), ...; every lab if none is given (with --submission(s):
                    the lab each submission was exported for)
  FILTER            only the graded tests whose names contain FILTER (with --exact: the
                    test named FILTER)
  --list            list the graded tests with their points, and stop
  --json FILE       also write the scores, per test, to FILE
  --classroom FILE  write a GitHub Classroom workflow grading the LABs (one step per test,
                    worth its points) to FILE, and stop
  --submission DIR  trusted grading, in the instructor's tree: only the bodies of the lab's
                    regions are read from the student tree DIR, put into this tree, built
                    and graded here, hidden tests included; nothing else of DIR counts
  --submissions DIR...
                    trusted grading of a class, one build cache, and a report of region
                    bodies near-identical to the reference solution or to each other
  --csv FILE        with --submissions: the gradebook as CSV (one line per student and lab)
Exit status: 0 only at full marks (with --submissions: when every submission was graded);
1 below; 2 for a bad command line.";

/// What `cargo grade` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The labs to grade, in order (empty with submissions: each submission's own lab).
    pub labs: Vec<u8>,
    /// Only tests whose names contain this.
    pub filter: Option<String>,
    /// The filter is a whole name.
    pub exact: bool,
    /// Write a GitHub Classroom workflow here instead of grading.
    pub classroom: Option<PathBuf>,
    /// List instead of grading.
    pub list: bool,
    /// Where to write the JSON scores.
    pub json: Option<PathBuf>,
    /// Where to write the CSV gradebook (`--submissions`).
    pub csv: Option<PathBuf>,
    /// Student trees to grade trustedly (`--submission DIR`, `--submissions DIR...`).
    pub submissions: Vec<PathBuf>,
    /// `--submissions` (a class) rather than `--submission` (one student).
    pub class: bool,
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
            csv: None,
            submissions: Vec::new(),
            class: false,
        };
        let mut it = args.iter().peekable();
        let mut modes = 0;
        while let Some(a) = it.next() {
            match a.as_str() {
                "--list" => out.list = true,
                "--exact" => out.exact = true,
                "--classroom" => {
                    out.classroom = Some(it.next().ok_or("--classroom needs a FILE")?.into())
                }
                "--json" => out.json = Some(it.next().ok_or("--json needs a FILE")?.into()),
                "--csv" => out.csv = Some(it.next().ok_or("--csv needs a FILE")?.into()),
                "--submission" => {
                    modes += 1;
                    out.submissions
                        .push(it.next().ok_or("--submission needs a DIR")?.into());
                }
                "--submissions" => {
                    modes += 1;
                    out.class = true;
                    while let Some(dir) = it.next_if(|d| !d.starts_with("--")) {
                        out.submissions.push(dir.into());
                    }
                    if out.submissions.is_empty() {
                        return Err("--submissions needs at least one DIR".into());
                    }
                }
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
        if modes > 1 {
            return Err("give one --submission DIR or one --submissions DIR... list".into());
        }
        if !out.submissions.is_empty() {
            if out.filter.is_some() || out.list || out.classroom.is_some() {
                return Err(
                    "trusted grading grades every test of a lab: no FILTER, --list or --classroom with --submission(s)"
                        .into(),
                );
            }
        } else if out.csv.is_some() {
            return Err("--csv is the gradebook of --submissions".into());
        }
        if out.labs.is_empty() && out.submissions.is_empty() {
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
    /// A hidden test (trusted grading only).
    pub hidden: bool,
    /// Whether it passed (with the nonce).
    pub passed: bool,
    /// How long it ran, as the kernel measured (0 if it never finished).
    pub seconds: f64,
    /// Its serial output (why it failed), if it failed.
    pub output: String,
    /// The points the test awarded itself (a continuous score; `None`: all or nothing).
    pub awarded: Option<u16>,
    /// The figures of its award, for a leaderboard (`pages`, `cycles`, `leaderboard`).
    pub figures: Vec<(String, f64)>,
}

/// Serial lines shown under a failed test.
pub const TAIL_LINES: usize = 8;

impl Graded {
    /// Points earned.
    pub fn points(&self) -> u16 {
        match (self.passed, self.awarded) {
            (false, _) => 0,
            (true, Some(awarded)) => awarded.min(self.max_points),
            (true, None) => self.max_points,
        }
    }

    /// Why it failed, from its output: the panic with its message (which may take several
    /// lines), the fault, the missing fault, or how the machine ended. `None` if it passed.
    pub fn reason(&self) -> Option<String> {
        if self.passed {
            return None;
        }
        let lines: Vec<&str> = self.output.lines().collect();
        let starts = ["KERNEL PANIC", "FATAL:", "ktest: expected a "];
        if let Some(i) = lines
            .iter()
            .position(|l| starts.iter().any(|s| l.trim_start().starts_with(s)))
        {
            // A panic message runs on until a line the framework or the fault handler
            // prints (or the end).
            let more = lines[i + 1..]
                .iter()
                .take_while(|l| !l.starts_with("ktest:") && !l.trim().is_empty())
                .take(6);
            let mut why = vec![lines[i].trim()];
            why.extend(more.map(|l| l.trim_end()));
            return Some(why.join("\n"));
        }
        Some(
            lines
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map_or("no output".to_string(), |l| l.trim().to_string()),
        )
    }

    /// The last [`TAIL_LINES`] lines of its output.
    pub fn tail(&self) -> Vec<&str> {
        // A pool's snapshot is for the pictures, not for reading.
        let lines: Vec<&str> = self
            .output
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !l.starts_with("SNAP ") && !l.starts_with("MEMMAP "))
            .collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec()
    }
}

/// One lab's grade.
#[derive(Debug, Clone, PartialEq)]
pub struct LabGrade {
    /// The lab's number.
    pub lab: u8,
    /// Its tests, in the kernel's order.
    pub tests: Vec<Graded>,
    /// What went wrong outside any test (a boot that never reached the tests, a kernel
    /// that did not build, ...): never full marks.
    pub problems: Vec<String>,
    /// What the grader noticed that does not change the score (trusted grading: regions
    /// graded as their stubs, code to look at).
    pub notes: Vec<String>,
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

    /// The lab's leaderboard figure, if a test gave one (lab 7: pages saved against Linux's
    /// rule, weighed by speed): a student's standing beyond full marks.
    pub fn leaderboard(&self) -> Option<f64> {
        self.tests
            .iter()
            .filter(|t| !t.hidden)
            .flat_map(|t| &t.figures)
            .find(|(n, _)| n == "leaderboard")
            .map(|&(_, v)| v)
    }

    /// Points earned and possible in the visible and in the hidden tests.
    pub fn split(&self) -> ((u32, u32), (u32, u32)) {
        let sum = |hidden: bool| {
            let tests = self.tests.iter().filter(|t| t.hidden == hidden);
            (
                tests.clone().map(|t| u32::from(t.points())).sum(),
                tests.map(|t| u32::from(t.max_points)).sum(),
            )
        };
        (sum(false), sum(true))
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
        .filter(|p| p.lab == lab && p.points > 0)
        .map(|p| {
            let result = results.iter().find(|r| r.name == p.name);
            Graded {
                name: p.name.clone(),
                max_points: p.points,
                hidden: p.hidden,
                passed: result.is_some_and(|r| r.outcome == Outcome::Passed),
                seconds: result.map_or(0.0, |r| r.micros as f64 / 1e6),
                output: match result {
                    Some(r) if r.outcome == Outcome::Passed => String::new(),
                    Some(r) => r.output.clone(),
                    None => "the test never reported a result".into(),
                },
                awarded: result.and_then(|r| r.awarded),
                figures: result.map_or_else(Vec::new, |r| r.figures.clone()),
            }
        })
        .collect();
    LabGrade {
        lab,
        tests,
        problems: problems.to_vec(),
        notes: Vec::new(),
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

/// The kernel's command line for grading `labs` (tests matching `filter`, if any: a
/// substring, or the whole name if its flag is set) with `nonce`.
pub fn lab_args(labs: &[u8], filter: Option<(&str, bool)>, nonce: &str) -> Vec<String> {
    let mut args = Vec::new();
    if let Some((f, exact)) = filter {
        args.push(f.to_string());
        if exact {
            args.push("--exact".into());
        }
    }
    let list: Vec<String> = labs.iter().map(u8::to_string).collect();
    args.extend([
        "--lab".into(),
        list.join(","),
        "--nonce".into(),
        nonce.into(),
    ]);
    args
}

/// Boots the test kernel with the graded tests of `labs` (those matching `filter`, if any:
/// a substring, or the whole name if its flag is set), all in one suite (a test that ends
/// the machine costs a boot), and scores each lab. A problem of the suite (a boot that
/// never reached the tests) belongs to every lab. `on_line` sees the whole console.
pub fn run_labs(
    machine: &Machine,
    labs: &[u8],
    filter: Option<(&str, bool)>,
    nonce: &str,
    on_line: &mut dyn FnMut(&str),
) -> io::Result<Vec<LabGrade>> {
    let report = boot::ktest::run_suite(machine, &lab_args(labs, filter, nonce), on_line)?;
    Ok(labs
        .iter()
        .map(|&lab| score(lab, &report.planned, &report.results, &report.problems))
        .collect())
}

/// [`run_labs`] for one lab.
pub fn run_lab(
    machine: &Machine,
    lab: u8,
    filter: Option<(&str, bool)>,
    nonce: &str,
    on_line: &mut dyn FnMut(&str),
) -> io::Result<LabGrade> {
    let mut grades = run_labs(machine, &[lab], filter, nonce, on_line)?;
    Ok(grades.remove(0))
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

/// What was saved of a failed test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFailure {
    /// The test.
    pub test: String,
    /// Its serial output.
    pub log: PathBuf,
    /// The pictures drawn from the pool snapshots and frame censuses it printed (a lab test
    /// about to fail prints its pool: `kernel::pictures::show_if_failing`).
    pub pictures: Vec<PathBuf>,
}

/// Writes each failed test's serial output to `dir/<test>.log`, and draws what it printed
/// of its pool as `dir/<test>.pool-POINT.svg` (and `.memmap-POINT.svg`). A snapshot cut
/// short (the test died while printing it) is skipped; the log still has its lines.
pub fn save_failure_logs(grade: &LabGrade, dir: &Path) -> io::Result<Vec<SavedFailure>> {
    let mut saved = Vec::new();
    for t in grade.tests.iter().filter(|t| !t.passed) {
        std::fs::create_dir_all(dir)?;
        let stem = file_name(&t.name);
        let log = dir.join(format!("{stem}.log"));
        std::fs::write(&log, format!("{}\n", t.output))?;
        let mut pictures = Vec::new();
        for snap in zsmalloc::snapshot::Snapshot::parse(t.output.lines()).unwrap_or_default() {
            let path = dir.join(format!("{stem}.pool-{}.svg", snap.point));
            boot::pictures::draw_pool(&snap, &path)?;
            pictures.push(path);
        }
        for map in zsmalloc::frame_map::FrameMap::parse(t.output.lines()).unwrap_or_default() {
            let path = dir.join(format!("{stem}.memmap-{}.svg", map.point));
            boot::pictures::draw_memmap(&map, &path)?;
            pictures.push(path);
        }
        saved.push(SavedFailure {
            test: t.name.clone(),
            log,
            pictures,
        });
    }
    Ok(saved)
}

/// How the report names the commands that rerun a failed test: in the student's tree, with
/// `cargo grade`; in trusted grading, there is none to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rerun {
    /// `cargo grade labN --exact NAME` and `cargo ktest --exact NAME`.
    Local,
    /// No rerun line (the student reruns the visible tests in their own tree).
    None,
}

/// The lines printed for one lab: one per test (a failed one with why, its last serial
/// lines, its log and how to rerun it), then the lab's subtotal.
pub fn render(grade: &LabGrade, logs: &[SavedFailure], rerun: Rerun) -> String {
    let mut out = String::new();
    let title = crate::title(grade.lab).unwrap_or("(untitled)");
    let _ = writeln!(out, "== Lab {}: {title}", grade.lab);
    let shown = |t: &Graded| {
        if t.hidden {
            format!("{} (hidden)", t.name)
        } else {
            t.name.clone()
        }
    };
    let width = grade
        .tests
        .iter()
        .map(|t| shown(t).len())
        .max()
        .unwrap_or(0);
    for t in &grade.tests {
        let _ = writeln!(
            out,
            "{:<width$} ... {} ({}/{} points, {:.3} s)",
            shown(t),
            if t.passed { "OK" } else { "FAIL" },
            t.points(),
            t.max_points,
            t.seconds
        );
        if !t.figures.is_empty() {
            let figures: Vec<String> = t
                .figures
                .iter()
                .map(|(n, v)| format!("{n} {v:.3}"))
                .collect();
            let _ = writeln!(out, "    figures: {}", figures.join(", "));
        }
        if t.passed {
            continue;
        }
        let why = t.reason().unwrap_or_default();
        if !why.is_empty() {
            let _ = writeln!(out, "    why: {}", why.replace('\n', "\n         "));
        }
        let tail = t.tail();
        // The tail says more only if it holds lines besides the reason.
        let said: Vec<&str> = why.lines().map(str::trim).collect();
        if tail.iter().any(|l| !said.contains(&l.trim())) {
            let _ = writeln!(out, "    last serial lines:");
            for l in tail {
                let _ = writeln!(out, "    | {l}");
            }
        }
        if let Some(saved) = logs.iter().find(|f| f.test == t.name) {
            let _ = writeln!(out, "    serial log: {}", saved.log.display());
            for p in &saved.pictures {
                let _ = writeln!(out, "    picture: {}", p.display());
            }
        }
        if rerun == Rerun::Local {
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
    for n in &grade.notes {
        let _ = writeln!(out, "    note: {}", n.replace('\n', "\n    "));
    }
    if grade.tests.is_empty() {
        let _ = writeln!(out, "    no graded tests matched");
    }
    let ((vs, vm), (hs, hm)) = grade.split();
    if hm > 0 {
        let _ = writeln!(
            out,
            "Lab {} score: {}/{} (visible {vs}/{vm}, hidden {hs}/{hm})",
            grade.lab,
            grade.score(),
            grade.max()
        );
    } else {
        let _ = writeln!(
            out,
            "Lab {} score: {}/{}",
            grade.lab,
            grade.score(),
            grade.max()
        );
    }
    out
}

/// `s` as a JSON string.
pub fn json_string(s: &str) -> String {
    let mut out = String::new();
    boot::bench::json_string(&mut out, s);
    out
}

/// A finite number as JSON (`null` otherwise).
fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "null".into()
    }
}

/// One lab's grade as a JSON object (the tests with their points, and for a failed test
/// why and its last serial lines).
pub fn lab_json(g: &LabGrade) -> String {
    let mut out = format!(
        "{{\"lab\": {}, \"title\": {}, \"score\": {}, \"max\": {}, \"tests\": [",
        g.lab,
        json_string(crate::title(g.lab).unwrap_or("")),
        g.score(),
        g.max()
    );
    for (j, t) in g.tests.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n      {{\"name\": {}, \"points\": {}, \"max_points\": {}, \"passed\": {}, \"seconds\": {:.3}",
            if j > 0 { "," } else { "" },
            json_string(&t.name),
            t.points(),
            t.max_points,
            t.passed,
            t.seconds
        );
        if t.hidden {
            out.push_str(", \"hidden\": true");
        }
        if !t.figures.is_empty() {
            let figures: Vec<String> = t
                .figures
                .iter()
                .map(|(n, v)| format!("{}: {}", json_string(n), json_number(*v)))
                .collect();
            let _ = write!(out, ", \"figures\": {{{}}}", figures.join(", "));
        }
        if let Some(why) = t.reason() {
            let tail: Vec<String> = t.tail().iter().map(|l| json_string(l)).collect();
            let _ = write!(
                out,
                ", \"reason\": {}, \"tail\": [{}]",
                json_string(&why),
                tail.join(", ")
            );
        }
        out.push('}');
    }
    out.push_str(if g.tests.is_empty() { "]" } else { "\n    ]" });
    if let Some(value) = g.leaderboard() {
        let _ = write!(out, ", \"leaderboard\": {}", json_number(value));
    }
    for (key, list) in [("problems", &g.problems), ("notes", &g.notes)] {
        if !list.is_empty() {
            let items: Vec<String> = list.iter().map(|p| json_string(p)).collect();
            let _ = write!(out, ", \"{key}\": [{}]", items.join(", "));
        }
    }
    out.push('}');
    out
}

/// The `--json` file: total and per-lab scores, and each test's points.
pub fn to_json(grades: &[LabGrade]) -> String {
    let (score, max) = total(grades);
    let mut out = format!(
        "{{\n  \"zsos_grade\": 1,\n  \"score\": {score},\n  \"max\": {max},\n  \"labs\": ["
    );
    for (i, g) in grades.iter().enumerate() {
        let _ = write!(out, "{}\n    {}", if i > 0 { "," } else { "" }, lab_json(g));
    }
    out.push_str(if grades.is_empty() {
        "]\n}\n"
    } else {
        "\n  ]\n}\n"
    });
    out
}

/// The Classroom workflow for `labs` from the kernel's listing (`cargo grade --classroom`).
pub fn classroom_workflow(planned: &[Planned], labs: &[u8]) -> String {
    let tests: Vec<crate::tables::TableEntry> = planned
        .iter()
        .map(|p| crate::tables::TableEntry {
            name: p.name.clone(),
            lab: p.lab,
            points: p.points,
            hidden: p.hidden,
            line: 0,
        })
        .collect();
    crate::classroom::workflow(&tests, labs)
}
