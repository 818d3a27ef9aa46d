//! The PVH boot modules (docs/abi.md): module 0 is the program archive (cpio newc, see
//! archive.rs), module 1 the first process's argv (argc NUL-terminated strings back to back,
//! argv[0] the program's name).
//!
//! The VMM places them in `[PHYSTOP, end of RAM)`, which is outside the free list and outside
//! the kmap rows. Boot records where they are (`init`, right after PHYSTOP is known and before
//! kvmalloc); kvmalloc is handed their page-rounded span (`kmap_row`) and maps it
//! read-only for the kernel at P2V in the shared kernel half — the one mapping beyond the
//! four kmap rows, printed by the kernel as
//!
//! ```text
//! xv6: bootmods 0x8e000000-0x8e00afff -> 0x0e000000 r-k
//! ```
//!
//! (`kmap_row`, in kmap's format) — so `archive()` and `first_argv()` are plain slices of
//! that mapping, valid once kvmalloc has run. No modules: no row, an empty archive, no argv.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::kmap::Kmap;
use crate::memlayout::{phystop, PhysAddr, DEVSPACE, KERNBASE, P2V};
use crate::mmu::{PteFlags, PGROUNDDOWN, PGSIZE};
use crate::pvh::{Memmap, Module};

/// Index of the program archive in the module list.
pub const ARCHIVE: usize = 0;
/// Index of the first process's argv in the module list.
pub const ARGV: usize = 1;

/// Why the module list cannot be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BootModsError {
    /// Module `index` at `paddr`, `size` bytes, is not inside `[PHYSTOP, end)`: the RAM the
    /// VMM reserved above PHYSTOP (ending below DEVSPACE − KERNBASE so that P2V stays below
    /// DEVSPACE).
    OutOfRange {
        index: usize,
        paddr: u64,
        size: u64,
        end: u64,
    },
}

impl fmt::Display for BootModsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BootModsError::OutOfRange {
                index,
                paddr,
                size,
                end,
            } => write!(
                f,
                "bootmods: module {index} at {paddr:#x} ({size} bytes) not in [PHYSTOP, {end:#x})"
            ),
        }
    }
}

/// Where the modules are.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BootMods {
    /// The program archive: physical address and bytes (0 if absent).
    pub archive: (PhysAddr, u32),
    /// The first process's argv: physical address and bytes (0 if absent).
    pub argv: (PhysAddr, u32),
    /// The page-rounded span of all the modules: first page and bytes (0 if none).
    pub extent: (PhysAddr, u32),
}

/// The end of the memory where modules may lie: from PHYSTOP up through the memory-map
/// entries that continue it without a gap (the VMM reports `[PHYSTOP, mem)` as reserved),
/// capped at DEVSPACE − KERNBASE, the highest physical address P2V can map below DEVSPACE.
#[must_use]
pub fn module_area_end(memmap: &Memmap<'_>, phystop: PhysAddr) -> u64 {
    let cap = u64::from(DEVSPACE - KERNBASE);
    let mut top = u64::from(phystop.0);
    while let Some(e) = memmap
        .entries()
        .filter(|e| e.addr <= top && e.end() > top)
        .map(|e| e.end())
        .max()
    {
        top = e;
        if top >= cap {
            break;
        }
    }
    top.min(cap)
}

/// Checks the modules against `[phystop, module_area_end)` and works out where everything is.
pub fn locate(
    modules: impl IntoIterator<Item = Module>,
    phystop: PhysAddr,
    memmap: &Memmap<'_>,
) -> Result<BootMods, BootModsError> {
    let end = module_area_end(memmap, phystop);
    let mut mods = BootMods::default();
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for (index, m) in modules.into_iter().enumerate() {
        let inside = m.paddr >= u64::from(phystop.0)
            && m.paddr.checked_add(m.size).is_some_and(|e| e <= end);
        if !inside {
            return Err(BootModsError::OutOfRange {
                index,
                paddr: m.paddr,
                size: m.size,
                end,
            });
        }
        // Inside [PHYSTOP, end), end < 2 GiB: both fit in u32.
        let at = (PhysAddr(m.paddr as u32), m.size as u32);
        match index {
            ARCHIVE => mods.archive = at,
            ARGV => mods.argv = at,
            _ => {}
        }
        if m.size > 0 {
            lo = lo.min(m.paddr);
            hi = hi.max(m.paddr + m.size);
        }
    }
    if hi > 0 {
        let first = PGROUNDDOWN(lo as u32);
        // end is page aligned (PHYSTOP and the cap are; the VMM's RAM is whole pages), so
        // rounding up stays inside it.
        let last = (hi as u32).next_multiple_of(PGSIZE);
        mods.extent = (PhysAddr(first), last - first);
    }
    Ok(mods)
}

