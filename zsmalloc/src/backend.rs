//! The only way zsmalloc reaches the machine: frames, their descriptors, and mappings of
//! one or two frames. The kernel implements it over its memmap, buddy allocator and per-CPU
//! PTE window; the crate's tests implement it on the host heap.

use core::fmt;
use core::ops::Range;

use crate::zsdesc::ZsDesc;

/// A physical frame number.
pub type Pfn = u64;

/// Two frames mapped at consecutive virtual pages (the PTE window). Dropping it unmaps.
pub trait PairMapping {
    /// Address of the first byte of the first frame; the second frame follows at +4096.
    fn ptr(&self) -> *mut u8;
}

/// What zsmalloc needs from the machine.
///
/// # Safety
/// Implementations promise that:
/// * `alloc_page` returns frames nobody else uses until they are given back to `free_page`,
///   each distinct from every other frame the pool holds;
/// * `page_ptr(pfn)` is valid for reads and writes of 4096 bytes for as long as the pool
///   holds the frame, and `desc(pfn)` is that frame's descriptor, stable at that address
///   until the frame leaves the pool (or, after `move_desc(pfn, new)` answered `true`, from
///   then on `desc(new)`);
/// * `map_pair(a, b, object, ..)` and `map_pair_lazy(..)` return a mapping whose `ptr()` starts
///   8192 contiguous bytes showing frame `a` then frame `b`, at least at the offsets `object`
///   (writable if asked), until dropped, or `None` if this CPU's mapping resource is in use; after a lazy mapping is dropped its addresses
///   are never handed out again while a stale translation of them may survive;
/// * `pin_cpu` returns the current CPU's index (below `possible_cpus()`) and a guard that
///   keeps the caller on that CPU, with nothing else on it using the pool's per-CPU state,
///   until dropped.
pub unsafe trait Backend {
    /// A live two-frame mapping.
    type PairMap<'a>: PairMapping
    where
        Self: 'a;
    /// Keeps the caller on its CPU until dropped.
    type CpuPin;

    /// A free order-0 frame, or `None` when out of memory.
    fn alloc_page(&self) -> Option<Pfn>;

    /// Gives back a frame from `alloc_page`.
    ///
    /// # Safety
    /// `pfn` came from `alloc_page`, is not used any more, and was not freed already.
    unsafe fn free_page(&self, pfn: Pfn);

    /// The frame's zsmalloc descriptor (of a frame the pool holds or was given).
    fn desc(&self, pfn: Pfn) -> &ZsDesc;

    /// The zspage that any frame number a caller may name belongs to, read from its
    /// descriptor (the migration entry points take frames from outside): `None` if the machine
    /// has no such frame or it is no zsmalloc page. A value, not the descriptor: a frame that
    /// is not the pool's may stop being a zsmalloc page at any moment, and its descriptor with
    /// it (the kernel reads it inside a section its descriptor cache waits for).
    fn owner_of_any(&self, pfn: Pfn) -> Option<crate::zsdesc::ZsPageRef>;

    /// Where a migrated page's descriptor goes, called once the bytes of `old` are in `new`
    /// (a frame the pool now owns) under the locks that keep every other user of both
    /// descriptors out. `true` if the machine moved a pointer: `desc(new)` is now the very
    /// descriptor `old` had (and `old` has none left), so migration neither copies nor resets
    /// it. `false`, the default, when each frame has a descriptor of its own (a `struct
    /// page`-like memmap): migration copies the fields into `new`'s and resets `old`'s.
    fn move_desc(&self, old: Pfn, new: Pfn) -> bool {
        let _ = (old, new);
        false
    }

    /// The frame's bytes (the direct map, on the kernel).
    fn page_ptr(&self, pfn: Pfn) -> *mut u8;

    /// Maps `first` and `second` contiguously; `None` if this CPU's window is busy. `object`
    /// is where, in the 8192 bytes, the object the mapping is for lies: the only bytes the
    /// pool reads or writes through it (a machine maps the frames whole; a backend that
    /// emulates the window copies just these, so that objects of other CPUs in the same
    /// pages are never touched).
    fn map_pair(
        &self,
        first: Pfn,
        second: Pfn,
        object: Range<usize>,
        writable: bool,
    ) -> Option<Self::PairMap<'_>>;
    /// As [`Backend::map_pair`] (same promises), but the machine may defer invalidating the
    /// translation after the mapping is dropped, as long as nothing reaches the frames
    /// through the mapping's addresses afterwards (`MapPath::LazyWindow`). The default maps as
    /// `map_pair` does.
    fn map_pair_lazy(
        &self,
        first: Pfn,
        second: Pfn,
        object: Range<usize>,
        writable: bool,
    ) -> Option<Self::PairMap<'_>> {
        self.map_pair(first, second, object, writable)
    }

    /// The current CPU's index and a guard that keeps the caller on it.
    fn pin_cpu(&self) -> (usize, Self::CpuPin);

    /// The current CPU's index (below `possible_cpus()`), for per-CPU caches that tolerate
    /// a stale answer. The default asks `pin_cpu`.
    fn cpu_index(&self) -> usize {
        self.pin_cpu().0
    }

    /// How many CPUs may ever call into the pool (sizes per-CPU state).
    fn possible_cpus(&self) -> usize;

    /// Reports something worth a user's attention (a pool dropped with live objects).
    fn report(&self, message: fmt::Arguments);

    /// Called with the pool's migrate lock just taken for reading (a map, a read, a write, a
    /// free). Does nothing by default; a test backend may stretch the hold, so that readers
    /// on several CPUs overlap and the lock's fairness to compaction (a writer) shows.
    fn holding_migrate_read(&self) {}

    /// A cycle counter (the time-stamp counter, on the kernel), read only while a pool's
    /// phase profile is on (`Pool::set_profiling`); 0, the default, counts nothing.
    fn cycles(&self) -> u64 {
        0
    }

    /// The token of the movable-page operations registered for this pool's pages (stored in
    /// each page's descriptor with the movable flag, so the machine's page migration can find
    /// the pool); 0, the default, leaves pages unmarked.
    fn movable_ops(&self) -> u64 {
        0
    }
}
