//! Where malloc and free spend their cycles: a per-pool count of cycles per phase, switched
//! on by [`Pool::set_profiling`] (the bench does, in a pass of its own: reading the clock
//! between phases costs cycles too). Off, a phase boundary costs one predictable branch.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Pool;
use crate::backend::Backend;

/// A phase of malloc or free, in the order the operation meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// malloc: the placement rule chooses a class (and checks the size).
    Place,
    /// malloc: a handle slot from the slot table (the per-CPU quarantine, the shared list).
    SlotReserve,
    /// malloc: waiting for and taking the class lock.
    ClassLock,
    /// malloc: no frames for a new zspage; the queued compaction runs first (see
    /// `AutoCompact::Deferred`).
    Reclaim,
    /// malloc: a new zspage (frames from the backend, its chain and freelist), when the class
    /// has no room.
    Grow,
    /// malloc: the object off its zspage's freelist, its header written, the slot pointed at
    /// it.
    ObjectTake,
    /// malloc and free: the zspage's fullness group and the class's free-slot figure.
    Fullness,
    /// malloc: the lock dropped, the object counted and its slot published.
    Publish,
    /// free: the handle checked against its slot, the slot marked free and the object's
    /// class read from its page.
    HandleCheck,
    /// free: the migrate lock (read) and the class lock.
    FreeLocks,
    /// free: the object's zspage found from its page's descriptor, the object back on the
    /// freelist.
    ObjectReturn,
    /// free: an emptied zspage leaving its class (under the class lock), then its frames given
    /// back (after the lock is dropped, which this part also pays for).
    ZspageRelease,
    /// free: the lock dropped and the slot put behind the quarantine.
    SlotRelease,
    /// free: the automatic compaction a free runs (`AutoCompact::WhenFreeable`; a deferred
    /// one only queues the class, in `Fullness`).
    Compaction,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 14] = [
        Phase::Place,
        Phase::SlotReserve,
        Phase::ClassLock,
        Phase::Reclaim,
        Phase::Grow,
        Phase::ObjectTake,
        Phase::Fullness,
        Phase::Publish,
        Phase::HandleCheck,
        Phase::FreeLocks,
        Phase::ObjectReturn,
        Phase::ZspageRelease,
        Phase::SlotRelease,
        Phase::Compaction,
    ];

    /// A short name for tables and bench figures.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Place => "place",
            Phase::SlotReserve => "slot-reserve",
            Phase::ClassLock => "class-lock",
            Phase::Reclaim => "reclaim",
            Phase::Grow => "grow",
            Phase::ObjectTake => "object-take",
            Phase::Fullness => "fullness",
            Phase::Publish => "publish",
            Phase::HandleCheck => "handle-check",
            Phase::FreeLocks => "free-locks",
            Phase::ObjectReturn => "object-return",
            Phase::ZspageRelease => "zspage-release",
            Phase::SlotRelease => "slot-release",
            Phase::Compaction => "compaction",
        }
    }

    /// Whether the phase belongs to free (else to malloc; `Fullness` counts in both).
    pub fn in_free(self) -> bool {
        matches!(
            self,
            Phase::HandleCheck
                | Phase::FreeLocks
                | Phase::ObjectReturn
                | Phase::ZspageRelease
                | Phase::SlotRelease
                | Phase::Compaction
        )
    }
}

/// The counters: cycles per phase, and the malloc and free calls they cover.
pub(super) struct PhaseCounters {
    on: AtomicBool,
    cycles: [AtomicU64; Phase::ALL.len()],
    /// Profiled calls: `[malloc, free]`.
    calls: [AtomicU64; 2],
}

impl PhaseCounters {
    pub(super) const fn new() -> PhaseCounters {
        PhaseCounters {
            on: AtomicBool::new(false),
            cycles: [const { AtomicU64::new(0) }; Phase::ALL.len()],
            calls: [const { AtomicU64::new(0) }; 2],
        }
    }
}

