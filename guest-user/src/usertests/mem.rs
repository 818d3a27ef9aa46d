//! Helpers for memory the tests get straight from sbrk (never the heap's): filling,
//! checking, and taking all the memory there is.

use crate::check::Why;
use ulib::probe::{peek, poke};
use ulib::{sbrk, PGSIZE};

/// The current break (xv6's `sz`).
pub fn brk() -> usize {
    sbrk(0) as usize
}

/// Writes `v` to `len` bytes from `addr`.
///
/// # Safety
/// The range must be memory this test got from sbrk (no Rust object lives there), or the
/// test must expect to be killed.
pub unsafe fn fill(addr: usize, len: usize, v: u8) {
    for a in addr..addr + len {
        // SAFETY: see the function's contract.
        unsafe { poke(a, v) };
    }
}

/// The offset of the first of `len` bytes from `addr` that is not `v`.
pub fn first_not(addr: usize, len: usize, v: u8) -> Option<usize> {
    (0..len).find(|&i| peek(addr + i) != v)
}

/// Copies `s` to `addr`.
///
/// # Safety
/// As [`fill`].
pub unsafe fn put(addr: usize, s: &[u8]) {
    for (i, &b) in s.iter().enumerate() {
        // SAFETY: see the function's contract.
        unsafe { poke(addr + i, b) };
    }
}

/// Grows the process until sbrk fails — 1 MiB at a time, then page by page — and checks
/// that every failed sbrk left the break alone. Returns the bytes obtained.
pub fn hog() -> Result<usize, Why> {
    let start = brk();
    let mut step = 256 * PGSIZE;
    loop {
        let before = brk();
        if sbrk(step as i32) == -1 {
            let after = brk();
            ensure!(
                after == before,
                "a failed sbrk({step}) moved the break {before:#x} -> {after:#x}"
            );
            if step == PGSIZE {
                return Ok(after - start);
            }
            step = PGSIZE;
        }
    }
}
