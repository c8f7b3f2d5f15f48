//! Tests of lab 0's page-table walk (`docs/labs/lab0-setup.md`): `translate` must agree with
//! the CPU's own translation (a value written through a virtual address is the value at the
//! physical address `translate` gives) and with the `x86_64` crate's walk, at every page size
//! the kernel's tables use, and say `None` where nothing is mapped. These tests use nothing
//! of the later labs (in lab 0's tree their code is still stubs).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;

use x86_64::VirtAddr;
use x86_64::structures::paging::mapper::{MappedFrame, TranslateResult};
use x86_64::structures::paging::{PageTableFlags, Translate};

use super::buddy::FrameBlock;
use super::memmap::{self, FRAME_SIZE};
use super::paging;
use super::translate::translate;
use crate::percpu;

/// The `x86_64` crate's walk of the same tables: (physical address, page size).
pub(super) fn crate_walk(virt: u64) -> Option<(u64, u64)> {
    let va = VirtAddr::try_new(virt).ok()?;
    paging::with_mapper(|m| match m.translate(va) {
        TranslateResult::Mapped { frame, offset, .. } => Some(match frame {
            MappedFrame::Size4KiB(f) => (f.start_address().as_u64() + offset, 4096),
            MappedFrame::Size2MiB(f) => (f.start_address().as_u64() + offset, 2 << 20),
            MappedFrame::Size1GiB(f) => (f.start_address().as_u64() + offset, 1 << 30),
        }),
        _ => None,
    })
}

/// The CPU's translation of `virt`, observed: a value written through `virt` is read back
/// through the direct map at `phys`. `virt` must be 8-aligned, writable and the test's own.
fn cpu_agrees(virt: u64, phys: u64, value: u64) -> bool {
    let direct = memmap::get().phys_offset() + phys;
    // SAFETY: the caller owns the 8 bytes at `virt` (a local, a heap or static value of the
    // test), mapped writable; `direct` is the same memory if `phys` is right, and some other
    // physical memory reached through the direct map (read only) if not.
    unsafe {
        (virt as *mut u64).write_volatile(value);
        (direct as *const u64).read_volatile() == value
    }
}

static A_STATIC: AtomicU64 = AtomicU64::new(0);

fn translate_finds_the_frame_behind_code_stack_heap_and_statics() {
    let mut on_stack: u64 = 0;
    let on_heap = Box::new(0u64);
    let places = [
        ("a local on the stack", &raw mut on_stack as u64),
        ("a heap object", &*on_heap as *const u64 as u64),
        ("a static", A_STATIC.as_ptr() as u64),
    ];
    for (i, (what, va)) in places.into_iter().enumerate() {
        let pa =
            translate(va).unwrap_or_else(|| panic!("{what} at {va:#x}: translate says unmapped"));
        let (want, _) = crate_walk(va).expect("mapped");
        assert_eq!(
            pa, want,
            "{what} at {va:#x}: the page tables map it to {want:#x}"
        );
        assert!(
            cpu_agrees(va, pa, 0x5eed_0000 + i as u64),
            "{what}: a value written at {va:#x} is not at {pa:#x}"
        );
    }
    // Code: the bytes of this function, read through both addresses.
    let code = translate_finds_the_frame_behind_code_stack_heap_and_statics as *const () as u64;
    let pa = translate(code).expect("this function's code is mapped");
    assert_eq!(Some(pa), crate_walk(code).map(|w| w.0));
    let direct = memmap::get().phys_offset() + pa;
    // SAFETY: both addresses are the first 16 bytes of this function (mapped, read only).
    let same = unsafe {
        core::slice::from_raw_parts(code as *const u8, 16)
            == core::slice::from_raw_parts(direct as *const u8, 16)
    };
    assert!(same, "the code at {code:#x} is not the memory at {pa:#x}");
    drop(on_heap);
}

fn translate_keeps_every_byte_offset_within_its_page() {
    // Three pages of heap, so the buffer crosses page boundaries.
    let buf: Vec<u64> = alloc::vec![0; 3 * FRAME_SIZE as usize / 8];
    let base = buf.as_ptr() as u64;
    for offset in [0, 1, 7, 8, 4088, 4095, 4096, 4097, 8191, 8192, 12_000] {
        let va = base + offset;
        assert_eq!(
            translate(va),
            crate_walk(va).map(|w| w.0),
            "{va:#x} ({offset} bytes into the buffer)"
        );
        let aligned = va & !7;
        let pa = translate(aligned).expect("heap is mapped");
        assert!(cpu_agrees(aligned, pa, offset), "offset {offset}");
    }
    drop(buf);
}