/// What [`Pool::phase_profile`] reports: cycles per phase since profiling was switched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseProfile {
    /// Cycles per phase, in the order of [`Phase::ALL`].
    pub cycles: [u64; Phase::ALL.len()],
    /// Profiled malloc calls.
    pub mallocs: u64,
    /// Profiled free calls.
    pub frees: u64,
}

impl PhaseProfile {
    /// Cycles of `phase`.
    pub fn of(&self, phase: Phase) -> u64 {
        self.cycles[phase as usize]
    }

    /// Cycles of `phase` per call of the operation it belongs to (`Fullness`: per malloc and
    /// free together).
    pub fn per_call(&self, phase: Phase) -> f64 {
        let calls = match phase {
            Phase::Fullness => self.mallocs + self.frees,
            p if p.in_free() => self.frees,
            _ => self.mallocs,
        };
        self.of(phase) as f64 / calls.max(1) as f64
    }
}

/// Splits one malloc or free into phases: each [`Stopwatch::lap`] charges the cycles since
/// the last one to a phase. Reads the clock only while profiling is on.
pub(super) struct Stopwatch<'a, B: Backend> {
    counters: Option<&'a PhaseCounters>,
    backend: &'a B,
    last: u64,
}

impl<B: Backend> Stopwatch<'_, B> {
    /// Charges the cycles since the last lap (or the start) to `phase`.
    #[inline]
    pub(super) fn lap(&mut self, phase: Phase) {
        if let Some(c) = self.counters {
            let now = self.backend.cycles();
            c.cycles[phase as usize].fetch_add(now.wrapping_sub(self.last), Ordering::Relaxed);
            self.last = now;
        }
    }
}

impl<B: Backend> Pool<B> {
    /// Switches the per-phase cycle counts of malloc and free on or off (counts kept); see
    /// [`Pool::phase_profile`]. The cycles come from [`Backend::cycles`].
    pub fn set_profiling(&self, on: bool) {
        self.phases.on.store(on, Ordering::Relaxed);
    }

    /// Cycles per phase of malloc and free while profiling was on.
    pub fn phase_profile(&self) -> PhaseProfile {
        PhaseProfile {
            cycles: core::array::from_fn(|i| self.phases.cycles[i].load(Ordering::Relaxed)),
            mallocs: self.phases.calls[0].load(Ordering::Relaxed),
            frees: self.phases.calls[1].load(Ordering::Relaxed),
        }
    }

