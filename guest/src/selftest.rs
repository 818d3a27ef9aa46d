//! Command-line test hooks: `selftest=panic`, `selftest=exit:N`, `selftest=pagefault`,
//! `selftest=emulation`, `selftest=kstack` and `selftest=spin` make the kernel fail (or never
//! finish) on purpose after `boot ok`, so the integration tests can exercise the VMM's failure
//! paths on a real VM.

/// What to do after `boot ok`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SelfTest {
    /// Nothing: exit with status 0.
    None,
    /// panic("selftest").
    Panic,
    /// Exit with this status.
    Exit(u8),
    /// Read an address the kernel page directory does not map (no IDT: triple fault).
    PageFault,
    /// Load an x87 float from the MMIO hole: KVM's instruction emulator cannot do that MMIO
    /// access, so KVM_RUN ends with an internal error (an unexpected exit for the VMM).
    Emulation,
    /// Spin forever (for the VMM's `--timeout`).
    Spin,
    /// Unbounded kernel recursion, with the IDT loaded: the stack overflows into unmapped
    /// memory and the CPU raises a double fault (see [`kstack`]).
    KStack,
}

/// The self test the command line asks for: the last `selftest=` word wins; unknown values
/// (or an exit status outside 0..=255) are ignored.
#[must_use]
pub fn parse(cmdline: &str) -> SelfTest {
    let mut t = SelfTest::None;
    for word in cmdline.split_ascii_whitespace() {
        match word.strip_prefix("selftest=") {
            Some("panic") => t = SelfTest::Panic,
            Some("pagefault") => t = SelfTest::PageFault,
            Some("spin") => t = SelfTest::Spin,
            Some("emulation") => t = SelfTest::Emulation,
            Some("kstack") => t = SelfTest::KStack,
            Some(v) => {
                if let Some(n) = v.strip_prefix("exit:").and_then(|n| n.parse().ok()) {
                    t = SelfTest::Exit(n);
                }
            }
            None => {}
        }
    }
    t
}

/// The top of the stack `selftest=kstack` overflows: the bottom 20 KiB of the kernel half
/// (P2V of physical `[0, 0x5000)`: the real-mode area and the dead boot GDT, below the boot
/// timestamps at 0x5000). Below KERNBASE the kernel page directory maps nothing.
#[cfg(all(target_arch = "x86", not(test)))]
const KSTACK_TOP: u32 = crate::memlayout::KERNBASE + xv6_abi::layout::BOOT_TIMES;

/// `selftest=kstack`: loads the IDT (its #DF task gate included), then recurses without bound
/// on a stack that ends at KERNBASE. The first push below KERNBASE page-faults, the CPU cannot
/// push the page fault's frame on that stack either, and raises a double fault: the
/// double-fault task (trap.rs) reports it as a panic. Never returns.
#[cfg(all(target_arch = "x86", not(test)))]
pub fn kstack() -> ! {
    crate::trap::tvinit();
    crate::trap::idtinit();
    // SAFETY: the new stack is mapped, writable kernel memory nothing else uses from here on
    // (the boot data the kernel still reads is at or above 0x5000); `recurse` never returns,
    // so nothing needs the old stack back. EBP 0 ends the backtrace at its first frame.
    unsafe {
        core::arch::asm!(
            "mov esp, {top}",
            "xor ebp, ebp",
            "push 0",
            "call {f}",
            top = in(reg) KSTACK_TOP,
            f = sym recurse_forever,
            options(noreturn),
        )
    }
}

/// The bottomless recursion of `selftest=kstack`.
#[cfg(all(target_arch = "x86", not(test)))]
extern "C" fn recurse_forever(depth: u32) -> ! {
    let n = recurse(depth);
    panic!("selftest=kstack: the recursion ended at depth {}", n)
}

/// One level of the recursion: a frame with a buffer, then the next level, then work on the
/// result so that the call is not a tail call.
#[cfg(all(target_arch = "x86", not(test)))]
#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let pad = core::hint::black_box([depth; 8]);
    if depth == u32::MAX {
        return 0;
    }
    let below = recurse(core::hint::black_box(depth + 1));
    below.wrapping_add(pad[depth as usize % 8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words() {
        assert_eq!(parse("console=com1"), SelfTest::None);
        assert_eq!(parse("console=com1 selftest=panic"), SelfTest::Panic);
        assert_eq!(parse("selftest=exit:42 quiet"), SelfTest::Exit(42));
        assert_eq!(parse("selftest=exit:255"), SelfTest::Exit(255));
        assert_eq!(parse("selftest=exit:256"), SelfTest::None);
        assert_eq!(parse("selftest=pagefault"), SelfTest::PageFault);
        assert_eq!(parse("selftest=spin"), SelfTest::Spin);
        assert_eq!(parse("selftest=emulation"), SelfTest::Emulation);
        assert_eq!(parse("selftest=kstack"), SelfTest::KStack);
        assert_eq!(parse("xselftest=panic selftest=panicky"), SelfTest::None);
        assert_eq!(parse(""), SelfTest::None);
    }
}
