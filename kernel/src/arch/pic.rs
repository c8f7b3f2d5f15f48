//! The legacy 8259 interrupt controllers. zsos does not use them, but firmware may leave
//! them routing timer and device interrupts onto CPU exception vectors (IRQ 0 would arrive
//! as vector 8, a "double fault"). At boot they are remapped above the exceptions (vectors
//! 32..47) and every line is masked, so enabling interrupts is safe.

use x86_64::instructions::port::Port;

/// Remaps both PICs to vectors 32..47 and masks every line.
pub fn remap_and_mask() {
    let mut cmd1 = Port::<u8>::new(0x20);
    let mut data1 = Port::<u8>::new(0x21);
    let mut cmd2 = Port::<u8>::new(0xa0);
    let mut data2 = Port::<u8>::new(0xa1);
    // SAFETY: ports 0x20/0x21/0xa0/0xa1 are the two 8259 PICs, used by nothing else in zsos;
    // the sequence is the standard ICW1..ICW4 initialisation followed by a full mask.
    unsafe {
        cmd1.write(0x11); // ICW1: initialise, expect ICW4
        cmd2.write(0x11);
        data1.write(32); // ICW2: vector offsets
        data2.write(40);
        data1.write(4); // ICW3: slave on IRQ2
        data2.write(2);
        data1.write(0x01); // ICW4: 8086 mode
        data2.write(0x01);
        data1.write(0xff); // mask everything
        data2.write(0xff);
    }
}
