//! Command-line test hooks: `selftest=panic`, `selftest=exit:N`, `selftest=pagefault`,
//! `selftest=emulation`, `selftest=kstack` and `selftest=spin` make the kernel fail (or never
//! finish) on purpose after `boot ok`, so the integration tests can exercise the VMM's failure
//! paths on a real VM. cmdline.rs parses them (`SelfTest`); this file runs them.

use crate::cmdline::SelfTest;
use crate::memlayout::{KVAddr, DEVSPACE, KERNBASE};
use crate::{debugport, x86};

/// Runs the self test the command line asked for (kmain, after `boot ok`, before the IDT is
/// loaded: so that `selftest=pagefault` triple-faults). Returns only for `SelfTest::None`.
/// `selftest=panic` panics at the caller's location (kmain's line, as the crash tests expect).
#[track_caller]
pub fn run(t: SelfTest) {
    match t {
        // Acted on in startothers, before this point (with one CPU: nothing to do).
        SelfTest::None | SelfTest::ApStart => {}
        SelfTest::Exit(n) => debugport::exit(n),
        SelfTest::Panic => panic!("selftest"),
        SelfTest::Spin => loop {
            core::hint::spin_loop();
        },
        SelfTest::PageFault => pagefault(),
        SelfTest::KStack => kstack(),
        SelfTest::Emulation => {
            x86::fld_from(DEVSPACE);
            panic!("selftest=emulation: an x87 load from MMIO was emulated");
        }
    }
}

/// `selftest=pagefault`: reads a user address, which the kernel page directory does not map.
fn pagefault() -> ! {
    let user = KVAddr(0x1000_0000);
    // SAFETY: deliberately reads an address the kernel page directory does not map: with no
    // IDT the fault becomes a triple fault and the VM ends (the point of the test); the read
    // never completes.
    let v = unsafe { core::ptr::read_volatile(user.as_ptr::<u32>()) };
    panic!(
        "selftest=pagefault: read {:#x} at {:#010x} did not fault",
        v, user.0
    );
}

/// The top of the stack `selftest=kstack` overflows: the bottom 20 KiB of the kernel half
/// (P2V of physical `[0, 0x5000)`: the real-mode area and the dead boot GDT, below the boot
/// timestamps at 0x5000). Below KERNBASE the kernel page directory maps nothing.
const KSTACK_TOP: u32 = KERNBASE + xv6_abi::layout::BOOT_TIMES;

/// `selftest=kstack`: loads the IDT (its #DF task gate included), then recurses without bound
/// on a stack that ends at KERNBASE. The first push below KERNBASE page-faults, the CPU cannot
/// push the page fault's frame on that stack either, and raises a double fault: the
/// double-fault task (trap.rs) reports it as a panic. Never returns.
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
extern "C" fn recurse_forever(depth: u32) -> ! {
    let n = recurse(depth);
    panic!("selftest=kstack: the recursion ended at depth {}", n)
}

/// One level of the recursion: a frame with a buffer, then the next level, then work on the
/// result so that the call is not a tail call.
#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let pad = core::hint::black_box([depth; 8]);
    if depth == u32::MAX {
        return 0;
    }
    let below = recurse(core::hint::black_box(depth + 1));
    below.wrapping_add(pad[depth as usize % 8])
}
