//! Kernel stacks with guard pages, for the CPUs that bring-up starts (the boot CPU's stacks
//! come from the bootloader, with a guard page too). Each stack is fresh frames mapped in a
//! region of its own, with an unmapped page below it (and above it: the next stack starts
//! a page higher), so an overflow faults on the guard page, which the double-fault handler
//! reports on its own stack, instead of running into whatever memory lies below.

use core::ops::Range;

use spin::Mutex;

use super::memmap::FRAME_SIZE;

/// The next free address in the stacks' region (claimed at the first stack).
static NEXT: Mutex<Option<u64>> = Mutex::new(None);

/// Maps a stack of `bytes` (rounded up to whole pages) between two unmapped guard pages;
/// returns its address range (the stack grows down from `end`). The frames stay the
/// stack's for the rest of the boot.
pub fn alloc(bytes: u64) -> Result<Range<u64>, &'static str> {
    let size = bytes.div_ceil(FRAME_SIZE) * FRAME_SIZE;
    let mut next = NEXT.lock();
    let guard = *next.get_or_insert_with(super::paging::claim_l4_slot);
    let bottom = guard + FRAME_SIZE;
    super::heap::map_frames_at(bottom, size)?;
    *next = Some(bottom + size + FRAME_SIZE);
    Ok(bottom..bottom + size)
}
