//! Deliberate probes of the address space, for programs that show or test what the
//! hardware and the kernel do with bad accesses: a user page fault kills the process (status
//! 139), an invalid opcode 132, a divide error 136 (docs/abi.md).
//!
//! The accesses are inline assembly, so the compiler neither folds nor removes them and no
//! Rust object is read through an invalid reference.

/// xv6's PGSIZE.
const PGSIZE: usize = crate::PGSIZE;

/// Reads the byte at virtual address `addr` — or dies trying, if the page is not a user page.
pub fn peek(addr: usize) -> u8 {
    let v: u8;
    // SAFETY: a one-byte load into a register: it touches no Rust object; if the address is
    // not readable the kernel kills the process, which is the point.
    unsafe {
        core::arch::asm!("mov {v}, byte ptr [{a}]", a = in(reg) addr, v = out(reg_byte) v,
                         options(nostack, readonly, preserves_flags));
    }
    v
}

/// Writes `v` to the byte at virtual address `addr` — or dies trying.
///
/// # Safety
/// `addr` must not hold anything Rust code relies on (or the caller must expect the process
/// to be killed before it runs on).
pub unsafe fn poke(addr: usize, v: u8) {
    // SAFETY: the caller vouches for the address (see above).
    unsafe {
        core::arch::asm!("mov byte ptr [{a}], {v}", a = in(reg) addr, v = in(reg_byte) v,
                         options(nostack, preserves_flags));
    }
}

/// Executes `ud2` (invalid opcode): the kernel kills the process with 132.
pub fn invalid_opcode() -> ! {
    // SAFETY: ud2 raises #UD and never falls through.
    unsafe { core::arch::asm!("ud2", options(noreturn, nostack)) }
}

/// Divides by zero (`div` by a zero register): the kernel kills the process with 136.
pub fn divide_error() -> ! {
    // SAFETY: `div ecx` with ecx = 0 raises #DE; the loop after it is never reached.
    unsafe {
        core::arch::asm!(
            "xor edx, edx",
            "mov eax, 1",
            "xor ecx, ecx",
            "div ecx",
            "2:",
            "jmp 2b",
            options(noreturn, nostack)
        );
    }
}

/// The base of the page the stack pointer is in: xv6's one stack page, as long as the
/// program keeps its stack under 4 KiB (exec gives it no more).
pub fn stack_page() -> usize {
    let here = 0u8;
    core::hint::black_box(&here) as *const u8 as usize & !(PGSIZE - 1)
}

/// The guard page: the page right below the stack page, present but with PTE_U cleared
/// (`clearpteu`), so a stack overflow faults instead of running into the data below it.
pub fn guard_page() -> usize {
    stack_page() - PGSIZE
}
