//! A student's submission as trusted grading sees it: the bodies of one lab's regions, read
//! from the student's tree, and nothing else. Each region of the instructor's tree is found
//! in the student's file of the same path by its `BEGIN` line; a region that is missing,
//! out of order or unbalanced there is named in a problem and graded as its stub.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::export::SourceFile;
use crate::markers::{self, Kind, Syntax};

/// A student file larger than this is not read (no source file of the tree comes close).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One lab's region bodies from a student tree.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// (file, index of the region among the file's regions) to the student's lines.
    bodies: HashMap<(PathBuf, usize), Vec<String>>,
    /// What could not be read, each naming its region: those regions are graded as stubs.
    pub problems: Vec<String>,
    /// The regions read, in the instructor's order: (file, BEGIN description, body).
    pub regions: Vec<(PathBuf, String, Vec<String>)>,
}

impl Submission {
    /// The student's body for region `index` of `file`, if it was read.
    pub fn body(&self, file: &Path, index: usize) -> Option<&[String]> {
        self.bodies
            .get(&(file.to_path_buf(), index))
            .map(Vec::as_slice)
    }

    /// A submission with `body` for one region (for tests).
    pub fn with_body(file: &Path, index: usize, body: Vec<String>) -> Submission {
        let mut s = Submission::default();
        s.bodies.insert((file.to_path_buf(), index), body);
        s
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads lab `lab`'s region bodies from the student tree at `dir`, for the regions of the
/// instructor's `sources`. Never fails: what cannot be read becomes a problem.
pub fn read(sources: &[SourceFile], lab: u8, dir: &Path) -> Submission {
    let mut sub = Submission::default();
    for source in sources {
        if source.syntax != Some(Syntax::Slash) {
            continue;
        }
        let wanted: Vec<(usize, &markers::Region)> = source
            .regions()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == Kind::Lab(lab) && !r.text)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let shown = source.path.display();
        let name = |k: usize, r: &markers::Region| {
            format!(
                "{shown}: lab {lab} region {} of {} (\"{}\")",
                k + 1,
                wanted.len(),
                r.description
            )
        };
        let path = dir.join(&source.path);
        let text = match fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() <= MAX_FILE_BYTES => {
                match fs::read(&path).map(String::from_utf8) {
                    Ok(Ok(t)) => Ok(t),
                    Ok(Err(_)) => Err("is not UTF-8 text".to_string()),
                    Err(e) => Err(format!("cannot be read: {e}")),
                }
            }
            Ok(m) if m.is_file() => Err(format!("is larger than {MAX_FILE_BYTES} bytes")),
            Ok(_) => Err("is not a file".to_string()),
            Err(_) => Err("is missing".to_string()),
        };
        let text = match text {
            Ok(t) => t,
            Err(why) => {
                sub.problems.push(format!(
                    "{shown} {why}: its {} lab {lab} region(s) are graded as their stubs",
                    wanted.len()
                ));
                continue;
            }
        };
        let theirs = match markers::parse_with(&shown.to_string(), &text, Syntax::Slash) {
            Ok(p) => p.regions,
            Err(e) => {
                sub.problems.push(format!(
                    "{e}: the markers of this file do not balance, so its {} lab {lab} region(s) are graded as their stubs",
                    wanted.len()
                ));
                continue;
            }
        };
        let lines: Vec<&str> = text.lines().collect();
        // The student's regions are what they wrote: text or not, they count by their BEGIN.
        let theirs: Vec<&markers::Region> =
            theirs.iter().filter(|r| r.kind == Kind::Lab(lab)).collect();
        // Match in order: each region is looked for after the previous match.
        let (mut next, mut matched) = (0, 0);
        for (k, (index, r)) in wanted.iter().enumerate() {
            let want = squash(&r.description);
            match theirs[next..]
                .iter()
                .position(|t| squash(&t.description) == want)
            {
                Some(j) => {
                    let t = theirs[next + j];
                    if t.stub_line.is_some() {
                        sub.problems.push(format!(
                            "{}: a STUB marker at line {} is not the student's to write; graded as its stub",
                            name(k, r),
                            t.stub_line.unwrap_or(0)
                        ));
                    } else {
                        let body: Vec<String> =
                            t.solution(&lines).iter().map(|l| l.to_string()).collect();
                        sub.bodies
                            .insert((source.path.clone(), *index), body.clone());
                        sub.regions
                            .push((source.path.clone(), r.description.clone(), body));
                    }
                    next += j + 1;
                    matched += 1;
                }
                None if theirs[..next]
                    .iter()
                    .any(|t| squash(&t.description) == want) =>
                {
                    sub.problems.push(format!(
                        "{}: out of order (its BEGIN line comes before the region it should follow); graded as its stub",
                        name(k, r)
                    ));
                }
                None => sub.problems.push(format!(
                    "{}: missing (no `// LAB {lab}: BEGIN {}` line); graded as its stub",
                    name(k, r),
                    r.description
                )),
            }
        }
        let extra = theirs.len() - matched;
        if extra > 0 {
            sub.problems.push(format!(
                "{shown}: {extra} lab {lab} region(s) that match none handed out are ignored"
            ));
        }
    }
    sub
}
