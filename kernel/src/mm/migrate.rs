//! Page migration, as Linux's movable pages: an owner of frames (zsmalloc) registers a set of
//! operations (isolate, migrate to a new frame, put back) and marks its frames `MOVABLE` with
//! the registration's token in the descriptor's `mapping` (in the memdesc memmap: in the
//! owner's descriptor the frame's word points at; `FrameDesc::movable_token` reads either).
//! [`empty_range`] uses them to move every in-use frame out of a physical range, after which
//! the range is allocated as one contiguous block (Linux: `alloc_contig_range`).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
#[cfg(feature = "ktest")]
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use crate::mm::buddy::{self, FrameBlock, FrameError, MAX_ORDER};
use crate::mm::memmap::{self, flags};

/// Why a movable page did not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The page is in use in a way that forbids moving it now (zsmalloc: a mapped object).
    Busy,
    /// The page is no longer the owner's.
    Gone,
}

/// An owner's migration operations (Linux: `struct movable_operations`).
pub trait MovableOps: Send + Sync {
    /// Claims `pfn` for migration (Linux: `isolate_page`).
    fn isolate(&self, pfn: u64) -> Result<(), Refusal>;
    /// Moves the contents and the role of `pfn` into `dst` (Linux: `migrate_page`). On success
    /// the owner keeps `dst` and has freed `pfn`; on failure `dst` comes back unused.
    fn migrate(&self, pfn: u64, dst: FrameBlock) -> Result<(), (FrameBlock, Refusal)>;
    /// Gives up a claim that did not end in migration (Linux: `putback_page`).
    fn putback(&self, pfn: u64);
}

/// Registered operations; a page's token is its index + 1.
static REGISTRY: Mutex<Vec<Option<Arc<dyn MovableOps>>>> = Mutex::new(Vec::new());

/// A registration; dropping it unregisters the operations (pages still carrying its token
/// then count as unmovable).
#[must_use = "dropping a Registration unregisters the operations"]
pub struct Registration {
    token: u64,
}

impl Registration {
    /// The token to store in the owner's pages.
    pub fn token(&self) -> u64 {
        self.token
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let ops = REGISTRY.lock()[self.token as usize - 1].take();
        // Dropped outside the registry lock: the owner's drop may free frames.
        drop(ops);
    }
}

/// Registers an owner's operations; returns the registration whose token marks its pages.
pub fn register(ops: Arc<dyn MovableOps>) -> Registration {
    let mut reg = REGISTRY.lock();
    let index = match reg.iter().position(Option::is_none) {
        Some(i) => {
            reg[i] = Some(ops);
            i
        }
        None => {
            reg.push(Some(ops));
            reg.len() - 1
        }
    };
    Registration {
        token: index as u64 + 1,
    }
}

fn ops_for(token: u64) -> Option<Arc<dyn MovableOps>> {
    let reg = REGISTRY.lock();
    reg.get(usize::try_from(token).ok()?.checked_sub(1)?)?
        .clone()
}

/// Why a range could not be emptied. Pages migrated before the failure stay migrated (they
/// are valid where they are); every claim is put back and every held-back frame freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// The range is not a valid block (order, alignment, inside physical memory).
    Invalid(FrameError),
    /// Another range is being emptied.
    Busy,
    /// A frame in use that nothing can move (reserved, page table, heap, or a page whose
    /// owner registered no operations); its flags are given.
    Unmovable {
        /// The frame.
        pfn: u64,
        /// Its descriptor's flags.
        flags: u64,
    },
    /// The owner refused to move the page now.
    Refused {
        /// The frame.
        pfn: u64,
        /// Why.
        why: Refusal,
    },
    /// No free frame outside the range to move a page to.
    OutOfMemory {
        /// The frame that could not move.
        pfn: u64,
    },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::Invalid(e) => write!(f, "invalid range: {e}"),
            RangeError::Busy => write!(f, "another range is being emptied"),
            RangeError::Unmovable { pfn, flags } => {
                write!(
                    f,
                    "frame {pfn:#x} is in use and not movable (flags {flags:#x})"
                )
            }
            RangeError::Refused { pfn, why } => {
                write!(f, "frame {pfn:#x} refused to move: {why:?}")
            }
            RangeError::OutOfMemory { pfn } => {
                write!(f, "no free frame to move frame {pfn:#x} to")
            }
        }
    }
}

/// What emptying a range did.
#[derive(Debug)]
pub struct EmptiedRange {
    /// The range, now allocated as one block and owned by the caller.
    pub block: FrameBlock,
    /// Pages migrated out of it.
    pub migrated: u64,
}

/// One range at a time (the buddy allocator isolates one range).
static EMPTYING: Mutex<()> = Mutex::new(());

