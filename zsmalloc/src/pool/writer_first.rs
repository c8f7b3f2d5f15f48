//! The migrate lock: a reader/writer lock in which a waiting writer goes first. Every map,
//! read, write and free takes it for reading, briefly; compaction and migration take it for
//! writing. A plain reader-preferring lock lets a steady stream of readers keep a writer out
//! for as long as the stream lasts; here new readers wait while a writer waits, so the
//! writer gets in as soon as the readers already inside leave.

use core::sync::atomic::{AtomicUsize, Ordering};

use spin::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A reader/writer lock (no data) in which waiting writers go before new readers. Not
/// re-entrant for reading: a reader that took it once must not take it again before
/// releasing (the pool's debug lock-order check enforces that), or it would wait for a
/// writer that waits for it.
pub(crate) struct WriterFirst {
    writers_waiting: AtomicUsize,
    lock: RwLock<()>,
}

impl WriterFirst {
    pub(crate) const fn new() -> WriterFirst {
        WriterFirst {
            writers_waiting: AtomicUsize::new(0),
            lock: RwLock::new(()),
        }
    }

    /// Takes the lock for reading, once no writer waits.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, ()> {
        loop {
            while self.writers_waiting.load(Ordering::Acquire) > 0 {
                core::hint::spin_loop();
            }
            let guard = self.lock.read();
            // A writer that arrived meanwhile waits for this reader only: let it go first
            // anyway, so a stream of readers never outruns it.
            if self.writers_waiting.load(Ordering::Acquire) == 0 {
                return guard;
            }
            drop(guard);
        }
    }

    /// Takes the lock for writing; readers arriving from now on wait.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, ()> {
        self.writers_waiting.fetch_add(1, Ordering::AcqRel);
        let guard = self.lock.write();
        self.writers_waiting.fetch_sub(1, Ordering::AcqRel);
        guard
    }

    /// Writers waiting now (for tests).
    #[cfg(test)]
    pub(crate) fn writers_waiting(&self) -> usize {
        self.writers_waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use core::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "spins on threads for a while: natively only")]
    fn a_writer_gets_in_while_readers_keep_reading() {
        let lock = WriterFirst::new();
        let (stop, written) = (AtomicBool::new(false), AtomicBool::new(false));
        let reads = AtomicU64::new(0);
        let start = Barrier::new(5);
        let waited = std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    start.wait();
                    // Overlapping readers: one always holds the lock while another takes
                    // it again.
                    while !stop.load(Ordering::Relaxed) {
                        let _g = lock.read();
                        reads.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_micros(50));
                    }
                });
            }
            let writer = s.spawn(|| {
                start.wait();
                std::thread::sleep(Duration::from_millis(20));
                let t0 = Instant::now();
                drop(lock.write());
                written.store(true, Ordering::SeqCst);
                t0.elapsed()
            });
            start.wait();
            // A watchdog: a starved writer fails the test instead of hanging it.
            let deadline = Instant::now() + Duration::from_secs(3);
            while !written.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::Relaxed);
            writer.join().unwrap()
        });
        assert!(reads.load(Ordering::Relaxed) > 0, "the readers read");
        assert!(
            waited < Duration::from_secs(2),
            "the writer waited {waited:?} behind overlapping readers"
        );
        assert_eq!(lock.writers_waiting(), 0);
    }
}
