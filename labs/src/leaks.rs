//! The leak check: no line of a lab's solution may appear anywhere in that lab's student
//! tree (in another file, a doc, a test's expected value, the stub). Lines are compared
//! without comments and whitespace; lines too short to give anything away (`}`, `i += 1;`,
//! `return None;`) are not compared.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::markers::Syntax;

/// A solution line needs this many characters, once normalized, to be compared: shorter
/// lines are generic code that any file may hold.
pub const MIN_CHARS: usize = 18;
/// ...and this many identifiers, numbers or keywords.
pub const MIN_WORDS: usize = 3;

/// A line without its comment (`//` in code, `#` in TOML and shell; Markdown keeps all) and
/// without whitespace but one space between two words (and, in text, without the backticks
/// that quote code).
pub fn normalize(line: &str, syntax: Option<Syntax>) -> String {
    let code = match syntax {
        Some(Syntax::Slash) => strip_comment(line, "//"),
        Some(Syntax::Hash) => strip_comment(line, "#"),
        _ => line,
    };
    let code = code.trim_start_matches("///").trim_start_matches("//!");
    // Text quotes code between backticks: compare what is quoted.
    let text = matches!(syntax, Some(Syntax::Html) | None);
    // Whitespace goes, but for one space between two words (`if order`, not `iforder`).
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(code.len());
    let mut gap = false;
    for c in code.chars().filter(|&c| !(text && c == '`')) {
        if c.is_whitespace() {
            gap = true;
            continue;
        }
        if gap && out.ends_with(word) && word(c) {
            out.push(' ');
        }
        gap = false;
        out.push(c);
    }
    out
}

/// `line` up to a comment that starts outside a string literal.
fn strip_comment<'a>(line: &'a str, opener: &str) -> &'a str {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if line[i..].starts_with(opener) {
            return &line[..i];
        }
    }
    line
}

/// Whether a normalized line is too generic to count as a leak: short, an import (`use
/// ...;` names an API the handout names anyway), or a binding of a plain path
/// (`let size = self.layout.size;` says nothing of a solution).
pub fn is_trivial(normalized: &str) -> bool {
    let words = normalized
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .count();
    let path_binding = normalized
        .strip_prefix("let ")
        .and_then(|r| r.strip_suffix(';'))
        .and_then(|r| r.split_once('='))
        .is_some_and(|(name, path)| {
            let ident = |s: &str| s.chars().all(|c| c.is_alphanumeric() || c == '_');
            ident(name.strip_prefix("mut ").unwrap_or(name))
                && path
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_.:".contains(c))
        });
    let import = normalized.starts_with("use ") && normalized.ends_with(';');
    normalized.chars().count() < MIN_CHARS || words < MIN_WORDS || path_binding || import
}

/// One solution line found in a student tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The lab whose solution leaks.
    pub lab: u8,
    /// Where the solution line is in the instructor's tree.
    pub solution: (PathBuf, usize),
    /// Where it is in the student tree.
    pub found: (PathBuf, usize),
    /// The line as the student tree has it.
    pub text: String,
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` is lab {}'s solution line {}:{}",
            self.found.0.display(),
            self.found.1,
            self.text.trim(),
            self.lab,
            self.solution.0.display(),
            self.solution.1
        )
    }
}

/// A solution line to look for: its lab, where it is, and its text.
pub struct SolutionLine {
    /// Its lab.
    pub lab: u8,
    /// Its file in the instructor's tree.
    pub file: PathBuf,
    /// Its 1-based line.
    pub line: usize,
    /// The line.
    pub text: String,
    /// The syntax of its file.
    pub syntax: Option<Syntax>,
    /// Which region of its file it belongs to (lines of one region follow each other).
    pub region: usize,
}

/// A single line leaks if it is at least this long once normalized: long enough to carry a
/// solution's logic. Shorter lines leak only two at a time (see [`find`]).
pub const LONG_CHARS: usize = 40;

/// Every place in `tree` (path, syntax, text of each file) that holds a solution line:
/// a non-trivial line of [`LONG_CHARS`] or more, or two non-trivial lines that follow each
/// other in a region and do so in the file too (trivial lines between them skipped). A
/// short line alone (`let d = self.desc(pfn);`, an error return) is an idiom the code
/// around a region uses too; two in a row, or one long one, are a copy.
pub fn find(solution: &[SolutionLine], tree: &[(PathBuf, Option<Syntax>, String)]) -> Vec<Leak> {
    let mut singles: HashMap<String, &SolutionLine> = HashMap::new();
    let mut pairs: HashMap<(String, String), &SolutionLine> = HashMap::new();
    let mut previous: Option<(String, &SolutionLine)> = None;
    for s in solution {
        let n = normalize(&s.text, s.syntax);
        if is_trivial(&n) {
            continue;
        }
        if n.chars().count() >= LONG_CHARS {
            singles.entry(n.clone()).or_insert(s);
        }
        if let Some((p, ps)) = &previous
            && ps.file == s.file
            && ps.region == s.region
        {
            pairs.entry((p.clone(), n.clone())).or_insert(ps);
        }
        previous = Some((n, s));
    }
    let mut leaks = Vec::new();
    for (path, syntax, text) in tree {
        let mut before: Option<(String, usize, &str)> = None;
        for (i, line) in text.lines().enumerate() {
            let n = normalize(line, *syntax);
            if is_trivial(&n) {
                continue;
            }
            let pair = before.as_ref().and_then(|(p, at, first)| {
                pairs
                    .get(&(p.clone(), n.clone()))
                    .map(|s| (*s, *at, *first))
            });
            let single = singles.get(&n).map(|s| (*s, i + 1, line));
            for (s, at, shown) in pair.into_iter().chain(single) {
                leaks.push(Leak {
                    lab: s.lab,
                    solution: (s.file.clone(), s.line),
                    found: (path.clone(), at),
                    text: shown.to_string(),
                });
            }
            before = Some((n, i + 1, line));
        }
    }
    leaks
}
