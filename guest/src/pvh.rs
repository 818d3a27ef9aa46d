//! The PVH boot information (Xen's `hvm_start_info`, arch/x86/hvm/start_info.h): the
//! structure the VMM hands the kernel in EBX, its memory map, module list and command line.
//! Everything here parses byte slices (little endian, no alignment assumed), so it is tested
//! on the host; kmain.rs makes the slices from the physical addresses via P2V.

use core::fmt;

use crate::memlayout::{PhysAddr, EXTMEM, PHYSTOP_MIN};
use crate::mmu::PGROUNDDOWN;

/// `hvm_start_info.magic`.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// Bytes of `hvm_start_info` (version 1, which has the memory map fields).
pub const START_INFO_SIZE: usize = 56;
/// Bytes of a `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_SIZE: usize = 24;
/// Bytes of a `hvm_modlist_entry`.
pub const MODLIST_ENTRY_SIZE: usize = 32;
/// E820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type: reserved.
pub const E820_RESERVED: u32 = 2;

/// Why the boot information is unusable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PvhError {
    /// Not a start_info: the magic number is wrong.
    BadMagic(u32),
    /// Version 0 has no memory map.
    NoMemmap(u32),
    /// A structure is shorter than it must be.
    Truncated,
    /// Boot data (what, address) must be below EXTMEM, where the kernel can read it.
    NotLowMemory(&'static str, u64),
    /// The command line has no NUL or is not UTF-8.
    BadCmdline,
    /// No RAM entry starts at address 0.
    NoRamAtZero,
    /// PHYSTOP (the value) is below PHYSTOP_MIN.
    TooLittleRam(u64),
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PvhError::BadMagic(m) => write!(f, "pvh: bad start_info magic {m:#010x}"),
            PvhError::NoMemmap(v) => write!(f, "pvh: start_info version {v} has no memory map"),
            PvhError::Truncated => write!(f, "pvh: truncated boot data"),
            PvhError::NotLowMemory(what, a) => {
                write!(f, "pvh: {what} at {a:#x} is not below EXTMEM")
            }
            PvhError::BadCmdline => write!(f, "pvh: bad command line"),
            PvhError::NoRamAtZero => write!(f, "pvh: no RAM entry at address 0"),
            PvhError::TooLittleRam(p) => {
                write!(
                    f,
                    "pvh: PHYSTOP {p:#x} below {PHYSTOP_MIN:#x}: too little RAM"
                )
            }
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, PvhError> {
    let bytes = b.get(off..off + 4).ok_or(PvhError::Truncated)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, PvhError> {
    Ok(u64::from(u32_at(b, off)?) | (u64::from(u32_at(b, off + 4)?) << 32))
}

/// `hvm_start_info`, version 1.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StartInfo {
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
}

impl StartInfo {
    /// Parses the structure; checks the magic and that it has a memory map.
    pub fn parse(b: &[u8]) -> Result<StartInfo, PvhError> {
        let magic = u32_at(b, 0)?;
        if magic != XEN_HVM_START_MAGIC_VALUE {
            return Err(PvhError::BadMagic(magic));
        }
        let version = u32_at(b, 4)?;
        if version < 1 {
            return Err(PvhError::NoMemmap(version));
        }
        Ok(StartInfo {
            version,
            flags: u32_at(b, 8)?,
            nr_modules: u32_at(b, 12)?,
            modlist_paddr: u64_at(b, 16)?,
            cmdline_paddr: u64_at(b, 24)?,
            rsdp_paddr: u64_at(b, 32)?,
            memmap_paddr: u64_at(b, 40)?,
            memmap_entries: u32_at(b, 48)?,
        })
    }
}

/// Checks that boot data `[pa, pa + len)` lies below EXTMEM (mapped at KERNBASE both by
/// entrypgdir and by kmap row 1); returns the physical address.
pub fn low_memory(what: &'static str, pa: u64, len: usize) -> Result<PhysAddr, PvhError> {
    match pa.checked_add(len as u64) {
        Some(end) if end <= u64::from(EXTMEM) => Ok(PhysAddr(pa as u32)),
        _ => Err(PvhError::NotLowMemory(what, pa)),
    }
}

/// A memory map entry, `hvm_memmap_table_entry`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

impl MemmapEntry {
    /// Parses one entry.
    pub fn parse(b: &[u8]) -> Result<MemmapEntry, PvhError> {
        Ok(MemmapEntry {
            addr: u64_at(b, 0)?,
            size: u64_at(b, 8)?,
            kind: u32_at(b, 16)?,
        })
    }

    /// One past the last byte (saturating).
    #[must_use]
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// Prints `0x00000000-0x0dffffff ram` (last address inclusive; ram, reserved or other).
impl fmt::Display for MemmapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            E820_RAM => "ram",
            E820_RESERVED => "reserved",
            _ => "other",
        };
        let last = self.end().saturating_sub(1).max(self.addr);
        write!(f, "{:#010x}-{:#010x} {kind}", self.addr, last)
    }
}

