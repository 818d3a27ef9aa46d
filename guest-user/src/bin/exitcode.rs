//! exitcode: exits with the status given as its first argument (a decimal number, default
//! 0), printing nothing. A helper for tests of exec and wait: `exitcode 42` → status 42.

#![no_std]
#![no_main]

/// The program.
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    ulib::arg(1)
        .and_then(|a| a.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
