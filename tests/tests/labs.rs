//! The lab system: solution markers and the exporter (`labs::markers`, `labs::export`), the
//! grader's scoring, output, JSON and command line (`labs::grade`), and one real grading run
//! that boots the test kernel.

use std::path::{Path, PathBuf};

use boot::ktest::{Outcome, Planned, TestResult};
use labs::export::{self, ExportError};
use labs::grade::{self, Args, Graded, LabGrade};
use labs::markers::{self, Region};

/// A solved file, written with `L_AB` so that no line of this test file is a marker itself
/// (the tree's own marker check reads this file too).
const SOLVED_TEMPLATE: &str = "\
fn a() -> u32 {
    // L_AB 1: BEGIN add one and one
    1 + 1
    // L_AB 1: STUB
    // // Not yet: a wrong answer that compiles.
    // 0
    // L_AB 1: END
}

fn b() {
    // L_AB 2: BEGIN say \"hi\"
    println!(\"hi\");
    // L_AB 2: END
}
";

fn solved() -> String {
    SOLVED_TEMPLATE.replace("L_AB", "LAB")
}

#[test]
fn regions_are_found_with_their_lab_description_and_stub() {
    let regions = markers::parse("x.rs", &solved()).unwrap();
    assert_eq!(
        regions,
        vec![
            Region {
                lab: 1,
                description: "add one and one".into(),
                begin: 2,
                end: 7,
                indent: "    ".into(),
                stub: Some(vec![
                    "    // Not yet: a wrong answer that compiles.".into(),
                    "    0".into()
                ]),
            },
            Region {
                lab: 2,
                description: "say \"hi\"".into(),
                begin: 11,
                end: 13,
                indent: "    ".into(),
                stub: None,
            },
        ]
    );
}

#[test]
fn a_student_tree_keeps_earlier_solutions_and_stubs_the_rest() {
    let regions = markers::parse("x.rs", &solved()).unwrap();
    assert_eq!(
        markers::export(&solved(), &regions, 1),
        "\
fn a() -> u32 {
    // Lab 1, to do: add one and one
    // Not yet: a wrong answer that compiles.
    0
}

fn b() {
    // Lab 2, to do: say \"hi\"
    todo!(\"lab 2: say \\\"hi\\\"\")
}
"
    );
    assert_eq!(
        markers::export(&solved(), &regions, 2),
        "\
fn a() -> u32 {
    1 + 1
}

fn b() {
    // Lab 2, to do: say \"hi\"
    todo!(\"lab 2: say \\\"hi\\\"\")
}
"
    );
    let without_markers = "fn a() -> u32 {\n    1 + 1\n}\n\nfn b() {\n    println!(\"hi\");\n}\n";
    assert_eq!(markers::export(&solved(), &regions, 3), without_markers);
}

#[test]
fn malformed_markers_are_refused_with_file_and_line() {
    for (text, line, needle) in [
        (
            "// LAB 1: BEGIN x\n// LAB 1: BEGIN y\n// LAB 1: END\n",
            2,
            "do not nest",
        ),
        ("a\n// LAB 1: END\n", 2, "END without a BEGIN"),
        (
            "// LAB 1: BEGIN x\n// LAB 2: END\n",
            2,
            "closes the region of lab 1",
        ),
        ("// LAB 1: STUB\n", 1, "STUB outside"),
        (
            "// LAB 1: BEGIN x\n// LAB 1: STUB\n// LAB 1: STUB\n// LAB 1: END\n",
            3,
            "second LAB 1: STUB",
        ),
        (
            "// LAB 1: BEGIN x\n// LAB 1: STUB\nlet y = 0;\n// LAB 1: END\n",
            3,
            "commented out",
        ),
        ("a\n// LAB 1: BEGIN x\nb\n", 2, "BEGIN without an END"),
        ("// LAB one: BEGIN x\n", 1, "not a lab number"),
        ("// LAB 0: BEGIN x\n", 1, "not a lab number"),
        ("// LAB 1: FINISH\n", 1, "BEGIN|STUB|END"),
        ("// LAB 1 BEGIN\n", 1, "BEGIN|STUB|END"),
    ] {
        let e = markers::parse("dir/f.rs", text).expect_err(text);
        assert_eq!(
            (e.file.as_str(), e.line),
            ("dir/f.rs", line),
            "{text:?}: {e}"
        );
        assert!(e.what.contains(needle), "{text:?}: {e}");
        assert!(e.to_string().starts_with(&format!("dir/f.rs:{line}: ")));
    }
}

/// A fresh directory under target/ for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/labs-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn exporting_a_tree_writes_every_file_and_a_manifest_the_grader_checks() {
    let root = scratch("tree");
    let src = root.join("src");
    std::fs::create_dir_all(src.join("target")).unwrap();
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::fs::write(src.join("lib.rs"), solved()).unwrap();
    let tests = "crate::ktests! {\n    a_test { lab: 1, points: 5 },\n}\n";
    std::fs::write(src.join("ktests.rs"), tests).unwrap();
    std::fs::write(root.join("README.md"), "read me\n").unwrap();
    std::fs::write(root.join("target/built"), "not exported").unwrap();

    let dest = root.join("target/out");
    let done = export::export_tree(&root, 2, &dest).unwrap();
    assert_eq!((done.files, done.kept, done.stubbed), (3, 1, 1));
    assert_eq!(done.graded_files, [PathBuf::from("src/ktests.rs")]);
    let lib = std::fs::read_to_string(dest.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("    1 + 1\n") && lib.contains("todo!(\"lab 2:"),
        "{lib}"
    );
    assert!(!dest.join("target").exists(), "target/ is never exported");
    assert_eq!(
        std::fs::read_to_string(dest.join(".lab/lab")).unwrap(),
        "2\n"
    );

    assert!(export::changed_graded_files(&dest).unwrap().is_empty());
    std::fs::write(dest.join("src/ktests.rs"), tests.replace("5", "500")).unwrap();
    assert_eq!(
        export::changed_graded_files(&dest).unwrap(),
        ["src/ktests.rs was changed"]
    );
    std::fs::remove_file(dest.join("src/ktests.rs")).unwrap();
    assert_eq!(
        export::changed_graded_files(&dest).unwrap(),
        ["src/ktests.rs is missing"]
    );
    assert!(
        export::changed_graded_files(&root).unwrap().is_empty(),
        "no manifest, nothing to check"
    );

    assert!(matches!(
        export::export_tree(&root, 2, &dest),
        Err(ExportError::DestinationNotEmpty(_))
    ));
    assert!(matches!(
        export::export_tree(&root, 9, &root.join("target/other")),
        Err(ExportError::NoSuchLab(9))
    ));
    std::fs::write(src.join("bad.rs"), "// LAB 1: END\n").unwrap();
    match export::export_tree(&root, 1, &root.join("target/other")) {
        Err(ExportError::Markers(errors)) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(
                errors[0].to_string(),
                "src/bad.rs:1: LAB 1: END without a BEGIN"
            );
        }
        other => panic!("expected a marker error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn this_trees_markers_are_well_formed_and_every_lab_has_a_handout_and_regions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sources = match export::scan(root).unwrap() {
        Ok(s) => s,
        Err(errors) => panic!("malformed markers: {errors:?}"),
    };
    let per_lab = export::regions_per_lab(&sources);
    for lab in labs::LABS {
        let (n, title, handout) = (lab.number, lab.title, lab.handout);
        assert!(
            per_lab.contains_key(&n),
            "lab {n} ({title}) has no solution region"
        );
        assert!(
            root.join(handout).is_file(),
            "lab {n}: no handout at {handout}"
        );
    }
    for lab in per_lab.keys() {
        assert!(
            labs::title(*lab).is_some(),
            "regions of lab {lab}, which LABS does not list"
        );
    }
}

