//! Test kernel only: the model checker's empty-a-range operation on real frames.

use zsmalloc::Pool;
use zsmalloc::model::{EmptiedRange, RangeEmptier, RangeRefusal};

use super::KernelBackend;
use crate::mm::migrate::RangeError;

/// The model checker's empty-a-range operation on real frames: the aligned block of
/// 2^`order` frames around a random page of the pool is emptied ([`super::empty_range_around`]),
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
        let Some(emptied) = super::empty_range_around(pool, seed, self.order) else {
            return Err(RangeRefusal::OutOfMemory);
        };
        match emptied {
            Ok(r) => Ok(EmptiedRange {
                start: r.block.pfn(),
                frames: 1 << self.order,
                migrated: r.migrated,
            }),
            Err(RangeError::OutOfMemory { .. }) => Err(RangeRefusal::OutOfMemory),
            Err(RangeError::Refused { pfn, .. }) => Err(RangeRefusal::Busy(pfn)),
            Err(RangeError::Unmovable { pfn, .. }) => Err(RangeRefusal::Unmovable(pfn)),
            Err(e) => panic!("emptying a range: {e}"),
        }
    }
}
