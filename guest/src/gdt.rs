//! The kernel's own GDT (xv6 vm.c `seginit`): replaces the boot GDT the VMM left in low
//! memory with kernel code 0x08, kernel data 0x10, user code 0x1b, user data 0x23 and a TSS
//! slot 0x28 (a null placeholder until processes exist).

use core::arch::asm;

use crate::mmu::{kernel_gdt, selector, SegDesc, NSEGS, SEG_KCODE, SEG_KDATA};

/// The GDT. In `.data` (writable), because the CPU sets accessed bits in descriptors it loads;
/// Rust never reads it after the initialiser.
#[link_section = ".data.gdt"]
static GDT: [SegDesc; NSEGS] = kernel_gdt();

/// Loads the kernel GDT and reloads every segment register from it.
pub fn seginit() {
    let base = GDT.as_ptr() as u32;
    let limit = (core::mem::size_of_val(&GDT) - 1) as u16;
    // SAFETY: GDT is a static, so it stays valid; its code and data descriptors are flat
    // 4 GiB segments like the boot GDT's, so reloading the registers below changes no
    // address translation.
    unsafe { crate::x86::lgdt(base, limit) };
    // SAFETY: reloads CS with a far return to the next instruction and the data segment
    // registers with the flat kernel data segment (fs/gs null, as xv6 leaves them until it
    // needs per-CPU data).
    unsafe {
        asm!(
            "mov ds, {d:x}",
            "mov es, {d:x}",
            "mov ss, {d:x}",
            "xor {t}, {t}",
            "mov fs, {t:x}",
            "mov gs, {t:x}",
            "push {c}",
            "lea {t}, [2f]",
            "push {t}",
            "retf",
            "2:",
            d = in(reg) u32::from(selector(SEG_KDATA, 0)),
            c = const selector(SEG_KCODE, 0) as u32,
            t = out(reg) _,
        );
    }
}
