//! The lab system: solution markers and the exporter (`labs::markers`, `labs::export`), the
//! grader's scoring, output, JSON and command line (`labs::grade`), and one real grading run
//! that boots the test kernel.

use std::path::{Path, PathBuf};

use boot::ktest::{Outcome, Planned, TestResult};
use labs::export::{self, ExportError};
use labs::grade::{self, Args, Graded, LabGrade, Rerun};
use labs::markers::{self, Kind, Region, Syntax};
use labs::tables::{self, TableEntry};

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
                kind: Kind::Lab(1),
                description: "add one and one".into(),
                begin: 2,
                end: 7,
                indent: "    ".into(),
                stub: Some(vec![
                    "    // Not yet: a wrong answer that compiles.".into(),
                    "    0".into()
                ]),
                stub_line: Some(4),
                text: false,
            },
            Region {
                kind: Kind::Lab(2),
                description: "say \"hi\"".into(),
                begin: 11,
                end: 13,
                indent: "    ".into(),
                stub: None,
                stub_line: None,
                text: false,
            },
        ]
    );
}

#[test]
fn a_student_tree_keeps_earlier_solutions_and_the_markers_around_its_stubs() {
    let regions = markers::parse("x.rs", &solved()).unwrap();
    let export = |lab| markers::export(&solved(), Syntax::Slash, &regions, lab);
    let marker = |n: u8, what: &str| format!("    // L{}B {n}: {what}", 'A');
    assert_eq!(
        export(1),
        format!(
            "\
fn a() -> u32 {{
{}
    // Not yet: a wrong answer that compiles.
    0
{}
}}

fn b() {{
{}
    todo!(\"lab 2: say \\\"hi\\\"\")
{}
}}
",
            marker(1, "BEGIN add one and one"),
            marker(1, "END"),
            marker(2, "BEGIN say \"hi\""),
            marker(2, "END")
        )
    );
    assert_eq!(
        export(2),
        format!(
            "\
fn a() -> u32 {{
    1 + 1
}}

fn b() {{
{}
    todo!(\"lab 2: say \\\"hi\\\"\")
{}
}}
",
            marker(2, "BEGIN say \"hi\""),
            marker(2, "END")
        )
    );
    let without_markers = "fn a() -> u32 {\n    1 + 1\n}\n\nfn b() {\n    println!(\"hi\");\n}\n";
    assert_eq!(export(3), without_markers);
    // The student tree's markers parse back to the same regions, each holding its stub.
    let student = export(1);
    let back = markers::parse("x.rs", &student).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].description, "add one and one");
    let lines: Vec<&str> = student.lines().collect();
    assert_eq!(
        back[0].solution(&lines),
        ["    // Not yet: a wrong answer that compiles.", "    0"]
    );
}

/// Markers written with `L_AB`/`S_TAFF` (see [`SOLVED_TEMPLATE`]).
fn m(text: &str) -> String {
    text.replace("L_AB", "LAB").replace("S_TAFF", "STAFF")
}

