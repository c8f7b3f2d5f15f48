//! A picture of a pool's insides, for people: every class in use with each of its zspages
//! and, in each zspage, which object slots are allocated. The kernel sends it over the serial
//! console as `SNAP` lines ([`Snapshot::lines`], `docs/protocol.md`); the runner parses them
//! back ([`Snapshot::parse`]) and draws the pool (`boot::pictures`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::backend::Backend;
use crate::class::PAGE_SIZE;
use crate::pool::Pool;

/// One zspage: its length, its object slots, which of them are allocated, its fullness group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZspageSnapshot {
    /// The zspage's id in its class.
    pub id: u32,
    /// Pages in its chain.
    pub pages: u32,
    /// Fullness group (0 empty .. 11 full, as `ClassStats::groups`).
    pub group: u8,
    /// One entry per object slot, in address order: allocated or free.
    pub allocated: Vec<bool>,
}

/// One class in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassSnapshot {
    /// Position in the pool's class table.
    pub pos: usize,
    /// The class's number as the console's class table shows it (Linux's class index).
    pub index: usize,
    /// Slot size in bytes (header included).
    pub size: usize,
    /// The class's own zspage length (a zspage may be shorter under zsos's growth rule).
    pub chain: usize,
    /// One object per page, no header.
    pub huge: bool,
    /// Its zspages, by id.
    pub zspages: Vec<ZspageSnapshot>,
}

/// A pool at one point.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// What the point is (a replay's `line=13,at=s`, say); no whitespace.
    pub point: String,
    /// The classes with at least one zspage.
    pub classes: Vec<ClassSnapshot>,
}

impl ZspageSnapshot {
    /// Where object `i` starts and ends, in bytes from the zspage's start.
    pub fn object_bytes(&self, size: usize, huge: bool, i: usize) -> (usize, usize) {
        if huge {
            (0, size.min(PAGE_SIZE))
        } else {
            (i * size, (i + 1) * size)
        }
    }
}

impl Snapshot {
    /// The pool's state now. Each class is read under its lock, one after the other.
    pub fn of<B: Backend>(pool: &Pool<B>, point: &str) -> Snapshot {
        Snapshot {
            point: point.split_whitespace().collect::<Vec<_>>().join("_"),
            classes: pool.class_snapshots(),
        }
    }

    /// Pages in all zspages.
    pub fn pages(&self) -> u64 {
        self.classes
            .iter()
            .flat_map(|c| &c.zspages)
            .map(|z| z.pages as u64)
            .sum()
    }