fn translate_follows_the_huge_pages_of_the_direct_map() {
    let mm = memmap::get();
    let frames = mm.frames();
    let mut sizes = Vec::new();
    for pfn in [
        1,
        0x100,
        0x1ff,
        0x200,
        0x201,
        frames / 3,
        frames / 2 + 7,
        frames - 1,
    ] {
        for offset in [0, 1, 2048, FRAME_SIZE - 1] {
            let va = mm.frame_addr(pfn) + offset;
            let want = pfn * FRAME_SIZE + offset;
            assert_eq!(
                translate(va),
                Some(want),
                "the direct map's {va:#x} is physical {want:#x}"
            );
            if let Some((_, size)) = crate_walk(va) {
                sizes.push(size);
            }
        }
    }
    assert!(
        sizes.iter().any(|&s| s > 4096),
        "the direct map has huge pages here: {sizes:?}"
    );
}

fn translate_says_none_where_nothing_is_mapped() {
    // None only where nothing is mapped: a local of this test is.
    let here = 0u64;
    assert!(
        translate(&raw const here as u64).is_some(),
        "translate says None for a local on the stack, which is mapped"
    );
    let window = &percpu::current().window;
    let mut nowhere = alloc::vec![0u64, 4095, window.base(), window.base() + FRAME_SIZE];
    nowhere.extend(window.guard_pages());
    for va in nowhere {
        assert_eq!(crate_walk(va), None, "{va:#x} is unmapped");
        assert_eq!(
            translate(va),
            None,
            "{va:#x} is not mapped: translate must say None"
        );
    }
    // Not canonical: bits 48-63 must copy bit 47.
    for va in [
        0x0000_8000_0000_0000u64,
        0xffff_7fff_ffff_f000,
        0x1234_0000_0000_0000,
    ] {
        assert_eq!(translate(va), None, "{va:#x} is not a canonical address");
    }
}

fn translate_sees_a_mapping_made_a_moment_ago() {
    let region = paging::claim_l4_slot();
    let frames: Vec<FrameBlock> = (0..3).map(|_| FrameBlock::alloc_frame().unwrap()).collect();
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    // Pages far apart in the region: each its own level-1, level-2 and level-3 tables.
    let pages = [
        region,
        region + (1 << 21) + 5 * FRAME_SIZE,
        region + (7 << 30),
    ];
    for (page, f) in pages.iter().zip(&frames) {
        assert_eq!(translate(*page), None, "{page:#x} before it is mapped");
        paging::map_page(*page, f.pfn(), flags).expect("map a fresh page");
        let pa = f.pfn() * FRAME_SIZE;
        assert_eq!(
            translate(*page + 24),
            Some(pa + 24),
            "{page:#x} mapped to {pa:#x}"
        );
        assert!(cpu_agrees(*page + 24, pa + 24, *page));
    }
    // The frames stay mapped in this region, which nothing else uses: keep them.
    for f in frames {
        let _ = f.into_raw();
    }
}

/// Lab 0's own test: the module `mm::translate::your_ktests` registers at least one test,
/// and every one of them passes.
fn your_own_test_of_translate_is_registered_and_passes() {
    let module = crate::ktest::MODULES
        .iter()
        .find(|m| m.path == "kernel::mm::translate::your_ktests")
        .expect("no ktests! table in mm::translate::your_ktests: register your test there");
    assert!(
        !module.tests.is_empty(),
        "the table in mm::translate::your_ktests registers no test"
    );
    for t in module.tests {
        crate::println!("  running your test {}", t.name().as_str());
        (t.func)();
    }
}

crate::ktests! {
    // Lab 0: set-up and a page-table walk (docs/labs/lab0-setup.md).
    translate_finds_the_frame_behind_code_stack_heap_and_statics { lab: 0, points: 25 },
    translate_keeps_every_byte_offset_within_its_page { lab: 0, points: 15 },
    translate_follows_the_huge_pages_of_the_direct_map { lab: 0, points: 20 },
    translate_says_none_where_nothing_is_mapped { lab: 0, points: 15 },
    translate_sees_a_mapping_made_a_moment_ago { lab: 0, points: 10 },
    your_own_test_of_translate_is_registered_and_passes { lab: 0, points: 15 },
}
