//! A replay step by step, for the replay viewer (`cargo run -- replay FILE --viewer DIR`):
//! after each operation, the operation, where every live object is (class, zspage, slot) and
//! the pool's snapshot. The kernel prints each step as `VIEW` and `SNAP` lines
//! ([`StepView::lines`], `docs/protocol.md`); the runner parses them back
//! ([`StepView::parse`]) and writes the page (`boot::viewer`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::backend::Backend;
use crate::pool::Pool;
use crate::snapshot::{Fields, Snapshot};
use crate::trace::Step;

/// The most operations a trace may have for the viewer: each step carries the whole pool,
/// and the page must stay small enough for a browser to open at once.
pub const VIEWER_MAX_OPS: usize = 2000;

/// Live objects on one `VIEW objs` line.
const OBJECTS_PER_LINE: usize = 32;

/// Where one live object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAt {
    /// The trace's id for it.
    pub id: u64,
    /// Its class's position (as [`crate::snapshot::ClassSnapshot::pos`]).
    pub class_pos: usize,
    /// Its zspage's id in the class.
    pub zspage: u32,
    /// Its slot in the zspage.
    pub slot: u32,
}

/// The pool after one operation of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepView {
    /// 1 for the first operation.
    pub n: usize,
    /// The operation's line in the trace.
    pub line: usize,
    /// The operation as the trace says it (`a 17 1200`).
    pub op: String,
    /// Every live object, by id.
    pub objects: Vec<ObjectAt>,
    /// The pool (its point is `step-N`).
    pub pool: Snapshot,
}

impl StepView {
    /// The pool as `step` left it, as step `n`.
    pub fn of<B: Backend>(pool: &Pool<B>, step: &Step<'_>, n: usize) -> StepView {
        let objects = step
            .objects()
            .map(|(id, h)| {
                let at = pool
                    .location(h)
                    .expect("a live object of the replay has a location");
                ObjectAt {
                    id,
                    class_pos: at.zspage.class as usize,
                    zspage: at.zspage.id,
                    slot: at.index,
                }
            })
            .collect();
        StepView {
            n,
            line: step.line,
            op: format!("{}", step.op),
            objects,
            pool: Snapshot::of(pool, &format!("step-{n}")),
        }
    }

    /// The step as console lines: `VIEW step`, `VIEW objs` lines of `ID:POS.ZSPAGE.SLOT`
    /// words, then the snapshot's `SNAP` lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.push(format!(
            "VIEW step n={} line={} op={} objects={}",
            self.n,
            self.line,
            self.op.replace(' ', ","),
            self.objects.len()
        ));
        for chunk in self.objects.chunks(OBJECTS_PER_LINE) {
            let words: Vec<String> = chunk
                .iter()
                .map(|o| format!("{}:{}.{}.{}", o.id, o.class_pos, o.zspage, o.slot))
                .collect();
            out.push(format!("VIEW objs {}", words.join(" ")));
        }
        out.extend(self.pool.lines());
        out
    }

    /// Parses the steps in `lines` (other lines, and snapshots that are not a step's, are
    /// skipped). A step cut short (objects or its snapshot missing, a bad word) is an error
    /// naming it.
    pub fn parse<'a>(
        lines: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<Vec<StepView>, String> {
        let mut steps: Vec<(StepView, usize)> = Vec::new();
        for line in lines.clone() {
            let Some(rest) = line.trim_end().strip_prefix("VIEW ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            match words.next() {
                Some("step") => {
                    let fields = Fields::of(words, "step", line);
                    let view = StepView {
                        n: fields.num("n")?,
                        line: fields.num("line")?,
                        op: fields.get("op")?.replace(',', " "),
                        objects: Vec::new(),
                        pool: Snapshot::default(),
                    };
                    steps.push((view, fields.num("objects")?));
                }
                Some("objs") => {
                    let Some((view, _)) = steps.last_mut() else {
                        return Err(format!("objects before any step: '{line}'"));
                    };
                    for word in words {
                        let at = parse_object(word).ok_or_else(|| {
                            format!("step {}: '{word}' is not ID:POS.ZSPAGE.SLOT", view.n)
                        })?;
                        view.objects.push(at);
                    }
                }
                _ => return Err(format!("unknown step line: '{line}'")),
            }
        }
        let mut pools: Vec<Snapshot> = Snapshot::parse(lines)?
            .into_iter()
            .filter(|s| s.point.starts_with("step-"))
            .collect();
        pools.reverse();
        let mut out = Vec::with_capacity(steps.len());
        for (mut view, objects) in steps {
            if view.objects.len() != objects {
                return Err(format!(
                    "step {} cut short: {} of its {objects} objects",
                    view.n,
                    view.objects.len()
                ));
            }
            let point = format!("step-{}", view.n);
            match pools.pop() {
                Some(pool) if pool.point == point => view.pool = pool,
                _ => return Err(format!("step {} has no snapshot of its own", view.n)),
            }
            out.push(view);
        }
        if let Some(extra) = pools.pop() {
            return Err(format!("snapshot {} belongs to no step", extra.point));
        }
        Ok(out)
    }
}

