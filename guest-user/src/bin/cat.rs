//! cat: copies its standard input to its standard output until end of input; exits 0, or 1
//! if a read or write fails. Its 16 KiB buffer (on the heap: the stack is one page) keeps
//! the console's VM exits near one per page written.

#![no_std]
#![no_main]

extern crate alloc;

use ulib::{eprintln, read, write};

/// Bytes moved per read.
const BUF: usize = 16 << 10;

/// The program.
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let mut buf = alloc::vec![0u8; BUF];
    loop {
        let n = read(0, &mut buf);
        if n == 0 {
            return 0;
        }
        if n < 0 {
            eprintln!("cat: read failed");
            return 1;
        }
        let mut rest = &buf[..n as usize];
        while !rest.is_empty() {
            let w = write(1, rest);
            if w <= 0 {
                eprintln!("cat: write failed");
                return 1;
            }
            rest = &rest[w as usize..];
        }
    }
}
