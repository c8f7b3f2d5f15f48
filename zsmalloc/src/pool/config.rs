//! A pool's settings: the chain length, the placement rule, the map path for spanning
//! objects, the locking.

use crate::class;
use crate::placement::Placement;

/// How objects that span two pages are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapPath {
    /// Both pages mapped contiguously through this CPU's two-page PTE window.
    Window,
    /// Copied into a per-CPU buffer at map (not for write-only) and back at unmap (not for
    /// read-only), as Linux did from 2012 to 6.14.
    Copy,
    /// Per class, whichever is faster: the copy path for slots of up to
    /// [`COPY_UP_TO_SLOT`] bytes, the window above (see there).
    PerClass,
}

/// The largest slot `MapPath::PerClass` maps by copying. A window map costs the same for
/// every size (two PTE writes, two `invlpg`s), a copy grows with the object: in `bench
/// classes` (release, 2 CPUs, QEMU TCG, 2026-11-30) the window took 2,600-2,700 cycles in every
/// class while the copy took about 1,500 at 48 bytes, 2,600 at 960 and 2,800 at 1,056 (the two
/// meet between 976 and 1,056 bytes).
pub const COPY_UP_TO_SLOT: usize = 1024;

impl MapPath {
    /// How a spanning object of a class with `slot` bytes is mapped: `Window` or `Copy`.
    pub fn for_slot(self, slot: usize) -> MapPath {
        match self {
            MapPath::PerClass if slot <= COPY_UP_TO_SLOT => MapPath::Copy,
            MapPath::PerClass => MapPath::Window,
            fixed => fixed,
        }
    }
}

/// What a mapping may do (Linux's `zs_mapmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    /// Read only; the copy path skips the copy-back.
    ReadOnly,
    /// Write only (initialising a new object); the copy path skips the copy-in, so the
    /// mapped bytes are unspecified until written.
    WriteOnly,
    /// Read and write.
    ReadWrite,
}

/// A pool's settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Maximum pages per zspage, 4 to 16 (default 8, as Linux).
    pub max_chain: usize,
    /// Which class a new object goes to (default: Linux's rule, its own class).
    pub placement: Placement,
    /// How spanning objects are mapped.
    pub map_path: MapPath,
    /// The locking scheme.
    pub locking: Locking,
}

/// Which locks serialise the pool's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// Linux 6.11's: per-class locks, the migrate rwlock, per-zspage locks (the default).
    PerClass,
    /// One pool-wide lock around every allocation, free, handle lookup (map, read, write),
    /// compaction step and migration, as Linux had from 6.2 (`zsmalloc: consolidate
    /// zs_pool's migrate_lock and size_class's locks`) until Linux 6.11 went back to per-class locks. Kept only
    /// for the scalability comparison; the finer locks are still taken inside it.
    PoolWide,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_chain: class::DEFAULT_MAX_CHAIN,
            placement: Placement::Linux,
            map_path: MapPath::Window,
            locking: Locking::PerClass,
        }
    }
}

/// A named policy: where new objects go and how long zspages may be, as `replay --policy`
/// and the tests select it. Names: `linux` (Linux's rule and chain length 8, the default),
/// `linux-chain=N` (N in 4..=16), `fitted` and `fitted-chain=N` (zsos's placement rule), and
/// `default` (the pools' default, today `linux`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The placement rule.
    pub placement: Placement,
    /// Maximum pages per zspage.
    pub max_chain: usize,
}

impl Default for Policy {
    fn default() -> Self {
        let c = PoolConfig::default();
        Policy {
            placement: c.placement,
            max_chain: c.max_chain,
        }
    }
}

impl Policy {
    /// Parses a policy name (see [`Policy`]); the error says what is accepted.
    pub fn parse(name: &str) -> Result<Policy, alloc::string::String> {
        let bad = || {
            alloc::format!(
                "unknown policy '{name}': expected linux, linux-chain=N, fitted or \
                 fitted-chain=N (N from {} to {})",
                class::CHAIN_RANGE.start(),
                class::CHAIN_RANGE.end()
            )
        };
        if name == "default" {
            return Ok(Policy::default());
        }
        let (rule, chain) = match name.split_once("-chain=") {
            Some((rule, n)) => (rule, n.parse::<usize>().map_err(|_| bad())?),
            None => (name, class::DEFAULT_MAX_CHAIN),
        };
        let placement = match rule {
            "linux" => Placement::Linux,
            "fitted" => Placement::Fitted,
            _ => return Err(bad()),
        };
        if !class::CHAIN_RANGE.contains(&chain) {
            return Err(bad());
        }
        Ok(Policy {
            placement,
            max_chain: chain,
        })
    }

    /// The policy's name, as [`Policy::parse`] reads it back.
    pub fn name(&self) -> alloc::string::String {
        if self.max_chain == class::DEFAULT_MAX_CHAIN {
            self.placement.name().into()
        } else {
            alloc::format!("{}-chain={}", self.placement.name(), self.max_chain)
        }
    }

    /// A pool configuration with this policy and the other settings' defaults.
    pub fn config(&self) -> PoolConfig {
        PoolConfig {
            placement: self.placement,
            max_chain: self.max_chain,
            ..PoolConfig::default()
        }
    }
}
