//! `cargo grade`: in a student's tree, the student's own check of a lab; in the instructor's
//! tree, the grade of record of submissions (`--submission DIR`, `--submissions DIR...`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use labs::grade::{self, Args, LabGrade, Rerun};
use labs::trusted::{self, Trusted, TrustedGrade};
use labs::{export, similarity};

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("cargo grade: error: {msg}\n{}", grade::USAGE);
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = match Args::parse(&raw) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{}", grade::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(msg) => return usage_error(&msg),
    };
    if args.submissions.is_empty() {
        local(&args)
    } else {
        submissions(&args)
    }
}

/// `cargo grade [LAB...]` in this tree.
fn local(args: &Args) -> ExitCode {
    let root = labs::tree_root();
    let student = export::student_tree_lab(&root);
    match export::changed_graded_files(&root) {
        Ok(changed) if changed.is_empty() => {}
        Ok(changed) => {
            eprintln!("cargo grade: the graded test files must be as exported; restore them:");
            for c in changed {
                eprintln!("  {c}");
            }
            println!("Score: 0/0");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("cargo grade: error: cannot read {}: {e}", export::MANIFEST);
            return ExitCode::FAILURE;
        }
    }
    let machine = grade::grading_machine();
    if let Some(file) = &args.classroom {
        let planned = match boot::ktest::list(&machine, &[]) {
            Ok(planned) => planned,
            Err(e) => {
                eprintln!("cargo grade: error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let steps = planned
            .iter()
            .filter(|p| args.labs.contains(&p.lab) && p.points > 0 && !p.hidden)
            .count();
        let written = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(file, grade::classroom_workflow(&planned, &args.labs)));
        return match written {
            Ok(()) => {
                println!(
                    "cargo grade: GitHub Classroom workflow with {steps} graded steps written to {}",
                    file.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cargo grade: error: cannot write {}: {e}", file.display());
                ExitCode::FAILURE
            }
        };
    }
    if args.list {
        return match boot::ktest::list(&machine, &[]) {
            Ok(planned) => {
                for lab in &args.labs {
                    println!("== Lab {lab}: {}", labs::title(*lab).unwrap_or(""));
                    for p in planned.iter().filter(|p| p.lab == *lab && p.points > 0) {
                        if args.filter.as_deref().is_none_or(|f| p.name.contains(f)) {
                            let hidden = if p.hidden { ", hidden" } else { "" };
                            println!("{} ({} points{hidden})", p.name, p.points);
                        }
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cargo grade: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(lab) = student {
        println!(
            "cargo grade: checking this tree (exported for lab {lab}) with its visible tests. \
             This is your check, not your grade: your instructor grades the lab regions you \
             submit in their own tree, with hidden tests as well."
        );
    }
    let nonce = grade::fresh_nonce();
    let started = std::time::Instant::now();
    let filter = args.filter.as_deref().map(|f| (f, args.exact));
    let grades = match grade::run_labs(&machine, &args.labs, filter, &nonce, &mut |_| {}) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("cargo grade: error: cannot boot the kernel: {e}");
            return ExitCode::FAILURE;
        }
    };
    for g in &grades {
        let logs = grade::save_failure_logs(
            g,
            &boot::target_dir()
                .join("grade")
                .join(format!("lab{}", g.lab)),
        )
        .unwrap_or_else(|e| {
            eprintln!("cargo grade: cannot save the failure logs: {e}");
            Vec::new()
        });
        print!("{}", grade::render(g, &logs, Rerun::Local));
    }
    println!("    (graded in {:.1} s)", started.elapsed().as_secs_f64());
    if let Some(file) = &args.json
        && let Err(e) = std::fs::write(file, grade::to_json(&grades))
    {
        eprintln!("cargo grade: error: cannot write {}: {e}", file.display());
    }
    let (score, max) = grade::total(&grades);
    println!("Score: {score}/{max}");
    if grade::full_marks(&grades) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A student's graded labs.
struct Student {
    name: String,
    dir: PathBuf,
    grades: Vec<(TrustedGrade, Vec<String>)>,
    /// Labs that could not be graded at all, with why.
    failures: Vec<String>,
}

/// A pair of region bodies (or one and the reference) that are near-identical.
struct Similar {
    lab: u8,
    a: String,
    b: String,
    score: f64,
}

/// Similarity at or above this is reported.
const NEAR_IDENTICAL: f64 = 0.85;

/// The student's name: the submission directory's own name.
fn student_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canonical.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `--submission DIR` and `--submissions DIR...`: trusted grading in this tree.
fn submissions(args: &Args) -> ExitCode {
    let root = labs::tree_root();
    let work = boot::target_dir().join("grade").join("trusted");
    eprintln!("cargo grade: trusted grading in {}", root.display());
    let grader = match Trusted::new(&root, &work, grade::grading_machine()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("cargo grade: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let nonce = grade::fresh_nonce();
    let mut students = Vec::new();
    for dir in &args.submissions {
        let mut student = Student {
            name: student_name(dir),
            dir: dir.clone(),
            grades: Vec::new(),
            failures: Vec::new(),
        };
        if !dir.is_dir() {
            student
                .failures
                .push(format!("{} is not a directory", dir.display()));
            eprintln!(
                "cargo grade: {}: {} is not a directory",
                student.name,
                dir.display()
            );
            students.push(student);
            continue;
        }
        let labs = if args.labs.is_empty() {
            match export::student_tree_lab(dir) {
                Some(lab) if labs::title(lab).is_some() => vec![lab],
                _ => {
                    let why = format!(
                        "{} does not say which lab it is ({} missing or wrong): name the LAB",
                        dir.display(),
                        export::LAB_FILE
                    );
                    eprintln!("cargo grade: {}: {why}", student.name);
                    student.failures.push(why);
                    students.push(student);
                    continue;
                }
            }
        } else {
            args.labs.clone()
        };
        for lab in labs {
            let started = std::time::Instant::now();
            let graded = match grader.grade(dir, lab, &nonce) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("cargo grade: error: {}: lab {lab}: {e}", student.name);
                    student.failures.push(format!("lab {lab}: {e}"));
                    continue;
                }
            };
            let logs = grade::save_failure_logs(
                &graded.grade,
                &work
                    .join("logs")
                    .join(&student.name)
                    .join(format!("lab{lab}")),
            )
            .unwrap_or_default();
            println!(
                "cargo grade: {} ({}), lab {lab}: trusted grading of {} region bodies",
                student.name,
                dir.display(),
                graded.submission.regions.len()
            );
            print!("{}", grade::render(&graded.grade, &logs, Rerun::None));
            println!(
                "    (lab {lab} graded in {:.1} s)",
                started.elapsed().as_secs_f64()
            );
            let (known, _) = grader.reference(lab).unwrap_or_default();
            let tokens = trusted::submission_tokens(&graded.submission, &known);
            student.grades.push((graded, tokens));
        }
        students.push(student);
    }
    let similar = find_similar(&grader, &students);
    for s in &similar {
        println!(
            "similar: lab {}: {} and {}: {:.2} (near-identical code; read both)",
            s.lab, s.a, s.b, s.score
        );
    }
    if let Some(file) = &args.json
        && let Err(e) = std::fs::write(file, gradebook_json(&students, &similar))
    {
        eprintln!("cargo grade: error: cannot write {}: {e}", file.display());
        return ExitCode::FAILURE;
    }
    if let Some(file) = &args.csv
        && let Err(e) = std::fs::write(file, gradebook_csv(&students))
    {
        eprintln!("cargo grade: error: cannot write {}: {e}", file.display());
        return ExitCode::FAILURE;
    }
    let all: Vec<LabGrade> = students
        .iter()
        .flat_map(|s| s.grades.iter().map(|(g, _)| g.grade.clone()))
        .collect();
    let (score, max) = grade::total(&all);
    println!("Score: {score}/{max}");
    let failed = students.iter().any(|s| !s.failures.is_empty());
    if failed {
        return ExitCode::FAILURE;
    }
    if args.class || grade::full_marks(&all) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Pairs of submissions, and submissions and the reference, whose region bodies of a lab are
/// near-identical (untouched stubs left out).
fn find_similar(grader: &Trusted, students: &[Student]) -> Vec<Similar> {
    let mut out = Vec::new();
    let mut labs: Vec<u8> = students
        .iter()
        .flat_map(|s| s.grades.iter().map(|(g, _)| g.grade.lab))
        .collect();
    labs.sort_unstable();
    labs.dedup();
    for lab in labs {
        let Ok((_, reference)) = grader.reference(lab) else {
            continue;
        };
        let reference = similarity::shingles(&reference);
        let entries: Vec<(&str, std::collections::HashSet<Vec<String>>)> = students
            .iter()
            .flat_map(|s| {
                s.grades
                    .iter()
                    .filter(|(g, _)| g.grade.lab == lab && !g.untouched)
                    .map(|(_, tokens)| (s.name.as_str(), similarity::shingles(tokens)))
            })
            .collect();
        for (i, (a, sa)) in entries.iter().enumerate() {
            let r = similarity::jaccard(sa, &reference);
            if r >= NEAR_IDENTICAL {
                out.push(Similar {
                    lab,
                    a: a.to_string(),
                    b: "the reference solution".into(),
                    score: r,
                });
            }
            for (b, sb) in &entries[i + 1..] {
                let s = similarity::jaccard(sa, sb);
                if s >= NEAR_IDENTICAL {
                    out.push(Similar {
                        lab,
                        a: a.to_string(),
                        b: b.to_string(),
                        score: s,
                    });
                }
            }
        }
    }
    out
}

/// The gradebook as JSON: per student, each lab's grade (as `cargo grade --json` gives it);
/// then the near-identical pairs.
fn gradebook_json(students: &[Student], similar: &[Similar]) -> String {
    let j = grade::json_string;
    let mut out = String::from("{\n  \"zsos_gradebook\": 1,\n  \"submissions\": [");
    for (i, s) in students.iter().enumerate() {
        let grades: Vec<LabGrade> = s.grades.iter().map(|(g, _)| g.grade.clone()).collect();
        let (score, max) = grade::total(&grades);
        let labs: Vec<String> = s
            .grades
            .iter()
            .map(|(g, _)| {
                let mut lab = grade::lab_json(&g.grade);
                lab.pop();
                let ((vs, vm), (hs, hm)) = g.grade.split();
                format!(
                    "{lab}, \"visible\": [{vs}, {vm}], \"hidden\": [{hs}, {hm}], \"regions_read\": {}, \"untouched\": {}}}",
                    g.submission.regions.len(),
                    g.untouched
                )
            })
            .collect();
        let failures: Vec<String> = s.failures.iter().map(|f| j(f)).collect();
        out.push_str(&format!(
            "{}\n    {{\"student\": {}, \"dir\": {}, \"score\": {score}, \"max\": {max}, \"failures\": [{}], \"labs\": [{}]}}",
            if i > 0 { "," } else { "" },
            j(&s.name),
            j(&s.dir.display().to_string()),
            failures.join(", "),
            labs.join(", ")
        ));
    }
    out.push_str("\n  ],\n  \"similar\": [");
    for (i, s) in similar.iter().enumerate() {
        out.push_str(&format!(
            "{}\n    {{\"lab\": {}, \"a\": {}, \"b\": {}, \"similarity\": {:.3}}}",
            if i > 0 { "," } else { "" },
            s.lab,
            j(&s.a),
            j(&s.b),
            s.score
        ));
    }
    out.push_str(if similar.is_empty() {
        "]\n}\n"
    } else {
        "\n  ]\n}\n"
    });
    out
}

/// A CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The gradebook as CSV: one line per student and lab.
fn gradebook_csv(students: &[Student]) -> String {
    let mut out = String::from(
        "student,lab,score,max,visible,visible_max,hidden,hidden_max,failed_tests,notes\n",
    );
    for s in students {
        for f in &s.failures {
            out.push_str(&format!(
                "{},,,,,,,,,{}\n",
                csv_field(&s.name),
                csv_field(f)
            ));
        }
        for (g, _) in &s.grades {
            let g = &g.grade;
            let ((vs, vm), (hs, hm)) = g.split();
            let failed: Vec<&str> = g
                .tests
                .iter()
                .filter(|t| !t.passed)
                .map(|t| t.name.as_str())
                .collect();
            let notes: Vec<&str> = g
                .problems
                .iter()
                .chain(&g.notes)
                .map(String::as_str)
                .collect();
            out.push_str(&format!(
                "{},{},{},{},{vs},{vm},{hs},{hm},{},{}\n",
                csv_field(&s.name),
                g.lab,
                g.score(),
                g.max(),
                csv_field(&failed.join(" ")),
                csv_field(&notes.join(" | "))
            ));
        }
    }
    out
}
