//! The x86 debug registers for gdb's hardware breakpoints and watchpoints: DR0–DR3 hold
//! linear addresses, DR7 enables each (L0–L3) with its condition (execute, write, read or
//! write) and length (1, 2, 4 bytes, aligned).

use gdbstub::target::ext::breakpoints::WatchKind;

/// What a slot traps on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwUse {
    Exec,
    Write,
    /// Reads and writes (x86 has no read-only condition: gdb's `rwatch` uses this too).
    Access,
}

impl HwUse {
    /// The condition for a gdb watchpoint kind.
    pub fn of(kind: WatchKind) -> HwUse {
        match kind {
            WatchKind::Write => HwUse::Write,
            WatchKind::Read | WatchKind::ReadWrite => HwUse::Access,
        }
    }

    /// DR7's R/W bits.
    fn rw_bits(self) -> u64 {
        match self {
            HwUse::Exec => 0b00,
            HwUse::Write => 0b01,
            HwUse::Access => 0b11,
        }
    }
}

/// One debug register in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwSlot {
    pub addr: u32,
    pub len: u32,
    pub use_: HwUse,
}

impl HwSlot {
    /// A slot, if x86 can watch it: length 1, 2 or 4, aligned to it (execute: length 1).
    pub fn new(addr: u32, len: u32, use_: HwUse) -> Option<HwSlot> {
        let len = if use_ == HwUse::Exec { 1 } else { len };
        let ok = matches!(len, 1 | 2 | 4) && addr.is_multiple_of(len);
        ok.then_some(HwSlot { addr, len, use_ })
    }

    /// DR7's LEN bits.
    fn len_bits(self) -> u64 {
        match self.len {
            2 => 0b01,
            4 => 0b11,
            _ => 0b00,
        }
    }
}

/// DR7 for the slots: bit 10 (always 1), GE (bit 9), and per slot i its local enable (bit
/// 2i), R/W at bits 16 + 4i and LEN at bits 18 + 4i.
pub fn dr7(slots: &[Option<HwSlot>; 4]) -> u64 {
    let mut v = (1 << 10) | (1 << 9);
    for (i, s) in slots.iter().enumerate() {
        if let Some(s) = s {
            v |= 1 << (2 * i);
            v |= s.use_.rw_bits() << (16 + 4 * i);
            v |= s.len_bits() << (18 + 4 * i);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr7_encodes_enable_condition_and_length() {
        let none = [None; 4];
        assert_eq!(dr7(&none), 0x600);
        let mut s = [None; 4];
        s[0] = HwSlot::new(0x8010_0000, 1, HwUse::Exec);
        s[1] = HwSlot::new(0x1000, 4, HwUse::Write);
        s[3] = HwSlot::new(0x2002, 2, HwUse::Access);
        // L0, L1, L3; RW1 = 01, LEN1 = 11; RW3 = 11, LEN3 = 01.
        assert_eq!(dr7(&s), 0x600 | 0b1000101 | (0b1101 << 20) | (0b0111 << 28));
    }

    #[test]
    fn only_aligned_small_watches() {
        assert!(HwSlot::new(0x1001, 4, HwUse::Write).is_none());
        assert!(HwSlot::new(0x1000, 8, HwUse::Write).is_none());
        assert_eq!(HwSlot::new(0x1003, 4, HwUse::Exec).unwrap().len, 1);
    }
}