#[test]
fn text_regions_staff_regions_and_staff_files_never_reach_a_student_tree() {
    let rust = m("\
//! The module.
// L_AB 1: BEGIN why it works
//! It works because of the answer.
// L_AB 1: END
fn f() -> u32 {
    // L_AB 1: BEGIN compute
    42
    // L_AB 1: END
}
// S_TAFF: BEGIN hidden tests
fn hidden() {}
// S_TAFF: END
");
    let parsed = markers::parse_with("x.rs", &rust, Syntax::Slash).unwrap();
    assert!(!parsed.staff_only);
    let kinds: Vec<(Kind, bool)> = parsed.regions.iter().map(|r| (r.kind, r.text)).collect();
    assert_eq!(
        kinds,
        [
            (Kind::Lab(1), true),
            (Kind::Lab(1), false),
            (Kind::Staff, false)
        ]
    );
    let student = markers::export(&rust, Syntax::Slash, &parsed.regions, 1);
    assert!(!student.contains("the answer"), "{student}");
    assert!(!student.contains("hidden"), "{student}");
    assert!(student.contains("todo!(\"lab 1: compute\")"), "{student}");
    assert_eq!(
        markers::export(&rust, Syntax::Slash, &parsed.regions, 2),
        "//! The module.\n//! It works because of the answer.\nfn f() -> u32 {\n    42\n}\n"
    );

    let md = m("\
# Title
<!-- L_AB 7: BEGIN the rule -->
The rule is: borrow.
<!-- L_AB 7: END -->
<!-- S_TAFF: BEGIN -->
Answer key.
<!-- S_TAFF: END -->
```text
<!-- L_AB 9: BEGIN an example in a fence is not a marker -->
```
");
    let parsed = markers::parse_with("x.md", &md, Syntax::Html).unwrap();
    assert_eq!(parsed.regions.len(), 2, "{parsed:?}");
    assert!(parsed.regions[0].text);
    let student = markers::export(&md, Syntax::Html, &parsed.regions, 7);
    assert!(
        !student.contains("borrow") && !student.contains("Answer"),
        "{student}"
    );
    assert!(student.contains("an example in a fence"), "{student}");
    assert!(
        markers::export(&md, Syntax::Html, &parsed.regions, 8).contains("The rule is: borrow.")
    );

    let toml =
        m("a = 1\n# L_AB 2: BEGIN a setting\nb = 2\n# L_AB 2: STUB\n# b = 0\n# L_AB 2: END\n");
    let parsed = markers::parse_with("x.toml", &toml, Syntax::Hash).unwrap();
    let student = markers::export(&toml, Syntax::Hash, &parsed.regions, 2);
    assert!(
        student.contains("\nb = 0\n") && !student.contains("b = 2"),
        "{student}"
    );

    for (file, syntax, text) in [
        (
            "k.rs",
            Syntax::Slash,
            "// S_TAFF ONLY: the answer key\nfn f() {}\n",
        ),
        ("k.md", Syntax::Html, "<!-- S_TAFF ONLY -->\n# Key\n"),
    ] {
        assert!(
            markers::parse_with(file, &m(text), syntax)
                .unwrap()
                .staff_only
        );
    }
}

#[test]
fn malformed_markers_are_refused_with_file_and_line() {
    for (text, line, needle) in [
        (
            "// L_AB 1: BEGIN x\n// L_AB 1: BEGIN y\n// L_AB 1: END\n",
            2,
            "do not nest",
        ),
        ("a\n// L_AB 1: END\n", 2, "END without a BEGIN"),
        (
            "// L_AB 1: BEGIN x\n// L_AB 2: END\n",
            2,
            "closes the LAB 1 region",
        ),
        ("// L_AB 1: STUB\n", 1, "STUB outside"),
        (
            "// L_AB 1: BEGIN x\n// L_AB 1: STUB\n// L_AB 1: STUB\n// L_AB 1: END\n",
            3,
            "second LAB 1: STUB",
        ),
        (
            "// L_AB 1: BEGIN x\n// L_AB 1: STUB\nlet y = 0;\n// L_AB 1: END\n",
            3,
            "commented out",
        ),
        ("a\n// L_AB 1: BEGIN x\nb\n", 2, "BEGIN without an END"),
        (
            "// L_AB 1: BEGIN\n// L_AB 1: END\n",
            1,
            "says what to implement",
        ),
        ("// L_AB one: BEGIN x\n", 1, "not a lab number"),
        ("// L_AB 256: BEGIN x\n", 1, "not a lab number"),
        ("// L_AB 1: FINISH\n", 1, "BEGIN|STUB|END"),
        ("// L_AB 1 BEGIN\n", 1, "BEGIN|STUB|END"),
        ("// S_TAFF: BEGIN\n// L_AB 1: BEGIN x\n", 2, "do not nest"),
        (
            "// S_TAFF: BEGIN\n// L_AB 1: END\n",
            2,
            "closes the STAFF region",
        ),
        ("// S_TAFF BEGIN\n", 1, "STAFF: BEGIN|END"),
        ("// S_TAFF: START\n", 1, "STAFF: BEGIN|END"),
        (
            "// L_AB 1: BEGIN x\n// S_TAFF ONLY\n// L_AB 1: END\n",
            2,
            "marks a whole file",
        ),
    ] {
        let text = m(text);
        let e = markers::parse("dir/f.rs", &text).expect_err(&text);
        assert_eq!(
            (e.file.as_str(), e.line),
            ("dir/f.rs", line),
            "{text:?}: {e}"
        );
        assert!(e.what.contains(needle), "{text:?}: {e}");
        assert!(e.to_string().starts_with(&format!("dir/f.rs:{line}: ")));
    }
    let e = markers::parse_with(
        "x.md",
        &m("<!-- L_AB 1: BEGIN x -->\n<!-- L_AB 1: STUB -->\n<!-- L_AB 1: END -->\n"),
        Syntax::Html,
    )
    .expect_err("no stub in text");
    assert!(e.what.contains("text regions have no stub"), "{e}");
    // Doc comments are never markers: a doc may quote one.
    assert!(
        markers::parse("x.rs", &m("/// // L_AB 1: END\n//! L_AB 1: END\n"))
            .unwrap()
            .is_empty()
    );
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
fn exporting_a_tree_writes_every_file_a_workflow_and_a_manifest_the_grader_checks() {
    let root = scratch("tree");
    let src = root.join("kernel/src");
    std::fs::create_dir_all(src.join("target")).unwrap();
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::fs::write(src.join("lib.rs"), solved()).unwrap();
    let tests = "crate::ktests! {\n    a_test { lab: 2, points: 5 },\n    other,\n}\n";
    std::fs::write(src.join("ktests.rs"), tests).unwrap();
    let hidden =
        m("// S_TAFF ONLY\ncrate::ktests! {\n    secret { lab: 2, points: 9, hidden: true },\n}\n");
    std::fs::write(src.join("hidden_ktests.rs"), &hidden).unwrap();
    std::fs::write(
        root.join("README.md"),
        m("read me\n<!-- S_TAFF: BEGIN -->\nkey\n<!-- S_TAFF: END -->\n"),
    )
    .unwrap();
    std::fs::write(root.join("target/built"), "not exported").unwrap();

    let dest = root.join("target/out");
    let done = export::export_tree(&root, 2, &dest).unwrap();
    // lib.rs, ktests.rs, README.md and the workflow; the staff-only file stays behind.
    assert_eq!((done.files, done.kept, done.stubbed), (4, 1, 1));
    assert_eq!(
        done.staff_left_out, 2,
        "the staff file and the README's staff part"
    );
    assert_eq!(done.graded_files, [PathBuf::from("kernel/src/ktests.rs")]);
    assert!(!dest.join("kernel/src/hidden_ktests.rs").exists());
    assert_eq!(
        std::fs::read_to_string(dest.join("README.md")).unwrap(),
        "read me\n"
    );
    let names: Vec<&str> = done.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a_test"], "the lab's visible graded tests");
    let workflow = std::fs::read_to_string(dest.join(export::WORKFLOW)).unwrap();
    assert!(
        workflow.contains("command: cargo grade lab2 --exact a_test"),
        "{workflow}"
    );
    assert!(!workflow.contains("secret"), "{workflow}");
    let lib = std::fs::read_to_string(dest.join("kernel/src/lib.rs")).unwrap();
    assert!(
        lib.contains("    1 + 1\n") && lib.contains("todo!(\"lab 2:"),
        "{lib}"
    );
    assert!(!dest.join("target").exists(), "target/ is never exported");
    assert_eq!(
        std::fs::read_to_string(dest.join(".lab/lab")).unwrap(),
        "2\n"
    );
    assert_eq!(export::student_tree_lab(&dest), Some(2));
    assert_eq!(export::student_tree_lab(&root), None);

    assert!(export::changed_graded_files(&dest).unwrap().is_empty());
    std::fs::write(dest.join("kernel/src/ktests.rs"), tests.replace("5", "500")).unwrap();
    assert_eq!(
        export::changed_graded_files(&dest).unwrap(),
        ["kernel/src/ktests.rs was changed"]
    );
    std::fs::remove_file(dest.join("kernel/src/ktests.rs")).unwrap();
    assert_eq!(
        export::changed_graded_files(&dest).unwrap(),
        ["kernel/src/ktests.rs is missing"]
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

    // A hidden test outside staff-only text is refused, naming it.
    std::fs::write(
        src.join("hidden_ktests.rs"),
        hidden.replace("STAFF ONLY", "not staff"),
    )
    .unwrap();
    match export::export_tree(&root, 2, &root.join("target/other")) {
        Err(ExportError::HiddenTests(found)) => assert_eq!(
            found,
            [(
                PathBuf::from("kernel/src/hidden_ktests.rs"),
                3,
                "hidden::secret".to_string()
            )]
        ),
        other => panic!("expected the hidden test refused, got {other:?}"),
    }
    std::fs::write(src.join("hidden_ktests.rs"), &hidden).unwrap();

    // Two lines of the lab's solution in a row anywhere else are refused (comments and layout
    // aside), and so is one long line; one short line alone is an idiom, not a copy.
    let solution = m(
        "fn c() {\n    // L_AB 2: BEGIN compute the answer\n    let answer = six_times(seven) + 0;\n    answer * factor_of_the_question(of_life, the_universe)\n    // L_AB 2: END\n}\n",
    );
    std::fs::write(src.join("c.rs"), &solution).unwrap();
    std::fs::write(
        src.join("twin.rs"),
        "fn twin() {\n    let  answer=six_times(seven)+0; // the same line\n    println!();\n}\n",
    )
    .unwrap();
    assert!(
        export::leaks_of(&root, 2).unwrap().is_empty(),
        "one short line alone"
    );
    std::fs::write(
        src.join("twin.rs"),
        "fn twin() {\n    let  answer=six_times(seven)+0; // the same line\n\n    }\n    answer * factor_of_the_question(of_life, the_universe)\n}\n",
    )
    .unwrap();
    match export::export_tree(&root, 2, &root.join("target/other")) {
        Err(ExportError::Leaks(leaks)) => {
            assert_eq!(
                leaks.len(),
                2,
                "the pair, and the long line alone: {leaks:?}"
            );
            assert_eq!(leaks[0].found, (PathBuf::from("kernel/src/twin.rs"), 2));
            assert_eq!(leaks[0].solution, (PathBuf::from("kernel/src/c.rs"), 3));
            assert_eq!(leaks[1].found, (PathBuf::from("kernel/src/twin.rs"), 5));
        }
        other => panic!("expected the leak refused, got {other:?}"),
    }
    std::fs::remove_file(src.join("twin.rs")).unwrap();
    assert!(export::leaks_of(&root, 2).unwrap().is_empty());

    std::fs::write(src.join("bad.rs"), m("// L_AB 1: END\n")).unwrap();
    match export::export_tree(&root, 1, &root.join("target/other")) {
        Err(ExportError::Markers(errors)) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(
                errors[0].to_string(),
                "kernel/src/bad.rs:1: LAB 1: END without a BEGIN"
            );
        }
        other => panic!("expected a marker error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn short_generic_lines_are_not_leaks_and_comments_and_layout_do_not_hide_one() {
    use labs::leaks::{is_trivial, normalize};
    let rs = Some(Syntax::Slash);
    for generic in [
        "}",
        "i += 1;",
        "return None;",
        "let size = self.layout.size;",
        "let mut n = x.y;",
    ] {
        assert!(is_trivial(&normalize(generic, rs)), "{generic}");
    }
    let line = "let merged = pfn.min(buddy_of(pfn, order));";
    assert!(!is_trivial(&normalize(line, rs)));
    assert_eq!(
        normalize(line, rs),
        normalize(
            "  let merged=pfn.min( buddy_of(pfn,order) ); // the lower one",
            rs
        )
    );
    assert_eq!(
        normalize("say(\"// not a comment\"); // a comment", rs),
        "say(\"//not a comment\");"
    );
    assert_eq!(
        normalize(
            "`let merged = pfn.min(buddy_of(pfn, order));`",
            Some(Syntax::Html)
        ),
        normalize(line, rs),
        "text quoting the code between backticks"
    );
    assert_eq!(
        normalize("if  order >\tMAX_ORDER {", rs),
        "if order>MAX_ORDER{"
    );
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
    if export::student_tree_lab(root).is_some() {
        return; // a student tree has no solutions to leak, and no hidden tests
    }
    // Every lab has hidden tests, each in staff-only text; no lab's tree holds its solution.
    let tables = declared_tests(root, &sources);
    for lab in labs::LABS {
        let hidden: Vec<&(PathBuf, TableEntry)> = tables
            .iter()
            .filter(|(_, e)| e.lab == lab.number && e.points > 0 && e.hidden)
            .collect();
        assert!(!hidden.is_empty(), "lab {} has no hidden test", lab.number);
        for (file, e) in hidden {
            let source = sources.iter().find(|s| &s.path == file).unwrap();
            let in_staff_region = source
                .regions()
                .iter()
                .any(|r| r.kind == Kind::Staff && (r.begin..r.end).contains(&e.line));
            assert!(
                source.parsed.staff_only || in_staff_region,
                "{}:{}: hidden test {} is not staff-only",
                file.display(),
                e.line,
                e.name
            );
        }
        let leaks = export::leaks_of(root, lab.number).unwrap();
        assert!(
            leaks.is_empty(),
            "lab {}'s student tree would hold its solution: {leaks:#?}",
            lab.number
        );
    }
}

#[test]
fn the_handouts_figures_are_drawn_from_the_code_as_it_is_now() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut drawn = 0;
    for lab in labs::LABS {
        let text = std::fs::read_to_string(root.join(lab.handout)).unwrap();
        assert_eq!(
            labs::figures::redraw(&text),
            text,
            "{}: a figure is stale or unclosed; run `cargo lab figures`",
            lab.handout
        );
        for (name, line, body) in labs::figures::blocks(&text) {
            let figure = labs::figures::draw(&name)
                .unwrap_or_else(|| panic!("{}:{line}: no figure named {name}", lab.handout));
            assert_eq!(body, labs::figures::fenced(&figure).trim_end());
            drawn += 1;
        }
    }
    assert!(
        drawn >= labs::figures::NAMES.len(),
        "every figure is in a handout"
    );
    // A figure follows the code: the zspage of 1632-byte slots has two pages, and the
    // figure says so because the class table does.
    let zspage = labs::figures::draw("zspage-layout").unwrap();
    assert!(zspage.contains("2 pages, 5 objects"), "{zspage}");
    assert!(
        zspage.contains("page 1: first_obj_offset = 800"),
        "{zspage}"
    );
    assert!(
        labs::figures::draw("handle-bits")
            .unwrap()
            .contains("generation (20)")
    );
    assert_eq!(labs::figures::draw("no-such-figure"), None);
}

/// Every `ktests!` entry of the kernel's sources, read from the text.
fn declared_tests(root: &Path, sources: &[export::SourceFile]) -> Vec<(PathBuf, TableEntry)> {
    let mut out = Vec::new();
    for s in sources {
        let Some(module) = tables::module_path(&s.path) else {
            continue;
        };
        let text = std::fs::read_to_string(root.join(&s.path)).unwrap();
        for e in tables::entries(&module, &text) {
            out.push((s.path.clone(), e));
        }
    }
    out
}

fn planned(name: &str, lab: u8, points: u16) -> Planned {
    Planned {
        name: name.into(),
        cpus: 0,
        lab,
        points,
        hidden: false,
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
        awarded: None,
        figures: Vec::new(),
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
                hidden: false,
                passed: true,
                seconds: 0.5,
                output: String::new(),
                awarded: None,
                figures: Vec::new(),
            },
            Graded {
                name: "mm::bb".into(),
                max_points: 30,
                hidden: false,
                passed: false,
                seconds: 0.0,
                output: "allocating 5 frames\n\nKERNEL PANIC at kernel/src/mm/ktests.rs:9:5 on CPU 0: assertion `left == right` failed: order 0\n  left: 3\n right: 1".into(),
                awarded: None,
                figures: Vec::new(),
            },
            Graded {
                name: "mm::hidden::c".into(),
                max_points: 10,
                hidden: true,
                passed: false,
                seconds: 0.0,
                output: "step 1\nstep 2\nthe machine ended while this test ran: timed out".into(),
                awarded: None,
                figures: Vec::new(),
            },
        ],
        problems: Vec::new(),
        notes: vec!["review: a note".into()],
    }
}

#[test]
fn a_test_that_awards_itself_points_scores_them_and_its_figures_reach_the_json() {
    let mut g = sample_grade();
    g.tests[0].awarded = Some(13);
    g.tests[0].figures = vec![("pages".into(), 0.618), ("leaderboard".into(), 38.2)];
    assert_eq!(g.tests[0].points(), 13, "a passed test's award");
    g.tests[1].awarded = Some(30);
    assert_eq!(
        g.tests[1].points(),
        0,
        "a failed test scores nothing, award or not"
    );
    g.tests[0].awarded = Some(500);
    assert_eq!(
        g.tests[0].points(),
        20,
        "never more than the table's points"
    );
    g.tests[0].awarded = Some(13);
    assert_eq!(g.leaderboard(), Some(38.2));
    let json = grade::lab_json(&g);
    assert!(
        json.contains("\"figures\": {\"pages\": 0.6180, \"leaderboard\": 38.2000}"),
        "{json}"
    );
    assert!(json.contains("\"leaderboard\": 38.2000"), "{json}");
    assert!(
        grade::render(&g, &[], Rerun::None)
            .contains("    figures: pages 0.618, leaderboard 38.200")
    );
}

#[test]
fn a_failed_test_says_why_and_shows_its_last_serial_lines() {
    let g = sample_grade();
    assert_eq!(g.tests[0].reason(), None);
    assert_eq!(
        g.tests[1].reason().unwrap(),
        "KERNEL PANIC at kernel/src/mm/ktests.rs:9:5 on CPU 0: assertion `left == right` failed: order 0\n  left: 3\n right: 1"
    );
    assert_eq!(
        g.tests[2].reason().unwrap(),
        "the machine ended while this test ran: timed out"
    );
    let long = Graded {
        output: (1..=20)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n"),
        ..g.tests[2].clone()
    };
    assert_eq!(long.tail().len(), grade::TAIL_LINES);
    assert_eq!(*long.tail().last().unwrap(), "line 20");
}

/// A lab test about to fail prints its pool (`kernel::pictures::show_if_failing`): the grader
/// draws each snapshot beside the log, names the pictures in the report, and keeps the
/// snapshot's lines out of the last serial lines it shows.
#[test]
fn a_failed_test_s_pool_snapshot_is_drawn_beside_its_log() {
    use zsmalloc::frame_map::{FrameMap, FrameOwner};
    use zsmalloc::snapshot::{ClassSnapshot, Snapshot, ZspageSnapshot};
    let snap = Snapshot {
        point: "after-compaction".into(),
        classes: vec![ClassSnapshot {
            pos: 3,
            index: 30,
            size: 1632,
            chain: 2,
            huge: false,
            zspages: vec![ZspageSnapshot {
                id: 0,
                pages: 2,
                group: 6,
                allocated: vec![true, false, true, true, false],
            }],
        }],
    };
    let mut census = FrameMap::new("after-compaction", "wide");
    census.push(FrameOwner::Reserved, 10);
    census.push(FrameOwner::Zsmalloc, 2);
    let mut g = sample_grade();
    g.tests[1].output = ["compacting"]
        .into_iter()
        .map(String::from)
        .chain(snap.lines())
        .chain(census.lines())
        .chain(["KERNEL PANIC at kernel/src/zs_backend/compaction_ktests.rs:90:5 on CPU 0: 2 pages freed".to_string()])
        .collect::<Vec<_>>()
        .join("\n");
    let dir = scratch("pictures");
    let logs = grade::save_failure_logs(&g, &dir).unwrap();
    let pool = dir.join("mm__bb.pool-after-compaction.svg");
    let memmap = dir.join("mm__bb.memmap-after-compaction.svg");
    assert_eq!(logs[0].pictures, [pool.clone(), memmap.clone()]);
    let svg = std::fs::read_to_string(&pool).unwrap();
    assert!(
        svg.contains("class 30: 1632 B, chain 2, 3/5 objects"),
        "{svg}"
    );
    assert!(
        std::fs::read_to_string(&memmap)
            .unwrap()
            .contains("zsmalloc 2")
    );
    let text = grade::render(&g, &logs, Rerun::Local);
    assert!(
        text.contains(&format!("    picture: {}", pool.display())),
        "{text}"
    );
    assert!(
        !text.contains("SNAP ") && !text.contains("MEMMAP "),
        "{text}"
    );
    assert!(text.contains("    | compacting"), "{text}");
    // Cut short (the test died while printing it): no picture, the log is still written.
    g.tests[1].output = snap.lines()[..2].join("\n");
    let logs = grade::save_failure_logs(&g, &scratch("cut-pictures")).unwrap();
    assert!(logs[0].pictures.is_empty() && logs[0].log.exists());
}

#[test]
fn the_report_gives_each_test_its_points_why_it_failed_and_a_rerun_command() {
    let g = sample_grade();
    let dir = scratch("logs");
    let logs = grade::save_failure_logs(&g, &dir).unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].log, dir.join("mm__bb.log"));
    assert!(logs[0].pictures.is_empty(), "it printed no pool");
    assert!(
        std::fs::read_to_string(&logs[0].log)
            .unwrap()
            .starts_with("allocating 5 frames\n")
    );
    let text = grade::render(&g, &logs, Rerun::Local);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "== Lab 1: the buddy frame allocator");
    assert_eq!(
        lines[1],
        "mm::a                  ... OK (20/20 points, 0.500 s)"
    );
    assert_eq!(
        lines[2],
        "mm::bb                 ... FAIL (0/30 points, 0.000 s)"
    );
    assert_eq!(
        lines[3],
        "    why: KERNEL PANIC at kernel/src/mm/ktests.rs:9:5 on CPU 0: assertion `left == right` failed: order 0"
    );
    assert_eq!(lines[4], "           left: 3");
    assert_eq!(lines[6], "    last serial lines:");
    assert_eq!(lines[7], "    | allocating 5 frames");
    assert!(text.contains(&format!(
        "    serial log: {}",
        dir.join("mm__bb.log").display()
    )));
    assert!(
        text.contains("    rerun: cargo grade lab1 --exact mm::bb"),
        "{text}"
    );
    assert!(
        text.contains("mm::hidden::c (hidden) ... FAIL (0/10 points"),
        "{text}"
    );
    assert!(text.contains("    note: review: a note"), "{text}");
    assert_eq!(
        *lines.last().unwrap(),
        "Lab 1 score: 20/60 (visible 20/50, hidden 0/10)"
    );
    let trusted = grade::render(&g, &logs, Rerun::None);
    assert!(!trusted.contains("rerun:"), "{trusted}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_json_file_has_every_test_with_its_points_and_why_it_failed() {
    let json = grade::to_json(&[sample_grade()]);
    assert!(json.starts_with("{\n  \"zsos_grade\": 1,\n  \"score\": 20,\n  \"max\": 60,\n  \"labs\": [\n    {\"lab\": 1, \"title\": \"the buddy frame allocator\", \"score\": 20, \"max\": 60, \"tests\": [\n      "), "{json}");
    assert!(json.contains("{\"name\": \"mm::a\", \"points\": 20, \"max_points\": 20, \"passed\": true, \"seconds\": 0.500}"), "{json}");
    assert!(json.contains("{\"name\": \"mm::bb\", \"points\": 0, \"max_points\": 30, \"passed\": false, \"seconds\": 0.000, \"reason\": \"KERNEL PANIC at kernel/src/mm/ktests.rs:9:5 on CPU 0: assertion `left == right` failed: order 0\\u000a  left: 3\\u000a right: 1\", \"tail\": [\"allocating 5 frames\", \"KERNEL PANIC"), "{json}");
    assert!(json.contains("\"hidden\": true"), "{json}");
    assert!(json.contains("\"notes\": [\"review: a note\"]"), "{json}");
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
    let a = Args::parse(&s(&["--submission", "alice"]))
        .unwrap()
        .unwrap();
    assert_eq!(a.submissions, [PathBuf::from("alice")]);
    assert!(a.labs.is_empty(), "each submission's own lab");
    assert!(!a.class);
    let a = Args::parse(&s(&[
        "lab3",
        "--submissions",
        "a",
        "lab1",
        "--json",
        "g.json",
        "--csv",
        "g.csv",
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(a.labs, [3]);
    assert_eq!(a.submissions, [PathBuf::from("a"), PathBuf::from("lab1")]);
    assert!(a.class);
    assert_eq!(a.csv, Some(PathBuf::from("g.csv")));
    for (args, needle) in [
        (&["lab99"][..], "there is no lab 99"),
        (&["--json"][..], "--json needs a FILE"),
        (&["--frob"][..], "unknown option `--frob`"),
        (&["a", "b"][..], "unexpected argument `b`"),
        (&["--exact"][..], "--exact needs a FILTER"),
        (&["--classroom"][..], "--classroom needs a FILE"),
        (&["--submission"][..], "--submission needs a DIR"),
        (&["--submissions", "--json", "x"][..], "at least one DIR"),
        (
            &["--submission", "a", "--submissions", "b"][..],
            "one --submission",
        ),
        (&["--submission", "a", "merge"][..], "no FILTER"),
        (&["--submission", "a", "--list"][..], "no FILTER"),
        (&["--csv", "x.csv"][..], "gradebook of --submissions"),
    ] {
        let e = Args::parse(&s(args)).expect_err(needle);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}

#[test]
fn the_classroom_workflow_has_one_step_per_visible_graded_test_worth_its_points() {
    let mut plan = vec![
        planned("mm::a", 1, 20),
        planned("mm::b", 1, 80),
        planned("mm::hidden::c", 1, 10),
        planned("other", 2, 10),
        planned("ungraded", 0, 0),
    ];
    plan[2].hidden = true;
    let yml = grade::classroom_workflow(&plan, &[1]);
    assert!(yml.starts_with("# GitHub Classroom autograding"), "{yml}");
    assert!(yml.contains(&format!("run: {}", labs::classroom::SETUP_COMMAND)));
    assert!(yml.contains(
        "      - name: lab1 mm::b\n        id: lab1_test2\n        \
         uses: classroom-resources/autograding-command-grader@v1\n"
    ));
    assert!(yml.contains("          command: cargo grade lab1 --exact mm::b\n"));
    assert_eq!(
        yml.matches("max-score:").count(),
        2,
        "lab 2 is not asked for, and a hidden test is never in a workflow"
    );
    assert!(yml.contains("          max-score: 80\n"));
    assert!(
        yml.contains("          LAB1_TEST1_RESULTS: \"${{steps.lab1_test1.outputs.result}}\"\n")
    );
    assert!(
        yml.ends_with("        with:\n          runners: lab1_test1,lab1_test2\n"),
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

    // The graded tests the exporter reads from the source (for the Classroom workflow and
    // the hidden-test check) are the ones the kernel lists, with the same points.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sources = export::scan(root).unwrap().unwrap();
    let mut from_source: Vec<(String, u8, u16, bool)> = declared_tests(root, &sources)
        .into_iter()
        .map(|(_, e)| (e.name, e.lab, e.points, e.hidden))
        .filter(|t| t.2 > 0)
        .collect();
    let mut listed: Vec<(String, u8, u16, bool)> =
        boot::ktest::list(&grade::grading_machine(), &[])
            .expect("the kernel lists its tests")
            .into_iter()
            .filter(|p| p.points > 0)
            .map(|p| (p.name, p.lab, p.points, p.hidden))
            .collect();
    from_source.sort();
    listed.sort();
    assert_eq!(from_source, listed);
}
