//! Shared helpers for the host-side integration tests that boot zsos under QEMU.

use std::time::Duration;

use boot::image::{self, Firmware};
use boot::qemu::{self, Machine, Run};

/// The machine the kernel test suite boots on: UEFI (the faster boot here), defaults
/// otherwise, and a timeout generous enough for a loaded 2-core CI machine.
pub fn suite_machine() -> Machine {
    Machine {
        firmware: Firmware::Uefi,
        timeout: Duration::from_secs(300),
        ..Machine::default()
    }
}

/// Boots the kernel once with the given command line and returns the whole run.
pub fn boot_with_args(firmware: Firmware, args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let ramdisk = image::encode_ramdisk(&args, &[]).expect("valid kernel arguments");
    boot_with_ramdisk(firmware, ramdisk)
}

/// Boots the kernel once with a raw ramdisk (for tests of the kernel's argument parsing).
pub fn boot_with_ramdisk(firmware: Firmware, ramdisk: Vec<u8>) -> Run {
    let machine = Machine {
        firmware,
        timeout: Duration::from_secs(180),
        ..Machine::default()
    };
    let img = image::build(boot::kernel_elf(), ramdisk, firmware).expect("disk image builds");
    qemu::run(&machine, img.path(), &mut |_| {}).expect("QEMU starts")
}

/// The run's console, for assertion messages.
pub fn console(run: &Run) -> String {
    run.lines.join("\n")
}

/// Asserts that some console line contains `needle`.
pub fn assert_console_has(run: &Run, needle: &str) {
    assert!(
        run.lines.iter().any(|l| l.contains(needle)),
        "console has no line containing {needle:?}; it was:\n{}",
        console(run)
    );
}
