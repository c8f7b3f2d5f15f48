//! Trusted grading, the grade of record: run in the instructor's tree, it reads only the
//! bodies of one lab's regions from a student tree, writes them into a copy of the
//! instructor's tree (hidden tests, grader, trace families and counters all the
//! instructor's), builds that tree's test kernel, boots it with a fresh nonce, and scores the
//! results against the instructor's own kernel's list of tests and points. No code of the
//! student's tree runs on the host: the regions are compiled only into the kernel, which
//! runs under QEMU.
//!
//! What it cannot stop: region code runs in ring 0 beside the tests, so a determined student
//! could search the kernel's memory for the nonce. The grader notes region code that reaches
//! for the test framework, the command line or raw machine code, for the instructor to read.

use std::collections::HashSet;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boot::ktest::{Planned, SuiteReport};
use boot::qemu::Machine;

use crate::export::{self, SourceFile};
use crate::grade::{self, Graded, LabGrade};
use crate::markers::{self, Kind, Syntax};
use crate::similarity;
use crate::submission::{self, Submission};

/// How long a submission's kernel may take to build before it counts as not building.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Region code that reaches past the lab's own subsystem: noted for the instructor to read
/// (it does not change the score).
const REVIEW: &[(&str, &str)] = &[
    ("ktest::", "the test framework's internals"),
    ("linkme", "the linker-gathered test registry"),
    ("distributed_slice", "the linker-gathered test registry"),
    ("NONCE", "the grader's nonce"),
    ("args::", "the kernel's command line"),
    ("asm!", "inline machine code"),
    ("global_asm!", "inline machine code"),
    ("no_mangle", "symbol names"),
    ("link_section", "linker sections"),
    ("include_bytes!", "files read at build time"),
    ("include_str!", "files read at build time"),
    ("include!", "files read at build time"),
    ("env!", "the build's environment"),
    ("#[path", "files outside the region"),
    ("qemu::exit", "ending the machine"),
];

/// A trusted grader over the instructor's tree.
pub struct Trusted {
    root: PathBuf,
    sources: Vec<SourceFile>,
    work: PathBuf,
    machine: Machine,
    /// The instructor's kernel's tests (hidden ones included), from its own listing.
    planned: Vec<Planned>,
}

/// One submission's trusted grade of one lab.
pub struct TrustedGrade {
    /// The grade (problems: what kept it from being graded; notes: regions graded as
    /// stubs, code to review).
    pub grade: LabGrade,
    /// What was read from the submission.
    pub submission: Submission,
    /// Whether every region body is its stub, untouched.
    pub untouched: bool,
}

