//! Marker lines: what in the one source tree belongs to a lab's solution, and what only the
//! staff may see.
//!
//! ```text
//! // LAB 1: BEGIN split a block down to the order asked for
//! ...the solution...
//! // LAB 1: STUB
//! // ...what replaces it in a student tree, each line commented out here...
//! // LAB 1: END
//!
//! // STAFF: BEGIN hidden tests
//! ...never in a student tree...
//! // STAFF: END
//!
//! // STAFF ONLY: answer key        (anywhere in a file: the file is never exported)
//! ```
//!
//! A marker is a whole comment line in the file's own comment syntax ([`Syntax`]): `// ...`
//! in Rust, `<!-- ... -->` in Markdown and HTML, `# ...` in TOML, YAML and shell. A lab
//! region's `STUB` part is optional (code only); without it a Rust student tree gets
//! `todo!("lab N: <description>")`. Regions never nest, and every `BEGIN` has the `END` of
//! the same kind. A line that starts like a marker but is not one is an error, so a typo
//! never silently becomes solution text in a student's tree.

use std::fmt;
use std::path::Path;

/// How a file writes a comment line, and so its marker lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `// ...` (Rust).
    Slash,
    /// `<!-- ... -->` (Markdown, HTML): text regions, no stub.
    Html,
    /// `# ...` (TOML, YAML, shell, Python).
    Hash,
}

impl Syntax {
    /// The syntax of a file, by its extension; `None` for files that are never scanned.
    pub fn of(path: &Path) -> Option<Syntax> {
        match path.extension()?.to_str()? {
            "rs" => Some(Syntax::Slash),
            "md" | "html" => Some(Syntax::Html),
            "toml" | "yml" | "yaml" | "sh" | "py" => Some(Syntax::Hash),
            _ => None,
        }
    }

    /// The text of a comment line (`// X` gives `X`), or `None` if the line is not a plain
    /// comment (`/// X` and `//! X` are doc comments, never markers).
    fn comment_text(self, line: &str) -> Option<&str> {
        let t = line.trim();
        match self {
            Syntax::Slash => {
                let rest = t.strip_prefix("//")?;
                (!rest.starts_with('/') && !rest.starts_with('!')).then(|| rest.trim())
            }
            Syntax::Html => Some(t.strip_prefix("<!--")?.strip_suffix("-->")?.trim()),
            Syntax::Hash => Some(t.strip_prefix('#')?.trim()),
        }
    }

    /// A marker line with `text` inside, indented by `indent`.
    pub fn marker_line(self, indent: &str, text: &str) -> String {
        match self {
            Syntax::Slash => format!("{indent}// {text}"),
            Syntax::Html => format!("{indent}<!-- {text} -->"),
            Syntax::Hash => format!("{indent}# {text}"),
        }
    }

    /// The prefix that comments out a stub line in the solution tree.
    fn stub_prefix(self) -> Option<&'static str> {
        match self {
            Syntax::Slash => Some("//"),
            Syntax::Hash => Some("#"),
            Syntax::Html => None,
        }
    }
}

/// Whose a region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Lab `N`'s solution: stubbed in the student trees of labs up to N, kept in later ones.
    Lab(u8),
    /// Staff only: in no student tree.
    Staff,
}

/// One region of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// A lab's solution, or staff-only text.
    pub kind: Kind,
    /// What to implement (the rest of the `BEGIN` line).
    pub description: String,
    /// 1-based line numbers of the `BEGIN` and `END` lines.
    pub begin: usize,
    /// See `begin`.
    pub end: usize,
    /// The `BEGIN` line's indentation, used for the stub.
    pub indent: String,
    /// The stub's lines, uncommented; `None` for the default.
    pub stub: Option<Vec<String>>,
    /// 1-based line number of the `STUB` line, if any (the solution ends before it).
    pub stub_line: Option<usize>,
    /// A text region: Markdown, or code-file lines that are all comments (a doc comment
    /// that would give the solution away). Student trees of its lab and earlier lose it,
    /// markers and all; it is nobody's to write.
    pub text: bool,
}

impl Region {
    /// The lab whose solution this is, if it is one.
    pub fn lab(&self) -> Option<u8> {
        match self.kind {
            Kind::Lab(n) => Some(n),
            Kind::Staff => None,
        }
    }

    /// The solution's lines (between `BEGIN` and `STUB`, or `END`), from the file's lines.
    pub fn solution<'a>(&self, lines: &[&'a str]) -> Vec<&'a str> {
        lines[self.begin..self.stub_line.unwrap_or(self.end) - 1].to_vec()
    }
}

/// A file's regions and whether the file as a whole is staff-only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// The regions, in file order.
    pub regions: Vec<Region>,
    /// A `STAFF ONLY` line: the file is in no student tree.
    pub staff_only: bool,
}

/// A malformed marker, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerError {
    /// The file, as given to [`parse`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.what)
    }
}

impl std::error::Error for MarkerError {}

