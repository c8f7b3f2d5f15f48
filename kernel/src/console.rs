//! The serial console: COM1 through `uart_16550`, behind a `spin` lock.
//!
//! Everything the kernel says goes here: `print!`/`println!` for protocol lines that tests
//! parse, and the `log` macros (`log::info!`, ...) for human messages with a level tag.
//! Printing masks interrupts while the lock is held so that a handler that prints can never
//! deadlock against the code it interrupted.

use core::fmt::{self, Write};
use spin::Mutex;
use uart_16550::Uart16550Tty;
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

/// I/O port base of COM1 on a PC (and on QEMU's `pc`/`q35` machines).
const COM1_PORT: u16 = 0x3f8;

const fn com1() -> Uart16550<PioBackend> {
    // SAFETY: 0x3f8..0x400 is COM1 on every PC-compatible machine QEMU emulates, and this
    // static is the only code that drives that port range.
    match unsafe { Uart16550::new_port(COM1_PORT) } {
        Ok(uart) => uart,
        Err(_) => panic!("COM1 base port is valid"),
    }
}

static SERIAL: Mutex<Uart16550Tty<PioBackend>> = Mutex::new(Uart16550Tty::from_inner(com1()));

/// Programs the UART (8-N-1, FIFO on, interrupts off) and installs the `log` logger.
/// Call once, first thing at boot; printing before this still works on QEMU.
pub fn init(max_level: log::LevelFilter) {
    // QEMU's UART needs no real configuration, so a failed init is not fatal: output still works.
    let _ = SERIAL.lock().inner_mut().init(Config::default());
    static LOGGER: SerialLogger = SerialLogger;
    // `set_logger` fails only if a logger is already set, which is harmless.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(max_level);
}

/// Writes formatted text to the console. Used by `print!` and `println!`.
pub fn write_fmt(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        // Formatting errors cannot happen on a serial port; ignore the Result.
        let _ = SERIAL.lock().write_fmt(args);
    });
}

/// Last-resort output for the panic and fault paths: if the console lock is held (the
/// failing code was in the middle of printing), break it rather than hang forever.
pub fn emergency_write_fmt(args: fmt::Arguments) {
    if SERIAL.is_locked() {
        // SAFETY: we are on the way to ending the machine; the holder of the lock was
        // interrupted (or panicked) and will never release it. At worst two writers
        // interleave bytes on the console, which is preferable to a silent hang.
        unsafe { SERIAL.force_unlock() };
    }
    write_fmt(args);
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints to the serial console, with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The `log` backend: one line per record, `[LEVEL] message`.
struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            write_fmt(format_args!("[{:<5}] {}\n", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}
