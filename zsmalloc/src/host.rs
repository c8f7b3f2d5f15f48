//! A host backend for the crate's tests (and Miri): frames are page-aligned heap blocks,
//! descriptors a plain array (or, in the memdesc arrangement, a pool of descriptors that each
//! frame points into, which migration re-points), and the "window" a copy that writes back
//! only what changed.
//! It can be told to run out of frames from the k-th allocation on, and poisons frames on
//! allocation and free so that use of stale bytes shows.

extern crate std;

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::backend::{Backend, PairMapping, Pfn};
use crate::class::PAGE_SIZE;
use crate::zsdesc::ZsDesc;

#[repr(C, align(4096))]
struct Frame(UnsafeCell<[u8; PAGE_SIZE]>);

std::thread_local! {
    /// The CPU this thread is (see [`set_this_cpu`]).
    static THIS_CPU: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// Makes the calling thread CPU `cpu` for every host backend (taken modulo its CPUs): tests
/// that run a pool on several threads give each its own CPU, as the kernel's CPUs are.
pub fn set_this_cpu(cpu: usize) {
    THIS_CPU.with(|c| c.set(cpu));
}

/// Lowest pfn handed out (so that pfn 0 is never used).
const BASE_PFN: Pfn = 0x100;
/// Byte written over a frame when it is handed out and when it is given back.
pub const POISON_ALLOC: u8 = 0xa5;
/// Byte written over a frame when it is given back.
pub const POISON_FREE: u8 = 0x6b;

struct State {
    free: Vec<Pfn>,
    allocated: Vec<bool>,
    allocations: u64,
    fail_from: Option<u64>,
    /// Frames `[start, end)` that allocation must not hand out (a range being emptied).
    isolated: Option<(Pfn, Pfn)>,
}

/// Where the frames' descriptors are.
enum Descs {
    /// One per frame, at the frame's index (a `struct page` memmap).
    PerFrame(Box<[ZsDesc]>),
    /// Allocated apart (the memdesc layout): each frame's word is 0 or 1 + the index of its
    /// descriptor in `pool`; a frame has one while the pool holds it.
    Apart {
        words: Box<[AtomicUsize]>,
        pool: Box<[ZsDesc]>,
        free: Mutex<Vec<usize>>,
    },
}

/// The host backend.
pub struct HostBackend {
    /// The frames, as a raw pointer from `Box::into_raw`: page pointers are derived from it
    /// without creating references, which under Miri would pile up borrow-stack entries on
    /// every byte of a frame at each access.
    frames: *mut Frame,
    frame_count: usize,
    descs: Descs,
    state: Mutex<State>,
    /// Per "CPU" (a thread that called [`set_this_cpu`]): its emulated window is in use.
    window_busy: Box<[AtomicBool]>,
    reports: Mutex<Vec<String>>,
    movable_ops: core::sync::atomic::AtomicU64,
    /// The "cycle counter": one tick per read, so a phase profile counts clock reads.
    ticks: core::sync::atomic::AtomicU64,
    /// Called with each frame given back, before the backend takes it (see
    /// [`HostBackend::on_free_page`]).
    free_hook: Mutex<Option<FreeHook>>,
}

/// What [`HostBackend::on_free_page`] calls.
pub type FreeHook = std::sync::Arc<dyn Fn(Pfn) + Send + Sync>;

// SAFETY: frame bytes are only reached through raw pointers handed to the pool, which
// coordinates access; all other state is behind locks or atomic.
unsafe impl Sync for HostBackend {}
// SAFETY: as above.
unsafe impl Send for HostBackend {}

impl HostBackend {
    /// A backend with `frames` frames, handed out in an order shuffled by `seed` (so that
    /// consecutive allocations are rarely adjacent, as on a real machine), for one CPU.
    pub fn new(frames: usize, seed: u64) -> HostBackend {
        HostBackend::with_cpus(frames, seed, 1)
    }

    /// As [`HostBackend::new`], for `cpus` CPUs: each thread is the CPU it says it is with
    /// [`set_this_cpu`] (CPU 0 unless it says).
    pub fn with_cpus(frames: usize, seed: u64, cpus: usize) -> HostBackend {
        let mut free: Vec<Pfn> = (0..frames as u64).map(|i| BASE_PFN + i).collect();
        let mut x = seed | 1;
        for i in (1..free.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            free.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let boxed: Box<[Frame]> = (0..frames)
            .map(|_| Frame(UnsafeCell::new([0; PAGE_SIZE])))
            .collect();
        HostBackend {
            frames: Box::into_raw(boxed).cast::<Frame>(),
            frame_count: frames,
            descs: Descs::PerFrame((0..frames).map(|_| ZsDesc::new()).collect()),
            state: Mutex::new(State {
                free,
                allocated: alloc::vec![false; frames],
                allocations: 0,
                fail_from: None,
                isolated: None,
            }),
            window_busy: (0..cpus.max(1)).map(|_| AtomicBool::new(false)).collect(),
            reports: Mutex::new(Vec::new()),
            movable_ops: core::sync::atomic::AtomicU64::new(0),
            ticks: core::sync::atomic::AtomicU64::new(0),
            free_hook: Mutex::new(None),
        }
    }

    /// From now on, `hook` is called with each frame the pool gives back, on the pool's
    /// thread, before the backend takes the frame (and holding none of the backend's locks):
    /// a test can see, or stretch, the moment a frame goes back.
    pub fn on_free_page(&self, hook: FreeHook) {
        *self.free_hook.lock().unwrap() = Some(hook);
    }

    /// As [`HostBackend::with_cpus`], with descriptors allocated apart from the frames, as
    /// the kernel's memdesc memmap has them: a frame gets one from a pool when it is handed
    /// out and gives it back when freed, and migration moves the pointer
    /// ([`Backend::move_desc`]). Asking for the descriptor of a frame that has none panics.
    pub fn memdesc(frames: usize, seed: u64, cpus: usize) -> HostBackend {
        let mut b = HostBackend::with_cpus(frames, seed, cpus);
        b.descs = Descs::Apart {
            words: (0..frames).map(|_| AtomicUsize::new(0)).collect(),
            pool: (0..frames).map(|_| ZsDesc::new()).collect(),
            free: Mutex::new((0..frames).rev().collect()),
        };
        b
    }

    /// Descriptors allocated apart and in use (0 when each frame has its own).
    pub fn descs_in_use(&self) -> usize {
        match &self.descs {
            Descs::PerFrame(_) => 0,
            Descs::Apart { words, .. } => words
                .iter()
                .filter(|w| w.load(Ordering::Relaxed) != 0)
                .count(),
        }
    }

    /// The descriptor of the frame at index `i`, if it has one.
    fn desc_at(&self, i: usize) -> Option<&ZsDesc> {
        match &self.descs {
            Descs::PerFrame(d) => d.get(i),
            Descs::Apart { words, pool, .. } => {
                let w = words.get(i)?.load(Ordering::Acquire);
                pool.get(w.checked_sub(1)?)
            }
        }
    }

    /// The CPU the calling thread is, as the pool sees it.
    fn this_cpu(&self) -> usize {
        THIS_CPU.with(|c| c.get()) % self.window_busy.len()
    }

    fn index(&self, pfn: Pfn) -> usize {
        let i = pfn
            .checked_sub(BASE_PFN)
            .expect("pfn below the host backend's frames") as usize;
        assert!(
            i < self.frame_count,
            "pfn {pfn:#x} beyond the host backend's frames"
        );
        i
    }

    /// From now on, the `k`-th allocation (0 = the next one) and every later one fail.
    pub fn fail_from(&self, k: u64) {
        let mut s = self.state.lock().unwrap();
        s.fail_from = Some(s.allocations + k);
    }

    /// Allocations succeed again.
    pub fn stop_failing(&self) {
        self.state.lock().unwrap().fail_from = None;
    }

    /// The descriptor of any frame number, `None` if the backend has no such frame (or, with
    /// descriptors allocated apart, the frame has none now).
    pub fn desc_of_any(&self, pfn: Pfn) -> Option<&ZsDesc> {
        let i = usize::try_from(pfn.checked_sub(BASE_PFN)?).ok()?;
        self.desc_at(i)
    }

    /// Frames handed out and not given back.
    pub fn frames_in_use(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .allocated
            .iter()
            .filter(|&&a| a)
            .count()
    }

    /// Keeps allocation out of frames `[start, end)` (`None`: no longer).
    pub fn isolate(&self, range: Option<(Pfn, Pfn)>) {
        self.state.lock().unwrap().isolated = range;
    }

    /// Makes new pool pages movable, marked with `token` (as a kernel registration would).
    pub fn set_movable_ops(&self, token: u64) {
        self.movable_ops.store(token, Ordering::Relaxed);
    }

    /// Messages the pool reported.
    pub fn reports(&self) -> Vec<String> {
        self.reports.lock().unwrap().clone()
    }
}

impl Drop for HostBackend {
    fn drop(&mut self) {
        // SAFETY: `frames` came from Box::into_raw of a slice of `frame_count` frames and is
        // freed only here.
        drop(unsafe {
            Box::from_raw(core::ptr::slice_from_raw_parts_mut(
                self.frames,
                self.frame_count,
            ))
        });
    }
}

/// The emulated window: a copy of the mapped object's bytes, at their offsets in a two-page
/// buffer, written back when dropped if writable. Only the object's bytes are read and
/// written, so threads mapping other objects in the same pages never race with it.
pub struct HostPair<'a> {
    backend: &'a HostBackend,
    cpu: usize,
    pfns: [Pfn; 2],
    writable: bool,
    /// The object's bytes, as offsets into the two pages.
    object: core::ops::Range<usize>,
    /// A raw heap pointer, not a `Box`: moving a `Box` asserts uniqueness (Miri's Stacked
    /// Borrows), which would invalidate the pointer the pool holds into the view.
    view: *mut [u8; 2 * PAGE_SIZE],
}

impl PairMapping for HostPair<'_> {
    fn ptr(&self) -> *mut u8 {
        self.view.cast()
    }
}