fn planned(name: &str, lab: u8, points: u16) -> Planned {
    Planned {
        name: name.into(),
        cpus: 0,
        lab,
        points,
    }
}

fn result(name: &str, passed: bool, micros: u64, output: &str) -> TestResult {
    TestResult {
        name: name.into(),
        outcome: if passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        },
        micros,
        output: output.into(),
    }
}

#[test]
fn a_lab_scores_the_points_of_its_passed_tests_only() {
    let plan = [
        planned("mm::a", 1, 20),
        planned("mm::b", 1, 30),
        planned("mm::c", 1, 50),
        planned("other", 2, 10),
        planned("ungraded", 0, 0),
    ];
    let results = [
        result("mm::a", true, 1500, ""),
        result("mm::b", false, 10, "KERNEL PANIC at ...: wrong"),
        result("other", true, 1, ""),
    ];
    let g = grade::score(1, &plan, &results, &[]);
    assert_eq!((g.score(), g.max()), (20, 100));
    let names: Vec<&str> = g.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["mm::a", "mm::b", "mm::c"]);
    assert_eq!(g.tests[1].output, "KERNEL PANIC at ...: wrong");
    assert_eq!(g.tests[2].output, "the test never reported a result");
    assert!(!grade::full_marks(std::slice::from_ref(&g)));

    let all_passed = grade::score(2, &plan, &results, &[]);
    assert!(grade::full_marks(std::slice::from_ref(&all_passed)));
    let with_problem = grade::score(2, &plan, &results, &["a boot died".into()]);
    assert!(
        !grade::full_marks(&[with_problem]),
        "a problem is never full marks"
    );
    assert!(!grade::full_marks(&[]), "grading nothing is not a pass");
}

