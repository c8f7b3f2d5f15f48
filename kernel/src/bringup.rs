//! Bringing up the other CPUs: finds them in ACPI's MADT, gives the machine layer what
//! starting them takes (the local APIC mapped, a trampoline frame below 640 KiB, a stack per
//! AP), and has every AP build and store its own per-CPU state (`mm::init_cpu`, then
//! `percpu::install`) before it reports in. Everything that touches the hardware is in
//! `arch::smp`; this module decides where the memory comes from.

use alloc::string::String;
use alloc::vec::Vec;

use x86_64::structures::paging::PageTableFlags;

use crate::arch::cpu_local::MAX_CPUS;
use crate::arch::cpus::{self, Cpu};
use crate::arch::smp;
use crate::mm::{self, memmap, paging};
use crate::percpu;

/// Stack of each AP.
const AP_STACK: u64 = 64 * 1024;
/// Double-fault stack of each AP.
const AP_FAULT_STACK: u64 = 16 * 1024;

/// What starting the APs did.
#[derive(Debug, Default)]
pub struct Started {
    /// APIC ids of the APs that came up.
    pub up: Vec<u32>,
    /// APIC ids of the APs that did not report in time.
    pub missing: Vec<u32>,
    /// Why some or all were not started, if so.
    pub error: Option<&'static str>,
}

/// Sets up the boot CPU's per-CPU state, then finds the other CPUs, starts them, and logs
/// which run.
pub fn start_all_cpus(rsdp: Option<u64>, physical_memory_offset: u64) {
    percpu::install(0, mm::init_cpu(0));
    let cpus = match cpus::discover(rsdp, physical_memory_offset) {
        Ok(cpus) => cpus,
        Err(e) => {
            log::warn!("cpus: cannot list the CPUs: {e}; running on the boot CPU only");
            return;
        }
    };
    let ids: Vec<String> = cpus
        .iter()
        .map(|c| {
            alloc::format!(
                "{}{}{}",
                c.apic_id,
                if c.is_boot { "*" } else { "" },
                if c.usable { "" } else { "(disabled)" }
            )
        })
        .collect();
    // Indices go to the usable APs in MADT order (`start_aps`), so none reaches this count.
    percpu::set_possible(1 + cpus.iter().filter(|c| !c.is_boot && c.usable).count());
    let started = start_aps(&cpus);
    log::info!(
        "cpus: {} in the ACPI MADT (APIC ids {}; * = boot CPU); running: {}",
        cpus.len(),
        ids.join(" "),
        smp::cpus_up()
    );
    if let Some(why) = started.error {
        log::warn!("cpus: application processors not started: {why}");
    }
    for id in &started.missing {
        log::warn!("cpus: the CPU with APIC id {id} did not come up");
    }
}

/// What an AP runs on itself before reporting in: builds and stores its per-CPU state.
fn ap_setup(index: usize) {
    percpu::install(index, mm::init_cpu(index));
}

