//! Statistics in the shape of Linux's debugfs `zsmalloc/<pool>/classes` file.

use alloc::vec::Vec;
use core::fmt;

use crate::zspage::{ClassState, NR_GROUPS};

/// One class's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassStats {
    /// Logical class index.
    pub index: usize,
    /// Object slot size.
    pub size: usize,
    /// zspages per fullness group: `[0]` empty, `[1]` 0-9% ... `[10]` 90-99%, `[11]` full.
    pub groups: [u64; NR_GROUPS],
    /// Object slots in the class's zspages.
    pub obj_allocated: u64,
    /// Objects allocated by users.
    pub obj_used: u64,
    /// Pages held by the class.
    pub pages_used: u64,
    /// Pages per zspage.
    pub pages_per_zspage: usize,
    /// Objects per zspage.
    pub objs_per_zspage: usize,
    /// Pages a perfect compaction of this class would free (Linux: `zs_can_compact`).
    pub freeable: u64,
    /// Huge class (one object per page, no header).
    pub huge: bool,
}

impl ClassStats {
    pub(crate) fn of(c: &ClassState) -> ClassStats {
        ClassStats {
            index: c.layout.index,
            size: c.layout.size,
            groups: c.group_counts,
            obj_allocated: c.objs_allocated,
            obj_used: c.objs_inuse,
            pages_used: c.pages,
            pages_per_zspage: c.layout.pages_per_zspage,
            objs_per_zspage: c.layout.objs_per_zspage,
            freeable: c.freeable_pages(),
            huge: c.layout.huge,
        }
    }
}

/// All classes and the pool's totals.
#[derive(Debug, Clone)]
pub struct PoolStats {
    /// One entry per distinct class, smallest first.
    pub classes: Vec<ClassStats>,
    /// Pages held by the pool.
    pub total_pages: usize,
}

impl PoolStats {
    /// Objects allocated by users, over all classes.
    pub fn objects(&self) -> u64 {
        self.classes.iter().map(|c| c.obj_used).sum()
    }

    /// Pages a perfect compaction would free, over all classes.
    pub fn freeable(&self) -> u64 {
        self.classes.iter().map(|c| c.freeable).sum()
    }
}

impl fmt::Display for PoolStats {
    /// The table: one row per class in use (all rows with `{:#}`), then a `Total` row.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, " class  size")?;
        for pct in [
            "10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "99%", "100%",
        ] {
            write!(f, " {pct:>5}")?;
        }
        writeln!(
            f,
            " obj_allocated   obj_used pages_used pages_per_zspage freeable"
        )?;
        let mut total = [0u64; NR_GROUPS];
        let (mut alloc, mut used, mut pages, mut freeable) = (0, 0, 0, 0);
        for c in &self.classes {
            for (t, g) in total.iter_mut().zip(c.groups) {
                *t += g;
            }
            alloc += c.obj_allocated;
            used += c.obj_used;
            pages += c.pages_used;
            freeable += c.freeable;
            if c.obj_allocated == 0 && !f.alternate() {
                continue;
            }
            write!(f, " {:>5} {:>5}", c.index, c.size)?;
            for g in &c.groups[1..] {
                write!(f, " {g:>5}")?;
            }
            writeln!(
                f,
                " {:>13} {:>10} {:>10} {:>16} {:>8}",
                c.obj_allocated, c.obj_used, c.pages_used, c.pages_per_zspage, c.freeable
            )?;
        }
        write!(f, " Total      ")?;
        for g in &total[1..] {
            write!(f, " {g:>5}")?;
        }
        writeln!(
            f,
            " {alloc:>13} {used:>10} {pages:>10} {:>16} {freeable:>8}",
            ""
        )
    }
}
