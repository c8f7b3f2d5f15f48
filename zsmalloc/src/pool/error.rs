//! Everything the pool refuses, and why.

use core::fmt;

use crate::backend::Pfn;
use crate::class::MAX_ALLOC_SIZE;
use crate::handle::Handle;

/// Everything the pool refuses, and why. Nothing is changed by a refused call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Size 0, or above [`MAX_ALLOC_SIZE`].
    InvalidSize(usize),
    /// The backend has no frame for a new zspage.
    OutOfMemory,
    /// The handle belongs to another pool.
    ForeignHandle(Handle),
    /// The handle was never handed out by this pool (forged or corrupted).
    InvalidHandle(Handle),
    /// The handle's object was already freed.
    DoubleFree(Handle),
    /// The handle is stale: its slot was freed and reused since.
    StaleHandle(Handle),
    /// The object is mapped in a way that conflicts (free or write while mapped, or a
    /// second writer).
    ObjectBusy(Handle),
    /// This CPU's mapping resource (window or copy buffer) is in use: one spanning mapping
    /// per CPU at a time.
    MapBusy,
    /// The frame does not belong to a zspage of this pool.
    NotOurPage(Pfn),
    /// The frame's zspage has a mapped object: it cannot move now (try again after unmap).
    ZspageBusy(Pfn),
    /// The caller's buffer cannot hold the object (or the data exceeds it).
    BufferSize {
        /// Bytes needed (or the object's size).
        object: usize,
        /// Bytes given.
        given: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidSize(s) => write!(f, "invalid size {s} (must be 1..={MAX_ALLOC_SIZE})"),
            Error::OutOfMemory => write!(f, "out of memory"),
            Error::ForeignHandle(h) => {
                write!(f, "handle {:#x} belongs to another pool", h.to_raw())
            }
            Error::InvalidHandle(h) => write!(
                f,
                "handle {:#x} was not handed out by this pool",
                h.to_raw()
            ),
            Error::DoubleFree(h) => write!(f, "handle {:#x} was already freed", h.to_raw()),
            Error::StaleHandle(h) => {
                write!(f, "handle {:#x} is stale (freed and reused)", h.to_raw())
            }
            Error::ObjectBusy(h) => write!(f, "object of handle {:#x} is mapped", h.to_raw()),
            Error::MapBusy => write!(f, "this CPU already has a spanning object mapped"),
            Error::NotOurPage(p) => write!(f, "frame {p:#x} is not a page of this pool"),
            Error::ZspageBusy(p) => {
                write!(f, "frame {p:#x} belongs to a zspage with a mapped object")
            }
            Error::BufferSize { object, given } => {
                write!(f, "object is {object} bytes, buffer {given}")
            }
        }
    }
}
