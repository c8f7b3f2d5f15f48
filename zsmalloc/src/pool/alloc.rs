//! Allocation and freeing (Linux's `zs_malloc`, `zs_free`) and the checks that turn a handle
//! into its slot, refusing foreign, forged, stale and double-freed handles.

use core::sync::atomic::Ordering;

use super::lock_order::ClassGuard;
use super::profile::{Phase, Stopwatch};
use super::release::FramesAfterUnlock;
use super::{AutoCompact, Error, Pool};
use crate::backend::Backend;
use crate::class::MAX_ALLOC_SIZE;
use crate::handle::{self, Handle, HandleParts};
use crate::slots::{Slot, SlotState};
use crate::zsdesc;
use crate::zspage::ZsPageFrames;

impl<B: Backend> Pool<B> {
    /// Allocates an object of `size` bytes (Linux: `zs_malloc`). The pool's placement rule
    /// picks the class; the handle's slot is taken before the class lock (as Linux takes its
    /// handle from a cache first). The handle names the object's own class (the smallest
    /// whose slots fit it), wherever the object is: a rule may lend it a larger class's slot,
    /// and compaction may take it home later.
    pub fn malloc(&self, size: usize) -> Result<Handle, Error> {
        if size == 0 || size > MAX_ALLOC_SIZE {
            return Err(Error::InvalidSize(size));
        }
        let mut watch = self.stopwatch(false);
        let own = self.table.class_for(size);
        let view = self.class_view();
        let chosen = self.placement.choose(size, &view);
        assert!(
            view.fits(size, chosen),
            "placement rule {:?} chose class {chosen} for an object of {size} bytes: its slots \
             ({} bytes) do not fit it (its own class is {own})",
            self.placement,
            view.slot_size(chosen.min(view.classes() - 1)),
        );
        watch.lap(Phase::Place);
        let _pool = self.pool_wide();
        // A class other than the own one only while it still has room: the free-slot hint
        // may be stale by the time the class is locked, and a borrowed class must never grow.
        let (pos, slot, generation, mut class, id) =
            match self.reserve_in(chosen, own, size, &mut watch)? {
                Some(found) => found,
                None => self
                    .reserve_in(own, own, size, &mut watch)?
                    .expect("the own class may allocate a zspage"),
            };
        let obj = class.obj_malloc(&self.backend, id, slot);
        if pos != own {
            class.lend(own);
        }
        self.slots
            .get(slot)
            .expect("a reserved slot exists")
            .set_obj(obj);
        watch.lap(Phase::ObjectTake);
        class.fix_group(id);
        self.note_free_slots(pos, &class);
        watch.lap(Phase::Fullness);
        drop(class);
        self.note_demand(own, 1);
        self.slots.publish(slot);
        watch.lap(Phase::Publish);
        Ok(Handle::new(HandleParts {
            tag: self.tag,
            class: own as u8,
            generation,
            slot,
        }))
    }

    /// Reserves a slot for an object of `size` bytes whose own class is `own` and finds it a
    /// zspage with room in class `pos`, allocating a new zspage only in the own class (a
    /// borrowed class must never grow). Returns the class locked, or `None` if `pos` is not
    /// the own class and has no room now (nothing is held then).
    #[allow(clippy::type_complexity)]
    fn reserve_in(
        &self,
        pos: usize,
        own: usize,
        size: usize,
        watch: &mut Stopwatch<'_, B>,
    ) -> Result<Option<(usize, u32, u32, ClassGuard<'_>, u32)>, Error> {
        let may_grow = pos == own;
        let cpu = self.backend.cpu_index();
        let (slot, generation) = self
            .slots
            .reserve(cpu, own as u8, size as u16)
            .ok_or(Error::OutOfMemory)?;
        watch.lap(Phase::SlotReserve);
        let mut class = self.lock_class(pos);
        watch.lap(Phase::ClassLock);
        let id = loop {
            if let Some(id) = class.find_zspage() {
                break id;
            }
            if !may_grow {
                drop(class);
                self.slots.release(cpu, slot);
                return Ok(None);
            }
            // The frames are taken with the class unlocked (as Linux does): other CPUs go on
            // allocating and freeing in the class meanwhile. If one of them made room by the
            // time the lock is back, the frames go back and the room is used.
            let pages = self.growth.pages_for(&class);
            drop(class);
            let mut frames = ZsPageFrames::alloc(&self.backend, pages);
            if frames.is_none() && self.pool_lock.is_none() && self.compaction_pending() {
                // Out of frames: the slack frees queued is given back first (with no lock
                // held: compaction takes the migrate lock first; not under the pool-wide
                // lock, which malloc holds and compaction takes), then once more.
                self.compact_pending(usize::MAX);
                watch.lap(Phase::Reclaim);
                frames = ZsPageFrames::alloc(&self.backend, pages);
            }
            class = self.lock_class(pos);
            let Some(frames) = frames else {
                if let Some(id) = class.find_zspage() {
                    break id;
                }
                drop(class);
                self.slots.release(cpu, slot);
                return Err(Error::OutOfMemory);
            };
            if class.find_zspage().is_none() {
                self.pages_allocated.fetch_add(pages, Ordering::Relaxed);
                let id = class.install_zspage(&self.backend, frames);
                watch.lap(Phase::Grow);
                break id;
            }
        };
        Ok(Some((pos, slot, generation, class, id)))
    }

