//! The host half of the kernel test protocol (`docs/protocol.md`): boots the kernel in mode
//! `test`, follows its serial output test by test, and boots again to resume after any test
//! that ended the machine (a failure, or a test that expects a fault), so that one failing
//! test never hides the others.

use std::io;

use crate::image;
use crate::qemu::{self, Machine};

/// The outcome of one kernel test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel printed `... ok`.
    Passed,
    /// The kernel printed `... FAILED`, or the machine died while the test ran.
    Failed,
}

/// One kernel test's result, with the console lines it printed.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The kernel's name for the test.
    pub name: String,
    /// Passed or failed.
    pub outcome: Outcome,
    /// Duration the kernel measured, in microseconds (0 if it never finished).
    pub micros: u64,
    /// What the console printed while the test ran, and why it failed if the machine died.
    pub output: String,
    /// Points the test awarded itself (`ktest: award P/M ...` with the nonce): a continuous
    /// score instead of all or nothing.
    pub awarded: Option<u16>,
    /// The figures of that award (`name=value`), for a leaderboard.
    pub figures: Vec<(String, f64)>,
}

/// Everything a suite run produced.
#[derive(Debug, Clone, Default)]
pub struct SuiteReport {
    /// Results in the order the tests ran.
    pub results: Vec<TestResult>,
    /// The tests the kernel planned to run (from the first boot).
    pub planned: Vec<Planned>,
    /// How many times QEMU was booted.
    pub boots: usize,
    /// Problems outside any one test (a boot that never reached the tests, a bad filter).
    pub problems: Vec<String>,
}

impl SuiteReport {
    /// True if every planned test passed and nothing else went wrong.
    pub fn all_passed(&self) -> bool {
        self.problems.is_empty()
            && self.results.len() == self.planned.len()
            && self.results.iter().all(|r| r.outcome == Outcome::Passed)
    }

    /// `N passed, N failed` over the whole suite.
    pub fn summary(&self) -> String {
        let passed = self
            .results
            .iter()
            .filter(|r| r.outcome == Outcome::Passed)
            .count();
        format!("{passed} passed, {} failed", self.results.len() - passed)
    }
}

/// A test the kernel listed or planned, with what it declared about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The kernel's name for the test.
    pub name: String,
    /// The most CPUs it is written for (`(cpus N)`); 0 if it did not say.
    pub cpus: u8,
    /// The lab it grades (`(lab L, P points)`; lab 0 is a lab): meaningful only with points.
    pub lab: u8,
    /// Its points in that lab; 0 for a test that grades no lab.
    pub points: u16,
    /// A hidden test (`(lab L, P points, hidden)`): only in the instructor's tree.
    pub hidden: bool,
}

/// What a `ktest: test` line declares about a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed<'a> {
    /// The kernel's name for the test.
    pub name: &'a str,
    /// `(cpus N)`, or 0.
    pub cpus: u8,
    /// `(lab L, P points)`: L, or 0.
    pub lab: u8,
    /// `(lab L, P points)`: P, or 0.
    pub points: u16,
    /// `(lab L, P points, hidden)`.
    pub hidden: bool,
}

impl Listed<'_> {
    /// The owned form.
    pub fn to_planned(&self) -> Planned {
        Planned {
            name: self.name.to_string(),
            cpus: self.cpus,
            lab: self.lab,
            points: self.points,
            hidden: self.hidden,
        }
    }
}