/// What a line is to the marker syntax.
enum Marker<'a> {
    Begin(Kind, &'a str),
    Stub(u8),
    End(Kind),
    StaffOnly,
}

fn kind_name(kind: Kind) -> String {
    match kind {
        Kind::Lab(n) => format!("LAB {n}"),
        Kind::Staff => "STAFF".into(),
    }
}

/// The marker a comment's text is, `Ok(None)` if it is no marker, `Err` for text that starts
/// like a marker but is not one.
fn marker(text: &str) -> Result<Option<Marker<'_>>, String> {
    if let Some(rest) = text.strip_prefix("STAFF") {
        if rest.is_empty() || rest.starts_with(" ONLY") {
            return Ok(Some(Marker::StaffOnly));
        }
        let Some(rest) = rest.strip_prefix(':') else {
            return if rest.starts_with(char::is_whitespace) {
                Err(format!(
                    "a staff marker needs `STAFF: BEGIN|END` or `STAFF ONLY`, got `{text}`"
                ))
            } else {
                Ok(None)
            };
        };
        let rest = rest.trim();
        return match rest
            .split_once(' ')
            .map_or((rest, ""), |(k, d)| (k, d.trim()))
        {
            ("BEGIN", note) => Ok(Some(Marker::Begin(Kind::Staff, note))),
            ("END", "") => Ok(Some(Marker::End(Kind::Staff))),
            _ => Err(format!(
                "a staff marker needs `STAFF: BEGIN|END` or `STAFF ONLY`, got `{text}`"
            )),
        };
    }
    let Some(rest) = text.strip_prefix("LAB ") else {
        return Ok(None);
    };
    let (n, rest) = rest
        .split_once(':')
        .ok_or_else(|| format!("a lab marker needs `LAB N: BEGIN|STUB|END`, got `{text}`"))?;
    let n: u8 = n
        .trim()
        .parse()
        .ok()
        .ok_or_else(|| format!("`{n}` is not a lab number (0 to 255)"))?;
    let rest = rest.trim();
    match rest
        .split_once(' ')
        .map_or((rest, ""), |(k, d)| (k, d.trim()))
    {
        ("BEGIN", description) => Ok(Some(Marker::Begin(Kind::Lab(n), description))),
        ("STUB", "") => Ok(Some(Marker::Stub(n))),
        ("END", "") => Ok(Some(Marker::End(Kind::Lab(n)))),
        _ => Err(format!(
            "a lab marker needs `LAB {n}: BEGIN|STUB|END`, got `{text}`"
        )),
    }
}

/// Whether a line is a marker line of `syntax` (well formed or not).
pub fn is_marker_line(line: &str, syntax: Syntax) -> bool {
    syntax
        .comment_text(line)
        .is_some_and(|t| !matches!(marker(t), Ok(None)))
}

/// The regions of a Rust file (see [`parse_with`]).
pub fn parse(file: &str, text: &str) -> Result<Vec<Region>, MarkerError> {
    parse_with(file, text, Syntax::Slash).map(|p| p.regions)
}

