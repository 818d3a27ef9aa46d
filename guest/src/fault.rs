//! What a user fault means (trap.c's reporting, made pure): the name of each processor
//! exception, the exit status a fault gives (128 + the Unix signal), why a page fault
//! happened, and the one log line that says so. Tested on the host.

use core::fmt;

use crate::memlayout::UVAddr;
use crate::mmu::{PteFlags, PTE_P, PTE_U, PTE_W};
use crate::traps::{PfErr, T_DIVIDE, T_ILLOP};

/// The name of a processor exception (vectors 0..32), as the Intel manual gives it.
#[must_use]
pub fn exception_name(trapno: u32) -> &'static str {
    const NAMES: [&str; 22] = [
        "divide error",
        "debug",
        "non-maskable interrupt",
        "breakpoint",
        "overflow",
        "bound range exceeded",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack fault",
        "general protection",
        "page fault",
        "reserved",
        "x87 floating-point error",
        "alignment check",
        "machine check",
        "SIMD floating-point error",
        "virtualization exception",
        "control protection",
    ];
    NAMES
        .get(trapno as usize)
        .copied()
        .unwrap_or("unexpected trap")
}

/// The exit status of a process killed by exception `trapno` in user mode: 128 + the Unix
/// signal a shell would report (SIGFPE 8 for a divide error, SIGILL 4 for an invalid
/// opcode, SIGSEGV 11 for everything else: bad memory accesses above all).
#[must_use]
pub fn fault_status(trapno: u32) -> i32 {
    match trapno {
        T_DIVIDE => 128 + 8,
        T_ILLOP => 128 + 4,
        _ => xv6_abi::status::SEGV as i32,
    }
}

/// Why a user page fault happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultCause {
    /// The page below the stack page: mapped, but not for user mode (clearpteu).
    GuardPage,
    /// An address in the kernel half.
    KernelAddress,
    /// Nothing mapped there for the process (not present, or at/above its size).
    Unmapped,
    /// A write to a page mapped read-only (the text of a program linked with separate
    /// segments).
    WriteToReadOnly,
    /// The first touch of a lazy sbrk page, or the first write to a copy-on-write page, with
    /// no free page left to map there.
    OutOfMemory,
}

impl fmt::Display for FaultCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultCause::GuardPage => "guard page",
            FaultCause::KernelAddress => "kernel address",
            FaultCause::Unmapped => "unmapped",
            FaultCause::WriteToReadOnly => "write to read-only",
            FaultCause::OutOfMemory => "out of memory",
        })
    }
}

/// Classifies a user page fault at `va` (CR2) with error code `err`, in a process of size
/// `sz` whose PTE for `va` has the flags `pte` (`None`: no page table there).
#[must_use]
pub fn pagefault_cause(va: UVAddr, sz: u32, pte: Option<PteFlags>, err: PfErr) -> FaultCause {
    if !va.is_user() {
        return FaultCause::KernelAddress;
    }
    let flags = match pte {
        Some(f) if f.contains(PTE_P) && va.0 < sz => f,
        _ => return FaultCause::Unmapped,
    };
    if !flags.contains(PTE_U) {
        FaultCause::GuardPage
    } else if err.contains(PfErr::W) && !flags.contains(PTE_W) {
        FaultCause::WriteToReadOnly
    } else {
        FaultCause::Unmapped
    }
}

/// The one log line for a process killed by a trap, e.g.
/// `pid 3 (sbrktest): page fault at 0x00003ff0 (guard page) eip 0x000012a4 (main+0x24) — killed`.
pub struct FaultLine<'a> {
    pub pid: i32,
    pub name: &'a str,
    pub trapno: u32,
    pub eip: u32,
    /// The faulting address and its cause, for page faults.
    pub pf: Option<(UVAddr, FaultCause)>,
    /// The symbol at `eip` in the program's own symbols (the VMM's answer), or "".
    pub sym: &'a str,
}

