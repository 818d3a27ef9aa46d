//! The console: formatted output to the UART (xv6's cprintf, as `cprint!`/`cprintln!`).
//! Lines go out as they are, `\n` without `\r`: the VMM's host terminal handles that.

use core::fmt;

use crate::spinlock::Spinlock;

/// Serialises console output.
static CONS: Spinlock<()> = Spinlock::new("console", ());

/// A writer straight to the UART.
pub struct Uart;

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(crate::uart::uartputc);
        Ok(())
    }
}

/// Sets up the console device.
pub fn consoleinit() {
    crate::uart::uartinit();
}

/// Prints formatted text under the console lock (used by the macros).
#[doc(alias = "cprintf")]
pub fn print(args: fmt::Arguments<'_>) {
    let _guard = CONS.lock();
    let _ = fmt::write(&mut Uart, args);
}

/// Prints formatted text without the lock: for panic, which may interrupt a holder.
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    let _ = fmt::write(&mut Uart, args);
}

/// Prints to the console.
#[macro_export]
macro_rules! cprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! cprintln {
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
