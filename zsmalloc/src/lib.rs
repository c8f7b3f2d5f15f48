//! A faithful reimplementation of Linux's zsmalloc, `no_std` + `alloc`.
//!
//! zsmalloc stores many small objects (compressed pages, typically) densely: objects of
//! similar size share a *size class*; a class packs its objects into *zspages*, chains of up
//! to 8 (configurable 4..16) order-0 pages in which objects may span page boundaries; a user
//! gets a [`Handle`], not a pointer, and maps it to reach the bytes. See
//! `docs/architecture.md` for the way of one allocation.
//!
//! Rooms: [`class`] (size classes), [`handle`] (handles and locations), [`placement`] (which class a new object goes to), [`zsdesc`] (the page
//! descriptor overlay, the only code that touches descriptor fields), `zspage` (zspages,
//! fullness groups, freelists), [`slots`] (handle slots), [`pool`] (the API), [`stats`],
//! [`backend`] (the trait through which the allocator reaches the machine), [`trace`] (trace
//! files and their replay) and [`seeded`] (reproducible randomness and object contents).
//!
//! Features, all off by default: `testkit` adds `model` (the model checker and the cases the
//! host and kernel tests share); `zbud` adds `zbud`, the two-objects-per-page baseline the
//! kernel's bench compares density against; `host` adds `host`, the backend on the host's
//! heap (it needs `std`) that the crate's tests and the fuzzers run pools on.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod backend;
pub mod class;
pub mod families;
pub mod frame_map;
pub mod growth;
pub mod handle;
#[cfg(any(test, feature = "testkit"))]
pub mod model;
pub mod placement;
pub mod pool;
pub mod seeded;
pub mod slots;
pub mod snapshot;
pub mod soak_args;
pub mod stats;
pub mod steps;
pub mod trace;
#[cfg(any(test, feature = "zbud"))]
pub mod zbud;
pub mod zsdesc;
mod zspage;

#[cfg(any(test, feature = "host"))]
pub mod host;
#[cfg(test)]
mod tests;

pub use backend::{Backend, PairMapping, Pfn};
pub use growth::Growth;
pub use handle::Handle;
pub use placement::Placement;
pub use pool::{
    AutoCompact, Error, Location, Locking, MapMode, MapPath, Mapping, Policy, Pool, PoolConfig,
    ReadGuard,
};
pub use stats::{ClassStats, PoolStats};
