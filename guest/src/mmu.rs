//! The x86 MMU, as xv6's mmu.h describes it: two-level 10/10/12 paging (page directory index,
//! page table index, offset), the PTE flag bits, and the segment descriptors of the GDT.
//! Pure definitions and arithmetic only; nothing here touches the hardware.

use bitflags::bitflags;

use crate::memlayout::{Linear, PhysAddr, KERNBASE};

/// Bytes mapped by a page (shared with the VMM and user programs: xv6-abi).
pub const PGSIZE: u32 = xv6_abi::mmu::PGSIZE;
/// Directory entries per page directory.
pub const NPDENTRIES: usize = 1024;
/// PTEs per page table.
pub const NPTENTRIES: usize = 1024;
/// Offset of PTX in a linear address.
pub const PTXSHIFT: u32 = 12;
/// Offset of PDX in a linear address.
pub const PDXSHIFT: u32 = 22;

bitflags! {
    /// The flag bits of a page-directory or page-table entry (the low 12 bits; their values
    /// are xv6-abi's, which the VMM's page-table dump reads too).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
    pub struct PteFlags: u32 {
        /// Present.
        const P = xv6_abi::mmu::PTE_P;
        /// Writeable.
        const W = xv6_abi::mmu::PTE_W;
        /// User.
        const U = xv6_abi::mmu::PTE_U;
        /// Page size (4 MiB pages, in a PDE with CR4.PSE set).
        const PS = xv6_abi::mmu::PTE_PS;
        /// Copy-on-write (a bit the CPU ignores, "available to software"): the page is
        /// shared after a `cow` fork and PTE_W is off until the first write copies it.
        const COW = xv6_abi::mmu::PTE_COW;
    }
}

/// Present (xv6 `PTE_P`).
pub const PTE_P: PteFlags = PteFlags::P;
/// Writeable (xv6 `PTE_W`).
pub const PTE_W: PteFlags = PteFlags::W;
/// User (xv6 `PTE_U`).
pub const PTE_U: PteFlags = PteFlags::U;
/// Page size (xv6 `PTE_PS`).
pub const PTE_PS: PteFlags = PteFlags::PS;
/// Copy-on-write (software bit; not in xv6).
pub const PTE_COW: PteFlags = PteFlags::COW;

/// EFLAGS: interrupt enable.
pub const FL_IF: u32 = 0x0000_0200;

/// Page directory index of a virtual address.
#[allow(non_snake_case)]
#[must_use]
pub fn PDX(va: impl Linear) -> usize {
    pdx(va.linear())
}

/// PDX of a raw linear address (for constant tables).
const fn pdx(a: u32) -> usize {
    ((a >> PDXSHIFT) & 0x3FF) as usize
}

/// Page table index of a virtual address.
#[allow(non_snake_case)]
#[must_use]
pub fn PTX(va: impl Linear) -> usize {
    ((va.linear() >> PTXSHIFT) & 0x3FF) as usize
}

/// Builds a linear address from directory index, table index and offset.
#[allow(non_snake_case)]
#[must_use]
pub const fn PGADDR(d: usize, t: usize, o: u32) -> u32 {
    ((d as u32) << PDXSHIFT) | ((t as u32) << PTXSHIFT) | o
}

/// Rounds up to a page boundary (`None` past 4 GiB).
#[allow(non_snake_case)]
#[must_use]
pub const fn PGROUNDUP(a: u32) -> Option<u32> {
    match a.checked_add(PGSIZE - 1) {
        Some(x) => Some(x & !(PGSIZE - 1)),
        None => None,
    }
}

/// Rounds down to a page boundary.
#[allow(non_snake_case)]
#[must_use]
pub const fn PGROUNDDOWN(a: u32) -> u32 {
    a & !(PGSIZE - 1)
}

/// A page-directory or page-table entry: a 20-bit physical page number and 12 flag bits.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct Pte(pub u32);

impl Pte {
    /// An entry mapping the page at `pa` with `flags` (which should include PTE_P).
    #[must_use]
    pub const fn new(pa: PhysAddr, flags: PteFlags) -> Pte {
        assert!(pa.0.is_multiple_of(PGSIZE), "Pte::new: unaligned address");
        Pte(pa.0 | (flags.bits() & 0xFFF))
    }

