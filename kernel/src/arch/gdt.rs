//! Global descriptor table and task state segment.
//!
//! The TSS gives the double-fault handler its own stack (IST slot 0): a double fault caused
//! by a kernel stack overflow would otherwise fault again pushing its frame on the dead stack
//! and triple-fault the machine with no diagnostic.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST index used by the double-fault handler.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;

/// Size of the double-fault stack.
const DOUBLE_FAULT_STACK_SIZE: usize = 16 * 1024;

/// The stack the double-fault handler runs on. 16-byte aligned as the ABI wants.
#[repr(C, align(16))]
struct FaultStack([u8; DOUBLE_FAULT_STACK_SIZE]);

static mut DOUBLE_FAULT_STACK: FaultStack = FaultStack([0; DOUBLE_FAULT_STACK_SIZE]);

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static TABLES: Once<Tables> = Once::new();

/// Builds and loads the GDT and TSS, and reloads the segment registers.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let stack_start = VirtAddr::from_ptr(&raw const DOUBLE_FAULT_STACK);
        // The stack grows down: the IST entry is its top.
        tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] =
            stack_start + DOUBLE_FAULT_STACK_SIZE as u64;
        tss
    });
    let tables = TABLES.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        Tables {
            gdt,
            code,
            data,
            tss,
        }
    });
    tables.gdt.load();
    // SAFETY: the selectors come from the GDT just loaded, which lives in a static for the
    // rest of the kernel's life; the TSS selector points at a valid, static TSS.
    unsafe {
        CS::set_reg(tables.code);
        DS::set_reg(tables.data);
        ES::set_reg(tables.data);
        SS::set_reg(tables.data);
        load_tss(tables.tss);
    }
}

/// Builds and loads a GDT and TSS of their own for an application processor, its double
/// faults handled on the stack ending at `fault_stack_top` (the caller's, for good; the
/// tables are leaked: a CPU's tables live as long as the machine).
pub fn init_for_ap(fault_stack_top: u64) {
    use alloc::boxed::Box;
    assert!(fault_stack_top != 0, "an AP needs a double-fault stack");
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] =
        VirtAddr::new(fault_stack_top & !15);
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = Box::leak(Box::new(gdt));
    gdt.load();
    // SAFETY: the selectors come from this CPU's GDT, just loaded and leaked (it lives for
    // good), and the TSS selector points at this CPU's leaked TSS.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_sel);
    }
}

/// Top and bottom of the double-fault stack, for tests that check the handler ran on it.
pub fn double_fault_stack_range() -> core::ops::Range<u64> {
    let start = VirtAddr::from_ptr(&raw const DOUBLE_FAULT_STACK).as_u64();
    start..start + DOUBLE_FAULT_STACK_SIZE as u64
}

/// The TSS selector of our GDT, once initialised.
pub fn expected_tss_selector() -> Option<SegmentSelector> {
    TABLES.get().map(|t| t.tss)
}
