//! The PVH boot information as kmain reads it (the VMM's `hvm_start_info`, docs/abi.md): the
//! start info, the memory map, the command line and the module list, each checked (pvh.rs
//! parses) to lie in low memory, below EXTMEM, where the VMM wrote them.

use crate::memlayout::{PhysAddr, EXTMEM, P2V};
use crate::pvh::{
    self, low_memory, Memmap, Module, PvhError, StartInfo, MEMMAP_ENTRY_SIZE, MODLIST_ENTRY_SIZE,
    START_INFO_SIZE,
};

/// The PVH boot information, checked.
pub struct BootInfo {
    /// Where `hvm_start_info` is.
    pub start_info: PhysAddr,
    /// The kernel command line.
    pub cmdline: &'static str,
    /// The memory map.
    pub memmap: Memmap<'static>,
    /// How many boot modules there are.
    pub nr_modules: u32,
    /// The module list (`nr_modules` entries, each checked to parse).
    pub modlist: &'static [u8],
}

/// `len` bytes of boot data at physical `pa`, which `low_memory` checked to be below EXTMEM.
fn low_bytes(pa: PhysAddr, len: usize) -> &'static [u8] {
    debug_assert!(pa.0 as usize + len <= EXTMEM as usize);
    // SAFETY: [pa, pa + len) is below EXTMEM, which stays mapped at P2V (entrypgdir, then
    // kmap row 1) and which nothing in the kernel writes (it is below `end`, never on the
    // free list); the VMM wrote the boot data before starting us.
    unsafe { core::slice::from_raw_parts(P2V(pa).0 as *const u8, len) }
}

/// Reads `hvm_start_info` at physical `pa` and what it points to.
pub fn read(pa: u32) -> Result<BootInfo, PvhError> {
    let start_info = low_memory("start_info", u64::from(pa), START_INFO_SIZE)?;
    let si = StartInfo::parse(low_bytes(start_info, START_INFO_SIZE))?;

    let n = si.memmap_entries as usize * MEMMAP_ENTRY_SIZE;
    let memmap = Memmap::parse(
        low_bytes(low_memory("memmap", si.memmap_paddr, n)?, n),
        si.memmap_entries,
    )?;

    let cmdline = if si.cmdline_paddr == 0 {
        ""
    } else {
        // The line runs to its NUL, which must come before EXTMEM.
        let at = low_memory("cmdline", si.cmdline_paddr, 1)?;
        pvh::cmdline(low_bytes(at, (EXTMEM - at.0) as usize))?
    };

    let mut modlist: &'static [u8] = &[];
    if si.nr_modules > 0 {
        let n = si.nr_modules as usize * MODLIST_ENTRY_SIZE;
        modlist = low_bytes(low_memory("modlist", si.modlist_paddr, n)?, n);
        for i in 0..si.nr_modules as usize {
            Module::parse(modlist, i)?;
        }
    }
    Ok(BootInfo {
        start_info,
        cmdline,
        memmap,
        nr_modules: si.nr_modules,
        modlist,
    })
}

impl BootInfo {
    /// The boot modules (module list entries that parse: all of them, `read` checked).
    pub fn modules(&self) -> impl Iterator<Item = Module> + '_ {
        (0..self.nr_modules as usize).filter_map(|i| Module::parse(self.modlist, i).ok())
    }
}