    /// The physical address in the entry (xv6 `PTE_ADDR`).
    #[doc(alias = "PTE_ADDR")]
    #[must_use]
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 & !0xFFF)
    }

    /// The flag bits (xv6 `PTE_FLAGS`).
    #[doc(alias = "PTE_FLAGS")]
    #[must_use]
    pub const fn flags(self) -> PteFlags {
        PteFlags::from_bits_retain(self.0 & 0xFFF)
    }

    /// The same page with other flags.
    #[must_use]
    pub const fn with_flags(self, flags: PteFlags) -> Pte {
        Pte::new(self.addr(), flags)
    }

    /// PTE_P set?
    #[must_use]
    pub const fn present(self) -> bool {
        self.flags().contains(PTE_P)
    }
}

impl core::fmt::Debug for Pte {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Pte({:#010x}", self.addr().0)?;
        let names = [(PTE_P, " P"), (PTE_W, " W"), (PTE_U, " U"), (PTE_PS, " PS")];
        for (bit, name) in names.into_iter().chain([(PTE_COW, " COW")]) {
            if self.flags().contains(bit) {
                f.write_str(name)?;
            }
        }
        f.write_str(")")
    }
}

/// The boot page directory's entries (entry.rs puts them in `entrypgdir`): virtual
/// `[0, 4 MiB)` and `[KERNBASE, KERNBASE + 4 MiB)` both map physical `[0, 4 MiB)` with one
/// 4 MiB page each, so the entry code keeps running at its low address right after paging
/// is turned on and then jumps to the high half.
#[must_use]
pub const fn entrypgdir_entries() -> [Pte; NPDENTRIES] {
    let mut d = [Pte(0); NPDENTRIES];
    let big = PTE_P.union(PTE_W).union(PTE_PS);
    d[0] = Pte::new(PhysAddr(0), big);
    d[pdx(KERNBASE)] = Pte::new(PhysAddr(0), big);
    d
}

// Segments (xv6 mmu.h / vm.c seginit).

/// Kernel code segment index.
pub const SEG_KCODE: usize = 1;
/// Kernel data+stack segment index.
pub const SEG_KDATA: usize = 2;
/// User code segment index.
pub const SEG_UCODE: usize = 3;
/// User data+stack segment index.
pub const SEG_UDATA: usize = 4;
/// This process's task state segment index.
pub const SEG_TSS: usize = 5;
/// The double-fault task's state segment index (the IDT's #DF task gate names it).
pub const SEG_DFTSS: usize = 6;
/// Number of GDT entries.
pub const NSEGS: usize = 7;
/// User privilege level.
pub const DPL_USER: u32 = 3;

/// Segment type: executable.
pub const STA_X: u32 = 0x8;
/// Segment type: writeable (data segments).
pub const STA_W: u32 = 0x2;
/// Segment type: readable (code segments).
pub const STA_R: u32 = 0x2;
/// System segment type: available 32-bit TSS.
pub const STS_T32A: u32 = 0x9;

/// A segment selector for GDT entry `index` at privilege `rpl`.
#[must_use]
pub const fn selector(index: usize, rpl: u32) -> u16 {
    ((index as u16) << 3) | rpl as u16
}

/// A GDT segment descriptor, as the 64-bit value the CPU reads.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
#[repr(transparent)]
pub struct SegDesc(pub u64);

impl SegDesc {
    /// The null descriptor (also the TSS placeholder until processes exist).
    pub const NULL: SegDesc = SegDesc(0);

    /// A normal (code/data) segment with 4 KiB granularity and 32-bit default size (xv6 `SEG`).
    #[doc(alias = "SEG")]
    #[must_use]
    pub const fn seg(ty: u32, base: u32, lim: u32, dpl: u32) -> SegDesc {
        SegDesc::encode(ty, base, lim >> 12, dpl, true, true)
    }

    /// A byte-granular system segment, e.g. the TSS (xv6 `SEG16`, with s = 0).
    #[must_use]
    pub const fn system(ty: u32, base: u32, lim: u32, dpl: u32) -> SegDesc {
        SegDesc::encode(ty, base, lim, dpl, false, false)
    }

