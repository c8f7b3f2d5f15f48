//! Interrupt masking as a guard.

use x86_64::instructions::interrupts;

/// Interrupts are off on this CPU for as long as this lives; the previous state comes back
/// when it is dropped. Not `Send`: it belongs to the CPU that made it.
pub struct InterruptsOff {
    were_enabled: bool,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl InterruptsOff {
    /// Masks interrupts, remembering whether they were on.
    pub fn new() -> Self {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        InterruptsOff {
            were_enabled,
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
        if self.were_enabled {
            interrupts::enable();
        }
    }
}
