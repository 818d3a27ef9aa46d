//! Guest-physical memory layout and the I/O ports of the xv6 boot protocol.
//!
//! The numbers the VMM and the kernel must agree on come from one place, the xv6-abi crate
//! (`xv6_abi::layout`, `xv6_abi::ports`); the rest here is the VMM's own. Everything the VMM hands the kernel
//! sits where the kernel's free list never reaches: the boot data in low memory (below `EXTMEM`,
//! mapped by `kmap` row 1), the program archive in `[PHYSTOP, end of RAM)`.

/// Start of extended memory: the kernel is loaded here (xv6 `EXTMEM`).
pub const EXTMEM: u64 = xv6_abi::layout::EXTMEM as u64;
/// Start of the MMIO hole; nothing is backed from here to 4 GiB (xv6 `DEVSPACE`).
pub const DEVSPACE: u64 = xv6_abi::layout::DEVSPACE as u64;
/// Virtual base of the kernel half (xv6 `KERNBASE`); the kernel maps RAM at `P2V(pa) = pa + KERNBASE`.
pub const KERNBASE: u64 = xv6_abi::layout::KERNBASE as u64;
/// RAM at the top reserved for boot modules: `PHYSTOP = mem - BOOT_RESERVED`.
/// With the default 256 MiB this gives xv6's PHYSTOP, 0xE000000.
pub const BOOT_RESERVED: u64 = xv6_abi::layout::BOOT_RESERVED as u64;

/// Default guest RAM.
pub const DEFAULT_MEM: u64 = 256 << 20;
/// Smallest RAM the kernel can use: PHYSTOP must leave room above the kernel's first 4 MiB.
pub const MIN_MEM: u64 = 64 << 20;
/// Largest RAM the kernel can use: it maps all of it at KERNBASE, so `P2V(mem) <= DEVSPACE`.
pub const MAX_MEM: u64 = DEVSPACE - KERNBASE;
/// RAM sizes must be whole 4 MiB (one page-directory entry each).
pub const MEM_ALIGN: u64 = 4 << 20;

// Checked when compiling: all RAM, modules included, is reachable at P2V below DEVSPACE and
// one more 4 MiB step would not be; both bounds are whole steps; PHYSTOP clears kinit1's
// first 4 MiB even at the smallest size.
const _: () = assert!(KERNBASE + MAX_MEM <= DEVSPACE && KERNBASE + MAX_MEM + MEM_ALIGN > DEVSPACE);
const _: () = assert!(MAX_MEM.is_multiple_of(MEM_ALIGN) && MIN_MEM.is_multiple_of(MEM_ALIGN));
const _: () = assert!(MIN_MEM - BOOT_RESERVED > 4 << 20);

/// The boot GDT (null, code 0x08, data 0x10, TSS 0x18), as the PVH ABI asks for.
pub const BOOT_GDT: u64 = 0x500;
/// The kernel's boot timestamps (two u64, written by the kernel, read after the run).
pub const BOOT_TIMES: u64 = xv6_abi::layout::BOOT_TIMES as u64;
// The GDT's four descriptors end before the stamps; start_info starts after them.
const _: () = assert!(BOOT_GDT + 32 <= BOOT_TIMES && BOOT_TIMES + 16 <= START_INFO);
/// `hvm_start_info`, handed to the kernel in EBX.
pub const START_INFO: u64 = 0x6000;
/// The `hvm_modlist_entry` array.
pub const MODLIST: u64 = 0x6800;
/// The `hvm_memmap_table_entry` array.
pub const MEMMAP: u64 = 0x7000;
/// The kernel command line (NUL-terminated).
pub const CMDLINE: u64 = 0x2_0000;
/// Room for the command line, NUL included.
pub const CMDLINE_MAX: usize = 4096;

/// Where KVM keeps the 3-page TSS it needs on Intel (inside the hole, never backed by RAM).
pub const KVM_TSS_ADDR: usize = 0xFFFB_D000;

/// PVH `hvm_start_info.magic`.
pub const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// E820 type of usable RAM in the PVH memory map.
pub const E820_RAM: u32 = 1;
/// E820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// PHYSTOP for a given amount of RAM.
pub fn phystop(mem: u64) -> u64 {
    mem - BOOT_RESERVED
}

/// The I/O ports of the VMM's devices (shared with the kernel: the xv6-abi crate).
pub use xv6_abi::ports;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ram_gives_xv6_phystop() {
        assert_eq!(phystop(DEFAULT_MEM), 0xE00_0000);
    }

    #[test]
    fn boot_data_sits_in_low_memory() {
        for a in [
            BOOT_GDT,
            BOOT_TIMES,
            START_INFO,
            MODLIST,
            MEMMAP,
            CMDLINE + CMDLINE_MAX as u64,
        ] {
            assert!(a <= EXTMEM, "{a:#x} must stay below EXTMEM");
        }
    }
}
