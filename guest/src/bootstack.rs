//! The boot stack (xv6 entry.S's `stack`): the one page `entry` runs `kmain` on, and how much
//! of it boot used. A leaf module, so that both `entry` (which points ESP at it) and `kmain`
//! (which checks its high-water mark) depend on it, and not on each other.

use core::cell::UnsafeCell;

/// Bytes of the boot stack (xv6 KSTACKSIZE): one page.
pub const KSTACKSIZE: usize = xv6_abi::mmu::PGSIZE as usize;

/// The boot stack's memory: zeroed `.bss`, 16-byte aligned for the calls made on it.
#[repr(C, align(16))]
pub struct BootStack(UnsafeCell<[u8; KSTACKSIZE]>);

// SAFETY: only the CPU whose stack it is runs on it (through ESP); `stack_high_water` only
// reads.
unsafe impl Sync for BootStack {}

impl BootStack {
    /// A zeroed stack (the other CPUs' start on such stacks too, smp.rs).
    #[must_use]
    pub const fn new() -> BootStack {
        BootStack(UnsafeCell::new([0; KSTACKSIZE]))
    }

    /// The address just above the stack (the first ESP).
    #[must_use]
    pub fn top(&self) -> u32 {
        self.0.get() as u32 + KSTACKSIZE as u32
    }
}

impl Default for BootStack {
    fn default() -> BootStack {
        BootStack::new()
    }
}

/// The boot stack; `entry` loads ESP with its top.
pub static STACK: BootStack = BootStack::new();

/// The most boot stack used so far, in bytes: the stack starts zeroed (it is in .bss), so
/// this finds the lowest byte that is no longer zero.
#[must_use]
pub fn stack_high_water() -> usize {
    let base = STACK.0.get().cast::<u8>();
    let untouched = (0..KSTACKSIZE)
        // SAFETY: i < KSTACKSIZE, inside the stack; volatile, as the compiler cannot know
        // who wrote it.
        .take_while(|&i| unsafe { base.add(i).read_volatile() } == 0)
        .count();
    KSTACKSIZE - untouched
}