/// Test kernel only: destination allocations still to fail on purpose.
#[cfg(feature = "ktest")]
static FAIL_DESTINATIONS: AtomicU64 = AtomicU64::new(0);

/// Test kernel only: makes the next `n` destination-frame allocations of [`empty_range`]
/// fail, as if memory had run out (for tests of the out-of-memory path with plenty of memory
/// left).
#[cfg(feature = "ktest")]
pub fn fail_next_destinations(n: u64) {
    FAIL_DESTINATIONS.store(n, Ordering::Relaxed);
}

fn destination_frame() -> Option<FrameBlock> {
    #[cfg(feature = "ktest")]
    if FAIL_DESTINATIONS
        .try_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        return None;
    }
    FrameBlock::alloc_frame().ok()
}

/// Empties the block of 2^`order` frames at `start` and allocates it: every free frame of the
/// range is held back from allocation, every movable page in it is isolated, moved to a frame
/// outside the range and its claim dropped; then the whole range is returned as one
/// [`FrameBlock`]. Fails, with everything put back, on a frame that cannot move.
pub fn empty_range(start: u64, order: usize) -> Result<EmptiedRange, RangeError> {
    if order > MAX_ORDER {
        return Err(RangeError::Invalid(FrameError::BadOrder(order)));
    }
    if start & ((1 << order) - 1) != 0 {
        return Err(RangeError::Invalid(FrameError::Misaligned {
            pfn: start,
            order,
        }));
    }
    let end = start + (1 << order);
    let memmap = memmap::get();
    if end > memmap.frames() {
        return Err(RangeError::Invalid(FrameError::OutOfRange(start)));
    }
    let _one_at_a_time = EMPTYING.try_lock().ok_or(RangeError::Busy)?;
    // Refuse up front if anything in the range can never move, before disturbing anything.
    if let Some(e) = (start..end).find_map(|pfn| unmovable(pfn).err()) {
        return Err(e);
    }
    buddy::with(|b| b.isolate_range(start, end)).map_err(|e| match e {
        FrameError::RangeBusy => RangeError::Busy,
        e => RangeError::Invalid(e),
    })?;
    let mut migrated = 0;
    let result = (|| {
        for pfn in start..end {
            let desc = memmap.desc(pfn).expect("inside the memmap");
            if desc.has(flags::ISOLATED) {
                continue;
            }
            match migrate_one(pfn) {
                Ok(()) => migrated += 1,
                // Freed while we got to it (its owner let go): now held back like any free frame.
                Err(RangeError::Refused {
                    why: Refusal::Gone, ..
                }) if desc.has(flags::ISOLATED) => {}
                Err(e) => return Err(e),
            }
        }
        buddy::with(|b| b.take_isolated(start, order)).map_err(|e| match e {
            FrameError::NotFree(pfn) => {
                let flags = memmap.desc(pfn).map_or(0, |d| d.flags());
                RangeError::Unmovable { pfn, flags }
            }
            e => RangeError::Invalid(e),
        })
    })();
    match result {
        Ok(pfn) => Ok(EmptiedRange {
            // SAFETY: take_isolated just allocated this block to us.
            block: unsafe { FrameBlock::from_raw(pfn, order) },
            migrated,
        }),
        Err(e) => {
            buddy::with(|b| b.end_isolation());
            Err(e)
        }
    }
}

/// `Ok` if frame `pfn` is free or movable by registered operations.
fn unmovable(pfn: u64) -> Result<(), RangeError> {
    let desc = memmap::get().desc(pfn).expect("inside the memmap");
    if buddy::with(|b| b.free_block_containing(pfn)).is_some() {
        return Ok(());
    }
    match desc.movable_token().and_then(ops_for) {
        Some(_) => Ok(()),
        None => Err(RangeError::Unmovable {
            pfn,
            flags: desc.flags(),
        }),
    }
}

/// Isolates, migrates and (on failure) puts back one in-use page of the range.
fn migrate_one(pfn: u64) -> Result<(), RangeError> {
    let desc = memmap::get().desc(pfn).expect("inside the memmap");
    let ops = desc
        .movable_token()
        .and_then(ops_for)
        .ok_or(RangeError::Unmovable {
            pfn,
            flags: desc.flags(),
        })?;
    ops.isolate(pfn)
        .map_err(|why| RangeError::Refused { pfn, why })?;
    // The range is isolated, so the new frame is outside it.
    let dst = match destination_frame() {
        Some(dst) => dst,
        None => {
            ops.putback(pfn);
            return Err(RangeError::OutOfMemory { pfn });
        }
    };
    ops.migrate(pfn, dst).map_err(|(dst, why)| {
        drop(dst);
        ops.putback(pfn);
        RangeError::Refused { pfn, why }
    })
}
