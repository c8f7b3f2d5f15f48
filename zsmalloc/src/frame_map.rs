//! A picture of physical memory for people: every frame's owner, as runs of frames with the
//! same owner in frame order. The kernel reads it from its memmap and sends it over the serial
//! console as `MEMMAP` lines ([`FrameMap::lines`], `docs/protocol.md`); the runner parses
//! them back ([`FrameMap::parse`]) and draws one cell per frame (`boot::pictures`).
//!
//! The memmap is the kernel's, not zsmalloc's; the format lives in this crate because it is
//! the one the kernel and the runner share, and it is host-tested here.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::snapshot::Fields;

/// Who a physical frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameOwner {
    /// Never the frame allocator's: firmware, the kernel image, the memmap, holes.
    Reserved,
    /// In a free buddy block of this order.
    Free(u8),
    /// Free, held back from the free lists while its range is emptied.
    Isolated,
    /// A zsmalloc page.
    Zsmalloc,
    /// Backs the kernel heap.
    Heap,
    /// Holds a page table.
    PageTable,
    /// Allocated for anything else (stacks, descriptor memory, a test's frames).
    Other,
}

impl FrameOwner {
    /// The owner's code in a `MEMMAP runs` line: `r`, `f<order>`, `i`, `z`, `h`, `t`, `a`.
    pub fn code(self) -> String {
        match self {
            FrameOwner::Reserved => "r".into(),
            FrameOwner::Free(order) => format!("f{order}"),
            FrameOwner::Isolated => "i".into(),
            FrameOwner::Zsmalloc => "z".into(),
            FrameOwner::Heap => "h".into(),
            FrameOwner::PageTable => "t".into(),
            FrameOwner::Other => "a".into(),
        }
    }

    /// The owner a code names.
    pub fn from_code(code: &str) -> Option<FrameOwner> {
        Some(match code {
            "r" => FrameOwner::Reserved,
            "i" => FrameOwner::Isolated,
            "z" => FrameOwner::Zsmalloc,
            "h" => FrameOwner::Heap,
            "t" => FrameOwner::PageTable,
            "a" => FrameOwner::Other,
            _ => FrameOwner::Free(code.strip_prefix('f')?.parse().ok()?),
        })
    }

    /// A name for a legend.
    pub fn name(self) -> String {
        match self {
            FrameOwner::Reserved => "reserved".into(),
            FrameOwner::Free(order) => format!("free, order {order}"),
            FrameOwner::Isolated => "isolated".into(),
            FrameOwner::Zsmalloc => "zsmalloc".into(),
            FrameOwner::Heap => "heap".into(),
            FrameOwner::PageTable => "page table".into(),
            FrameOwner::Other => "other allocated".into(),
        }
    }
}

/// Frames with the same owner, one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRun {
    /// Their owner.
    pub owner: FrameOwner,
    /// How many frames.
    pub frames: u64,
}

/// Every frame's owner at one point, from frame 0 on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrameMap {
    /// What the point is; no whitespace.
    pub point: String,
    /// The memmap's layout (`wide` or `memdesc`).
    pub layout: String,
    /// The runs, in frame order; neighbouring runs have different owners.
    pub runs: Vec<FrameRun>,
}

/// Runs on one `MEMMAP runs` line (keeps lines short for the console).
const RUNS_PER_LINE: usize = 32;

impl FrameMap {
    /// An empty map at `point` (whitespace in it becomes `_`) of a memmap in `layout`.
    pub fn new(point: &str, layout: &str) -> FrameMap {
        FrameMap {
            point: point.split_whitespace().collect::<Vec<_>>().join("_"),
            layout: layout.into(),
            runs: Vec::new(),
        }
    }

    /// Adds `frames` frames of `owner` after the last ones (joining the last run if it has
    /// the same owner).
    pub fn push(&mut self, owner: FrameOwner, frames: u64) {
        if frames == 0 {
            return;
        }
        match self.runs.last_mut() {
            Some(last) if last.owner == owner => last.frames += frames,
            _ => self.runs.push(FrameRun { owner, frames }),
        }
    }

