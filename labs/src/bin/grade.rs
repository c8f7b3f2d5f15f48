//! `cargo grade [LAB] [FILTER] [--list] [--json FILE]`: grades the labs of this tree.

use std::process::ExitCode;

use labs::{export, grade};

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("cargo grade: error: {msg}\n{}", grade::USAGE);
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = match grade::Args::parse(&raw) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{}", grade::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(msg) => return usage_error(&msg),
    };
    let root = labs::tree_root();
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
            .filter(|p| args.labs.contains(&p.lab))
            .count();
        return match std::fs::write(file, grade::classroom_workflow(&planned, &args.labs)) {
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
                    for p in planned.iter().filter(|p| p.lab == *lab) {
                        if args.filter.as_deref().is_none_or(|f| p.name.contains(f)) {
                            println!("{} ({} points)", p.name, p.points);
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
    let nonce = grade::fresh_nonce();
    let mut grades = Vec::new();
    for &lab in &args.labs {
        let started = std::time::Instant::now();
        let filter = args.filter.as_deref().map(|f| (f, args.exact));
        let result = grade::run_lab(&machine, lab, filter, &nonce, &mut |_| {});
        let g = match result {
            Ok(g) => g,
            Err(e) => {
                eprintln!("cargo grade: error: cannot boot the kernel for lab {lab}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let logs = grade::save_failure_logs(
            &g,
            &boot::target_dir().join("grade").join(format!("lab{lab}")),
        )
        .unwrap_or_else(|e| {
            eprintln!("cargo grade: cannot save the failure logs: {e}");
            Vec::new()
        });
        print!("{}", grade::render(&g, &logs));
        println!(
            "    (lab {lab} graded in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        grades.push(g);
    }
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
