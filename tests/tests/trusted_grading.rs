//! Trusted grading without booting: a submission is its lab's region bodies and nothing else.
//! For each way a student could change their tree outside the regions, the tree the
//! instructor's grader builds is byte for byte the one it builds from the untouched
//! submission, so the score is the regions' score (`.ci/labs` also grades such trees under
//! QEMU). Also: how region problems are named, the scoring of a kernel that reports tests
//! twice or of its own, and the similarity measure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use boot::ktest::{Outcome, Planned, SuiteReport, TestResult};
use labs::export::{self, SourceFile};
use labs::similarity;
use labs::submission::{self, Submission};
use labs::trusted;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// A fresh directory under target/ for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = root()
        .join("target/labs-tests")
        .join(format!("trusted-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sources() -> Vec<SourceFile> {
    match export::scan(root()).unwrap() {
        Ok(s) => s,
        Err(e) => panic!("malformed markers: {e:?}"),
    }
}

/// Every file of a tree, by relative path.
fn read_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for e in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let e = e.unwrap();
            let path = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(dir.join(&path)).unwrap());
            }
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for (path, bytes) in read_tree(from) {
        let dest = to.join(&path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
}

/// The grading tree of lab `lab` built from the student tree at `student`, read back.
fn grading_tree(
    sources: &[SourceFile],
    lab: u8,
    student: &Path,
    at: &Path,
) -> (BTreeMap<PathBuf, Vec<u8>>, Submission) {
    let sub = submission::read(sources, lab, student);
    export::write_grading_tree(root(), sources, lab, &sub, at).unwrap();
    (read_tree(at), sub)
}

fn edit(tree: &Path, file: &str, f: impl FnOnce(String) -> String) {
    let path = tree.join(file);
    let before = std::fs::read_to_string(&path).unwrap();
    let after = f(before.clone());
    assert!(
        before != after,
        "the cheat on {file} changes nothing: update it"
    );
    std::fs::write(path, after).unwrap();
}

/// A change to a student tree.
type Cheat = Box<dyn Fn(&Path)>;

/// Every way of changing a lab 1 student tree outside its regions that a student wanting the
/// marks might try (each worked on the local `cargo grade` of an earlier version, or could).
fn cheats() -> Vec<(&'static str, Cheat)> {
    vec![
        (
            "the graded tests gutted (an early return in each)",
            Box::new(|t: &Path| {
                edit(t, "kernel/src/mm/ktests.rs", |s| {
                    s.replace(
                        "fn splitting_a_block_leaves_one_free_block_at_each_lower_order() {",
                        "fn splitting_a_block_leaves_one_free_block_at_each_lower_order() {\n    return;",
                    )
                    .replace(
                        "fn freeing_both_buddies_merges_them_into_one_block() {",
                        "fn freeing_both_buddies_merges_them_into_one_block() {\n    return;",
                    )
                })
            }),
        ),
        (
            "the manifest of graded files deleted",
            Box::new(|t: &Path| std::fs::remove_file(t.join(export::MANIFEST)).unwrap()),
        ),
        (
            "the seeded RNG edited",
            Box::new(|t: &Path| {
                edit(t, "zsmalloc/src/seeded.rs", |s| {
                    s.replacen(
                        "pub fn below(&mut self, n: u64) -> u64 {",
                        "pub fn below(&mut self, n: u64) -> u64 {\n        return 0;",
                        1,
                    )
                })
            }),
        ),
        (
            "the page counter lab 7 is judged by edited",
            Box::new(|t: &Path| {
                edit(t, "zsmalloc/src/pool/mod.rs", |s| {
                    s.replace(
                        "self.pages_allocated.load(Ordering::Relaxed)\n",
                        "self.pages_allocated.load(Ordering::Relaxed) / 2\n",
                    )
                })
            }),
        ),
        (
            "the trace families and the replayer edited",
            Box::new(|t: &Path| {
                edit(t, "zsmalloc/src/families.rs", |s| {
                    format!("{s}\n// easier traces\n")
                });
                edit(t, "zsmalloc/src/trace.rs", |s| {
                    format!("{s}\n// fewer pages\n")
                });
            }),
        ),
        (
            "the grader edited to give full marks",
            Box::new(|t: &Path| {
                edit(t, "labs/src/grade.rs", |s| {
                    s.replace("(false, _) => 0,", "(false, _) => self.max_points,")
                })
            }),
        ),
        (
            "the test framework edited to pass everything",
            Box::new(|t: &Path| {
                edit(t, "kernel/src/ktest/runner.rs", |s| {
                    s.replace("(test.func)();", "let _ = test.func;")
                })
            }),
        ),
        (
            "the Classroom workflow edited",
            Box::new(|t: &Path| {
                edit(t, export::WORKFLOW, |s| {
                    s.replace("command: cargo grade", "command: true ||")
                })
            }),
        ),
        (
            "the build changed (a build script, a cargo config)",
            Box::new(|t: &Path| {
                std::fs::write(t.join("kernel/build.rs"), "fn main() {}\n").unwrap();
                edit(t, ".cargo/config.toml", |s| {
                    format!("{s}\n[build]\nrustflags = [\"--cfg\", \"cheat\"]\n")
                });
            }),
        ),
        (
            "a file added beside the regions",
            Box::new(|t: &Path| {
                std::fs::write(t.join("kernel/src/mm/extra.rs"), "pub fn x() {}\n").unwrap()
            }),
        ),
    ]
}

#[test]
fn a_grading_tree_depends_only_on_the_region_bodies_whatever_else_the_student_changed() {
    let dir = scratch("cheats");
    let sources = sources();
    let student = dir.join("student");
    export::export_tree(root(), 1, &student).unwrap();
    let (clean, sub) = grading_tree(&sources, 1, &student, &dir.join("graded"));
    assert!(sub.problems.is_empty(), "{:?}", sub.problems);
    let lab1_regions = sources
        .iter()
        .flat_map(|s| s.regions())
        .filter(|r| r.kind == labs::markers::Kind::Lab(1) && !r.text)
        .count();
    assert!(lab1_regions >= 3);
    assert_eq!(
        sub.regions.len(),
        lab1_regions,
        "every lab 1 region is read"
    );
    assert!(
        clean
            .keys()
            .any(|p| p.starts_with("kernel/src/mm") && p.to_string_lossy().contains("hidden")),
        "the grading tree has the instructor's hidden tests"
    );
    for (what, cheat) in cheats() {
        let cheated = dir.join("cheated");
        let _ = std::fs::remove_dir_all(&cheated);
        copy_tree(&student, &cheated);
        cheat(&cheated);
        assert_ne!(
            read_tree(&cheated),
            read_tree(&student),
            "{what}: the cheat changed nothing"
        );
        let (graded, sub) = grading_tree(&sources, 1, &cheated, &dir.join("graded"));
        assert!(sub.problems.is_empty(), "{what}: {:?}", sub.problems);
        let differ: Vec<&PathBuf> = clean
            .keys()
            .chain(graded.keys())
            .filter(|p| clean.get(*p) != graded.get(*p))
            .collect();
        assert!(
            differ.is_empty(),
            "{what}: the grading tree differs in {differ:?}"
        );
    }

    // The regions are what counts: the reference solution written into them changes the
    // grading tree in the one file that holds them, and only between their markers.
    let solved = dir.join("solved");
    copy_tree(&student, &solved);
    assert_eq!(
        export::fill_reference(root(), 1, &solved).unwrap(),
        lab1_regions
    );
    let (graded, sub) = grading_tree(&sources, 1, &solved, &dir.join("graded"));
    assert!(sub.problems.is_empty(), "{:?}", sub.problems);
    let differ: Vec<&PathBuf> = clean
        .keys()
        .filter(|p| clean.get(*p) != graded.get(*p))
        .collect();
    assert_eq!(differ, [&PathBuf::from("kernel/src/mm/buddy.rs")]);
    let buddy =
        String::from_utf8(graded[&PathBuf::from("kernel/src/mm/buddy.rs")].clone()).unwrap();
    let ours = std::fs::read_to_string(root().join("kernel/src/mm/buddy.rs")).unwrap();
    let regions = labs::markers::parse("buddy.rs", &ours).unwrap();
    let solutions = labs::markers::render(&ours, labs::markers::Syntax::Slash, &regions, |_, _| {
        labs::markers::Fill::Solution
    });
    let strip_markers = |s: &str| {
        s.lines()
            .filter(|l| !labs::markers::is_marker_line(l, labs::markers::Syntax::Slash))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_markers(&buddy), strip_markers(&solutions));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_region_missing_out_of_order_or_unbalanced_is_named_and_graded_as_its_stub() {
    let dir = scratch("regions");
    let sources = sources();
    let student = dir.join("student");
    export::export_tree(root(), 1, &student).unwrap();
    let in_buddy = sources
        .iter()
        .find(|s| s.path == Path::new("kernel/src/mm/buddy.rs"))
        .unwrap()
        .regions()
        .iter()
        .filter(|r| r.kind == labs::markers::Kind::Lab(1) && !r.text)
        .count();
    assert!(export::fill_reference(root(), 1, &student).unwrap() >= in_buddy);
    let buddy = "kernel/src/mm/buddy.rs";
    let text = std::fs::read_to_string(student.join(buddy)).unwrap();
    let begins: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            l.trim_start()
                .starts_with(&format!("// {}: BEGIN", "LAB 1"))
        })
        .collect();
    assert_eq!(begins.len(), in_buddy);
    let write = |t: &str| std::fs::write(student.join(buddy), t).unwrap();
    let read = || submission::read(&sources, 1, &student);

    // Missing: the second BEGIN line and its END deleted.
    let lines: Vec<&str> = text.lines().collect();
    let second_end = (begins[1].0..lines.len())
        .find(|&i| lines[i].trim() == format!("// {}: END", "LAB 1"))
        .unwrap();
    let missing: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != begins[1].0 && *i != second_end)
        .map(|(_, l)| *l)
        .collect();
    write(&(missing.join("\n") + "\n"));
    let sub = read();
    assert_eq!(sub.problems.len(), 1, "{:?}", sub.problems);
    let region_2 = format!("lab 1 region 2 of {in_buddy}");
    assert!(
        sub.problems[0].contains(&region_2) && sub.problems[0].contains("missing"),
        "{:?}",
        sub.problems
    );
    assert_eq!(sub.regions.len(), in_buddy - 1, "the others are read");
    let (graded, _) = grading_tree(&sources, 1, &student, &dir.join("graded"));
    let graded_buddy = String::from_utf8(graded[&PathBuf::from(buddy)].clone()).unwrap();
    let refusal = "return Err(FrameError::DoubleFree(pfn));";
    assert!(
        missing.join("\n").contains(refusal),
        "the student's code is still in the file"
    );
    assert!(
        !graded_buddy.contains(refusal),
        "the region without its markers is graded as its stub"
    );

    // Out of order: the first and third regions swapped.
    let block = |k: usize| {
        let end = (begins[k].0..lines.len())
            .find(|&i| lines[i].trim() == format!("// {}: END", "LAB 1"))
            .unwrap();
        (begins[k].0, end)
    };
    let (a0, a1) = block(0);
    let (c0, c1) = block(2);
    let mut swapped: Vec<&str> = lines[..a0].to_vec();
    swapped.extend(&lines[c0..=c1]);
    swapped.extend(&lines[a1 + 1..c0]);
    swapped.extend(&lines[a0..=a1]);
    swapped.extend(&lines[c1 + 1..]);
    write(&(swapped.join("\n") + "\n"));
    let sub = read();
    assert!(
        sub.problems
            .iter()
            .any(|p| p.contains(&format!("of {in_buddy}")) && p.contains("out of order")),
        "{:?}",
        sub.problems
    );

    // Unbalanced: an END deleted.
    let unbalanced: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != second_end)
        .map(|(_, l)| *l)
        .collect();
    write(&(unbalanced.join("\n") + "\n"));
    let sub = read();
    assert_eq!(sub.regions.len(), 0);
    assert!(
        sub.problems[0].starts_with(&format!("{buddy}:"))
            && sub.problems[0].contains("do not balance")
            && sub.problems[0].contains("graded as their stubs"),
        "{:?}",
        sub.problems
    );

    // Missing file, and a file that is not text.
    std::fs::write(student.join(buddy), [0xff, 0xfe, 0x00]).unwrap();
    assert!(read().problems[0].contains("is not UTF-8 text"));
    std::fs::remove_file(student.join(buddy)).unwrap();
    assert!(read().problems[0].contains("is missing"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn planned(name: &str, points: u16, hidden: bool) -> Planned {
    Planned {
        name: name.into(),
        cpus: 0,
        lab: 1,
        points,
        hidden,
    }
}

fn result(name: &str, passed: bool) -> TestResult {
    TestResult {
        name: name.into(),
        outcome: if passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        },
        micros: 5,
        output: String::new(),
        awarded: None,
        figures: Vec::new(),
    }
}

#[test]
fn tests_a_submission_registers_or_reports_twice_never_score() {
    let instructor = [
        planned("mm::a", 50, false),
        planned("mm::hidden::b", 50, true),
    ];
    let report = SuiteReport {
        results: vec![
            result("mm::a", true),
            result("mm::a", true),
            result("mm::hidden::b", true),
            result("mm::buddy::fake", true),
        ],
        planned: vec![
            planned("mm::a", 50, false),
            planned("mm::buddy::fake", 900, false),
        ],
        boots: 1,
        problems: Vec::new(),
    };
    let g = trusted::score_against(1, &instructor, &report);
    assert_eq!((g.score(), g.max()), (50, 100), "{g:?}");
    assert!(!g.tests[0].passed);
    assert!(g.tests[0].output.contains("reported this test 2 times"));
    assert!(g.tests[1].passed && g.tests[1].hidden);
    assert!(
        g.notes.iter().any(|n| n.contains("mm::buddy::fake")),
        "{:?}",
        g.notes
    );
}

#[test]
fn similarity_ignores_layout_comments_and_renamed_locals_but_not_other_code() {
    let known =
        similarity::identifiers("fn merge(pfn: u64) { self.unlink(buddy, order); MAX_ORDER }");
    let norm = |code: &str| {
        similarity::shingles(&similarity::normalized(&similarity::tokens(code), &known))
    };
    let a = "let mut p = pfn; while order < MAX_ORDER { let b = p ^ (1 << order); self.unlink(b, order); p = p.min(b); order += 1; }";
    let renamed = "// merge upward\nlet mut block = pfn;\nwhile order < MAX_ORDER {\n    let bud = block ^ (1 << order); // the buddy\n    self.unlink(bud, order);\n    block = block.min(bud);\n    order += 1;\n}";
    let other =
        "for o in order..MAX_ORDER { if !self.is_free(pfn, o) { break; } self.unlink(pfn, o); }";
    assert_eq!(similarity::jaccard(&norm(a), &norm(renamed)), 1.0);
    let s = similarity::jaccard(&norm(a), &norm(other));
    assert!(s < 0.3, "different code: {s}");
    assert_eq!(similarity::jaccard(&norm(""), &norm(a)), 0.0);
    assert_eq!(
        similarity::tokens("x /* a */ + \"s // t\" // c"),
        ["x", "+", "\"s // t\""]
    );
}
