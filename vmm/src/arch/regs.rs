//! The vCPU state at the kernel's PVH entry: 32-bit protected mode, paging off, flat segments
//! from the boot GDT, interrupts off, EBX = physical address of `hvm_start_info`.

use anyhow::{Context, Result};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::gdt::{kvm_segment_from_gdt, BOOT_GDT, CODE_SEL, DATA_SEL, TSS_SEL};
use crate::arch::layout;

/// CR0.PE: protected mode.
const X86_CR0_PE: u64 = xv6_abi::mmu::CR0_PE as u64;
/// CR0.ET: the FPU is a 387 (always set on modern CPUs).
const X86_CR0_ET: u64 = xv6_abi::mmu::CR0_ET as u64;

/// Writes the boot GDT into guest memory.
pub fn write_boot_gdt(mem: &GuestMemoryMmap) -> Result<()> {
    for (i, entry) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(layout::BOOT_GDT + 8 * i as u64))
            .context("cannot write the boot GDT")?;
    }
    Ok(())
}

/// Puts the vCPU in the PVH entry state: `eip = entry`, `ebx = start_info`.
pub fn setup_pvh_entry(vcpu: &VcpuFd, entry: u32, start_info: u32) -> Result<()> {
    let mut sregs = vcpu.get_sregs().context("KVM_GET_SREGS failed")?;
    sregs.gdt.base = layout::BOOT_GDT;
    sregs.gdt.limit = (BOOT_GDT.len() * 8 - 1) as u16;
    // No IDT: until the kernel loads its own, any exception is a triple fault.
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = kvm_segment_from_gdt(BOOT_GDT[1], CODE_SEL);
    let data = kvm_segment_from_gdt(BOOT_GDT[2], DATA_SEL);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment_from_gdt(BOOT_GDT[3], TSS_SEL);
    sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).context("KVM_SET_SREGS failed")?;

    let regs = kvm_bindings::kvm_regs {
        rip: entry.into(),
        rbx: start_info.into(),
        rflags: 0x2, // bit 1 is always set; IF off
        ..Default::default()
    };
    vcpu.set_regs(&regs).context("KVM_SET_REGS failed")?;
    Ok(())
}
