//! Formatted output to file descriptors (xv6 printf.c): `print!`/`println!` to fd 1,
//! `eprint!`/`eprintln!` to fd 2.
//!
//! Each macro call formats into a small buffer on the stack and writes it with as few
//! `write` calls as fit, so a short line from one process reaches the console in one piece
//! even while other processes print. Nothing allocates.

use core::fmt;

/// Bytes collected before a `write` call.
const BUF: usize = 256;

/// A buffered writer to a file descriptor.
struct Fd {
    fd: i32,
    buf: [u8; BUF],
    len: usize,
    failed: bool,
}

impl Fd {
    fn flush(&mut self) {
        if self.len > 0 && crate::syscall::write(self.fd, &self.buf[..self.len]) < 0 {
            self.failed = true;
        }
        self.len = 0;
    }
}

impl fmt::Write for Fd {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(BUF) {
            if self.len + chunk.len() > BUF {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        if self.failed {
            return Err(fmt::Error);
        }
        Ok(())
    }
}

/// Writes formatted text to `fd` (used by the macros); false if a `write` failed.
pub fn fprint(fd: i32, args: fmt::Arguments<'_>) -> bool {
    let mut w = Fd {
        fd,
        buf: [0; BUF],
        len: 0,
        failed: false,
    };
    let ok = fmt::write(&mut w, args).is_ok();
    w.flush();
    ok && !w.failed
}

/// Prints to standard output.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{ $crate::print::fprint(1, format_args!($($arg)*)); }};
}

/// Prints a line to standard output.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        $crate::print::fprint(1, format_args!("{}\n", format_args!($($arg)*)));
    }};
}

/// Prints to standard error.
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => {{ $crate::print::fprint(2, format_args!($($arg)*)); }};
}

/// Prints a line to standard error.
#[macro_export]
macro_rules! eprintln {
    () => { $crate::eprint!("\n") };
    ($($arg:tt)*) => {{
        $crate::print::fprint(2, format_args!("{}\n", format_args!($($arg)*)));
    }};
}
