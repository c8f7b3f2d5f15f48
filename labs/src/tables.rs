//! The kernel's test tables read from the source, without building or booting anything: what
//! the exporter needs to write a Classroom workflow and to make sure no hidden test reaches a
//! student tree. A host test compares this reading with the kernel's own listing (mode
//! `test --list`), so the two cannot drift apart.

use std::path::Path;

/// One test of a `ktests!` table, as the source declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// The test's name as the kernel reports it (`mm::splitting_...`).
    pub name: String,
    /// `lab: N`, or 0 (a test grades lab N only if it has points: lab 0 is a lab).
    pub lab: u8,
    /// `points: P`, or 0 for a test that grades no lab.
    pub points: u16,
    /// `hidden: true`: run only by trusted grading, never exported.
    pub hidden: bool,
    /// 1-based line of the entry in its file.
    pub line: usize,
}

/// The kernel's module path for a file of `kernel/src/` (`kernel/src/mm/ktests.rs` is
/// `kernel::mm::ktests`); `None` for a file outside it.
pub fn module_path(path: &Path) -> Option<String> {
    let rel = path.strip_prefix("kernel/src").ok()?;
    let mut segments = vec!["kernel".to_string()];
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let (last, dirs) = parts.split_last()?;
    segments.extend(dirs.iter().cloned());
    match last.strip_suffix(".rs")? {
        "mod" | "main" | "lib" => {}
        stem => segments.push(stem.to_string()),
    }
    Some(segments.join("::"))
}

/// A test's display name from its module path and function, as the kernel's `TestName`
/// makes it: without the crate and the `ktests` segment (`a::b_ktests` counts as `a::b`).
pub fn test_name(module: &str, func: &str) -> String {
    let m = module.strip_prefix("kernel").unwrap_or(module);
    let m = m.strip_prefix("::").unwrap_or(m);
    let m = m.strip_suffix("ktests").unwrap_or(m);
    let m = m.strip_suffix("::").unwrap_or(m);
    let m = m.strip_suffix('_').unwrap_or(m);
    if m.is_empty() {
        func.to_string()
    } else {
        format!("{m}::{func}")
    }
}

/// `text` with every `//` comment blanked out (strings and characters respected), lengths
/// and line breaks kept.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for n in chars.by_ref() {
                if n == '\n' {
                    out.push('\n');
                    break;
                }
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits `s` at commas outside any bracket.
fn split_top(s: &str) -> Vec<(usize, &str)> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push((start, &s[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push((start, &s[start..]));
    parts
        .into_iter()
        .filter(|(_, p)| !p.trim().is_empty())
        .collect()
}

/// Every entry of every `ktests!` table in a Rust file of module `module`. Malformed tables
/// (which would not compile) give what could be read.
pub fn entries(module: &str, text: &str) -> Vec<TableEntry> {
    let code = without_comments(text);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("ktests!") {
        let start = from + at + "ktests!".len();
        from = start;
        // The `macro_rules!` that defines it is not a table.
        if code[..start - "ktests!".len()].ends_with("macro_rules! ") {
            continue;
        }
        let Some(open) = code[start..].find('{').map(|o| start + o) else {
            break;
        };
        if !code[start..open].trim().is_empty() {
            continue;
        }
        let mut depth = 0;
        let mut close = None;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else { break };
        let body = &code[open + 1..close];
        for (offset, entry) in split_top(body) {
            let trimmed = entry.trim_start();
            let lead = entry.len() - trimmed.len();
            let func: String = trimmed
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if func.is_empty() {
                continue;
            }
            let mut e = TableEntry {
                name: test_name(module, &func),
                lab: 0,
                points: 0,
                hidden: false,
                line: code[..open + 1 + offset + lead].matches('\n').count() + 1,
            };
            let rest = trimmed[func.len()..].trim();
            if let Some(fields) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                for (_, field) in split_top(fields) {
                    let Some((k, v)) = field.split_once(':') else {
                        continue;
                    };
                    let v = v.trim();
                    match k.trim() {
                        "lab" => e.lab = v.parse().unwrap_or(0),
                        "points" => e.points = v.parse().unwrap_or(0),
                        "hidden" => e.hidden = v == "true",
                        _ => {}
                    }
                }
            }
            out.push(e);
        }
        from = close;
    }
    out
}
