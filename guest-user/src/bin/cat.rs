//! cat: copies each file named by its arguments (or, with none, its standard input) to its
//! standard output, as xv6's cat does; exits 0, or 1 if a file cannot be opened or a read or
//! write fails. Its 16 KiB buffer (on the heap: the stack is one page) keeps the console's
//! VM exits near one per page written.

#![no_std]
#![no_main]

extern crate alloc;

use ulib::{args, close, eprintln, open, read, write, O_RDONLY};

/// Bytes moved per read.
const BUF: usize = 16 << 10;

/// Copies `fd` to stdout until its end through `buf`; false on an error.
fn copy(fd: i32, buf: &mut [u8]) -> bool {
    loop {
        let n = read(fd, buf);
        if n == 0 {
            return true;
        }
        if n < 0 {
            eprintln!("cat: read failed");
            return false;
        }
        let mut rest = &buf[..n as usize];
        while !rest.is_empty() {
            let w = write(1, rest);
            if w <= 0 {
                eprintln!("cat: write failed");
                return false;
            }
            rest = &rest[w as usize..];
        }
    }
}

/// The program.
#[no_mangle]
pub extern "C" fn main(argc: i32, _argv: *const *const u8) -> i32 {
    let mut buf = alloc::vec![0u8; BUF];
    if argc <= 1 {
        return if copy(0, &mut buf) { 0 } else { 1 };
    }
    for name in args().skip(1) {
        let fd = open(name, O_RDONLY);
        if fd < 0 {
            eprintln!("cat: cannot open {}", name.to_str().unwrap_or("?"));
            return 1;
        }
        let ok = copy(fd, &mut buf);
        close(fd);
        if !ok {
            return 1;
        }
    }
    0
}
