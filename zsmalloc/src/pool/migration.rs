//! Moving objects: compaction (Linux's `zs_compact`) and page migration (`zs_page_isolate`,
//! `zs_page_migrate`, `zs_page_putback`). Both take the migrate lock for writing, so no handle
//! is resolved while objects move, and skip zspages with a mapped object.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::{AutoCompact, Error, Pool};
use crate::backend::{Backend, Pfn};
use crate::growth::Growth;
use crate::zsdesc;
use crate::zspage::{ClassState, GROUP_EMPTY, LentObject, ZsPageFrames};

/// Source zspages a step of [`Pool::compact_pending`] empties under one hold of the locks
/// (the owner pauses for it; `compact`, like Linux's, lets others in after each zspage).
const PENDING_SOURCES_PER_STEP: usize = 4;

/// What a compaction step or shrink did: pages given back (net) and object bytes moved.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Moved {
    pub(super) pages: usize,
    pub(super) bytes: u64,
}

/// Why compaction moved an object: the three ways it repacks a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveKind {
    /// A compaction step: out of the emptiest zspage into the fullest (Linux's only kind).
    Step = 0,
    /// From past the cut of a zspage cut to a shorter length (`ClassState::shrink`, zsos's
    /// growth rule).
    Shrink = 1,
    /// A class's short and partly used zspages repacked (`ClassState::merge`, zsos's rule).
    Merge = 2,
    /// An object lent a larger class's slot, back to a free slot of its own class
    /// (`Pool::take_home`, under a placement rule that lends).
    Home = 3,
}

impl MoveKind {
    /// Every kind, in index order.
    pub const ALL: [MoveKind; 4] = [
        MoveKind::Step,
        MoveKind::Shrink,
        MoveKind::Merge,
        MoveKind::Home,
    ];

    /// The kind's name in the bench's output.
    pub fn name(self) -> &'static str {
        match self {
            MoveKind::Step => "step",
            MoveKind::Shrink => "shrink",
            MoveKind::Merge => "merge",
            MoveKind::Home => "home",
        }
    }
}

