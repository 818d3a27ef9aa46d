//! Addresses the linker script (kernel.ld) defines: `data`, the first byte of writable data
//! (page aligned: kmap maps [KERNLINK, data) read-only), and `end`, the first byte after the
//! kernel's bss, where the free list starts.

use crate::memlayout::KVAddr;

extern "C" {
    #[link_name = "data"]
    static DATA: u8;
    #[link_name = "end"]
    static END: u8;
}

/// The symbol `data`: start of the kernel's writable data.
#[must_use]
pub fn data() -> KVAddr {
    KVAddr(&raw const DATA as u32)
}

/// The symbol `end`: first address after the kernel image (data + bss).
#[must_use]
pub fn end() -> KVAddr {
    KVAddr(&raw const END as u32)
}
