//! The kernel's verdict, delivered through QEMU's `isa-debug-exit` device.
//!
//! Writing `v` to port 0xf4 makes QEMU exit with status `(v << 1) | 1`. Neither of our codes
//! can produce 0 or 1, and 1 is what QEMU itself returns on its own errors, so the runner can
//! tell "the kernel said success" (33) from everything else.

use x86_64::instructions::port::Port;

/// I/O port of the `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The two verdicts the kernel can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything the kernel was asked to do succeeded: QEMU exits with 33.
    Success = 0x10,
    /// Something failed: QEMU exits with 35.
    Failure = 0x11,
}

/// Ends the machine with the given verdict. Never returns; if the device is missing (the
/// kernel runs outside our runner), the CPU halts instead.
pub fn exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the isa-debug-exit device the runner always configures; writing
    // to it has no effect other than ending QEMU. Without the device the write is ignored.
    unsafe { port.write(code as u32) };
    super::halt_forever()
}