/// The memory map: a view of the `hvm_memmap_table_entry` array in the boot data (nothing is
/// copied: the kernel boot stack is only 4 KiB).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Memmap<'a> {
    bytes: &'a [u8],
}

impl<'a> Memmap<'a> {
    /// The map of `n` entries at the start of `b`.
    pub fn parse(b: &'a [u8], n: u32) -> Result<Memmap<'a>, PvhError> {
        let len = (n as usize)
            .checked_mul(MEMMAP_ENTRY_SIZE)
            .ok_or(PvhError::Truncated)?;
        Ok(Memmap {
            bytes: b.get(..len).ok_or(PvhError::Truncated)?,
        })
    }

    /// The entries, in order.
    pub fn entries(&self) -> impl Iterator<Item = MemmapEntry> + 'a {
        self.bytes
            .chunks_exact(MEMMAP_ENTRY_SIZE)
            .filter_map(|e| MemmapEntry::parse(e).ok())
    }

    /// PHYSTOP: the end of the RAM that starts at address 0, rounded down to a page.
    ///
    /// The VMM reports RAM `[0, PHYSTOP)` as one entry (and the boot-module area above it as
    /// reserved), so that entry's end is PHYSTOP. Firmware-style maps (QEMU's, for smoke tests)
    /// split low RAM at the legacy hole `[0xA0000, EXTMEM)`; that hole is I/O space in xv6's map
    /// (kmap row 1) and lies below the kernel's `end`, so it never reaches the free list.
    /// Hence a RAM entry that starts at or below `max(current end, EXTMEM)` continues the run.
    pub fn phystop(&self) -> Result<PhysAddr, PvhError> {
        let ram = || self.entries().filter(|e| e.kind == E820_RAM && e.size > 0);
        let mut top = ram()
            .find(|e| e.addr == 0)
            .ok_or(PvhError::NoRamAtZero)?
            .end();
        while let Some(next) = ram()
            .filter(|e| e.addr <= top.max(u64::from(EXTMEM)) && e.end() > top)
            .map(|e| e.end())
            .max()
        {
            top = next;
        }
        // Only 32-bit physical addresses exist for the kernel; kmap checks DEVSPACE later.
        let top = PGROUNDDOWN(top.min(u64::from(u32::MAX)) as u32);
        if top < PHYSTOP_MIN {
            return Err(PvhError::TooLittleRam(u64::from(top)));
        }
        Ok(PhysAddr(top))
    }
}

/// A boot module, `hvm_modlist_entry`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Module {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
}

impl Module {
    /// Parses entry `i` of the module list `b`.
    pub fn parse(b: &[u8], i: usize) -> Result<Module, PvhError> {
        let off = i * MODLIST_ENTRY_SIZE;
        let e = b
            .get(off..off + MODLIST_ENTRY_SIZE)
            .ok_or(PvhError::Truncated)?;
        Ok(Module {
            paddr: u64_at(e, 0)?,
            size: u64_at(e, 8)?,
            cmdline_paddr: u64_at(e, 16)?,
        })
    }
}