impl Moved {
    /// Both together.
    pub(super) fn and(self, other: Moved) -> Moved {
        Moved {
            pages: self.pages + other.pages,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl<B: Backend> Pool<B> {
    /// Compacts every class, largest first (Linux: `zs_compact`): live objects move from the
    /// sparsest zspages into the fullest, emptied zspages go back to the frame allocator.
    /// Handles stay valid. Zspages with mapped objects are not emptied. Each source zspage is
    /// emptied under the migrate lock held for writing and the class lock, both released
    /// before the next (as Linux's compaction lets go when others wait), so maps, frees and
    /// allocations get in between. Under a placement rule that lends slots of larger classes,
    /// objects lent one go home first where their own class has a free slot. Returns pages
    /// freed.
    pub fn compact(&self) -> usize {
        let home = self.take_home_all().pages;
        // Every class is compacted now: the queue of deferred compaction is done with too.
        for w in &self.pending {
            w.store(0, Ordering::Relaxed);
        }
        home + (0..self.classes.len())
            .rev()
            .map(|pos| self.compact_class(pos, usize::MAX, 1).0.pages)
            .sum::<usize>()
    }

    /// Takes every object that the placement rule lent a larger class's slot back to a free
    /// slot of its own class, where the own class has one (it never grows for it), largest
    /// class first. Only [`Pool::compact`] does (before its steps, which then close the holes
    /// left): measured, doing it at every pause of deferred compaction too cost about 1.5 ×
    /// the cycles of compaction on uniform sizes for at most nine pages fewer
    /// (`docs/policies.md`).
    /// Nothing to do under Linux's placement, which never lends. Returns what was done.
    pub(super) fn take_home_all(&self) -> Moved {
        let mut done = Moved::default();
        if self.placement == crate::Placement::Linux {
            return done;
        }
        for pos in (0..self.classes.len()).rev() {
            // Only a class lent to classes that have room now is searched.
            let room = self.room.each_ref().map(|w| w.load(Ordering::Relaxed));
            if !self.lock_class(pos).may_lend_to(&room) {
                continue;
            }
            done = done.and(self.take_home(pos));
        }
        done
    }

    /// Moves the objects lent slots of class `pos` to free slots of their own classes:
    /// under the migrate lock held for writing (no free, map or other move meanwhile), the
    /// lent objects are listed under `pos`'s lock, slots are taken for them under each own
    /// class's lock in turn, and they are copied and freed under `pos`'s lock again (one class
    /// lock at a time: the lock order has no second class lock). Objects in zspages with a
    /// mapped object stay. Returns what was done (pages given back: `pos`'s zspages emptied).
    fn take_home(&self, pos: usize) -> Moved {
        let _pool = self.pool_wide();
        let _migrate = self.write_migrate();
        // The own classes' free slots now (hints: a malloc may take some meanwhile).
        let mut room: Vec<u64> = self.free_slots[..pos]
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .collect();
        let mut lent = self
            .lock_class(pos)
            .lent_objects(&self.backend, &self.slots, &mut room);
        lent.sort_unstable_by_key(|o| o.home);
        // Each lent object with the slot its own class took for it, and that slot's size.
        let mut taken: Vec<(LentObject, u64, usize)> = Vec::with_capacity(lent.len());
        for group in lent.chunk_by(|a, b| a.home == b.home) {
            let home = group[0].home;
            let mut class = self.lock_class(home);
            for &o in group {
                let Some(id) = class.find_zspage() else {
                    break;
                };
                let obj = class.obj_malloc(&self.backend, id, o.slot);
                class.fix_group(id);
                taken.push((o, obj, class.layout.size));
            }
            self.note_free_slots(home, &class);
        }
        if taken.is_empty() {
            return Moved::default();
        }
        // In the order of the lender's zspages and objects, which the copies read.
        taken.sort_unstable_by_key(|(o, _, _)| (o.at.0, o.at.2));
        let mut class = self.lock_class(pos);
        let mut bytes = 0;
        let mut left: Vec<u32> = Vec::with_capacity(taken.len());
        for &(o, obj, home_size) in &taken {
            class.move_home(&self.backend, &self.slots, o, obj, home_size);
            bytes += home_size as u64;
            left.push(o.at.0);
        }
        left.sort_unstable();
        left.dedup();
        let mut freed = 0;
        for id in left {
            if class.fix_group(id) == GROUP_EMPTY {
                freed += class.free_zspage(&self.backend, id);
            }
        }
        self.count_bytes_moved(&class, MoveKind::Home, (taken.len() as u64, bytes), freed)
    }

    /// Compacts class `pos` step by step (each emptying up to `sources` source zspages under
    /// the locks) until no zspage can be emptied or shrunk (a shrink can make room for more
    /// steps), or about `max_pages` pages were given back. Returns what was done and whether
    /// the class was left with more to do.
    fn compact_class(&self, pos: usize, max_pages: usize, sources: usize) -> (Moved, bool) {
        let mut done = Moved::default();
        loop {
            // A class with nothing to free costs no write lock of the migrate lock.
            let mut more = self.lock_class(pos).freeable_zspages() > 0;
            while more {
                if done.pages >= max_pages {
                    return (done, true);
                }
                let step;
                (step, more) = self.compact_step(pos, sources);
                done = done.and(step);
            }
            let shrunk = self.shrink_all(pos).and(self.merge_all(pos));
            done = done.and(shrunk);
            if shrunk.pages == 0 {
                return (done, false);
            }
        }
    }

    /// Drains the queue of classes that frees marked for compaction under
    /// [`AutoCompact::Deferred`](super::AutoCompact::Deferred), largest class first: each is
    /// compacted as [`Pool::compact`] would, until about `max_pages` pages are given back (a
    /// class left half done goes back on the queue). The pool's owner calls this when idle,
    /// with `usize::MAX` or a budget; a malloc that finds no frames calls it. Counted as
    /// automatic compaction. Returns pages given back.
    pub fn compact_pending(&self, max_pages: usize) -> usize {
        let mut done = Moved::default();
        // Classes left with work go back on the queue at the end (not at once: the loop
        // would take them again).
        let mut requeue = [0u64; 4];
        while done.pages < max_pages {
            let Some(pos) = self.take_queued() else {
                break;
            };
            let (step, more) =
                self.compact_class(pos, max_pages - done.pages, PENDING_SOURCES_PER_STEP);
            done = done.and(step);
            if more {
                requeue[pos / 64] |= 1u64 << (pos % 64);
            }
        }
        for (word, bits) in self.pending.iter().zip(requeue) {
            if bits != 0 {
                word.fetch_or(bits, Ordering::Relaxed);
            }
        }
        // Then, while the budget lasts, every class's partly used zspages are cut to the
        // fewest pages that hold their objects (a class's last zspage is partly used at the
        // end of a fill, and its objects sit in its first slots: the cut moves few or none).
        if matches!(self.auto_compact, AutoCompact::Deferred { .. }) {
            for pos in (0..self.classes.len()).rev() {
                if done.pages >= max_pages {
                    break;
                }
                done = done.and(self.shrink_all(pos));
            }
        }
        self.pages_auto_compacted
            .fetch_add(done.pages, Ordering::Relaxed);
        self.bytes_auto_moved
            .fetch_add(done.bytes, Ordering::Relaxed);
        done.pages
    }

    /// Counts what a move of one kind in class `pos` did (a compaction step, a shrink or a
    /// repacking): objects and bytes moved, pages given back (net).
    fn count_moves(&self, class: &ClassState, kind: MoveKind, moved: u64, pages: usize) -> Moved {
        let bytes = moved * class.layout.size as u64;
        self.count_bytes_moved(class, kind, (moved, bytes), pages)
    }

    /// As [`Pool::count_moves`], for `moved.0` objects whose copies took `moved.1` bytes.
    fn count_bytes_moved(
        &self,
        class: &ClassState,
        kind: MoveKind,
        (moved, bytes): (u64, u64),
        pages: usize,
    ) -> Moved {
        self.note_free_slots(class.pos as usize, class);
        self.objs_moved.fetch_add(moved, Ordering::Relaxed);
        self.bytes_moved.fetch_add(bytes, Ordering::Relaxed);
        self.bytes_moved_by[kind as usize].fetch_add(bytes, Ordering::Relaxed);
        self.pages_freed_by[kind as usize].fetch_add(pages, Ordering::Relaxed);
        self.pages_allocated.fetch_sub(pages, Ordering::Relaxed);
        self.pages_compacted.fetch_add(pages, Ordering::Relaxed);
        Moved { pages, bytes }
    }

    /// Under a growth rule that makes zspages of several lengths, cuts each zspage whose
    /// objects a shorter zspage would hold down to that length, moving only the objects past
    /// the cut (after compaction, the class's last partly used zspage is often a long one).
    /// Returns pages freed.
    pub(super) fn shrink_all(&self, pos: usize) -> Moved {
        let mut done = Moved::default();
        if self.growth == Growth::Fixed {
            return done;
        }
        loop {
            let Some((id, pages)) = self.lock_class(pos).shrinkable() else {
                return done;
            };
            let _pool = self.pool_wide();
            let _migrate = self.write_migrate();
            let mut class = self.lock_class(pos);
            // Checked again under the locks: the zspage may have changed or be mapped.
            let (freed, moved) = class.shrink(&self.backend, &self.slots, id, pages);
            if freed == 0 {
                return done;
            }
            done = done.and(self.count_moves(&class, MoveKind::Shrink, moved, freed));
        }
    }

    /// Under a growth rule that makes zspages of several lengths, repacks the class's short
    /// and partly used zspages into the fewest pages that hold their objects, if that saves a
    /// page (see `ClassState::mergeable`). Returns pages freed, net.
    pub(super) fn merge_all(&self, pos: usize) -> Moved {
        if self.growth == Growth::Fixed {
            return Moved::default();
        }
        let Some(plan) = self.lock_class(pos).mergeable() else {
            return Moved::default();
        };
        // The frames are taken before the locks, as for a new zspage.
        let mut frames = Vec::with_capacity(plan.lengths.len());
        for &pages in &plan.lengths {
            match ZsPageFrames::alloc(&self.backend, pages) {
                Some(f) => frames.push(f),
                None => return Moved::default(),
            }
        }
        let _pool = self.pool_wide();
        let _migrate = self.write_migrate();
        let mut class = self.lock_class(pos);
        let (freed, added, moved) = class.merge(&self.backend, &self.slots, &plan, frames);
        if freed < added {
            // Only if a drain moved nothing (the new zspages that stayed are the pool's).
            self.pages_allocated
                .fetch_add(added - freed, Ordering::Relaxed);
        }
        self.count_moves(&class, MoveKind::Merge, moved, freed.saturating_sub(added))
    }

    /// One step of compaction of class `pos`: empties at most `sources` source zspages under
    /// the migrate lock held for writing and the class lock. Returns (pages freed, whether
    /// more could be done).
    pub(super) fn compact_step(&self, pos: usize, sources: usize) -> (Moved, bool) {
        let _pool = self.pool_wide();
        let _migrate = self.write_migrate();
        let mut class = self.lock_class(pos);
        let (pages, moved, more) = class.compact(&self.backend, &self.slots, sources);
        (self.count_moves(&class, MoveKind::Step, moved, pages), more)
    }

    /// Moves one page of a zspage to a fresh frame from the backend (Linux:
    /// `zs_page_migrate`); see [`Pool::migrate_page_into`]. Returns the new frame.
    pub fn migrate_page(&self, pfn: Pfn) -> Result<Pfn, Error> {
        self.owner_of(pfn)?;
        let new = self.backend.alloc_page().ok_or(Error::OutOfMemory)?;
        // SAFETY: `new` came from the backend's allocator just now and nothing else uses it.
        match unsafe { self.migrate_page_into(pfn, new) } {
            Ok(()) => Ok(new),
            Err(e) => {
                // SAFETY: `new` came from alloc_page just now and migration left it unused.
                unsafe { self.backend.free_page(new) };
                Err(e)
            }
        }
    }

    /// Moves page `pfn` of a zspage into the frame `new` (Linux: `zs_page_migrate`): the bytes
    /// are copied, the chain and the page's zsdesc move to the new frame, the slots of the
    /// objects that start in the page are repointed, and the old frame goes back to the
    /// backend through `free_page`. Handles stay valid. On success the pool owns `new`.
    /// Refused, with nothing changed and `new` still the caller's, if the frame is not this
    /// pool's or its zspage has a mapped object.
    ///
    /// # Safety
    /// `new` is a whole frame that the caller owns and nobody else reads or writes, distinct
    /// from every frame the pool holds, from the allocator behind the backend's `alloc_page`
    /// (the pool writes all of it, and its `free_page` takes it back one day).
    pub unsafe fn migrate_page_into(&self, pfn: Pfn, new: Pfn) -> Result<(), Error> {
        let _pool = self.pool_wide();
        let _migrate = self.write_migrate();
        let owner = self.owner_of(pfn)?;
        let mut class = self.lock_class(owner.class as usize);
        class.migrate_page(&self.backend, &self.slots, owner.id, pfn, new)
    }

    /// Claims a page of this pool for migration (Linux: `zs_page_isolate`): marks it isolated
    /// so that no other migrator takes it. Refused if the page is not the pool's or is already
    /// isolated. Its zspage may still be freed meanwhile; migration then reports
    /// [`Error::NotOurPage`].
    pub fn isolate_page(&self, pfn: Pfn) -> Result<(), Error> {
        let _pool = self.pool_wide();
        let _migrate = self.read_migrate();
        let owner = self.owner_of(pfn)?;
        let class = self.lock_class(owner.class as usize);
        if !class.holds_page(&self.backend, owner.id, pfn) {
            return Err(Error::NotOurPage(pfn));
        }
        if !zsdesc::try_isolate(self.backend.desc(pfn)) {
            return Err(Error::ZspageBusy(pfn));
        }
        Ok(())
    }

    /// Undoes [`Pool::isolate_page`] for a page that was not migrated (Linux:
    /// `zs_page_putback`). A page that is no longer the pool's is left alone.
    pub fn putback_page(&self, pfn: Pfn) {
        let _pool = self.pool_wide();
        let _migrate = self.read_migrate();
        if let Ok(owner) = self.owner_of(pfn) {
            let class = self.lock_class(owner.class as usize);
            if class.holds_page(&self.backend, owner.id, pfn) {
                zsdesc::clear_isolated(self.backend.desc(pfn));
            }
        }
    }

    /// The zspage a frame named by a caller belongs to, as its descriptor says; `NotOurPage`
    /// for a frame the machine does not have, a frame of no zspage, or a class out of range
    /// (the descriptor is checked again under the class lock).
    fn owner_of(&self, pfn: Pfn) -> Result<zsdesc::ZsPageRef, Error> {
        self.backend
            .owner_of_any(pfn)
            .filter(|o| (o.class as usize) < self.classes.len())
            .ok_or(Error::NotOurPage(pfn))
    }

    /// Every page the pool holds, zspage by zspage (for migration and checks).
    pub fn pages(&self) -> Vec<Pfn> {
        let mut out = Vec::with_capacity(self.total_pages());
        for pos in 0..self.classes.len() {
            let c = self.lock_class(pos);
            for id in c.live_zspages() {
                let mut pfn = Some(c.zspage(id).first);
                while let Some(p) = pfn {
                    out.push(p);
                    pfn = if c.layout.huge {
                        None
                    } else {
                        zsdesc::next(self.backend.desc(p))
                    };
                }
            }
        }
        out
    }
}
