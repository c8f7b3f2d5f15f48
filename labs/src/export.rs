//! Writing trees from the one source tree: the student tree of a lab (`cargo lab export`),
//! and the tree a trusted grading builds (the instructor's tree with one lab's regions taken
//! from a submission).
//!
//! A student tree holds no staff text, no hidden test, and no line of its lab's solution:
//! the exporter refuses to write one that would (see [`crate::leaks`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::leaks::{self, Leak, SolutionLine};
use crate::markers::{self, Fill, Kind, MarkerError, Parsed, Syntax};
use crate::submission::Submission;
use crate::tables::{self, TableEntry};

/// Where, in a student tree, the manifest of graded test files is.
pub const MANIFEST: &str = ".lab/graded-files";
/// Where, in a student tree, the lab it was exported for is.
pub const LAB_FILE: &str = ".lab/lab";
/// Where, in a student tree, the GitHub Classroom workflow is.
pub const WORKFLOW: &str = ".github/workflows/classroom.yml";

/// Directories never copied or scanned.
const SKIPPED_DIRS: &[&str] = &["target", ".git"];

/// One file of the tree and its regions.
pub struct SourceFile {
    /// Path relative to the tree's root.
    pub path: PathBuf,
    /// Its comment syntax, if it is a file markers can be in.
    pub syntax: Option<Syntax>,
    /// Its regions (none for files without markers and files of no known syntax).
    pub parsed: Parsed,
}

impl SourceFile {
    /// The regions.
    pub fn regions(&self) -> &[markers::Region] {
        &self.parsed.regions
    }
}

/// Every file under `root` (skipping `target/` and `.git/`), relative paths, sorted.
fn files(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for entry in fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let name = entry.file_name();
            let path = rel.join(&name);
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                    dirs.push(path);
                }
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every file of the tree that markers can be in, with its regions; every malformed
/// marker is reported.
pub fn scan(root: &Path) -> io::Result<Result<Vec<SourceFile>, Vec<MarkerError>>> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in files(root)? {
        let syntax = Syntax::of(&path);
        let parsed = match syntax {
            Some(syntax) => {
                let text = fs::read_to_string(root.join(&path))?;
                markers::parse_with(&path.to_string_lossy(), &text, syntax).unwrap_or_else(|e| {
                    errors.push(e);
                    Parsed::default()
                })
            }
            None => Parsed::default(),
        };
        sources.push(SourceFile {
            path,
            syntax,
            parsed,
        });
    }
    Ok(if errors.is_empty() {
        Ok(sources)
    } else {
        Err(errors)
    })
}

/// Solution regions per lab: (code regions, text regions).
pub fn regions_per_lab(sources: &[SourceFile]) -> BTreeMap<u8, (usize, usize)> {
    let mut per_lab = BTreeMap::new();
    for r in sources.iter().flat_map(|s| s.regions()) {
        if let Some(lab) = r.lab() {
            let counts: &mut (usize, usize) = per_lab.entry(lab).or_default();
            if r.text {
                counts.1 += 1;
            } else {
                counts.0 += 1;
            }
        }
    }
    per_lab
}

/// Lines of code (not blank, not comments) in each lab's code regions: what a student writes.
pub fn solution_lines_per_lab(
    root: &Path,
    sources: &[SourceFile],
) -> io::Result<BTreeMap<u8, usize>> {
    let mut per_lab = BTreeMap::new();
    for s in sources.iter().filter(|s| s.syntax == Some(Syntax::Slash)) {
        if s.regions().iter().all(|r| r.lab().is_none()) {
            continue;
        }
        let text = fs::read_to_string(root.join(&s.path))?;
        let lines: Vec<&str> = text.lines().collect();
        for r in s.regions() {
            let Some(lab) = r.lab() else { continue };
            let code = r
                .solution(&lines)
                .iter()
                .filter(|l| !leaks::normalize(l, s.syntax).is_empty())
                .count();
            *per_lab.entry(lab).or_insert(0) += code;
        }
    }
    Ok(per_lab)
}

/// The test framework, which decides what passes: always protected like the graded tests.
const FRAMEWORK: &str = "kernel/src/ktest/";

/// What the graded tests judge with, protected like them: the trace families lab 7's
/// traces are drawn from and the replayer that runs them.
const JUDGES: &[&str] = &["zsmalloc/src/families.rs", "zsmalloc/src/trace.rs"];

