//! Interrupt masking as a guard that nests: interrupts stay off until the last guard alive
//! on the CPU is dropped, whatever order guards are dropped in, and then come back on only if
//! they were on before the first.

use x86_64::instructions::interrupts;

use super::cpu_local;

/// Interrupts are off on this CPU for as long as this or any other guard made on the CPU
/// lives. Not `Send`: it belongs to the CPU that made it. Only once the CPU's record exists
/// (`cpu_local::init_this_cpu`).
pub struct InterruptsOff {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl InterruptsOff {
    /// Masks interrupts, counting this guard on the CPU.
    pub fn new() -> Self {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        cpu_local::irq_guard_enter(were_enabled);
        InterruptsOff {
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Default for InterruptsOff {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for InterruptsOff {
    fn drop(&mut self) {
        if cpu_local::irq_guard_leave() {
            interrupts::enable();
        }
    }
}
