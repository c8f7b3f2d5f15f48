//! Whole-machine tests: each boots the kernel once and judges how the boot ends.

use boot::image::Firmware;
use boot::qemu::Ending;
use zsos_tests::{assert_console_has, boot_with_args, boot_with_ramdisk, console};

#[test]
fn bios_boot_runs_the_demo_and_reports_success() {
    let run = boot_with_args(Firmware::Bios, &["run"]);
    assert_eq!(run.ending, Ending::KernelSuccess, "{}", console(&run));
    assert_console_has(&run, boot::KERNEL_BANNER);
    assert_console_has(&run, "zsos: demo done");
}

#[test]
fn unknown_mode_is_refused_by_the_kernel_with_the_list_of_modes() {
    let run = boot_with_args(Firmware::Uefi, &["frobnicate"]);
    assert_eq!(run.ending, Ending::KernelFailure, "{}", console(&run));
    assert_console_has(&run, "unknown mode 'frobnicate'");
    assert_console_has(&run, "test ");
}

#[test]
fn page_fault_outside_a_test_prints_a_diagnostic_and_fails() {
    let run = boot_with_args(Firmware::Uefi, &["crash", "page-fault"]);
    assert_eq!(run.ending, Ending::KernelFailure, "{}", console(&run));
    assert_console_has(&run, "FATAL: page fault accessing 0x18 at RIP 0x");
    assert_console_has(&run, "page not present, read");
}

#[test]
fn a_ramdisk_that_is_not_a_command_line_is_refused() {
    let run = boot_with_ramdisk(Firmware::Uefi, b"this is not zsos\n".to_vec());
    assert_eq!(run.ending, Ending::KernelFailure, "{}", console(&run));
    assert_console_has(&run, "cannot read the command line from the ramdisk");
}
