//! The kernel's mappings, xv6's `kmap[]` table: which virtual ranges of the kernel half map
//! which physical ranges with which permissions. setupkvm (vm.rs) installs exactly these rows
//! in every page directory. The table depends on the symbol `data` and on PHYSTOP, so it is
//! computed, and the xv6 check "P2V(PHYSTOP) must not run into DEVSPACE" is an error here.

use core::fmt;

use crate::memlayout::{p2v_end, KVAddr, PhysAddr, DEVSPACE, EXTMEM, KERNBASE, KERNLINK, V2P};
use crate::mmu::{PteFlags, PGSIZE, PTE_U, PTE_W};

/// One row of kmap: `[virt, virt + size)` maps `[phys_start, phys_start + size)` with `perm`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Kmap {
    pub virt: KVAddr,
    pub phys_start: PhysAddr,
    /// Bytes mapped (a multiple of PGSIZE; never 0, and `virt + size` may be exactly 4 GiB).
    pub size: u32,
    /// PTE permission bits (PTE_W, PTE_U); PTE_P is added by mappages.
    pub perm: PteFlags,
}

impl Kmap {
    /// The last virtual address of the row (inclusive; no 32-bit wrap for the DEVSPACE row).
    #[must_use]
    pub const fn last_virt(&self) -> KVAddr {
        KVAddr(self.virt.0 + (self.size - 1))
    }
}

/// Prints `0x80000000-0x800fffff -> 0x00000000 rwk` (first VA, last VA, first PA, then
/// `r`, `w` or `-`, `u` or `k`).
impl fmt::Display for Kmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#010x}-{:#010x} -> {:#010x} r{}{}",
            self.virt.0,
            self.last_virt().0,
            self.phys_start.0,
            if self.perm.contains(PTE_W) { 'w' } else { '-' },
            if self.perm.contains(PTE_U) { 'u' } else { 'k' },
        )
    }
}

/// Why the kernel's mappings cannot be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KmapError {
    /// P2V(PHYSTOP) lies above DEVSPACE (xv6 panics "PHYSTOP too high").
    PhystopTooHigh(PhysAddr),
    /// `data` is not page aligned or not inside `[KERNLINK, P2V(PHYSTOP)]`.
    BadData(KVAddr),
}

impl fmt::Display for KmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmapError::PhystopTooHigh(p) => {
                write!(f, "PHYSTOP too high: P2V({:#010x}) > DEVSPACE", p.0)
            }
            KmapError::BadData(d) => write!(f, "kmap: bad data symbol {:#010x}", d.0),
        }
    }
}

/// The four kmap rows for a kernel whose writable data starts at `data`, on a machine with
/// RAM `[0, phystop)`:
///
/// | virtual                    | physical             | perm          |
/// |----------------------------|----------------------|---------------|
/// | [KERNBASE, KERNLINK)       | [0, EXTMEM)          | W (I/O space) |
/// | [KERNLINK, data)           | [EXTMEM, V2P(data))  | read-only     |
/// | [data, P2V(PHYSTOP))       | [V2P(data), PHYSTOP) | W             |
/// | [DEVSPACE, 4 GiB)          | [DEVSPACE, 4 GiB)    | W (devices)   |
pub fn kmap(data: KVAddr, phystop: PhysAddr) -> Result<[Kmap; 4], KmapError> {
    let top = match p2v_end(phystop) {
        Some(top) if top.0 <= DEVSPACE => top,
        _ => return Err(KmapError::PhystopTooHigh(phystop)),
    };
    if !data.0.is_multiple_of(PGSIZE) || data.0 < KERNLINK || data > top {
        return Err(KmapError::BadData(data));
    }
    Ok([
        Kmap {
            virt: KVAddr(KERNBASE),
            phys_start: PhysAddr(0),
            size: EXTMEM,
            perm: PTE_W,
        },
        Kmap {
            virt: KVAddr(KERNLINK),
            phys_start: V2P(KVAddr(KERNLINK)),
            size: data.0 - KERNLINK,
            perm: PteFlags::empty(),
        },
        Kmap {
            virt: data,
            phys_start: V2P(data),
            size: top.0 - data.0,
            perm: PTE_W,
        },
        Kmap {
            virt: KVAddr(DEVSPACE),
            phys_start: PhysAddr(DEVSPACE),
            size: 0u32.wrapping_sub(DEVSPACE),
            perm: PTE_W,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xv6_default_rows() {
        let rows = kmap(KVAddr(0x8011_2000), PhysAddr(0xE00_0000)).unwrap();
        let lines: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            lines,
            [
                "0x80000000-0x800fffff -> 0x00000000 rwk",
                "0x80100000-0x80111fff -> 0x00100000 r-k",
                "0x80112000-0x8dffffff -> 0x00112000 rwk",
                "0xfe000000-0xffffffff -> 0xfe000000 rwk",
            ]
        );
        assert_eq!(rows[3].size, 0x200_0000);
        assert!(rows
            .iter()
            .all(|r| r.size % PGSIZE == 0 && !r.perm.contains(PTE_U)));
    }

    #[test]
    fn largest_phystop_ends_at_devspace() {
        let rows = kmap(KVAddr(0x8011_2000), PhysAddr(0x7E00_0000)).unwrap();
        assert_eq!(rows[2].last_virt(), KVAddr(DEVSPACE - 1));
    }

    #[test]
    fn phystop_above_devspace_is_an_error() {
        let too_high = PhysAddr(0x7E00_1000);
        assert_eq!(
            kmap(KVAddr(0x8011_2000), too_high),
            Err(KmapError::PhystopTooHigh(too_high))
        );
        // Past 2 GiB P2V would wrap around 32 bits: still an error, not a small address.
        let wraps = PhysAddr(0x9000_0000);
        assert_eq!(
            kmap(KVAddr(0x8011_2000), wraps),
            Err(KmapError::PhystopTooHigh(wraps))
        );
        assert_eq!(
            KmapError::PhystopTooHigh(too_high).to_string(),
            "PHYSTOP too high: P2V(0x7e001000) > DEVSPACE"
        );
    }

    #[test]
    fn bad_data_symbol_is_an_error() {
        let phystop = PhysAddr(0xE00_0000);
        for bad in [0x8011_2004, 0x8000_0000, 0x8E00_1000] {
            assert_eq!(
                kmap(KVAddr(bad), phystop),
                Err(KmapError::BadData(KVAddr(bad)))
            );
        }
    }
}
