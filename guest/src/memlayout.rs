//! The memory layout (xv6's memlayout.h): where the kernel half starts, where the kernel is
//! linked, where devices live, and the V2P/P2V conversions between kernel virtual and physical
//! addresses, with typed addresses so the two cannot be mixed up.
//!
//! PHYSTOP is not a constant here: the VMM reports RAM `[0, PHYSTOP)` in the PVH memory map
//! (see `pvh::phystop_from_memmap`) and the kernel records it once, early in boot.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use xv6_abi::mmu::PGSIZE;

/// Start of extended memory: the kernel is loaded here (shared with the VMM: xv6-abi).
pub const EXTMEM: u32 = xv6_abi::layout::EXTMEM;
/// First kernel virtual address: `[KERNBASE, KERNBASE + PHYSTOP)` maps `[0, PHYSTOP)`.
pub const KERNBASE: u32 = xv6_abi::layout::KERNBASE;
/// Address where the kernel is linked (`KERNBASE + EXTMEM`; kernel.ld).
pub const KERNLINK: u32 = xv6_abi::layout::KERNLINK;
/// Other devices (LAPIC, IOAPIC, ...) are at high addresses, mapped one to one.
pub const DEVSPACE: u32 = xv6_abi::layout::DEVSPACE;
/// The smallest PHYSTOP the kernel accepts: the first 4 MiB hold the kernel and the
/// page-table pages kinit1 provides, the rest must leave room for processes.
pub const PHYSTOP_MIN: u32 = 8 << 20;

/// A physical address (32-bit: the kernel uses no PAE). Other kernels call it `PAddr`.
#[doc(alias = "PAddr")]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u32);

/// A kernel virtual address: in the kernel half, at or above KERNBASE (kmap's rows, P2V of
/// physical memory, the kernel's own symbols).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct KVAddr(pub u32);

/// A user virtual address: what a process uses, below KERNBASE when valid. The `…uvm`
/// functions, copyout and the page-fault path take these; the kernel never dereferences
/// one directly (it goes through the process's page directory to a `KVAddr`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UVAddr(pub u32);

/// A linear (virtual) address of either half, for the paging arithmetic (PDX, PTX) that
/// does not care which.
pub trait Linear: Copy {
    /// The 32-bit linear address.
    fn linear(self) -> u32;
}

impl Linear for KVAddr {
    fn linear(self) -> u32 {
        self.0
    }
}

impl Linear for UVAddr {
    fn linear(self) -> u32 {
        self.0
    }
}

impl KVAddr {
    /// The address as a pointer (valid only where the kernel maps it).
    #[must_use]
    pub const fn as_ptr<T>(self) -> *mut T {
        self.0 as usize as *mut T
    }
}

impl UVAddr {
    /// The start of the page holding this address.
    #[must_use]
    pub const fn page(self) -> UVAddr {
        UVAddr(self.0 & !(PGSIZE - 1))
    }

    /// The offset inside its page.
    #[must_use]
    pub const fn offset(self) -> u32 {
        self.0 & (PGSIZE - 1)
    }

    /// `self + n`, `None` past 4 GiB.
    #[must_use]
    pub const fn checked_add(self, n: u32) -> Option<UVAddr> {
        match self.0.checked_add(n) {
            Some(v) => Some(UVAddr(v)),
            None => None,
        }
    }

    /// Whether the address is in the user half (below KERNBASE).
    #[must_use]
    pub const fn is_user(self) -> bool {
        self.0 < KERNBASE
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PA {:#010x}", self.0)
    }
}

impl fmt::Debug for KVAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KVA {:#010x}", self.0)
    }
}

impl fmt::Debug for UVAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UVA {:#010x}", self.0)
    }
}

impl fmt::LowerHex for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for KVAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for UVAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Kernel virtual address to physical address (only for addresses in the kernel half).
#[allow(non_snake_case)]
#[must_use]
pub const fn V2P(va: KVAddr) -> PhysAddr {
    assert!(va.0 >= KERNBASE, "V2P of a user address");
    PhysAddr(va.0 - KERNBASE)
}

/// Physical address to kernel virtual address (only for the first 2 GiB of physical memory).
#[allow(non_snake_case)]
#[must_use]
pub const fn P2V(pa: PhysAddr) -> KVAddr {
    assert!(pa.0 < KERNBASE, "P2V of an address above 2 GiB");
    KVAddr(pa.0 + KERNBASE)
}

/// P2V that also accepts the one-past-the-end address 2 GiB (for range ends such as
/// P2V(PHYSTOP)); `None` if the result does not fit in 32 bits.
#[must_use]
pub const fn p2v_end(pa: PhysAddr) -> Option<KVAddr> {
    match pa.0.checked_add(KERNBASE) {
        Some(v) => Some(KVAddr(v)),
        None => None,
    }
}

/// The top of usable physical memory, recorded once by `set_phystop` during boot.
static PHYSTOP: AtomicU32 = AtomicU32::new(0);

/// Records PHYSTOP (boot, before kinit1).
pub fn set_phystop(pa: PhysAddr) {
    PHYSTOP.store(pa.0, Ordering::Relaxed);
}

/// PHYSTOP: the end of the RAM the kernel manages (`[0, PHYSTOP)`).
#[doc(alias = "PHYSTOP")]
#[must_use]
pub fn phystop() -> PhysAddr {
    PhysAddr(PHYSTOP.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xv6_constants() {
        assert_eq!(KERNLINK, 0x8010_0000);
        assert_eq!(KERNBASE >> 22, 512);
        assert_eq!(DEVSPACE, 0xFE00_0000);
    }

    #[test]
    fn v2p_p2v_round_trip() {
        assert_eq!(V2P(KVAddr(0x8010_0000)), PhysAddr(0x10_0000));
        assert_eq!(P2V(PhysAddr(0xE00_0000)), KVAddr(0x8E00_0000));
        assert_eq!(V2P(P2V(PhysAddr(0x1234_5678))), PhysAddr(0x1234_5678));
    }

    #[test]
    #[should_panic(expected = "V2P of a user address")]
    fn v2p_rejects_user_addresses() {
        let _ = V2P(KVAddr(0x1000));
    }

    #[test]
    fn p2v_end_handles_two_gib() {
        assert_eq!(p2v_end(PhysAddr(0x8000_0000)), None);
        assert_eq!(p2v_end(PhysAddr(0x7FFF_F000)), Some(KVAddr(0xFFFF_F000)));
        assert_eq!(p2v_end(PhysAddr(0x7E00_0000)), Some(KVAddr(DEVSPACE)));
    }

    #[test]
    fn hex_formatting_is_xv6_style() {
        assert_eq!(format!("{:#010x}", PhysAddr(0xE00_0000)), "0x0e000000");
    }
}
