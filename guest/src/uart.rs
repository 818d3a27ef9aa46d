//! The 16550 UART on COM1 (xv6 uart.c): initialisation and polled output.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::x86::{inb, outb};

/// Is there a UART (set by uartinit)?
static UART: AtomicBool = AtomicBool::new(false);

/// COM1's first register.
pub const COM1: u16 = 0x3F8;
/// Line status register offset; bit 5 = transmit holding register empty.
const LSR: u16 = 5;
const LSR_THRE: u8 = 0x20;

/// Sets up COM1: 9600 baud, 8 data bits, 1 stop bit, no parity, receive interrupts on
/// (xv6 `uartinit`). Returns false if there is no UART.
pub fn uartinit() -> bool {
    outb(COM1 + 2, 0); // FIFOs off
    outb(COM1 + 3, 0x80); // unlock divisor
    outb(COM1, (115_200u32 / 9600) as u8);
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 0x03); // lock divisor, 8 data bits
    outb(COM1 + 4, 0);
    outb(COM1 + 1, 0x01); // enable receive interrupts
    if inb(COM1 + LSR) == 0xFF {
        return false;
    }
    UART.store(true, Ordering::Relaxed);
    // Acknowledge pre-existing interrupt conditions.
    let _ = inb(COM1 + 2);
    let _ = inb(COM1);
    true
}

/// Writes one byte, waiting a bounded time for the transmitter (xv6 `uartputc`).
pub fn uartputc(c: u8) {
    if !UART.load(Ordering::Relaxed) {
        return;
    }
    for _ in 0..128 {
        if inb(COM1 + LSR) & LSR_THRE != 0 {
            break;
        }
    }
    outb(COM1, c);
}