fn sample_grade() -> LabGrade {
    LabGrade {
        lab: 1,
        tests: vec![
            Graded {
                name: "mm::a".into(),
                max_points: 20,
                passed: true,
                seconds: 0.5,
                output: String::new(),
            },
            Graded {
                name: "mm::bb".into(),
                max_points: 30,
                passed: false,
                seconds: 0.0,
                output: "why".into(),
            },
        ],
        problems: Vec::new(),
    }
}

#[test]
fn the_report_gives_each_test_its_points_and_a_rerun_command() {
    let g = sample_grade();
    let dir = scratch("logs");
    let logs = grade::save_failure_logs(&g, &dir).unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].1, dir.join("mm__bb.log"));
    assert_eq!(std::fs::read_to_string(&logs[0].1).unwrap(), "why\n");
    let text = grade::render(&g, &logs);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "== Lab 1: the buddy frame allocator");
    assert_eq!(lines[1], "mm::a  ... OK (20/20 points, 0.500 s)");
    assert_eq!(lines[2], "mm::bb ... FAIL (0/30 points, 0.000 s)");
    assert_eq!(
        lines[3],
        format!("    serial log: {}", dir.join("mm__bb.log").display())
    );
    assert!(
        lines[4].contains("rerun: cargo grade lab1 --exact mm::bb"),
        "{}",
        lines[4]
    );
    assert_eq!(*lines.last().unwrap(), "Lab 1 score: 20/50");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_json_file_has_every_test_with_its_points() {
    assert_eq!(
        grade::to_json(&[sample_grade()]),
        "{\n  \"zsos_grade\": 1,\n  \"score\": 20,\n  \"max\": 50,\n  \"labs\": [\n    \
         {\"lab\": 1, \"title\": \"the buddy frame allocator\", \"score\": 20, \"max\": 50, \"tests\": [\n      \
         {\"name\": \"mm::a\", \"points\": 20, \"max_points\": 20, \"passed\": true, \"seconds\": 0.500},\n      \
         {\"name\": \"mm::bb\", \"points\": 0, \"max_points\": 30, \"passed\": false, \"seconds\": 0.000}\n    ]}\n  ]\n}\n"
    );
    assert_eq!(
        grade::to_json(&[]),
        "{\n  \"zsos_grade\": 1,\n  \"score\": 0,\n  \"max\": 0,\n  \"labs\": []\n}\n"
    );
}

