//! How alike two submissions' code is, for an instructor's glance at a class: the region
//! bodies of a lab, as tokens without comments, layout or the student's own names (a name
//! the surrounding code does not define becomes `_`, so renaming a variable changes
//! nothing), cut into overlapping runs of [`SHINGLE`] tokens and compared as sets (Jaccard).
//! 1.0 is the same code up to layout, comments and names.

use std::collections::HashSet;

/// Tokens per compared run.
pub const SHINGLE: usize = 6;

/// Rust's keywords and the few names every solution uses alike: kept as they are.
const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "false", "fn", "for", "if",
    "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self",
    "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "Some", "None", "Ok", "Err",
];

/// The tokens of `code`: identifiers, numbers, string literals (as one token) and
/// punctuation; comments and whitespace dropped.
pub fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// `tokens` with every identifier that is neither a keyword nor in `known` (the names the
/// surrounding code defines) replaced by `_`.
pub fn normalized(tokens: &[String], known: &HashSet<String>) -> Vec<String> {
    tokens
        .iter()
        .map(|t| {
            let ident = t.starts_with(|c: char| c.is_alphabetic() || c == '_');
            if ident && !KEYWORDS.contains(&t.as_str()) && !known.contains(t) {
                "_".to_string()
            } else {
                t.clone()
            }
        })
        .collect()
}

/// The set of runs of [`SHINGLE`] tokens (the whole sequence if it is shorter).
pub fn shingles(tokens: &[String]) -> HashSet<Vec<String>> {
    if tokens.len() <= SHINGLE {
        return std::iter::once(tokens.to_vec())
            .filter(|t| !t.is_empty())
            .collect();
    }
    tokens.windows(SHINGLE).map(<[String]>::to_vec).collect()
}

/// Jaccard similarity of two shingle sets: 0 (nothing shared) to 1 (the same runs); 0 if
/// either is empty.
pub fn jaccard(a: &HashSet<Vec<String>>, b: &HashSet<Vec<String>>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let shared = a.intersection(b).count();
    shared as f64 / (a.len() + b.len() - shared) as f64
}

/// The identifiers of `code`: the names a region's surroundings define or use.
pub fn identifiers(code: &str) -> HashSet<String> {
    tokens(code)
        .into_iter()
        .filter(|t| t.starts_with(|c: char| c.is_alphabetic() || c == '_'))
        .collect()
}
