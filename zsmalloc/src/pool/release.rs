//! A zspage that a free empties gives its frames back after the class lock is dropped (as
//! Linux's `zs_free` does since 2026): under the lock the zspage leaves its class and its
//! descriptors are reset, so no one can reach its frames any more; the frame allocator is
//! then called with the lock released, and other CPUs' mallocs and frees in the class do not
//! wait for it.
//!
//! [`ClassState::free_zspage`](crate::zspage::ClassState::free_zspage) (lab 4) gives each
//! frame back through the backend it is handed; the free path hands it a
//! [`FramesAfterUnlock`], which keeps the frames until [`FramesAfterUnlock::give_back`].

use core::cell::Cell;
use core::fmt;
use core::ops::Range;

use crate::backend::{Backend, Pfn};
use crate::zsdesc::{ZsDesc, ZsPageRef};

/// Frames in a zspage at most (the longest chain of [`crate::class::CHAIN_RANGE`]).
const MAX_FRAMES: usize = *crate::class::CHAIN_RANGE.end();

/// The pool's backend, except that the frames given back to it are held until
/// [`FramesAfterUnlock::give_back`] (or the drop) passes them on, in the order they came.
pub(super) struct FramesAfterUnlock<'b, B: Backend> {
    backend: &'b B,
    held: [Cell<Pfn>; MAX_FRAMES],
    count: Cell<usize>,
}

impl<'b, B: Backend> FramesAfterUnlock<'b, B> {
    /// Holds the frames given back to `backend` through it.
    pub(super) fn new(backend: &'b B) -> Self {
        FramesAfterUnlock {
            backend,
            held: [const { Cell::new(0) }; MAX_FRAMES],
            count: Cell::new(0),
        }
    }

    /// Gives the held frames to the backend: called with no class lock held.
    pub(super) fn give_back(self) {
        drop(self);
    }
}

impl<B: Backend> Drop for FramesAfterUnlock<'_, B> {
    fn drop(&mut self) {
        for frame in &self.held[..self.count.get()] {
            // SAFETY: each frame came to `free_page` below from a zspage that has left its
            // class with its descriptor reset: it came from the backend's `alloc_page`,
            // nothing reaches it any more, and it is given back once (the count is reset).
            unsafe { self.backend.free_page(frame.get()) };
        }
        self.count.set(0);
    }
}

// SAFETY: every promise is the inner backend's, kept by passing each call on unchanged, except
// `free_page`, which passes the frame on later, once, when this value is dropped: until then
// the frame is out of every zspage and used by no one, as the trait asks of a freed frame.
unsafe impl<B: Backend> Backend for FramesAfterUnlock<'_, B> {
    type PairMap<'a>
        = B::PairMap<'a>
    where
        Self: 'a;
    type CpuPin = B::CpuPin;

    fn alloc_page(&self) -> Option<Pfn> {
        self.backend.alloc_page()
    }

    unsafe fn free_page(&self, pfn: Pfn) {
        let n = self.count.get();
        assert!(n < MAX_FRAMES, "a zspage has at most {MAX_FRAMES} frames");
        self.held[n].set(pfn);
        self.count.set(n + 1);
    }

    fn desc(&self, pfn: Pfn) -> &ZsDesc {
        self.backend.desc(pfn)
    }

    fn owner_of_any(&self, pfn: Pfn) -> Option<ZsPageRef> {
        self.backend.owner_of_any(pfn)
    }

    fn move_desc(&self, old: Pfn, new: Pfn) -> bool {
        self.backend.move_desc(old, new)
    }

    fn page_ptr(&self, pfn: Pfn) -> *mut u8 {
        self.backend.page_ptr(pfn)
    }

    fn map_pair(
        &self,
        first: Pfn,
        second: Pfn,
        object: Range<usize>,
        writable: bool,
    ) -> Option<Self::PairMap<'_>> {
        self.backend.map_pair(first, second, object, writable)
    }

    fn map_pair_lazy(
        &self,
        first: Pfn,
        second: Pfn,
        object: Range<usize>,
        writable: bool,
    ) -> Option<Self::PairMap<'_>> {
        self.backend.map_pair_lazy(first, second, object, writable)
    }

    fn pin_cpu(&self) -> (usize, Self::CpuPin) {
        self.backend.pin_cpu()
    }

    fn cpu_index(&self) -> usize {
        self.backend.cpu_index()
    }

    fn possible_cpus(&self) -> usize {
        self.backend.possible_cpus()
    }

    fn report(&self, message: fmt::Arguments) {
        self.backend.report(message)
    }

    fn holding_migrate_read(&self) {
        self.backend.holding_migrate_read()
    }

    fn cycles(&self) -> u64 {
        self.backend.cycles()
    }

    fn movable_ops(&self) -> u64 {
        self.backend.movable_ops()
    }
}
