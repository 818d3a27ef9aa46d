//! The kernel's entry point (xv6 entry.S and main.c's entrypgdir), reached by PVH boot.
//!
//! The VMM loads the kernel at physical 0x100000 and jumps to `V2P(entry)` (the address in the
//! ELF note below) in 32-bit protected mode with paging off, flat segments, interrupts off and
//! EBX = physical address of `hvm_start_info`. The kernel is linked at KERNLINK, so until
//! paging is on the code may only use position-independent instructions and physical
//! addresses. `entry` turns on paging with `entrypgdir` (which maps physical [0, 4 MiB) both at
//! 0 and at KERNBASE), switches to the boot stack at its high address and jumps to `kmain`
//! in the high half, passing EBX.

use xv6_abi::layout::{BOOT_TIMES, KERNBASE};
use xv6_abi::mmu::{CR0_PG, CR0_WP, CR4_PSE, PGSIZE};

use crate::bootstack::{KSTACKSIZE, STACK};
use crate::mmu::{entrypgdir_entries, Pte, NPDENTRIES};

/// A page-aligned page directory.
#[repr(C, align(4096))]
pub struct EntryPgDir(pub [Pte; NPDENTRIES]);

const _: () = assert!(core::mem::align_of::<EntryPgDir>() == PGSIZE as usize);

/// The boot page directory. It is in `.data` (writable): the MMU sets accessed bits in it.
/// The kernel never reads it; only `entry` loads its physical address into CR3.
#[no_mangle]
#[link_section = ".data.entrypgdir"]
#[allow(non_upper_case_globals)]
pub static entrypgdir: EntryPgDir = EntryPgDir(entrypgdir_entries());

core::arch::global_asm!(
    r#"
    # The PVH entry note (Xen's XEN_ELFNOTE_PHYS32_ENTRY): name "Xen", type 18,
    # desc = the 32-bit physical entry address.
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4                     # namesz
    .long 4                     # descsz
    .long 18                    # type: XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long entry - {kernbase}
    .balign 4
    .popsection

    .pushsection .text.entry, "ax"
    .code32
    # ELF entry point: the physical address of `entry` (paging is off when we get here).
    .globl _start
    .set _start, entry - {kernbase}

    .globl entry
entry:
    # The boot timestamp (docs/abi.md): the TSC at our first instruction, at physical
    # BOOT_TIMES (paging is off), for the VMM to read after the run.
    rdtsc
    mov [{boot_times}], eax
    mov [{boot_times} + 4], edx
    # Turn on page size extension for 4 MiB pages.
    mov eax, cr4
    or eax, {cr4_pse}
    mov cr4, eax
    # Set the page directory.
    mov eax, offset {entrypgdir} - {kernbase}
    mov cr3, eax
    # Turn on paging, and make the kernel honour read-only pages.
    mov eax, cr0
    or eax, {cr0_pg_wp}
    mov cr0, eax
    # Paging is on; we still run at the low address, which entrypgdir maps too.
    # Set up the stack pointer (high address) and call kmain(ebx) in the high half;
    # an indirect jump, because the assembler would make a direct one PC-relative.
    mov esp, offset {stack} + {kstacksize}
    xor ebp, ebp
    sub esp, 12                 # keep esp 16-byte aligned at the call
    push ebx                    # kmain's argument: PA of hvm_start_info
    mov eax, offset {kmain}
    call eax
1:  cli
    hlt
    jmp 1b
    .popsection
    "#,
    kernbase = const KERNBASE,
    cr4_pse = const CR4_PSE,
    cr0_pg_wp = const CR0_PG | CR0_WP,
    kstacksize = const KSTACKSIZE,
    boot_times = const BOOT_TIMES,
    entrypgdir = sym entrypgdir,
    stack = sym STACK,
    kmain = sym crate::kmain::kmain,
);
