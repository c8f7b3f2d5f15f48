//! Trace replay: a text file of pool operations, run against a pool, with the pool's state
//! reported at every `c` and `s` and at the end. The kernel's `replay` mode runs this; it is
//! plain logic, so the crate's tests cover it on the host too.
//!
//! Format, one operation per line (fields separated by spaces or tabs):
//!
//! ```text
//! a ID SIZE    allocate SIZE bytes (1..=4096) as object ID (any unsigned 64-bit number)
//! f ID         free object ID
//! w ID         write a pattern into object ID and read it back to verify it
//! c            compact the pool (report)
//! s            report statistics
//! # ...        a comment (also after an operation); blank lines are ignored
//! ```
//!
//! A report (`s` and the end) is a pause: compaction the pool deferred
//! (`AutoCompact::Deferred`, zsos's policy) runs first, as it would when the system idles.
//!
//! A malformed line, an unknown or duplicate ID, an invalid size, or a refusal by the pool
//! stops the replay with the line number and the reason. Nothing already done is undone.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::backend::Backend;
use crate::class::PAGE_SIZE;
use crate::seeded::pattern;
use crate::{Error, Handle, MapMode, Pool, PoolStats};

/// One operation of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `a ID SIZE`
    Alloc {
        /// The trace's name for the object.
        id: u64,
        /// Bytes asked for.
        size: usize,
    },
    /// `f ID`
    Free {
        /// The object.
        id: u64,
    },
    /// `w ID`
    Write {
        /// The object.
        id: u64,
    },
    /// `c`
    Compact,
    /// `s`
    Stats,
}

/// Parses one line: `Ok(None)` for a blank or comment line.
pub fn parse_line(line: &str) -> Result<Option<Op>, String> {
    let code = line.split('#').next().unwrap_or("");
    let mut fields = code.split_ascii_whitespace();
    let Some(verb) = fields.next() else {
        return Ok(None);
    };
    let mut number = |what: &str| -> Result<u64, String> {
        let field = fields
            .next()
            .ok_or_else(|| format!("'{verb}' needs {what}"))?;
        field
            .parse::<u64>()
            .map_err(|_| format!("{what} '{field}' is not an unsigned number"))
    };
    let op = match verb {
        "a" => {
            let id = number("an ID")?;
            let size = number("a SIZE")?;
            Op::Alloc {
                id,
                size: usize::try_from(size).unwrap_or(usize::MAX),
            }
        }
        "f" => Op::Free {
            id: number("an ID")?,
        },
        "w" => Op::Write {
            id: number("an ID")?,
        },
        "c" => Op::Compact,
        "s" => Op::Stats,
        other => {
            return Err(format!(
                "unknown operation '{other}' (expected a, f, w, c, s or #)"
            ));
        }
    };
    match fields.next() {
        Some(extra) => Err(format!("unexpected '{extra}' after the operation")),
        None => Ok(Some(op)),
    }
}

/// The pool's state at a report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Line of the `c` or `s` (the last line read, at the end).
    pub line: usize,
    /// What triggered it: `'c'`, `'s'`, or `'$'` for the end of the trace.
    pub at: char,
    /// Objects live.
    pub live_objects: usize,
    /// Sum of their sizes.
    pub live_bytes: u64,
    /// Pages the pool holds.
    pub pages: usize,
    /// live_bytes / (pages × 4096); 0 with no pages.
    pub density: f64,
    /// Pages freed by compaction so far in the replay (at the pauses too).
    pub pages_compacted: usize,
    /// Pages freed by this `c` (0 otherwise).
    pub freed_now: usize,
    /// The class table.
    pub stats: PoolStats,
}

/// Where and why a replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: String,
}

impl core::fmt::Display for TraceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Totals of a finished replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Lines read.
    pub lines: usize,
    /// Operations run.
    pub ops: u64,
    /// Allocations, frees, verified writes, compactions.
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
    /// Verified writes.
    pub writes: u64,
    /// Compactions.
    pub compactions: u64,
}

/// One operation just done, for a caller that follows a replay step by step (the viewer).
pub struct Step<'a> {
    /// Its line.
    pub line: usize,
    /// The operation.
    pub op: Op,
    objects: &'a BTreeMap<u64, (Handle, usize)>,
}

impl Step<'_> {
    /// The live objects now: the trace's id and the pool's handle, by id.
    pub fn objects(&self) -> impl Iterator<Item = (u64, Handle)> + '_ {
        self.objects.iter().map(|(&id, &(h, _))| (id, h))
    }
}