impl HostPair<'_> {
    /// The parts of the object in each frame: (frame, offset in it, offset in the view, bytes).
    fn parts(&self) -> impl Iterator<Item = (Pfn, usize, usize, usize)> + '_ {
        self.pfns.iter().enumerate().filter_map(|(half, &pfn)| {
            let (lo, hi) = (half * PAGE_SIZE, (half + 1) * PAGE_SIZE);
            let (start, end) = (self.object.start.max(lo), self.object.end.min(hi));
            (start < end).then_some((pfn, start - lo, start, end - start))
        })
    }
}

impl Drop for HostPair<'_> {
    fn drop(&mut self) {
        if self.writable {
            for (pfn, at, from, len) in self.parts() {
                // SAFETY: the view is ours (from Box::into_raw) and the pool's use of it has
                // ended; `at..at + len` lies in the frame, which the pool holds, and holds the
                // mapped object's bytes, which this mapping alone may write.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        self.view.cast::<u8>().add(from),
                        self.backend.page_ptr(pfn).add(at),
                        len,
                    )
                };
            }
        }
        // SAFETY: `view` came from Box::into_raw in map_pair and is freed only here.
        drop(unsafe { Box::from_raw(self.view) });
        self.backend.window_busy[self.cpu].store(false, Ordering::Release);
    }
}

