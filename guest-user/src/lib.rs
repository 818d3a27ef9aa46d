//! ulib, the user library of xv6's user programs (xv6 ulib.c, usys.S, printf.c, umalloc.c
//! in Rust): the program entry `_start`, the system calls, console printing, the arguments
//! and a heap for `alloc`.
//!
//! A program is a `#![no_std] #![no_main]` binary in `src/bin/` that defines
//! `#[no_mangle] pub extern "C" fn main(argc: i32, argv: *const *const u8) -> i32`; `_start`
//! calls it and exits with its result. [`args`] gives the arguments as `CStr`s; `extern
//! crate alloc;` gives `Vec`, `String`, `format!`.

#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod args;
pub mod print;
pub mod probe;
pub mod syscall;

mod heap;
mod mem;
mod rt;

pub use args::{arg, arg_number, arg_str, argc, args};
pub use syscall::*;

/// xv6's PGSIZE (xv6-abi).
pub const PGSIZE: usize = xv6_abi::mmu::PGSIZE as usize;
/// xv6's KERNBASE: the first virtual address of the kernel half (xv6-abi).
pub const KERNBASE: usize = xv6_abi::layout::KERNBASE as usize;
