//! The VMM's debug device (vmm/src/layout.rs `ports`): exit with a status, report a panic,
//! ask the VMM to cross-check the current page tables from outside (pgdump), hand it bulk
//! data (export) and have it snapshot its VM-exit counters (mark). docs/abi.md.

use crate::x86::{halt_forever, inl, outb, outl};

/// `out` a 32-bit status: the VM ends with that status.
pub const EXIT_PORT: u16 = 0x501;
/// Any `out`: the kernel panicked (its message is on the console); the VMM exits 125.
pub const PANIC_PORT: u16 = 0x502;
/// 32-bit `out`: walk the page tables from CR3 and compare them with KVM_TRANSLATE;
/// 32-bit `in`: that walk's mismatch count, or `PGDUMP_NOT_WALKED`.
pub const PGDUMP_PORT: u16 = 0x503;
/// 32-bit `out`: the VMM appends the bytes at this guest-physical address (as many as the
/// last EXPORT_LEN_PORT write said) to the run's export stream.
pub const EXPORT_PORT: u16 = 0x505;
/// 32-bit `out`: the length of the next export.
pub const EXPORT_LEN_PORT: u16 = 0x506;
/// 32-bit `out` n: the VMM snapshots its VM-exit counters (1: measurement start, 2: end).
pub const MARK_PORT: u16 = 0x507;
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

/// Appends the `len` bytes at guest-physical `pa` to the VMM's export stream.
pub fn export(pa: u32, len: u32) {
    outl(EXPORT_LEN_PORT, len);
    outl(EXPORT_PORT, pa);
}

/// Has the VMM snapshot its VM-exit counters under mark `n`.
pub fn mark(n: u32) {
    outl(MARK_PORT, n);
}
