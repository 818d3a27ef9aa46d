//! ulib, the user library of xv6's user programs (xv6 ulib.c, usys.S, printf.c in Rust):
//! the program entry `_start`, the system call stubs, and console printing.
//!
//! A program is a `#![no_std] #![no_main]` binary in `src/bin/` that defines
//! `#[no_mangle] pub extern "C" fn main(argc: i32, argv: *const *const u8) -> i32`; `_start`
//! calls it and exits with its result.

#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod print;
pub mod syscall;

mod mem;
mod rt;

pub use syscall::*;