impl core::fmt::Display for Op {
    /// The operation as a trace line says it (`a 17 1200`, `f 17`, `c`).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Op::Alloc { id, size } => write!(f, "a {id} {size}"),
            Op::Free { id } => write!(f, "f {id}"),
            Op::Write { id } => write!(f, "w {id}"),
            Op::Compact => write!(f, "c"),
            Op::Stats => write!(f, "s"),
        }
    }
}

/// Replays `text` against `pool`, calling `report` at every `c`, `s` and at the end. Objects
/// still live at the end are freed (so the pool ends empty) unless the replay stopped.
pub fn replay<B: Backend>(
    pool: &Pool<B>,
    text: &[u8],
    report: impl FnMut(&Report),
) -> Result<Totals, TraceError> {
    replay_steps(pool, text, report, |_| {})
}

/// [`replay`], calling `step` after every operation done (after its report, if it has one).
pub fn replay_steps<B: Backend>(
    pool: &Pool<B>,
    text: &[u8],
    mut report: impl FnMut(&Report),
    mut step: impl FnMut(&Step<'_>),
) -> Result<Totals, TraceError> {
    let mut objects: BTreeMap<u64, (Handle, usize)> = BTreeMap::new();
    let mut live_bytes = 0u64;
    let mut totals = Totals::default();
    let mut pages_compacted = 0;
    let mut buf = alloc::vec![0u8; PAGE_SIZE];
    let snapshot = |line: usize, at: char, live: usize, bytes: u64, compacted, freed_now| {
        let pages = pool.total_pages();
        Report {
            line,
            at,
            live_objects: live,
            live_bytes: bytes,
            pages,
            density: if pages == 0 {
                0.0
            } else {
                bytes as f64 / (pages * PAGE_SIZE) as f64
            },
            pages_compacted: compacted,
            freed_now,
            stats: pool.stats(),
        }
    };
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    for (n, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = n + 1;
        totals.lines = line;
        let fail = |reason: String| TraceError { line, reason };
        let text = core::str::from_utf8(raw).map_err(|_| fail("not valid UTF-8".into()))?;
        let Some(op) = parse_line(text.trim_end_matches('\r')).map_err(fail)? else {
            continue;
        };
        totals.ops += 1;
        match op {
            Op::Alloc { id, size } => {
                if objects.contains_key(&id) {
                    return Err(fail(format!("object {id} is already allocated")));
                }
                let h = pool
                    .malloc(size)
                    .map_err(|e| fail(format!("a {id} {size}: {e}")))?;
                objects.insert(id, (h, size));
                live_bytes += size as u64;
                totals.allocs += 1;
            }
            Op::Free { id } => {
                let (h, size) = objects
                    .remove(&id)
                    .ok_or_else(|| fail(format!("unknown object {id}")))?;
                pool.free(h).map_err(|e| fail(format!("f {id}: {e}")))?;
                live_bytes -= size as u64;
                totals.frees += 1;
            }
            Op::Write { id } => {
                let &(h, size) = objects
                    .get(&id)
                    .ok_or_else(|| fail(format!("unknown object {id}")))?;
                let bytes = pattern(id, size);
                pool.map(h, MapMode::WriteOnly)
                    .map_err(|e: Error| fail(format!("w {id}: {e}")))?
                    .copy_from_slice(&bytes);
                let got = pool
                    .read(h, &mut buf)
                    .map_err(|e| fail(format!("w {id}: {e}")))?;
                if buf[..got] != bytes[..] {
                    return Err(fail(format!("object {id} read back different bytes")));
                }
                totals.writes += 1;
            }
            Op::Compact => {
                let freed = pool.compact();
                pages_compacted += freed;
                totals.compactions += 1;
                report(&snapshot(
                    line,
                    'c',
                    objects.len(),
                    live_bytes,
                    pages_compacted,
                    freed,
                ));
            }
            Op::Stats => {
                // The pause: the deferred compaction runs (its pages count as compacted).
                pages_compacted += pool.compact_pending(usize::MAX);
                report(&snapshot(
                    line,
                    's',
                    objects.len(),
                    live_bytes,
                    pages_compacted,
                    0,
                ))
            }
        }
        step(&Step {
            line,
            op,
            objects: &objects,
        });
    }
    pages_compacted += pool.compact_pending(usize::MAX);
    report(&snapshot(
        totals.lines,
        '$',
        objects.len(),
        live_bytes,
        pages_compacted,
        0,
    ));
    let handles: Vec<Handle> = objects.values().map(|&(h, _)| h).collect();
    for h in handles {
        let _ = pool.free(h);
    }
    Ok(totals)
}
