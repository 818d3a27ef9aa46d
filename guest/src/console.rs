//! The console (xv6 console.c): the kernel log, formatted output as `cprint!`/`cprintln!`,
//! goes to COM2 (the VMM sends it to the host's stderr; COM1 when there is no COM2); user
//! programs write fd 1 to COM1 (host stdout) and fd 2 to COM2, and read fd 0 from COM1's
//! receive side through the input buffer that `consoleintr` fills.
//! Lines go out as they are, `\n` without `\r`: the VMM's host terminal handles that.

use core::fmt;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use crate::inputbuf::InputBuf;
use crate::spinlock::Spinlock;
use crate::uart::{uart_present, uartgetc, uartinit, uartputc, COM1, COM2};

/// Serialises output to the log port (kernel log and user fd 2).
static CONS: Spinlock<()> = Spinlock::new("console", ());

/// Bytes received on COM1, not yet read (xv6 `input`).
pub static INPUT: Spinlock<InputBuf> = Spinlock::new("input", InputBuf::new());

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

/// Sets up the console devices: COM1 for user I/O, COM2 for the log.
pub fn consoleinit() {
    uartinit(COM1);
    if uartinit(COM2) {
        LOG_PORT.store(COM2, Ordering::Relaxed);
    }
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

/// Writes a user program's bytes for file descriptor 1 (COM1) or 2 (the log port)
/// (xv6 `consolewrite`). Other descriptors are not the console: false.
pub fn consolewrite(fd: u32, bytes: &[u8]) -> bool {
    match fd {
        1 => bytes.iter().for_each(|&c| uartputc(COM1, c)),
        2 => {
            let _guard = CONS.lock();
            let port = LOG_PORT.load(Ordering::Relaxed);
            bytes.iter().for_each(|&c| uartputc(port, c));
        }
        _ => return false,
    }
    true
}

/// Moves the bytes waiting in COM1's receiver into the input buffer, as long as it has room
/// (xv6 `consoleintr`, polled from the timer interrupt and by `read`). Returns whether any
/// byte arrived.
pub fn consoleintr() -> bool {
    if !uart_present(COM1) {
        return false;
    }
    let mut input = INPUT.lock();
    let mut got = false;
    while !input.is_full() {
        match uartgetc(COM1) {
            Some(c) => {
                input.push(c);
                got = true;
            }
            None => break,
        }
    }
    got
}

/// Processes asleep in read() waiting for console input. The timer polls COM1 only while
/// there are some, so a program that does not read stdin costs no port I/O (no VM exit) per
/// tick — pfbench's measured loop, for one, sees none.
pub static READERS_WAITING: AtomicU32 = AtomicU32::new(0);

/// In32: 1 when the host's stdin is at its end and every byte of it went to COM1.
pub use xv6_abi::ports::STDIN_STATE as STDIN_STATE_PORT;

/// Has the host's stdin ended, with every byte delivered to COM1's receiver? (Bytes may
/// still wait in the UART or the input buffer.)
#[must_use]
pub fn input_ended() -> bool {
    crate::x86::inl(STDIN_STATE_PORT) == 1
}

/// Reads console input without waiting (xv6 `consoleread`'s inside; the caller sleeps on
/// `Chan::Input` and counts itself in READERS_WAITING meanwhile): `Some(n)` with n > 0 bytes
/// copied into `dst`, `Some(0)` at the end of input (the VMM's stdin is exhausted and every
/// byte was read), `None` if nothing is there yet.
pub fn consoleread(dst: &mut [u8]) -> Option<usize> {
    consoleintr();
    let got = INPUT.lock().pop_into(dst);
    if got > 0 {
        return Some(got);
    }
    if input_ended() {
        // Bytes may still have arrived between the poll and the check.
        consoleintr();
        let got = INPUT.lock().pop_into(dst);
        return Some(got);
    }
    None
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
