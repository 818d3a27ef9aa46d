//! Wrappers for the x86 instructions the kernel needs (xv6 x86.h): port I/O, control
//! registers, interrupt flag, GDT loading. Each is one instruction; the unsafe ones say
//! what the caller must guarantee.

use core::arch::asm;

/// Reads a byte from an I/O port.
#[must_use]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port input has no memory effects; the devices we read (UART, debug port) have
    // no read side effects that could break memory safety.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes a byte to an I/O port.
pub fn outb(port: u16, v: u8) {
    // SAFETY: our devices (UART, debug port) cannot touch guest memory; the exit/panic ports
    // end the VM, which is the caller's intent.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a 32-bit word from an I/O port.
#[must_use]
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for inb.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes a 32-bit word to an I/O port.
pub fn outl(port: u16, v: u32) {
    // SAFETY: as for outb. The pgdump port makes the VMM read (never write) our page tables.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, preserves_flags)) };
}

/// Loads the 32-bit float at kernel address `va` onto the x87 stack and drops it again
/// (`fld`, `fstp st(0)`): the selftest that makes KVM's instruction emulator give up on an
/// MMIO access it cannot emulate. Never inlined, and always `fld dword ptr [eax]`, so that
/// the VMM's crash report shows the same EIP symbol, EAX and code bytes whoever calls it.
#[inline(never)]
pub fn fld_from(va: u32) {
    // SAFETY: reads 4 bytes at `va` (the caller's mapped address) and leaves the x87 stack
    // as it was; no Rust-visible memory is written.
    unsafe {
        asm!("fld dword ptr [eax]", "fstp st(0)", in("eax") va, options(nostack, readonly));
    }
}

/// Reads EFLAGS.
#[must_use]
pub fn readeflags() -> u32 {
    let f: u32;
    // SAFETY: pushfd/pop only touch the stack slot they use.
    unsafe { asm!("pushfd", "pop {}", out(reg) f, options(nomem, preserves_flags)) };
    f
}

/// Disables interrupts.
pub fn cli() {
    // SAFETY: masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Enables interrupts.
pub fn sti() {
    // SAFETY: with no IDT loaded yet an interrupt would triple-fault (ending the VM, not
    // corrupting memory); callers only enable interrupts they are ready for.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// Halts until the next interrupt.
pub fn hlt() {
    // SAFETY: hlt only waits.
    unsafe { asm!("hlt", options(nomem, nostack, preserves_flags)) };
}

/// Disables interrupts and halts forever.
pub fn halt_forever() -> ! {
    loop {
        cli();
        hlt();
    }
}

/// Reads the time-stamp counter.
#[must_use]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the TSC into edx:eax (CR4.TSD is clear in the kernel).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// Reads CR0.
#[must_use]
pub fn rcr0() -> u32 {
    let v: u32;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR3 (the physical address of the current page directory).
#[must_use]
pub fn rcr3() -> u32 {
    let v: u32;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR4.
#[must_use]
pub fn rcr4() -> u32 {
    let v: u32;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Loads CR3, switching page directories (and flushing the non-global TLB entries).
///
/// # Safety
/// `pa` must be the physical address of a page directory that maps the running kernel
/// (code, stack, data) exactly as the current one does.
pub unsafe fn lcr3(pa: u32) {
    // SAFETY: the caller guarantees the new directory keeps the kernel mapped.
    unsafe { asm!("mov cr3, {}", in(reg) pa, options(nostack, preserves_flags)) };
}

/// Loads the GDT from a `(limit, base)` descriptor.
///
/// # Safety
/// The table must stay valid (static) and its code/data entries must match the selectors in
/// use, which the caller reloads.
pub unsafe fn lgdt(base: u32, limit: u16) {
    #[repr(C, packed)]
    struct Dtr {
        limit: u16,
        base: u32,
    }
    let d = Dtr { limit, base };
    // SAFETY: lgdt reads the 6-byte descriptor; the table itself is the caller's contract.
    unsafe { asm!("lgdt [{}]", in(reg) &d, options(readonly, nostack, preserves_flags)) };
}

/// The linear base address of the loaded GDT (`sgdt`; KVM does not intercept it in the
/// kernel, so unlike a LAPIC read it costs no VM exit).
#[must_use]
pub fn sgdt_base() -> u32 {
    let mut d = [0u8; 6];
    // SAFETY: sgdt writes the 6-byte (limit, base) descriptor into `d`, nothing else.
    unsafe { asm!("sgdt [{}]", in(reg) d.as_mut_ptr(), options(nostack, preserves_flags)) };
    u32::from_le_bytes([d[2], d[3], d[4], d[5]])
}

/// Reads CR2 (the linear address of the last page fault).
#[must_use]
pub fn rcr2() -> u32 {
    let v: u32;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Loads the interrupt descriptor table from a `(limit, base)` descriptor.
///
/// # Safety
/// The table must stay valid (static) and every present gate must point at a handler that
/// can take the trap (the vectors in trapasm.rs).
pub unsafe fn lidt(base: u32, limit: u16) {
    #[repr(C, packed)]
    struct Dtr {
        limit: u16,
        base: u32,
    }
    let d = Dtr { limit, base };
    // SAFETY: lidt reads the 6-byte descriptor; the table itself is the caller's contract.
    unsafe { asm!("lidt [{}]", in(reg) &d, options(readonly, nostack, preserves_flags)) };
}

/// Loads the task register with a TSS selector.
///
/// # Safety
/// The selector must name an available 32-bit TSS descriptor in the current GDT whose TSS
/// stays valid (static) for as long as it is loaded.
pub unsafe fn ltr(sel: u16) {
    // SAFETY: the caller guarantees the descriptor and the TSS.
    unsafe { asm!("ltr {:x}", in(reg) sel, options(nostack, preserves_flags)) };
}

/// Enables interrupts and halts until the next one, as one step: `sti` takes effect only
/// after the following instruction, so an interrupt pending now still wakes the `hlt`.
pub fn sti_hlt() {
    // SAFETY: as for sti and hlt.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) };
}

/// Invalidates the TLB entry for the page holding linear address `va`.
pub fn invlpg(va: u32) {
    // SAFETY: dropping a TLB entry only makes the CPU walk the page tables again.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// Flushes the whole (non-global) TLB by reloading CR3 with its own value.
pub fn flush_tlb() {
    // SAFETY: the page directory stays the same one; only cached translations are dropped.
    unsafe { lcr3(rcr3()) };
}
