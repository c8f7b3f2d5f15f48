//! A zram-style compressed block store: numbered 4 KiB pages are LZ4-compressed into a
//! zsmalloc pool (with movable pages). As Linux's zram does, a page that does not compress
//! below the pool's huge size is stored whole (in the huge class), and a page of zeros is not
//! stored at all, only flagged. Reading an unwritten page gives zeros.

use alloc::vec::Vec;
use core::fmt;

use zsmalloc::{Handle, MapMode, PoolConfig};

use crate::workload::{self, PAGE};
use crate::zs_backend::MovablePool;

/// What a slot of the device holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Never written, or discarded.
    Empty,
    /// A page of zeros (nothing stored).
    Zero,
    /// An object of `len` bytes: LZ4 data, or the page itself when `len` is 4096.
    Stored { handle: Handle, len: u16 },
}

/// Why a device operation failed. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZramError {
    /// The page number is beyond the device.
    OutOfRange(usize),
    /// The pool has no memory for the page.
    OutOfMemory,
    /// A stored page did not decompress to a whole page (corruption).
    Corrupt(usize),
}

impl fmt::Display for ZramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZramError::OutOfRange(i) => write!(f, "page {i} is beyond the device"),
            ZramError::OutOfMemory => write!(f, "out of memory"),
            ZramError::Corrupt(i) => write!(f, "page {i} does not decompress"),
        }
    }
}

/// The device's counters (Linux: `mm_stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZramStats {
    /// Pages holding data (zero pages included).
    pub pages: u64,
    /// Of those, pages of zeros (not stored).
    pub zero_pages: u64,
    /// Of those, pages stored whole (incompressible).
    pub huge_pages: u64,
    /// Bytes of the pages written (pages × 4096): zram's `orig_data_size`.
    pub orig_bytes: u64,
    /// Bytes stored in the pool: zram's `compr_data_size`.
    pub compr_bytes: u64,
    /// Bytes of pool memory: zram's `mem_used_total`.
    pub mem_used: u64,
}

impl fmt::Display for ZramStats {
    /// One line: pages, zero and whole pages, bytes stored, pool pages, ratio and density.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>5} pages ({} zero, {} stored whole), {} KiB stored in {} pool pages: ratio {:.2}, density {:.3}",
            self.pages,
            self.zero_pages,
            self.huge_pages,
            self.compr_bytes / 1024,
            self.mem_used / PAGE as u64,
            self.ratio(),
            self.density()
        )
    }
}

impl ZramStats {
    /// Original bytes per byte of memory used.
    pub fn ratio(&self) -> f64 {
        self.orig_bytes as f64 / self.mem_used.max(1) as f64
    }

    /// Stored bytes per byte of memory used (the pool's density).
    pub fn density(&self) -> f64 {
        self.compr_bytes as f64 / self.mem_used.max(1) as f64
    }
}

/// A zram-style device of a fixed number of pages.
pub struct Zram {
    pool: MovablePool,
    entries: Vec<Entry>,
}

impl Zram {
    /// A device of `pages` pages, all unwritten.
    pub fn new(name: &str, pages: usize) -> Zram {
        Zram {
            pool: MovablePool::new(name, PoolConfig::default()),
            entries: alloc::vec![Entry::Empty; pages],
        }
    }

    /// The pool underneath.
    pub fn pool(&self) -> &MovablePool {
        &self.pool
    }

    /// Pages in the device.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for a device of no pages.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes page `index` (replacing what it held).
    pub fn write(&mut self, index: usize, page: &[u8; PAGE]) -> Result<(), ZramError> {
        let old = *self
            .entries
            .get(index)
            .ok_or(ZramError::OutOfRange(index))?;
        let new = if page.iter().all(|&b| b == 0) {
            Entry::Zero
        } else {
            let compressed = workload::compress(page);
            let data: &[u8] = if compressed.len() >= self.pool.huge_class_size() {
                page
            } else {
                &compressed
            };
            let handle = self
                .pool
                .malloc(data.len())
                .map_err(|_| ZramError::OutOfMemory)?;
            self.pool
                .map(handle, MapMode::WriteOnly)
                .expect("a new object maps")
                .copy_from_slice(data);
            Entry::Stored {
                handle,
                len: data.len() as u16,
            }
        };
        self.entries[index] = new;
        self.release(old);
        Ok(())
    }

    /// Reads page `index` into `out` (zeros if never written).
    pub fn read(&self, index: usize, out: &mut [u8; PAGE]) -> Result<(), ZramError> {
        match *self
            .entries
            .get(index)
            .ok_or(ZramError::OutOfRange(index))?
        {
            Entry::Empty | Entry::Zero => out.fill(0),
            Entry::Stored { handle, len } => {
                let mut local = [0u8; PAGE];
                let obj = self
                    .pool
                    .read_object(handle, &mut local)
                    .expect("a stored page's handle is live");
                if len as usize == PAGE {
                    out.copy_from_slice(&obj);
                } else {
                    workload::decompress(&obj, out).map_err(|_| ZramError::Corrupt(index))?;
                }
            }
        }
        Ok(())
    }