// SAFETY: frames are distinct page-aligned blocks owned by the backend, handed out once until
// freed; descriptors live as long as the backend; the pair mapping shows both frames (as a
// copy written back on drop); each thread is the CPU it set (set_this_cpu), with its own
// emulated window.
unsafe impl Backend for HostBackend {
    type PairMap<'a> = HostPair<'a>;
    type CpuPin = ();

    fn alloc_page(&self) -> Option<Pfn> {
        let mut s = self.state.lock().unwrap();
        if s.fail_from.is_some_and(|k| s.allocations >= k) {
            return None;
        }
        let pfn = match s.isolated {
            None => s.free.pop()?,
            Some((start, end)) => {
                let at = s.free.iter().rposition(|&p| p < start || p >= end)?;
                s.free.swap_remove(at)
            }
        };
        s.allocations += 1;
        let i = self.index(pfn);
        s.allocated[i] = true;
        drop(s);
        if let Descs::Apart { words, pool, free } = &self.descs {
            let d = free
                .lock()
                .unwrap()
                .pop()
                .expect("a descriptor for every frame");
            crate::zsdesc::reset(&pool[d]);
            words[i].store(d + 1, Ordering::Release);
        }
        // SAFETY: the frame was free, so nobody else has a pointer into it.
        unsafe { core::ptr::write_bytes(self.page_ptr(pfn), POISON_ALLOC, PAGE_SIZE) };
        Some(pfn)
    }