/// The regions of one file written in `syntax`, or the first malformed marker (`file` names
/// it in the error).
pub fn parse_with(file: &str, text: &str, syntax: Syntax) -> Result<Parsed, MarkerError> {
    let err = |line: usize, what: String| MarkerError {
        file: file.to_string(),
        line,
        what,
    };
    let mut parsed = Parsed::default();
    // The open region (its `end` is set when its END comes).
    let mut open: Option<Region> = None;
    let all_lines: Vec<&str> = text.lines().collect();
    // Markdown's fenced code blocks show markers as examples; they are never markers.
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        let at = i + 1;
        if syntax == Syntax::Html && line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let found = match syntax.comment_text(line) {
            Some(t) if !in_fence => marker(t).map_err(|e| err(at, e))?,
            _ => None,
        };
        match found {
            Some(Marker::StaffOnly) => {
                if let Some(r) = &open {
                    return Err(err(
                        at,
                        format!(
                            "STAFF ONLY inside the region opened at line {} (it marks a whole file)",
                            r.begin
                        ),
                    ));
                }
                parsed.staff_only = true;
            }
            Some(Marker::Begin(kind, description)) => {
                if let Some(r) = &open {
                    return Err(err(
                        at,
                        format!(
                            "{}: BEGIN inside the {} region opened at line {} (regions do not nest)",
                            kind_name(kind),
                            kind_name(r.kind),
                            r.begin
                        ),
                    ));
                }
                if matches!(kind, Kind::Lab(_)) && description.is_empty() {
                    return Err(err(
                        at,
                        "a lab region's BEGIN says what to implement: `LAB N: BEGIN <what>`".into(),
                    ));
                }
                open = Some(Region {
                    kind,
                    description: description.to_string(),
                    begin: at,
                    end: 0,
                    indent: line[..line.len() - line.trim_start().len()].to_string(),
                    stub: None,
                    stub_line: None,
                    text: false,
                });
            }
            Some(Marker::Stub(n)) => match &mut open {
                Some(r) if r.kind == Kind::Lab(n) && r.stub.is_none() => {
                    if syntax.stub_prefix().is_none() {
                        return Err(err(
                            at,
                            format!("LAB {n}: STUB in a text file: text regions have no stub"),
                        ));
                    }
                    r.stub = Some(Vec::new());
                    r.stub_line = Some(at);
                }
                Some(r) if r.kind == Kind::Lab(n) => {
                    return Err(err(at, format!("a second LAB {n}: STUB in one region")));
                }
                _ => return Err(err(at, format!("LAB {n}: STUB outside a lab {n} region"))),
            },
            Some(Marker::End(kind)) => match open.take() {
                Some(r) if r.kind == kind => {
                    let inside = &all_lines[r.begin..at - 1];
                    let text = syntax == Syntax::Html
                        || (r.stub.is_none()
                            && inside.iter().any(|l| !l.trim().is_empty())
                            && inside.iter().all(|l| {
                                l.trim().is_empty() || syntax.comment_text(l).is_some() || {
                                    let t = l.trim_start();
                                    syntax == Syntax::Slash && t.starts_with("//")
                                }
                            }));
                    parsed.regions.push(Region { end: at, text, ..r })
                }
                Some(r) => {
                    return Err(err(
                        at,
                        format!(
                            "{}: END closes the {} region opened at line {}",
                            kind_name(kind),
                            kind_name(r.kind),
                            r.begin
                        ),
                    ));
                }
                None => return Err(err(at, format!("{}: END without a BEGIN", kind_name(kind)))),
            },
            None => {
                if let Some(Region {
                    stub: Some(stub), ..
                }) = &mut open
                {
                    let prefix = syntax.stub_prefix().unwrap_or("//");
                    let trimmed = line.trim_start();
                    let code = trimmed
                        .strip_prefix(prefix)
                        .and_then(|c| c.strip_prefix(' ').or_else(|| c.is_empty().then_some("")));
                    let Some(code) = code else {
                        return Err(err(
                            at,
                            format!(
                                "a stub line must be commented out with `{prefix} ` (it is code only in a student tree)"
                            ),
                        ));
                    };
                    stub.push(format!("{}{code}", &line[..line.len() - trimmed.len()]));
                }
            }
        }
    }
    if let Some(r) = open {
        return Err(err(
            r.begin,
            format!("{}: BEGIN without an END", kind_name(r.kind)),
        ));
    }
    Ok(parsed)
}

/// What a region becomes in a tree being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fill<'a> {
    /// The solution, markers removed.
    Solution,
    /// Its markers with the stub between them (text regions: nothing at all).
    Stub,
    /// Its markers with these lines between them (a student's submission).
    Body(&'a [String]),
    /// Nothing: the region and its markers go.
    Remove,
}

/// The file with every region replaced as `fill` says (`regions` must be `parse_with`'s
/// result for `text` in `syntax`).
pub fn render<'a>(
    text: &str,
    syntax: Syntax,
    regions: &[Region],
    mut fill: impl FnMut(usize, &Region) -> Fill<'a>,
) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let mut push = |l: &str| {
        out.push_str(l);
        out.push('\n');
    };
    let mut next = 0;
    for (i, r) in regions.iter().enumerate() {
        for l in &lines[next..r.begin - 1] {
            push(l);
        }
        match fill(i, r) {
            Fill::Solution => {
                for l in r.solution(&lines) {
                    push(l);
                }
            }
            Fill::Remove => {}
            Fill::Stub if r.text => {}
            Fill::Stub => {
                push(lines[r.begin - 1]);
                match (&r.stub, r.kind, syntax) {
                    (Some(stub), _, _) => stub.iter().for_each(|l| push(l)),
                    (None, Kind::Lab(n), Syntax::Slash) => {
                        let what = r.description.replace('\\', "\\\\").replace('"', "\\\"");
                        push(&format!("{}todo!(\"lab {n}: {what}\")", r.indent));
                    }
                    _ => {}
                }
                push(lines[r.end - 1]);
            }
            Fill::Body(body) => {
                push(lines[r.begin - 1]);
                body.iter().for_each(|l| push(l));
                push(lines[r.end - 1]);
            }
        }
        next = r.end;
    }
    for l in &lines[next..] {
        push(l);
    }
    if !text.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    out
}

/// The file as a student tree for lab `lab` has it: staff regions gone; regions of labs
/// before `lab` keep their solution (markers removed); code regions of `lab` and later keep
/// their markers around their stub, so that the student writes between them and a trusted
/// grader can read exactly that; text regions of `lab` and later are gone, markers and all.
pub fn export(text: &str, syntax: Syntax, regions: &[Region], lab: u8) -> String {
    render(text, syntax, regions, |_, r| student_fill(r, lab))
}

/// What region `r` becomes in the student tree of lab `lab`.
pub fn student_fill(r: &Region, lab: u8) -> Fill<'static> {
    match r.kind {
        Kind::Staff => Fill::Remove,
        Kind::Lab(n) if n < lab => Fill::Solution,
        Kind::Lab(_) => Fill::Stub,
    }
}