/// Whether a file holds graded tests (a `ktests!` table with a `lab:` entry) or is part of
/// the test framework or what the tests judge with.
fn is_graded_test_file(path: &Path, text: &str) -> bool {
    if path.starts_with(FRAMEWORK) || JUDGES.iter().any(|j| path == Path::new(j)) {
        return true;
    }
    path.extension().is_some_and(|e| e == "rs")
        && text.contains("ktests!")
        && text.lines().any(|l| {
            l.split("lab:")
                .nth(1)
                .is_some_and(|rest| rest.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        })
}

/// SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    /// Files written.
    pub files: usize,
    /// Regions kept as solutions (labs before the exported one).
    pub kept: usize,
    /// Regions replaced by their stubs (or, for text, removed).
    pub stubbed: usize,
    /// Staff regions and staff-only files left out.
    pub staff_left_out: usize,
    /// Graded test files recorded in the manifest.
    pub graded_files: Vec<PathBuf>,
    /// The graded tests of the exported lab that the tree holds (the workflow's steps).
    pub tests: Vec<TableEntry>,
}

/// Why an export did not happen.
#[derive(Debug)]
pub enum ExportError {
    /// Reading or writing failed.
    Io(io::Error),
    /// Malformed markers, each with its file and line.
    Markers(Vec<MarkerError>),
    /// The destination exists and is not empty (nothing is overwritten).
    DestinationNotEmpty(PathBuf),
    /// No region belongs to this lab.
    NoSuchLab(u8),
    /// The tree would hand out hidden tests: (file, line, test).
    HiddenTests(Vec<(PathBuf, usize, String)>),
    /// The tree would hold lines of the lab's solution.
    Leaks(Vec<Leak>),
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Io(e) => write!(f, "{e}"),
            ExportError::Markers(errors) => {
                writeln!(f, "malformed lab markers:")?;
                for e in errors {
                    writeln!(f, "  {e}")?;
                }
                Ok(())
            }
            ExportError::DestinationNotEmpty(d) => write!(
                f,
                "{} exists and is not empty; export into a new or empty directory",
                d.display()
            ),
            ExportError::NoSuchLab(n) => write!(f, "no solution region belongs to lab {n}"),
            ExportError::HiddenTests(tests) => {
                writeln!(
                    f,
                    "hidden tests would be handed out (put them in a STAFF region or a STAFF ONLY file):"
                )?;
                for (file, line, name) in tests {
                    writeln!(f, "  {}:{line}: {name}", file.display())?;
                }
                Ok(())
            }
            ExportError::Leaks(leaks) => {
                writeln!(
                    f,
                    "the student tree would hold lines of its lab's solution (move them into the region, or rewrite the copy):"
                )?;
                for l in leaks {
                    writeln!(f, "  {l}")?;
                }
                Ok(())
            }
        }
    }
}

impl From<io::Error> for ExportError {
    fn from(e: io::Error) -> Self {
        ExportError::Io(e)
    }
}

/// One file of a tree being written: its path, its syntax, and its bytes (text files
/// transformed, others copied).
struct OutFile {
    path: PathBuf,
    syntax: Option<Syntax>,
    bytes: Vec<u8>,
}

/// The student tree of lab `lab`, in memory, and what went into it.
struct StudentTree {
    files: Vec<OutFile>,
    kept: usize,
    stubbed: usize,
    staff_left_out: usize,
}

fn student_tree(root: &Path, sources: &[SourceFile], lab: u8) -> io::Result<StudentTree> {
    let mut tree = StudentTree {
        files: Vec::new(),
        kept: 0,
        stubbed: 0,
        staff_left_out: 0,
    };
    for source in sources {
        if source.parsed.staff_only {
            tree.staff_left_out += 1;
            continue;
        }
        let bytes = fs::read(root.join(&source.path))?;
        let bytes = match source.syntax {
            Some(syntax) if !source.regions().is_empty() => {
                let text = String::from_utf8_lossy(&bytes);
                for r in source.regions() {
                    match r.kind {
                        Kind::Staff => tree.staff_left_out += 1,
                        Kind::Lab(n) if n < lab => tree.kept += 1,
                        Kind::Lab(_) => tree.stubbed += 1,
                    }
                }
                markers::export(&text, syntax, source.regions(), lab).into_bytes()
            }
            _ => bytes,
        };
        tree.files.push(OutFile {
            path: source.path.clone(),
            syntax: source.syntax,
            bytes,
        });
    }
    Ok(tree)
}

/// The graded tests the files declare, hidden ones included.
fn declared_tests(files: &[OutFile]) -> Vec<(PathBuf, TableEntry)> {
    let mut out = Vec::new();
    for f in files {
        let Some(module) = tables::module_path(&f.path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&f.bytes);
        if !text.contains("ktests!") {
            continue;
        }
        for e in tables::entries(&module, &text) {
            out.push((f.path.clone(), e));
        }
    }
    out
}

