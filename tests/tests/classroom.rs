//! The GitHub Classroom workflow a student tree ships with, read back as YAML the way GitHub
//! reads it: every lab's workflow sets up, then has one step per visible graded test worth
//! its points, and a reporter that sums them all.
//!
//! `.ci/labs` also runs a workflow's steps, parsed from the file, in an exported and built
//! tree (`ZSOS_CLASSROOM_TREE=DIR ZSOS_CLASSROOM_TARGET=DIR cargo test --test classroom --
//! --ignored`): a graded step fails on the skeleton and every one passes once the reference
//! solution is in the regions, so the file that ships is the file that was run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use labs::export;
use labs::tables::{self, TableEntry};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// One step of the workflow's job, as the workflow says it.
#[derive(Debug)]
enum Step {
    /// `run: COMMAND`.
    Run(String),
    /// The autograding command grader: its id, test name, command, timeout and points.
    Graded {
        id: String,
        command: String,
        minutes: u64,
        points: u64,
    },
    /// The reporter: the results it reads (env) and its runners.
    Reporter {
        env: Vec<(String, String)>,
        runners: Vec<String>,
    },
    /// Any other action (`uses:`), by name.
    Uses(String),
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

/// The steps of a workflow file, checked to have the shape Classroom needs.
fn steps_of(workflow: &str) -> Vec<Step> {
    let docs = YamlLoader::load_from_str(workflow).expect("the workflow is YAML");
    let doc = &docs[0];
    assert!(
        doc["on"]
            .as_vec()
            .is_some_and(|v| v.iter().any(|e| e.as_str() == Some("push"))),
        "runs on push: {:?}",
        doc["on"]
    );
    let jobs = doc["jobs"].as_hash().expect("jobs");
    assert_eq!(jobs.len(), 1);
    let job = jobs.values().next().unwrap();
    assert_eq!(str_of(&job["runs-on"], "runs-on"), "ubuntu-latest");
    job["steps"]
        .as_vec()
        .expect("steps")
        .iter()
        .map(|s| {
            if let Some(run) = s["run"].as_str() {
                return Step::Run(run.to_string());
            }
            let uses = str_of(&s["uses"], "uses");
            let with = &s["with"];
            match uses {
                "classroom-resources/autograding-command-grader@v1" => Step::Graded {
                    id: str_of(&s["id"], "id").to_string(),
                    command: str_of(&with["command"], "command").to_string(),
                    minutes: with["timeout"].as_i64().expect("timeout") as u64,
                    points: with["max-score"].as_i64().expect("max-score") as u64,
                },
                "classroom-resources/autograding-grading-reporter@v1" => Step::Reporter {
                    env: s["env"]
                        .as_hash()
                        .expect("env")
                        .iter()
                        .map(|(k, v)| {
                            (
                                str_of(k, "env key").to_string(),
                                str_of(v, "env value").to_string(),
                            )
                        })
                        .collect(),
                    runners: str_of(&with["runners"], "runners")
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                },
                other => Step::Uses(other.to_string()),
            }
        })
        .collect()
}

/// The visible graded tests of lab `lab` in the tree at `dir`, from its source.
fn visible_tests(dir: &Path, lab: u8) -> Vec<TableEntry> {
    let sources = export::scan(dir).unwrap().unwrap();
    let mut out = Vec::new();
    for s in &sources {
        let Some(module) = tables::module_path(&s.path) else {
            continue;
        };
        let text = std::fs::read_to_string(dir.join(&s.path)).unwrap();
        out.extend(
            tables::entries(&module, &text)
                .into_iter()
                .filter(|e| e.lab == lab && e.points > 0),
        );
    }
    out
}

/// Checks a workflow's steps against the tree's tests; returns the graded steps.
fn check_workflow(dir: &Path, lab: u8) -> Vec<(String, String, u64, u64)> {
    let workflow =
        std::fs::read_to_string(dir.join(export::WORKFLOW)).expect("the tree has its workflow");
    let steps = steps_of(&workflow);
    assert!(
        matches!(&steps[0], Step::Uses(u) if u.starts_with("actions/checkout")),
        "{steps:?}"
    );
    assert!(
        matches!(&steps[1], Step::Run(r) if r == labs::classroom::SETUP_COMMAND),
        "{steps:?}"
    );
    let graded: Vec<(String, String, u64, u64)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Graded {
                id,
                command,
                minutes,
                points,
            } => Some((id.clone(), command.clone(), *minutes, *points)),
            _ => None,
        })
        .collect();
    let tests = visible_tests(dir, lab);
    assert!(!tests.is_empty(), "lab {lab} has visible graded tests");
    assert!(
        tests.iter().all(|t| !t.hidden),
        "no hidden test in a student tree"
    );
    let mut want: Vec<(String, u64)> = tests
        .iter()
        .map(|t| {
            (
                format!("cargo grade lab{lab} --exact {}", t.name),
                u64::from(t.points),
            )
        })
        .collect();
    let mut got: Vec<(String, u64)> = graded.iter().map(|g| (g.1.clone(), g.3)).collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "lab {lab}: one step per visible graded test, worth its points"
    );
    let Some(Step::Reporter { env, runners }) = steps.last() else {
        panic!("the last step is the reporter: {steps:?}");
    };
    let ids: Vec<&String> = graded.iter().map(|g| &g.0).collect();
    assert_eq!(runners.iter().collect::<Vec<_>>(), ids);
    for id in &ids {
        assert!(
            env.contains(&(
                format!("{}_RESULTS", id.to_uppercase()),
                format!("${{{{steps.{id}.outputs.result}}}}")
            )),
            "the reporter reads {id}'s result: {env:?}"
        );
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{id}"
        );
    }
    graded
}

