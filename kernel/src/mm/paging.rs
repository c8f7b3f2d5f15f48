//! Kernel page tables, through the `x86_64` crate's mapper over the direct map.
//!
//! The bootloader's page tables stay in use; zsos edits them with an `OffsetPageTable` (the
//! direct map makes every table frame addressable) and carves its own virtual regions (the
//! heap, the PTE windows) out of top-level slots the bootloader left empty, so nothing about
//! the address-space layout is hard-coded.
//!
//! TLB shootdowns: all CPUs share these tables, so a change to a mapping another CPU may have
//! cached would need an IPI to flush it there. zsos never makes one: it only ever adds
//! mappings where none was (heap growth, the local APIC, the AP trampoline, new windows; a
//! not-present entry is never cached), and the only mappings it removes or changes are
//! those of a CPU's own PTE window (and the scratch page `prebuild_leaf_entry` maps while
//! building one), which no other CPU ever touches. Whoever adds an unmap of a shared mapping
//! must add the shootdown with it.

use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PageTableIndex, PhysFrame, Size4KiB,
};

use super::buddy::PageTableFrames;

/// Bytes covered by one top-level (PML4) entry.
pub const L4_SLOT_BYTES: u64 = 1 << 39;

static MAPPER: Mutex<Option<OffsetPageTable<'static>>> = Mutex::new(None);

/// Takes over the active page tables.
pub fn init(phys_offset: u64) {
    let (l4_frame, _) = Cr3::read();
    let l4 = (phys_offset + l4_frame.start_address().as_u64()) as *mut PageTable;
    // SAFETY: CR3 holds the active top-level table, which the direct map at `phys_offset`
    // makes addressable; this is the only `&mut` made to it (kept inside MAPPER's lock).
    let mapper = unsafe { OffsetPageTable::new(&mut *l4, VirtAddr::new(phys_offset)) };
    *MAPPER.lock() = Some(mapper);
}

/// Runs `f` with the kernel's mapper (interrupts masked while it is locked).
pub fn with_mapper<R>(f: impl FnOnce(&mut OffsetPageTable<'static>) -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut guard = MAPPER.lock();
        f(guard.as_mut().expect("paging is initialised at boot"))
    })
}

/// Claims an unused top-level slot in the kernel half and returns its base address: 512 GiB
/// of virtual space for one zsos region.
pub fn claim_l4_slot() -> u64 {
    with_mapper(|m| {
        let l4 = m.level_4_table_mut();
        let slot = (256..512)
            .rev()
            .find(|&i| l4[i].is_unused())
            .expect("a free top-level slot");
        // Mark it used at once (an empty present table), so the next claim skips it.
        let frame =
            x86_64::structures::paging::FrameAllocator::allocate_frame(&mut PageTableFrames)
                .expect("a frame for a page table");
        let phys_offset = m.phys_offset().as_u64();
        // SAFETY: the frame was just allocated for this table and is mapped by the direct map.
        unsafe { (*((phys_offset + frame.start_address().as_u64()) as *mut PageTable)).zero() };
        let l4 = m.level_4_table_mut();
        l4[slot].set_frame(frame, PageTableFlags::PRESENT | PageTableFlags::WRITABLE);
        let base = (slot as u64) << 39;
        // Sign-extend bit 47 to make the address canonical.
        base | 0xffff_0000_0000_0000
    })
}

/// Maps one 4 KiB page and flushes its translation.
pub fn map_page(page: u64, pfn: u64, flags: PageTableFlags) -> Result<(), MapToError<Size4KiB>> {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(page));
    let frame =
        PhysFrame::containing_address(x86_64::PhysAddr::new(pfn * super::memmap::FRAME_SIZE));
    with_mapper(|m| {
        // SAFETY: callers map frames they own (fresh from the buddy allocator) at addresses in
        // a region zsos claimed for itself, so no existing mapping or object is affected.
        unsafe { m.map_to(page, frame, flags, &mut PageTableFrames) }.map(|flush| flush.flush())
    })
}

/// Builds every page-table level down to the leaf table for `addr` (allocating tables as
/// needed) and returns a pointer to its leaf entry, which is left unused. After this,
/// writing that entry never needs an allocation.
pub fn prebuild_leaf_entry(addr: u64) -> *mut PageTableEntry {
    // Map a scratch frame once to force the intermediate tables into existence, then unmap.
    let scratch = super::buddy::FrameBlock::alloc_frame().expect("a scratch frame");
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    map_page(addr, scratch.pfn(), flags).expect("prebuilding a page-table path");
    with_mapper(|m| {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(addr));
        let (_, flush) = m.unmap(page).expect("the scratch mapping exists");
        flush.flush();
    });
    drop(scratch);
    leaf_entry(addr).expect("the path was just built")
}

/// The leaf (level 1) entry for `addr`, if every level above it is present.
pub fn leaf_entry(addr: u64) -> Option<*mut PageTableEntry> {
    let va = VirtAddr::new(addr);
    with_mapper(|m| {
        let phys_offset = m.phys_offset().as_u64();
        let mut table: *mut PageTable = m.level_4_table_mut();
        for index in [va.p4_index(), va.p3_index(), va.p2_index()] {
            // SAFETY: `table` points to a live page table (the top level, then each level
            // reached through a present, non-huge entry, addressed through the direct map).
            let entry = unsafe { &(&*table)[index] };
            let flags = entry.flags();
            if !flags.contains(PageTableFlags::PRESENT) || flags.contains(PageTableFlags::HUGE_PAGE)
            {
                return None;
            }
            table = (phys_offset + entry.addr().as_u64()) as *mut PageTable;
        }
        let index: PageTableIndex = va.p1_index();
        // SAFETY: `table` is the present leaf table for `addr`; the pointer stays valid because
        // zsos never frees page tables.
        Some(unsafe { &mut (&mut *table)[index] as *mut PageTableEntry })
    })
}
