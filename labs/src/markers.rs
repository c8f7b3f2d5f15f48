//! Solution markers: the lines that delimit a lab's solution in the source, and what a
//! student tree gets instead.
//!
//! ```text
//! // LAB 1: BEGIN split a block down to the order asked for
//! ...the solution...
//! // LAB 1: STUB
//! // ...what replaces it in a student tree, each line commented out here...
//! // LAB 1: END
//! ```
//!
//! The `STUB` part is optional; without it a student tree gets
//! `todo!("lab N: <description>")`. Regions never nest, and every `BEGIN` has the `END` of
//! the same lab. Marker lines are recognised by their trimmed text, anywhere in a file.

use std::fmt;

/// One solution region of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// The lab it belongs to.
    pub lab: u8,
    /// What to implement (the rest of the `BEGIN` line).
    pub description: String,
    /// 1-based line numbers of the `BEGIN` and `END` lines.
    pub begin: usize,
    /// See `begin`.
    pub end: usize,
    /// The `BEGIN` line's indentation, used for the stub.
    pub indent: String,
    /// The stub's lines, uncommented; `None` for the default `todo!`.
    pub stub: Option<Vec<String>>,
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
    Begin(u8, &'a str),
    Stub(u8),
    End(u8),
}

/// `// LAB N: BEGIN ...`, `// LAB N: STUB`, `// LAB N: END`; `Err` for a line that starts
/// like a marker but is not one (so a typo is an error, not silently code).
fn marker(line: &str) -> Result<Option<Marker<'_>>, String> {
    let Some(rest) = line.trim().strip_prefix("// LAB ") else {
        return Ok(None);
    };
    let (n, rest) = rest.split_once(':').ok_or_else(|| {
        format!(
            "a lab marker needs `// LAB N: BEGIN|STUB|END`, got `{}`",
            line.trim()
        )
    })?;
    let n: u8 = n
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{n}` is not a lab number (1 to 255)"))?;
    let rest = rest.trim();
    match rest
        .split_once(' ')
        .map_or((rest, ""), |(k, d)| (k, d.trim()))
    {
        ("BEGIN", description) => Ok(Some(Marker::Begin(n, description))),
        ("STUB", "") => Ok(Some(Marker::Stub(n))),
        ("END", "") => Ok(Some(Marker::End(n))),
        _ => Err(format!(
            "a lab marker needs `// LAB {n}: BEGIN|STUB|END`, got `{}`",
            line.trim()
        )),
    }
}

/// The regions of one file, or the first malformed marker (`file` names it in the error).
pub fn parse(file: &str, text: &str) -> Result<Vec<Region>, MarkerError> {
    let err = |line: usize, what: String| MarkerError {
        file: file.to_string(),
        line,
        what,
    };
    let mut regions = Vec::new();
    // The open region (its `end` is set when its END comes).
    let mut open: Option<Region> = None;
    for (i, line) in text.lines().enumerate() {
        let at = i + 1;
        match marker(line).map_err(|e| err(at, e))? {
            Some(Marker::Begin(n, description)) => {
                if let Some(r) = &open {
                    return Err(err(
                        at,
                        format!(
                            "LAB {n}: BEGIN inside the region of lab {} opened at line {} (regions do not nest)",
                            r.lab, r.begin
                        ),
                    ));
                }
                open = Some(Region {
                    lab: n,
                    description: description.to_string(),
                    begin: at,
                    end: 0,
                    indent: line[..line.len() - line.trim_start().len()].to_string(),
                    stub: None,
                });
            }
            Some(Marker::Stub(n)) => match &mut open {
                Some(r) if r.lab == n && r.stub.is_none() => r.stub = Some(Vec::new()),
                Some(r) if r.lab == n => {
                    return Err(err(at, format!("a second LAB {n}: STUB in one region")));
                }
                _ => return Err(err(at, format!("LAB {n}: STUB outside a lab {n} region"))),
            },
            Some(Marker::End(n)) => match open.take() {
                Some(r) if r.lab == n => regions.push(Region { end: at, ..r }),
                Some(r) => {
                    return Err(err(
                        at,
                        format!(
                            "LAB {n}: END closes the region of lab {} opened at line {}",
                            r.lab, r.begin
                        ),
                    ));
                }
                None => return Err(err(at, format!("LAB {n}: END without a BEGIN"))),
            },
            None => {
                if let Some(Region {
                    stub: Some(stub), ..
                }) = &mut open
                {
                    let trimmed = line.trim_start();
                    let code = trimmed
                        .strip_prefix("// ")
                        .or_else(|| (trimmed == "//").then_some(""));
                    let Some(code) = code else {
                        return Err(err(
                            at,
                            "a stub line must be commented out with `// ` (it is code only in a student tree)".into(),
                        ));
                    };
                    stub.push(format!("{}{code}", &line[..line.len() - trimmed.len()]));
                }
            }
        }
    }
    if let Some(r) = open {
        return Err(err(r.begin, format!("LAB {}: BEGIN without an END", r.lab)));
    }
    Ok(regions)
}

/// The file as a student tree for lab `lab` has it: regions of labs before `lab` keep their
/// solution (markers removed), regions of `lab` and later become their stub, introduced by a
/// `// Lab N, to do: <description>` comment (not a marker: a student tree has none).
/// `regions` must be `parse`'s result for `text`.
pub fn export(text: &str, regions: &[Region], lab: u8) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let mut next = 0;
    for r in regions {
        for l in &lines[next..r.begin - 1] {
            out.push_str(l);
            out.push('\n');
        }
        // Inside the region: the solution is lines begin+1 .. (STUB or END) - 1.
        let body = &lines[r.begin..r.end - 1];
        if r.lab < lab {
            let solution_end = body
                .iter()
                .position(|l| matches!(marker(l), Ok(Some(Marker::Stub(_)))))
                .unwrap_or(body.len());
            for l in &body[..solution_end] {
                out.push_str(l);
                out.push('\n');
            }
        } else {
            out.push_str(&format!(
                "{}// Lab {}, to do: {}\n",
                r.indent, r.lab, r.description
            ));
            match &r.stub {
                Some(stub) => {
                    for l in stub {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
                None => {
                    let what = r.description.replace('\\', "\\\\").replace('"', "\\\"");
                    out.push_str(&format!("{}todo!(\"lab {}: {what}\")\n", r.indent, r.lab));
                }
            }
        }
        next = r.end;
    }
    for l in &lines[next..] {
        out.push_str(l);
        out.push('\n');
    }
    if !text.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    out
}
