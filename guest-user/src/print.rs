//! Formatted output to file descriptors (xv6 printf.c): `print!`/`println!` to fd 1,
//! `eprintln!` to fd 2.

use core::fmt;

/// A writer to a file descriptor.
pub struct Fd(pub i32);

impl fmt::Write for Fd {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if crate::syscall::write(self.0, s.as_bytes()) < 0 {
            return Err(fmt::Error);
        }
        Ok(())
    }
}

/// Writes formatted text to `fd` (used by the macros).
pub fn fprint(fd: i32, args: fmt::Arguments<'_>) {
    let _ = fmt::write(&mut Fd(fd), args);
}

/// Prints to standard output.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::print::fprint(1, format_args!($($arg)*)) };
}

/// Prints a line to standard output.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::print::fprint(1, format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints a line to standard error.
#[macro_export]
macro_rules! eprintln {
    ($($arg:tt)*) => { $crate::print::fprint(2, format_args!("{}\n", format_args!($($arg)*))) };
}
