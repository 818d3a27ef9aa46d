//! The kernel's log (xv6-riscv printf.c; xv6-x86 keeps `cprintf` in console.c): formatted
//! output as `cprint!`/`cprintln!`, polled out of a 16550 — COM2 (the VMM sends it to the
//! host's stderr), COM1 when the machine has no COM2. It needs nothing but the UART, so the
//! early boot and a panic can always print. Lines go out as they are, `\n` without `\r`.

use core::fmt;
use core::sync::atomic::{AtomicU16, Ordering};

use crate::spinlock::Spinlock;
use crate::uart::{uartinit, uartputc, COM1, COM2};

/// Serialises the log.
static LOG: Spinlock<()> = Spinlock::new("log", ());

/// The port of the kernel log: COM2, or COM1 when the machine has no COM2.
static LOG_PORT: AtomicU16 = AtomicU16::new(COM1);

/// A writer straight to the kernel log's UART.
pub struct Uart;

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let port = LOG_PORT.load(Ordering::Relaxed);
        s.bytes().for_each(|c| uartputc(port, c));
        Ok(())
    }
}

/// Sets up the log's UART: COM2 if there is one, else COM1.
pub fn loginit() {
    uartinit(COM1);
    if uartinit(COM2) {
        LOG_PORT.store(COM2, Ordering::Relaxed);
    }
}

/// Prints formatted text under the log lock (used by the macros).
#[doc(alias = "cprintf")]
pub fn print(args: fmt::Arguments<'_>) {
    let _guard = LOG.lock();
    let _ = fmt::write(&mut Uart, args);
}

/// Prints formatted text without the lock: for panic, which may interrupt a holder.
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    let _ = fmt::write(&mut Uart, args);
}

/// Prints to the kernel log.
#[macro_export]
macro_rules! cprint {
    ($($arg:tt)*) => { $crate::printf::print(format_args!($($arg)*)) };
}

/// Prints a line to the kernel log.
#[macro_export]
macro_rules! cprintln {
    ($($arg:tt)*) => { $crate::printf::print(format_args!("{}\n", format_args!($($arg)*))) };
}
