//! hello: prints `hello, world` and exits 0.

#![no_std]
#![no_main]

use ulib::println;

/// The program.
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    println!("hello, world");
    0
}
