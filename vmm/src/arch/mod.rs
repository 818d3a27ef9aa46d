//! x86 in 32-bit protected mode as the VMM sets it up: the guest-physical [`layout`] and
//! port numbers, the boot [`gdt`], the vCPU's [`regs`] at the kernel's entry, and the
//! [`mptable`] that lists several vCPUs.

pub mod gdt;
pub mod layout;
pub mod mptable;
pub mod regs;