/// What `init` recorded: archive pa/len, argv pa/len, extent pa/len.
static MODS: [AtomicU32; 6] = [const { AtomicU32::new(0) }; 6];

/// Records the boot modules (boot, after PHYSTOP is set and before kvmalloc, which maps
/// them); returns where they are. The list may be empty.
pub fn init(
    modules: impl IntoIterator<Item = Module>,
    memmap: &Memmap<'_>,
) -> Result<BootMods, BootModsError> {
    let m = locate(modules, phystop(), memmap)?;
    let words = [
        m.archive.0 .0,
        m.archive.1,
        m.argv.0 .0,
        m.argv.1,
        m.extent.0 .0,
        m.extent.1,
    ];
    for (slot, w) in MODS.iter().zip(words) {
        slot.store(w, Ordering::Relaxed);
    }
    Ok(m)
}

/// Module word `i` of MODS.
fn word(i: usize) -> u32 {
    MODS[i].load(Ordering::Relaxed)
}

/// The page-rounded span of the modules, which kvmalloc maps read-only at P2V: first
/// physical page and bytes; `(PhysAddr(0), 0)` when there are none.
#[must_use]
pub fn extent() -> (PhysAddr, u32) {
    (PhysAddr(word(4)), word(5))
}

/// The extent as a kmap-style row (`r-k`), or `None` without modules: what kvmalloc maps
/// after the four kmap rows, and what boot prints (`xv6: bootmods {row}`).
#[must_use]
pub fn kmap_row() -> Option<Kmap> {
    let (pa, size) = extent();
    (size > 0).then(|| Kmap {
        virt: P2V(pa),
        phys_start: pa,
        size,
        perm: PteFlags::empty(),
    })
}

/// Whether the kernel page directory maps `kmap_row()` (set by boot after kvmalloc).
static MAPPED: AtomicBool = AtomicBool::new(false);

/// Records that kvmalloc has mapped the modules (boot, right after kvmalloc was given
/// `kmap_row()`): from now on `archive()` and `first_argv()` may read them.
pub fn mark_mapped() {
    MAPPED.store(true, Ordering::Relaxed);
}

/// The module at physical `pa`, `len` bytes, through the read-only mapping.
fn module(pa: u32, len: u32) -> &'static [u8] {
    if len == 0 {
        return &[];
    }
    #[cfg(all(target_arch = "x86", not(test)))]
    assert!(
        MAPPED.load(Ordering::Relaxed),
        "bootmods: read before kvmalloc"
    );
    // SAFETY: init checked that [pa, pa + len) lies in the module area, which kvmalloc maps
    // read-only at P2V for every page directory (MAPPED: the kernel's is in use) and which
    // nothing ever writes (it is outside the free list).
    unsafe { core::slice::from_raw_parts(P2V(PhysAddr(pa)).0 as *const u8, len as usize) }
}

/// The program archive (empty without modules). Valid after kvmalloc.
#[must_use]
pub fn archive() -> &'static [u8] {
    module(word(0), word(1))
}

