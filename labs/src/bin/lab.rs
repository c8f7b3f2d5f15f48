//! `cargo lab`: the instructor's side of the labs. `export N DIR` writes the student tree for
//! lab N; `check` checks every solution marker of the tree.

use std::path::Path;
use std::process::ExitCode;

use labs::export;

const USAGE: &str = "\
usage: cargo lab export N DIR   write the student tree for lab N into DIR (new or empty):
                                solutions of labs before N kept, of N and later stubbed
       cargo lab check          check every lab marker of this tree and count the regions";

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("cargo lab: error: {msg}\n{USAGE}");
    ExitCode::from(2)
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
            let Some(lab) = n
                .trim_start_matches("lab")
                .parse::<u8>()
                .ok()
                .filter(|&n| n > 0)
            else {
                return usage_error(&format!("`{n}` is not a lab number"));
            };
            match export::export_tree(&root, lab, Path::new(dir)) {
                Ok(done) => {
                    println!(
                        "cargo lab: lab {lab} exported to {dir}: {} files, {} solution regions stubbed, {} kept, {} graded test files recorded in {}",
                        done.files,
                        done.stubbed,
                        done.kept,
                        done.graded_files.len(),
                        export::MANIFEST
                    );
                    println!(
                        "cargo lab: in that tree, `scripts/setup && cargo grade lab{lab}` grades it"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cargo lab: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ["check"] => match export::scan(&root) {
            Ok(Ok(sources)) => {
                for (lab, n) in export::regions_per_lab(&sources) {
                    println!(
                        "lab {lab} ({}): {n} solution region{}",
                        labs::title(lab).unwrap_or("no handout yet"),
                        if n == 1 { "" } else { "s" }
                    );
                }
                ExitCode::SUCCESS
            }
            Ok(Err(errors)) => {
                for e in errors {
                    eprintln!("{e}");
                }
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("cargo lab: error: {e}");
                ExitCode::FAILURE
            }
        },
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        [] => usage_error("no command"),
        _ => usage_error(&format!("unknown command line `{}`", args.join(" "))),
    }
}