    unsafe fn free_page(&self, pfn: Pfn) {
        // Cloned out first: the hook may wait for another thread that frees a frame too.
        let hook = self.free_hook.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook(pfn);
        }
        let i = self.index(pfn);
        let mut s = self.state.lock().unwrap();
        assert!(s.allocated[i], "the pool freed frame {pfn:#x} twice");
        s.allocated[i] = false;
        s.free.push(pfn);
        if let Descs::Apart { words, free, .. } = &self.descs
            && let Some(d) = words[i].swap(0, Ordering::AcqRel).checked_sub(1)
        {
            free.lock().unwrap().push(d);
        }
        // SAFETY: the caller gave the frame back; nobody uses it any more.
        unsafe { core::ptr::write_bytes(self.page_ptr(pfn), POISON_FREE, PAGE_SIZE) };
    }

    fn desc(&self, pfn: Pfn) -> &ZsDesc {
        self.desc_at(self.index(pfn))
            .unwrap_or_else(|| panic!("frame {pfn:#x} has no descriptor"))
    }

    fn owner_of_any(&self, pfn: Pfn) -> Option<crate::zsdesc::ZsPageRef> {
        self.desc_of_any(pfn).and_then(crate::zsdesc::owner)
    }

    fn move_desc(&self, old: Pfn, new: Pfn) -> bool {
        let Descs::Apart { words, free, .. } = &self.descs else {
            return false;
        };
        let moved = words[self.index(old)].swap(0, Ordering::AcqRel);
        assert!(
            moved != 0,
            "migrating frame {old:#x}, which has no descriptor"
        );
        if let Some(d) = words[self.index(new)]
            .swap(moved, Ordering::AcqRel)
            .checked_sub(1)
        {
            free.lock().unwrap().push(d);
        }
        true
    }

    fn page_ptr(&self, pfn: Pfn) -> *mut u8 {
        // SAFETY: `index` checked that the frame is one of the `frame_count` frames.
        unsafe { self.frames.add(self.index(pfn)).cast::<u8>() }
    }

    fn map_pair(
        &self,
        first: Pfn,
        second: Pfn,
        object: core::ops::Range<usize>,
        writable: bool,
    ) -> Option<HostPair<'_>> {
        assert!(
            object.start <= object.end && object.end <= 2 * PAGE_SIZE,
            "an object inside the two pages"
        );
        let cpu = self.this_cpu();
        if self.window_busy[cpu].swap(true, Ordering::Acquire) {
            return None;
        }
        let pair = HostPair {
            backend: self,
            cpu,
            pfns: [first, second],
            writable,
            object,
            view: Box::into_raw(Box::new([0u8; 2 * PAGE_SIZE])),
        };
        for (pfn, at, to, len) in pair.parts() {
            // SAFETY: `at..at + len` lies in the frame, valid for a page, and holds the mapped
            // object's bytes (pinned: nothing else writes them while it is mapped for writing,
            // and only readers share it otherwise); the view is ours and 8192 bytes long.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.page_ptr(pfn).add(at),
                    pair.view.cast::<u8>().add(to),
                    len,
                )
            };
        }
        Some(pair)
    }

    fn pin_cpu(&self) -> (usize, ()) {
        (self.this_cpu(), ())
    }

    fn possible_cpus(&self) -> usize {
        self.window_busy.len()
    }

    fn movable_ops(&self) -> u64 {
        self.movable_ops.load(Ordering::Relaxed)
    }

    fn cycles(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn report(&self, message: fmt::Arguments) {
        self.reports.lock().unwrap().push(message.to_string());
    }
}

/// The host's stand-in for the kernel's range-emptying routine: picks an aligned range of
/// `frames` frames, keeps allocation out of it, and migrates every pool page in it (isolate,
/// migrate, put back on failure), as the kernel does with real frames.
#[cfg(any(test, feature = "testkit"))]
pub struct HostRanges {
    /// Frames per range (a power of two).
    pub frames: u64,
}

#[cfg(any(test, feature = "testkit"))]
impl crate::model::RangeEmptier<HostBackend> for HostRanges {
    fn empty_range(
        &self,
        pool: &crate::Pool<HostBackend>,
        seed: u64,
    ) -> Result<crate::model::EmptiedRange, crate::model::RangeRefusal> {
        use crate::model::{EmptiedRange, RangeRefusal};
        let b = pool.backend();
        let ranges = (b.frame_count as u64 / self.frames).max(1);
        let start = BASE_PFN + seed % ranges * self.frames;
        let end = start + self.frames;
        b.isolate(Some((start, end)));
        let mut migrated = 0;
        let result = (|| {
            for pfn in pool
                .pages()
                .into_iter()
                .filter(|p| (start..end).contains(p))
            {
                pool.isolate_page(pfn)
                    .map_err(|_| RangeRefusal::Busy(pfn))?;
                match pool.migrate_page(pfn) {
                    Ok(_) => migrated += 1,
                    Err(e) => {
                        pool.putback_page(pfn);
                        return Err(match e {
                            crate::Error::OutOfMemory => RangeRefusal::OutOfMemory,
                            _ => RangeRefusal::Busy(pfn),
                        });
                    }
                }
            }
            Ok(EmptiedRange {
                start,
                frames: self.frames,
                migrated,
            })
        })();
        b.isolate(None);
        result
    }
}

#[cfg(any(test, feature = "testkit"))]
impl crate::model::FailInjection for HostBackend {
    fn fail_from(&self, k: u64) {
        HostBackend::fail_from(self, k);
    }

    fn stop_failing(&self) {
        HostBackend::stop_failing(self);
    }

    fn frames_held(&self) -> u64 {
        self.frames_in_use() as u64
    }
}
