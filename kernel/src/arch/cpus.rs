//! The machine's CPUs, as ACPI's MADT lists them (through the `acpi` crate, reading the
//! tables in the direct map), and the boot CPU's local APIC id (CPUID). Starting the other
//! CPUs (INIT-SIPI-SIPI) is not done yet: every CPU but the boot CPU stays waiting for its SIPI.

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

/// One CPU from the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// Its local APIC id (the address INIT and SIPI go to).
    pub apic_id: u32,
    /// ACPI's processor UID.
    pub uid: u32,
    /// True for the CPU running this code.
    pub is_boot: bool,
    /// False if the firmware marked it unusable.
    pub usable: bool,
}

/// Why the CPUs could not be found.
#[derive(Debug)]
pub enum CpusError {
    /// The bootloader passed no RSDP address.
    NoRsdp,
    /// The tables did not parse.
    Acpi(acpi::AcpiError),
    /// The MADT describes no APIC processors.
    NoProcessors,
}

impl core::fmt::Display for CpusError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CpusError::NoRsdp => write!(f, "the bootloader passed no ACPI RSDP"),
            CpusError::Acpi(e) => write!(f, "ACPI tables: {e:?}"),
            CpusError::NoProcessors => write!(f, "the MADT lists no APIC processors"),
        }
    }
}

/// Reads ACPI tables through the direct map (all of physical memory is mapped there, so a
/// "mapping" is an address computation and unmapping does nothing).
#[derive(Clone, Copy)]
struct DirectMap {
    offset: u64,
}

impl AcpiHandler for DirectMap {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virt = (self.offset + phys as u64) as *mut T;
        // SAFETY: the direct map covers all physical memory at `offset`, so `virt` shows the
        // `size` bytes at `phys`; the caller (the acpi crate) promises a valid `T` lies there.
        unsafe {
            PhysicalMapping::new(
                phys,
                NonNull::new(virt).expect("the direct map is not at address 0"),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The boot CPU's initial local APIC id (CPUID leaf 1, EBX bits 31..24).
pub fn boot_apic_id() -> u32 {
    core::arch::x86_64::__cpuid(1).ebx >> 24
}

/// The CPUs the MADT lists, the boot CPU first.
pub fn discover(rsdp: Option<u64>, phys_offset: u64) -> Result<Vec<Cpu>, CpusError> {
    let rsdp = rsdp.ok_or(CpusError::NoRsdp)?;
    // SAFETY: the bootloader found the RSDP at this physical address; the handler reads it
    // through the direct map.
    let tables = unsafe {
        AcpiTables::from_rsdp(
            DirectMap {
                offset: phys_offset,
            },
            rsdp as usize,
        )
    }
    .map_err(CpusError::Acpi)?;
    let info = tables.platform_info().map_err(CpusError::Acpi)?;
    let procs = info.processor_info.ok_or(CpusError::NoProcessors)?;
    let boot = boot_apic_id();
    let mut cpus = Vec::new();
    for (p, is_boot) in core::iter::once((&procs.boot_processor, true))
        .chain(procs.application_processors.iter().map(|p| (p, false)))
    {
        cpus.push(Cpu {
            apic_id: p.local_apic_id,
            uid: p.processor_uid,
            is_boot: is_boot && p.local_apic_id == boot,
            usable: p.state != acpi::platform::ProcessorState::Disabled,
        });
    }
    Ok(cpus)
}