impl fmt::Display for FaultLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} ({}): ", self.pid, self.name)?;
        match self.pf {
            Some((va, cause)) => write!(f, "page fault at {:#010x} ({cause})", va.0)?,
            None => f.write_str(exception_name(self.trapno))?,
        }
        write!(f, " eip {:#010x}", self.eip)?;
        if !self.sym.is_empty() {
            write!(f, " ({})", self.sym)?;
        }
        f.write_str(" \u{2014} killed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traps::{T_GPFLT, T_PGFLT};

    #[test]
    fn exit_statuses() {
        assert_eq!(fault_status(T_PGFLT), 139);
        assert_eq!(fault_status(T_GPFLT), 139);
        assert_eq!(fault_status(T_ILLOP), 132);
        assert_eq!(fault_status(T_DIVIDE), 136);
        assert_eq!(fault_status(3), 139);
    }

    #[test]
    fn exception_names() {
        assert_eq!(exception_name(0), "divide error");
        assert_eq!(exception_name(6), "invalid opcode");
        assert_eq!(exception_name(13), "general protection");
        assert_eq!(exception_name(14), "page fault");
        assert_eq!(exception_name(40), "unexpected trap");
    }

    #[test]
    fn pagefault_causes() {
        let sz = 0x5000;
        let (urw, ur, k) = (PTE_P | PTE_U | PTE_W, PTE_P | PTE_U, PTE_P | PTE_W);
        // The guard page: present, not user, below sz.
        assert_eq!(
            pagefault_cause(UVAddr(0x3ff0), sz, Some(k), PfErr::from_bits_retain(0x4)),
            FaultCause::GuardPage
        );
        assert_eq!(
            pagefault_cause(
                UVAddr(0x8000_0000),
                sz,
                Some(k),
                PfErr::from_bits_retain(0x5)
            ),
            FaultCause::KernelAddress
        );
        assert_eq!(
            pagefault_cause(UVAddr(0xFFFF_FFFC), sz, None, PfErr::from_bits_retain(0x4)),
            FaultCause::KernelAddress
        );
        assert_eq!(
            pagefault_cause(UVAddr(0x5000), sz, None, PfErr::from_bits_retain(0x4)),
            FaultCause::Unmapped
        );
        assert_eq!(
            pagefault_cause(
                UVAddr(0x1000),
                sz,
                Some(PteFlags::empty()),
                PfErr::from_bits_retain(0x6)
            ),
            FaultCause::Unmapped
        );
        // At or above sz, even if something stale were mapped.
        assert_eq!(
            pagefault_cause(UVAddr(0x6000), sz, Some(urw), PfErr::from_bits_retain(0x6)),
            FaultCause::Unmapped
        );
        assert_eq!(
            pagefault_cause(UVAddr(0x1000), sz, Some(ur), PfErr::from_bits_retain(0x7)),
            FaultCause::WriteToReadOnly
        );
        // A read of a present user page cannot fault for the page's sake.
        assert_eq!(
            pagefault_cause(UVAddr(0x1000), sz, Some(ur), PfErr::from_bits_retain(0x5)),
            FaultCause::Unmapped
        );
    }

    #[test]
    fn fault_lines() {
        let line = |pid, name, trapno, eip, pf, sym| {
            FaultLine {
                pid,
                name,
                trapno,
                eip,
                pf,
                sym,
            }
            .to_string()
        };
        let guard = Some((UVAddr(0x3ff0), FaultCause::GuardPage));
        assert_eq!(
            line(3, "sbrktest", T_PGFLT, 0x12a4, guard, "main+0x24"),
            "pid 3 (sbrktest): page fault at 0x00003ff0 (guard page) eip 0x000012a4 (main+0x24) \u{2014} killed"
        );
        let oom = Some((UVAddr(0x0100_0000), FaultCause::OutOfMemory));
        assert_eq!(
            line(5, "pfbench", T_PGFLT, 0x42, oom, ""),
            "pid 5 (pfbench): page fault at 0x01000000 (out of memory) eip 0x00000042 \u{2014} killed"
        );
        assert_eq!(
            line(4, "t", T_ILLOP, 0x10, None, ""),
            "pid 4 (t): invalid opcode eip 0x00000010 \u{2014} killed"
        );
    }
}