#[test]
fn the_grader_command_line_is_parsed_and_bad_ones_say_why() {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let all: Vec<u8> = labs::LABS.iter().map(|l| l.number).collect();
    let a = Args::parse(&s(&[])).unwrap().unwrap();
    assert_eq!((a.labs, a.filter, a.list, a.json), (all, None, false, None));
    let a = Args::parse(&s(&["2", "mm::x", "--exact", "--classroom", "c.yml"]))
        .unwrap()
        .unwrap();
    assert_eq!((a.labs, a.exact), (vec![2], true));
    assert_eq!(a.classroom, Some(PathBuf::from("c.yml")));
    let a = Args::parse(&s(&["lab1", "merge", "--json", "out.json"]))
        .unwrap()
        .unwrap();
    assert_eq!(a.labs, [1]);
    assert_eq!(a.filter.as_deref(), Some("merge"));
    assert_eq!(a.json, Some(PathBuf::from("out.json")));
    assert_eq!(Args::parse(&s(&["1", "lab1"])).unwrap().unwrap().labs, [1]);
    assert!(Args::parse(&s(&["--list"])).unwrap().unwrap().list);
    assert_eq!(Args::parse(&s(&["--help"])).unwrap(), None);
    for (args, needle) in [
        (&["lab99"][..], "there is no lab 99"),
        (&["--json"][..], "--json needs a FILE"),
        (&["--frob"][..], "unknown option `--frob`"),
        (&["a", "b"][..], "unexpected argument `b`"),
        (&["--exact"][..], "--exact needs a FILTER"),
        (&["--classroom"][..], "--classroom needs a FILE"),
    ] {
        let e = Args::parse(&s(args)).expect_err(needle);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}

#[test]
fn the_classroom_workflow_has_one_step_per_graded_test_worth_its_points() {
    let plan = [
        planned("mm::a", 1, 20),
        planned("mm::b", 1, 80),
        planned("other", 2, 10),
        planned("ungraded", 0, 0),
    ];
    let yml = grade::classroom_workflow(&plan, &[1]);
    assert!(yml.starts_with("# GitHub Classroom autograding"), "{yml}");
    assert!(yml.contains("run: scripts/setup && cargo build -p labs --features grader"));
    assert!(yml.contains(
        "      - name: lab1 mm::b\n        id: lab1-2\n        \
         uses: classroom-resources/autograding-command-grader@v1\n"
    ));
    assert!(yml.contains("          command: cargo grade lab1 --exact mm::b\n"));
    assert_eq!(
        yml.matches("max-score:").count(),
        2,
        "lab 2 is not asked for"
    );
    assert!(yml.contains("          max-score: 80\n"));
    assert!(yml.contains("          LAB1-1_RESULTS: \"${{steps.lab1-1.outputs.result}}\"\n"));
    assert!(
        yml.ends_with("        with:\n          runners: lab1-1,lab1-2\n"),
        "{yml}"
    );
}

#[test]
fn nonces_are_fresh_hex_tokens() {
    let (a, b) = (grade::fresh_nonce(), grade::fresh_nonce());
    assert_eq!(a.len(), 16);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}

/// One real grading run: boots the test kernel with lab 1's graded tests (a filter keeps it
/// to one) and a nonce; on this tree (the full solution) it passes with its points.
#[test]
fn grading_the_full_tree_boots_once_and_gives_full_marks() {
    let nonce = grade::fresh_nonce();
    let mut lines = Vec::new();
    let g = grade::run_lab(
        &grade::grading_machine(),
        1,
        Some(("buddies", false)),
        &nonce,
        &mut |l| lines.push(l.to_string()),
    )
    .expect("the kernel boots");
    assert_eq!(g.tests.len(), 1, "{g:?}");
    assert!(g.tests.iter().all(|t| t.passed), "{g:?}");
    assert_eq!(g.score(), g.max());
    assert!(g.max() > 0);
    assert!(
        lines.iter().any(|l| l.ends_with(&format!("[{nonce}]"))),
        "result lines carry the nonce"
    );
}
