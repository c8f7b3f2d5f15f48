//! The pool's locks and the order they are taken in. Debug builds check the order per CPU.

#[cfg(debug_assertions)]
use ::alloc::vec::Vec;
use core::ops::{Deref, DerefMut};
#[cfg(debug_assertions)]
use core::sync::atomic::Ordering;

use super::Pool;
use crate::backend::Backend;
use crate::zspage::ClassState;

/// The pool's locks, in the order they must be taken (Linux 6.11): the migrate lock, then a
/// class lock, then a zspage lock. The zspage lock is only ever *tried* for writing (by
/// compaction and migration, which skip a busy zspage), so a mapping may hold it for reading
/// across other pool calls without risk of deadlock; only the first two are checked.
#[derive(Debug, Clone, Copy)]
enum Level {
    Migrate = 0,
    Class = 1,
}

/// Debug builds check the lock order per CPU: taking a lock while holding one that comes
/// later in the order panics with both named.
pub(crate) struct LockOrder {
    #[cfg(debug_assertions)]
    held: Vec<core::sync::atomic::AtomicU8>,
}

/// Proof that a level was entered in order; leaves it when dropped.
pub(crate) struct Held<'a> {
    #[cfg(debug_assertions)]
    order: &'a LockOrder,
    #[cfg(debug_assertions)]
    cpu: usize,
    #[cfg(debug_assertions)]
    bit: u8,
    #[cfg(not(debug_assertions))]
    _order: core::marker::PhantomData<&'a LockOrder>,
}

impl LockOrder {
    pub(super) fn new(_cpus: usize) -> LockOrder {
        LockOrder {
            #[cfg(debug_assertions)]
            held: (0.._cpus)
                .map(|_| core::sync::atomic::AtomicU8::new(0))
                .collect(),
        }
    }

    fn enter<B: Backend>(&self, _backend: &B, level: Level) -> Held<'_> {
        #[cfg(debug_assertions)]
        {
            let (cpu, _pin) = _backend.pin_cpu();
            let bit = 1u8 << level as u8;
            let held = self.held[cpu].load(Ordering::Relaxed);
            assert!(
                held & !(bit - 1) == 0,
                "zsmalloc lock order violated on CPU {cpu}: taking the {level:?} lock while \
                 holding {held:#04b} (order: migrate lock, class lock, zspage lock)"
            );
            self.held[cpu].store(held | bit, Ordering::Relaxed);
            Held {
                order: self,
                cpu,
                bit,
            }
        }
        #[cfg(not(debug_assertions))]
        {
            let _ = level;
            Held {
                _order: core::marker::PhantomData,
            }
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        self.order.held[self.cpu].fetch_and(!self.bit, Ordering::Relaxed);
    }
}

/// A lock guard that also keeps its place in the lock order (the guard goes first).
pub(crate) struct Ordered<'a, G> {
    guard: G,
    _held: Held<'a>,
}

impl<G: Deref> Deref for Ordered<'_, G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: DerefMut> DerefMut for Ordered<'_, G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

pub(super) type ClassGuard<'a> = Ordered<'a, spin::MutexGuard<'a, ClassState>>;

impl<B: Backend> Pool<B> {
    /// The pool-wide lock, under [`super::Locking::PoolWide`]; taken before any other lock.
    pub(super) fn pool_wide(&self) -> Option<spin::MutexGuard<'_, ()>> {
        self.pool_lock.as_ref().map(|l| l.lock())
    }

    /// The migrate lock for reading: handles resolve to stable locations while it is held.
    pub(crate) fn read_migrate(&self) -> Ordered<'_, spin::RwLockReadGuard<'_, ()>> {
        let held = self.order.enter(&self.backend, Level::Migrate);
        let guard = self.migrate.read();
        self.backend.holding_migrate_read();
        Ordered { guard, _held: held }
    }

    /// The migrate lock for writing: objects may move while it is held.
    pub(super) fn write_migrate(&self) -> Ordered<'_, spin::RwLockWriteGuard<'_, ()>> {
        let held = self.order.enter(&self.backend, Level::Migrate);
        #[cfg(test)]
        self.write_holds
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        Ordered {
            guard: self.migrate.write(),
            _held: held,
        }
    }

    /// The lock of the class at position `pos`.
    pub(crate) fn lock_class(&self, pos: usize) -> ClassGuard<'_> {
        let held = self.order.enter(&self.backend, Level::Class);
        Ordered {
            guard: self.classes[pos].lock(),
            _held: held,
        }
    }
}
