//! The panic handler: prints where and why (and on which CPU), shows the panic to the hook
//! registered with [`set_panic_hook`] (the kernel test runner fails the running test there),
//! and ends the machine with a failing verdict.

use spin::Once;

use super::cpu_local;
use super::qemu::{self, ExitCode};

/// Called after the panic message is printed; may end the machine itself.
static PANIC_HOOK: Once<fn()> = Once::new();

/// Registers the function every panic calls after printing its message. The first
/// registration stays.
pub fn set_panic_hook(hook: fn()) {
    PANIC_HOOK.call_once(|| hook);
}

/// " on CPU n", or nothing before the CPU has an index.
struct OnCpu(Option<usize>);

impl core::fmt::Display for OnCpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(cpu) => write!(f, " on CPU {cpu}"),
            None => Ok(()),
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(loc) => crate::console::emergency_write_fmt(format_args!(
            "\nKERNEL PANIC at {}:{}:{}{}: {}\n",
            loc.file(),
            loc.line(),
            loc.column(),
            OnCpu(cpu_local::try_index()),
            info.message()
        )),
        None => crate::console::emergency_write_fmt(format_args!(
            "\nKERNEL PANIC{}: {}\n",
            OnCpu(cpu_local::try_index()),
            info.message()
        )),
    }
    if let Some(hook) = PANIC_HOOK.get() {
        hook();
    }
    qemu::exit(ExitCode::Failure)
}