/// Starts every usable AP in `cpus` (the boot CPU is skipped), up to `MAX_CPUS`.
fn start_aps(cpus: &[Cpu]) -> Started {
    let mut out = Started::default();
    let aps: Vec<&Cpu> = cpus.iter().filter(|c| !c.is_boot && c.usable).collect();
    if aps.is_empty() {
        return out;
    }
    let trampoline = match prepare() {
        Ok(t) => t,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    smp::set_ap_setup(ap_setup);
    start_each(&aps, &mut out, &mut |ap, index| {
        // Both stacks between guard pages: an overflow is a diagnosed double fault.
        let (top, fault_top) = mm::stacks::alloc(AP_STACK)
            .and_then(|s| mm::stacks::alloc(AP_FAULT_STACK).map(|f| (s.end, f.end)))
            .map_err(|_| "no memory for the stacks of the other CPUs")?;
        Ok(smp::start_ap(
            &trampoline,
            ap.apic_id,
            index,
            top,
            fault_top,
        ))
    });
    out
}

/// Starts `aps` in order as CPUs 1, 2, ... with `start` (which says whether the AP reported
/// in, or why it could not be tried), recording each in `out`. After an AP that did not
/// report in, none is started: the late CPU may still be reading its stack and index from the
/// trampoline, and writing the next CPU's there could start two CPUs on one stack.
fn start_each(
    aps: &[&Cpu],
    out: &mut Started,
    start: &mut dyn FnMut(&Cpu, usize) -> Result<bool, &'static str>,
) {
    for (n, ap) in aps.iter().enumerate() {
        let index = n + 1;
        if index >= MAX_CPUS {
            out.missing.push(ap.apic_id);
            continue;
        }
        match start(ap, index) {
            Ok(true) => out.up.push(ap.apic_id),
            Ok(false) => {
                out.missing.extend(aps[n..].iter().map(|c| c.apic_id));
                out.error = Some(
                    "a CPU did not report in, and the trampoline stays its own: the CPUs \
                     after it were not started",
                );
                return;
            }
            Err(why) => {
                out.missing.extend(aps[n..].iter().map(|c| c.apic_id));
                out.error = Some(why);
                return;
            }
        }
    }
}

#[cfg(feature = "ktest")]
mod ktests {
    use alloc::vec::Vec;

    use super::{Started, start_each};
    use crate::arch::cpus::Cpu;

    fn ap(apic_id: u32) -> Cpu {
        Cpu {
            apic_id,
            uid: apic_id,
            is_boot: false,
            usable: true,
        }
    }

    /// The start-up order's logic with a stand-in for the INIT-SIPI-SIPI sequence: after the
    /// second AP stays silent, the third and fourth are never tried (the trampoline still
    /// belongs to the silent one), and all three count as missing.
    fn no_cpu_is_started_after_one_that_did_not_report_in() {
        let cpus = [ap(1), ap(2), ap(3), ap(4)];
        let aps: Vec<&Cpu> = cpus.iter().collect();
        let mut out = Started::default();
        let mut tried = Vec::new();
        start_each(&aps, &mut out, &mut |cpu, index| {
            tried.push((cpu.apic_id, index));
            Ok(cpu.apic_id != 2)
        });
        assert_eq!(tried, [(1, 1), (2, 2)], "CPUs tried after a silent one");
        assert_eq!(out.up, [1]);
        assert_eq!(out.missing, [2, 3, 4]);
        assert!(out.error.is_some());
    }

    crate::ktests! {
        no_cpu_is_started_after_one_that_did_not_report_in,
    }
}

/// Maps the local APIC and installs the trampoline in a reserved low frame.
fn prepare() -> Result<smp::Trampoline, &'static str> {
    if !smp::trampoline_can_load_cr3() {
        return Err("the kernel's top-level page table is above 4 GiB");
    }
    let lapic_phys = smp::local_apic_base();
    let region = paging::claim_l4_slot();
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::NO_EXECUTE;
    paging::map_page(region, lapic_phys >> 12, flags).map_err(|_| "cannot map the local APIC")?;
    // SAFETY: `region` now maps the APIC's register page uncached and writable, and the slot
    // claimed for it is never unmapped or reused.
    unsafe { smp::use_local_apic(region + (lapic_phys & 0xfff)) };
    let phys = reserve_trampoline_frame()?;
    // SAFETY: the frame is below 640 KiB, reserved for good, identity-mapped executable, and
    // reachable through the direct map.
    Ok(unsafe { smp::install_trampoline(phys, memmap::get().frame_addr(phys >> 12)) })
}

/// The frame below 640 KiB (SIPI vectors address the first megabyte) that the memmap kept
/// out of the frame allocator for the trampoline, identity-mapped (executable) in the
/// kernel's tables.
fn reserve_trampoline_frame() -> Result<u64, &'static str> {
    let pfn = memmap::get()
        .low_frame
        .ok_or("no usable frame below 640 KiB for the AP trampoline")?;
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    paging::map_page(pfn << 12, pfn, flags)
        .map_err(|_| "cannot identity-map the AP trampoline (the address is in use)")?;
    Ok(pfn << 12)
}
