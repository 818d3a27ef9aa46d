//! echo: prints its arguments separated by spaces, then a newline; exits 0.

#![no_std]
#![no_main]

use core::fmt;
use ulib::{args, println};

/// The arguments after argv[0], joined by spaces.
struct Joined;

impl fmt::Display for Joined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in args().skip(1).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            for chunk in a.to_bytes().utf8_chunks() {
                f.write_str(chunk.valid())?;
                if !chunk.invalid().is_empty() {
                    f.write_str("\u{fffd}")?;
                }
            }
        }
        Ok(())
    }
}

/// The program.
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    println!("{}", Joined);
    0
}