    /// Forgets page `index` (Linux: discard); it reads as zeros again.
    pub fn discard(&mut self, index: usize) -> Result<(), ZramError> {
        let old = core::mem::replace(
            self.entries
                .get_mut(index)
                .ok_or(ZramError::OutOfRange(index))?,
            Entry::Empty,
        );
        self.release(old);
        Ok(())
    }

    fn release(&self, old: Entry) {
        if let Entry::Stored { handle, .. } = old {
            self.pool
                .free(handle)
                .expect("a stored page's handle is live");
        }
    }

    /// Compacts the pool; returns pages freed.
    pub fn compact(&self) -> usize {
        self.pool.compact()
    }

    /// The counters.
    pub fn stats(&self) -> ZramStats {
        let mut s = ZramStats::default();
        for e in &self.entries {
            match e {
                Entry::Empty => {}
                Entry::Zero => {
                    s.pages += 1;
                    s.zero_pages += 1;
                }
                Entry::Stored { len, .. } => {
                    s.pages += 1;
                    s.huge_pages += (*len as usize == PAGE) as u64;
                    s.compr_bytes += *len as u64;
                }
            }
        }
        s.orig_bytes = s.pages * PAGE as u64;
        s.mem_used = (self.pool.total_pages() * PAGE) as u64;
        s
    }
}

impl Drop for Zram {
    fn drop(&mut self) {
        for e in core::mem::take(&mut self.entries) {
            self.release(e);
        }
    }
}

/// In-kernel tests of the device.
#[cfg(feature = "ktest")]
mod ktests {
    use super::*;

    fn pages_round_trip_zero_pages_take_no_memory_and_overwrites_free_the_old_object() {
        let mut z = Zram::new("ktest-zram", 64);
        let mut page = [0u8; PAGE];
        let mut back = [0xffu8; PAGE];
        z.read(5, &mut back).unwrap();
        assert!(
            back.iter().all(|&b| b == 0),
            "unwritten pages read as zeros"
        );
        // A zero page: stored as a flag only.
        z.write(0, &page).unwrap();
        assert_eq!(z.pool().total_pages(), 0);
        // Text compresses; noise is stored whole.
        for (i, n) in (1..40).enumerate() {
            workload::page(77, n, &mut page);
            z.write(i + 1, &page).unwrap();
        }
        let s = z.stats();
        assert_eq!(s.pages, 40);
        assert!(s.zero_pages >= 1 && s.huge_pages >= 1, "{s:?}");
        assert_eq!(s.orig_bytes, 40 * 4096);
        assert!(s.compr_bytes < s.orig_bytes && s.mem_used > 0);
        for (i, n) in (1..40).enumerate() {
            workload::page(77, n, &mut page);
            z.read(i + 1, &mut back).unwrap();
            assert!(back == page, "page {} came back different", i + 1);
        }
        // Overwriting replaces the object (the pool holds exactly the live ones).
        let stored = |z: &Zram| {
            z.entries
                .iter()
                .filter(|e| matches!(e, Entry::Stored { .. }))
                .count() as u64
        };
        for n in [3, 4, 5] {
            workload::page(78, n, &mut page);
            z.write(1, &page).unwrap();
            z.read(1, &mut back).unwrap();
            assert!(back == page);
            assert_eq!(
                z.pool().stats().objects(),
                stored(&z),
                "one object per stored page"
            );
        }
        z.discard(1).unwrap();
        z.read(1, &mut back).unwrap();
        assert!(
            back.iter().all(|&b| b == 0),
            "a discarded page reads as zeros"
        );
        assert_eq!(z.write(64, &page), Err(ZramError::OutOfRange(64)));
        assert_eq!(z.read(99, &mut back), Err(ZramError::OutOfRange(99)));
        assert_eq!(z.discard(64), Err(ZramError::OutOfRange(64)));
        z.pool().check_invariants().unwrap();
        let frames = z.pool().backend().frames_held();
        assert!(frames > 0);
        let free = crate::mm::buddy::stats().free_frames;
        let cache = crate::zs_backend::ZSDESCS.stats().frames;
        drop(z);
        // In the memdesc memmap the descriptor cache may give blocks back too.
        let cache_gave = cache - crate::zs_backend::ZSDESCS.stats().frames;
        assert_eq!(
            crate::mm::buddy::stats().free_frames,
            free + frames + cache_gave,
            "dropping the device gives its frames back"
        );
    }

    crate::ktests! {
        pages_round_trip_zero_pages_take_no_memory_and_overwrites_free_the_old_object,
    }
}