    /// The slot a handle names, after checking the handle is this pool's (no lock needed: the
    /// slot's address never changes).
    pub(super) fn slot_of(&self, handle: Handle) -> Result<(HandleParts, &Slot), Error> {
        let p = handle.parts();
        // LAB 5: BEGIN refuse a handle this pool never gave out, telling another pool's from a forged one
        if p.tag != self.tag {
            return Err(if p.tag == 0 {
                Error::InvalidHandle(handle)
            } else {
                Error::ForeignHandle(handle)
            });
        }
        if p.class as usize >= self.classes.len() {
            return Err(Error::InvalidHandle(handle));
        }
        // LAB 5: STUB
        // let _ = Error::ForeignHandle;
        // LAB 5: END
        let slot = self.slots.get(p.slot).ok_or(Error::InvalidHandle(handle))?;
        Ok((p, slot))
    }

    /// Checks that a slot's state still belongs to the handle's object.
    pub(super) fn check_state(handle: Handle, p: &HandleParts, st: SlotState) -> Result<(), Error> {
        // LAB 5: BEGIN refuse a handle whose object is gone (its slot may live again), and one that names the wrong class
        if st.generation != p.generation {
            return Err(if st.generation < p.generation && !st.live {
                Error::InvalidHandle(handle)
            } else {
                Error::StaleHandle(handle)
            });
        }
        if st.class != p.class {
            return Err(Error::InvalidHandle(handle));
        }
        // LAB 5: STUB
        // let _ = (p, Error::StaleHandle);
        // LAB 5: END
        if !st.live {
            return Err(Error::DoubleFree(handle));
        }
        Ok(())
    }

    /// Frees an object (Linux: `zs_free`): under the migrate lock held for reading, the slot
    /// gives the object up and its page names its class (it may be lent another class's
    /// slot); then the class lock, then the migrate lock is dropped. A zspage left empty
    /// leaves its class at once, and its frames go back to the backend once the class lock is
    /// dropped.
    pub fn free(&self, handle: Handle) -> Result<(), Error> {
        let mut watch = self.stopwatch(true);
        let (p, slot) = self.slot_of(handle)?;
        watch.lap(Phase::HandleCheck);
        let pool = self.pool_wide();
        let migrate = self.read_migrate();
        watch.lap(Phase::FreeLocks);
        // The slot is given up first: from then on nobody else frees or maps the object, and
        // under the migrate lock it does not move, so its page and class are stable.
        slot.update(|st| {
            Self::check_state(handle, &p, st)?;
            if st.maps != 0 {
                return Err(Error::ObjectBusy(handle));
            }
            Ok(SlotState { live: false, ..st })
        })?;
        self.note_demand(p.class as usize, -1);
        let (pfn, idx) = handle::decode_obj(slot.obj());
        let owner = zsdesc::owner(self.backend.desc(pfn))
            .expect("a live object's page belongs to a zspage");
        watch.lap(Phase::HandleCheck);
        let mut class = self.lock_class(owner.class as usize);
        drop(migrate);
        watch.lap(Phase::FreeLocks);
        if owner.class != p.class {
            class.unlend();
        }
        class.obj_free(&self.backend, owner.id, pfn, idx);
        watch.lap(Phase::ObjectReturn);
        // An emptied zspage leaves the class under its lock; its frames go back after it.
        let emptied = (class.fix_group(owner.id) == crate::zspage::GROUP_EMPTY).then(|| {
            watch.lap(Phase::Fullness);
            let frames = FramesAfterUnlock::new(&self.backend);
            let freed = class.free_zspage(&frames, owner.id);
            self.pages_allocated.fetch_sub(freed, Ordering::Relaxed);
            watch.lap(Phase::ZspageRelease);
            frames
        });
        let pos = owner.class as usize;
        self.note_free_slots(pos, &class);
        let compact = self.auto_compact.due(&class);
        watch.lap(Phase::Fullness);
        drop(class);
        if let Some(frames) = emptied {
            frames.give_back();
            watch.lap(Phase::ZspageRelease);
        }
        self.slots.release(self.backend.cpu_index(), p.slot);
        // Compaction takes the pool-wide lock itself (under `Locking::PoolWide`).
        drop(pool);
        watch.lap(Phase::SlotRelease);
        if compact && matches!(self.auto_compact, AutoCompact::Deferred { .. }) {
            self.queue_compaction(pos);
        } else if compact {
            // The class lock is dropped first: compaction takes the migrate lock before it.
            let (mut done, more) = self.compact_step(pos, 1);
            if !more {
                done = done.and(self.shrink_all(pos));
            }
            self.pages_auto_compacted
                .fetch_add(done.pages, Ordering::Relaxed);
            self.bytes_auto_moved
                .fetch_add(done.bytes, Ordering::Relaxed);
            watch.lap(Phase::Compaction);
        }
        Ok(())
    }
}