/// The first process's argv, split into `buf` (pass a `[&[u8]; exec::MAXARG]`); `None`
/// without an argv module, if its last byte is not a NUL, or if there are more strings than
/// `buf` holds. Valid after kvmalloc.
pub fn first_argv<'b>(buf: &'b mut [&'static [u8]]) -> Option<&'b [&'static [u8]]> {
    if word(3) == 0 && word(2) == 0 {
        return None;
    }
    split_argv(module(word(2), word(3)), buf)
}

/// Splits argc NUL-terminated strings, back to back, into `buf`.
pub fn split_argv<'a, 'b>(bytes: &'a [u8], buf: &'b mut [&'a [u8]]) -> Option<&'b [&'a [u8]]> {
    let Some((&0, body)) = bytes.split_last() else {
        return bytes.is_empty().then_some(&buf[..0]);
    };
    let mut argc = 0;
    for s in body.split(|&c| c == 0) {
        *buf.get_mut(argc)? = s;
        argc += 1;
    }
    Some(&buf[..argc])
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pvh::tests::{memmap_bytes, VMM_256M};
    const PHYSTOP: PhysAddr = PhysAddr(0xE00_0000);

    fn module(paddr: u64, size: u64) -> Module {
        Module {
            paddr,
            size,
            cmdline_paddr: 0,
        }
    }

    #[test]
    fn module_area_is_the_reserved_ram_above_phystop() {
        let b = memmap_bytes(&VMM_256M);
        let m = Memmap::parse(&b, 3).unwrap();
        assert_eq!(module_area_end(&m, PHYSTOP), 0x1000_0000);
        // Nothing above PHYSTOP: an empty area.
        let b = memmap_bytes(&VMM_256M[..1]);
        let m = Memmap::parse(&b, 1).unwrap();
        assert_eq!(module_area_end(&m, PHYSTOP), 0xE00_0000);
        // RAM right up to DEVSPACE − KERNBASE and beyond: capped.
        let b = memmap_bytes(&[(0, 0x7C00_0000, 1), (0x7C00_0000, 0x1000_0000, 2)]);
        let m = Memmap::parse(&b, 2).unwrap();
        assert_eq!(module_area_end(&m, PhysAddr(0x7C00_0000)), 0x7E00_0000);
    }

    #[test]
    fn locates_the_vmm_modules() {
        let b = memmap_bytes(&VMM_256M);
        let m = Memmap::parse(&b, 3).unwrap();
        let mods = locate(
            [module(0xE00_0000, 0x2345), module(0xE00_3000, 12)],
            PHYSTOP,
            &m,
        )
        .unwrap();
        assert_eq!(mods.archive, (PhysAddr(0xE00_0000), 0x2345));
        assert_eq!(mods.argv, (PhysAddr(0xE00_3000), 12));
        assert_eq!(mods.extent, (PhysAddr(0xE00_0000), 0x4000));
        let none = locate([], PHYSTOP, &m).unwrap();
        assert_eq!(none, BootMods::default());
        // An empty module takes no room; an unaligned end is rounded up to a page.
        let mods = locate(
            [module(0xE00_1000, 0x10), module(0xE00_8000, 0)],
            PHYSTOP,
            &m,
        )
        .unwrap();
        assert_eq!(mods.extent, (PhysAddr(0xE00_1000), 0x1000));
        assert_eq!(mods.argv, (PhysAddr(0xE00_8000), 0));
        // The last byte of the area is usable.
        assert!(locate([module(0xFFF_F000, 0x1000)], PHYSTOP, &m).is_ok());
    }

    #[test]
    fn rejects_modules_outside_the_area() {
        let b = memmap_bytes(&VMM_256M);
        let m = Memmap::parse(&b, 3).unwrap();
        for (paddr, size) in [
            (0xDFF_F000, 0x10),           // below PHYSTOP (in the free list)
            (0xFFF_F000, 0x1001),         // past the end of RAM
            (0x1000_0000, 1),             // in the hole
            (0xFE00_0000, 0x10),          // in the MMIO range
            (0xE00_0000, u64::MAX),       // wraps
            (0x1_0000_0000_0000, 0x1000), // above 4 GiB
        ] {
            let e = locate([module(0xE00_0000, 4), module(paddr, size)], PHYSTOP, &m);
            assert_eq!(
                e,
                Err(BootModsError::OutOfRange {
                    index: 1,
                    paddr,
                    size,
                    end: 0x1000_0000
                }),
                "{paddr:#x}+{size:#x}"
            );
        }
        let e = locate([module(0x100, 4)], PHYSTOP, &m).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bootmods: module 0 at 0x100 (4 bytes) not in [PHYSTOP, 0x10000000)"
        );
    }

    #[test]
    fn kmap_row_format() {
        let row = Kmap {
            virt: P2V(PhysAddr(0xE00_0000)),
            phys_start: PhysAddr(0xE00_0000),
            size: 0xB000,
            perm: PteFlags::empty(),
        };
        assert_eq!(row.to_string(), "0x8e000000-0x8e00afff -> 0x0e000000 r-k");
    }

    #[test]
    fn splits_argv() {
        let mut buf: [&[u8]; 4] = [&[]; 4];
        assert_eq!(
            split_argv(b"echo\0a b\0\0", &mut buf),
            Some(&[&b"echo"[..], b"a b", b""][..])
        );
        assert_eq!(
            split_argv(b"usertests\0", &mut buf),
            Some(&[&b"usertests"[..]][..])
        );
        assert_eq!(split_argv(b"", &mut buf), Some(&[][..]));
        assert_eq!(split_argv(b"\0", &mut buf), Some(&[&b""[..]][..]));
        assert_eq!(split_argv(b"echo", &mut buf), None, "no NUL at the end");
        assert_eq!(
            split_argv(b"a\0b\0c\0d\0", &mut buf).map(<[_]>::len),
            Some(4)
        );
        assert_eq!(
            split_argv(b"a\0b\0c\0d\0e\0", &mut buf),
            None,
            "more than buf"
        );
    }
}
