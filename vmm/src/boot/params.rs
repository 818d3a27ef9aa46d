//! The PVH boot parameters: `hvm_start_info`, the memory map, the command line and the
//! module list (the program archive), written with linux-loader's `PvhBootConfigurator`.
//!
//! Memory map handed to the kernel (E820 types):
//! - `[0, PHYSTOP)` RAM — the kernel frees `[end, PHYSTOP)` into its free list;
//!   the boot data in low memory stays below the kernel's `end`.
//! - `[PHYSTOP, mem)` reserved — boot modules live here.
//! - `[DEVSPACE, 4 GiB)` reserved — the MMIO hole.

use anyhow::{bail, Context, Result};
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::{self, phystop, DEVSPACE, E820_RAM, E820_RESERVED};

/// Page size, for module alignment.
const PGSIZE: u64 = xv6_abi::mmu::PGSIZE as u64;

/// The memory map for `mem` bytes of RAM.
pub fn memmap(mem: u64) -> Vec<hvm_memmap_table_entry> {
    let entry = |addr, size, type_| hvm_memmap_table_entry {
        addr,
        size,
        type_,
        reserved: 0,
    };
    vec![
        entry(0, phystop(mem), E820_RAM),
        entry(phystop(mem), mem - phystop(mem), E820_RESERVED),
        entry(DEVSPACE, (1u64 << 32) - DEVSPACE, E820_RESERVED),
    ]
}

/// Where each module goes: page-aligned, upward from PHYSTOP; fails if they do not fit.
pub fn place_modules(mem: u64, sizes: &[usize]) -> Result<Vec<u64>> {
    let mut next = phystop(mem);
    let mut out = Vec::new();
    for &size in sizes {
        let end = next + size as u64;
        if end > mem {
            bail!(
                "boot modules need {} KiB more than the {} MiB reserved above PHYSTOP",
                (end - mem).div_ceil(1024),
                (mem - phystop(mem)) >> 20
            );
        }
        out.push(next);
        next = end.next_multiple_of(PGSIZE);
    }
    Ok(out)
}

/// Writes command line, modules and start_info into guest memory; returns start_info's address.
pub fn write_boot_params(
    guest: &GuestMemoryMmap,
    mem: u64,
    cmdline: &str,
    modules: &[Vec<u8>],
) -> Result<u32> {
    if cmdline.len() >= layout::CMDLINE_MAX || cmdline.contains('\0') {
        bail!(
            "kernel command line too long or has a NUL byte (at most {} bytes)",
            layout::CMDLINE_MAX - 1
        );
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    guest
        .write_slice(&bytes, GuestAddress(layout::CMDLINE))
        .context("cannot write the command line")?;

    let sizes: Vec<usize> = modules.iter().map(Vec::len).collect();
    let addrs = place_modules(mem, &sizes)?;
    let mut modlist = Vec::new();
    for (m, &addr) in modules.iter().zip(&addrs) {
        guest
            .write_slice(m, GuestAddress(addr))
            .context("cannot write a boot module")?;
        modlist.push(hvm_modlist_entry {
            paddr: addr,
            size: m.len() as u64,
            cmdline_paddr: 0,
            reserved: 0,
        });
    }

    let map = memmap(mem);
    let start_info = hvm_start_info {
        magic: layout::XEN_HVM_START_MAGIC,
        version: 1,
        flags: 0,
        nr_modules: modlist.len() as u32,
        modlist_paddr: if modlist.is_empty() {
            0
        } else {
            layout::MODLIST
        },
        cmdline_paddr: layout::CMDLINE,
        rsdp_paddr: 0,
        memmap_paddr: layout::MEMMAP,
        memmap_entries: map.len() as u32,
        reserved: 0,
    };
    let mut params = BootParams::new(&start_info, GuestAddress(layout::START_INFO));
    params.set_sections(&map, GuestAddress(layout::MEMMAP));
    if !modlist.is_empty() {
        params.set_modules(&modlist, GuestAddress(layout::MODLIST));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, guest)
        .context("cannot write the PVH boot parameters")?;
    Ok(layout::START_INFO as u32)
}

/// The kernel's boot timestamps (docs/abi.md): cycles from its first instruction to the
/// first user instruction, or None when either stamp is missing (RAM reads zero until the
/// kernel writes them) or they are out of order.
pub fn first_user_cycles(mem: &GuestMemoryMmap) -> Option<u64> {
    let at = GuestAddress(u64::from(xv6_abi::layout::BOOT_TIMES));
    let mut words = [0u8; 16];
    mem.read_slice(&mut words, at).ok()?;
    let entry = u64::from_le_bytes(words[..8].try_into().unwrap());
    let user = u64::from_le_bytes(words[8..].try_into().unwrap());
    (entry != 0 && user > entry).then(|| user - entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memmap_for_default_ram() {
        let m = memmap(256 << 20);
        let rows: Vec<_> = m.iter().map(|e| (e.addr, e.size, e.type_)).collect();
        assert_eq!(
            rows,
            vec![
                (0, 0xE00_0000, E820_RAM),
                (0xE00_0000, 0x200_0000, E820_RESERVED),
                (0xFE00_0000, 0x200_0000, E820_RESERVED),
            ]
        );
    }

    #[test]
    fn modules_are_page_aligned_above_phystop() {
        let a = place_modules(256 << 20, &[10, 5000, 1]).unwrap();
        assert_eq!(a, vec![0xE00_0000, 0xE00_1000, 0xE00_3000]);
        assert!(place_modules(256 << 20, &[33 << 20]).is_err());
    }
}