#[test]
fn every_labs_workflow_has_one_step_per_visible_graded_test_and_a_reporter() {
    let base = root()
        .join("target/labs-tests")
        .join(format!("classroom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    for lab in labs::LABS.iter().map(|l| l.number) {
        let dir = base.join(format!("lab{lab}"));
        export::export_tree(root(), lab, &dir).unwrap();
        let graded = check_workflow(&dir, lab);
        let total: u64 = graded.iter().map(|g| g.3).sum();
        assert_eq!(total, 100, "lab {lab}'s visible tests are worth 100 points");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Runs `command` with bash in `dir` (its own target directory given), within `limit`;
/// true if it exited 0.
fn run_step(dir: &Path, target: &Path, command: &str, limit: Duration) -> bool {
    let mut child = Command::new("bash")
        .args(["-c", command])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("CARGO_MANIFEST_DIR")
        .spawn()
        .expect("bash runs");
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("`{command}` ran past its {} s timeout", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "runs a workflow in an exported, built tree: .ci/labs runs it with ZSOS_CLASSROOM_TREE and ZSOS_CLASSROOM_TARGET"]
fn the_workflow_s_steps_run_in_a_student_tree_and_score_what_its_regions_earn() {
    let dir = PathBuf::from(
        std::env::var_os("ZSOS_CLASSROOM_TREE")
            .expect("ZSOS_CLASSROOM_TREE names an exported student tree (see .ci/labs)"),
    );
    let target = PathBuf::from(
        std::env::var_os("ZSOS_CLASSROOM_TARGET")
            .expect("ZSOS_CLASSROOM_TARGET names the tree's cargo target directory"),
    );
    let lab = export::student_tree_lab(&dir).expect("a student tree");
    let graded = check_workflow(&dir, lab);
    let workflow = std::fs::read_to_string(dir.join(export::WORKFLOW)).unwrap();
    let setup = steps_of(&workflow)
        .into_iter()
        .find_map(|s| match s {
            Step::Run(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert!(
        run_step(&dir, &target, &setup, Duration::from_secs(1800)),
        "the setup step fails"
    );
    let score = |when: &str, steps: &[(String, String, u64, u64)]| -> u64 {
        steps
            .iter()
            .map(|(id, command, minutes, points)| {
                let passed = run_step(&dir, &target, command, Duration::from_secs(minutes * 60));
                eprintln!(
                    "classroom: {when}: {id} ({command}): {}",
                    if passed { "passed" } else { "failed" }
                );
                if passed { *points } else { 0 }
            })
            .sum()
    };
    // Each step boots the kernel, so on the skeleton only the first runs: its stub fails
    // it. (That every graded test fails on the skeleton `.ci/labs` checks in one boot.)
    assert_eq!(
        score("skeleton", &graded[..1]),
        0,
        "a graded step passes on the skeleton"
    );
    let filled = export::fill_reference(root(), lab, &dir).unwrap();
    assert!(filled > 0);
    assert_eq!(
        score("reference solution", &graded),
        100,
        "the workflow's points with the reference solution"
    );
}