/// Every line of lab `lab`'s solution regions (code and text), for the leak check.
pub fn solution_lines(
    root: &Path,
    sources: &[SourceFile],
    lab: u8,
) -> io::Result<Vec<SolutionLine>> {
    let mut out = Vec::new();
    for s in sources {
        if !s.regions().iter().any(|r| r.kind == Kind::Lab(lab)) {
            continue;
        }
        let text = fs::read_to_string(root.join(&s.path))?;
        let lines: Vec<&str> = text.lines().collect();
        for (k, r) in s.regions().iter().enumerate() {
            if r.kind != Kind::Lab(lab) {
                continue;
            }
            for (i, l) in r.solution(&lines).iter().enumerate() {
                out.push(SolutionLine {
                    lab,
                    file: s.path.clone(),
                    line: r.begin + 1 + i,
                    text: l.to_string(),
                    syntax: s.syntax,
                    region: k,
                });
            }
        }
    }
    Ok(out)
}

/// The lines of lab `lab`'s solution that its student tree would hold.
pub fn leaks_of(root: &Path, lab: u8) -> Result<Vec<Leak>, ExportError> {
    let sources = scan(root)?.map_err(ExportError::Markers)?;
    let tree = student_tree(root, &sources, lab)?;
    Ok(find_leaks(root, &sources, &tree, lab)?)
}

fn find_leaks(
    root: &Path,
    sources: &[SourceFile],
    tree: &StudentTree,
    lab: u8,
) -> io::Result<Vec<Leak>> {
    let solution = solution_lines(root, sources, lab)?;
    let texts: Vec<(PathBuf, Option<Syntax>, String)> = tree
        .files
        .iter()
        .filter_map(|f| {
            let text = std::str::from_utf8(&f.bytes).ok()?;
            Some((f.path.clone(), f.syntax, text.to_string()))
        })
        .collect();
    Ok(leaks::find(&solution, &texts))
}

/// Writes the student tree for lab `lab` of the tree at `root` into `dest` (new or empty):
/// with the lab's graded tests' Classroom workflow and the manifest of graded files. Refuses
/// a tree that would hold a hidden test or a line of the lab's solution.
pub fn export_tree(root: &Path, lab: u8, dest: &Path) -> Result<Exported, ExportError> {
    let sources = scan(root)?.map_err(ExportError::Markers)?;
    if !sources
        .iter()
        .flat_map(|s| s.regions())
        .any(|r| r.kind == Kind::Lab(lab))
    {
        return Err(ExportError::NoSuchLab(lab));
    }
    if dest.exists() && fs::read_dir(dest)?.next().is_some() {
        return Err(ExportError::DestinationNotEmpty(dest.to_path_buf()));
    }
    let tree = student_tree(root, &sources, lab)?;
    let declared = declared_tests(&tree.files);
    let hidden: Vec<(PathBuf, usize, String)> = declared
        .iter()
        .filter(|(_, e)| e.hidden)
        .map(|(p, e)| (p.clone(), e.line, e.name.clone()))
        .collect();
    if !hidden.is_empty() {
        return Err(ExportError::HiddenTests(hidden));
    }
    let leaks = find_leaks(root, &sources, &tree, lab)?;
    if !leaks.is_empty() {
        return Err(ExportError::Leaks(leaks));
    }
    let tests: Vec<TableEntry> = declared
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.lab == lab && e.points > 0)
        .collect();

    let mut done = Exported {
        files: 0,
        kept: tree.kept,
        stubbed: tree.stubbed,
        staff_left_out: tree.staff_left_out,
        graded_files: Vec::new(),
        tests: tests.clone(),
    };
    let mut manifest = String::new();
    for f in &tree.files {
        let to = dest.join(&f.path);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&to, &f.bytes)?;
        copy_permissions(&root.join(&f.path), &to)?;
        done.files += 1;
        if is_graded_test_file(&f.path, &String::from_utf8_lossy(&f.bytes)) {
            manifest.push_str(&format!("{}  {}\n", sha256_hex(&f.bytes), f.path.display()));
            done.graded_files.push(f.path.clone());
        }
    }
    let workflow = dest.join(WORKFLOW);
    fs::create_dir_all(
        workflow
            .parent()
            .expect("the workflow's path has a directory"),
    )?;
    fs::write(&workflow, crate::classroom::workflow(&tests, &[lab]))?;
    done.files += 1;
    fs::create_dir_all(dest.join(".lab"))?;
    fs::write(dest.join(MANIFEST), manifest)?;
    fs::write(dest.join(LAB_FILE), format!("{lab}\n"))?;
    Ok(done)
}

/// Keeps a script executable in the copy.
fn copy_permissions(from: &Path, to: &Path) -> io::Result<()> {
    fs::set_permissions(to, fs::metadata(from)?.permissions())
}