impl Trusted {
    /// A grader over the instructor's tree at `root`, working under `work` (the grading tree
    /// and its build cache), booting on `machine`. Lists the instructor's kernel's tests
    /// (one boot).
    pub fn new(root: &Path, work: &Path, machine: Machine) -> Result<Trusted, String> {
        if let Some(lab) = export::student_tree_lab(root) {
            return Err(format!(
                "{} is a student tree (exported for lab {lab}); trusted grading runs in the instructor's tree",
                root.display()
            ));
        }
        let sources = match export::scan(root) {
            Ok(Ok(s)) => s,
            Ok(Err(errors)) => {
                let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                return Err(format!(
                    "the instructor's tree has malformed markers:\n  {}",
                    list.join("\n  ")
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", root.display())),
        };
        let planned = boot::ktest::list(&machine, &[])
            .map_err(|e| format!("cannot list the instructor's kernel's tests: {e}"))?;
        Ok(Trusted {
            root: root.to_path_buf(),
            sources,
            work: work.to_path_buf(),
            machine,
            planned,
        })
    }

    /// The instructor's tests of lab `lab`.
    pub fn planned(&self, lab: u8) -> Vec<&Planned> {
        self.planned
            .iter()
            .filter(|p| p.lab == lab && p.points > 0)
            .collect()
    }

    /// Grades lab `lab` of the student tree at `dir`. `Err` only when grading itself could
    /// not run (a disk error); a submission that does not build or boot scores 0 with the
    /// reason in its problems.
    pub fn grade(&self, dir: &Path, lab: u8, nonce: &str) -> Result<TrustedGrade, String> {
        fs::create_dir_all(&self.work).map_err(|e| format!("{}: {e}", self.work.display()))?;
        let lock = fs::File::create(self.work.join("lock"))
            .map_err(|e| format!("{}: {e}", self.work.display()))?;
        // One trusted grading at a time shares the tree and its build cache.
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", self.work.display()))?;

        let sub = submission::read(&self.sources, lab, dir);
        let tree = self.work.join("tree");
        export::write_grading_tree(&self.root, &self.sources, lab, &sub, &tree)
            .map_err(|e| format!("cannot write the grading tree {}: {e}", tree.display()))?;
        let untouched = self.untouched(lab, &sub);
        let mut notes = sub.problems.clone();
        notes.extend(review_notes(&sub));

        let elf = match build_kernel(&tree, &self.work.join("build")) {
            Ok(elf) => elf,
            Err(why) => {
                let grade = self.unrun(lab, "the kernel did not build", vec![why], notes);
                return Ok(TrustedGrade {
                    grade,
                    submission: sub,
                    untouched,
                });
            }
        };
        let machine = Machine {
            kernel: Some(elf),
            ..self.machine.clone()
        };
        let report = match boot::ktest::run_suite(
            &machine,
            &grade::lab_args(&[lab], None, nonce),
            &mut |_| {},
        ) {
            Ok(r) => r,
            Err(e) => {
                let grade = self.unrun(
                    lab,
                    "the kernel could not be booted",
                    vec![e.to_string()],
                    notes,
                );
                return Ok(TrustedGrade {
                    grade,
                    submission: sub,
                    untouched,
                });
            }
        };
        let mut grade = score_against(lab, &self.planned, &report);
        grade.notes.splice(0..0, notes);
        Ok(TrustedGrade {
            grade,
            submission: sub,
            untouched,
        })
    }

    /// A grade of 0 for every test of `lab`, with `why`.
    fn unrun(&self, lab: u8, why: &str, problems: Vec<String>, notes: Vec<String>) -> LabGrade {
        LabGrade {
            lab,
            tests: self
                .planned(lab)
                .into_iter()
                .map(|p| Graded {
                    name: p.name.clone(),
                    max_points: p.points,
                    hidden: p.hidden,
                    passed: false,
                    seconds: 0.0,
                    output: why.to_string(),
                    awarded: None,
                    figures: Vec::new(),
                })
                .collect(),
            problems,
            notes,
        }
    }

    /// Whether every region of `lab` in `sub` is the stub it was handed out with.
    fn untouched(&self, lab: u8, sub: &Submission) -> bool {
        for s in &self.sources {
            for (i, r) in s.regions().iter().enumerate() {
                if r.kind != Kind::Lab(lab) || r.text {
                    continue;
                }
                let Some(body) = sub.body(&s.path, i) else {
                    continue;
                };
                let stub = stub_lines(r);
                let squash = |v: &[String]| {
                    v.iter()
                        .map(|l| l.split_whitespace().collect::<String>())
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                };
                if squash(body) != squash(&stub) {
                    return false;
                }
            }
        }
        true
    }

    /// The names the code around lab `lab`'s regions defines or uses (kept by
    /// [`similarity::normalized`]), and the reference solution's normalized tokens.
    pub fn reference(&self, lab: u8) -> Result<(HashSet<String>, Vec<String>), String> {
        let mut known = HashSet::new();
        let mut reference = Vec::new();
        for s in &self.sources {
            if s.syntax != Some(Syntax::Slash)
                || !s.regions().iter().any(|r| r.kind == Kind::Lab(lab))
            {
                continue;
            }
            let text = fs::read_to_string(self.root.join(&s.path))
                .map_err(|e| format!("{}: {e}", s.path.display()))?;
            known.extend(similarity::identifiers(&markers::export(
                &text,
                Syntax::Slash,
                s.regions(),
                lab,
            )));
            let lines: Vec<&str> = text.lines().collect();
            for r in s
                .regions()
                .iter()
                .filter(|r| r.kind == Kind::Lab(lab) && !r.text)
            {
                reference.extend(similarity::tokens(&r.solution(&lines).join("\n")));
            }
        }
        Ok((known.clone(), similarity::normalized(&reference, &known)))
    }
}

/// The stub a region is handed out with, as lines.
fn stub_lines(r: &markers::Region) -> Vec<String> {
    match (&r.stub, r.kind) {
        (Some(stub), _) => stub.clone(),
        (None, Kind::Lab(n)) => {
            let what = r.description.replace('\\', "\\\\").replace('"', "\\\"");
            vec![format!("{}todo!(\"lab {n}: {what}\")", r.indent)]
        }
        _ => Vec::new(),
    }
}

/// A submission's region bodies, as normalized tokens in the instructor's order.
pub fn submission_tokens(sub: &Submission, known: &HashSet<String>) -> Vec<String> {
    let code: Vec<String> = sub
        .regions
        .iter()
        .flat_map(|(_, _, body)| similarity::tokens(&body.join("\n")))
        .collect();
    similarity::normalized(&code, known)
}

/// Notes on region code that reaches past the lab's subsystem.
fn review_notes(sub: &Submission) -> Vec<String> {
    let mut notes = Vec::new();
    for (file, description, body) in &sub.regions {
        let code: String = body
            .iter()
            .map(|l| {
                let l = l.trim_start();
                if l.starts_with("//") { "" } else { l }
            })
            .collect::<Vec<_>>()
            .join("\n");
        for (needle, what) in REVIEW {
            if code.contains(needle) {
                notes.push(format!(
                    "review: {} region \"{description}\" uses `{needle}` ({what}); read it",
                    file.display()
                ));
            }
        }
    }
    notes
}

/// Scores lab `lab` from a suite run of a submission's kernel against the instructor's
/// tests: a test counts once, only if its one result line carried the nonce; tests the
/// submission's kernel reports that the instructor's does not have score nothing and are
/// noted, and a test reported twice fails.
pub fn score_against(lab: u8, instructor: &[Planned], report: &SuiteReport) -> LabGrade {
    let mut grade = grade::score(lab, instructor, &report.results, &report.problems);
    for t in &mut grade.tests {
        let n = report.results.iter().filter(|r| r.name == t.name).count();
        if n > 1 {
            t.passed = false;
            t.output = format!(
                "the kernel under grading reported this test {n} times (does a region register tests of its own?)"
            );
        }
    }
    let known: HashSet<&str> = instructor.iter().map(|p| p.name.as_str()).collect();
    let foreign: Vec<&str> = report
        .planned
        .iter()
        .map(|p| p.name.as_str())
        .chain(report.results.iter().map(|r| r.name.as_str()))
        .filter(|n| !known.contains(n))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !foreign.is_empty() {
        grade.notes.push(format!(
            "review: the kernel under grading runs tests the instructor's kernel does not have (ignored): {}",
            foreign.join(", ")
        ));
    }
    grade
}

/// Builds the test kernel of the tree at `tree` into `target`; returns its ELF, or the
/// compiler's complaint.
pub fn build_kernel(tree: &Path, target: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args([
            "build",
            "-p",
            "kernel",
            "--features",
            "ktest",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(tree)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let reader_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > BUILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("cannot wait for cargo: {e}")),
        }
    };
    let stdout = reader_out.join().unwrap_or_default();
    let stderr = reader_err.join().unwrap_or_default();
    let Some(status) = status else {
        return Err(format!(
            "the build took longer than {} s and was stopped",
            BUILD_TIMEOUT.as_secs()
        ));
    };
    let elf = stdout
        .lines()
        .filter(|l| l.contains("\"compiler-artifact\"") && l.contains("\"name\":\"kernel\""))
        .find_map(|l| {
            let rest = l.split("\"executable\":\"").nth(1)?;
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        });
    match elf {
        Some(elf) if status.success() => Ok(elf),
        _ => {
            let lines: Vec<&str> = stderr
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    !(t.starts_with("Compiling")
                        || t.starts_with("Blocking")
                        || t.starts_with("Locking"))
                })
                .collect();
            Err(format!(
                "cargo build failed ({status}):\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            ))
        }
    }
}