    /// The snapshot as console lines: `SNAP begin`, a `SNAP class` line per class and a
    /// `SNAP zspage` line per zspage (its allocated slots as hex digits, four slots a digit,
    /// the first slot in the lowest bit of the first digit), `SNAP end`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.push(format!(
            "SNAP begin point={} classes={} pages={}",
            self.point,
            self.classes.len(),
            self.pages()
        ));
        for c in &self.classes {
            out.push(format!(
                "SNAP class pos={} index={} size={} chain={} huge={} zspages={}",
                c.pos,
                c.index,
                c.size,
                c.chain,
                u8::from(c.huge),
                c.zspages.len()
            ));
            for z in &c.zspages {
                let digits: String = z
                    .allocated
                    .chunks(4)
                    .map(|four| {
                        let v = four
                            .iter()
                            .enumerate()
                            .fold(0u32, |v, (i, &a)| v | (u32::from(a) << i));
                        char::from_digit(v, 16).expect("four bits")
                    })
                    .collect();
                out.push(format!(
                    "SNAP zspage pos={} id={} pages={} group={} objs={} alloc={}",
                    c.pos,
                    z.id,
                    z.pages,
                    z.group,
                    z.allocated.len(),
                    if digits.is_empty() {
                        "-".into()
                    } else {
                        digits
                    }
                ));
            }
        }
        out.push(format!("SNAP end point={}", self.point));
        out
    }

    /// Parses the snapshots in `lines` (other lines are skipped). A snapshot cut short (no
    /// `end`, a line missing a field, counts that disagree) is an error naming its point.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<Snapshot>, String> {
        let mut done = Vec::new();
        // The snapshot being read, the classes it announced, the zspages each class announced.
        let mut open: Option<(Snapshot, usize, Vec<usize>)> = None;
        for line in lines {
            let Some(rest) = line.trim_end().strip_prefix("SNAP ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let kind = words.next().unwrap_or("");
            let fields = Fields::of(words, "snapshot", line);
            let get = |name: &str| fields.get(name);
            let num = |name: &str| fields.num::<usize>(name);
            let point_of = |open: &Option<(Snapshot, usize, Vec<usize>)>| {
                open.as_ref()
                    .map_or(String::new(), |(s, _, _)| s.point.clone())
            };
            match kind {
                "begin" => {
                    if open.is_some() {
                        return Err(format!("snapshot {} cut short", point_of(&open)));
                    }
                    let snap = Snapshot {
                        point: get("point")?.into(),
                        classes: Vec::new(),
                    };
                    open = Some((snap, num("classes")?, Vec::new()));
                }
                "class" => {
                    let Some((snap, _, expected)) = open.as_mut() else {
                        return Err(format!("snapshot line outside a snapshot: '{line}'"));
                    };
                    snap.classes.push(ClassSnapshot {
                        pos: num("pos")?,
                        index: num("index")?,
                        size: num("size")?,
                        chain: num("chain")?,
                        huge: num("huge")? == 1,
                        zspages: Vec::new(),
                    });
                    expected.push(num("zspages")?);
                }
                "zspage" => {
                    let Some((snap, _, _)) = open.as_mut() else {
                        return Err(format!("snapshot line outside a snapshot: '{line}'"));
                    };
                    let pos = num("pos")?;
                    let class = snap
                        .classes
                        .last_mut()
                        .filter(|c| c.pos == pos)
                        .ok_or_else(|| {
                            format!("zspage of class {pos} before its class: '{line}'")
                        })?;
                    let objs = num("objs")?;
                    let alloc = get("alloc")?;
                    let mut allocated = Vec::with_capacity(objs);
                    for d in alloc.chars().filter(|&c| c != '-') {
                        let v = d
                            .to_digit(16)
                            .ok_or_else(|| format!("snapshot line with a bad alloc: '{line}'"))?;
                        allocated.extend((0..4).map(|i| v >> i & 1 == 1));
                    }
                    // Four slots a digit: objs slots take exactly ceil(objs / 4) digits.
                    if allocated.len() < objs || allocated.len() >= objs + 4 {
                        return Err(format!(
                            "zspage line whose alloc is not {objs} slots: '{line}'"
                        ));
                    }
                    allocated.truncate(objs);
                    class.zspages.push(ZspageSnapshot {
                        id: num("id")? as u32,
                        pages: num("pages")? as u32,
                        group: num("group")? as u8,
                        allocated,
                    });
                }
                "end" => {
                    let Some((snap, classes, expected)) = open.take() else {
                        return Err(format!("snapshot end without a begin: '{line}'"));
                    };
                    let zspages: Vec<usize> =
                        snap.classes.iter().map(|c| c.zspages.len()).collect();
                    if snap.classes.len() != classes || zspages != expected {
                        return Err(format!(
                            "snapshot {} cut short: lines are missing",
                            snap.point
                        ));
                    }
                    done.push(snap);
                }
                _ => return Err(format!("unknown snapshot line: '{line}'")),
            }
        }
        match open {
            Some((snap, _, _)) => Err(format!("snapshot {} cut short: no end line", snap.point)),
            None => Ok(done),
        }
    }
}

/// The `NAME=VALUE` words of one console line (of a snapshot, a census, a step), looked up
/// by name; a missing or unparsable one is an error quoting the line.
pub(crate) struct Fields<'a> {
    fields: Vec<(&'a str, &'a str)>,
    what: &'static str,
    line: &'a str,
}

impl<'a> Fields<'a> {
    /// The fields among `words` of `line`, a line of `what` (for the errors).
    pub(crate) fn of(
        words: impl Iterator<Item = &'a str>,
        what: &'static str,
        line: &'a str,
    ) -> Self {
        Fields {
            fields: words.filter_map(|w| w.split_once('=')).collect(),
            what,
            line,
        }
    }

