//! The serial console: COM1 through `uart_16550`, behind a `spin` lock.
//!
//! Everything the kernel says goes here: `print!`/`println!` for protocol lines that tests
//! parse, and the `log` macros (`log::info!`, ...) for human messages with a level tag.
//! Printing masks interrupts while the lock is held so that a handler that prints can never
//! deadlock against the code it interrupted.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::{Mutex, MutexGuard};
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

/// Which CPU holds [`SERIAL`] ([`this_cpu`]'s answer), 0 if none: the last words of a fault
/// or panic break the lock only if their own CPU was interrupted holding it.
static OWNER: AtomicU64 = AtomicU64::new(0);

/// This CPU, as the console tells CPUs apart: its GS base (the address of its record in
/// `arch::cpu_local`, distinct per CPU; 0 on the one CPU that runs before it is set), made
/// non-zero. Read directly rather than through `arch`, which sits above the console.
fn this_cpu() -> u64 {
    x86_64::registers::model_specific::GsBase::read().as_u64() | 1
}

/// The console, locked and marked as this CPU's.
fn lock_serial() -> Owned {
    let guard = SERIAL.lock();
    OWNER.store(this_cpu(), Ordering::Relaxed);
    Owned(guard)
}

/// The locked console; dropping it clears the owner, then unlocks.
struct Owned(MutexGuard<'static, Uart16550Tty<PioBackend>>);

impl Drop for Owned {
    fn drop(&mut self) {
        OWNER.store(0, Ordering::Relaxed);
    }
}

/// Programs the UART (8-N-1, FIFO on, interrupts off) and installs the `log` logger.
/// Call once, first thing at boot; printing before this still works on QEMU.
pub fn init(max_level: log::LevelFilter) {
    // QEMU's UART needs no real configuration, so a failed init is not fatal: output still works.
    let _ = lock_serial().0.inner_mut().init(Config::default());
    static LOGGER: SerialLogger = SerialLogger;
    // `set_logger` fails only if a logger is already set, which is harmless.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(max_level);
}

/// Writes formatted text to the console. Used by `print!` and `println!`.
pub fn write_fmt(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        // Formatting errors cannot happen on a serial port; ignore the Result.
        let _ = lock_serial().0.write_fmt(args);
    });
}

/// How long the last words wait for another CPU to finish printing before a failing path
/// breaks the lock (spin-loop rounds: some tens of milliseconds).
const WAIT_ROUNDS: u64 = 20_000_000;

/// The console for a path that ends the machine. Breaks the lock if this CPU holds it (it
/// was interrupted mid-print and will never finish); if another CPU holds it, waits for it,
/// and only if `failing` and the wait runs out, breaks it too.
fn lock_for_last_words(failing: bool) -> Owned {
    let me = this_cpu();
    for _ in 0..WAIT_ROUNDS {
        if let Some(guard) = SERIAL.try_lock() {
            OWNER.store(me, Ordering::Relaxed);
            return Owned(guard);
        }
        if OWNER.load(Ordering::Relaxed) == me {
            break;
        }
        core::hint::spin_loop();
    }
    if OWNER.load(Ordering::Relaxed) == me || failing {
        // SAFETY: the machine ends after these words. Either this CPU holds the lock and was
        // interrupted (or panicked) while printing, so it will never release it; or, on a
        // failing path only, another CPU held it for the whole wait and may be stuck. At
        // worst two writers interleave bytes, which beats a silent hang.
        unsafe { SERIAL.force_unlock() };
    }
    lock_serial()
}

/// Last-resort output for the panic and fatal fault paths: waits a moment for another CPU
/// that is printing, and breaks the lock rather than hang forever.
pub fn emergency_write_fmt(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = lock_for_last_words(true).0.write_fmt(args);
    });
}

/// Output from a fault handler on a path that ends the machine as expected (a test that
/// expects the fault): breaks the lock only if this CPU was interrupted holding it, and
/// otherwise waits for the CPU that is printing to finish.
pub fn fault_path_write_fmt(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = lock_for_last_words(false).0.write_fmt(args);
    });
}

#[cfg(feature = "ktest")]
mod ktests {
    use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

    use crate::arch::{smp, tsc};

    /// The expected-fault path's output waits for another CPU that holds the console (the
    /// test holds it on CPU 1 through the same lock the console uses), rather than break in.
    fn the_expected_fault_path_waits_for_a_cpu_that_is_printing() {
        let (held, released) = (AtomicBool::new(false), AtomicBool::new(false));
        // 0: not written; 1: written after the release; 2: written while CPU 1 held it.
        let outcome = AtomicU8::new(0);
        smp::run_on_all_cpus(&|cpu| match cpu {
            1 => {
                let guard = super::lock_serial();
                held.store(true, Ordering::SeqCst);
                let until = tsc::start() + tsc::hz() / 20;
                while tsc::start() < until {
                    core::hint::spin_loop();
                }
                released.store(true, Ordering::SeqCst);
                drop(guard);
            }
            0 => {
                while !held.load(Ordering::SeqCst) {
                    core::hint::spin_loop();
                }
                super::fault_path_write_fmt(format_args!("  (written once CPU 1 let go)\n"));
                let after = released.load(Ordering::SeqCst);
                outcome.store(if after { 1 } else { 2 }, Ordering::SeqCst);
            }
            _ => {}
        });
        assert_eq!(
            outcome.load(Ordering::SeqCst),
            1,
            "the expected-fault path wrote while another CPU held the console"
        );
    }

    crate::ktests! {
        the_expected_fault_path_waits_for_a_cpu_that_is_printing,
    }
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
