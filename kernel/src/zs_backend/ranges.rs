//! Test kernel only: the model checker's empty-a-range operation on real frames.

use zsmalloc::Pool;
use zsmalloc::model::{EmptiedRange, RangeEmptier, RangeRefusal};

use super::KernelBackend;
use crate::mm::migrate::{self, RangeError};

/// The model checker's empty-a-range operation on real frames: the aligned block of
/// 2^`order` frames around a random page of the pool goes through [`migrate::empty_range`],
/// and the block it yields is freed again.
pub struct KernelRanges {
    /// Order of the blocks emptied.
    pub order: usize,
}

impl RangeEmptier<KernelBackend> for KernelRanges {
    fn empty_range(
        &self,
        pool: &Pool<KernelBackend>,
        seed: u64,
    ) -> Result<EmptiedRange, RangeRefusal> {
        let pages = pool.pages();
        if pages.is_empty() {
            return Err(RangeRefusal::OutOfMemory);
        }
        let pfn = pages[(seed % pages.len() as u64) as usize];
        let start = pfn & !((1 << self.order) - 1);
        match migrate::empty_range(start, self.order) {
            Ok(r) => Ok(EmptiedRange {
                start: r.block.pfn(),
                frames: 1 << self.order,
                migrated: r.migrated,
            }),
            Err(RangeError::OutOfMemory { .. }) => Err(RangeRefusal::OutOfMemory),
            Err(RangeError::Refused { pfn, .. }) => Err(RangeRefusal::Busy(pfn)),
            Err(RangeError::Unmovable { pfn, .. }) => Err(RangeRefusal::Unmovable(pfn)),
            Err(e) => panic!("emptying {start:#x}: {e}"),
        }
    }
}