fn parse_object(word: &str) -> Option<ObjectAt> {
    let (id, place) = word.split_once(':')?;
    let mut place = place.split('.');
    let at = ObjectAt {
        id: id.parse().ok()?,
        class_pos: place.next()?.parse().ok()?,
        zspage: place.next()?.parse().ok()?,
        slot: place.next()?.parse().ok()?,
    };
    place.next().is_none().then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostBackend;
    use crate::trace::replay_steps;
    use crate::{Policy, PoolConfig};

    const TRACE: &str = "a 1 2000\na 2 2000\na 3 100\nw 3\nf 1\na 4 3000\ns\nf 2\nc\n";

    fn steps_of(trace: &str, config: PoolConfig) -> Vec<StepView> {
        let pool = Pool::new("steps", HostBackend::new(256, 1), config);
        let mut out = Vec::new();
        replay_steps(
            &pool,
            trace.as_bytes(),
            |_| {},
            |s| {
                let n = out.len() + 1;
                out.push(StepView::of(&pool, s, n));
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn each_step_holds_its_operation_and_every_live_object_in_its_slot() {
        let steps = steps_of(TRACE, PoolConfig::default());
        let ops: Vec<&str> = steps.iter().map(|s| s.op.as_str()).collect();
        assert_eq!(
            ops,
            [
                "a 1 2000", "a 2 2000", "a 3 100", "w 3", "f 1", "a 4 3000", "s", "f 2", "c"
            ]
        );
        let lines: Vec<usize> = steps.iter().map(|s| s.line).collect();
        assert_eq!(lines, (1..=9).collect::<Vec<_>>());
        let ids = |s: &StepView| s.objects.iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(ids(&steps[2]), [1, 2, 3]);
        assert_eq!(ids(&steps[4]), [2, 3]);
        assert_eq!(ids(&steps[8]), [3, 4]);
        for s in &steps {
            // Each object is in an allocated slot of its snapshot, and each allocated slot
            // holds one object.
            for o in &s.objects {
                let class = s
                    .pool
                    .classes
                    .iter()
                    .find(|c| c.pos == o.class_pos)
                    .unwrap();
                let z = class.zspages.iter().find(|z| z.id == o.zspage).unwrap();
                assert!(
                    z.allocated[o.slot as usize],
                    "step {}: object {}",
                    s.n, o.id
                );
            }
            let allocated: usize = s
                .pool
                .classes
                .iter()
                .flat_map(|c| &c.zspages)
                .map(|z| z.allocated.iter().filter(|&&a| a).count())
                .sum();
            assert_eq!(allocated, s.objects.len(), "step {}", s.n);
        }
        // Objects 1 and 2 share the 2048-byte class's one-page zspage, in slots 0 and 1.
        let at = |s: &StepView, id| *s.objects.iter().find(|o| o.id == id).unwrap();
        let (one, two) = (at(&steps[1], 1), at(&steps[1], 2));
        assert_eq!((one.class_pos, one.zspage), (two.class_pos, two.zspage));
        assert_eq!((one.slot, two.slot), (0, 1));
    }

    #[test]
    fn compaction_moves_show_as_an_object_in_another_zspage() {
        // Two zspages of the 2048-byte class, each left with one object: compaction moves
        // one into the other.
        let trace = "a 1 2000\na 2 2000\na 3 2000\na 4 2000\nf 2\nf 3\nc\n";
        let steps = steps_of(trace, PoolConfig::default());
        let before = &steps[5];
        let after = &steps[6];
        assert_eq!(before.pool.pages(), 2);
        assert_eq!(after.pool.pages(), 1, "compaction gave a page back");
        let zspages = |s: &StepView| {
            let mut z: Vec<u32> = s.objects.iter().map(|o| o.zspage).collect();
            z.dedup();
            z
        };
        assert_eq!(zspages(before).len(), 2);
        assert_eq!(zspages(after).len(), 1, "both objects in one zspage now");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "parsing re-run for every dropped line: nearly eight minutes under Miri; the steps' pool reads run there in the tests above"
    )]
    fn step_lines_parse_back_to_the_same_steps_and_cut_short_ones_are_refused() {
        let steps = steps_of(TRACE, Policy::ZSOS.config());
        let mut lines: Vec<String> = Vec::new();
        for s in &steps {
            lines.extend(s.lines());
            lines.push("replay x: line 9 (after c): noise".into());
        }
        let all = |ls: &[String]| StepView::parse(ls.iter().map(String::as_str));
        assert_eq!(all(&lines), Ok(steps.clone()));
        // Any VIEW or SNAP line dropped: an error.
        for (i, l) in lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.starts_with("replay"))
        {
            let mut cut = lines.clone();
            cut.remove(i);
            assert!(all(&cut).is_err(), "dropping line {i}: {l}");
        }
        let bad: Vec<String> = lines.iter().map(|l| l.replacen("1:", "1;", 1)).collect();
        assert!(all(&bad).unwrap_err().contains("ID:POS.ZSPAGE.SLOT"));
        assert_eq!(parse_object("7:3.2.1.0"), None);
        assert_eq!(
            parse_object("7:3.2.1"),
            Some(ObjectAt {
                id: 7,
                class_pos: 3,
                zspage: 2,
                slot: 1
            })
        );
    }
}
