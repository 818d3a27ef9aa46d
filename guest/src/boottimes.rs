//! Boot timestamps for the VMM (docs/abi.md, "Boot timestamps"): `entry` stores the TSC at
//! the kernel's first instruction at physical BOOT_TIMES; [`first_user`] stores it again,
//! once, when the first process is about to run its first user instruction. The VMM reads
//! both after the run, so measuring boot costs no VM exit.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::memlayout::{PhysAddr, P2V};
use crate::x86::rdtsc;
use xv6_abi::layout::BOOT_TIMES;

/// Set once the second timestamp is written.
static DONE: AtomicBool = AtomicBool::new(false);

/// Records "first user instruction" the first time it is called (from forkret, right
/// before trapret's iret into user mode).
pub fn first_user() {
    if DONE.swap(true, Ordering::Relaxed) {
        return;
    }
    let at = P2V(PhysAddr(BOOT_TIMES + 8)).0 as *mut u64;
    // SAFETY: BOOT_TIMES is in low memory below EXTMEM, mapped writable at P2V by kmap
    // row 1 and reserved for these two words (docs/abi.md); nothing else uses them.
    unsafe { at.write_volatile(rdtsc()) };
}