/// What one line of kernel output means to the harness.
#[derive(Debug, PartialEq)]
pub enum Line<'a> {
    /// `ktest: plan N`
    Plan(usize),
    /// `ktest: test NAME[ (ends the machine)][ (cpus N)][ (lab L, P points)]` (the plan, or
    /// mode `test --list`).
    Listed(Listed<'a>),
    /// `ktest: start NAME`
    Start(&'a str),
    /// `test NAME ... ok (N us)` or `... FAILED (N us)`
    Result {
        /// The test's name.
        name: &'a str,
        /// `ok` (true) or `FAILED` (false).
        passed: bool,
        /// The duration the kernel measured.
        micros: u64,
        /// The grader's token after the line (` [TOKEN]`), if any.
        nonce: Option<&'a str>,
    },
    /// `ktest: award P/M [name=value...][ [TOKEN]]`: the running test's continuous score.
    Award {
        /// Points awarded.
        points: u16,
        /// Out of.
        max: u16,
        /// The figures, in order.
        figures: Vec<(&'a str, f64)>,
        /// The grader's token, if any.
        nonce: Option<&'a str>,
    },
    /// `ktest: resume-after NAME (...)`
    ResumeAfter(&'a str),
    /// `ktest: complete`
    Complete,
    /// Anything else.
    Other,
}

/// Classifies one console line.
pub fn parse_line(line: &str) -> Line<'_> {
    if let Some(n) = line.strip_prefix("ktest: plan ") {
        return n.trim().parse().map(Line::Plan).unwrap_or(Line::Other);
    }
    if let Some(rest) = line.strip_prefix("ktest: test ") {
        return parse_listed(rest).map_or(Line::Other, Line::Listed);
    }
    if let Some(name) = line.strip_prefix("ktest: start ") {
        return Line::Start(name);
    }
    if let Some(rest) = line.strip_prefix("ktest: award ") {
        return parse_award(rest).unwrap_or(Line::Other);
    }
    if let Some(rest) = line.strip_prefix("ktest: resume-after ") {
        return Line::ResumeAfter(rest.split(" (").next().unwrap_or(rest));
    }
    if line == "ktest: complete" {
        return Line::Complete;
    }
    if let Some(rest) = line.strip_prefix("test ") {
        for (marker, passed) in [(" ... ok (", true), (" ... FAILED (", false)] {
            if let Some((name, tail)) = rest.split_once(marker)
                && let Some((micros, after)) = tail.split_once(" us)")
                && let Ok(micros) = micros.parse()
            {
                let nonce = match after {
                    "" => None,
                    n => match n.strip_prefix(" [").and_then(|n| n.strip_suffix(']')) {
                        Some(n) => Some(n),
                        None => return Line::Other,
                    },
                };
                return Line::Result {
                    name,
                    passed,
                    micros,
                    nonce,
                };
            }
        }
    }
    Line::Other
}

/// `P/M[ name=value...][ [TOKEN]]`.
fn parse_award(rest: &str) -> Option<Line<'_>> {
    let (rest, nonce) = match rest.rsplit_once(" [") {
        Some((head, n)) => (head, Some(n.strip_suffix(']')?)),
        None => (rest, None),
    };
    let mut words = rest.split(' ');
    let (points, max) = words.next()?.split_once('/')?;
    let figures = words
        .map(|w| {
            let (name, value) = w.split_once('=')?;
            Some((name, value.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Line::Award {
        points: points.parse().ok()?,
        max: max.parse().ok()?,
        figures,
        nonce,
    })
}

/// `NAME[ (ends the machine)][ (cpus N)][ (lab L, P points[, hidden])]`, the marks in that
/// order.
fn parse_listed(rest: &str) -> Option<Listed<'_>> {
    let (mut rest, mut lab, mut points, mut hidden) = (rest, 0, 0, false);
    if let Some((head, mark)) = rest.rsplit_once(" (lab ") {
        let mark = mark.strip_suffix(')')?;
        let mark = match mark.strip_suffix(", hidden") {
            Some(m) => {
                hidden = true;
                m
            }
            None => mark,
        };
        let (l, p) = mark.strip_suffix(" points")?.split_once(", ")?;
        (rest, lab, points) = (head, l.parse().ok()?, p.parse().ok()?);
    }
    let mut cpus = 0;
    if let Some((head, n)) = rest.rsplit_once(" (cpus ") {
        (rest, cpus) = (head, n.strip_suffix(')')?.parse().ok()?);
    }
    let name = rest.strip_suffix(" (ends the machine)").unwrap_or(rest);
    Some(Listed {
        name,
        cpus,
        lab,
        points,
        hidden,
    })
}

/// Lists the kernel's tests (one boot in mode `test --list`).
pub fn list(machine: &Machine, test_args: &[String]) -> io::Result<Vec<Planned>> {
    let mut args = vec!["test".to_string()];
    args.extend(test_args.iter().cloned());
    args.push("--list".into());
    let run = boot(machine, &args, &mut |_| {})?;
    if !run.ending.is_success() {
        return Err(io::Error::other(format!(
            "listing the kernel tests failed: {}\n{}",
            run.ending,
            run.lines.join("\n")
        )));
    }
    let names = run
        .lines
        .iter()
        .filter_map(|l| match parse_line(l) {
            Line::Listed(listed) => Some(listed.to_planned()),
            _ => None,
        })
        .collect();
    Ok(names)
}

fn boot(
    machine: &Machine,
    args: &[String],
    on_line: &mut dyn FnMut(&str),
) -> io::Result<qemu::Run> {
    let ramdisk = image::encode_ramdisk(&machine.kernel_args(args), &[])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
    let img = image::build(machine.kernel_elf(), ramdisk, machine.firmware)?;
    qemu::run(machine, img.path(), on_line)
}

/// Runs the kernel tests selected by `test_args` (`[FILTER] [--exact] ...`), booting as often
/// as needed, and calls `on_line` for every console line. With `--nonce TOKEN` among the
/// arguments, only result lines carrying TOKEN count.
pub fn run_suite(
    machine: &Machine,
    test_args: &[String],
    on_line: &mut dyn FnMut(&str),
) -> io::Result<SuiteReport> {
    let mut report = SuiteReport::default();
    let mut resume_after: Option<String> = None;
    let nonce = test_args
        .iter()
        .position(|a| a == "--nonce")
        .and_then(|i| test_args.get(i + 1))
        .map(String::as_str);
    loop {
        let mut args = vec!["test".to_string()];
        args.extend(test_args.iter().cloned());
        if let Some(name) = &resume_after {
            args.push("--after".into());
            args.push(name.clone());
        }
        report.boots += 1;
        let run = boot(machine, &args, on_line)?;
        let first_result = report.results.len();
        let boot_view = follow(&run, &mut report, nonce);
        if matches!(boot_view, BootEnd::Complete | BootEnd::Resume(_)) {
            let any_failed = report.results[first_result..]
                .iter()
                .any(|r| r.outcome == Outcome::Failed);
            if let Some(problem) = verdict_disagrees(&run.ending, any_failed) {
                report
                    .problems
                    .push(format!("boot {}: {problem}", report.boots));
            }
        }
        match boot_view {
            BootEnd::Complete => break,
            BootEnd::Resume(name) => resume_after = Some(name),
            BootEnd::Died {
                during: Some((name, lines)),
            } => {
                let mut output = lines.join("\n");
                output.push_str(&format!(
                    "\nthe machine ended while this test ran: {}",
                    run.ending
                ));
                report.results.push(TestResult {
                    name: name.clone(),
                    outcome: Outcome::Failed,
                    micros: 0,
                    output,
                    awarded: None,
                    figures: Vec::new(),
                });
                if report.results.len() >= report.planned.len() {
                    break;
                }
                resume_after = Some(name);
            }
            BootEnd::Died { during: None } => {
                report.problems.push(format!(
                    "boot {} ended outside any test: {}\n{}",
                    report.boots,
                    run.ending,
                    tail(&run.lines, 30)
                ));
                break;
            }
        }
        if report.boots > report.planned.len() + 1 {
            report
                .problems
                .push("the suite kept ending the machine without progress; giving up".into());
            break;
        }
    }
    let missing: Vec<&String> = report
        .planned
        .iter()
        .filter(|p| !report.results.iter().any(|r| r.name == p.name))
        .map(|p| &p.name)
        .collect();
    if !missing.is_empty() {
        report
            .problems
            .push(format!("planned tests that never reported: {missing:?}"));
    }
    Ok(report)
}

/// A boot that ended by the protocol (`complete` or `resume-after`) must also end with the
/// kernel's verdict through QEMU's exit device, and the two must agree: failure if a test of
/// this boot failed, success otherwise. Says how they disagree, if they do.
fn verdict_disagrees(ending: &qemu::Ending, any_failed: bool) -> Option<String> {
    let expected = if any_failed {
        qemu::Ending::KernelFailure
    } else {
        qemu::Ending::KernelSuccess
    };
    (*ending != expected).then(|| {
        format!(
            "the console reports {} but the machine ended otherwise: {ending}",
            if any_failed {
                "a failed test"
            } else {
                "every test passed"
            }
        )
    })
}

enum BootEnd {
    Complete,
    Resume(String),
    /// The boot ended without `complete` or `resume-after`; the test that was running (with
    /// its output so far), if any.
    Died {
        during: Option<(String, Vec<String>)>,
    },
}

/// Folds one boot's output into the report.
///
/// With `nonce`, only result lines that carry it are results; others (printed by the code
/// under test, say) are just output.
fn follow(run: &qemu::Run, report: &mut SuiteReport, nonce: Option<&str>) -> BootEnd {
    let mut current: Option<(String, Vec<String>)> = None;
    // The running test's award (points, figures), if it made one with the nonce.
    let mut award: Option<(u16, Vec<(String, f64)>)> = None;
    let mut end = None;
    let first_boot = report.boots == 1;
    for line in &run.lines {
        match parse_line(line) {
            Line::Plan(_) => {}
            Line::Listed(listed) if first_boot && current.is_none() => {
                report.planned.push(listed.to_planned())
            }
            Line::Start(name) => {
                current = Some((name.to_string(), Vec::new()));
                award = None;
            }
            Line::Award {
                points,
                figures,
                nonce: carried,
                ..
            } if carried == nonce && current.is_some() => {
                award = Some((
                    points,
                    figures.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
                ));
                if let Some((_, lines)) = current.as_mut() {
                    lines.push(line.clone());
                }
            }
            Line::Result {
                name,
                passed,
                micros,
                nonce: carried,
            } if carried == nonce => {
                let output = match current.take() {
                    Some((n, lines)) if n == name => lines.join("\n"),
                    _ => String::new(),
                };
                let outcome = if passed {
                    Outcome::Passed
                } else {
                    Outcome::Failed
                };
                let (awarded, figures) = match award.take() {
                    Some((p, f)) => (Some(p), f),
                    None => (None, Vec::new()),
                };
                report.results.push(TestResult {
                    name: name.to_string(),
                    outcome,
                    micros,
                    output,
                    awarded,
                    figures,
                });
            }
            Line::ResumeAfter(name) => end = Some(BootEnd::Resume(name.to_string())),
            Line::Complete => end = Some(BootEnd::Complete),
            Line::Listed(..) | Line::Result { .. } | Line::Award { .. } | Line::Other => {
                if let Some((_, lines)) = current.as_mut() {
                    lines.push(line.clone());
                }
            }
        }
    }
    if let Some(end) = end {
        return end;
    }
    BootEnd::Died { during: current }
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Ending;

    #[test]
    fn parses_every_protocol_line() {
        assert_eq!(parse_line("ktest: plan 12"), Line::Plan(12));
        let listed = |name, cpus, lab, points| {
            Line::Listed(Listed {
                name,
                cpus,
                lab,
                points,
                hidden: false,
            })
        };
        assert_eq!(parse_line("ktest: test a::b"), listed("a::b", 0, 0, 0));
        assert_eq!(
            parse_line("ktest: test a::c (ends the machine)"),
            listed("a::c", 0, 0, 0)
        );
        assert_eq!(
            parse_line("ktest: test a::d (cpus 4)"),
            listed("a::d", 4, 0, 0)
        );
        assert_eq!(
            parse_line("ktest: test a::e (ends the machine) (cpus 8) (lab 2, 15 points)"),
            listed("a::e", 8, 2, 15)
        );
        assert_eq!(
            parse_line("ktest: test a::g (lab 1, 20 points)"),
            listed("a::g", 0, 1, 20)
        );
        assert_eq!(
            parse_line("ktest: test a::h (lab 3, 10 points, hidden)"),
            Line::Listed(Listed {
                name: "a::h",
                cpus: 0,
                lab: 3,
                points: 10,
                hidden: true
            })
        );
        assert_eq!(
            parse_line("ktest: test a::h (lab 3, 10 points, secret)"),
            Line::Other
        );
        assert_eq!(parse_line("ktest: test a::f (cpus x)"), Line::Other);
        assert_eq!(
            parse_line("ktest: test a::f (lab 1, x points)"),
            Line::Other
        );
        assert_eq!(parse_line("ktest: start a::b"), Line::Start("a::b"));
        assert_eq!(
            parse_line("ktest: award 42/60 pages=0.6180 leaderboard=38.2 [k3y]"),
            Line::Award {
                points: 42,
                max: 60,
                figures: vec![("pages", 0.618), ("leaderboard", 38.2)],
                nonce: Some("k3y")
            }
        );
        assert_eq!(
            parse_line("ktest: award 7/10"),
            Line::Award {
                points: 7,
                max: 10,
                figures: vec![],
                nonce: None
            }
        );
        for bad in [
            "ktest: award 7",
            "ktest: award x/10",
            "ktest: award 1/2 pages=x",
        ] {
            assert_eq!(parse_line(bad), Line::Other, "{bad}");
        }
        assert_eq!(
            parse_line("test a::b ... ok (17 us)"),
            Line::Result {
                name: "a::b",
                passed: true,
                micros: 17,
                nonce: None
            }
        );
        assert_eq!(
            parse_line("test a::b ... ok (17 us) [k3y]"),
            Line::Result {
                name: "a::b",
                passed: true,
                micros: 17,
                nonce: Some("k3y")
            }
        );
        assert_eq!(parse_line("test a::b ... ok (17 us) junk"), Line::Other);
        assert_eq!(
            parse_line("test a::b ... FAILED (3 us)"),
            Line::Result {
                name: "a::b",
                passed: false,
                micros: 3,
                nonce: None
            }
        );
        assert_eq!(
            parse_line("ktest: resume-after a::b (4 not run in this boot)"),
            Line::ResumeAfter("a::b")
        );
        assert_eq!(parse_line("ktest: complete"), Line::Complete);
        assert_eq!(parse_line("test a::b ... maybe"), Line::Other);
        assert_eq!(parse_line("hello"), Line::Other);
    }

    fn fake_run(ending: Ending, lines: &[&str]) -> qemu::Run {
        qemu::Run {
            ending,
            lines: lines.iter().map(|s| s.to_string()).collect(),
            wall: Default::default(),
        }
    }

    #[test]
    fn a_test_that_kills_the_machine_fails_with_its_output_and_resumes_after_it() {
        let mut report = SuiteReport {
            boots: 1,
            ..Default::default()
        };
        let run = fake_run(
            Ending::NoVerdict(Some(0)),
            &[
                "ktest: plan 2",
                "ktest: test a",
                "ktest: test b",
                "ktest: start a",
                "oops",
            ],
        );
        match follow(&run, &mut report, None) {
            BootEnd::Died {
                during: Some((name, lines)),
            } => {
                assert_eq!(name, "a");
                assert_eq!(lines, vec!["oops".to_string()]);
            }
            _ => panic!("expected the boot to have died during test a"),
        }
        let names: Vec<&str> = report.planned.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn the_console_and_the_exit_status_must_agree() {
        assert_eq!(verdict_disagrees(&Ending::KernelSuccess, false), None);
        assert_eq!(verdict_disagrees(&Ending::KernelFailure, true), None);
        for (ending, failed) in [
            (Ending::KernelFailure, false),
            (Ending::KernelSuccess, true),
            (Ending::NoVerdict(Some(0)), false),
            (Ending::TimedOut(std::time::Duration::from_secs(1)), false),
        ] {
            let problem = verdict_disagrees(&ending, failed).expect("a disagreement");
            assert!(problem.contains(&ending.to_string()), "{problem}");
        }
    }

    #[test]
    fn results_and_resume_points_are_collected() {
        let mut report = SuiteReport {
            boots: 1,
            ..Default::default()
        };
        let run = fake_run(
            Ending::KernelSuccess,
            &[
                "ktest: plan 2",
                "ktest: test a",
                "ktest: test b",
                "ktest: start a",
                "line from a",
                "test a ... ok (5 us)",
                "ktest: start b",
                "test b ... ok (6 us)",
                "ktest: resume-after b (1 not run in this boot)",
            ],
        );
        assert!(matches!(follow(&run, &mut report, None), BootEnd::Resume(ref n) if n == "b"));
        assert_eq!(report.results.len(), 2);
        assert_eq!(report.results[0].output, "line from a");
        assert_eq!(report.summary(), "2 passed, 0 failed");
    }

    #[test]
    fn with_a_nonce_only_result_lines_carrying_it_count() {
        let mut report = SuiteReport {
            boots: 1,
            ..Default::default()
        };
        let run = fake_run(
            Ending::KernelSuccess,
            &[
                "ktest: plan 1",
                "ktest: test a (lab 1, 10 points)",
                "ktest: start a",
                "test a ... ok (1 us)",
                "test a ... ok (1 us) [guess]",
                "test a ... FAILED (9 us) [n0nce]",
                "ktest: complete",
            ],
        );
        assert!(matches!(
            follow(&run, &mut report, Some("n0nce")),
            BootEnd::Complete
        ));
        assert_eq!(report.results.len(), 1);
        assert_eq!(report.results[0].outcome, Outcome::Failed);
        assert_eq!(
            report.results[0].output, "test a ... ok (1 us)\ntest a ... ok (1 us) [guess]",
            "spoofed lines are only output"
        );
        assert_eq!(report.planned[0].points, 10);
    }

    #[test]
    fn only_a_test_s_own_award_with_the_nonce_counts() {
        let mut report = SuiteReport {
            boots: 1,
            ..Default::default()
        };
        let run = fake_run(
            Ending::KernelSuccess,
            &[
                "ktest: plan 2",
                "ktest: test a (lab 7, 60 points)",
                "ktest: test b (lab 7, 20 points)",
                "ktest: award 60/60 [n0nce]",
                "ktest: start a",
                "ktest: award 60/60 pages=0.1 [guess]",
                "ktest: award 41/60 pages=0.6 [n0nce]",
                "test a ... ok (1 us) [n0nce]",
                "ktest: start b",
                "test b ... ok (1 us) [n0nce]",
                "ktest: complete",
            ],
        );
        assert!(matches!(
            follow(&run, &mut report, Some("n0nce")),
            BootEnd::Complete
        ));
        let [a, b] = &report.results[..] else {
            panic!("{:?}", report.results)
        };
        assert_eq!(
            a.awarded,
            Some(41),
            "the award with the nonce, in its own test"
        );
        assert_eq!(a.figures, [("pages".to_string(), 0.6)]);
        assert_eq!(
            b.awarded, None,
            "an award before any test, or in another test, is not b's"
        );
    }
}