/// The command line: the bytes of `b` up to the first NUL, which must be there.
pub fn cmdline(b: &[u8]) -> Result<&str, PvhError> {
    let n = b.iter().position(|&c| c == 0).ok_or(PvhError::BadCmdline)?;
    core::str::from_utf8(&b[..n]).map_err(|_| PvhError::BadCmdline)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn start_info(magic: u32, version: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [magic, version, 0, 2] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        for q in [0x6800u64, 0x2_0000, 0, 0x7000] {
            b.extend_from_slice(&q.to_le_bytes());
        }
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(b.len(), START_INFO_SIZE);
        b
    }

    /// A memory map in the PVH layout: (addr, size, type) entries.
    pub(crate) fn memmap_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        for &(addr, size, kind) in entries {
            b.extend_from_slice(&addr.to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&kind.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        b
    }

    /// The map the VMM hands over for 256 MiB of RAM.
    pub(crate) const VMM_256M: [(u64, u64, u32); 3] = [
        (0, 0xE00_0000, 1),
        (0xE00_0000, 0x200_0000, 2),
        (0xFE00_0000, 0x200_0000, 2),
    ];

    #[test]
    fn parses_start_info() {
        let si = StartInfo::parse(&start_info(XEN_HVM_START_MAGIC_VALUE, 1)).unwrap();
        assert_eq!(si.version, 1);
        assert_eq!(si.nr_modules, 2);
        assert_eq!(si.modlist_paddr, 0x6800);
        assert_eq!(si.cmdline_paddr, 0x2_0000);
        assert_eq!(si.memmap_paddr, 0x7000);
        assert_eq!(si.memmap_entries, 3);
    }

    #[test]
    fn rejects_bad_magic_old_version_and_short_data() {
        assert_eq!(
            StartInfo::parse(&start_info(0xdead_beef, 1)),
            Err(PvhError::BadMagic(0xdead_beef))
        );
        assert_eq!(
            StartInfo::parse(&start_info(XEN_HVM_START_MAGIC_VALUE, 0)),
            Err(PvhError::NoMemmap(0))
        );
        let b = start_info(XEN_HVM_START_MAGIC_VALUE, 1);
        assert_eq!(StartInfo::parse(&b[..40]), Err(PvhError::Truncated));
        assert_eq!(
            PvhError::BadMagic(0xdead_beef).to_string(),
            "pvh: bad start_info magic 0xdeadbeef"
        );
    }

    #[test]
    fn boot_data_must_be_in_low_memory() {
        assert_eq!(
            low_memory("start_info", 0x6000, START_INFO_SIZE),
            Ok(PhysAddr(0x6000))
        );
        assert_eq!(
            low_memory("cmdline", 0xFF000, 0x1000),
            Ok(PhysAddr(0xFF000))
        );
        assert_eq!(
            low_memory("cmdline", 0xFF001, 0x1000),
            Err(PvhError::NotLowMemory("cmdline", 0xFF001))
        );
        assert!(low_memory("memmap", u64::MAX, 24).is_err());
    }

    #[test]
    fn vmm_memmap_gives_xv6_phystop() {
        let b = memmap_bytes(&VMM_256M);
        let m = Memmap::parse(&b, 3).unwrap();
        assert_eq!(m.entries().count(), 3);
        assert_eq!(m.phystop(), Ok(PhysAddr(0xE00_0000)));
        let lines: Vec<String> = m.entries().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "0x00000000-0x0dffffff ram",
                "0x0e000000-0x0fffffff reserved",
                "0xfe000000-0xffffffff reserved",
            ]
        );
        assert_eq!(
            MemmapEntry {
                addr: 0x1000,
                size: 0x1000,
                kind: 4
            }
            .to_string(),
            "0x00001000-0x00001fff other"
        );
    }

    #[test]
    fn phystop_rounds_down_and_bridges_the_legacy_hole() {
        let b = memmap_bytes(&[(0, 0x0FFF_F800, 1)]);
        let m = Memmap::parse(&b, 1).unwrap();
        assert_eq!(m.phystop(), Ok(PhysAddr(0x0FFF_F000)));
        // QEMU-style: 640 KiB of low RAM, a hole, then RAM from 1 MiB.
        let qemu = [
            (0, 0x9_FC00, 1),
            (0x9_FC00, 0x400, 2),
            (0xF_0000, 0x1_0000, 2),
            (0x10_0000, 0xFEE_0000, 1),
        ];
        let b = memmap_bytes(&qemu);
        let m = Memmap::parse(&b, 4).unwrap();
        assert_eq!(m.phystop(), Ok(PhysAddr(0xFFE_0000)));
        // A reserved gap above EXTMEM ends the run.
        let gap = [(0, 0x800_0000, 1), (0x900_0000, 0x100_0000, 1)];
        let b = memmap_bytes(&gap);
        let m = Memmap::parse(&b, 2).unwrap();
        assert_eq!(m.phystop(), Ok(PhysAddr(0x800_0000)));
    }

    #[test]
    fn phystop_errors() {
        let b = memmap_bytes(&[(0x10_0000, 0x1000_0000, 1)]);
        let m = Memmap::parse(&b, 1).unwrap();
        assert_eq!(m.phystop(), Err(PvhError::NoRamAtZero));
        let b = memmap_bytes(&[(0, 0x9_FC00, 1)]);
        let m = Memmap::parse(&b, 1).unwrap();
        assert_eq!(m.phystop(), Err(PvhError::TooLittleRam(0x9_F000)));
        assert_eq!(
            Memmap::parse(&memmap_bytes(&VMM_256M), 4),
            Err(PvhError::Truncated)
        );
        assert_eq!(Memmap::parse(&[], u32::MAX), Err(PvhError::Truncated));
    }

    #[test]
    fn parses_modules_and_cmdline() {
        let mut b = Vec::new();
        for q in [0xE00_0000u64, 0x1234, 0, 0, 0xE00_2000, 10, 0x2_1000, 0] {
            b.extend_from_slice(&q.to_le_bytes());
        }
        assert_eq!(
            Module::parse(&b, 1),
            Ok(Module {
                paddr: 0xE00_2000,
                size: 10,
                cmdline_paddr: 0x2_1000
            })
        );
        assert_eq!(Module::parse(&b, 2), Err(PvhError::Truncated));
        assert_eq!(cmdline(b"console=com1\0junk"), Ok("console=com1"));
        assert_eq!(cmdline(b"\0"), Ok(""));
        assert_eq!(cmdline(b"no nul"), Err(PvhError::BadCmdline));
        assert_eq!(cmdline(b"\xff\0"), Err(PvhError::BadCmdline));
    }
}
