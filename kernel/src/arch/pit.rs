//! The legacy programmable interval timer (8254), used only as a known clock to calibrate
//! the TSC. Channel 2 is used because its gate and output are readable through port 0x61
//! and it raises no interrupt.

use x86_64::instructions::port::Port;

/// PIT input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

const CHANNEL2_DATA: u16 = 0x42;
const COMMAND: u16 = 0x43;
const SPEAKER_GATE: u16 = 0x61;

/// Counts TSC ticks during `ms` milliseconds of PIT time and returns the TSC rate in Hz.
pub fn measure_tsc_hz(ms: u64) -> u64 {
    let count = (PIT_HZ * ms / 1000) as u16;
    let mut gate = Port::<u8>::new(SPEAKER_GATE);
    let mut command = Port::<u8>::new(COMMAND);
    let mut data = Port::<u8>::new(CHANNEL2_DATA);
    // SAFETY: ports 0x42, 0x43 and 0x61 belong to the PIT and the speaker gate, which no
    // other code in zsos uses; the sequence below only programs channel 2 (no interrupt).
    unsafe {
        // Gate high (bit 0), speaker off (bit 1).
        let g = gate.read();
        gate.write((g & !0x02) | 0x01);
        // Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
        command.write(0b1011_0000);
        data.write((count & 0xff) as u8);
        data.write((count >> 8) as u8);
        let t0 = super::tsc::start();
        // Output (bit 5 of port 0x61) goes high when the count reaches zero.
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let t1 = super::tsc::stop();
        (t1 - t0) * 1000 / ms
    }
}
