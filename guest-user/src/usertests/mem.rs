//! Helpers for memory the tests get straight from sbrk (never the heap's): filling,
//! checking, taking all the memory there is, and telling lazy sbrk (`vmm run --lazy`) from
//! eager.

use crate::check::Why;
use ulib::probe::{peek, poke};
use ulib::{countfree, sbrk, PGSIZE};

/// Pages a page table maps (4 MiB).
pub const PT_PAGES: usize = 1024;

pub use ulib::sbrk_is_lazy as lazy_mode;

/// The 4 MiB region (page-directory index) of address `va`.
pub fn pdx(va: usize) -> usize {
    va >> 22
}

/// Page tables the kernel creates to map the pages at `addrs` in a process whose memory
/// below `start` (its break before it grew) is mapped: one per distinct 4 MiB region above
/// the one holding `start - 1`. `addrs` ascending.
pub fn new_tables(start: usize, addrs: impl Iterator<Item = usize>) -> usize {
    let mut last = pdx(start - 1);
    let mut n = 0;
    for a in addrs {
        if pdx(a) > last {
            last = pdx(a);
            n += 1;
        }
    }
    n
}

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

/// Free pages `hog` leaves with lazy sbrk, where only touching takes memory and a touch
/// with no page left kills.
const HOG_MARGIN: usize = 8;

/// Takes (almost) all free memory; returns the bytes obtained. Eager sbrk: grows the process
/// until sbrk fails — 1 MiB at a time, then page by page — checking that every failed sbrk
/// left the break alone. Lazy sbrk: grows once by all free pages but HOG_MARGIN (less the
/// page tables they need) and touches every one of them.
pub fn hog() -> Result<usize, Why> {
    if lazy_mode() {
        return Ok(hog_lazy());
    }
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

/// `hog` with lazy sbrk.
fn hog_lazy() -> usize {
    let free = countfree() as usize;
    let pages = free.saturating_sub(HOG_MARGIN + 1) * PT_PAGES / (PT_PAGES + 1);
    let start = brk();
    let base = start.next_multiple_of(PGSIZE);
    let grow = base - start + pages * PGSIZE;
    if sbrk(grow as i32) == -1 {
        return 0;
    }
    touch_pages(base, pages);
    grow
}

/// Writes a byte to each of `pages` pages from `base` (first touches, with lazy sbrk).
pub fn touch_pages(base: usize, pages: usize) {
    for i in 0..pages {
        // SAFETY: memory the caller got from sbrk, holding no Rust object.
        unsafe { poke(base + i * PGSIZE, 1) };
    }
}