    /// Frames in all runs.
    pub fn frames(&self) -> u64 {
        self.runs.iter().map(|r| r.frames).sum()
    }

    /// Frames of `owner`.
    pub fn count(&self, owner: FrameOwner) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.owner == owner)
            .map(|r| r.frames)
            .sum()
    }

    /// The owner of frame `pfn`, if the map reaches it.
    pub fn owner_of(&self, pfn: u64) -> Option<FrameOwner> {
        let mut start = 0;
        for r in &self.runs {
            if pfn < start + r.frames {
                return Some(r.owner);
            }
            start += r.frames;
        }
        None
    }

    /// The map as console lines: `MEMMAP begin`, `MEMMAP runs` lines of `CODE*COUNT` words
    /// in frame order, `MEMMAP end`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.push(format!(
            "MEMMAP begin point={} layout={} frames={} runs={}",
            self.point,
            self.layout,
            self.frames(),
            self.runs.len()
        ));
        for chunk in self.runs.chunks(RUNS_PER_LINE) {
            let words: Vec<String> = chunk
                .iter()
                .map(|r| format!("{}*{}", r.owner.code(), r.frames))
                .collect();
            out.push(format!("MEMMAP runs {}", words.join(" ")));
        }
        out.push(format!("MEMMAP end point={}", self.point));
        out
    }

    /// Parses the maps in `lines` (other lines are skipped). A map cut short (no `end`, a
    /// run lost, a bad word) is an error naming its point.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<FrameMap>, String> {
        let mut done = Vec::new();
        // The map being read, and the frames and runs its begin line announced.
        let mut open: Option<(FrameMap, u64, usize)> = None;
        for line in lines {
            let Some(rest) = line.trim_end().strip_prefix("MEMMAP ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let kind = words.next().unwrap_or("");
            match kind {
                "begin" => {
                    if let Some((map, _, _)) = &open {
                        return Err(format!("memmap {} cut short", map.point));
                    }
                    let fields = Fields::of(words, "memmap", line);
                    let map = FrameMap {
                        point: fields.get("point")?.into(),
                        layout: fields.get("layout")?.into(),
                        runs: Vec::new(),
                    };
                    open = Some((map, fields.num("frames")?, fields.num("runs")?));
                }
                "runs" => {
                    let Some((map, _, _)) = open.as_mut() else {
                        return Err(format!("memmap line outside a map: '{line}'"));
                    };
                    for word in words {
                        let run = word
                            .split_once('*')
                            .and_then(|(code, n)| {
                                Some(FrameRun {
                                    owner: FrameOwner::from_code(code)?,
                                    frames: n.parse().ok().filter(|&n| n > 0)?,
                                })
                            })
                            .ok_or_else(|| {
                                format!("memmap run '{word}' is not CODE*COUNT: '{line}'")
                            })?;
                        map.runs.push(run);
                    }
                }
                "end" => {
                    let Some((map, frames, runs)) = open.take() else {
                        return Err(format!("memmap end without a begin: '{line}'"));
                    };
                    if map.runs.len() != runs || map.frames() != frames {
                        return Err(format!(
                            "memmap {} cut short: {} runs of {} frames, {runs} of {frames} announced",
                            map.point,
                            map.runs.len(),
                            map.frames()
                        ));
                    }
                    done.push(map);
                }
                _ => return Err(format!("unknown memmap line: '{line}'")),
            }
        }
        match open {
            Some((map, _, _)) => Err(format!("memmap {} cut short: no end line", map.point)),
            None => Ok(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FrameMap {
        let mut m = FrameMap::new("line 4 at s", "memdesc");
        m.push(FrameOwner::Reserved, 256);
        m.push(FrameOwner::Reserved, 3);
        m.push(FrameOwner::Heap, 1024);
        m.push(FrameOwner::PageTable, 0);
        m.push(FrameOwner::Zsmalloc, 7);
        for i in 0..40 {
            m.push(FrameOwner::Free((i % 11) as u8), 1 << (i % 11));
            m.push(FrameOwner::Other, 1);
        }
        m.push(FrameOwner::Isolated, 8);
        m
    }

    #[test]
    fn pushing_joins_runs_of_the_same_owner_and_skips_empty_ones() {
        let m = sample();
        assert_eq!(m.point, "line_4_at_s");
        assert_eq!(
            &m.runs[..3],
            &[
                FrameRun {
                    owner: FrameOwner::Reserved,
                    frames: 259
                },
                FrameRun {
                    owner: FrameOwner::Heap,
                    frames: 1024
                },
                FrameRun {
                    owner: FrameOwner::Zsmalloc,
                    frames: 7
                },
            ]
        );
        assert!(m.runs.windows(2).all(|w| w[0].owner != w[1].owner));
        assert_eq!(m.count(FrameOwner::Other), 40);
        assert_eq!(m.count(FrameOwner::Free(10)), 3 * 1024);
        assert_eq!(m.owner_of(258), Some(FrameOwner::Reserved));
        assert_eq!(m.owner_of(259), Some(FrameOwner::Heap));
        assert_eq!(m.owner_of(259 + 1024 + 6), Some(FrameOwner::Zsmalloc));
        assert_eq!(m.owner_of(259 + 1024 + 7), Some(FrameOwner::Free(0)));
        assert_eq!(m.owner_of(m.frames() - 1), Some(FrameOwner::Isolated));
        assert_eq!(m.owner_of(m.frames()), None);
    }

    #[test]
    fn every_owner_s_code_names_it_back() {
        let owners = [
            FrameOwner::Reserved,
            FrameOwner::Free(0),
            FrameOwner::Free(10),
            FrameOwner::Isolated,
            FrameOwner::Zsmalloc,
            FrameOwner::Heap,
            FrameOwner::PageTable,
            FrameOwner::Other,
        ];
        for o in owners {
            assert_eq!(FrameOwner::from_code(&o.code()), Some(o));
        }
        for bad in ["", "f", "fx", "q", "z1", "f-1"] {
            assert_eq!(FrameOwner::from_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn map_lines_parse_back_to_the_same_map() {
        let m = sample();
        let lines = m.lines();
        assert!(lines.len() > 3, "the runs take several lines");
        assert!(lines.iter().all(|l| l.len() < 400), "console-sized lines");
        let text: Vec<String> = core::iter::once("zsos: noise".into())
            .chain(lines)
            .chain(core::iter::once("SNAP end point=x".into()))
            .collect();
        assert_eq!(
            FrameMap::parse(text.iter().map(String::as_str)),
            Ok(alloc::vec![m])
        );
    }

    #[test]
    fn a_map_cut_short_is_an_error_naming_its_point() {
        let m = sample();
        let lines = m.lines();
        for drop_at in 0..lines.len() {
            let kept: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != drop_at)
                .map(|(_, l)| l.as_str())
                .collect();
            let e = FrameMap::parse(kept).expect_err(&lines[drop_at]);
            assert!(
                e.contains("line_4_at_s") || e.contains("MEMMAP"),
                "dropping line {drop_at}: {e}"
            );
        }
        // One word changed: a lost frame, an unknown owner, a count of zero.
        for (from, to) in [("r*259", "r*258"), ("h*1024", "q*1024"), ("z*7", "z*0")] {
            let bad: Vec<String> = lines.iter().map(|l| l.replacen(from, to, 1)).collect();
            assert_ne!(bad, lines);
            let e = FrameMap::parse(bad.iter().map(String::as_str)).expect_err(to);
            assert!(
                e.contains("cut short") || e.contains(to),
                "{from} -> {to}: {e}"
            );
        }
        let half = &lines[1][..lines[1].len() / 2 + 1];
        let mut cut: Vec<&str> = lines.iter().map(String::as_str).collect();
        cut[1] = half;
        assert!(FrameMap::parse(cut).is_err(), "a runs line cut in half");
    }
}
