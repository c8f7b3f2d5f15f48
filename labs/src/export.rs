//! Writing a student tree: every file of the source tree copied, solution regions of the lab
//! and later ones replaced by their stubs, and a manifest of the graded test files so that
//! the grader can tell whether a student changed them.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::markers::{self, MarkerError, Region};

/// Where, in a student tree, the manifest of graded test files is.
pub const MANIFEST: &str = ".lab/graded-files";
/// Where, in a student tree, the lab it was exported for is.
pub const LAB_FILE: &str = ".lab/lab";

/// Directories never copied or scanned.
const SKIPPED_DIRS: &[&str] = &["target", ".git"];

/// One source file and its regions.
pub struct SourceFile {
    /// Path relative to the tree's root.
    pub path: PathBuf,
    /// The regions it holds (empty for files without markers, and for non-Rust files).
    pub regions: Vec<Region>,
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

/// Reads every Rust file of the tree and its regions; every malformed marker is reported.
pub fn scan(root: &Path) -> io::Result<Result<Vec<SourceFile>, Vec<MarkerError>>> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in files(root)? {
        let regions = if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(root.join(&path))?;
            match markers::parse(&path.to_string_lossy(), &text) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        sources.push(SourceFile { path, regions });
    }
    Ok(if errors.is_empty() {
        Ok(sources)
    } else {
        Err(errors)
    })
}

/// Solution regions per lab.
pub fn regions_per_lab(sources: &[SourceFile]) -> BTreeMap<u8, usize> {
    let mut per_lab = BTreeMap::new();
    for r in sources.iter().flat_map(|s| &s.regions) {
        *per_lab.entry(r.lab).or_insert(0) += 1;
    }
    per_lab
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
    /// Regions replaced by their stubs.
    pub stubbed: usize,
    /// Graded test files recorded in the manifest.
    pub graded_files: Vec<PathBuf>,
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
        }
    }
}

impl From<io::Error> for ExportError {
    fn from(e: io::Error) -> Self {
        ExportError::Io(e)
    }
}

/// Writes the student tree for lab `lab` of the tree at `root` into `dest` (new or empty).
pub fn export_tree(root: &Path, lab: u8, dest: &Path) -> Result<Exported, ExportError> {
    let sources = scan(root)?.map_err(ExportError::Markers)?;
    if !sources
        .iter()
        .flat_map(|s| &s.regions)
        .any(|r| r.lab == lab)
    {
        return Err(ExportError::NoSuchLab(lab));
    }
    if dest.exists() && fs::read_dir(dest)?.next().is_some() {
        return Err(ExportError::DestinationNotEmpty(dest.to_path_buf()));
    }
    let mut done = Exported {
        files: 0,
        kept: 0,
        stubbed: 0,
        graded_files: Vec::new(),
    };
    let mut manifest = String::new();
    for source in &sources {
        let from = root.join(&source.path);
        let to = dest.join(&source.path);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        if source.regions.is_empty() {
            fs::copy(&from, &to)?;
        } else {
            let text = fs::read_to_string(&from)?;
            fs::write(&to, markers::export(&text, &source.regions, lab))?;
            done.kept += source.regions.iter().filter(|r| r.lab < lab).count();
            done.stubbed += source.regions.iter().filter(|r| r.lab >= lab).count();
        }
        done.files += 1;
        let written = fs::read(&to)?;
        if is_graded_test_file(&source.path, &String::from_utf8_lossy(&written)) {
            manifest.push_str(&format!(
                "{}  {}\n",
                sha256_hex(&written),
                source.path.display()
            ));
            done.graded_files.push(source.path.clone());
        }
    }
    fs::create_dir_all(dest.join(".lab"))?;
    fs::write(dest.join(MANIFEST), manifest)?;
    fs::write(dest.join(LAB_FILE), format!("{lab}\n"))?;
    Ok(done)
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
