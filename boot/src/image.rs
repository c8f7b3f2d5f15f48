//! Disk images: the kernel plus a ramdisk carrying its command line, for BIOS or UEFI.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bootloader::{BootConfig, DiskImageBuilder};
use bootloader_boot_config::LevelFilter;

/// The firmware QEMU boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// Legacy BIOS (SeaBIOS, built into QEMU) with an MBR image.
    Bios,
    /// UEFI (OVMF from Debian's `ovmf` package) with a GPT image.
    Uefi,
}

/// First line of the ramdisk; the kernel refuses anything else (see `kernel/src/args.rs`).
pub const ARGS_MAGIC_LINE: &str = "ZSOS-ARGS 1";

/// Why a command line cannot be passed to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadArgument(pub String);

impl std::fmt::Display for BadArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Encodes the kernel's command line (and an optional payload such as a trace file) as the
/// ramdisk the kernel parses: the magic line, one argument per line, an empty line, payload.
pub fn encode_ramdisk(args: &[String], payload: &[u8]) -> Result<Vec<u8>, BadArgument> {
    if args.len() > 32 {
        return Err(BadArgument(format!(
            "too many kernel arguments ({}; at most 32)",
            args.len()
        )));
    }
    let mut out = Vec::with_capacity(64 + payload.len());
    out.extend_from_slice(ARGS_MAGIC_LINE.as_bytes());
    out.push(b'\n');
    for arg in args {
        if arg.is_empty() || arg.contains('\n') {
            return Err(BadArgument(format!(
                "kernel argument {arg:?} is empty or contains a newline"
            )));
        }
        out.extend_from_slice(arg.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(payload);
    Ok(out)
}

/// A disk image on the host's temporary directory, deleted when dropped.
pub struct DiskImage {
    path: PathBuf,
}

impl DiskImage {
    /// Where the image is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DiskImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Builds a bootable image of `kernel` with `ramdisk` for the given firmware.
pub fn build(kernel: &Path, ramdisk: Vec<u8>, firmware: Firmware) -> io::Result<DiskImage> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir();
    let stem = format!("zsos-{}-{n}", std::process::id());
    let path = dir.join(format!(
        "{stem}.{}",
        if firmware == Firmware::Bios {
            "mbr"
        } else {
            "gpt"
        }
    ));

    let ramdisk_path = dir.join(format!("{stem}.ramdisk"));
    std::fs::write(&ramdisk_path, ramdisk)?;
    let mut builder = DiskImageBuilder::new(kernel.to_path_buf());
    builder.set_ramdisk(ramdisk_path.clone());
    // Keep the bootloader quiet: no framebuffer text (slow under TCG), and on the serial
    // console only its warnings and errors, so the kernel's output is what one reads.
    let mut config = BootConfig::default();
    config.frame_buffer_logging = false;
    config.serial_logging = true;
    config.log_level = LevelFilter::Warn;
    builder.set_boot_config(&config);
    let result = match firmware {
        Firmware::Bios => builder.create_bios_image(&path),
        Firmware::Uefi => builder.create_uefi_image(&path),
    };
    let _ = std::fs::remove_file(&ramdisk_path);
    result.map_err(|e| {
        io::Error::other(format!("cannot build the {firmware:?} disk image: {e:#}"))
    })?;
    Ok(DiskImage { path })
}
