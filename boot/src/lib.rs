//! Host side of zsos: turns the kernel ELF into bootable BIOS/UEFI disk images, passes the
//! kernel its command line through the boot ramdisk, runs QEMU under a timeout, streams the
//! serial console, and reads the kernel's verdict from QEMU's exit status.
//!
//! Used by the `boot` binary (what `cargo run` starts) and by the integration tests in
//! `tests/`, which boot the kernel's test suite and report each kernel test on its own.

#![warn(missing_docs)]

pub mod bench;
pub mod image;
pub mod ktest;
pub mod pictures;
pub mod qemu;
pub mod viewer;

use std::path::Path;

/// The target directory of the tree this crate was built in: `$CARGO_TARGET_DIR` if set, or
/// the workspace's `target/`. The runner and the grader write their files under it.
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let boot = Path::new(env!("CARGO_MANIFEST_DIR"));
            boot.parent().unwrap_or(boot).join("target")
        })
}

/// The kernel ELF, built for `x86_64-unknown-none` by cargo (artifact dependency).
pub fn kernel_elf() -> &'static Path {
    Path::new(env!("CARGO_BIN_FILE_KERNEL_kernel"))
}

/// Virtual address the kernel is loaded at; must equal `KERNEL_BASE` in `kernel/src/main.rs`.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// The first line the kernel prints; everything before it is firmware and bootloader output.
pub const KERNEL_BANNER: &str = "zsos: kernel started";
