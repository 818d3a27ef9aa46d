//! The VMM's debug device (vmm/src/layout.rs `ports`): exit with a status, report a panic,
//! and ask the VMM to cross-check the current page tables from outside (pgdump).

use crate::x86::{halt_forever, inl, outb, outl};

/// `out` a 32-bit status: the VM ends with that status.
pub const EXIT_PORT: u16 = 0x501;
/// Any `out`: the kernel panicked (its message is on the console); the VMM exits 125.
pub const PANIC_PORT: u16 = 0x502;
/// 32-bit `out`: walk the page tables from CR3 and compare them with KVM_TRANSLATE;
/// 32-bit `in`: that walk's mismatch count, or `PGDUMP_NOT_WALKED`.
pub const PGDUMP_PORT: u16 = 0x503;
/// What a pgdump `in` reads when the VMM did not walk (pgdump not enabled, or no VMM).
pub const PGDUMP_NOT_WALKED: u32 = 0xFFFF_FFFF;

/// Ends the VM with `status`. If the write ever returns (no such device), halts forever.
pub fn exit(status: u8) -> ! {
    outl(EXIT_PORT, u32::from(status));
    halt_forever()
}

/// Tells the VMM the kernel panicked.
pub fn panic_notify() {
    outb(PANIC_PORT, 1);
}

/// Asks the VMM to walk the current page tables; returns the number of translate
/// mismatches, or `None` if it did not walk.
#[must_use]
pub fn pgdump() -> Option<u32> {
    outl(PGDUMP_PORT, 0);
    match inl(PGDUMP_PORT) {
        PGDUMP_NOT_WALKED => None,
        n => Some(n),
    }
}
