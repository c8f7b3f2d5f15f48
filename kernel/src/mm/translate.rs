//! Translating a virtual address by walking the page tables in software, as the MMU does in
//! hardware (lab 0, `docs/labs/lab0-setup.md`). Nothing in the kernel depends on it: it is
//! the first function a student writes, checked against the CPU's own translation.
//!
//! x86_64 with 4-level paging: a canonical virtual address is split into four 9-bit table
//! indexes and a 12-bit page offset. CR3 holds the physical address of the top table; each
//! present entry holds the physical address of the next table, or, at levels 3 and 2 with
//! the page-size bit set, of a 1 GiB or 2 MiB page (Intel SDM volume 3A, "4-Level Paging").
//! Tables are physical memory, reached here through the direct map
//! ([`super::memmap::Memmap::phys_offset`]).

/// The physical address `virt` translates to through the page tables CR3 points at, or
/// `None` if it is not mapped (an entry on the way is not present, or the address is not
/// canonical).
pub fn translate(virt: u64) -> Option<u64> {
    // LAB 0: BEGIN walk the page tables from CR3 down to the physical address of `virt`, as the MMU would
    use x86_64::registers::control::Cr3;
    use x86_64::structures::paging::{PageTable, PageTableFlags as F};

    let va = x86_64::VirtAddr::try_new(virt).ok()?;
    let direct_map = super::memmap::get().phys_offset();
    let mut table_at = Cr3::read().0.start_address().as_u64();
    // Levels 4 to 1, each with the index `va` selects there.
    let levels = [
        (4, u64::from(va.p4_index())),
        (3, u64::from(va.p3_index())),
        (2, u64::from(va.p2_index())),
        (1, u64::from(va.p1_index())),
    ];
    for (level, index) in levels {
        // SAFETY: `table_at` is the physical address of a live page table: CR3's, or the one
        // a present entry of the level above points at; the direct map maps all physical
        // memory read-write, and a shared reference only reads it (the MMU and the kernel's
        // mapper may change entries, which this walk reads as they are at that moment).
        let table = unsafe { &*((direct_map + table_at) as *const PageTable) };
        let entry = &table[index as usize];
        if !entry.flags().contains(F::PRESENT) {
            return None;
        }
        let maps_a_page = level == 1 || (level <= 3 && entry.flags().contains(F::HUGE_PAGE));
        if maps_a_page {
            // A 4 KiB page at level 1; 2 MiB at level 2; 1 GiB at level 3.
            let page_bytes = 4096u64 << (9 * (level - 1));
            return Some(entry.addr().as_u64() + virt % page_bytes);
        }
        table_at = entry.addr().as_u64();
    }
    unreachable!("level 1 always maps a page")
    // LAB 0: STUB
    // // Until you walk the tables, nothing is mapped.
    // let _ = virt;
    // None
    // LAB 0: END
}

/// Your own kernel tests of [`translate`] (lab 0): each a function that panics when
/// `translate` is wrong, registered in this module's `crate::ktests!` table.
#[cfg(feature = "ktest")]
mod your_ktests {
    // LAB 0: BEGIN a kernel test of your own for translate, and this module's ktests! table that registers it
    use super::translate;

    /// Page 0 stays unmapped, so that a null pointer faults.
    fn the_null_page_is_not_mapped() {
        assert_eq!(translate(0), None);
        assert_eq!(translate(4095), None);
    }

    crate::ktests! {
        the_null_page_is_not_mapped,
    }
    // LAB 0: STUB
    // LAB 0: END
}