    /// A stopwatch for one malloc (`free == false`) or free, started now.
    #[inline]
    pub(super) fn stopwatch(&self, free: bool) -> Stopwatch<'_, B> {
        let counters = self
            .phases
            .on
            .load(Ordering::Relaxed)
            .then_some(&self.phases);
        if let Some(c) = counters {
            c.calls[usize::from(free)].fetch_add(1, Ordering::Relaxed);
        }
        Stopwatch {
            counters,
            backend: &self.backend,
            last: if counters.is_some() {
                self.backend.cycles()
            } else {
                0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Phase;
    use crate::host::HostBackend;
    use crate::pool::{Policy, Pool, PoolConfig};

    /// The host backend's clock ticks once per read, so each phase boundary a call passes
    /// charges exactly one cycle to the phase it ends: the profile counts boundaries.
    #[test]
    fn each_phase_is_charged_once_per_call_that_passes_through_it() {
        let pool = Pool::new("profile", HostBackend::new(512, 7), PoolConfig::default());
        let unprofiled = pool.malloc(100).unwrap();
        assert_eq!(pool.phase_profile().cycles, [0; Phase::ALL.len()]);
        pool.set_profiling(true);
        let n = 300;
        let handles: alloc::vec::Vec<_> = (0..n).map(|_| pool.malloc(100).unwrap()).collect();
        let p = pool.phase_profile();
        let pages_per_zspage =
            pool.classes().classes[pool.classes().class_for(100)].pages_per_zspage as u64;
        let zspages = pool.total_pages() as u64 / pages_per_zspage;
        assert_eq!(p.mallocs, n);
        for phase in [
            Phase::Place,
            Phase::SlotReserve,
            Phase::ClassLock,
            Phase::ObjectTake,
            Phase::Fullness,
            Phase::Publish,
        ] {
            assert_eq!(p.of(phase), n, "{phase:?}");
        }
        // The unprofiled malloc made the first zspage.
        assert_eq!(p.of(Phase::Grow), zspages - 1);
        pool.free(unprofiled).unwrap();
        for h in handles {
            pool.free(h).unwrap();
        }
        let p = pool.phase_profile();
        assert_eq!(p.frees, n + 1);
        assert_eq!(p.of(Phase::HandleCheck), 2 * (n + 1));
        // The migrate lock, then (once the slot names the object's class) the class lock.
        assert_eq!(p.of(Phase::FreeLocks), 2 * (n + 1));
        assert_eq!(p.of(Phase::ObjectReturn), n + 1);
        // Twice per emptied zspage: it leaves its class under the lock, its frames go back
        // after it.
        assert_eq!(
            p.of(Phase::ZspageRelease),
            2 * zspages,
            "every zspage emptied"
        );
        assert_eq!(p.of(Phase::Fullness), n + (n + 1) + zspages);
        assert_eq!(p.of(Phase::SlotRelease), n + 1);
        assert_eq!(
            p.of(Phase::Compaction),
            0,
            "Linux's rules never compact on free"
        );
        assert_eq!(pool.total_pages(), 0);
        pool.set_profiling(false);
        pool.malloc(100).unwrap();
        assert_eq!(pool.phase_profile(), p, "off, nothing is counted");
    }

    #[test]
    #[cfg_attr(miri, ignore = "thousands of objects: natively only")]
    fn automatic_compaction_is_charged_to_the_free_that_runs_it() {
        let config = PoolConfig {
            auto_compact: crate::AutoCompact::WhenFreeable { pages: 1, share: 8 },
            ..Policy::ZSOS.config()
        };
        let pool = Pool::new("profile", HostBackend::new(2048, 7), config);
        pool.set_profiling(true);
        let handles: alloc::vec::Vec<_> = (0..2000).map(|_| pool.malloc(300).unwrap()).collect();
        for h in handles.into_iter().step_by(2) {
            pool.free(h).unwrap();
        }
        let p = pool.phase_profile();
        assert!(pool.pages_auto_compacted() > 0, "the frees compacted");
        assert!(p.of(Phase::Compaction) > 0, "and paid for it: {p:?}");
        assert!(
            p.per_call(Phase::Compaction) < 1.0,
            "only some frees compact"
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "thousands of objects: natively only")]
    fn a_deferred_compaction_is_never_charged_to_a_free() {
        let pool = Pool::new("profile", HostBackend::new(2048, 7), Policy::ZSOS.config());
        pool.set_profiling(true);
        let handles: alloc::vec::Vec<_> = (0..2000).map(|_| pool.malloc(300).unwrap()).collect();
        // All but one in eight freed: sparse zspages, cheap to empty before the pool grows.
        for (i, h) in handles.into_iter().enumerate() {
            if i % 8 != 0 {
                pool.free(h).unwrap();
            }
        }
        assert!(pool.compaction_pending(), "the frees queued their class");
        assert_eq!(pool.phase_profile().of(Phase::Compaction), 0);
        assert_eq!(pool.pages_auto_compacted(), 0);
        // A malloc that grows another class does not compact while frames come...
        let pages = pool.total_pages();
        pool.malloc(3000).unwrap();
        assert_eq!(pool.pages_auto_compacted(), 0);
        assert!(pool.total_pages() > pages);
        // ...but one that finds none drains the queue first, and says so.
        pool.backend().fail_from(0);
        for _ in 0..100 {
            if pool.pages_auto_compacted() > 0 {
                break;
            }
            let _ = pool.malloc(3000);
        }
        assert!(pool.pages_auto_compacted() > 0);
        assert_eq!(pool.phase_profile().of(Phase::Reclaim), 1);
    }
}
