//! The 16550 UARTs (xv6 uart.c): COM1 carries user fd 0/1 (the host's stdin and stdout), COM2
//! the kernel log and user fd 2 (the host's stderr). Initialisation, polled output and polled
//! input; the kernel never takes UART interrupts (the PICs are masked, the IOAPIC untouched).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::x86::{inb, outb};

pub use xv6_abi::ports::{COM1, COM2};

/// Line status register offset; bit 0 = received data ready, bit 5 = transmit holding
/// register empty.
const LSR: u16 = 5;
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;

/// Is there a UART at COM1 / COM2 (set by uartinit)?
static PRESENT: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

fn present(port: u16) -> &'static AtomicBool {
    &PRESENT[usize::from(port == COM2)]
}

/// Sets up the UART at `port` (COM1 or COM2): 9600 baud, 8 data bits, 1 stop bit, no
/// parity (xv6 `uartinit`). Returns false if there is no UART there.
pub fn uartinit(port: u16) -> bool {
    debug_assert!(port == COM1 || port == COM2);
    outb(port + 2, 0); // FIFOs off
    outb(port + 3, 0x80); // unlock divisor
    outb(port, (115_200u32 / 9600) as u8);
    outb(port + 1, 0);
    outb(port + 3, 0x03); // lock divisor, 8 data bits
    outb(port + 4, 0);
    outb(port + 1, 0x01); // receive interrupts on (they stay masked at the PIC/IOAPIC)
    if inb(port + LSR) == 0xFF {
        return false;
    }
    present(port).store(true, Ordering::Relaxed);
    // Acknowledge pre-existing interrupt conditions.
    let _ = inb(port + 2);
    let _ = inb(port);
    true
}

/// Whether uartinit found a UART at `port`.
#[must_use]
pub fn uart_present(port: u16) -> bool {
    present(port).load(Ordering::Relaxed)
}

/// Writes one byte to the UART at `port`, waiting a bounded time for the transmitter
/// (xv6 `uartputc`).
pub fn uartputc(port: u16, c: u8) {
    if !uart_present(port) {
        return;
    }
    for _ in 0..128 {
        if inb(port + LSR) & LSR_THRE != 0 {
            break;
        }
    }
    outb(port, c);
}

/// Reads one received byte from the UART at `port`, if one is waiting (xv6 `uartgetc`).
#[must_use]
pub fn uartgetc(port: u16) -> Option<u8> {
    if !uart_present(port) || inb(port + LSR) & LSR_DR == 0 {
        return None;
    }
    Some(inb(port))
}