    const fn encode(ty: u32, base: u32, lim: u32, dpl: u32, s: bool, gran: bool) -> SegDesc {
        let lo = (lim & 0xFFFF) | ((base & 0xFFFF) << 16);
        let hi = ((base >> 16) & 0xFF)
            | ((ty & 0xF) << 8)
            | ((s as u32) << 12)
            | ((dpl & 3) << 13)
            | (1 << 15) // present
            | (((lim >> 16) & 0xF) << 16)
            | ((gran as u32) << 22) // D/B: 32-bit segment (only for normal segments)
            | ((gran as u32) << 23) // G: limit in 4 KiB units
            | (base & 0xFF00_0000);
        SegDesc(((hi as u64) << 32) | lo as u64)
    }
}

/// The kernel GDT of xv6's seginit: flat kernel and user code/data segments over 4 GiB, and a
/// TSS slot (a null placeholder now: the TSS is filled in when processes arrive).
#[must_use]
pub const fn kernel_gdt() -> [SegDesc; NSEGS] {
    let mut g = [SegDesc::NULL; NSEGS];
    g[SEG_KCODE] = SegDesc::seg(STA_X | STA_R, 0, 0xFFFF_FFFF, 0);
    g[SEG_KDATA] = SegDesc::seg(STA_W, 0, 0xFFFF_FFFF, 0);
    g[SEG_UCODE] = SegDesc::seg(STA_X | STA_R, 0, 0xFFFF_FFFF, DPL_USER);
    g[SEG_UDATA] = SegDesc::seg(STA_W, 0, 0xFFFF_FFFF, DPL_USER);
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memlayout::{KVAddr, UVAddr};

    #[test]
    fn pdx_ptx_split_a_linear_address() {
        let va = KVAddr(0x8010_3ABC);
        assert_eq!(PDX(va), 0x200);
        assert_eq!(PTX(va), 0x103);
        assert_eq!(PGADDR(PDX(va), PTX(va), va.0 & 0xFFF), va.0);
        assert_eq!(PDX(UVAddr(0x0040_1000)), 1);
        assert_eq!(PDX(KVAddr(0xFFFF_FFFF)), 1023);
        assert_eq!(PTX(KVAddr(0xFFFF_FFFF)), 1023);
        assert_eq!(PDX(KVAddr(0xFE00_0000)), 1016);
    }

    #[test]
    fn page_rounding() {
        assert_eq!(PGROUNDUP(0x8011_8001), Some(0x8011_9000));
        assert_eq!(PGROUNDUP(0x8011_9000), Some(0x8011_9000));
        assert_eq!(PGROUNDUP(0xFFFF_F001), None);
        assert_eq!(PGROUNDDOWN(0xFFFF_FFFF), 0xFFFF_F000);
    }

    #[test]
    fn pte_flags_and_address() {
        let bits = [PTE_P, PTE_W, PTE_U, PTE_PS, PTE_COW].map(|f| f.bits());
        assert_eq!(bits, [1, 2, 4, 0x80, 0x200]);
        let pte = Pte::new(PhysAddr(0x0011_A000), PTE_P | PTE_W | PTE_U);
        assert_eq!(pte.0, 0x0011_A007);
        assert_eq!(pte.addr(), PhysAddr(0x0011_A000));
        assert_eq!(pte.flags().bits(), 7);
        assert_eq!(pte.with_flags(PTE_P | PTE_COW).0, 0x0011_A201);
        assert_eq!(format!("{:?}", Pte(0x0011_A205)), "Pte(0x0011a000 P U COW)");
        assert!(pte.present());
        assert!(!Pte(0).present());
        assert_eq!(format!("{pte:?}"), "Pte(0x0011a000 P W U)");
    }

    #[test]
    #[should_panic(expected = "unaligned")]
    fn pte_rejects_unaligned_address() {
        let _ = Pte::new(PhysAddr(0x1234), PTE_P);
    }

    #[test]
    fn entrypgdir_maps_low_4mib_twice() {
        let d = entrypgdir_entries();
        assert_eq!(d[0].0, 0x83);
        assert_eq!(d[512].0, 0x83);
        assert_eq!(d.iter().filter(|e| e.present()).count(), 2);
    }

    #[test]
    fn gdt_matches_xv6() {
        let g = kernel_gdt();
        assert_eq!(g[0].0, 0);
        assert_eq!(g[SEG_KCODE].0, 0x00CF_9A00_0000_FFFF);
        assert_eq!(g[SEG_KDATA].0, 0x00CF_9200_0000_FFFF);
        assert_eq!(g[SEG_UCODE].0, 0x00CF_FA00_0000_FFFF);
        assert_eq!(g[SEG_UDATA].0, 0x00CF_F200_0000_FFFF);
        assert_eq!(g[SEG_TSS].0, 0);
        assert_eq!(selector(SEG_KCODE, 0), 0x08);
        assert_eq!(selector(SEG_KDATA, 0), 0x10);
        assert_eq!(selector(SEG_UCODE, DPL_USER), 0x1b);
        assert_eq!(selector(SEG_UDATA, DPL_USER), 0x23);
        assert_eq!(selector(SEG_TSS, 0), 0x28);
        assert_eq!(selector(SEG_DFTSS, 0), 0x30);
    }

    #[test]
    fn tss_descriptor_encoding() {
        let d = SegDesc::system(STS_T32A, 0x8011_2340, 103, 0);
        assert_eq!(d.0, 0x8000_8911_2340_0067);
    }
}
