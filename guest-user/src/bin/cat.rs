//! cat: copies each file named by its arguments (or, with none, its standard input) to its
//! standard output, as xv6's cat does; exits 0, or 1 if a file cannot be opened or a read or
//! write fails.

#![no_std]
#![no_main]

use ulib::{args, close, eprintln, open, read, write, O_RDONLY};

/// Copies `fd` to stdout until its end; false on an error.
fn copy(fd: i32) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let n = read(fd, &mut buf);
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
    if argc <= 1 {
        return if copy(0) { 0 } else { 1 };
    }
    for name in args().skip(1) {
        let fd = open(name, O_RDONLY);
        if fd < 0 {
            eprintln!("cat: cannot open {}", name.to_str().unwrap_or("?"));
            return 1;
        }
        let ok = copy(fd);
        close(fd);
        if !ok {
            return 1;
        }
    }
    0
}
