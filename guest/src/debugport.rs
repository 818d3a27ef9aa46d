//! The VMM's debug device (vmm/src/layout.rs `ports`): exit with a status, report a panic,
//! ask the VMM to cross-check the current page tables from outside (pgdump), hand it bulk
//! data (export) and have it snapshot its VM-exit counters (mark). docs/abi.md.

use core::sync::atomic::{compiler_fence, Ordering};

use crate::memlayout::{KVAddr, V2P};
use crate::spinlock::Spinlock;
use crate::x86::{halt_forever, inl, outl};
use xv6_abi::usersym::{NAME_LEN, TEXT_LEN};

pub use xv6_abi::ports::{
    EXIT as EXIT_PORT, EXPORT as EXPORT_PORT, EXPORT_LEN as EXPORT_LEN_PORT, MARK as MARK_PORT,
    PANIC as PANIC_PORT, PGDUMP as PGDUMP_PORT,
};
/// What a pgdump `in` reads when the VMM did not walk (pgdump not enabled, or no VMM).
pub const PGDUMP_NOT_WALKED: u32 = 0xFFFF_FFFF;

/// A user-symbol request block (xv6-abi `usersym`).
#[repr(C, align(16))]
struct SymbolRequest {
    eip: u32,
    name: [u8; NAME_LEN],
    text: [u8; TEXT_LEN],
}

static SYMBOL_REQUEST: Spinlock<SymbolRequest> = Spinlock::new(
    "usersym",
    SymbolRequest {
        eip: 0,
        name: [0; NAME_LEN],
        text: [0; TEXT_LEN],
    },
);

/// Calls `f` with the VMM's name for user address `eip` in the program called `name`
/// (`main+0x24`: the program's own symbol table), or with "" when it knows none.
pub fn with_user_symbol<R>(name: &[u8; NAME_LEN], eip: u32, f: impl FnOnce(&str) -> R) -> R {
    let mut req = SYMBOL_REQUEST.lock();
    req.eip = eip;
    req.name = *name;
    req.text = [0; TEXT_LEN];
    compiler_fence(Ordering::SeqCst);
    outl(
        xv6_abi::ports::USER_SYMBOL,
        V2P(KVAddr(core::ptr::from_ref(&*req) as u32)).0,
    );
    compiler_fence(Ordering::SeqCst);
    // SAFETY: `req.text` is ours, valid and aligned; the VMM wrote it during the `out`
    // (volatile: a write the compiler cannot see).
    let text = unsafe { core::ptr::read_volatile(&req.text) };
    let len = text.iter().position(|&b| b == 0).unwrap_or(0);
    f(core::str::from_utf8(&text[..len]).unwrap_or(""))
}

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
