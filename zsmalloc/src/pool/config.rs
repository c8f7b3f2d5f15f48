//! A pool's settings: the chain length, the placement rule, the map path for spanning
//! objects, the locking.

use crate::class;
use crate::growth::Growth;
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
    /// Both pages mapped through the backend's lazily flushed window
    /// ([`crate::Backend::map_pair_lazy`]): on the kernel, a per-CPU ring of two-page slots
    /// that costs one full TLB flush per 255 maps instead of two `invlpg`s per unmap.
    LazyWindow,
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
    /// How long a class's new zspage is (default: Linux's rule, always the class's length).
    pub growth: Growth,
    /// Whether freeing compacts the class by itself (default: no, as Linux, which compacts
    /// only when asked).
    pub auto_compact: AutoCompact,
    /// How spanning objects are mapped.
    pub map_path: MapPath,
    /// The locking scheme.
    pub locking: Locking,
}

/// When a pool compacts a class without being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoCompact {
    /// Never (Linux: compaction runs when asked, by the shrinker or through sysfs).
    #[default]
    Never,
    /// After a free leaves the class with at least `pages` freeable pages and at least
    /// 1 / `share` of its pages freeable, that free empties one source zspage of the class
    /// (one step of compaction, the same as `Pool::compact`'s).
    WhenFreeable {
        /// Freeable pages that start a step.
        pages: u16,
        /// The class's pages divided by this (0: no such condition) must be freeable too.
        share: u8,
    },
    /// The same condition, but the free only queues the class (one atomic bit): nothing
    /// moves on the free path. The queue is drained by [`Pool::compact_pending`], which the
    /// pool's owner calls when it pauses (as Linux leaves compaction to the shrinker and to
    /// userspace's `compact`), and by a malloc that finds no frames, before it tries again.
    ///
    /// [`Pool::compact_pending`]: crate::Pool::compact_pending
    Deferred {
        /// Freeable pages that queue the class.
        pages: u16,
        /// The class's pages divided by this (0: no such condition) must be freeable too.
        share: u8,
    },
}

impl AutoCompact {
    /// Whether `class` compacts after a free (its freeable pages are only counted if the rule
    /// asks: this runs on every free).
    pub(crate) fn due(self, class: &crate::zspage::ClassState) -> bool {
        match self {
            AutoCompact::Never => false,
            AutoCompact::WhenFreeable { pages, share } | AutoCompact::Deferred { pages, share } => {
                let freeable = class.freeable_pages();
                // freeable >= pages / share, without a division (this runs on every free).
                freeable >= pages as u64
                    && (share == 0 || (freeable + 1) * share as u64 > class.pages)
            }
        }
    }

    /// The rule of zsos's policy: queue a class once it could give back a page and an eighth
    /// of its pages, and compact it when the owner pauses or frames run out. Compacting late
    /// moves fewer bytes (objects freed meanwhile are never moved) and keeps compaction off
    /// the free path; compacting on the free itself ([`AutoCompact::WhenFreeable`] with the
    /// same figures, zsos's rule before) moved about four times the bytes of Linux's
    /// compaction at the end, and compacting before the pool grows cost more than it saved.
    /// All measured in `docs/policies.md`.
    pub const ZSOS: AutoCompact = AutoCompact::Deferred { pages: 1, share: 8 };
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
            growth: Growth::Fixed,
            auto_compact: AutoCompact::Never,
            map_path: MapPath::Window,
            locking: Locking::PerClass,
        }
    }
}

/// A named policy: where new objects go, how long zspages are and whether frees compact, as
/// `replay --policy`, `bench policies` and the tests select it. Names:
/// - `linux` (Linux's rules at its default chain length 8) and `linux-chain=N` (N in 4..=16):
///   the reference, exactly as upstream;
/// - `fitted`, `fitted-chain=N`: Linux's rules but the fitted placement (lab 7's rule);
/// - `zsos`, `zsos-chain=N`: zsos's policy, the fitted placement with zspages sized by each
///   class's population ([`Growth::ZSOS`]), automatic compaction ([`AutoCompact::ZSOS`]) and
///   the lazily flushed window ([`MapPath::LazyWindow`]); see `docs/policies.md`;
/// - `default`: the default policy, `zsos`.
///
/// A pool built from `PoolConfig::default()` keeps Linux's rules: the labs and the tests that
/// check zsos against upstream's figures build on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The placement rule.
    pub placement: Placement,
    /// Maximum pages per zspage.
    pub max_chain: usize,
    /// How long a class's new zspage is.
    pub growth: Growth,
    /// Whether frees compact.
    pub auto_compact: AutoCompact,
    /// How spanning objects are mapped.
    pub map_path: MapPath,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::ZSOS
    }
}

impl Policy {
    /// Linux's policy at its default chain length.
    pub const LINUX: Policy = Policy {
        placement: Placement::Linux,
        max_chain: class::DEFAULT_MAX_CHAIN,
        growth: Growth::Fixed,
        auto_compact: AutoCompact::Never,
        map_path: MapPath::Window,
    };

    /// zsos's policy (the default).
    pub const ZSOS: Policy = Policy {
        placement: Placement::Fitted,
        max_chain: class::DEFAULT_MAX_CHAIN,
        growth: Growth::ZSOS,
        auto_compact: AutoCompact::ZSOS,
        map_path: MapPath::LazyWindow,
    };

    /// Parses a policy name (see [`Policy`]); the error says what is accepted.
    pub fn parse(name: &str) -> Result<Policy, alloc::string::String> {
        let bad = || {
            alloc::format!(
                "unknown policy '{name}': expected default, linux, linux-chain=N, fitted, \
                 fitted-chain=N, zsos or zsos-chain=N (N from {} to {})",
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
        let base = match rule {
            "linux" => Policy::LINUX,
            "fitted" => Policy {
                placement: Placement::Fitted,
                ..Policy::LINUX
            },
            "zsos" => Policy::ZSOS,
            _ => return Err(bad()),
        };
        if !class::CHAIN_RANGE.contains(&chain) {
            return Err(bad());
        }
        Ok(Policy {
            max_chain: chain,
            ..base
        })
    }

    /// The policy's name, as [`Policy::parse`] reads it back (`custom` for a policy that no
    /// name gives).
    pub fn name(&self) -> alloc::string::String {
        let at_default_chain = Policy {
            max_chain: class::DEFAULT_MAX_CHAIN,
            ..*self
        };
        let fitted = Policy {
            placement: Placement::Fitted,
            ..Policy::LINUX
        };
        let rule = [
            ("linux", Policy::LINUX),
            ("fitted", fitted),
            ("zsos", Policy::ZSOS),
        ]
        .into_iter()
        .find(|(_, p)| *p == at_default_chain)
        .map_or("custom", |(name, _)| name);
        if self.max_chain == class::DEFAULT_MAX_CHAIN {
            rule.into()
        } else {
            alloc::format!("{rule}-chain={}", self.max_chain)
        }
    }

    /// A pool configuration with this policy and the other settings' defaults.
    pub fn config(&self) -> PoolConfig {
        PoolConfig {
            placement: self.placement,
            max_chain: self.max_chain,
            growth: self.growth,
            auto_compact: self.auto_compact,
            map_path: self.map_path,
            ..PoolConfig::default()
        }
    }
}