    /// The value of field `name`.
    pub(crate) fn get(&self, name: &str) -> Result<&'a str, String> {
        self.fields
            .iter()
            .find(|(k, _)| *k == name)
            .map(|&(_, v)| v)
            .ok_or_else(|| format!("{} line without {name}: '{}'", self.what, self.line))
    }

    /// Field `name` as a number.
    pub(crate) fn num<T: core::str::FromStr>(&self, name: &str) -> Result<T, String> {
        self.get(name)?
            .parse()
            .map_err(|_| format!("{} line with a bad {name}: '{}'", self.what, self.line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostBackend;
    use crate::{Policy, PoolConfig};

    /// A small pool: three 2000-byte objects (the 2048-byte class, two to a one-page zspage)
    /// with the middle one freed, and one 100-byte object.
    fn small_pool() -> Pool<HostBackend> {
        let p = Pool::new("snap", HostBackend::new(64, 1), PoolConfig::default());
        let big: Vec<_> = (0..3).map(|_| p.malloc(2000).unwrap()).collect();
        p.malloc(100).unwrap();
        p.free(big[1]).unwrap();
        p
    }

    #[test]
    fn a_snapshot_shows_each_zspage_and_which_slots_hold_objects() {
        let p = small_pool();
        let snap = Snapshot::of(&p, "line=3 at=s");
        assert_eq!(snap.point, "line=3_at=s", "no whitespace in a point");
        assert_eq!(snap.classes.len(), 2);
        let big = snap.classes.iter().find(|c| c.size == 2048).unwrap();
        assert_eq!((big.chain, big.huge), (1, false));
        let slots: Vec<&[bool]> = big.zspages.iter().map(|z| &z.allocated[..]).collect();
        assert_eq!(slots, [&[true, false][..], &[true, false][..]]);
        assert!(big.zspages.iter().all(|z| z.pages == 1));
        let small = snap.classes.iter().find(|c| c.size != 2048).unwrap();
        assert_eq!(small.zspages.len(), 1);
        assert_eq!(small.zspages[0].allocated.iter().filter(|&&a| a).count(), 1);
        assert!(
            small.zspages[0].allocated[0],
            "the first slot is taken first"
        );
        assert_eq!(snap.pages(), p.total_pages() as u64);
    }

    #[test]
    fn object_bytes_are_each_slot_s_place_in_its_zspage() {
        let z = ZspageSnapshot {
            id: 0,
            pages: 2,
            group: 5,
            allocated: alloc::vec![false; 5],
        };
        // 1632-byte slots: slot 2 runs from 3264 to 4896, across the page boundary.
        assert_eq!(z.object_bytes(1632, false, 0), (0, 1632));
        assert_eq!(z.object_bytes(1632, false, 2), (3264, 4896));
        assert_eq!(z.object_bytes(1632, false, 4), (6528, 8160));
        // A huge class's one object fills its page from the start.
        assert_eq!(z.object_bytes(4096, true, 0), (0, 4096));
        assert_eq!(z.object_bytes(3600, true, 0), (0, 3600));
    }

    #[test]
    fn snapshot_lines_parse_back_to_the_same_snapshot() {
        let p = Pool::new("snap", HostBackend::new(4096, 2), Policy::ZSOS.config());
        let mut rng = crate::seeded::Rng::new(5);
        // Fewer under Miri, where this took over nine minutes at 500; 60 objects still fill
        // several classes and reach every unsafe read of a snapshot.
        let n = if cfg!(miri) { 60 } else { 500 };
        let hs: Vec<_> = (0..n)
            .map(|_| p.malloc(1 + rng.below(4096) as usize).unwrap())
            .collect();
        for h in hs.iter().step_by(3) {
            p.free(*h).unwrap();
        }
        let snap = Snapshot::of(&p, "end");
        let live: usize = snap
            .classes
            .iter()
            .flat_map(|c| &c.zspages)
            .map(|z| z.allocated.iter().filter(|&&a| a).count())
            .sum();
        assert_eq!(
            live,
            p.stats().objects() as usize,
            "one allocated slot per object"
        );
        let lines = snap.lines();
        let text: Vec<String> = core::iter::once("noise before".into())
            .chain(lines.iter().cloned())
            .chain(core::iter::once("REPLAY line=1".into()))
            .collect();
        assert_eq!(
            Snapshot::parse(text.iter().map(String::as_str)),
            Ok(alloc::vec![snap])
        );
    }

    #[test]
    fn a_snapshot_cut_short_is_an_error_naming_its_point() {
        let snap = Snapshot::of(&small_pool(), "here");
        let lines = snap.lines();
        let cut = |drop_at: usize| {
            let kept: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != drop_at)
                .map(|(_, l)| l.as_str())
                .collect();
            Snapshot::parse(kept)
        };
        for (i, line) in lines.iter().enumerate().skip(1) {
            let e = cut(i).expect_err(line);
            assert!(
                e.contains("here") || e.contains("SNAP"),
                "dropping line {i}: {e}"
            );
        }
        let half = &lines[2][..lines[2].len() / 2];
        let mut broken: Vec<&str> = lines.iter().map(String::as_str).collect();
        broken[2] = half;
        assert!(Snapshot::parse(broken).is_err(), "a line cut in half");
        // A zspage line whose alloc has too few or too many digits for its slots.
        let zspage_at = lines
            .iter()
            .position(|l| l.starts_with("SNAP zspage") && l.contains(" objs=2 "))
            .unwrap();
        // Two slots take one digit: none is too few, two too many.
        for alloc in ["", "ff", "z"] {
            let mut bad = lines.clone();
            let line = lines[zspage_at].clone();
            let at = line.find("alloc=").unwrap();
            bad[zspage_at] = format!("{}alloc={alloc}", &line[..at]);
            let objs: usize = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("objs="))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(objs, 2);
            let e = Snapshot::parse(bad.iter().map(String::as_str)).expect_err(alloc);
            assert!(e.contains("alloc"), "{alloc:?}: {e}");
        }
        assert!(Snapshot::parse(["SNAP end point=x"]).is_err());
    }
}