/// Writes the tree a trusted grading of lab `lab` builds into `dest`: the instructor's tree
/// (staff text and hidden tests included), the solutions of earlier labs, `submission`'s
/// bodies in lab `lab`'s regions (the stub where it has none), the stubs of later labs.
/// Only files whose bytes change are written, and files no longer in the tree are removed,
/// so the build cache stays warm from one submission to the next. Returns the files written.
pub fn write_grading_tree(
    root: &Path,
    sources: &[SourceFile],
    lab: u8,
    submission: &Submission,
    dest: &Path,
) -> io::Result<usize> {
    let mut written = 0;
    let mut keep = BTreeSet::new();
    for source in sources {
        let from = root.join(&source.path);
        let bytes = match source.syntax {
            Some(syntax) if !source.regions().is_empty() => {
                let text = fs::read_to_string(&from)?;
                markers::render(&text, syntax, source.regions(), |i, r| match r.kind {
                    Kind::Staff => Fill::Solution,
                    Kind::Lab(n) if n < lab => Fill::Solution,
                    Kind::Lab(n) if n == lab => submission
                        .body(&source.path, i)
                        .map_or(Fill::Stub, Fill::Body),
                    Kind::Lab(_) => Fill::Stub,
                })
                .into_bytes()
            }
            _ => fs::read(&from)?,
        };
        let to = dest.join(&source.path);
        keep.insert(source.path.clone());
        if fs::read(&to).ok().as_deref() != Some(&bytes[..]) {
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&to, &bytes)?;
            copy_permissions(&from, &to)?;
            written += 1;
        }
    }
    if dest.exists() {
        for stale in files(dest)?.into_iter().filter(|p| !keep.contains(p)) {
            fs::remove_file(dest.join(stale))?;
        }
    }
    Ok(written)
}

/// In a student tree, the graded test files that differ from the exported ones (changed or
/// missing). Empty where there is no manifest (the instructor's tree).
pub fn changed_graded_files(root: &Path) -> io::Result<Vec<String>> {
    let manifest = match fs::read_to_string(root.join(MANIFEST)) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut changed = Vec::new();
    for line in manifest.lines() {
        let Some((hash, path)) = line.split_once("  ") else {
            changed.push(format!("{MANIFEST}: malformed line `{line}`"));
            continue;
        };
        match fs::read(root.join(path)) {
            Ok(bytes) if sha256_hex(&bytes) == hash => {}
            Ok(_) => changed.push(format!("{path} was changed")),
            Err(_) => changed.push(format!("{path} is missing")),
        }
    }
    Ok(changed)
}

/// Whether `root` is a student tree (it has the lab file an export writes), and for which
/// lab.
pub fn student_tree_lab(root: &Path) -> Option<u8> {
    fs::read_to_string(root.join(LAB_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Writes the reference solution of lab `lab` (this tree's, at `root`) into the lab's regions
/// of the student tree at `dir`, leaving everything else of it as it is; returns the regions
/// filled. What full marks look like, for staff and for the lab system's own tests.
pub fn fill_reference(root: &Path, lab: u8, dir: &Path) -> Result<usize, String> {
    let sources = match scan(root) {
        Ok(Ok(s)) => s,
        Ok(Err(errors)) => {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Err(list.join("\n"));
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut filled = 0;
    for s in sources.iter().filter(|s| s.syntax == Some(Syntax::Slash)) {
        let ours: Vec<&markers::Region> = s
            .regions()
            .iter()
            .filter(|r| r.kind == Kind::Lab(lab) && !r.text)
            .collect();
        if ours.is_empty() {
            continue;
        }
        let our_text = fs::read_to_string(root.join(&s.path)).map_err(|e| e.to_string())?;
        let our_lines: Vec<&str> = our_text.lines().collect();
        let path = dir.join(&s.path);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let theirs = markers::parse_with(&path.display().to_string(), &text, Syntax::Slash)
            .map_err(|e| e.to_string())?
            .regions;
        let bodies: Vec<Vec<String>> = ours
            .iter()
            .map(|r| {
                r.solution(&our_lines)
                    .iter()
                    .map(|l| l.to_string())
                    .collect()
            })
            .collect();
        // Regions of other labs keep what they hold.
        let their_lines: Vec<&str> = text.lines().collect();
        let kept: Vec<Vec<String>> = theirs
            .iter()
            .map(|r| {
                their_lines[r.begin..r.end - 1]
                    .iter()
                    .map(|l| l.to_string())
                    .collect()
            })
            .collect();
        let mut next = 0;
        let out = markers::render(&text, Syntax::Slash, &theirs, |i, r| {
            if r.kind == Kind::Lab(lab)
                && let Some(body) = bodies.get(next)
            {
                next += 1;
                return Fill::Body(body);
            }
            Fill::Body(&kept[i])
        });
        if next != bodies.len() {
            return Err(format!(
                "{}: {next} lab {lab} regions, {} expected",
                path.display(),
                bodies.len()
            ));
        }
        fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
        filled += next;
    }
    Ok(filled)
}
