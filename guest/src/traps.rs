//! Trap numbers and IDT gates (xv6 traps.h, and mmu.h's `SETGATE`): the vectors the CPU and
//! the LAPIC use, which vectors come with an error code, and the encoding of a gate
//! descriptor. Pure: tested on the host.

use bitflags::bitflags;

// Processor-defined trap numbers (xv6 traps.h).
/// Divide error.
pub const T_DIVIDE: u32 = 0;
/// Invalid opcode.
pub const T_ILLOP: u32 = 6;
/// Double fault.
pub const T_DBLFLT: u32 = 8;
/// General protection fault.
pub const T_GPFLT: u32 = 13;
/// Page fault.
pub const T_PGFLT: u32 = 14;
/// System call (`int $64`), the number user programs use too (xv6-abi).
pub use xv6_abi::syscall::T_SYSCALL;
/// First vector of the hardware interrupts (IRQ 0).
pub const T_IRQ0: u32 = 32;
/// LAPIC timer IRQ.
pub const IRQ_TIMER: u32 = 0;
/// LAPIC error IRQ.
pub const IRQ_ERROR: u32 = 19;
/// LAPIC spurious-interrupt IRQ.
pub const IRQ_SPURIOUS: u32 = 31;

bitflags! {
    /// The error code the CPU pushes for a page fault (Intel SDM vol. 3, "Page-Fault
    /// Exceptions").
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
    pub struct PfErr: u32 {
        /// The page was present: a protection fault, not a missing page.
        const P = 1 << 0;
        /// The access was a write.
        const W = 1 << 1;
        /// The access was made in user mode.
        const U = 1 << 2;
        /// A reserved bit was set in a paging-structure entry.
        const RSVD = 1 << 3;
        /// The access was an instruction fetch.
        const I = 1 << 4;
    }
}

/// An IDT gate descriptor (xv6 `SETGATE`): `istrap` makes a trap gate (interrupts stay
/// enabled) rather than an interrupt gate; `dpl` is the privilege needed to `int` to it.
#[doc(alias = "SETGATE")]
#[must_use]
pub const fn gate(istrap: bool, sel: u16, off: u32, dpl: u32) -> u64 {
    let ty: u32 = if istrap { 0xF } else { 0xE }; // STS_TG32 / STS_IG32
    let lo = (off & 0xFFFF) | ((sel as u32) << 16);
    let hi = (off & 0xFFFF_0000) | (1 << 15) | ((dpl & 3) << 13) | (ty << 8);
    ((hi as u64) << 32) | lo as u64
}

/// An IDT task gate: the vector switches to the task whose TSS selector is `tss` (the
/// double fault's, so that it runs on a stack of its own).
#[must_use]
pub const fn task_gate(tss: u16) -> u64 {
    let lo = (tss as u32) << 16;
    let hi = (1 << 15) | (0x5 << 8); // present, DPL 0, type 5 (task gate)
    ((hi as u64) << 32) | lo as u64
}

/// The vectors the CPU pushes an error code for, one bit each: #DF (8), #TS, #NP, #SS, #GP,
/// #PF (10-14), #AC (17), #CP (21), #VC (29), #SX (30). trapasm.rs's stubs read it too.
pub const ERROR_CODE_VECTORS: u32 = 1 << 8
    | 1 << 10
    | 1 << 11
    | 1 << 12
    | 1 << 13
    | 1 << 14
    | 1 << 17
    | 1 << 21
    | 1 << 29
    | 1 << 30;

/// Does the CPU push an error code for this vector? (The stubs push a 0 for the others.)
#[must_use]
pub const fn has_error_code(vec: u32) -> bool {
    vec < 32 && ERROR_CODE_VECTORS >> vec & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_match_xv6_setgate() {
        // SETGATE(idt[64], 1, SEG_KCODE<<3, 0x80105a2c, DPL_USER)
        assert_eq!(gate(true, 0x08, 0x8010_5A2C, 3), 0x8010_EF00_0008_5A2C);
        // SETGATE(idt[14], 0, SEG_KCODE<<3, 0x80105a2c, 0)
        assert_eq!(gate(false, 0x08, 0x8010_5A2C, 0), 0x8010_8E00_0008_5A2C);
    }

    #[test]
    fn task_gate_names_the_tss_and_nothing_else() {
        // Selector 0x30 in bits 16..31, present + type 5 in the high word, no offset.
        assert_eq!(task_gate(0x30), 0x0000_8500_0030_0000);
    }

    #[test]
    fn page_fault_error_code_bits() {
        let user_write_present = PfErr::from_bits_retain(0x7);
        assert_eq!(user_write_present, PfErr::P | PfErr::W | PfErr::U);
        assert!(
            !PfErr::from_bits_retain(0x4).contains(PfErr::W),
            "a user read"
        );
        assert_eq!((PfErr::RSVD | PfErr::I).bits(), 0x18);
    }

    #[test]
    fn error_code_vectors() {
        let with: Vec<u32> = (0..256).filter(|&v| has_error_code(v)).collect();
        assert_eq!(with, [8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
    }
}
