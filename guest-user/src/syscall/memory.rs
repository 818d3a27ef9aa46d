//! Memory system calls: sbrk (xv6's growproc), and this project's pgdump and countfree.

use super::raw;

/// Grows the process's memory by `n` bytes (shrinks it if `n` < 0); returns the old size —
/// the old break, where new memory starts — or −1 if that is impossible (it would reach
/// KERNBASE, or memory ran out; the process is then unchanged). New memory is zeroed.
///
/// Shrinking below what the program still uses (its stack, its heap) is the caller's
/// mistake: the next access there is a page fault that kills the process.
pub fn sbrk(n: i32) -> isize {
    // SAFETY: sbrk takes no pointers; using the memory it maps is the caller's business.
    unsafe { raw::sys_sbrk(n) as isize }
}

/// Asks the VMM to walk and print this process's page tables (shown with `vmm run
/// --pgdump`); returns 0, or −1 when the VMM did not walk them.
pub fn pgdump() -> i32 {
    // SAFETY: pgdump takes no pointers.
    unsafe { raw::sys_pgdump() }
}

/// The number of pages on the kernel's free list.
pub fn countfree() -> i32 {
    // SAFETY: countfree takes no pointers.
    unsafe { raw::sys_countfree() }
}
