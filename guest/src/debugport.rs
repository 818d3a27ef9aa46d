//! The VMM's debug device (vmm/src/layout.rs `ports`): exit with a status, report a panic,
//! ask the VMM to cross-check the current page tables from outside (pgdump), hand it bulk
//! data (export) and have it snapshot its VM-exit counters (mark). docs/abi.md.

use crate::x86::{halt_forever, inl, outl};

pub use xv6_abi::ports::{
    EXIT as EXIT_PORT, EXPORT as EXPORT_PORT, EXPORT_LEN as EXPORT_LEN_PORT, MARK as MARK_PORT,
    PANIC as PANIC_PORT, PGDUMP as PGDUMP_PORT,
};
/// What a pgdump `in` reads when the VMM did not walk (pgdump not enabled, or no VMM).
pub const PGDUMP_NOT_WALKED: u32 = 0xFFFF_FFFF;

/// Ends the VM with `status`. If the write ever returns (no such device), halts forever.
pub fn exit(status: u8) -> ! {
    outl(EXIT_PORT, u32::from(status));
    halt_forever()
}

/// Tells the VMM the kernel panicked; `report_pa` is the guest-physical address of the
/// panic report (xv6-abi `panic`).
pub fn panic_notify(report_pa: u32) {
    outl(PANIC_PORT, report_pa);
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

/// Bytes the VMM's export stream can still take (an `in32` of the export-length port).
pub fn export_room() -> u32 {
    inl(EXPORT_LEN_PORT)
}

/// Has the VMM snapshot its VM-exit counters under mark `n`.
pub fn mark(n: u32) {
    outl(MARK_PORT, n);
}
