//! Memory system calls: sbrk (xv6's growproc), and this project's pgdump and countfree; and
//! this project's calls for benchmarks: export (bulk data to the VMM), tsckhz, mark.

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

/// Hands `buf` to the VMM, which appends it to the run's export stream (docs/abi.md); 0, or
/// −1 if the kernel refused the buffer (then nothing was exported).
pub fn export(buf: &[u8]) -> i32 {
    let Ok(len) = i32::try_from(buf.len()) else {
        return -1;
    };
    // SAFETY: buf is readable for the length passed.
    unsafe { raw::sys_export(buf.as_ptr(), len) }
}

/// The TSC frequency in kHz the VMM told the kernel (0: unknown).
pub fn tsckhz() -> u32 {
    // SAFETY: tsckhz takes no pointers.
    unsafe { raw::sys_tsckhz() as u32 }
}

/// Asks the VMM to snapshot its VM-exit counters under mark `n` (1: measurement start,
/// 2: end); returns 0.
pub fn mark(n: i32) -> i32 {
    // SAFETY: mark takes no pointers.
    unsafe { raw::sys_mark(n) }
}

/// Whether the kernel's sbrk is lazy (booted with `lazy`): a fresh page costs no free page
/// until it is first touched. Leaves the break where it was.
pub fn sbrk_is_lazy() -> bool {
    let page = xv6_abi::mmu::PGSIZE as i32;
    let before = countfree();
    if sbrk(page) == -1 {
        return false;
    }
    let after = countfree();
    sbrk(-page);
    after == before
}
