//! `cargo lab`: the instructor's side of the labs. `export N DIR` writes the student tree for
//! lab N; `check` checks every marker of the tree and that no lab's student tree would hold
//! its solution; `fill N DIR` writes the reference solution into a student tree's regions.

use std::path::Path;
use std::process::ExitCode;

use labs::export;

const USAGE: &str = "\
usage: cargo lab export N DIR   write the student tree for lab N into DIR (new or empty):
                                solutions of labs before N kept, of N and later stubbed,
                                no staff text, no hidden test, its Classroom workflow
       cargo lab check          check every marker of this tree, count each lab's regions
                                and solution lines, and look for solution lines in each
                                lab's student tree (the leak check)
       cargo lab fill N DIR     write this tree's solution of lab N into the lab N regions
                                of the student tree DIR (what full marks look like; staff)
       cargo lab figures        redraw the handouts' figures from the code (docs/labs/)";

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("cargo lab: error: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn lab_number(n: &str) -> Option<u8> {
    n.trim_start_matches("lab").parse::<u8>().ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = labs::tree_root();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["export", n, dir] => {
            let Some(lab) = lab_number(n) else {
                return usage_error(&format!("`{n}` is not a lab number"));
            };
            if export::student_tree_lab(&root).is_some() {
                eprintln!(
                    "cargo lab: error: this is a student tree; export from the instructor's tree"
                );
                return ExitCode::FAILURE;
            }
            match export::export_tree(&root, lab, Path::new(dir)) {
                Ok(done) => {
                    println!(
                        "cargo lab: lab {lab} exported to {dir}: {} files, {} solution regions stubbed, {} kept, {} staff parts left out, {} graded test files recorded in {}, {} graded tests in {}",
                        done.files,
                        done.stubbed,
                        done.kept,
                        done.staff_left_out,
                        done.graded_files.len(),
                        export::MANIFEST,
                        done.tests.len(),
                        export::WORKFLOW
                    );
                    println!(
                        "cargo lab: in that tree, `scripts/setup && cargo grade lab{lab}` checks it"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cargo lab: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ["check"] => check(&root),
        ["figures"] => figures(&root),
        ["fill", n, dir] => {
            let Some(lab) = lab_number(n) else {
                return usage_error(&format!("`{n}` is not a lab number"));
            };
            fill(&root, lab, Path::new(dir))
        }
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        [] => usage_error("no command"),
        _ => usage_error(&format!("unknown command line `{}`", args.join(" "))),
    }
}

fn check(root: &Path) -> ExitCode {
    let sources = match export::scan(root) {
        Ok(Ok(sources)) => sources,
        Ok(Err(errors)) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("cargo lab: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let lines = match export::solution_lines_per_lab(root, &sources) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cargo lab: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let in_student_trees = export::student_tree_lab(root).is_some();
    let mut ok = true;
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    for (lab, (code, text)) in export::regions_per_lab(&sources) {
        println!(
            "lab {lab} ({}): {code} code region{} ({} lines of solution code), {text} text region{}",
            labs::title(lab).unwrap_or("no handout yet"),
            plural(code),
            lines.get(&lab).copied().unwrap_or(0),
            plural(text)
        );
        if in_student_trees {
            continue;
        }
        match export::leaks_of(root, lab) {
            Ok(leaks) if leaks.is_empty() => {}
            Ok(leaks) => {
                ok = false;
                eprintln!("lab {lab}: its student tree would hold lines of its solution:");
                for l in leaks {
                    eprintln!("  {l}");
                }
            }
            Err(e) => {
                ok = false;
                eprintln!("lab {lab}: {e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes this tree's lab `lab` solution into the regions of the student tree at `dir`.
fn fill(root: &Path, lab: u8, dir: &Path) -> ExitCode {
    match export::fill_reference(root, lab, dir) {
        Ok(filled) => {
            println!(
                "cargo lab: {filled} lab {lab} regions of {} filled with the reference solution",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cargo lab: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Redraws every figure of the handouts from the code.
fn figures(root: &Path) -> ExitCode {
    let mut changed = 0;
    for lab in labs::LABS {
        let path = root.join(lab.handout);
        let result = std::fs::read_to_string(&path).and_then(|text| {
            let redrawn = labs::figures::redraw(&text);
            if redrawn != text {
                changed += 1;
                std::fs::write(&path, redrawn)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            eprintln!("cargo lab: error: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("cargo lab: {changed} handout(s) redrawn");
    ExitCode::SUCCESS
}
