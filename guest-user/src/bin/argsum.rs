//! argsum: exits with `ulib::args::checksum` of its arguments after argv[0], printing
//! nothing. A helper for tests of exec's argument passing: the parent computes the same
//! checksum and compares it with the exit status. Uses almost no stack, as the arguments
//! may fill most of the one stack page.

#![no_std]
#![no_main]

/// The program.
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    i32::from(ulib::args::checksum(
        ulib::args().skip(1).map(|a| a.to_bytes()),
    ))
}
